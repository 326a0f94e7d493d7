//! `serve`: an OpenAI-compatible HTTP server for a Llama-family model directory.
//!
//! ```text
//! modelcommons-trainer serve --model DIR [--listen 0.0.0.0:8000] [--api-keys DIR] ...
//! ```
//!
//! Routes and who may call them:
//!
//! | route | auth |
//! | --- | --- |
//! | `GET /v1/models`, `POST /v1/completions`, `POST /v1/chat/completions` | `Authorization: Bearer <key>` of a consumer in `--api-keys` (no `--api-keys`: anyone, consumer `public`) |
//! | `GET /v1/usage` | the `--admin-key-file` key as a bearer token; without that flag, loopback clients only |
//! | `GET /metrics`, `GET /healthz`, `GET /readyz` | none (in-cluster scraping and probes) |
//!
//! Completions stream as server-sent events with `"stream": true` (OpenAI chunk shapes, a
//! last `data: [DONE]`; `stream_options.include_usage` adds a usage chunk). Errors are
//! OpenAI error objects. Each consumer is limited to `--requests-per-minute` requests and
//! `--tokens-per-minute` prompt + completion tokens over a sliding minute ([`limit`]); over
//! either it gets a 429 with `Retry-After`. Usage is counted per consumer on `/metrics`
//! ([`metrics`]) and in `GET /v1/usage` (cumulative since `started_at`; a restart resets it,
//! which `started_at` reveals).
//!
//! The model lives on one engine thread ([`engine`]) that interleaves every active generation
//! one decode step at a time, so concurrent requests all make progress; a client that hangs
//! up cancels its generation. SIGTERM or ctrl-c stops accepting connections, lets in-flight
//! requests (streams included) finish, then exits.

pub mod api;
pub mod backend;
pub mod engine;
pub mod keys;
pub mod limit;
pub mod metrics;
pub mod routes;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use keys::{KeyHash, KeyStore};
use limit::{Limiter, Limits};
use metrics::Metrics;

/// Where the model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceChoice {
    /// The CPU.
    Cpu,
    /// CUDA device 0 (fails when libtorch sees no GPU).
    Cuda,
    /// CUDA when available, else the CPU.
    Auto,
}

impl DeviceChoice {
    /// The tch device.
    pub fn resolve(self) -> anyhow::Result<tch::Device> {
        match self {
            DeviceChoice::Cpu => Ok(tch::Device::Cpu),
            DeviceChoice::Auto => Ok(crate::device::best()),
            DeviceChoice::Cuda => {
                anyhow::ensure!(
                    tch::Cuda::is_available(),
                    "--device cuda: libtorch sees no CUDA device (is this a CUDA build on a GPU node?); use --device cpu or auto"
                );
                Ok(tch::Device::Cuda(0))
            }
        }
    }
}

/// The flags of `serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The model directory (Hugging Face layout: config.json, model.safetensors,
    /// tokenizer.json, tokenizer_config.json).
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// The address to listen on; port 0 picks a free port (printed as `listening on ADDR`).
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8000")]
    pub listen: SocketAddr,
    /// The model name clients send and see (default: the model directory's name).
    #[arg(long, value_name = "NAME")]
    pub served_model_name: Option<String>,
    /// Refuse to start unless the weights have this sha256 (`model.safetensors`, the shards in
    /// name order, or `adapter_model.safetensors` for a LoRA directory), as FineTuneJob results
    /// and ModelDeployment artifacts record it.
    #[arg(long, value_name = "HEX")]
    pub expect_sha256: Option<String>,
    /// A directory of API keys: one file per consumer, the file name is the consumer, the
    /// content is the key (a mounted Secret). Without it the server is open to anyone.
    #[arg(long, value_name = "DIR")]
    pub api_keys: Option<PathBuf>,
    /// How often to re-read `--api-keys` and `--admin-key-file` (rotated Secrets apply
    /// without a restart).
    #[arg(long, value_name = "SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub api_keys_refresh_seconds: u64,
    /// Only these consumers may call (others get 403); default: every consumer with a key.
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    pub allowed_consumers: Vec<String>,
    /// A file holding the key for `GET /v1/usage`; without it, that route answers loopback
    /// clients only.
    #[arg(long, value_name = "FILE")]
    pub admin_key_file: Option<PathBuf>,
    /// Requests per minute per consumer (default: unlimited).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub requests_per_minute: Option<u64>,
    /// Prompt + completion tokens per minute per consumer (default: unlimited).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub tokens_per_minute: Option<u64>,
    /// The largest request body accepted; larger ones get 413.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    pub max_body_bytes: usize,
    /// Where the model runs.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// Generations decoded at once; more wait in a queue.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_active_generations: u64,
}

/// What the engine thread meters into: the metrics (with the usage ledger) and the limiter.
#[derive(Debug)]
pub struct Accounting {
    /// Metrics and usage.
    pub metrics: Metrics,
    limiter: Mutex<Limiter>,
}

impl Accounting {
    fn limiter(&self) -> MutexGuard<'_, Limiter> {
        self.limiter
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The admin key (hash), re-read with the API keys.
#[derive(Debug)]
struct AdminKey {
    path: PathBuf,
    hash: RwLock<KeyHash>,
}

impl AdminKey {
    fn read(path: &Path) -> anyhow::Result<KeyHash> {
        let content = std::fs::read(path)
            .with_context(|| format!("reading --admin-key-file {}", path.display()))?;
        let key = content.trim_ascii();
        anyhow::ensure!(
            !key.is_empty(),
            "--admin-key-file {} is empty",
            path.display()
        );
        Ok(keys::hash_key(key))
    }

    fn matches(&self, presented: &KeyHash) -> bool {
        use subtle::ConstantTimeEq;
        let stored = *self
            .hash
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        stored.ct_eq(presented).into()
    }
}

/// The state every handler shares.
#[derive(Debug)]
pub struct Shared {
    model: Arc<str>,
    started_unix: u64,
    keys: Option<KeyStore>,
    allowed_consumers: BTreeSet<String>,
    admin_key: Option<AdminKey>,
    accounting: Arc<Accounting>,
    engine: engine::EngineHandle,
    ready: Arc<AtomicBool>,
    next_id: AtomicU64,
    id_nonce: u64,
}

fn id_nonce() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// The router over `state`, with a `max_body_bytes` request limit.
pub fn router(state: Arc<Shared>, max_body_bytes: usize) -> Router {
    let api = Router::new()
        .route("/v1/models", get(routes::models))
        .route("/v1/completions", post(routes::completions))
        .route("/v1/chat/completions", post(routes::chat_completions))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            routes::api_auth,
        ));
    Router::new()
        .merge(api)
        .route("/v1/usage", get(routes::usage))
        .route("/metrics", get(routes::metrics))
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            routes::observe,
        ))
        .with_state(state)
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
    tracing::info!("shutting down: no new connections; waiting for in-flight requests");
}

/// Re-reads the key directory and the admin key every `every`; logs what changed.
async fn refresh_keys(state: Arc<Shared>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut last_warnings = Vec::new();
    let mut last_error: Option<String> = None;
    loop {
        tick.tick().await;
        let s = state.clone();
        let result = tokio::task::spawn_blocking(move || {
            let keys = s.keys.as_ref().map(KeyStore::reload).transpose();
            let admin = s.admin_key.as_ref().map(|a| (a, AdminKey::read(&a.path)));
            let admin = match admin {
                Some((a, Ok(h))) => {
                    let mut cur = a
                        .hash
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    let changed = *cur != h;
                    *cur = h;
                    Ok(changed)
                }
                Some((_, Err(e))) => Err(e),
                None => Ok(false),
            };
            (keys, admin)
        })
        .await;
        let Ok((keys, admin)) = result else { continue };
        match keys {
            Ok(Some(r)) => {
                if r.changed() {
                    tracing::info!(
                        added = ?r.added,
                        removed = ?r.removed,
                        rotated = ?r.rotated,
                        "api keys reloaded"
                    );
                }
                if r.warnings != last_warnings {
                    for w in &r.warnings {
                        tracing::warn!("{w}");
                    }
                    last_warnings = r.warnings;
                }
                last_error = None;
            }
            Ok(None) => {}
            Err(e) => {
                let msg = e.to_string();
                if last_error.as_deref() != Some(&msg) {
                    tracing::error!(
                        "re-reading --api-keys failed (keeping the current keys): {msg}"
                    );
                    last_error = Some(msg);
                }
            }
        }
        match admin {
            Ok(true) => tracing::info!("admin key reloaded"),
            Ok(false) => {}
            Err(e) => tracing::error!("{e:#} (keeping the current admin key)"),
        }
    }
}

/// Runs the server until SIGTERM or ctrl-c: binds, prints `listening on ADDR` on stdout,
/// loads the model on the engine thread (`/readyz` turns 200 when done), serves, and on the
/// signal finishes in-flight requests before returning. Returns an error when the model
/// fails to load or the engine thread stops.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();

    if let Some(want) = &args.expect_sha256 {
        let adapter = args.model.join("adapter_model.safetensors");
        let got = if adapter.exists() {
            crate::train::file_digest(&adapter)?
        } else {
            crate::train::weights_digest(&args.model)?
        };
        if !got.eq_ignore_ascii_case(want) {
            anyhow::bail!(
                "the weights in {} have sha256 {got}, not the expected {want}: refusing to serve a model other than the one recorded",
                args.model.display()
            );
        }
    }
    let model_name: Arc<str> = match &args.served_model_name {
        Some(n) => n.as_str().into(),
        None => args
            .model
            .canonicalize()
            .unwrap_or_else(|_| args.model.clone())
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into())
            .into(),
    };
    let keys = match &args.api_keys {
        Some(dir) => {
            let (store, warnings) = KeyStore::open(dir)
                .with_context(|| format!("reading --api-keys {}", dir.display()))?;
            for w in &warnings {
                tracing::warn!("{w}");
            }
            let set = store.get();
            if set.is_empty() {
                tracing::warn!(
                    "--api-keys {} holds no key yet: every API request is refused until one appears",
                    dir.display()
                );
            }
            tracing::info!(consumers = ?set.consumers().collect::<Vec<_>>(), "api keys loaded");
            Some(store)
        }
        None => {
            tracing::warn!(
                "NO --api-keys: THE API IS OPEN TO ANYONE WHO CAN REACH {}; rate limits apply per client address",
                args.listen
            );
            None
        }
    };
    let admin_key = match &args.admin_key_file {
        Some(path) => Some(AdminKey {
            path: path.clone(),
            hash: RwLock::new(AdminKey::read(path)?),
        }),
        None => None,
    };
    let device = args.device.resolve()?;
    let accounting = Arc::new(Accounting {
        metrics: Metrics::new(),
        limiter: Mutex::new(Limiter::new(Limits {
            requests_per_minute: args.requests_per_minute,
            tokens_per_minute: args.tokens_per_minute,
        })),
    });

    let ready = Arc::new(AtomicBool::new(false));
    let (engine, engine_exit) = {
        let (acc, acc2) = (accounting.clone(), accounting.clone());
        let ready = ready.clone();
        let dir = args.model.clone();
        let on_ready = move || {
            ready.store(true, Ordering::Release);
            acc.metrics.model_ready.set(1);
            tracing::info!("model loaded; ready");
        };
        let report = move |active: usize, queued: usize| {
            acc2.metrics.active_generations.set(active as i64);
            acc2.metrics.queued_generations.set(queued as i64);
        };
        tracing::info!(model = %args.model.display(), device = %crate::device::describe(device), "loading the model");
        engine::spawn(
            move || backend::load(&dir, device),
            usize::try_from(args.max_active_generations).unwrap_or(usize::MAX),
            on_ready,
            report,
        )
        .context("starting the engine thread")?
    };

    let state = Arc::new(Shared {
        model: model_name,
        started_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        keys,
        allowed_consumers: args.allowed_consumers.iter().cloned().collect(),
        admin_key,
        accounting,
        engine,
        ready,
        next_id: AtomicU64::new(0),
        id_nonce: id_nonce(),
    });
    let refresher = (state.keys.is_some() || state.admin_key.is_some()).then(|| {
        tokio::spawn(refresh_keys(
            state.clone(),
            Duration::from_secs(args.api_keys_refresh_seconds),
        ))
    });

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    println!("listening on {addr}");
    tracing::info!(%addr, model = %state.model, "serving the OpenAI API");

    let app = router(state.clone(), args.max_body_bytes);
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal());
    let mut engine_exit = engine_exit;
    let outcome = tokio::select! {
        r = server => r.context("serving HTTP"),
        r = &mut engine_exit => Err(match r {
            Ok(Ok(())) => anyhow::anyhow!("the engine thread stopped"),
            Ok(Err(e)) => e.context(format!("loading the model from {}", args.model.display())),
            Err(_) => anyhow::anyhow!("the engine thread panicked"),
        }),
    };
    if let Some(r) = refresher {
        r.abort();
        let _ = r.await;
    }
    drop(state);
    if outcome.is_ok() {
        // Every handle is gone: the engine finishes what it holds and exits.
        match tokio::time::timeout(Duration::from_secs(30), engine_exit).await {
            Ok(Ok(Err(e))) => return Err(e),
            Ok(_) => {}
            Err(_) => tracing::warn!("the engine thread did not stop within 30 s"),
        }
        tracing::info!("shut down");
    }
    outcome
}
