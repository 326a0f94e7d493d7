//! `modelcommons-operator`: the controllers, with leader election, metrics and health.
//!
//! ```text
//! modelcommons-operator run [--namespace NS] [--ledger-rpc-url URL --ledger-key-file F
//!                            --ledger-addresses-file F] [--no-leader-elect] …
//! modelcommons-operator curate --namespace NS --datanet NAME --version N …   (the curation Job)
//! modelcommons-operator bootstrap --rpc URL --key-file F [--out FILE] [--fund ADDR=OPEN …]
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
use modelcommons_operator::controller::datanet::CurateArgs;
use modelcommons_operator::controller::lease::{self, LeaseConfig};
use modelcommons_operator::controller::{
    Config, Context, GovernanceDefaults, LedgerHandle, datanet, deployment, finetune, proposal,
};
use modelcommons_operator::ledger::suite::SuiteAddresses;
use modelcommons_operator::ledger::{KeySource, Ledger};

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
    Run(Box<RunArgs>),
    /// Curate one Datanet version (what the curation Job runs).
    Curate(CurateCli),
    /// Deploy the contract suite to a (dev) chain and write the addresses file `run` reads.
    Bootstrap(BootstrapCli),
    /// Print the CustomResourceDefinitions as YAML.
    Crd,
}

#[derive(Debug, clap::Args)]
struct BootstrapCli {
    /// The chain's JSON-RPC URL.
    #[arg(long, env = "MODELCOMMONS_LEDGER_RPC_URL")]
    rpc: String,
    /// A file holding the deployer's hex private key. It keeps the minted supply (less the
    /// treasury's funding, which goes to the timelock) to hand out, and only the roles
    /// --operator and --admin leave to it.
    #[arg(long, env = "MODELCOMMONS_LEDGER_KEY_FILE")]
    key_file: std::path::PathBuf,
    /// The operator's address (the operator role only). Default: the deployer's, for a dev
    /// chain.
    #[arg(long)]
    operator: Option<alloy::primitives::Address>,
    /// The admin's address (pausing, role administration). Default: the deployer's, for a
    /// dev chain.
    #[arg(long)]
    admin: Option<alloy::primitives::Address>,
    /// Where to write the addresses (JSON); stdout when unset.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    /// Fund an account with whole OPEN from the deployer: `ADDRESS=OPEN` (repeatable).
    #[arg(long, value_parser = modelcommons_operator::ledger::suite::parse_fund)]
    fund: Vec<(alloy::primitives::Address, alloy::primitives::U256)>,
    /// Also write the addresses into this ConfigMap (`<namespace>/<name>`), for an operator
    /// that mounts it (the Helm chart's dev chain).
    #[arg(long)]
    configmap: Option<String>,
    /// The ConfigMap key the addresses go under.
    #[arg(long, default_value = "addresses.json")]
    configmap_key: String,
}

#[derive(Debug, clap::Args)]
struct CurateCli {
    /// The Datanet, `<namespace>/<name>` (what contributors signed for).
    #[arg(long)]
    datanet: String,
    /// The version being curated.
    #[arg(long)]
    version: u32,
    /// The Datanet's spec as JSON (the operator sets it in the curation pod's environment).
    #[arg(long, env = "MODELCOMMONS_DATANET_SPEC", hide_env_values = true)]
    spec: String,
    /// The manifest: a `file://` (a mounted ConfigMap) or `http(s)://` URI.
    #[arg(long)]
    manifest: String,
    /// Where the curated dataset and the report go: `file:///dir` or `pvc://claim/dir`.
    #[arg(long)]
    artifact_store: String,
    /// The directory `file://` URIs resolve under.
    #[arg(long, default_value = "/")]
    data_root: std::path::PathBuf,
    /// A directory `file://` contributions may be read from (the operator's dev host
    /// directories; repeatable); without it none are.
    #[arg(long)]
    files_under: Vec<std::path::PathBuf>,
    /// Where a ConfigMap manifest is mounted (a `file://` manifest is read only from there or
    /// from --files-under).
    #[arg(long)]
    manifest_dir: Option<std::path::PathBuf>,
    /// Where the result (JSON) is written: the pod's termination message by default.
    #[arg(long, default_value = "/dev/termination-log")]
    result_file: std::path::PathBuf,
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
    /// Another trainer image FineTuneJobs may name in spec.trainerImage (repeatable, or
    /// comma-separated in the environment); any other is refused.
    #[arg(
        long,
        env = "MODELCOMMONS_ALLOWED_TRAINER_IMAGES",
        value_delimiter = ','
    )]
    allowed_trainer_image: Vec<String>,
    /// The namespace the operator's trusted steps run in (curation, the evaluation of trained
    /// models): one tenants cannot exec into or read (default: POD_NAMESPACE, the operator's
    /// own).
    #[arg(long, env = "MODELCOMMONS_TRUSTED_NAMESPACE")]
    trusted_namespace: Option<String>,
    /// The operator's own ServiceAccount's name (in POD_NAMESPACE): what a tenant grants the
    /// reading of a credentials Secret to, as conditions say.
    #[arg(long, env = "POD_SERVICE_ACCOUNT", default_value = "modelcommons")]
    service_account: String,
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
    /// The chain's JSON-RPC URL. Without it the ModelProposal and Datanet controllers are off
    /// and FineTuneJob results are not recorded on chain.
    #[arg(long, env = "MODELCOMMONS_LEDGER_RPC_URL")]
    ledger_rpc_url: Option<String>,
    /// A file holding the operator's hex private key (a mounted Secret).
    #[arg(
        long,
        env = "MODELCOMMONS_LEDGER_KEY_FILE",
        requires = "ledger_rpc_url"
    )]
    ledger_key_file: Option<std::path::PathBuf>,
    /// The contract addresses, as `modelcommons ledger bootstrap` writes them (JSON).
    #[arg(
        long,
        env = "MODELCOMMONS_LEDGER_ADDRESSES_FILE",
        requires = "ledger_rpc_url"
    )]
    ledger_addresses_file: Option<std::path::PathBuf>,
    /// Blocks a chain write must be buried under before it counts.
    #[arg(long, env = "MODELCOMMONS_LEDGER_CONFIRMATIONS", default_value_t = 1)]
    ledger_confirmations: u64,
    /// Default quorum for proposals that set none, in basis points of the voting supply.
    #[arg(long, default_value_t = 400, value_parser = clap::value_parser!(u16).range(1..=10000))]
    default_quorum_bps: u16,
    /// Default approval threshold, in basis points of for + against votes.
    #[arg(long, default_value_t = 5001, value_parser = clap::value_parser!(u16).range(1..=10000))]
    default_approval_threshold_bps: u16,
    /// The operator's own image, for curation Jobs.
    #[arg(
        long,
        env = "MODELCOMMONS_OPERATOR_IMAGE",
        default_value = "ghcr.io/modelcommons/operator:0.1.0"
    )]
    operator_image: String,
    /// Where curated datasets and reward maps are written: `file:///dir` or `pvc://claim/dir`.
    #[arg(
        long,
        env = "MODELCOMMONS_ARTIFACT_STORE",
        default_value = "pvc://modelcommons-artifacts"
    )]
    artifact_store: String,
    /// A `host:port` that fetches of tenant-written URIs may reach although it is not a
    /// public address (a private object store); repeatable, or comma-separated in the
    /// environment. Loopback, private, link-local and metadata addresses are refused otherwise.
    #[arg(long, env = "MODELCOMMONS_FETCH_ALLOW", value_delimiter = ',')]
    fetch_allow: Vec<String>,
    /// A host directory where `file://` manifests, contributions, models and outputs may be,
    /// for a dev cluster on one machine (the test bed, the demo); repeatable. Unset in a real
    /// cluster, where `file://` is refused.
    #[arg(long, env = "MODELCOMMONS_DEV_HOST_DIRS", value_delimiter = ',')]
    dev_host_dir: Vec<std::path::PathBuf>,
    /// Seconds between looks at objects waiting on the chain or on a gate.
    #[arg(long, default_value_t = 30)]
    recheck_seconds: u64,
    /// Seconds a finished trainer or curation Job may go without reporting its result before
    /// its object fails with `NoResult`.
    #[arg(long, default_value_t = 300)]
    result_grace_seconds: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd => {
            print!("{}", modelcommons_crds::crds_yaml()?);
            Ok(())
        }
        Command::Run(args) => run(*args).await,
        Command::Curate(args) => curate(args).await,
        Command::Bootstrap(args) => bootstrap(args).await,
    }
}

async fn bootstrap(args: BootstrapCli) -> anyhow::Result<()> {
    let ledger = Ledger::connect_with(&args.rpc, &KeySource::File(args.key_file))?;
    let roles = modelcommons_operator::ledger::suite::Roles {
        operator: args.operator.unwrap_or(ledger.address()),
        admin: args.admin.unwrap_or(ledger.address()),
    };
    let suite = ledger
        .bootstrap_with(
            &modelcommons_operator::ledger::suite::SuiteParams::default(),
            roles,
        )
        .await
        .with_context(|| format!("deploying the contract suite to {}", args.rpc))?;
    for (to, whole) in &args.fund {
        ledger.fund_open(&suite, *to, *whole).await?;
        eprintln!("funded {to} with {whole} OPEN");
    }
    let json = serde_json::to_string_pretty(&suite)?;
    match &args.out {
        Some(path) => {
            std::fs::write(path, format!("{json}\n"))
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!("wrote the suite's addresses to {}", path.display());
        }
        None if args.configmap.is_none() => println!("{json}"),
        None => {}
    }
    if let Some(target) = &args.configmap {
        let (ns, name) = target
            .split_once('/')
            .context("--configmap must be <namespace>/<name>")?;
        let client = kube::Client::try_default()
            .await
            .context("connecting to the Kubernetes API (in-cluster config or KUBECONFIG)")?;
        let cm = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": ns,
                "labels": {"app.kubernetes.io/managed-by": "modelcommons-operator"}},
            "data": {args.configmap_key.clone(): format!("{json}\n")}});
        Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client, ns)
            .patch(
                name,
                &kube::api::PatchParams::apply("modelcommons.dev/bootstrap").force(),
                &kube::api::Patch::Apply(&cm),
            )
            .await
            .with_context(|| format!("writing ConfigMap {target}"))?;
        eprintln!("wrote the suite's addresses to ConfigMap {target}");
    }
    Ok(())
}

async fn curate(cli: CurateCli) -> anyhow::Result<()> {
    let spec = serde_json::from_str(&cli.spec)
        .context("--spec / MODELCOMMONS_DATANET_SPEC is not a Datanet spec (JSON)")?;
    let args = CurateArgs {
        datanet: cli.datanet,
        spec,
        version: cli.version,
        manifest: cli.manifest,
        artifact_store: cli.artifact_store,
        data_root: cli.data_root,
        files_under: cli.files_under,
        manifest_dir: cli.manifest_dir,
        result_file: cli.result_file,
    };
    let (report, _) = datanet::curate_job(&args)
        .await
        .with_context(|| format!("curating Datanet {}", args.datanet))?;
    let c = &report.counts;
    println!(
        "version {}: {} contributions, {} accepted, {} rejected {:?}; dataset root {}, reward root {}",
        args.version,
        c.total,
        c.accepted,
        c.rejected,
        c.by_reason,
        report
            .dataset_root
            .map(|r| r.to_string())
            .unwrap_or_else(|| "-".into()),
        report
            .reward_root
            .map(|r| r.to_string())
            .unwrap_or_else(|| "-".into()),
    );
    Ok(())
}

/// Connects to the chain when configured: the key from a file, the addresses from the file
/// `ledger bootstrap` wrote, and a check that the chain id matches.
async fn connect_ledger(args: &RunArgs) -> anyhow::Result<Option<LedgerHandle>> {
    let Some(url) = &args.ledger_rpc_url else {
        return Ok(None);
    };
    let key = args
        .ledger_key_file
        .clone()
        .context("--ledger-key-file is required with --ledger-rpc-url")?;
    let addresses = args
        .ledger_addresses_file
        .clone()
        .context("--ledger-addresses-file is required with --ledger-rpc-url")?;
    let suite: SuiteAddresses = serde_json::from_str(
        &std::fs::read_to_string(&addresses)
            .with_context(|| format!("reading {}", addresses.display()))?,
    )
    .with_context(|| format!("{}: not a contract addresses file", addresses.display()))?;
    let ledger = Ledger::connect_with(url, &KeySource::File(key))?
        .with_confirmations(args.ledger_confirmations);
    use alloy::providers::Provider as _;
    let chain_id = ledger
        .provider()
        .get_chain_id()
        .await
        .with_context(|| format!("reaching the chain at {url}"))?;
    anyhow::ensure!(
        chain_id == suite.chain_id,
        "the chain at {url} has id {chain_id}, but {} is for chain {}",
        addresses.display(),
        suite.chain_id
    );
    println!("ledger: chain {chain_id} at {url} as {}", ledger.address());
    Ok(Some(LedgerHandle { ledger, suite }))
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
    let mut ctx = Context::new(
        client.clone(),
        Config {
            trainer_image: args.trainer_image.clone(),
            allowed_trainer_images: args.allowed_trainer_image.clone(),
            namespace: args.namespace.clone(),
            operator_image: args.operator_image.clone(),
            artifact_store: args.artifact_store.clone(),
            objects: modelcommons_operator::curate::ObjectFetch::from_env().with_egress(
                modelcommons_operator::curate::Egress::allowing(&args.fetch_allow),
            ),
            recheck: Duration::from_secs(args.recheck_seconds.max(1)),
            result_grace: Duration::from_secs(args.result_grace_seconds),
            governance: GovernanceDefaults {
                quorum_bps: args.default_quorum_bps,
                threshold_bps: args.default_approval_threshold_bps,
            },
            egress: modelcommons_operator::curate::Egress::allowing(&args.fetch_allow),
            dev_host_dirs: args.dev_host_dir.clone(),
            trusted_namespace: args
                .trusted_namespace
                .clone()
                .unwrap_or_else(|| args.lease_namespace.clone()),
            service_account: format!("{}:{}", args.lease_namespace, args.service_account),
        },
    );
    if let Some(h) = connect_ledger(&args).await? {
        ctx = ctx.with_ledger(h);
    }
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
        controllers(ctx).await;
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
        () = controllers(ctx) => Ok(()),
        _ = lease::keep(&leases, &cfg) => {
            metrics.leader.set(0);
            anyhow::bail!("lost leadership; exiting so that a restart rejoins as a follower")
        }
    }
}

/// Every controller, until a shutdown signal ends their streams.
async fn controllers(ctx: Context) {
    tokio::join!(
        proposal::run(ctx.clone()),
        datanet::run(ctx.clone()),
        finetune::run(ctx.clone()),
        deployment::run(ctx)
    );
}
