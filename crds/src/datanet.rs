//! `Datanet`: verifiable, paid data for one model.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::common::{ChainRecord, ConfigMapKeyRef, LocalRef};

/// A dataset gathered from contributors who are paid for verified, relevant data. The
/// operator fetches every contribution in the manifest, checks its sha256 and the
/// contributor's signature, drops duplicates, scores quality, computes each contributor's
/// reward, and seals a versioned dataset whose Merkle roots (data and rewards) go on chain.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "modelcommons.dev",
    version = "v1alpha1",
    kind = "Datanet",
    doc = "A dataset gathered from contributors who are paid for verified, relevant data: contributions are hash- and signature-checked, deduplicated and scored, and each sealed version has Merkle roots (data and rewards) on chain.",
    namespaced,
    status = "DatanetStatus",
    shortname = "dn",
    category = "modelcommons",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Proposal","type":"string","jsonPath":".spec.proposalRef.name"}"#,
    printcolumn = r#"{"name":"Version","type":"integer","jsonPath":".status.version"}"#,
    printcolumn = r#"{"name":"Accepted","type":"integer","jsonPath":".status.counts.accepted"}"#,
    printcolumn = r#"{"name":"Rejected","type":"integer","jsonPath":".status.counts.rejected"}"#,
    printcolumn = r#"{"name":"Root","type":"string","jsonPath":".status.datasetRoot","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct DatanetSpec {
    /// The ModelProposal this data is gathered for (same namespace). Cannot change after
    /// creation: rewards are paid from that proposal's mandate.
    #[x_kube(validation = Rule::new("self == oldSelf").message("proposalRef is immutable: create a new Datanet for another proposal"))]
    pub proposal_ref: LocalRef,

    /// What data is wanted and what makes it relevant; shown to contributors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub description: Option<String>,

    /// The format every contribution must have.
    pub format: DataFormat,

    /// Where the list of contributions comes from.
    pub contributions: ContributionSource,

    /// How contributions are filtered.
    #[serde(default)]
    pub curation: Curation,

    /// How contributors are paid.
    pub rewards: Rewards,
}

/// The kind of records in a contribution.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum RecordKind {
    /// JSON Lines: one JSON object per line.
    Jsonl,
}

/// The format of contributed files.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataFormat {
    /// The record format. Only `Jsonl` today.
    #[serde(rename = "type")]
    pub kind: RecordKind,
    /// The fields every record must have, e.g. `["prompt", "completion"]` for supervised
    /// fine-tuning or `["text"]` for plain text. Records missing one are rejected.
    #[schemars(
        length(min = 1, max = 16),
        inner(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"))
    )]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub fields: Vec<String>,
    /// The largest contribution accepted, in bytes (default 5 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1073741824))]
    pub max_bytes_per_contribution: Option<u64>,
}

/// Where the contributions manifest is read from: exactly one of `manifestUri` or
/// `configMapRef`. The manifest lists `{id, contributor, uri, sha256, signature, license}`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.manifestUri) != has(self.configMapRef)").message("set exactly one of contributions.manifestUri or contributions.configMapRef"))]
pub struct ContributionSource {
    /// A manifest at a storage URI: `s3://<bucket>/<key>`, `gs://<bucket>/<key>`,
    /// `az://<container>/<blob>`, `http(s)://` or `file://` (a path on the node, for
    /// single-node clusters). Object-store credentials come from `credentialsSecretRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(s3|gs|az|https?|file)://.+$"))]
    pub manifest_uri: Option<String>,
    /// A manifest stored under a key of a ConfigMap in this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<ConfigMapKeyRef>,
    /// A Secret in this namespace whose keys are object-store settings, named as the
    /// environment variables of the `object_store` crate: `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`;
    /// `GOOGLE_SERVICE_ACCOUNT_KEY`; `AZURE_STORAGE_ACCOUNT_NAME`,
    /// `AZURE_STORAGE_ACCOUNT_KEY`, `AZURE_STORAGE_ENDPOINT`, …. The curation Job (in the
    /// operator's trusted namespace) gets them as environment variables to read the
    /// contributions on `s3://`, `gs://` and `az://`, from a copy the operator makes beside
    /// it; allow the operator to read this one Secret with a Role naming it (the
    /// `CredentialsForbidden` condition gives the commands). The operator reads the manifest
    /// itself, with the credentials of its own environment. Unset: the pod's workload
    /// identity, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<LocalRef>,
}

/// How duplicates are detected.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema,
)]
pub enum Dedup {
    /// No deduplication.
    None,
    /// Byte-identical records after whitespace normalization.
    Exact,
    /// Exact plus near-duplicates (MinHash over word shingles).
    #[default]
    Near,
}

/// Filters applied during curation.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Curation {
    /// How duplicates are detected (default `Near`). Later duplicates of an earlier
    /// contribution are rejected and not paid.
    #[serde(default)]
    pub dedup: Dedup,
    /// Minimum quality score to be accepted, in basis points (0–10000; 7000 = 0.70).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 10000))]
    pub min_quality_bps: Option<u32>,
    /// At most this many accepted contributions per contributor (unset: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_per_contributor: Option<u32>,
}

/// How the reward pool is split.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema,
)]
pub enum RewardPolicy {
    /// By accepted records, weighted by quality score.
    #[default]
    QualityWeighted,
    /// By accepted records, unweighted.
    Proportional,
    /// The same amount for each contributor with at least one accepted contribution.
    Equal,
}

/// The contributors' reward pool.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rewards {
    /// The pool per dataset version, in OPEN base units as a decimal string (> 0). Funded on
    /// chain when the version is published; contributors claim with Merkle proofs.
    #[schemars(regex(pattern = r"^(0|[1-9][0-9]{0,77})$"), length(max = 78))]
    #[x_kube(validation = Rule::new("size(self) < 39 || (size(self) == 39 && self <= '340282366920938463463374607431768211455')").message("rewards.pool must be at most 2^128 - 1 base units (340282366920938463463374607431768211455), the most one RewardDistributor distribution holds"))]
    #[x_kube(validation = Rule::new("self != '0'").message("rewards.pool must be greater than zero"))]
    pub pool: String,
    /// How the pool is split (default `QualityWeighted`).
    #[serde(default)]
    pub policy: RewardPolicy,
}

/// Where a Datanet stands.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum DatanetPhase {
    /// Waiting for a manifest (or for the proposal's approval).
    Collecting,
    /// A curation Job runs.
    Curating,
    /// A sealed, versioned dataset is available.
    Ready,
    /// Curation failed; see the conditions.
    Failed,
}

/// Contribution counts of the current version.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatanetCounts {
    /// Contributions listed in the manifest.
    pub total: u32,
    /// Contributions accepted into the dataset.
    pub accepted: u32,
    /// Contributions rejected, all reasons together.
    pub rejected: u32,
    /// Rejections by reason (`Unreachable`, `TooLarge`, `HashMismatch`, `BadSignature`,
    /// `BadFormat`, `Duplicate`, `NearDuplicate`, `LowQuality`, `OverLimit`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub rejected_by_reason: std::collections::BTreeMap<String, u32>,
}

/// The result a curation Job reports.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CurationResult {
    /// The version it curated.
    pub version: u32,
    /// The sha256 of the manifest it read.
    pub manifest_sha256: String,
    /// Counts by outcome.
    pub counts: DatanetCounts,
    /// The Merkle root over the accepted records (absent when nothing was accepted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_root: Option<String>,
    /// The Merkle root over the reward map (absent when nobody is paid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reward_root: Option<String>,
    /// The content-addressed curated dataset (JSONL).
    pub dataset_uri: String,
    /// The content-addressed curation report: every item's outcome, every contributor's
    /// reward with its reason and index (what a claim's proof is built from).
    pub reward_map_uri: String,
    /// The OPEN base units the reward map pays in total.
    pub reward_total: String,
}

/// The observed state of a Datanet.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatanetStatus {
    /// Collecting, Curating, Ready or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<DatanetPhase>,
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The sealed dataset version (1, 2, …); a new version when the manifest changes. A
    /// mirror of the operator's own record of published versions (in its trusted namespace),
    /// which is what decides: rewriting this changes nothing and is written back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// Counts of the current version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<DatanetCounts>,
    /// The Merkle root over the accepted records (0x + 64 hex digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_root: Option<String>,
    /// The Merkle root over the reward map (OpenZeppelin MerkleProof-compatible leaves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reward_root: Option<String>,
    /// The content-addressed curated dataset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_uri: Option<String>,
    /// The content-addressed reward map (contributor → amount → reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reward_map_uri: Option<String>,
    /// The sha256 of the manifest this version was curated from; a manifest with another
    /// digest makes a new version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_sha256: Option<String>,
    /// The OPEN base units the version's reward map pays in total (the pool, to the unit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reward_total: Option<String>,
    /// The on-chain publication of this version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<ChainRecord>,
    /// Standard conditions (`Ready`, `LedgerSynced`, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// The reasons of a Datanet's conditions and events (what users alert on).
pub mod reason {
    /// Curating: the curated artifacts cannot be read back yet (retried).
    pub const ARTIFACTS_UNREADABLE: &str = "ArtifactsUnreadable";
    /// Curating: the curation Job finished; its result is awaited.
    pub const AWAITING_RESULT: &str = "AwaitingResult";
    /// Stalled: the operator may not read `credentialsSecretRef` (the message gives the Role to create).
    pub const CREDENTIALS_FORBIDDEN: &str = "CredentialsForbidden";
    /// Stalled: `credentialsSecretRef` names no Secret.
    pub const CREDENTIALS_MISSING: &str = "CredentialsMissing";
    /// Curating: the curation Job runs.
    pub const CURATING: &str = "Curating";
    /// Stalled: the curation Job failed (its last log lines are in the message).
    pub const CURATION_FAILED: &str = "CurationFailed";
    /// Failed: the curation Job reported another version or manifest.
    pub const CURATION_MISMATCH: &str = "CurationMismatch";
    /// Curating: a failed curation was retried (`modelcommons.dev/retry-curation`).
    pub const CURATION_RETRIED: &str = "CurationRetried";
    /// Event: a curation Job was created.
    pub const CURATION_STARTED: &str = "CurationStarted";
    /// Failed: a curation Job or result the operator did not make.
    pub const FORGED_RESULT: &str = "ForgedResult";
    /// LedgerSynced True: published versions are on chain.
    pub const IN_SYNC: &str = "InSync";
    /// LedgerSynced False: the chain did not answer (retried).
    pub const LEDGER_UNAVAILABLE: &str = "LedgerUnavailable";
    /// Stalled: the contributions manifest does not parse or check.
    pub const MANIFEST_INVALID: &str = "ManifestInvalid";
    /// Collecting: the manifest cannot be fetched yet (retried).
    pub const MANIFEST_UNAVAILABLE: &str = "ManifestUnavailable";
    /// Stalled: the manifest is at a location the operator does not read.
    pub const MANIFEST_UNSUPPORTED: &str = "ManifestUnsupported";
    /// Failed: the curation Job completed without a result.
    pub const NO_RESULT: &str = "NoResult";
    /// Collecting: the proposal is not approved yet.
    pub const PROPOSAL_NOT_APPROVED: &str = "ProposalNotApproved";
    /// Ready: the version is curated, verified and published on chain.
    pub const PUBLISHED: &str = "Published";
    /// Failed: the pool is more than is left of the mandate's reward budget.
    pub const REWARD_BUDGET_EXCEEDED: &str = "RewardBudgetExceeded";
    /// Stalled: the operator's trusted namespace does not exist.
    pub const TRUSTED_NAMESPACE_MISSING: &str = "TrustedNamespaceMissing";
}
