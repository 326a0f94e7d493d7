//! The lifecycle controllers (kube-runtime), sharing one [`Context`].
//!
//! Every write is a server-side apply under [`FIELD_MANAGER`]; a reconcile that finds nothing
//! to change writes nothing.

use std::sync::Arc;

use kube::runtime::events::{Recorder, Reporter};

pub mod datanet;
pub mod deployment;
pub mod finetune;
pub mod lease;
pub mod lineage;
pub mod metrics;
pub mod proposal;
pub mod training;
pub mod trusted;
pub mod usage;

/// The operator's field manager (the trainer writes under `modelcommons.dev/trainer`).
pub const FIELD_MANAGER: &str = "modelcommons.dev/operator";

/// The finalizer on ModelProposals: a proposal deleted before its decision is withdrawn on
/// chain (its stake returned per the registry's rules) before the object goes.
pub const FINALIZER: &str = "modelcommons.dev/withdraw";

/// Condition: the object's on-chain record is in sync (False says why not).
pub const LEDGER_SYNCED: &str = "LedgerSynced";

/// Labels on every child object.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// The owning object's name, on every child object.
pub const LABEL_INSTANCE: &str = "modelcommons.dev/instance";

/// What the controllers are configured with.
#[derive(Debug, Clone)]
pub struct Config {
    /// The trainer image when a FineTuneJob names none.
    pub trainer_image: String,
    /// Other trainer images a FineTuneJob may name in `spec.trainerImage`; any other is
    /// refused (`TrainerImageNotAllowed`).
    pub allowed_trainer_images: Vec<String>,
    /// Only this namespace (None: all).
    pub namespace: Option<String>,
    /// How often a gated or waiting object is looked at again even without a watch event.
    pub recheck: std::time::Duration,
    /// How long a finished trainer Job may go without a result before the FineTuneJob fails.
    pub result_grace: std::time::Duration,
    /// The operator's own image (curation Jobs run `modelcommons-operator curate` in it).
    pub operator_image: String,
    /// Where curated datasets and reward maps are written, content-addressed: `file:///dir`
    /// or `pvc://claim/dir` (mounted into curation and trainer pods).
    pub artifact_store: String,
    /// How the operator reads Datanet manifests on `s3://`, `gs://` and `az://`: the
    /// `object_store` settings of its own environment (`AWS_*`, `GOOGLE_*`, `AZURE_*`).
    pub objects: crate::curate::ObjectFetch,
    /// Governance defaults for proposals that set none.
    pub governance: GovernanceDefaults,
    /// The `host:port`s that fetches of tenant-written URIs (manifests, contributions,
    /// object-store endpoints) may reach although they are not public addresses; passed to
    /// curation Jobs. Everything else private, loopback or link-local is refused.
    pub egress: crate::curate::Egress,
    /// Dev host directories (the test bed, the demo, one machine): the only places
    /// `file://` manifests, contributions, base models, outputs and served artifacts may be.
    /// Empty in a real cluster: `file://` is refused there.
    pub dev_host_dirs: Vec<std::path::PathBuf>,
    /// The namespace the operator's trusted steps run in (curation, the evaluation of trained
    /// models, the operator's records): one the operator owns and tenants can neither exec
    /// into nor read (the chart's release namespace by default).
    pub trusted_namespace: String,
    /// The operator's own ServiceAccount, `<namespace>:<name>`: what a tenant grants the
    /// reading of its credentials Secret to (conditions give the commands).
    pub service_account: String,
}

/// Quorum and approval threshold for proposals whose `spec.governance` leaves them unset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GovernanceDefaults {
    /// Quorum in basis points of the voting supply (400 = 4%).
    pub quorum_bps: u16,
    /// Approval threshold in basis points of for + against (5001 = simple majority).
    pub threshold_bps: u16,
}

impl Default for GovernanceDefaults {
    fn default() -> Self {
        Self {
            quorum_bps: 400,
            threshold_bps: 5001,
        }
    }
}

/// The chain the controllers mirror to: a connection signing with the operator's key and the
/// contract suite's addresses.
#[derive(Debug, Clone)]
pub struct LedgerHandle {
    /// The connection.
    pub ledger: crate::ledger::Ledger,
    /// Where the contracts live.
    pub suite: crate::ledger::suite::SuiteAddresses,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            trainer_image: "ghcr.io/modelcommons/trainer:0.1.0".into(),
            allowed_trainer_images: Vec::new(),
            namespace: None,
            recheck: std::time::Duration::from_secs(30),
            result_grace: std::time::Duration::from_secs(300),
            operator_image: "ghcr.io/modelcommons/operator:0.1.0".into(),
            artifact_store: "pvc://modelcommons-artifacts".into(),
            objects: crate::curate::ObjectFetch::new(Vec::new()),
            governance: GovernanceDefaults::default(),
            egress: crate::curate::Egress::default(),
            dev_host_dirs: Vec::new(),
            trusted_namespace: "modelcommons-system".into(),
            service_account: "modelcommons-system:modelcommons".into(),
        }
    }
}

/// Shared by every reconcile.
#[derive(Clone)]
pub struct Context {
    /// The API client.
    pub client: kube::Client,
    /// Configuration.
    pub config: Arc<Config>,
    /// Publishes Kubernetes events.
    pub recorder: Recorder,
    /// Prometheus metrics.
    pub metrics: Arc<metrics::Metrics>,
    /// The chain (None: the ModelProposal and Datanet controllers do not run, FineTuneJobs
    /// are not recorded on chain).
    pub ledger: Option<Arc<LedgerHandle>>,
    /// Consecutive failures per object: the backoff of transient errors.
    pub failures: Arc<crate::runtime::reconcile::Failures>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// A context for `client`.
    pub fn new(client: kube::Client, config: Config) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "modelcommons-operator".into(),
                instance: std::env::var("POD_NAME").ok(),
            },
        );
        Self {
            client,
            config: Arc::new(config),
            recorder,
            metrics: Arc::new(metrics::Metrics::default()),
            ledger: None,
            failures: Arc::default(),
        }
    }

    /// The same context mirroring to `ledger`.
    pub fn with_ledger(mut self, mut ledger: LedgerHandle) -> Self {
        ledger.ledger = ledger
            .ledger
            .with_gas_counter(self.metrics.ledger_gas.clone());
        self.ledger = Some(Arc::new(ledger));
        self
    }

    /// Publishes an event about `obj` in the background: an event never delays a reconcile,
    /// and a lost one is not worth failing it.
    pub fn event<K: kube::Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: kube::runtime::events::EventType,
        reason: &str,
        note: String,
    ) {
        let recorder = self.recorder.clone();
        let reference = obj.object_ref(&());
        let event = kube::runtime::events::Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: "Reconcile".into(),
            secondary: None,
        };
        tokio::spawn(async move {
            recorder.publish(&event, &reference).await.ok();
        });
    }

    /// Runs one chain write, counting it (and its failures) in the metrics.
    pub async fn ledger_write<T>(
        &self,
        method: &str,
        write: impl std::future::Future<Output = crate::ledger::Result<T>>,
    ) -> Result<T, Error> {
        self.metrics.ledger_pending.inc();
        let res = write.await;
        self.metrics.ledger_pending.dec();
        self.metrics.ledger_write(method, res.is_ok());
        Ok(res?)
    }
}

/// Errors of a reconcile (retried with backoff; the object's status says what to do).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a request.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// An object could not be serialized.
    #[error("serializing: {0}")]
    Json(#[from] serde_json::Error),
    /// The object lacks what the reconcile needs (e.g. a namespace).
    #[error("{0}")]
    Invalid(String),
    /// A chain read or write failed (retried; the object's `LedgerSynced` condition says why).
    #[error("ledger: {0}")]
    Ledger(#[from] crate::ledger::Error),
}

impl Error {
    /// Whether retrying cannot help until the object (or the operator's configuration)
    /// changes: an object the API server refuses as invalid (400, 422), one the reconcile
    /// cannot work with, a value that does not serialize, a chain record with other content.
    /// A missing grant (403), a conflict (409), throttling (429), a server or chain error are
    /// transient.
    pub fn is_permanent(&self) -> bool {
        match self {
            Error::Kube(kube::Error::Api(s)) => matches!(s.code, 400 | 422),
            Error::Kube(_) => false,
            Error::Json(_) | Error::Invalid(_) => true,
            Error::Ledger(e) => matches!(
                e,
                crate::ledger::Error::Conflict { .. }
                    | crate::ledger::Error::RpcUrl { .. }
                    | crate::ledger::Error::Key(_)
            ),
        }
    }

    /// A short, bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(s)) if matches!(s.code, 400 | 422) => "kube_invalid",
            Error::Kube(kube::Error::Api(s)) if s.code == 403 => "kube_forbidden",
            Error::Kube(kube::Error::Api(s)) if s.code == 409 => "kube_conflict",
            Error::Kube(_) => "kube",
            Error::Json(_) => "serialize",
            Error::Invalid(_) => "invalid",
            Error::Ledger(e) => e.metric_label(),
        }
    }
}

/// The current time as a Kubernetes `Time`.
pub fn now() -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now())
}

/// Logs a failed reconcile from a controller's result stream (it is already counted in the
/// metrics and retried by the error policy).
pub(crate) async fn log_result<T, E: std::fmt::Display>(res: Result<T, E>) {
    if let Err(e) = res {
        tracing::debug!(error = %e, "reconcile");
    }
}
