//! Datanet curation: what the `curate` Job computes from a contributions manifest, the
//! Datanet's spec and the contributed bytes — the curated dataset, every contribution's
//! outcome with its reason, every contributor's reward with its reason, and the Merkle roots
//! of both. Pure apart from reading the bytes through a [`Fetch`]; no Kubernetes, no chain.
//!
//! Each contribution, in manifest order, gets exactly one [`Reason`] — the first check it
//! fails, in this order:
//!
//! 1. `BadSignature`: the signature is not the listed contributor's over
//!    (Datanet id, manifest sha256) — checked first, so a forged entry makes the Job fetch
//!    nothing (a manifest sha256 that is not 64 lowercase hex digits is `HashMismatch`);
//! 2. `Unreachable` / `TooLarge`: the bytes could not be read (after retries), or exceed
//!    `format.maxBytesPerContribution` (default [`DEFAULT_MAX_BYTES`]);
//! 3. `HashMismatch`: the bytes' sha256 is not the manifest's;
//! 4. `BadFormat`: not UTF-8 JSON Lines whose every non-blank line is an object with every
//!    field of `format.fields`;
//! 5. `Duplicate` / `NearDuplicate`: *every* record repeats a record already in the dataset
//!    (exactly: same declared fields after whitespace normalization; nearly: MinHash
//!    estimate of the Jaccard similarity of word shingles at least
//!    [`Options::near_duplicate_threshold`]). The earlier contribution in manifest order
//!    wins. A contribution with some new records is accepted with only those;
//! 6. `LowQuality`: the mean quality score of its new records is below
//!    `curation.minQualityBps` (the score: see `records::quality_bps`);
//! 7. `OverLimit`: its contributor already has `curation.maxPerContributor` accepted;
//! 8. otherwise `Accepted`: its new records join the dataset.
//!
//! A rejected contribution leaves no trace in the dataset: a later copy of it can still be
//! accepted. A bad contribution never fails the curation; only invalid inputs are an
//! [`Error`].
//!
//! The unit of data and of pay is the **record** (a JSONL line), as the Datanet API says:
//! the pool is split by accepted records, weighted by their quality under `QualityWeighted`,
//! unweighted under `Proportional`, and equally per paid contributor under `Equal`, in
//! integer base units that sum exactly to the pool (largest remainders get the rounding).
//!
//! Both Merkle trees are OpenZeppelin `StandardMerkleTree`s built by the ledger's
//! [`PayoutTree`]:
//!
//! - **reward root**: leaves `(uint256 index, address contributor, uint256 amount)`, one per
//!   contributor paid more than zero, indexed in address order — what the
//!   RewardDistributor's `claim` checks; [`CurationReport::proof_for`] gives the proof;
//! - **dataset root**: leaves `(uint256 index, address contributor, bytes32 sha256(line))`,
//!   one per line of the curated JSONL (without its newline), in order; `bytes32` encodes as
//!   `uint256` does, so the same tree type serves. An item's lines are
//!   `firstRecord .. firstRecord + records` of the report.
//!
//! Same inputs, same bytes: the report's JSON and the dataset are byte-identical on every
//! run, whatever the fetch concurrency.
//!
//! [`contribution`]: the manifest and the contributors' signatures (what `modelcommons
//! contribute sign` makes).

use std::collections::{BTreeMap, HashMap};

use alloy::primitives::{Address, B256, U256};
use futures_util::stream::{self, StreamExt};
use modelcommons_crds::datanet::{DataFormat, DatanetCounts, DatanetSpec, Dedup, RewardPolicy};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::contribution::{Contribution, Manifest, SignatureError, sha256_hex};
use modelcommons_ledger::merkle::{Payout, PayoutTree};

pub mod contribution;
mod egress;
mod fetch;
mod minhash;
mod object;
mod records;
mod rewards;
mod verify;

pub use egress::{ALLOW_ENV, Egress, is_public};
pub use fetch::{
    AnyFetch, DEFAULT_ATTEMPTS, DEFAULT_BACKOFF, Fetch, FetchError, FileFetch, HttpFetch,
    MAX_BACKOFF, MAX_REDIRECTS, REQUEST_TIMEOUT,
};
pub use object::{
    ObjectFetch, RETRY_TIMEOUT, SCHEMES as OBJECT_SCHEMES, env_options, is_object_uri,
};
pub use verify::{Forgery, verify};

/// The largest contribution when `format.maxBytesPerContribution` is unset: 5 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 5 * 1024 * 1024;
/// The default [`Options::near_duplicate_threshold`].
pub const DEFAULT_NEAR_DUPLICATE_THRESHOLD: f64 = 0.5;
/// The default [`Options::shingle_words`].
pub const DEFAULT_SHINGLE_WORDS: usize = 3;
/// The default [`Options::concurrency`].
pub const DEFAULT_CONCURRENCY: usize = 8;

/// Why curation could not run at all. Messages say what was expected and what to fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The manifest is not YAML/JSON of the manifest's shape.
    #[error(
        "the contributions manifest does not parse: {0}. Expected YAML or JSON: `contributions:` and a list of {{id, contributor, uri, sha256, signature, license}} entries, as `modelcommons contribution sign` prints them"
    )]
    Manifest(String),
    /// Two entries share an id.
    #[error(
        "the manifest lists the id {id:?} twice (entries {first} and {second}); ids must be unique: rename or remove one"
    )]
    DuplicateId {
        /// The repeated id.
        id: String,
        /// The 1-based position of its first entry.
        first: usize,
        /// The 1-based position of its second entry.
        second: usize,
    },
    /// `rewards.pool` is not a positive decimal integer.
    #[error(
        "rewards.pool {0:?} is not a decimal number of base units greater than zero (e.g. \"500000000000000000000\" for 500 OPEN)"
    )]
    Pool(String),
    /// `rewards.pool` does not fit a RewardDistributor distribution.
    #[error(
        "rewards.pool {0} is above 2^128 - 1 base units, the most one RewardDistributor distribution holds; lower it"
    )]
    PoolTooLarge(String),
    /// The Datanet id is not `namespace/name`.
    #[error(
        "the Datanet id {0:?} is not namespace/name (the id contributors sign their contributions for)"
    )]
    DatanetId(String),
    /// An [`Options`] value is out of range.
    #[error("invalid curation option: {0}")]
    Options(String),
    /// The HTTP client could not be built.
    #[error("building the HTTP client for contributions: {0}")]
    HttpClient(String),
}

impl Error {
    /// A short label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Manifest(_) | Error::DuplicateId { .. } => "manifest",
            Error::Pool(_) | Error::PoolTooLarge(_) => "pool",
            Error::DatanetId(_) => "datanet_id",
            Error::Options(_) => "options",
            Error::HttpClient(_) => "http_client",
        }
    }
}

/// The result type of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The outcome of one contribution: accepted, or the reason it was rejected (see the module
/// docs for the order of the checks).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// In the dataset, paid.
    Accepted,
    /// The bytes could not be read, after retries.
    Unreachable,
    /// More bytes than `format.maxBytesPerContribution`.
    TooLarge,
    /// The bytes' sha256 differs from the manifest's (or the manifest's is malformed).
    HashMismatch,
    /// Not signed by the listed contributor for this Datanet and hash.
    BadSignature,
    /// Not JSON Lines of the declared fields.
    BadFormat,
    /// Every record exactly repeats one already accepted.
    Duplicate,
    /// Every record repeats or nearly repeats one already accepted, at least one nearly.
    NearDuplicate,
    /// Mean quality below `curation.minQualityBps`.
    LowQuality,
    /// The contributor already has `curation.maxPerContributor` accepted contributions.
    OverLimit,
}

impl Reason {
    /// The name used in reports and in `status.counts.rejectedByReason`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Accepted => "Accepted",
            Reason::Unreachable => "Unreachable",
            Reason::TooLarge => "TooLarge",
            Reason::HashMismatch => "HashMismatch",
            Reason::BadSignature => "BadSignature",
            Reason::BadFormat => "BadFormat",
            Reason::Duplicate => "Duplicate",
            Reason::NearDuplicate => "NearDuplicate",
            Reason::LowQuality => "LowQuality",
            Reason::OverLimit => "OverLimit",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Tuning that the Datanet spec does not (yet) carry. The defaults are documented on the
/// `DEFAULT_*` constants.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Options {
    /// A record is a near duplicate of an earlier one when the MinHash estimate of the
    /// Jaccard similarity of their word-shingle sets is at least this (0 < t ≤ 1; default
    /// 0.5: with 3-word shingles, a 50-word record with a few words changed stays above it,
    /// while different texts on one topic stay far below).
    pub near_duplicate_threshold: f64,
    /// Words per shingle (1–16; default 3).
    pub shingle_words: usize,
    /// Contributions fetched at once (≥ 1; default 8). Results do not depend on it.
    pub concurrency: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            near_duplicate_threshold: DEFAULT_NEAR_DUPLICATE_THRESHOLD,
            shingle_words: DEFAULT_SHINGLE_WORDS,
            concurrency: DEFAULT_CONCURRENCY,
        }
    }
}

impl Options {
    fn validate(&self) -> Result<()> {
        let t = self.near_duplicate_threshold;
        if !(t > 0.0 && t <= 1.0) {
            return Err(Error::Options(format!(
                "nearDuplicateThreshold must be in (0, 1], got {t}"
            )));
        }
        if !(1..=16).contains(&self.shingle_words) {
            return Err(Error::Options(format!(
                "shingleWords must be 1 to 16, got {}",
                self.shingle_words
            )));
        }
        if self.concurrency == 0 {
            return Err(Error::Options("concurrency must be at least 1".into()));
        }
        Ok(())
    }
}

/// U256 as a decimal string in JSON (base units, "wei strings").
mod decimal {
    use alloy::primitives::U256;
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub fn serialize<S: Serializer>(v: &U256, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<U256, D::Error> {
        let s = String::deserialize(d)?;
        U256::from_str_radix(&s, 10).map_err(D::Error::custom)
    }
}

/// The curation of one manifest: the reward map and the audit record of the version.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CurationReport {
    /// The Datanet id (`namespace/name`) the contributions were signed for.
    pub datanet: String,
    /// sha256 of the manifest text curated.
    pub manifest_sha256: String,
    /// The settings in effect.
    pub parameters: Parameters,
    /// Contributions by outcome.
    pub counts: Counts,
    /// Every contribution's outcome, in manifest order.
    pub items: Vec<ItemOutcome>,
    /// The curated dataset.
    pub dataset: Dataset,
    /// The Merkle root over the dataset's records; `None` when no record was accepted.
    pub dataset_root: Option<B256>,
    /// Every contributor's reward.
    pub rewards: RewardMap,
    /// The Merkle root over the paid rewards; `None` when nobody is paid.
    pub reward_root: Option<B256>,
}

/// The settings a curation ran with, from the spec and the [`Options`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Parameters {
    /// The fields every record must have.
    pub fields: Vec<String>,
    /// The largest contribution, in bytes.
    pub max_bytes_per_contribution: u64,
    /// How duplicates were detected.
    pub dedup: Dedup,
    /// The near-duplicate threshold (estimated Jaccard similarity).
    pub near_duplicate_threshold: f64,
    /// Words per shingle.
    pub shingle_words: usize,
    /// The minimum mean quality, in basis points (0 when unset).
    pub min_quality_bps: u32,
    /// The most accepted contributions per contributor, if limited.
    pub max_per_contributor: Option<u32>,
}

impl Parameters {
    /// The settings of a curation of `spec` with `options`.
    pub fn of(spec: &DatanetSpec, options: &Options) -> Self {
        Self {
            fields: spec.format.fields.clone(),
            max_bytes_per_contribution: spec
                .format
                .max_bytes_per_contribution
                .unwrap_or(DEFAULT_MAX_BYTES),
            dedup: spec.curation.dedup,
            near_duplicate_threshold: options.near_duplicate_threshold,
            shingle_words: options.shingle_words,
            min_quality_bps: spec.curation.min_quality_bps.unwrap_or(0),
            max_per_contributor: spec.curation.max_per_contributor,
        }
    }
}

/// Contributions by outcome.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    /// Contributions in the manifest.
    pub total: u32,
    /// Accepted.
    pub accepted: u32,
    /// Rejected, all reasons together.
    pub rejected: u32,
    /// Every outcome that occurred, `Accepted` included, with its count.
    pub by_reason: BTreeMap<Reason, u32>,
}

impl Counts {
    /// The counts as `status.counts` of the Datanet.
    pub fn to_status(&self) -> DatanetCounts {
        DatanetCounts {
            total: self.total,
            accepted: self.accepted,
            rejected: self.rejected,
            rejected_by_reason: self
                .by_reason
                .iter()
                .filter(|(r, _)| **r != Reason::Accepted)
                .map(|(r, n)| (r.as_str().to_string(), *n))
                .collect(),
        }
    }
}

/// One contribution's outcome.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ItemOutcome {
    /// The manifest id.
    pub id: String,
    /// The listed contributor.
    pub contributor: Address,
    /// Where it was read from.
    pub uri: String,
    /// The manifest's sha256.
    pub sha256: String,
    /// The license it was contributed under.
    pub license: String,
    /// Accepted, or why not.
    pub reason: Reason,
    /// In words: what was found (counts and quality, or what failed and how).
    pub detail: String,
    /// The mean quality of its new records, when it got that far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality_bps: Option<u32>,
    /// Records it put into the dataset (0 unless accepted).
    pub records: u32,
    /// The dataset position of its first record, when accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_record: Option<u32>,
    /// Records of an accepted contribution left out because they repeat earlier ones.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropped_records: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl ItemOutcome {
    /// Whether it is in the dataset.
    pub fn accepted(&self) -> bool {
        self.reason == Reason::Accepted
    }
}

/// The curated dataset: every accepted record as one line of canonical JSON (the declared
/// fields only, keys sorted, values as contributed), in manifest order.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Dataset {
    /// Lines (records).
    pub records: u32,
    /// Bytes of the JSONL.
    pub bytes: u64,
    /// sha256 of the JSONL, lowercase hex: its content address.
    pub sha256: String,
    /// The JSONL itself. Not part of the report's JSON: it is its own artifact.
    #[serde(skip)]
    pub jsonl: Vec<u8>,
}

/// How the pool was split.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RewardMap {
    /// The pool, base units.
    #[serde(with = "decimal")]
    pub pool: U256,
    /// The policy applied.
    pub policy: RewardPolicy,
    /// The sum of the contributors' weights.
    pub total_weight: u64,
    /// The sum of the amounts: the pool, or zero when nothing was accepted.
    #[serde(with = "decimal")]
    pub allocated: U256,
    /// One entry per contributor with an accepted contribution, in address order.
    pub payouts: Vec<Reward>,
}

/// One contributor's reward.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Reward {
    /// Who is paid.
    pub contributor: Address,
    /// The leaf index in the reward tree; `None` when the amount is zero (no leaf).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
    /// Base units.
    #[serde(with = "decimal")]
    pub amount: U256,
    /// The weight under the policy (quality points, records, or 1).
    pub weight: u64,
    /// The ids of the accepted contributions.
    pub contributions: Vec<String>,
    /// Accepted records.
    pub records: u32,
    /// In words: how the amount follows from the policy.
    pub reason: String,
}

/// A contributor's claim: the leaf and its proof against the reward root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewardProof {
    /// `(index, account, amount)` as the RewardDistributor's `claim` takes them.
    pub payout: Payout,
    /// Sibling hashes, leaf to root.
    pub proof: Vec<B256>,
    /// The reward root it proves against.
    pub root: B256,
}

impl RewardProof {
    /// Checks the proof as OpenZeppelin's `MerkleProof.verify` does.
    pub fn verify(&self) -> bool {
        PayoutTree::verify(self.root, self.payout.leaf(), &self.proof)
    }
}

impl CurationReport {
    /// The leaves of the reward tree, in index order: the contributors paid more than zero.
    pub fn reward_payouts(&self) -> Vec<Payout> {
        self.rewards
            .payouts
            .iter()
            .filter_map(|r| {
                r.index.map(|i| Payout {
                    index: U256::from(i),
                    account: r.contributor,
                    amount: r.amount,
                })
            })
            .collect()
    }

    /// The claim of `contributor`, or `None` when it is not paid.
    pub fn proof_for(&self, contributor: Address) -> Option<RewardProof> {
        let payouts = self.reward_payouts();
        let position = payouts.iter().position(|p| p.account == contributor)?;
        let tree = PayoutTree::new(&payouts).ok()?;
        Some(RewardProof {
            payout: payouts[position],
            proof: tree.proof(position)?,
            root: tree.root(),
        })
    }
}

/// The version digest of a manifest: sha256 over a versioned canonical encoding of its
/// entries (JSON of the parsed manifest, fields in declaration order), so that reformatting
/// — whitespace, comments, key order, YAML or JSON — is the same version, and any change of
/// an entry is a new one. Lowercase hex.
pub fn manifest_digest(manifest: &Manifest) -> String {
    let mut bytes = b"modelcommons.dev/manifest/v1\n".to_vec();
    // Serializing plain strings and addresses cannot fail.
    bytes.extend(serde_json::to_vec(manifest).unwrap_or_default());
    sha256_hex(&bytes)
}

/// Parses a manifest's text (YAML or JSON) and checks its ids are unique.
pub fn parse_manifest(text: &str) -> Result<Manifest> {
    if text.trim().is_empty() {
        return Err(Error::Manifest("it is empty".into()));
    }
    let manifest: Manifest =
        serde_yaml::from_str(text).map_err(|e| Error::Manifest(e.to_string()))?;
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, c) in manifest.contributions.iter().enumerate() {
        if let Some(first) = seen.insert(&c.id, i) {
            return Err(Error::DuplicateId {
                id: c.id.clone(),
                first: first + 1,
                second: i + 1,
            });
        }
    }
    Ok(manifest)
}

fn parse_pool(pool: &str) -> Result<U256> {
    let value = U256::from_str_radix(pool, 10)
        .ok()
        .filter(|v| !v.is_zero() && !pool.is_empty() && pool.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| Error::Pool(pool.into()))?;
    if value > U256::from(u128::MAX) {
        return Err(Error::PoolTooLarge(pool.into()));
    }
    Ok(value)
}

fn check_datanet_id(id: &str) -> Result<()> {
    match id.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => Ok(()),
        _ => Err(Error::DatanetId(id.into())),
    }
}

/// A rejection: the reason and what was found.
type Rejection = (Reason, String);

/// The checks that need no bytes: the manifest's digest and the signature.
fn precheck(datanet: &str, c: &Contribution) -> Option<Rejection> {
    match contribution::verify(datanet, c) {
        Ok(()) => None,
        Err(SignatureError::BadDigest(d)) => Some((
            Reason::HashMismatch,
            format!("the manifest's sha256 {d:?} is not 64 lowercase hex digits"),
        )),
        Err(e) => Some((Reason::BadSignature, e.to_string())),
    }
}

/// Curates the contributions listed in `manifest` (YAML or JSON text) for the Datanet
/// `datanet` (`namespace/name`) with `spec`, reading each through `fetch`.
///
/// Errors only for invalid inputs: a manifest that does not parse or repeats an id, a pool
/// that is not a positive integer of at most 128 bits, a malformed Datanet id or options.
/// Every problem of a single contribution is its outcome in the report.
pub async fn curate<F: Fetch>(
    datanet: &str,
    spec: &DatanetSpec,
    manifest: &str,
    fetch: &F,
    options: &Options,
) -> Result<CurationReport> {
    check_datanet_id(datanet)?;
    options.validate()?;
    let pool = parse_pool(&spec.rewards.pool)?;
    let parsed = parse_manifest(manifest)?;
    let max_bytes = spec
        .format
        .max_bytes_per_contribution
        .unwrap_or(DEFAULT_MAX_BYTES);
    let parameters = Parameters::of(spec, options);

    let mut state = State::new(&parsed, &spec.format, parameters);
    let mut fetched = stream::iter(&parsed.contributions)
        .map(|c| async move {
            if let Some(rejection) = precheck(datanet, c) {
                return Err(rejection);
            }
            fetch.fetch(&c.uri, max_bytes).await.map_err(|e| match e {
                FetchError::Unreachable(m) => (Reason::Unreachable, m),
                e @ FetchError::TooLarge { .. } => (Reason::TooLarge, e.to_string()),
            })
        })
        .buffered(options.concurrency);
    let mut i = 0;
    while let Some(bytes) = fetched.next().await {
        state.evaluate(i, bytes);
        i += 1;
    }
    drop(fetched);

    let mut report = state.finish(pool, spec.rewards.policy);
    report.datanet = datanet.into();
    report.manifest_sha256 = manifest_digest(&parsed);
    Ok(report)
}

/// A record in the dataset (or tentatively, while its contribution is judged).
struct Kept {
    item: usize,
    canonical: String,
    exact_key: [u8; 32],
    quality_bps: u32,
}

struct State<'a> {
    manifest: &'a Manifest,
    format: &'a DataFormat,
    parameters: Parameters,
    exact: HashMap<[u8; 32], usize>,
    near: minhash::Index,
    kept: Vec<Kept>,
    accepted_by: HashMap<Address, u32>,
    items: Vec<ItemOutcome>,
}

impl<'a> State<'a> {
    fn new(manifest: &'a Manifest, format: &'a DataFormat, parameters: Parameters) -> Self {
        Self {
            manifest,
            format,
            near: minhash::Index::new(parameters.near_duplicate_threshold),
            parameters,
            exact: HashMap::new(),
            kept: Vec::new(),
            accepted_by: HashMap::new(),
            items: Vec::new(),
        }
    }

    fn evaluate(&mut self, i: usize, bytes: Result<Vec<u8>, Rejection>) {
        let manifest = self.manifest;
        let c = &manifest.contributions[i];
        let mut out = ItemOutcome {
            id: c.id.clone(),
            contributor: c.contributor,
            uri: c.uri.clone(),
            sha256: c.sha256.clone(),
            license: c.license.clone(),
            reason: Reason::Accepted,
            detail: String::new(),
            quality_bps: None,
            records: 0,
            first_record: None,
            dropped_records: 0,
        };
        if let Err((reason, detail)) = bytes.and_then(|b| self.judge(i, b, &mut out)) {
            out.reason = reason;
            out.detail = detail;
        }
        self.items.push(out);
    }

    /// Removes the tentative records from `start` on.
    fn rollback(&mut self, start: usize) {
        for k in self.kept.drain(start..) {
            self.exact.remove(&k.exact_key);
        }
        self.near.truncate(start);
    }

    fn ids_of(&self, positions: impl IntoIterator<Item = usize>) -> String {
        let mut ids: Vec<&str> = Vec::new();
        for p in positions {
            let id = self.manifest.contributions[self.kept[p].item].id.as_str();
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        ids.join(", ")
    }

    fn judge(&mut self, i: usize, bytes: Vec<u8>, out: &mut ItemOutcome) -> Result<(), Rejection> {
        let manifest = self.manifest;
        let c = &manifest.contributions[i];
        let got = sha256_hex(&bytes);
        if got != c.sha256 {
            // The content's own digest is not printed: a report must not tell a
            // contributor the hash of bytes it could not see.
            return Err((
                Reason::HashMismatch,
                format!("the content's sha256 is not the manifest's {}", c.sha256),
            ));
        }
        let records = records::parse(&bytes, self.format, self.parameters.shingle_words)
            .map_err(|e| (Reason::BadFormat, e))?;
        drop(bytes);

        let total = records.len();
        let start = self.kept.len();
        let dedup = self.parameters.dedup;
        let threshold = self.parameters.near_duplicate_threshold;
        let mut exact_of = Vec::new();
        let mut near_of: Vec<minhash::Match> = Vec::new();
        for r in records {
            if dedup != Dedup::None
                && let Some(&p) = self.exact.get(&r.exact_key)
            {
                exact_of.push(p);
                continue;
            }
            let sig = match dedup {
                Dedup::Near => minhash::Signature::of(&r.shingles),
                Dedup::Exact | Dedup::None => None,
            };
            if let Some(m) = sig
                .as_ref()
                .and_then(|s| self.near.best_match(s, threshold))
            {
                near_of.push(m);
                continue;
            }
            if dedup != Dedup::None {
                self.exact.insert(r.exact_key, self.kept.len());
            }
            self.near.push(sig);
            self.kept.push(Kept {
                item: i,
                canonical: r.canonical,
                exact_key: r.exact_key,
                quality_bps: r.quality_bps,
            });
        }
        let new = self.kept.len() - start;
        let dropped = total - new;
        if new == 0 {
            let of = self.ids_of(
                exact_of
                    .iter()
                    .copied()
                    .chain(near_of.iter().map(|m| m.position)),
            );
            let (records, verb) = if total == 1 {
                ("its record".to_string(), "repeats")
            } else {
                (format!("all {total} records"), "repeat")
            };
            return Err(if near_of.is_empty() {
                (
                    Reason::Duplicate,
                    format!("{records} {verb} records of {of}"),
                )
            } else {
                let lowest = near_of
                    .iter()
                    .map(|m| m.similarity)
                    .fold(f64::INFINITY, f64::min);
                (
                    Reason::NearDuplicate,
                    format!(
                        "{records} {verb} or nearly {verb} records of {of} (estimated Jaccard similarity {lowest:.2} or more; the threshold is {threshold:.2})"
                    ),
                )
            });
        }

        let quality = self.kept[start..]
            .iter()
            .map(|k| u64::from(k.quality_bps))
            .sum::<u64>()
            / new as u64;
        let quality = u32::try_from(quality).unwrap_or(u32::MAX);
        out.quality_bps = Some(quality);
        let min = self.parameters.min_quality_bps;
        if quality < min {
            self.rollback(start);
            return Err((
                Reason::LowQuality,
                format!(
                    "mean quality {quality} bps of {} is below curation.minQualityBps {min}",
                    if new == 1 {
                        "its 1 new record".to_string()
                    } else {
                        format!("its {new} new records")
                    }
                ),
            ));
        }
        let so_far = self.accepted_by.get(&c.contributor).copied().unwrap_or(0);
        if let Some(max) = self.parameters.max_per_contributor
            && so_far >= max
        {
            self.rollback(start);
            return Err((
                Reason::OverLimit,
                format!(
                    "{} already has {so_far} accepted contributions, the most curation.maxPerContributor allows",
                    c.contributor
                ),
            ));
        }

        self.accepted_by.insert(c.contributor, so_far + 1);
        out.records = u32::try_from(new).unwrap_or(u32::MAX);
        out.first_record = u32::try_from(start).ok();
        out.dropped_records = u32::try_from(dropped).unwrap_or(u32::MAX);
        out.detail = format!("{new} records, mean quality {quality} bps");
        if dropped > 0 {
            let of = self.ids_of(
                exact_of
                    .iter()
                    .copied()
                    .chain(near_of.iter().map(|m| m.position)),
            );
            out.detail.push_str(&format!(
                "; {dropped} more left out as {} of records of {of}",
                if dropped == 1 {
                    "a repeat or near repeat"
                } else {
                    "repeats or near repeats"
                }
            ));
        }
        Ok(())
    }

    fn finish(self, pool: U256, policy: RewardPolicy) -> CurationReport {
        let mut jsonl = Vec::new();
        let mut lines = Vec::with_capacity(self.kept.len());
        for k in &self.kept {
            jsonl.extend_from_slice(k.canonical.as_bytes());
            jsonl.push(b'\n');
            lines.push(Line {
                contributor: self.manifest.contributions[k.item].contributor,
                quality_bps: k.quality_bps,
                sha256: Sha256::digest(k.canonical.as_bytes()).into(),
            });
        }
        let dataset = Dataset {
            records: u32::try_from(lines.len()).unwrap_or(u32::MAX),
            bytes: jsonl.len() as u64,
            sha256: sha256_hex(&jsonl),
            jsonl,
        };
        assemble(self.parameters, self.items, dataset, &lines, pool, policy)
    }
}

/// One record of the curated dataset as the trees and the rewards see it.
#[derive(Debug, Clone, Copy)]
struct Line {
    contributor: Address,
    quality_bps: u32,
    sha256: [u8; 32],
}

/// The report from the item outcomes and the dataset's records: counts, the dataset tree,
/// every contributor's reward and the reward tree. Curation and its verification by the
/// operator ([`verify`]) both come through here, so the same inputs give the same report.
fn assemble(
    parameters: Parameters,
    items: Vec<ItemOutcome>,
    dataset: Dataset,
    lines: &[Line],
    pool: U256,
    policy: RewardPolicy,
) -> CurationReport {
    let mut by_reason: BTreeMap<Reason, u32> = BTreeMap::new();
    for item in &items {
        *by_reason.entry(item.reason).or_default() += 1;
    }
    let total = u32::try_from(items.len()).unwrap_or(u32::MAX);
    let accepted = by_reason.get(&Reason::Accepted).copied().unwrap_or(0);
    let counts = Counts {
        total,
        accepted,
        rejected: total - accepted,
        by_reason,
    };

    // The dataset's tree.
    let leaves: Vec<Payout> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| Payout {
            index: U256::from(i),
            account: l.contributor,
            amount: U256::from_be_bytes(l.sha256),
        })
        .collect();
    let dataset_root = PayoutTree::new(&leaves).ok().map(|t| t.root());

    // Per contributor: accepted contributions, records, quality points.
    #[derive(Default)]
    struct Tally {
        contributions: Vec<String>,
        records: u32,
        quality: u64,
    }
    let mut tallies: BTreeMap<Address, Tally> = BTreeMap::new();
    for item in items.iter().filter(|i| i.accepted()) {
        tallies
            .entry(item.contributor)
            .or_default()
            .contributions
            .push(item.id.clone());
    }
    for l in lines {
        let t = tallies.entry(l.contributor).or_default();
        t.records += 1;
        t.quality += u64::from(l.quality_bps);
    }
    let weights: Vec<(Address, u64)> = tallies
        .iter()
        .map(|(a, t)| {
            let w = match policy {
                RewardPolicy::QualityWeighted => t.quality,
                RewardPolicy::Proportional => u64::from(t.records),
                RewardPolicy::Equal => 1,
            };
            (*a, w)
        })
        .collect();
    let total_weight: u64 = weights.iter().map(|(_, w)| *w).sum();
    let shares = rewards::split(pool, &weights);
    let all_records: u32 = tallies.values().map(|t| t.records).sum();
    let mut payouts = Vec::with_capacity(weights.len());
    let mut next_index = 0u64;
    for (((contributor, t), (_, weight)), share) in tallies.into_iter().zip(&weights).zip(shares) {
        let index = (!share.amount.is_zero()).then(|| {
            next_index += 1;
            next_index - 1
        });
        let reason = reward_reason(
            policy,
            &t.contributions,
            t.records,
            *weight,
            total_weight,
            all_records,
            weights.len(),
            share,
            pool,
        );
        payouts.push(Reward {
            contributor,
            index,
            amount: share.amount,
            weight: *weight,
            contributions: t.contributions,
            records: t.records,
            reason,
        });
    }
    let allocated = payouts.iter().map(|p| p.amount).sum();
    let mut report = CurationReport {
        datanet: String::new(),
        manifest_sha256: String::new(),
        parameters,
        counts,
        items,
        dataset,
        dataset_root,
        rewards: RewardMap {
            pool,
            policy,
            total_weight,
            allocated,
            payouts,
        },
        reward_root: None,
    };
    report.reward_root = PayoutTree::new(&report.reward_payouts())
        .ok()
        .map(|t| t.root());
    report
}

/// `part / whole` as a percentage with two decimals, rounded down.
fn percent(part: u64, whole: u64) -> String {
    let bps = u128::from(part) * 10_000 / u128::from(whole.max(1));
    format!("{}.{:02}%", bps / 100, bps % 100)
}

#[allow(clippy::too_many_arguments)]
fn reward_reason(
    policy: RewardPolicy,
    contributions: &[String],
    records: u32,
    weight: u64,
    total_weight: u64,
    all_records: u32,
    contributors: usize,
    share: rewards::Share,
    pool: U256,
) -> String {
    let what = format!(
        "{records} accepted records in {} ({})",
        if contributions.len() == 1 {
            "1 contribution".to_string()
        } else {
            format!("{} contributions", contributions.len())
        },
        contributions.join(", ")
    );
    if total_weight == 0 {
        return format!(
            "{what}, but no accepted record has a quality above 0, so the pool is not allocated"
        );
    }
    let basis = match policy {
        RewardPolicy::QualityWeighted => format!(
            "quality weight {weight} of {total_weight} ({})",
            percent(weight, total_weight)
        ),
        RewardPolicy::Proportional => format!(
            "{records} of {all_records} accepted records ({})",
            percent(weight, total_weight)
        ),
        RewardPolicy::Equal => format!("an equal share among {contributors} contributors"),
    };
    let mut reason = format!(
        "{what}; {basis} under {policy:?}: {} of the {pool} pool",
        share.amount
    );
    if share.rounded_up {
        reason.push_str(", including 1 base unit of rounding");
    }
    if share.amount.is_zero() {
        reason.push_str("; a zero amount gets no leaf in the reward tree");
    }
    reason
}

#[cfg(test)]
mod tests;
