//! Admission against the mandate: the chain must have ratified it, and the job's GPUs and
//! GPU-hours must fit what is left of it by the operator's usage record (never a status).

use kube::ResourceExt;
use modelcommons_crds::finetune::{FineTuneJob, reason};
use modelcommons_crds::proposal::ModelProposal;

use std::collections::BTreeMap;

use super::decide::started;
use super::gates::{Admitted, Gate, check_gates};
use super::{Caches, DEFAULT_DEADLINE_SECONDS, Observed};
use crate::controller::{Context, Error, lineage, usage};

/// What the job is admitted with, or the gate that holds it. Once the trainer Job exists its
/// version is fixed (read from its pod template), and a gate that closes after the trainer
/// started does not stop it. A tenant can create a Job under that name first, so only the
/// version number is taken from it: the data's location and root come from the operator's
/// record of that version, and the deadline from the GPU time reserved at admission (the
/// operator's usage record), which a tenant editing its Job does not extend.
pub async fn admission(
    ftj: &FineTuneJob,
    seen: &Observed,
    c: &Caches,
) -> Result<Result<Admitted, Gate>, Error> {
    let ctx = &c.ctx;
    let published = match &seen.datanet {
        Some(d) => lineage::versions(ctx, d).await?,
        None => BTreeMap::new(),
    };
    let proposal = seen.proposal.as_ref();
    let Some(job) = &seen.job else {
        return match check_gates(
            &ftj.spec,
            proposal,
            seen.datanet.as_ref(),
            &published,
            &ctx.config,
        ) {
            Ok(a) => admit(ftj, proposal, a, c).await,
            Err(g) => Ok(Err(g)),
        };
    };
    let mut a = started(ftj, proposal, job);
    let rec = published.get(&a.dataset_version);
    a.dataset_uri = rec.map(|r| r.dataset_uri.clone()).unwrap_or_default();
    a.dataset_root = rec.and_then(|r| r.dataset_root.clone());
    let gpus = ftj.spec.resources.workers.max(1) * ftj.spec.resources.gpus_per_worker;
    let reserved = match proposal {
        Some(p) if gpus > 0 => usage::usage(ctx, p)
            .await?
            .get(&ftj.uid().unwrap_or_default())
            .map(|u| (u.reserved_hours / f64::from(gpus) * 3600.0).round() as u64),
        _ => None,
    };
    a.active_deadline_seconds = reserved.or(ftj.spec.run_policy.active_deadline_seconds);
    Ok(Ok(a))
}

/// Admission against the mandate (after the other gates): the job's GPUs must fit under
/// `maxConcurrentGpus` beside what the mandate's other admitted jobs hold, and its GPU-hours
/// under what is left of `gpuHours` — both from the operator's usage record, never from a
/// status. The job is reserved its GPUs × its deadline, and its Job gets that deadline (the
/// job's own, capped by what is left), so it cannot run past the budget. Jobs without GPUs
/// charge nothing.
pub async fn admit(
    ftj: &FineTuneJob,
    proposal: Option<&ModelProposal>,
    mut a: Admitted,
    c: &Caches,
) -> Result<Result<Admitted, Gate>, Error> {
    use crate::controller::usage::JobUsage;
    let Some(p) = proposal else {
        return Ok(Ok(a));
    };
    let ctx = &c.ctx;
    // The vote decides, not the proposal's status (which a tenant can write): with a chain,
    // the mandate must be ratified there.
    if let Some(h) = &ctx.ledger {
        let model = crate::ledger::ids::model_id(&p.uid().unwrap_or_default());
        if !h.ledger.ratified(h.suite.registry, model).await? {
            return Ok(Err(Gate {
                reason: reason::PROPOSAL_NOT_APPROVED,
                message: format!(
                    "the chain has not ratified ModelProposal {}'s mandate (whatever its status says); training starts by itself once token holders approve it",
                    p.name_any()
                ),
            }));
        }
    }
    let spec = &ftj.spec;
    let gpus = spec.resources.workers.max(1) * spec.resources.gpus_per_worker;
    if gpus == 0 {
        return Ok(Ok(a));
    }
    let uid = ftj.uid().unwrap_or_default();
    let _one_at_a_time = c.admission.lock().await;
    let record = usage::usage(ctx, p).await?;
    if let Some(mine) = record.get(&uid) {
        // Admitted before (its Job was not created, or not seen yet): the same reservation.
        a.active_deadline_seconds =
            Some((mine.reserved_hours / f64::from(gpus.max(1)) * 3600.0).round() as u64);
        return Ok(Ok(a));
    }
    let live = |u: &str| c.ftjs.state().iter().any(|f| f.uid().as_deref() == Some(u));
    let (held, charged, holders) = usage::held(&record, &uid, &live);
    let deadline = match deadline_within(ftj, p, gpus, held, charged, &holders) {
        Ok(d) => d,
        Err(g) => return Ok(Err(g)),
    };
    usage::record(
        ctx,
        p,
        &uid,
        &JobUsage {
            job: format!("{}/{}", ftj.namespace().unwrap_or_default(), ftj.name_any()),
            gpus,
            reserved_hours: f64::from(gpus) * deadline as f64 / 3600.0,
            used_hours: None,
        },
    )
    .await?;
    a.active_deadline_seconds = Some(deadline);
    Ok(Ok(a))
}

/// The deadline a job of `gpus` GPUs may have under the mandate of `p`, beside `held` GPUs
/// and `charged` GPU-hours of its other jobs (the job's own, capped by what is left), or the
/// gate that holds it.
pub fn deadline_within(
    ftj: &FineTuneJob,
    p: &ModelProposal,
    gpus: u32,
    held: u32,
    charged: f64,
    holders: &[String],
) -> Result<u64, Gate> {
    let budget = &p.spec.mandate.budget;
    if held + gpus > budget.max_concurrent_gpus {
        return Err(Gate {
            reason: reason::GPU_LIMIT_REACHED,
            message: format!(
                "ModelProposal {} allows {} GPUs at once; {held} are held by {} and this job needs {gpus}: it starts by itself when they finish",
                p.name_any(),
                budget.max_concurrent_gpus,
                holders.join(", ")
            ),
        });
    }
    let total: f64 = budget.gpu_hours.parse().unwrap_or(0.0);
    let left = total - charged;
    let cap = (left.max(0.0) / f64::from(gpus) * 3600.0).floor() as u64;
    if cap < 60 {
        return Err(Gate {
            reason: reason::BUDGET_EXHAUSTED,
            message: format!(
                "ModelProposal {} has {:.2} of its {total} GPU-hours left ({charged:.2} used or reserved by its jobs): not a minute for this job's {gpus} GPUs; raise the mandate's budget through governance",
                p.name_any(),
                left.max(0.0)
            ),
        });
    }
    Ok(ftj
        .spec
        .run_policy
        .active_deadline_seconds
        .unwrap_or(DEFAULT_DEADLINE_SECONDS)
        .min(cap))
}

/// Records what a finished job used (once): its GPUs for the time its Job ran.
pub async fn finish_usage(
    ftj: &FineTuneJob,
    proposal: Option<&ModelProposal>,
    hours: f64,
    ctx: &Context,
) -> Result<(), Error> {
    let Some(p) = proposal else { return Ok(()) };
    let uid = ftj.uid().unwrap_or_default();
    let record = usage::usage(ctx, p).await?;
    if let Some(u) = record.get(&uid).filter(|u| u.active()) {
        let mut u = u.clone();
        u.used_hours = Some(hours);
        usage::record(ctx, p, &uid, &u).await?;
    }
    Ok(())
}
