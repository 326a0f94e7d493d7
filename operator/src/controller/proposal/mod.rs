//! The ModelProposal controller: the chain is the record, the status its mirror.
//!
//! `Pending` (waiting for the proposer's stake: an OPEN allowance to the registry) →
//! registered on chain with the hash of the spec's canonical encoding, escrowing the stake and
//! opening the Governor vote → `Voting` with the tally, quorum, snapshot and deadline read from
//! the Governor → a passed vote is queued and executed through the timelock → `Approved`
//! (stake refunded; `Active` once FineTuneJobs work under it), a lost one settled →
//! `Rejected` (quorum reached) or `Expired` (no quorum), with the slashed share shown. Deleting
//! a proposal before its decision withdraws it on chain (finalizer). Every step reads the chain
//! first, so a crash anywhere never writes twice. GPU-hours of the proposal's FineTuneJobs are
//! charged to the mandate's budget.
//!
//! The reconcile reads top to bottom (see `apply`): the children from the caches and the
//! mandate's usage record → the chain's view → the chain write the view calls for
//! ([`decide::registration`] gates the registration, [`decide::drive`] names the vote's next
//! write), then the view read again → [`decide::status`] → the status write.

use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::U256;
use futures::StreamExt;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{self, Event as Finalizer};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use modelcommons_crds::datanet::Datanet;
use modelcommons_crds::deployment::ModelDeployment;
use modelcommons_crds::finetune::FineTuneJob;
use modelcommons_crds::proposal::{ModelProposal, ProposalChain, reason};
use modelcommons_crds::rlhf::RLHFRound;

use super::{Context, Error, FINALIZER, LedgerHandle, now};
use crate::ledger::ids::model_id;
use crate::ledger::mirror::RegisterModel;
use crate::ledger::proposal::{ProposalView, RegistryStatus};
use crate::runtime::children::apply_status;
use crate::runtime::reconcile::{error_policy, instrumented};
use crate::runtime::watch::{cached, keep, scoped};

pub mod decide;
#[cfg(test)]
mod tests;

pub use crate::ledger::spec::{SPEC_ENCODING, canonical_json, reward_budget, spec_hash};
pub use decide::hours;

/// What the ModelProposal controller reads instead of listing: the objects that work under
/// proposals (kept current by their watches).
#[derive(Clone, Debug)]
pub struct Caches {
    /// The shared context.
    pub ctx: Context,
    ftjs: Store<FineTuneJob>,
    datanets: Store<Datanet>,
    rounds: Store<RLHFRound>,
    deployments: Store<ModelDeployment>,
}

impl AsRef<Context> for Caches {
    fn as_ref(&self) -> &Context {
        &self.ctx
    }
}

impl Caches {
    /// Whether every cache has been filled by its first list (before, the counts would be
    /// zero).
    fn ready(&self) -> bool {
        use futures::FutureExt;
        self.ftjs.wait_until_ready().now_or_never().is_some()
            && self.datanets.wait_until_ready().now_or_never().is_some()
            && self.rounds.wait_until_ready().now_or_never().is_some()
            && self.deployments.wait_until_ready().now_or_never().is_some()
    }
}

fn in_ns<K: kube::Resource<DynamicType = ()> + Clone>(store: &Store<K>, ns: &str) -> Vec<K> {
    store
        .state()
        .iter()
        .filter(|o| o.namespace().as_deref() == Some(ns))
        .map(|o| (**o).clone())
        .collect()
}

/// Reconciles one ModelProposal; a deleted one is withdrawn on chain first (finalizer).
pub async fn reconcile(mp: Arc<ModelProposal>, c: Arc<Caches>) -> Result<Action, Error> {
    let ctx = &c.ctx;
    instrumented(ctx, &*mp.clone(), async {
        let ns = mp.namespace().unwrap_or_default();
        let api = Api::<ModelProposal>::namespaced(ctx.client.clone(), &ns);
        finalizer::finalizer(&api, FINALIZER, mp, |event| async {
            match event {
                Finalizer::Apply(mp) => apply(mp, &c).await,
                Finalizer::Cleanup(mp) => cleanup(mp, ctx).await,
            }
        })
        .await
        .map_err(|e| match e {
            finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
            finalizer::Error::AddFinalizer(e) | finalizer::Error::RemoveFinalizer(e) => {
                Error::Kube(e)
            }
            other => Error::Invalid(other.to_string()),
        })
    })
    .await
}

async fn apply(mp: Arc<ModelProposal>, c: &Caches) -> Result<Action, Error> {
    let ctx = &c.ctx;
    let Some(h) = ctx.ledger.clone() else {
        return Ok(Action::await_change());
    };
    if !c.ready() {
        return Ok(Action::requeue(Duration::from_millis(200)));
    }
    let ns = mp.namespace().unwrap_or_default();
    let children = decide::children(
        &mp.name_any(),
        &in_ns(&c.ftjs, &ns),
        &in_ns(&c.datanets, &ns),
        &in_ns(&c.rounds, &ns),
        &in_ns(&c.deployments, &ns),
    );
    // Used or reserved, from the operator's usage record (not the jobs' status).
    let used: f64 = super::usage::usage(ctx, &mp)
        .await?
        .values()
        .map(super::usage::JobUsage::charged)
        .sum();
    let budget = decide::budget(&mp, used);
    let current = mp.status.clone().unwrap_or_default();
    let mut chain = current.chain.clone().unwrap_or_default();
    let outcome = match step(&mp, ctx, &h, &mut chain).await {
        Ok((shown, view)) => Ok((decide::in_use(shown, &children), view)),
        Err(Error::Ledger(e)) => Err(e.to_string()),
        Err(e) => return Err(e),
    };
    let status = decide::status(&mp, chain, budget, children, &outcome, &now());
    if status != current {
        let api = Api::<ModelProposal>::namespaced(ctx.client.clone(), &ns);
        apply_status(&api, &mp.name_any(), &status).await?;
        if let Some((type_, reason, note)) = decide::phase_event(current.phase, &status) {
            ctx.event(&*mp, type_, &reason, note);
        }
    }
    let requeue = match &outcome {
        Ok((shown, _)) => shown.requeue,
        Err(_) => Some(Duration::from_secs(5)),
    };
    Ok(requeue.map_or_else(Action::await_change, Action::requeue))
}

/// Reads the chain, takes the next step the proposal needs, and says what to show. Every
/// step reads the chain first, so a crash anywhere never writes twice.
async fn step(
    mp: &ModelProposal,
    ctx: &Context,
    h: &LedgerHandle,
    chain: &mut ProposalChain,
) -> Result<(decide::Shown, ProposalView), Error> {
    let uid = mp
        .uid()
        .ok_or_else(|| Error::Invalid("ModelProposal without a uid".into()))?;
    let id = model_id(&uid);
    let (ledger, suite) = (&h.ledger, &h.suite);
    chain.model_id = Some(id.to_string());
    let mut view = ledger.proposal_view(suite, id).await?;
    if view.status == RegistryStatus::None {
        if let Some(held) = register(mp, ctx, h, chain, &uid, view.block_time).await? {
            return Ok((held, view));
        }
        view = ledger.proposal_view(suite, id).await?;
    }
    if chain.register_tx.is_none() {
        chain.register_tx = ledger
            .registration_tx(suite, id)
            .await?
            .map(|t| t.to_string());
    }
    // Queue, then execute once the timelock allows (or settle): each write re-reads the
    // chain, and none is sent twice in one reconcile.
    let mut sent = Vec::new();
    while let Some(write) = decide::drive(&view).filter(|w| !sent.contains(w)) {
        drive(mp, ctx, h, id, &view, write).await?;
        sent.push(write);
        view = ledger.proposal_view(suite, id).await?;
    }
    if matches!(
        view.status,
        RegistryStatus::Ratified | RegistryStatus::Rejected | RegistryStatus::Withdrawn
    ) && chain.decision_tx.is_none()
        && let Some(d) = ledger.decision(suite, id).await?
    {
        chain.decision_tx = Some(d.tx.to_string());
        chain.stake_slashed = Some(d.slashed.to_string());
        chain.stake_refunded = Some(d.refunded.to_string());
    }
    let shown = decide::shown(&view, chain, ctx.config.recheck, suite.governor);
    Ok((shown, view))
}

/// Registers an unregistered proposal when its terms and the chain allow (escrowing the stake
/// and opening the vote), or says what holds it (Some).
async fn register(
    mp: &ModelProposal,
    ctx: &Context,
    h: &LedgerHandle,
    chain: &mut ProposalChain,
    uid: &str,
    block_time: u64,
) -> Result<Option<decide::Shown>, Error> {
    let (ledger, suite) = (&h.ledger, &h.suite);
    let t = match decide::terms(mp, ctx.config.governance).map_err(Error::Invalid)? {
        Ok(t) => t,
        Err(held) => return Ok(Some(held)),
    };
    let authorization = if ledger.has_code(t.proposer).await? {
        None
    } else {
        Some(
            ledger
                .stake_authorization_digest(suite, t.proposer, &t.stake)
                .await?,
        )
    };
    let (balance, allowance) = ledger.stake_readiness(suite, t.proposer).await?;
    let seen = decide::RegistrationSeen {
        floors: ledger.governance_floors(suite).await?,
        block_time,
        authorization,
        balance,
        allowance,
    };
    let at = decide::Addresses {
        registry: suite.registry,
        open: suite.open,
        governor: suite.governor,
    };
    if let Err(held) = decide::registration(mp, &t, &seen, at, ctx.config.recheck) {
        return Ok(Some(held));
    }
    let req = RegisterModel {
        uid: uid.to_string(),
        spec_hash: t.stake.spec_hash,
        proposer: t.proposer,
        stake: t.stake.stake,
        reward_budget: t.stake.reward_budget,
        quorum_bps: t.quorum_bps,
        threshold_bps: t.threshold_bps,
        nonce: t.stake.nonce,
        deadline: t.stake.deadline,
        signature: t.signature.clone(),
    };
    let out = ctx
        .ledger_write(
            "ModelRegistry.register",
            ledger.register_model(suite.registry, &req),
        )
        .await?;
    if let crate::ledger::mirror::Outcome::Written { tx, .. } = out {
        chain.register_tx = Some(tx.to_string());
        let note = format!(
            "stake of {} escrowed and vote opened on chain (proposal id {}, tx {tx})",
            t.stake.stake,
            out.proposal_id()
        );
        ctx.event(mp, EventType::Normal, reason::REGISTERED, note);
    }
    let g = &mp.spec.governance;
    if g.voting_delay_blocks.is_some() || g.voting_period_blocks.is_some() {
        ctx.event(mp,
            EventType::Warning,
            reason::VOTING_SCHEDULE_IS_GLOBAL,
            "spec.governance.votingDelayBlocks/votingPeriodBlocks are not applied: the Governor's voting delay and period are chain-wide settings (change them through governance); quorum and threshold are per proposal".into(),
        );
    }
    Ok(None)
}

/// One chain write of [`decide::drive`].
async fn drive(
    mp: &ModelProposal,
    ctx: &Context,
    h: &LedgerHandle,
    id: alloy::primitives::B256,
    view: &ProposalView,
    write: decide::Drive,
) -> Result<(), Error> {
    let (ledger, suite) = (&h.ledger, &h.suite);
    let pid: U256 = view.proposal_id;
    match write {
        decide::Drive::Queue => {
            ctx.ledger_write(
                "ModelGovernor.queue",
                ledger.queue_ratification(suite, id, pid),
            )
            .await?;
            let note = "the vote passed; queued in the timelock".to_string();
            ctx.event(mp, EventType::Normal, reason::VOTE_QUEUED, note);
        }
        decide::Drive::Settle => {
            ctx.ledger_write(
                "ModelRegistry.settleDefeat",
                ledger.settle_defeat(suite, id),
            )
            .await?;
        }
        decide::Drive::Execute => {
            ctx.ledger_write(
                "ModelGovernor.execute",
                ledger.execute_ratification(suite, id, pid),
            )
            .await?;
        }
    }
    Ok(())
}

/// A deleted proposal: withdrawn on chain if its vote is undecided.
async fn cleanup(mp: Arc<ModelProposal>, ctx: &Context) -> Result<Action, Error> {
    let (Some(h), Some(uid)) = (ctx.ledger.clone(), mp.uid()) else {
        return Ok(Action::await_change());
    };
    let id = model_id(&uid);
    let view = h.ledger.proposal_view(&h.suite, id).await?;
    match decide::withdrawal(&view) {
        decide::Withdrawal::Nothing => {}
        decide::Withdrawal::Withdraw => {
            ctx.ledger_write(
                "ModelRegistry.withdraw",
                h.ledger.withdraw_model(&h.suite, id),
            )
            .await?;
            let d = h.ledger.decision(&h.suite, id).await?;
            let note = d.map_or_else(
                || "withdrawn on chain".to_string(),
                |d| {
                    format!(
                        "withdrawn on chain in tx {}: {} refunded, {} slashed",
                        d.tx, d.refunded, d.slashed
                    )
                },
            );
            ctx.event(&*mp, EventType::Normal, reason::WITHDRAWN, note);
        }
        decide::Withdrawal::Settle => {
            ctx.ledger_write(
                "ModelRegistry.settleDefeat",
                h.ledger.settle_defeat(&h.suite, id),
            )
            .await?;
        }
        decide::Withdrawal::TooLate => ctx.event(&*mp,
            EventType::Warning,
            reason::DECISION_PENDING,
            format!(
                "deleted after the vote passed ({:?}): it can no longer be withdrawn; anyone may execute it through the timelock, which refunds the stake",
                view.state
            ),
        ),
    }
    Ok(Action::await_change())
}

/// Runs the controller until the stream ends (only with a ledger: the chain is the record).
pub async fn run(ctx: Context) {
    if ctx.ledger.is_none() {
        tracing::warn!("no ledger configured: the ModelProposal controller is off");
        return;
    }
    let client = ctx.client.clone();
    let namespace = ctx.config.namespace.clone();
    let ns = namespace.as_deref();
    let wc = watcher::Config::default;
    let (ftjs, ftj_writer) = reflector::store();
    let (datanets, dn_writer) = reflector::store();
    let (rounds, round_writer) = reflector::store();
    let (deployments, md_writer) = reflector::store();
    let caches = Caches {
        ctx,
        ftjs,
        datanets,
        rounds,
        deployments,
    };
    let of =
        |ns: Option<String>, name: &str| Some(ObjectRef::new(name).within(&ns.unwrap_or_default()));
    Controller::new(scoped::<ModelProposal>(&client, ns), wc())
        .watches_stream(
            cached(scoped(&client, ns), wc(), ftj_writer, keep),
            move |f: FineTuneJob| of(f.namespace(), &f.spec.proposal_ref.name),
        )
        .watches_stream(
            cached(scoped(&client, ns), wc(), dn_writer, keep),
            move |d: Datanet| of(d.namespace(), &d.spec.proposal_ref.name),
        )
        // Counted at the next reconcile; their changes do not trigger one.
        .watches_stream(
            cached(scoped(&client, ns), wc(), round_writer, keep),
            |_: RLHFRound| None,
        )
        .watches_stream(
            cached(scoped(&client, ns), wc(), md_writer, keep),
            |_: ModelDeployment| None,
        )
        .shutdown_on_signal()
        .run(reconcile, error_policy, Arc::new(caches))
        .for_each(super::log_result)
        .await;
}
