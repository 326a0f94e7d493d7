//! `modelcommons-operator`: the controllers, with leader election, metrics and health.
//!
//! ```text
//! modelcommons-operator run [--namespace NS] [--trainer-image IMG] [--no-leader-elect] …
//! modelcommons-operator crd          print the CRDs (YAML) for `kubectl apply -f -`
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use axum::routing::get;
use clap::{Parser, Subcommand};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use modelcommons_operator::controller::lease::{self, LeaseConfig};
use modelcommons_operator::controller::{Config, Context, deployment, finetune};

#[derive(Debug, Parser)]
#[command(
    name = "modelcommons-operator",
    version,
    about = "The modelcommons lifecycle operator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the controllers.
    Run(RunArgs),
    /// Print the CustomResourceDefinitions as YAML.
    Crd,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Watch only this namespace (default: all).
    #[arg(long, env = "MODELCOMMONS_WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// The trainer image for FineTuneJobs that name none.
    #[arg(
        long,
        env = "MODELCOMMONS_TRAINER_IMAGE",
        default_value = "ghcr.io/modelcommons/trainer:0.1.0"
    )]
    trainer_image: String,
    /// Metrics (`/metrics`) and health (`/healthz`, `/readyz`) address.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Run without leader election (one replica only).
    #[arg(long)]
    no_leader_elect: bool,
    /// The Lease's namespace (default: POD_NAMESPACE, else `default`).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// The Lease's name.
    #[arg(long, default_value = "modelcommons-operator")]
    lease_name: String,
    /// Seconds a lease lasts without renewal.
    #[arg(long, default_value_t = 15)]
    lease_duration_seconds: u64,
    /// This replica's identity (default: POD_NAME, else host and pid).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Log as JSON lines.
    #[arg(long, env = "MODELCOMMONS_LOG_JSON")]
    log_json: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd => {
            print!("{}", modelcommons_crds::crds_yaml()?);
            Ok(())
        }
        Command::Run(args) => run(args).await,
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn"));
    if args.log_json {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API (in-cluster config or KUBECONFIG)")?;
    let ctx = Context::new(
        client.clone(),
        Config {
            trainer_image: args.trainer_image.clone(),
            namespace: args.namespace.clone(),
            ..Config::default()
        },
    );
    let metrics = ctx.metrics.clone();
    let ready = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .with_context(|| format!("binding {}", args.metrics_addr))?;
    println!("metrics and health on {}", listener.local_addr()?);
    let app = axum::Router::new()
        .route(
            "/metrics",
            get({
                let m = metrics.clone();
                move || async move { m.encode() }
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get({
                let r = ready.clone();
                move || async move {
                    if r.load(Ordering::Relaxed) {
                        (axum::http::StatusCode::OK, "ready")
                    } else {
                        (axum::http::StatusCode::SERVICE_UNAVAILABLE, "starting")
                    }
                }
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    // A follower is ready (it serves health) but does not reconcile.
    ready.store(true, Ordering::Relaxed);

    if args.no_leader_elect {
        metrics.leader.set(1);
        tokio::join!(finetune::run(ctx.clone()), deployment::run(ctx));
        return Ok(());
    }
    let identity = args.identity.clone().unwrap_or_else(|| {
        format!(
            "{}-{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "operator".into()),
            std::process::id()
        )
    });
    let duration = Duration::from_secs(args.lease_duration_seconds.max(3));
    let cfg = LeaseConfig {
        namespace: args.lease_namespace.clone(),
        name: args.lease_name.clone(),
        identity,
        duration,
        renew: duration / 3,
        retry: duration / 5,
    };
    let leases: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    lease::acquire(&leases, &cfg).await;
    println!("leading as {}", cfg.identity);
    metrics.leader.set(1);
    tokio::select! {
        _ = async { tokio::join!(finetune::run(ctx.clone()), deployment::run(ctx)) } => Ok(()),
        _ = lease::keep(&leases, &cfg) => {
            metrics.leader.set(0);
            anyhow::bail!("lost leadership; exiting so that a restart rejoins as a follower")
        }
    }
}
