//! The operator's judgment of every FineTuneJob it evaluated: one ConfigMap per job
//! (`training-<uid>`, a key `g<N>` per generation judged) in the operator's trusted
//! namespace, which tenants cannot write. It names the weights the operator's own evaluation
//! loaded (where they are and their sha256) and whether they met the proposal's rubric, and
//! is written when the evaluation is judged, before the result goes on chain.
//!
//! A ModelDeployment of the job serves what this record names — never what the job's
//! `status` says, which the trainer pod's token (and anyone with `patch finetunejobs/status`)
//! can rewrite. With a ledger the chain record (`ModelRegistry.trainings`, under the job id
//! of the job's uid and the judged generation) must agree with it: see [`verify`].

use std::collections::BTreeMap;

use kube::ResourceExt;
use modelcommons_crds::finetune::FineTuneJob;
use serde::{Deserialize, Serialize};

use super::{Context, Error};

/// One judged generation of a FineTuneJob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Judged {
    /// The job's `metadata.generation` when it was judged.
    pub generation: i64,
    /// Where the evaluated weights are (the job's `outputUri`).
    pub model_uri: String,
    /// The sha256 (hex) of the weights the evaluation loaded.
    pub model_digest: String,
    /// Whether they met every target of the rubric.
    pub passed: bool,
    /// The root of the dataset version the job trained on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_root: Option<String>,
}

/// The record's ConfigMap name for the FineTuneJob with `uid`.
pub fn record_name(uid: &str) -> String {
    format!("training-{uid}")
}

/// The judged generations in a record's data (keys `g<N>`; anything else is skipped).
pub fn parse(data: &BTreeMap<String, String>) -> BTreeMap<i64, Judged> {
    data.iter()
        .filter_map(|(k, v)| {
            let g: i64 = k.strip_prefix('g')?.parse().ok()?;
            let j: Judged = serde_json::from_str(v).ok()?;
            (j.generation == g).then_some((g, j))
        })
        .collect()
}

/// The latest judgment of `ftj` (None: the operator has judged none of its generations).
pub async fn latest(ctx: &Context, ftj: &FineTuneJob) -> Result<Option<Judged>, Error> {
    let data = super::trusted::read(ctx, &record_name(&ftj.uid().unwrap_or_default())).await?;
    Ok(parse(&data).into_values().next_back())
}

/// Records the judgment of `ftj`'s generation `j.generation`.
pub async fn record(ctx: &Context, ftj: &FineTuneJob, j: &Judged) -> Result<(), Error> {
    super::trusted::write(
        ctx,
        &record_name(&ftj.uid().unwrap_or_default()),
        "modelcommons-training",
        (
            "modelcommons.dev/finetunejob",
            format!("{}/{}", ftj.namespace().unwrap_or_default(), ftj.name_any()),
        ),
        &format!("g{}", j.generation),
        serde_json::to_string(j)?,
    )
    .await
}

/// What the chain says of a judgment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnChain {
    /// The operator runs without a ledger: its record alone decides.
    NoLedger,
    /// Not recorded yet (the write is pending or being retried).
    Missing {
        /// The job id it will be recorded under (0x…).
        job_id: String,
    },
    /// Recorded.
    Recorded {
        /// The job id (0x…).
        job_id: String,
        /// The recorded model digest (hex, no prefix).
        model_digest: String,
        /// Whether it is recorded as passed.
        passed: bool,
    },
}

/// The operator's judgment of a FineTuneJob and the chain's record of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The operator's record.
    pub judged: Judged,
    /// The chain's.
    pub chain: OnChain,
}

/// The latest judgment of `ftj` and, with a ledger, its record on chain.
pub async fn verify(ctx: &Context, ftj: &FineTuneJob) -> Result<Option<Verified>, Error> {
    let Some(judged) = latest(ctx, ftj).await? else {
        return Ok(None);
    };
    let chain = match &ctx.ledger {
        None => OnChain::NoLedger,
        Some(h) => {
            let id =
                crate::ledger::ids::training_id(&ftj.uid().unwrap_or_default(), judged.generation);
            match h.ledger.training(h.suite.registry, id).await? {
                None => OnChain::Missing {
                    job_id: id.to_string(),
                },
                Some(r) => OnChain::Recorded {
                    job_id: id.to_string(),
                    model_digest: hex(r.model_digest),
                    passed: r.passed,
                },
            }
        }
    };
    Ok(Some(Verified { judged, chain }))
}

fn hex(b: alloy::primitives::B256) -> String {
    b.to_string().trim_start_matches("0x").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(g: i64, passed: bool) -> Judged {
        Judged {
            generation: g,
            model_uri: "pvc://models/out".into(),
            model_digest: "ab".repeat(32),
            passed,
            dataset_root: None,
        }
    }

    #[test]
    fn the_latest_judged_generation_is_the_one_read_and_a_mislabelled_entry_is_skipped() {
        let mut data = BTreeMap::new();
        for (g, p) in [(1, false), (2, true), (10, false)] {
            data.insert(
                format!("g{g}"),
                serde_json::to_string(&judged(g, p)).unwrap(),
            );
        }
        // Filed under generation 11 but judged as 3: not trusted for either.
        data.insert(
            "g11".into(),
            serde_json::to_string(&judged(3, true)).unwrap(),
        );
        data.insert("notes".into(), "x".into());
        let all = parse(&data);
        assert_eq!(all.keys().copied().collect::<Vec<_>>(), [1, 2, 10]);
        assert_eq!(all.into_values().next_back(), Some(judged(10, false)));
    }
}
