//! The judged result on chain: dataset root → model digest → metrics hash → passed.

use std::collections::BTreeMap;

use kube::ResourceExt;
use modelcommons_crds::finetune::FineTuneJob;
use modelcommons_crds::proposal::ModelProposal;

use super::evaluation::EvalOutput;
use super::gates::Admitted;
use crate::controller::{Context, Error, LedgerHandle};

/// Records the judged result on chain once (job id from the object's uid and generation):
/// dataset root → model digest → metrics hash → passed. Returns the transaction (or, when an
/// earlier attempt already recorded it, the record's id).
pub async fn record_training(
    ftj: &FineTuneJob,
    proposal: Option<&ModelProposal>,
    admitted: &Admitted,
    evaluation: &EvalOutput,
    passed: bool,
    h: &LedgerHandle,
    ctx: &Context,
) -> Result<String, Error> {
    use crate::ledger::ids::{model_id, training_id};
    let proposal_uid = proposal.and_then(|p| p.uid()).ok_or_else(|| {
        Error::Invalid(format!(
            "ModelProposal {} is gone: the result cannot be recorded under its model",
            ftj.spec.proposal_ref.name
        ))
    })?;
    // The evaluation's metrics, by name, as the decimal strings the status shows.
    let metrics: BTreeMap<&str, String> = evaluation
        .metrics
        .iter()
        .map(|(k, v)| (k.as_str(), v.to_string()))
        .collect();
    let hex32 = |s: Option<&str>| -> alloy::primitives::B256 {
        s.map(|s| s.trim_start_matches("sha256:"))
            .and_then(|s| s.parse().ok())
            .unwrap_or_default()
    };
    let job_id = training_id(
        &ftj.uid().unwrap_or_default(),
        ftj.metadata.generation.unwrap_or(0),
    );
    let req = crate::ledger::mirror::RecordTraining {
        job_id,
        model_id: model_id(&proposal_uid),
        dataset_root: hex32(admitted.dataset_root.as_deref()),
        model_digest: hex32(Some(&evaluation.model_digest)),
        metrics_hash: alloy::primitives::keccak256(serde_json::to_vec(&metrics)?),
        passed,
    };
    let w = ctx
        .ledger_write(
            "ModelRegistry.recordTraining",
            h.ledger.record_training(h.suite.registry, &req),
        )
        .await?;
    Ok(match w {
        crate::ledger::mirror::Write::Written { tx } => tx.to_string(),
        crate::ledger::mirror::Write::AlreadyDone => h
            .ledger
            .training_tx(h.suite.registry, job_id)
            .await?
            .map_or_else(|| format!("recorded as {job_id}"), |t| t.to_string()),
    })
}
