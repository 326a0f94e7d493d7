//! `RLHFRound`: priced judgment.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::common::{ChainRecord, ConfigMapKeyRef, LocalRef};

/// One round of alignment: response pairs are sampled from a fine-tuned model, bonded
/// validators commit and then reveal their preferences on chain, the operator computes the
/// consensus, rewards useful judgments and slashes poor ones, and a DPO FineTuneJob trains on
/// the consensus preferences.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "modelcommons.dev",
    version = "v1alpha1",
    kind = "RLHFRound",
    doc = "One round of alignment: bonded validators commit and reveal preferences over sampled response pairs on chain, are rewarded for useful judgments and penalized for poor ones, and a DPO job trains on the consensus.",
    plural = "rlhfrounds",
    namespaced,
    status = "RLHFRoundStatus",
    shortname = "rlhf",
    category = "modelcommons",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Model","type":"string","jsonPath":".spec.modelRef.name"}"#,
    printcolumn = r#"{"name":"Items","type":"integer","jsonPath":".status.items"}"#,
    printcolumn = r#"{"name":"Reveals","type":"integer","jsonPath":".status.reveals"}"#,
    printcolumn = r#"{"name":"Slashed","type":"integer","jsonPath":".status.slashedValidators","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RLHFRoundSpec {
    /// The Succeeded FineTuneJob whose model is aligned (same namespace). Immutable: the
    /// judgments are about this model's responses.
    #[x_kube(validation = Rule::new("self == oldSelf").message("modelRef is immutable: judgments are about this model's responses; start a new round for another model"))]
    pub model_ref: LocalRef,

    /// The prompts responses are sampled for: JSONL with a `prompt` field per line.
    pub prompts: PromptSource,

    /// Response pairs sampled and judged in this round (1–100000).
    #[schemars(range(min = 1, max = 100000))]
    pub pairs: u32,

    /// Who may judge and how many must agree.
    pub validators: ValidatorPolicy,

    /// The reward pool and the penalty for poor judgments.
    pub rewards: JudgmentRewards,

    /// When commits and reveals close, counted from the publication of the items.
    pub deadlines: Deadlines,

    /// The preference optimization run on the consensus.
    #[serde(default)]
    pub alignment: Alignment,
}

/// Where prompts come from: exactly one of `uri` or `configMapRef`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.uri) != has(self.configMapRef)").message("set exactly one of prompts.uri or prompts.configMapRef"))]
pub struct PromptSource {
    /// A JSONL file at a storage URI (`s3://`, `gs://`, `az://`, `http(s)://`, `file://`,
    /// `pvc://`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(s3|gs|az|https?|file|pvc)://.+$"))]
    pub uri: Option<String>,
    /// A JSONL document under a ConfigMap key in this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<ConfigMapKeyRef>,
}

/// Validator admission and consensus.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValidatorPolicy {
    /// The minimum bond to judge, in OPEN base units as a decimal string (> 0).
    #[schemars(regex(pattern = r"^(0|[1-9][0-9]{0,77})$"), length(max = 78))]
    #[x_kube(validation = Rule::new("size(self) < 78 || self <= '115792089237316195423570985008687907853269984665640564039457584007913129639935'").message("validators.minBond must be at most 2^256 - 1 base units (115792089237316195423570985008687907853269984665640564039457584007913129639935), the most a uint256 on chain holds"))]
    #[x_kube(validation = Rule::new("self != '0'").message("validators.minBond must be greater than zero: an unbonded validator cannot be penalized"))]
    pub min_bond: String,
    /// Judgments needed per item before its consensus counts (1–101).
    #[schemars(range(min = 1, max = 101))]
    pub quorum_per_item: u32,
    /// The share of gold items (known answers, hidden among the rest), in basis points
    /// (0–5000; 1000 = 10%).
    #[serde(default)]
    #[schemars(range(min = 0, max = 5000))]
    pub gold_share_bps: u32,
}

/// Rewards and penalties for judgments.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct JudgmentRewards {
    /// The pool split among validators who agree with strong consensus and pass gold items,
    /// in OPEN base units as a decimal string (> 0).
    #[schemars(regex(pattern = r"^(0|[1-9][0-9]{0,77})$"), length(max = 78))]
    #[x_kube(validation = Rule::new("size(self) < 39 || (size(self) == 39 && self <= '340282366920938463463374607431768211455')").message("rewards.pool must be at most 2^128 - 1 base units (340282366920938463463374607431768211455), the most one RewardDistributor distribution holds"))]
    #[x_kube(validation = Rule::new("self != '0'").message("rewards.pool must be greater than zero"))]
    pub pool: String,
    /// The share of a validator's bond slashed for disagreeing with strong consensus or
    /// failing gold items, in basis points (0–10000; 500 = 5%).
    #[schemars(range(min = 0, max = 10000))]
    pub penalty_rate_bps: u32,
}

/// Commit and reveal deadlines, as durations after the items are published. Commits close
/// first, then reveals; a reveal window of zero would make every commit worthless.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("duration(self.commit) < duration(self.reveal)").message("deadlines.commit must be before deadlines.reveal (reveals open when commits close)"))]
pub struct Deadlines {
    /// Commits close this long after publication, e.g. "24h" (at least 1m).
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"), length(max = 32))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1m')").message("deadlines.commit must be at least 1m"))]
    pub commit: String,
    /// Reveals close this long after publication, e.g. "36h".
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"), length(max = 32))]
    pub reveal: String,
}

/// The alignment method.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema,
)]
pub enum AlignmentMethod {
    /// Direct Preference Optimization against a frozen reference.
    #[default]
    DPO,
}

/// Preference optimization on the consensus.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Alignment {
    /// Only `DPO` today.
    #[serde(default)]
    pub method: AlignmentMethod,
    /// DPO's beta (strength of the KL anchor to the reference), a decimal string in (0, 10];
    /// default "0.1".
    #[serde(default = "default_beta")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?$"), length(max = 32))]
    #[x_kube(validation = Rule::new("double(self) > 0.0 && double(self) <= 10.0").message("alignment.beta must be in (0, 10]"))]
    pub beta: String,
    /// Passes over the preference pairs (default 1).
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 100))]
    pub epochs: u32,
}

fn default_beta() -> String {
    "0.1".into()
}
fn one() -> u32 {
    1
}

impl Default for Alignment {
    fn default() -> Self {
        Self {
            method: AlignmentMethod::DPO,
            beta: default_beta(),
            epochs: 1,
        }
    }
}

/// Where a round stands.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum RLHFRoundPhase {
    /// Waiting for the model (a Succeeded FineTuneJob).
    Pending,
    /// A generation Job samples response pairs.
    Generating,
    /// Items are published; validators commit, then reveal.
    Collecting,
    /// Consensus, rewards and slashes are computed and settled on chain.
    Settling,
    /// A DPO FineTuneJob trains on the consensus.
    Aligning,
    /// Aligned and evaluated.
    Completed,
    /// See the conditions.
    Failed,
}

/// The observed state of an RLHFRound.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RLHFRoundStatus {
    /// Pending, Generating, Collecting, Settling, Aligning, Completed or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RLHFRoundPhase>,
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Items published (pairs, gold items included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<u32>,
    /// The Merkle root of the published item set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items_root: Option<String>,
    /// Commits received on chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commits: Option<u32>,
    /// Valid reveals received on chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reveals: Option<u32>,
    /// Validators slashed at settlement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slashed_validators: Option<u32>,
    /// The Merkle root of the validators' rewards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reward_root: Option<String>,
    /// The settlement transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settlement: Option<ChainRecord>,
    /// The DPO FineTuneJob created on the consensus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alignment_job: Option<String>,
    /// Standard conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}
