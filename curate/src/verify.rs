//! The operator's check of a curation report before any token moves.
//!
//! A curation Job runs where a tenant may reach it (its pods, the artifact store they mount),
//! so its report is an input, never an authority. [`verify`] takes the report and the curated
//! dataset as read back from the store and the manifest the operator read itself, and
//! recomputes everything that can be recomputed without fetching the contributions again:
//!
//! - the report is of this Datanet, of this manifest (its canonical digest) and of the
//!   settings in the spec; the pool and policy are the spec's;
//! - every item is the manifest's entry at its position (id, contributor, uri, sha256,
//!   license); an accepted item carries a valid contributor signature, its records are the
//!   next ones of the dataset, its mean quality is that of those records and meets
//!   `minQualityBps`; no contributor has more accepted than `maxPerContributor`; a signature
//!   the operator finds invalid is rejected for that reason;
//! - every dataset line is a record of the declared format in canonical form, no two are
//!   exact duplicates (unless dedup is off), and the dataset's bytes hash to the address the
//!   report gives;
//! - the counts, both Merkle roots and the whole reward map are what [`super::assemble`]
//!   gives from those items and records — the same function curation used, so an honest
//!   report matches to the byte and any other allocation of the pool does not.
//!
//! What it cannot see is a wrong verdict on a contribution it would have to fetch (an
//! accepted item whose bytes were not what the manifest says, a near duplicate let through):
//! that is why curation runs in a namespace the tenant cannot reach.

use std::collections::{HashMap, HashSet};
use std::io::BufRead;

use alloy::primitives::Address;
use modelcommons_crds::datanet::{DatanetSpec, Dedup};
use sha2::{Digest, Sha256};

use super::{
    CurationReport, Dataset, Line, Options, Parameters, assemble, manifest_digest, parse_pool,
    precheck, records,
};
use crate::contribution::Manifest;

/// Why a curation report is not published.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Forgery {
    /// An artifact's bytes are not what its content address says: rewritten in the store.
    #[error("{0}")]
    Tampered(String),
    /// The report pays another pool than the spec's, or allocates it otherwise.
    #[error("{0}")]
    RewardTotal(String),
    /// The report's outcomes, records or roots are not what its own inputs give.
    #[error("{0}")]
    Inconsistent(String),
}

impl Forgery {
    /// The condition reason users see.
    pub fn reason(&self) -> &'static str {
        match self {
            Forgery::Tampered(_) => "ArtifactTampered",
            Forgery::RewardTotal(_) => "RewardTotalMismatch",
            Forgery::Inconsistent(_) => "ForgedResult",
        }
    }
}

fn inconsistent(msg: impl Into<String>) -> Forgery {
    Forgery::Inconsistent(msg.into())
}

/// Checks `report_bytes` (the curation report as read from the store) against the Datanet
/// `datanet` with `spec`, the `manifest` the operator read, and the curated `dataset` read
/// back from the store. Returns the report, every figure of it recomputed and equal.
pub fn verify(
    datanet: &str,
    spec: &DatanetSpec,
    manifest: &Manifest,
    options: &Options,
    report_bytes: &[u8],
    dataset: impl BufRead,
) -> Result<CurationReport, Forgery> {
    let report: CurationReport = serde_json::from_slice(report_bytes)
        .map_err(|e| inconsistent(format!("the curation report does not parse: {e}")))?;
    if report.datanet != datanet {
        return Err(inconsistent(format!(
            "the curation report is of Datanet {:?}, not {datanet:?}",
            report.datanet
        )));
    }
    let digest = manifest_digest(manifest);
    if report.manifest_sha256 != digest {
        return Err(inconsistent(format!(
            "the curation report is of manifest {}, not of the one the operator read ({digest})",
            report.manifest_sha256
        )));
    }
    let parameters = Parameters::of(spec, options);
    if report.parameters != parameters {
        return Err(inconsistent(
            "the curation report was made with other settings than the Datanet's spec",
        ));
    }
    let pool = parse_pool(&spec.rewards.pool).map_err(|e| Forgery::RewardTotal(e.to_string()))?;
    if report.rewards.pool != pool || report.rewards.policy != spec.rewards.policy {
        return Err(Forgery::RewardTotal(format!(
            "the reward map splits a pool of {} base units under {:?}; the spec says {pool} under {:?}",
            report.rewards.pool, report.rewards.policy, spec.rewards.policy
        )));
    }

    // Items: the manifest's entries, in order; accepted ones own the next dataset records.
    if report.items.len() != manifest.contributions.len() {
        return Err(inconsistent(format!(
            "the curation report has {} items; the manifest lists {} contributions",
            report.items.len(),
            manifest.contributions.len()
        )));
    }
    let mut owners: Vec<(usize, u32)> = Vec::new(); // (item, records), accepted, in order
    let mut next = 0u32;
    let mut accepted_by: HashMap<Address, u32> = HashMap::new();
    for (i, (item, c)) in report.items.iter().zip(&manifest.contributions).enumerate() {
        if (
            &item.id,
            item.contributor,
            &item.uri,
            &item.sha256,
            &item.license,
        ) != (&c.id, c.contributor, &c.uri, &c.sha256, &c.license)
        {
            return Err(inconsistent(format!(
                "item {} of the curation report is not the manifest's entry {:?}",
                i + 1,
                c.id
            )));
        }
        let pre = precheck(datanet, c);
        if item.accepted() {
            if let Some((reason, why)) = pre {
                return Err(inconsistent(format!(
                    "contribution {:?} is reported accepted, but the operator finds it {}: {why}",
                    c.id,
                    reason.as_str()
                )));
            }
            if item.records == 0 || item.first_record != Some(next) {
                return Err(inconsistent(format!(
                    "accepted contribution {:?} does not own the next records of the dataset",
                    c.id
                )));
            }
            let n = accepted_by.entry(c.contributor).or_default();
            *n += 1;
            if let Some(max) = parameters.max_per_contributor
                && *n > max
            {
                return Err(inconsistent(format!(
                    "{} has more than curation.maxPerContributor {max} accepted contributions",
                    c.contributor
                )));
            }
            owners.push((i, item.records));
            next = next
                .checked_add(item.records)
                .ok_or_else(|| inconsistent("the record counts overflow"))?;
        } else {
            if item.records != 0 || item.first_record.is_some() {
                return Err(inconsistent(format!(
                    "rejected contribution {:?} is reported with records in the dataset",
                    c.id
                )));
            }
            if let Some((reason, _)) = pre
                && reason != item.reason
            {
                return Err(inconsistent(format!(
                    "contribution {:?} is reported {}; the operator finds it {}",
                    c.id,
                    item.reason.as_str(),
                    reason.as_str()
                )));
            }
        }
    }

    // The dataset, line by line: canonical records of the format, owned as the items say.
    let mut lines: Vec<Line> = Vec::with_capacity(next as usize);
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    let mut exact: HashSet<[u8; 32]> = HashSet::new();
    let mut quality: Vec<u64> = vec![0; owners.len()];
    let mut owner = 0usize;
    let mut owned = 0u32;
    let mut dataset = dataset;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = dataset
            .read_until(b'\n', &mut buf)
            .map_err(|e| Forgery::Tampered(format!("reading the curated dataset: {e}")))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf);
        bytes += n as u64;
        let at = lines.len() + 1;
        if lines.len() as u64 >= u64::from(next) {
            return Err(inconsistent(format!(
                "the curated dataset has more than the {next} records the accepted items own"
            )));
        }
        let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let parsed = records::parse(&buf, &spec.format, parameters.shingle_words)
            .map_err(|e| inconsistent(format!("record {at} of the curated dataset: {e}")))?;
        let [record] = parsed.as_slice() else {
            return Err(inconsistent(format!(
                "line {at} of the curated dataset is not one record"
            )));
        };
        if record.canonical.as_bytes() != line {
            return Err(inconsistent(format!(
                "record {at} of the curated dataset is not in canonical form"
            )));
        }
        if spec.curation.dedup != Dedup::None && !exact.insert(record.exact_key) {
            return Err(inconsistent(format!(
                "record {at} of the curated dataset repeats an earlier one"
            )));
        }
        while owned == owners[owner].1 {
            owner += 1;
            owned = 0;
        }
        owned += 1;
        quality[owner] += u64::from(record.quality_bps);
        lines.push(Line {
            contributor: manifest.contributions[owners[owner].0].contributor,
            quality_bps: record.quality_bps,
            sha256: Sha256::digest(line).into(),
        });
    }
    if lines.len() as u64 != u64::from(next) {
        return Err(inconsistent(format!(
            "the curated dataset has {} records; the accepted items own {next}",
            lines.len()
        )));
    }
    let sha256 = hex(&hasher.finalize());
    if sha256 != report.dataset.sha256 || bytes != report.dataset.bytes {
        return Err(Forgery::Tampered(format!(
            "the curated dataset in the store is not the one the report names (sha256 {})",
            report.dataset.sha256
        )));
    }
    for ((i, n), q) in owners.iter().zip(&quality) {
        let item = &report.items[*i];
        let mean = u32::try_from(q / u64::from(*n)).unwrap_or(u32::MAX);
        if item.quality_bps != Some(mean) || mean < parameters.min_quality_bps {
            return Err(inconsistent(format!(
                "contribution {:?}: its records' mean quality is {mean} bps (minimum {}), the report says {:?}",
                item.id, parameters.min_quality_bps, item.quality_bps
            )));
        }
    }

    // Everything else follows from the items and the records.
    let mut expected = assemble(
        parameters,
        report.items.clone(),
        Dataset {
            records: u32::try_from(lines.len()).unwrap_or(u32::MAX),
            bytes,
            sha256,
            jsonl: Vec::new(),
        },
        &lines,
        pool,
        spec.rewards.policy,
    );
    expected.datanet = report.datanet.clone();
    expected.manifest_sha256 = report.manifest_sha256.clone();
    if expected.counts != report.counts {
        return Err(inconsistent("the report's counts are not its items'"));
    }
    if expected.dataset_root != report.dataset_root {
        return Err(inconsistent(format!(
            "the report's dataset root {:?} is not the dataset's ({:?})",
            report.dataset_root, expected.dataset_root
        )));
    }
    if expected.rewards != report.rewards || expected.reward_root != report.reward_root {
        return Err(Forgery::RewardTotal(format!(
            "the reward map is not what the accepted records give under {:?}: it allocates {} base units with root {:?}; recomputed: {} with root {:?}",
            spec.rewards.policy,
            report.rewards.allocated,
            report.reward_root,
            expected.rewards.allocated,
            expected.reward_root
        )));
    }
    if expected != report {
        return Err(inconsistent(
            "the curation report differs from its recomputation",
        ));
    }
    Ok(report)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
