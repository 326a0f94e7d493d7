//! `FineTuneJob`: training against explicit targets.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::common::{LocalRef, MetricTarget, MetricValue};

/// Fine-tunes a base model on a sealed Datanet version, under an approved proposal's
/// mandate, and judges the result against explicit targets. The operator runs an Indexed
/// `batch/v1` Job of libtorch trainer pods (torchrun-style `PET_*` environment for several
/// workers), honours Kueue (`spec.runPolicy.queueName`, `suspend`), and records the lineage
/// dataset root → model digest → metrics on chain.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "modelcommons.dev",
    version = "v1alpha1",
    kind = "FineTuneJob",
    doc = "Fine-tunes a base model on a sealed Datanet version under an approved proposal, with libtorch trainer pods, and judges the result against explicit targets; the lineage dataset root -> model digest -> metrics is recorded on chain.",
    namespaced,
    status = "FineTuneJobStatus",
    shortname = "ftj",
    category = "modelcommons",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Method","type":"string","jsonPath":".spec.method.type"}"#,
    printcolumn = r#"{"name":"Progress","type":"string","jsonPath":".status.progress.percent"}"#,
    printcolumn = r#"{"name":"Loss","type":"string","jsonPath":".status.progress.loss"}"#,
    printcolumn = r#"{"name":"ETA","type":"string","jsonPath":".status.progress.eta"}"#,
    printcolumn = r#"{"name":"Met","type":"boolean","jsonPath":".status.evaluation.targetsMet"}"#,
    printcolumn = r#"{"name":"Digest","type":"string","jsonPath":".status.evaluation.modelDigest","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct FineTuneJobSpec {
    /// The approved ModelProposal whose mandate (budget, rubric) this job runs under.
    /// Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("proposalRef is immutable: create a new FineTuneJob for another proposal"))]
    pub proposal_ref: LocalRef,

    /// The Datanet to train on, optionally pinned to a version. Immutable: the model's lineage
    /// records exactly this dataset.
    #[x_kube(validation = Rule::new("self == oldSelf").message("datanetRef (and its pinned version) is immutable: the lineage records exactly this dataset"))]
    pub datanet_ref: DatanetRef,

    /// The model to start from. Immutable: what the evaluation's baseline and the lineage
    /// name.
    #[x_kube(validation = Rule::new("self == oldSelf").message("baseModel is immutable: create a new FineTuneJob to start from another model"))]
    pub base_model: BaseModel,

    /// Full fine-tuning or LoRA.
    pub method: Method,

    /// Optimization settings.
    #[serde(default)]
    pub hyperparameters: Hyperparameters,

    /// Workers and accelerators.
    #[serde(default)]
    pub resources: TrainResources,

    /// The targets the result must meet. Default: the proposal's evaluation rubric.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub targets: Vec<MetricTarget>,

    /// Override of the trainer container image (default: the operator's configured image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub trainer_image: Option<String>,

    /// Where the trained model (safetensors, config, tokenizer) is written:
    /// `s3://`, `gs://`, `az://`, `file://` or `pvc://<claim>/<path>`. Immutable: the
    /// operator's evaluation judges the weights found here.
    #[schemars(regex(pattern = r"^(s3|gs|az|file|pvc)://.+$"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("outputUri is immutable: the evaluation judges the model this job wrote there"))]
    pub output_uri: String,

    /// Checkpoints, so a preempted or failed worker resumes instead of starting over.
    #[serde(default)]
    pub checkpointing: Checkpointing,

    /// Retries, deadlines, clean-up and queueing.
    #[serde(default)]
    pub run_policy: RunPolicy,
}

/// A Datanet, optionally pinned to one sealed version.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatanetRef {
    /// The Datanet's name (same namespace).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The dataset version to train on (any version the operator published). Unset: the
    /// newest published version when the job starts (then recorded in status). Fixed once the
    /// trainer Job exists: a later version changes nothing of a running job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub version: Option<u32>,
}

/// A base model in the Hugging Face layout (`config.json`, `*.safetensors`,
/// `tokenizer.json`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BaseModel {
    /// Where the model directory is: `s3://`, `gs://`, `az://`, `http(s)://`, `file://` or
    /// `pvc://<claim>/<path>`.
    #[schemars(regex(pattern = r"^(s3|gs|az|https?|file|pvc)://.+$"))]
    pub uri: String,
    /// The sha256 of the weights (lowercase hex), checked before training starts.
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub sha256: String,
}

/// How the weights are updated.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum MethodType {
    /// Every weight is trained.
    Full,
    /// Low-rank adapters on the target modules; base weights frozen.
    LoRA,
}

/// The fine-tuning method.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(self.type == 'LoRA') == has(self.lora)").message("method.lora is required when method.type is LoRA, and only then"))]
pub struct Method {
    /// `Full` or `LoRA`.
    #[serde(rename = "type")]
    pub kind: MethodType,
    /// LoRA settings; required iff `type` is `LoRA`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora: Option<LoraConfig>,
}

/// Low-rank adaptation settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoraConfig {
    /// The adapter rank r (1–1024), e.g. 16.
    #[schemars(range(min = 1, max = 1024))]
    pub rank: u32,
    /// The scaling alpha (the update is scaled by alpha / rank), e.g. 32.
    #[schemars(range(min = 1, max = 4096))]
    pub alpha: u32,
    /// Dropout on the adapter input, in basis points (0–5000; 500 = 0.05).
    #[serde(default)]
    #[schemars(range(min = 0, max = 5000))]
    pub dropout_bps: u32,
    /// The projection modules that get adapters, by their Hugging Face names, e.g.
    /// `["q_proj", "v_proj"]`.
    #[schemars(length(min = 1, max = 7), inner(length(max = 16)))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    #[x_kube(validation = Rule::new("self.all(m, m in ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'])").message("lora.targetModules: each must be one of q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj"))]
    pub target_modules: Vec<String>,
}

/// Optimization settings (AdamW, warmup + cosine schedule).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.maxSteps) || self.warmupSteps < self.maxSteps").message("hyperparameters.warmupSteps must be below maxSteps"))]
pub struct Hyperparameters {
    /// Passes over the dataset (default 1).
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 1000))]
    pub epochs: u32,
    /// Stop after this many optimizer steps, whatever the epochs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_steps: Option<u64>,
    /// The peak learning rate as a decimal string (default "0.0002"); must be in (0, 1].
    #[serde(default = "default_lr")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?$"), length(max = 32))]
    #[x_kube(validation = Rule::new("double(self) > 0.0 && double(self) <= 1.0").message("hyperparameters.learningRate must be in (0, 1]"))]
    pub learning_rate: String,
    /// Sequences per micro-batch per worker (default 8).
    #[serde(default = "default_batch")]
    #[schemars(range(min = 1, max = 4096))]
    pub batch_size: u32,
    /// Micro-batches accumulated per optimizer step (default 1).
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 1024))]
    pub gradient_accumulation_steps: u32,
    /// Linear warmup steps before the cosine decay (default 0).
    #[serde(default)]
    pub warmup_steps: u64,
    /// Maximum tokens per sequence; longer records are truncated (default 1024).
    #[serde(default = "default_seq")]
    #[schemars(range(min = 16, max = 131072))]
    pub max_seq_len: u32,
    /// The random seed, for reproducible runs (default 42).
    #[serde(default = "default_seed")]
    pub seed: u64,
}

fn one() -> u32 {
    1
}
fn default_lr() -> String {
    "0.0002".into()
}
fn default_batch() -> u32 {
    8
}
fn default_seq() -> u32 {
    1024
}
fn default_seed() -> u64 {
    42
}

impl Default for Hyperparameters {
    fn default() -> Self {
        Self {
            epochs: 1,
            max_steps: None,
            learning_rate: default_lr(),
            batch_size: default_batch(),
            gradient_accumulation_steps: 1,
            warmup_steps: 0,
            max_seq_len: default_seq(),
            seed: default_seed(),
        }
    }
}

/// Workers and what each one gets.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrainResources {
    /// Trainer pods (nodes in torchrun terms, `PET_NNODES`); default 1.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 1024))]
    pub workers: u32,
    /// GPUs (`nvidia.com/gpu`) per worker; 0 trains on CPU. Default 1.
    #[serde(default = "one")]
    #[schemars(range(min = 0, max = 16))]
    pub gpus_per_worker: u32,
    /// CPU request per worker as a Kubernetes quantity (default "4").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?m?$"))]
    pub cpu: Option<String>,
    /// Memory request per worker as a Kubernetes quantity, e.g. "32Gi" (default "16Gi").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$"))]
    pub memory: Option<String>,
}

impl Default for TrainResources {
    fn default() -> Self {
        Self {
            workers: 1,
            gpus_per_worker: 1,
            cpu: None,
            memory: None,
        }
    }
}

/// Checkpoint settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Checkpointing {
    /// Save a checkpoint every this many optimizer steps (default 100).
    #[serde(default = "default_every")]
    #[schemars(range(min = 1))]
    pub every_steps: u32,
    /// Keep the newest this many checkpoints (default 2).
    #[serde(default = "default_keep")]
    #[schemars(range(min = 1, max = 100))]
    pub keep: u32,
}

fn default_every() -> u32 {
    100
}
fn default_keep() -> u32 {
    2
}

impl Default for Checkpointing {
    fn default() -> Self {
        Self {
            every_steps: default_every(),
            keep: default_keep(),
        }
    }
}

/// Retries, deadlines, clean-up and queueing, as in Kubeflow's `runPolicy`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunPolicy {
    /// Pod failures tolerated before the job fails (default 3); workers resume from the newest
    /// checkpoint.
    #[serde(default = "default_backoff")]
    #[schemars(range(min = 0, max = 100))]
    pub backoff_limit: u32,
    /// Fail the job when it has run this long, in seconds. A job with GPUs is reserved its
    /// GPUs × this much of the mandate's GPU-hours at admission (24 hours when unset), and
    /// its trainer Job's deadline is capped by what is left of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub active_deadline_seconds: Option<u64>,
    /// Delete the trainer Job this long after it finished, in seconds (the FineTuneJob and its
    /// result stay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds_after_finished: Option<u32>,
    /// Hold the job: no pods run while true. Kueue sets and clears it on admission.
    #[serde(default)]
    pub suspend: bool,
    /// The Kueue LocalQueue to submit to; set as the `kueue.x-k8s.io/queue-name` label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"))]
    pub queue_name: Option<String>,
}

fn default_backoff() -> u32 {
    3
}

impl Default for RunPolicy {
    fn default() -> Self {
        Self {
            backoff_limit: default_backoff(),
            active_deadline_seconds: None,
            ttl_seconds_after_finished: None,
            suspend: false,
            queue_name: None,
        }
    }
}

/// Where a FineTuneJob stands.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum FineTuneJobPhase {
    /// Waiting for a gate (proposal approved, datanet Ready, budget left).
    Pending,
    /// Suspended or waiting for admission by a queue.
    Queued,
    /// Trainer pods run.
    Running,
    /// Training finished; metrics are judged against the targets.
    Evaluating,
    /// Every target met.
    Succeeded,
    /// Training finished but a target was missed.
    TargetsMissed,
    /// Training failed; see the conditions.
    Failed,
}

/// Live training progress, written by the trainer.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// The last completed optimizer step.
    pub step: u64,
    /// The planned number of steps.
    pub total_steps: u64,
    /// Completion, e.g. "42%".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<String>,
    /// The latest training loss, as a decimal string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<String>,
    /// Training throughput in tokens per second (all workers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_second: Option<u64>,
    /// The estimated time left, e.g. "12m30s".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta: Option<String>,
    /// When the trainer last reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<Time>,
}

/// What the trainer reported about its own run. Informational only: nothing here decides
/// whether the job succeeds or is recorded on chain (see `evaluation`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrainResult {
    /// sha256 of the output weights, as the trainer computed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_digest: Option<String>,
    /// Where the model was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_uri: Option<String>,
    /// The trainer's own metrics on its validation split (`train/eval.jsonl`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricValue>,
    /// Whether every target was met by those metrics, as the trainer judged it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets_met: Option<bool>,
}

/// The operator's evaluation of the trained model: run with the operator's own trainer image,
/// in the operator's namespace, on the Datanet version's held-out records (`holdout.jsonl`,
/// which the trainer pod never mounts). Its metrics decide `Succeeded` and go on chain.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Evaluation {
    /// The evaluation Job (in the operator's namespace, `namespace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    /// The namespace the evaluation ran in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Held-out records evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub examples: Option<u32>,
    /// sha256 of the weights that were evaluated (what is recorded on chain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_digest: Option<String>,
    /// The metrics of the trained model, by rubric name (`loss`, `exactMatch`, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricValue>,
    /// The same metrics of the base model on the same records: what fine-tuning changed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub baseline: Vec<MetricValue>,
    /// The targets judged: the proposal's rubric, tightened by the job's own targets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<MetricTarget>,
    /// Whether every target was met.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets_met: Option<bool>,
}

/// The observed state of a FineTuneJob.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FineTuneJobStatus {
    /// Pending, Queued, Running, Evaluating, Succeeded, TargetsMissed or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<FineTuneJobPhase>,
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The dataset version trained on (pinned, or resolved at start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_version: Option<u32>,
    /// The Merkle root of that dataset version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_root: Option<String>,
    /// The trainer Job's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    /// Live progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// What the trainer reported (informational; written by the trainer pod).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<TrainResult>,
    /// The operator's evaluation on held-out data: what decides the outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation: Option<Evaluation>,
    /// GPU-hours used so far, as a decimal string; charged to the proposal's budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_hours_used: Option<String>,
    /// When pods first ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the job finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// The training record on chain (dataset root → model digest → metrics hash → passed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<crate::common::ChainRecord>,
    /// Standard conditions (`Ready`, `Gated`, `Suspended`, `LedgerSynced`, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// The reasons of a FineTuneJob's conditions and events (what users alert on). A failed
/// trainer Job's own reason (`BackoffLimitExceeded`, `DeadlineExceeded`, …) is passed through.
pub mod reason {
    /// Gated: a `file://` location outside the operator's dev host directories.
    pub const HOST_PATH_REFUSED: &str = "HostPathRefused";
    /// Gated: `spec.trainerImage` is not one the operator runs.
    pub const TRAINER_IMAGE_NOT_ALLOWED: &str = "TrainerImageNotAllowed";
    /// Gated: `spec.proposalRef` names no ModelProposal here.
    pub const PROPOSAL_NOT_FOUND: &str = "ProposalNotFound";
    /// Gated: the proposal is not approved (by its status, or on chain).
    pub const PROPOSAL_NOT_APPROVED: &str = "ProposalNotApproved";
    /// Gated: `spec.datanetRef` names no Datanet here.
    pub const DATANET_NOT_FOUND: &str = "DatanetNotFound";
    /// Gated: the Datanet gathers data for another proposal.
    pub const DATANET_OF_ANOTHER_PROPOSAL: &str = "DatanetOfAnotherProposal";
    /// Gated: no published version (or not the pinned one) yet.
    pub const DATANET_NOT_READY: &str = "DatanetNotReady";
    /// Gated: the version lacks the contributions the mandate's data needs ask for.
    pub const DATA_NEEDS_UNMET: &str = "DataNeedsUnmet";
    /// Gated: a location the operator does not mount.
    pub const STORAGE_UNSUPPORTED: &str = "StorageUnsupported";
    /// Gated: the mandate's other jobs hold its concurrent GPUs.
    pub const GPU_LIMIT_REACHED: &str = "GpuLimitReached";
    /// Gated: the mandate's GPU-hours are spent.
    pub const BUDGET_EXHAUSTED: &str = "BudgetExhausted";
    /// Gated False: every gate holds.
    pub const ADMITTED: &str = "Admitted";
    /// Queued: the Job waits for its Kueue queue.
    pub const AWAITING_ADMISSION: &str = "AwaitingAdmission";
    /// Queued: `spec.runPolicy.suspend` is true.
    pub const SUSPENDED: &str = "Suspended";
    /// Suspended False: the trainer pods run.
    pub const RUNNING: &str = "Running";
    /// Running: the trainer pods run.
    pub const TRAINING: &str = "Training";
    /// Evaluating: the trainer finished; its result is awaited.
    pub const AWAITING_RESULT: &str = "AwaitingResult";
    /// Evaluating: the operator's evaluation Job runs.
    pub const EVALUATING: &str = "Evaluating";
    /// Evaluating: judged; the record on chain is pending.
    pub const RECORDING_RESULT: &str = "RecordingResult";
    /// Succeeded: every target is met.
    pub const TARGETS_MET: &str = "TargetsMet";
    /// TargetsMissed: a target is missed.
    pub const TARGETS_MISSED: &str = "TargetsMissed";
    /// Suspended False: the trainer finished.
    pub const FINISHED: &str = "Finished";
    /// Failed: the trainer Job completed without a result.
    pub const NO_RESULT: &str = "NoResult";
    /// Pending: creating the trainer Job failed (retried).
    pub const JOB_NOT_CREATED: &str = "JobNotCreated";
    /// Failed: an evaluation Job the operator did not make.
    pub const FORGED_RESULT: &str = "ForgedResult";
    /// Failed: the evaluation Job failed.
    pub const EVALUATION_FAILED: &str = "EvaluationFailed";
    /// Failed: the evaluation cannot read the model's location.
    pub const EVALUATION_STORAGE_UNSUPPORTED: &str = "EvaluationStorageUnsupported";
    /// Failed: the base model's weights are not `spec.baseModel.sha256`.
    pub const BASE_MODEL_DIGEST_MISMATCH: &str = "BaseModelDigestMismatch";
    /// Failed: the dataset version's record is missing.
    pub const LINEAGE_UNKNOWN: &str = "LineageUnknown";
    /// Failed: a trainer Job failed without saying why.
    pub const JOB_FAILED: &str = "JobFailed";
    /// Event: a tenant's edit of the trainer Job's deadline was set back.
    pub const DEADLINE_RESTORED: &str = "DeadlineRestored";
    /// LedgerSynced False: the chain did not answer.
    pub const LEDGER_UNAVAILABLE: &str = "LedgerUnavailable";
}
