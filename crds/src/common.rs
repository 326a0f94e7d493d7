//! Types and formats shared by the kinds.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// An EVM address: `0x` followed by 40 hex digits.
pub const EVM_ADDRESS: &str = r"^0x[0-9a-fA-F]{40}$";
/// A token amount in base units as a decimal string without leading zeros (at most 78
/// digits; the schema also refuses values above 2^256 - 1).
pub const TOKEN_AMOUNT: &str = r"^(0|[1-9][0-9]{0,77})$";
/// A lowercase sha256 digest: 64 hex digits.
pub const SHA256_HEX: &str = r"^[0-9a-f]{64}$";
/// A non-negative decimal number as a string, e.g. `0.85`, `12`, `3e-4` is not allowed.
pub const DECIMAL: &str = r"^[0-9]+(\.[0-9]+)?$";
/// A Go-style duration: `90s`, `15m`, `1h30m`.
pub const DURATION: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$";
/// A storage URI: s3, gs, az, http(s), file or pvc.
pub const STORAGE_URI: &str = r"^(s3|gs|az|https?|file|pvc)://.+$";

/// A reference to another modelcommons object in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalRef {
    /// The name of the referenced object (same namespace).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A key of a ConfigMap in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapKeyRef {
    /// The ConfigMap's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The key within the ConfigMap.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Which way a metric should move.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum Direction {
    /// Higher is better (accuracy, exact match, win rate).
    Maximize,
    /// Lower is better (loss, perplexity, latency).
    Minimize,
}

/// A metric with a target: the rubric models are judged by.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!(self.name in ['loss', 'perplexity']) || self.direction == 'Minimize'").message("loss and perplexity must be judged with direction Minimize (lower is better)"),
    validation = Rule::new("!(self.name in ['accuracy', 'exactMatch', 'preferenceAccuracy', 'winRate']) || (self.direction == 'Maximize' && double(self.threshold) <= 1.0)").message("accuracy-like metrics (accuracy, exactMatch, preferenceAccuracy, winRate) are fractions: direction Maximize and threshold at most 1"),
    validation = Rule::new("self.name != 'perplexity' || double(self.threshold) >= 1.0").message("perplexity is at least 1: a threshold below 1 can never be met")
)]
pub struct MetricTarget {
    /// The metric's name as the trainer's `eval` reports it: `loss`, `perplexity`, `accuracy`,
    /// `exactMatch`, `preferenceAccuracy`, `winRate`, or a task metric of your own.
    #[schemars(regex(pattern = r"^[a-zA-Z][a-zA-Z0-9_]{0,62}$"), length(max = 63))]
    pub name: String,
    /// Whether higher (`Maximize`) or lower (`Minimize`) values are better.
    pub direction: Direction,
    /// The value to reach, as a decimal string (e.g. "0.85"): at least this when maximizing,
    /// at most this when minimizing.
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?$"), length(max = 32))]
    pub threshold: String,
}

/// A measured metric value.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricValue {
    /// The metric's name.
    pub name: String,
    /// The measured value, as a decimal string.
    pub value: String,
}

/// A record written to the chain.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChainRecord {
    /// The transaction hash (0x + 64 hex digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_hash: Option<String>,
    /// The block the transaction was included in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block: Option<u64>,
}
