//! `ModelDeployment`: the last mile — a permissioned, metered, OpenAI-compatible endpoint.
//!
//! Named `ModelDeployment`, not `Deployment`, so it never shadows `apps/v1 Deployment` in
//! kubectl.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Serves a trained model as an OpenAI-compatible (and MCP) endpoint with API keys, per-
/// consumer rate limits and token metering; usage revenue is settled per epoch among the model
/// host, the data contributors and the validators.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "modelcommons.dev",
    version = "v1alpha1",
    kind = "ModelDeployment",
    doc = "Serves a trained model as a permissioned, metered OpenAI-compatible (and MCP) endpoint with API keys, per-consumer rate limits, canary rollouts and usage settled on chain.",
    namespaced,
    status = "ModelDeploymentStatus",
    shortname = "mdep",
    category = "modelcommons",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.readyReplicas"}"#,
    printcolumn = r#"{"name":"Canary","type":"integer","jsonPath":".spec.canary.trafficPercent"}"#,
    printcolumn = r#"{"name":"URL","type":"string","jsonPath":".status.url"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!(has(self.replicas) && has(self.autoscaling))").message("set replicas or autoscaling, not both"),
    validation = Rule::new("!has(self.canary) || oldSelf.hasValue()").optional_old_self(true).message("canary needs a previous revision: create the ModelDeployment without canary, then change modelRef and add canary to roll out the new revision")
)]
pub struct ModelDeploymentSpec {
    /// The model to serve: exactly one of a FineTuneJob, an RLHFRound, or an artifact URI
    /// with its digest. Changing it rolls out a new revision (gradually with `canary`).
    pub model_ref: ModelRef,

    /// A fixed number of server replicas (default 1). Not with `autoscaling`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: Option<u32>,

    /// Horizontal autoscaling on in-flight requests. Not with `replicas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,

    /// What each replica gets.
    #[serde(default)]
    pub resources: ServeResources,

    /// Who may call the endpoint: API keys from Secrets, or `public: true`.
    pub access: Access,

    /// Per-consumer limits; requests over them get HTTP 429 with `Retry-After`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limits: Option<RateLimits>,

    /// The price of usage, settled per epoch on chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing: Option<Pricing>,

    /// Protocols served (default `[openai]`).
    #[serde(default = "default_integrations")]
    #[schemars(length(min = 1, max = 2))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub integrations: Vec<Integration>,

    /// Gradual rollout of a changed `modelRef`: the new revision gets this share of traffic,
    /// the previous one the rest, until `trafficPercent` reaches 100 (promotion).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<Canary>,

    /// Expose the endpoint through the Gateway API: an `HTTPRoute` named like this
    /// ModelDeployment, attached to these Gateways, sends traffic to its Service. During a
    /// canary the route's backend weights split the traffic exactly (`trafficPercent` to the
    /// new revision) instead of the replica ratio. Needs the Gateway API CRDs
    /// (`gateway.networking.k8s.io/v1`) and a Gateway implementation; without the CRDs the
    /// `Routed` condition says so and the Service still serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<Route>,
}

/// An `HTTPRoute` for the endpoint.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    /// The Gateways (or their listeners) the route attaches to.
    #[schemars(length(min = 1, max = 32))]
    pub parent_refs: Vec<GatewayRef>,
    /// Host names the route matches (empty: every host name of the Gateway's listeners).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 16),
        inner(regex(
            pattern = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
        ))
    )]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub hostnames: Vec<String>,
}

/// A Gateway, as a Gateway API `parentRef`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayRef {
    /// The Gateway's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The Gateway's namespace (default: this ModelDeployment's). Another namespace's
    /// Gateway must allow routes from this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
    /// One listener of the Gateway, by name (default: all that accept the route).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub section_name: Option<String>,
}

fn default_integrations() -> Vec<Integration> {
    vec![Integration::Openai]
}

/// The model served: exactly one source.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.fineTuneJob), has(self.rlhfRound), has(self.artifact)].filter(x, x).size() == 1").message("modelRef: set exactly one of fineTuneJob, rlhfRound or artifact"))]
pub struct ModelRef {
    /// A Succeeded FineTuneJob in this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub fine_tune_job: Option<String>,
    /// A Completed RLHFRound in this namespace (its aligned model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub rlhf_round: Option<String>,
    /// A model directory by URI and digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<Artifact>,
}

/// A model directory in the Hugging Face layout, by URI and weights digest.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Artifact {
    /// `s3://`, `gs://`, `az://`, `http(s)://`, `file://` or `pvc://<claim>/<path>`.
    #[schemars(regex(pattern = r"^(s3|gs|az|https?|file|pvc)://.+$"))]
    pub uri: String,
    /// sha256 of the weights (lowercase hex), verified before serving.
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub sha256: String,
}

/// Autoscaling bounds.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas").message("autoscaling.minReplicas must not exceed maxReplicas"))]
pub struct Autoscaling {
    /// The fewest replicas (0 allows scale to zero).
    #[schemars(range(min = 0, max = 1000))]
    pub min_replicas: u32,
    /// The most replicas.
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: u32,
    /// In-flight requests per replica to scale at (default 8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub target_concurrency: Option<u32>,
}

/// Resources per server replica.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServeResources {
    /// GPUs (`nvidia.com/gpu`) per replica (default 0: CPU serving).
    #[serde(default)]
    #[schemars(range(min = 0, max = 16))]
    pub gpus: u32,
    /// CPU request as a Kubernetes quantity (default "2").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?m?$"))]
    pub cpu: Option<String>,
    /// Memory request as a Kubernetes quantity (default "8Gi").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$"))]
    pub memory: Option<String>,
}

/// Access control.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.public || size(self.apiKeySecrets) > 0").message("access: name at least one apiKeySecrets entry, or set public: true to serve without keys"))]
pub struct Access {
    /// Serve without API keys (rate limits then apply per client address).
    #[serde(default)]
    pub public: bool,
    /// Secrets in this namespace holding API keys: each key of each Secret is one consumer
    /// (the key name) and its token (the value).
    #[serde(default)]
    #[schemars(length(max = 64), inner(length(min = 1, max = 253)))]
    pub api_key_secrets: Vec<String>,
    /// If set, only these consumers (Secret key names) may call; others get HTTP 403.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1024), inner(length(min = 1, max = 253)))]
    pub allowed_consumers: Vec<String>,
}

/// Per-consumer rate limits.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimits {
    /// Requests per minute per consumer (> 0).
    #[schemars(range(min = 1))]
    pub requests_per_minute: u32,
    /// Prompt + completion tokens per minute per consumer (> 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub tokens_per_minute: Option<u64>,
}

/// Usage pricing.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Pricing {
    /// The price per 1000 tokens (prompt + completion), in OPEN base units as a decimal string.
    #[schemars(regex(pattern = r"^(0|[1-9][0-9]{0,77})$"), length(max = 78))]
    #[x_kube(validation = Rule::new("size(self) < 78 || self <= '115792089237316195423570985008687907853269984665640564039457584007913129639935'").message("pricing.per1kTokens must be at most 2^256 - 1 base units (115792089237316195423570985008687907853269984665640564039457584007913129639935), the most a uint256 on chain holds"))]
    pub per_1k_tokens: String,
    /// The settlement epoch, e.g. "24h" (default "24h", at least 1m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"), length(max = 32))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1m')").message("pricing.epoch must be at least 1m"))]
    pub epoch: Option<String>,
}

/// A protocol the server speaks.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Integration {
    /// The OpenAI HTTP API: `/v1/models`, `/v1/completions`, `/v1/chat/completions`.
    Openai,
    /// The Model Context Protocol, for agent frameworks.
    Mcp,
}

/// A canary rollout step.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Canary {
    /// The new revision's share of traffic, 0–100; 100 promotes it.
    #[schemars(range(min = 0, max = 100))]
    pub traffic_percent: u32,
}

/// Where a deployment stands.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum ModelDeploymentPhase {
    /// Waiting for the model.
    Pending,
    /// A revision rolls out.
    Rolling,
    /// Serving at the desired replicas.
    Ready,
    /// Serving below the desired replicas, or failing.
    Degraded,
}

/// The observed state of a ModelDeployment.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelDeploymentStatus {
    /// Pending, Rolling, Ready or Degraded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ModelDeploymentPhase>,
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The in-cluster URL of the endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Ready replicas over desired, e.g. "2/2".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<String>,
    /// The digest of the model the newest revision serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_revision: Option<String>,
    /// The digest served before the newest revision (receives the non-canary traffic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_revision: Option<String>,
    /// Standard conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// The `Routed` condition: whether the HTTPRoute of `spec.route` is in place and accepted.
pub const ROUTED: &str = "Routed";

/// The reasons of a ModelDeployment's conditions and events (what users alert on).
pub mod reason {
    /// Ready: every desired replica serves the one revision.
    pub const SERVING: &str = "Serving";
    /// Ready: a canary serves its share beside the stable revision.
    pub const CANARY_SERVING: &str = "CanaryServing";
    /// Reconciling: the canary's replicas are starting.
    pub const CANARY_STARTING: &str = "CanaryStarting";
    /// Reconciling: a new revision rolls out.
    pub const ROLLING: &str = "Rolling";
    /// Reconciling: no replica has loaded the model yet.
    pub const STARTING: &str = "Starting";
    /// Stalled: some replicas are unavailable although the rollout is done.
    pub const REPLICAS_UNAVAILABLE: &str = "ReplicasUnavailable";
    /// Stalled: `modelRef.fineTuneJob` names no FineTuneJob in this namespace.
    pub const MODEL_NOT_FOUND: &str = "ModelNotFound";
    /// Reconciling: the operator has not judged the FineTuneJob's model yet (or, with a
    /// ledger, its judgment is not on chain yet).
    pub const MODEL_NOT_READY: &str = "ModelNotReady";
    /// Stalled: the operator's evaluation found that the FineTuneJob's model misses its
    /// targets: it is not served.
    pub const MODEL_TARGETS_MISSED: &str = "ModelTargetsMissed";
    /// Stalled: the chain's record of the FineTuneJob's training differs from the operator's
    /// (another digest, or not passed): nothing is served until someone looks.
    pub const LINEAGE_MISMATCH: &str = "LineageMismatch";
    /// Stalled: `modelRef.rlhfRound` is not served yet.
    pub const SOURCE_NOT_SUPPORTED: &str = "SourceNotSupported";
    /// Stalled: the model is at a location the operator does not mount.
    pub const STORAGE_UNSUPPORTED: &str = "StorageUnsupported";
    /// Stalled: a `file://` model outside the dev host directories.
    pub const HOST_PATH_REFUSED: &str = "HostPathRefused";
    /// Routed True: the Gateways accepted the route.
    pub const ACCEPTED: &str = "Accepted";
    /// Routed True: the route is applied; no Gateway has reported on it yet.
    pub const ROUTE_APPLIED: &str = "RouteApplied";
    /// Routed False: a Gateway refused the route.
    pub const ROUTE_NOT_ACCEPTED: &str = "RouteNotAccepted";
    /// Routed False: `spec.route` without the Gateway API installed.
    pub const GATEWAY_API_MISSING: &str = "GatewayAPIMissing";
    /// Event: a canary became the stable revision.
    pub const PROMOTED: &str = "Promoted";
}
