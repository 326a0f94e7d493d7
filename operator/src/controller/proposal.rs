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

use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, U256};
use futures::StreamExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{self, Event as Finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use modelcommons_crds::conditions::{Conditions, Progress, READY, set_condition};
use modelcommons_crds::datanet::Datanet;
use modelcommons_crds::deployment::ModelDeployment;
use modelcommons_crds::finetune::FineTuneJob;
use modelcommons_crds::proposal::{
    BudgetStatus, Children, ModelProposal, ModelProposalPhase, ModelProposalStatus, ProposalChain,
    SPEC_MATCHES_CHAIN, Tally, reason,
};
use modelcommons_crds::rlhf::RLHFRound;

use super::{Context, Error, FIELD_MANAGER, FINALIZER, LEDGER_SYNCED, LedgerHandle, now};
use crate::ledger::governance::ProposalState;
use crate::ledger::ids::model_id;
use crate::ledger::mirror::RegisterModel;
use crate::ledger::proposal::{ProposalView, RegistryStatus};

pub use crate::ledger::spec::{SPEC_ENCODING, canonical_json, reward_budget, spec_hash};

/// A decimal string of GPU-hours (at most 4 decimals, no trailing zeros).
fn hours(h: f64) -> String {
    // Also turns the -0.0 an empty float sum yields into 0.0.
    let s = format!("{:.4}", if h > 0.0 { h } else { 0.0 });
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() { "0".into() } else { s.into() }
}

/// GPU-hours used (or reserved) by the proposal's FineTuneJobs, and how many objects work
/// under it.
async fn accounting(mp: &ModelProposal, ctx: &Context) -> Result<(BudgetStatus, Children), Error> {
    let ns = mp.namespace().unwrap_or_default();
    let name = mp.name_any();
    let lp = ListParams::default();
    let ftjs: Vec<FineTuneJob> = Api::<FineTuneJob>::namespaced(ctx.client.clone(), &ns)
        .list(&lp)
        .await?
        .items
        .into_iter()
        .filter(|f| f.spec.proposal_ref.name == name)
        .collect();
    // Used or reserved, from the operator's usage record (not the jobs' status).
    let used: f64 = super::usage::usage(ctx, mp)
        .await?
        .values()
        .map(super::usage::JobUsage::charged)
        .sum();
    let budget: f64 = mp.spec.mandate.budget.gpu_hours.parse().unwrap_or(0.0);
    let job_names: Vec<String> = ftjs.iter().map(ResourceExt::name_any).collect();
    let datanets = Api::<Datanet>::namespaced(ctx.client.clone(), &ns)
        .list(&lp)
        .await?
        .items
        .iter()
        .filter(|d| d.spec.proposal_ref.name == name)
        .count();
    let rounds: Vec<String> = Api::<RLHFRound>::namespaced(ctx.client.clone(), &ns)
        .list(&lp)
        .await?
        .items
        .iter()
        .filter(|r| job_names.contains(&r.spec.model_ref.name))
        .map(ResourceExt::name_any)
        .collect();
    let deployments = Api::<ModelDeployment>::namespaced(ctx.client.clone(), &ns)
        .list(&lp)
        .await?
        .items
        .iter()
        .filter(|d| {
            let m = &d.spec.model_ref;
            m.fine_tune_job
                .as_ref()
                .is_some_and(|j| job_names.contains(j))
                || m.rlhf_round.as_ref().is_some_and(|r| rounds.contains(r))
        })
        .count();
    let n = |x: usize| u32::try_from(x).unwrap_or(u32::MAX);
    Ok((
        BudgetStatus {
            gpu_hours_used: hours(used),
            gpu_hours_left: hours(budget - used),
        },
        Children {
            datanets: n(datanets),
            fine_tune_jobs: n(job_names.len()),
            rlhf_rounds: n(rounds.len()),
            model_deployments: n(deployments),
        },
    ))
}

/// What the reconcile decided to show.
struct Shown {
    phase: ModelProposalPhase,
    ready: bool,
    reason: &'static str,
    message: String,
    requeue: Option<Duration>,
}

impl Shown {
    /// Where the proposal stands in kstatus terms: Ready once approved; Stalled once decided
    /// against (rejected, expired, withdrawn) or when the spec must change; Reconciling while
    /// it is registered, staked, voted on or timelocked.
    fn progress(&self) -> Progress {
        use ModelProposalPhase::*;
        if self.ready {
            Progress::Ready
        } else if matches!(self.phase, Rejected | Expired | Withdrawn)
            || [reason::INVALID_STAKE, reason::CANCELED].contains(&self.reason)
        {
            Progress::Stalled
        } else {
            Progress::Reconciling
        }
    }
}

fn state_name(s: Option<ProposalState>) -> Option<String> {
    s.map(|s| format!("{s:?}"))
}

/// Reads the chain, takes the next step the proposal needs, and says what to show.
async fn step(
    mp: &ModelProposal,
    ctx: &Context,
    h: &LedgerHandle,
    chain: &mut ProposalChain,
) -> Result<(Shown, ProposalView), Error> {
    let uid = mp
        .uid()
        .ok_or_else(|| Error::Invalid("ModelProposal without a uid".into()))?;
    let id = model_id(&uid);
    let (ledger, suite) = (&h.ledger, &h.suite);
    chain.model_id = Some(id.to_string());
    let mut view = ledger.proposal_view(suite, id).await?;

    if view.status == RegistryStatus::None {
        let proposer: Address =
            mp.spec.proposer.parse().map_err(|e| {
                Error::Invalid(format!("spec.proposer {:?}: {e}", mp.spec.proposer))
            })?;
        let Ok(stake) = U256::from_str_radix(&mp.spec.stake, 10) else {
            return Ok((
                Shown {
                    phase: ModelProposalPhase::Pending,
                    ready: false,
                    reason: reason::INVALID_STAKE,
                    message: format!(
                        "spec.stake {} does not fit in 256 bits; create the proposal with a smaller stake",
                        mp.spec.stake
                    ),
                    requeue: None,
                },
                view,
            ));
        };
        let pending = |reason: &'static str, message: String, requeue| Shown {
            phase: ModelProposalPhase::Pending,
            ready: false,
            reason,
            message,
            requeue,
        };
        let Some(reward_budget) = reward_budget(&mp.spec) else {
            return Ok((
                pending(
                    reason::INVALID_REWARD_BUDGET,
                    "spec.mandate.rewardBudget does not fit in 256 bits".into(),
                    None,
                ),
                view,
            ));
        };
        let g = &mp.spec.governance;
        let d = ctx.config.governance;
        let quorum_bps = g
            .quorum_bps
            .and_then(|b| u16::try_from(b).ok())
            .unwrap_or(d.quorum_bps);
        let threshold_bps = g
            .approval_threshold_bps
            .and_then(|b| u16::try_from(b).ok())
            .unwrap_or(d.threshold_bps);
        let (min_q, min_t) = ledger.governance_floors(suite).await?;
        if quorum_bps < min_q || threshold_bps < min_t {
            return Ok((
                pending(
                    reason::GOVERNANCE_BELOW_FLOOR,
                    format!(
                        "quorum {quorum_bps} bps and approval threshold {threshold_bps} bps are below the floors governance set on chain ({min_q} and {min_t} bps): a proposal may ask only for more. Create a new ModelProposal with spec.governance at or above them"
                    ),
                    None,
                ),
                view,
            ));
        }
        let hash = spec_hash(&mp.spec);
        let authorize = format!(
            "modelcommons stake authorize --proposal <this proposal's YAML> --key-file <{proposer}'s key> --rpc <chain> --registry {}",
            suite.registry
        );
        let Some(auth) = mp.spec.stake_authorization.clone() else {
            return Ok((
                pending(
                    reason::AWAITING_STAKE_AUTHORIZATION,
                    format!(
                        "the proposer {proposer} has not authorized escrowing {stake} OPEN base units for this spec (hash {hash}, reward budget {reward_budget}): sign it with `{authorize}` and set the printed spec.stakeAuthorization"
                    ),
                    Some(ctx.config.recheck),
                ),
                view,
            ));
        };
        let deadline = U256::from(auth.deadline);
        let nonce = U256::from(auth.nonce);
        if auth.deadline < view.block_time {
            return Ok((
                pending(
                    reason::STAKE_AUTHORIZATION_EXPIRED,
                    format!(
                        "spec.stakeAuthorization expired at {} (the chain's time is {}); sign again with `{authorize}`",
                        auth.deadline, view.block_time
                    ),
                    Some(ctx.config.recheck),
                ),
                view,
            ));
        }
        let signature: alloy::primitives::Bytes = match auth.signature.parse() {
            Ok(b) => b,
            Err(_) => alloy::primitives::Bytes::new(),
        };
        if !ledger.has_code(proposer).await? {
            let terms = crate::ledger::proposal::StakeTerms {
                spec_hash: hash,
                stake,
                reward_budget,
                nonce,
                deadline,
            };
            let (digest, used) = ledger
                .stake_authorization_digest(suite, proposer, &terms)
                .await?;
            if used {
                return Ok((
                    pending(
                        reason::STAKE_AUTHORIZATION_USED,
                        format!(
                            "spec.stakeAuthorization's nonce {nonce} has already registered another proposal of {proposer}; each authorization registers one. Sign again with `{authorize}`"
                        ),
                        None,
                    ),
                    view,
                ));
            }
            let signer = alloy::primitives::Signature::try_from(signature.as_ref())
                .ok()
                .and_then(|sig| sig.recover_address_from_prehash(&digest).ok());
            if signer != Some(proposer) {
                return Ok((
                    pending(
                        reason::STAKE_NOT_AUTHORIZED,
                        format!(
                            "spec.stakeAuthorization is not {proposer}'s signature of this spec (hash {hash}), stake {stake}, reward budget {reward_budget}, nonce {nonce} and deadline {deadline}{}: nothing is escrowed. Sign again with `{authorize}`",
                            signer
                                .map(|s| format!(" (it was signed by {s})"))
                                .unwrap_or_default()
                        ),
                        Some(ctx.config.recheck),
                    ),
                    view,
                ));
            }
        }
        let (balance, allowance) = ledger.stake_readiness(suite, proposer).await?;
        if allowance < stake || balance < stake {
            let message = format!(
                "the stake of {stake} OPEN base units is escrowed from {proposer} when it may be: approve the registry {} on the OPEN token {} for at least {stake} (allowance now {allowance}, balance {balance}), e.g. `cast send {} 'approve(address,uint256)' {} {stake} --private-key <proposer key>`",
                suite.registry, suite.open, suite.open, suite.registry
            );
            return Ok((
                Shown {
                    phase: ModelProposalPhase::Pending,
                    ready: false,
                    reason: reason::AWAITING_STAKE,
                    message,
                    requeue: Some(ctx.config.recheck),
                },
                view,
            ));
        }
        let req = RegisterModel {
            uid: uid.clone(),
            spec_hash: hash,
            proposer,
            stake,
            reward_budget,
            quorum_bps,
            threshold_bps,
            nonce,
            deadline,
            signature,
        };
        let out = ctx
            .ledger_write(
                "ModelRegistry.register",
                ledger.register_model(suite.registry, &req),
            )
            .await?;
        if let crate::ledger::mirror::Outcome::Written { tx, .. } = out {
            chain.register_tx = Some(tx.to_string());
            ctx.event(
                mp,
                EventType::Normal,
                reason::REGISTERED,
                format!(
                    "stake of {stake} escrowed and vote opened on chain (proposal id {}, tx {tx})",
                    out.proposal_id()
                ),
            );
        }
        if g.voting_delay_blocks.is_some() || g.voting_period_blocks.is_some() {
            ctx.event(mp,
                EventType::Warning,
                reason::VOTING_SCHEDULE_IS_GLOBAL,
                "spec.governance.votingDelayBlocks/votingPeriodBlocks are not applied: the Governor's voting delay and period are chain-wide settings (change them through governance); quorum and threshold are per proposal".into(),
            );
        }
        view = ledger.proposal_view(suite, id).await?;
    }
    if chain.register_tx.is_none() {
        chain.register_tx = ledger
            .registration_tx(suite, id)
            .await?
            .map(|t| t.to_string());
    }

    if view.status == RegistryStatus::Voting {
        let pid = view.proposal_id;
        match view.state {
            Some(ProposalState::Succeeded) => {
                ctx.ledger_write(
                    "ModelGovernor.queue",
                    ledger.queue_ratification(suite, id, pid),
                )
                .await?;
                ctx.event(
                    mp,
                    EventType::Normal,
                    reason::VOTE_QUEUED,
                    "the vote passed; queued in the timelock".into(),
                );
                view = ledger.proposal_view(suite, id).await?;
            }
            Some(ProposalState::Defeated | ProposalState::Expired) => {
                ctx.ledger_write(
                    "ModelRegistry.settleDefeat",
                    ledger.settle_defeat(suite, id),
                )
                .await?;
                view = ledger.proposal_view(suite, id).await?;
            }
            _ => {}
        }
        if view.state == Some(ProposalState::Queued) && view.eta > 0 && view.block_time >= view.eta
        {
            ctx.ledger_write(
                "ModelGovernor.execute",
                ledger.execute_ratification(suite, id, pid),
            )
            .await?;
            view = ledger.proposal_view(suite, id).await?;
        }
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

    let pid = view.proposal_id;
    let shown = match view.status {
        RegistryStatus::None => unreachable_registration(),
        RegistryStatus::Voting => match view.state {
            Some(ProposalState::Pending) => Shown {
                phase: ModelProposalPhase::Voting,
                ready: false,
                reason: reason::VOTING_NOT_STARTED,
                message: format!(
                    "voting on proposal {pid} opens after block {}; holders delegate their gOPEN before then (voting power is measured at that block)",
                    view.snapshot
                ),
                requeue: Some(ctx.config.recheck),
            },
            Some(ProposalState::Active) => Shown {
                phase: ModelProposalPhase::Voting,
                ready: false,
                reason: reason::VOTE_OPEN,
                message: format!(
                    "token holders vote on proposal {pid} until block {} (castVote or castVoteBySig on the Governor {})",
                    view.deadline, h.suite.governor
                ),
                requeue: Some(ctx.config.recheck),
            },
            Some(ProposalState::Queued) => Shown {
                phase: ModelProposalPhase::Voting,
                ready: false,
                reason: reason::AWAITING_TIMELOCK,
                message: format!(
                    "the vote passed; the timelock lets it execute at unix time {} (chain time now {})",
                    view.eta, view.block_time
                ),
                requeue: Some(ctx.config.recheck),
            },
            Some(ProposalState::Canceled) => Shown {
                phase: ModelProposalPhase::Withdrawn,
                ready: false,
                reason: reason::CANCELED,
                message: format!("the Governor proposal {pid} was canceled"),
                requeue: None,
            },
            other => Shown {
                phase: ModelProposalPhase::Voting,
                ready: false,
                reason: reason::DECIDING,
                message: format!("the vote is {other:?}; the operator drives it to a decision"),
                requeue: Some(ctx.config.recheck),
            },
        },
        RegistryStatus::Ratified => Shown {
            phase: ModelProposalPhase::Approved,
            ready: true,
            reason: reason::RATIFIED,
            message: "token holders approved the mandate; the stake was refunded".into(),
            requeue: None,
        },
        RegistryStatus::Rejected if view.quorum_reached() => Shown {
            phase: ModelProposalPhase::Rejected,
            ready: false,
            reason: reason::DEFEATED,
            message: format!(
                "token holders rejected the proposal; {} of the stake was slashed to the treasury, {} refunded",
                chain.stake_slashed.as_deref().unwrap_or("?"),
                chain.stake_refunded.as_deref().unwrap_or("?")
            ),
            requeue: None,
        },
        RegistryStatus::Rejected => Shown {
            phase: ModelProposalPhase::Expired,
            ready: false,
            reason: reason::NO_QUORUM,
            message: format!(
                "the vote ended without quorum; {} of the stake was slashed to the treasury, {} refunded",
                chain.stake_slashed.as_deref().unwrap_or("?"),
                chain.stake_refunded.as_deref().unwrap_or("?")
            ),
            requeue: None,
        },
        RegistryStatus::Withdrawn => Shown {
            phase: ModelProposalPhase::Withdrawn,
            ready: false,
            reason: reason::WITHDRAWN,
            message: "withdrawn before a decision".into(),
            requeue: None,
        },
    };
    Ok((shown, view))
}

fn unreachable_registration() -> Shown {
    Shown {
        phase: ModelProposalPhase::Pending,
        ready: false,
        reason: reason::REGISTERING,
        message: "registration was sent; waiting for the chain to show it".into(),
        requeue: Some(Duration::from_secs(2)),
    }
}

async fn apply(mp: Arc<ModelProposal>, ctx: &Context) -> Result<Action, Error> {
    let Some(h) = ctx.ledger.clone() else {
        return Ok(Action::await_change());
    };
    let current = mp.status.clone().unwrap_or_default();
    let mut chain = current.chain.clone().unwrap_or_default();
    let generation = mp.metadata.generation;
    let mut conditions = current.conditions.clone();
    let (budget, children) = accounting(&mp, ctx).await?;
    let mut status = ModelProposalStatus {
        observed_generation: generation,
        budget: Some(budget),
        children: Some(children.clone()),
        ..current.clone()
    };
    let requeue = match step(&mp, ctx, &h, &mut chain).await {
        Ok((mut shown, view)) => {
            if shown.phase == ModelProposalPhase::Approved && children.fine_tune_jobs > 0 {
                shown.phase = ModelProposalPhase::Active;
                shown.reason = "MandateInUse";
                shown.message = format!(
                    "approved; {} FineTuneJob(s) work under the mandate",
                    children.fine_tune_jobs
                );
            }
            if view.status != RegistryStatus::None {
                chain.proposal_id = Some(view.proposal_id.to_string());
                chain.snapshot_block = Some(view.snapshot);
                chain.deadline_block = Some(view.deadline);
                chain.governor_state = state_name(view.state);
                status.tally = Some(Tally {
                    for_votes: view.for_.to_string(),
                    against_votes: view.against.to_string(),
                    abstain_votes: view.abstain.to_string(),
                    quorum_reached: view.quorum_reached(),
                    quorum_votes: view.quorum_votes.map(|q| q.to_string()),
                });
            }
            status.phase = Some(shown.phase);
            Conditions::new(&mut conditions, generation, now()).progress(
                shown.progress(),
                shown.reason,
                &shown.message,
            );
            set_condition(
                &mut conditions,
                LEDGER_SYNCED,
                true,
                reason::IN_SYNC,
                "the status mirrors the chain",
                generation,
                now(),
            );
            if view.status != RegistryStatus::None && view.spec_hash != spec_hash(&mp.spec) {
                set_condition(
                    &mut conditions,
                    SPEC_MATCHES_CHAIN,
                    false,
                    reason::SPEC_CHANGED_AFTER_REGISTRATION,
                    "the spec changed after it was registered: the vote and the mandate are the registered spec's; create a new ModelProposal for a new spec",
                    generation,
                    now(),
                );
            } else {
                conditions.retain(|c| c.type_ != SPEC_MATCHES_CHAIN);
            }
            shown.requeue
        }
        Err(Error::Ledger(e)) => {
            status.phase = status.phase.or(Some(ModelProposalPhase::Pending));
            set_condition(
                &mut conditions,
                LEDGER_SYNCED,
                false,
                reason::LEDGER_UNAVAILABLE,
                &format!("{e}; retrying (check the RPC endpoint and the operator's key)"),
                generation,
                now(),
            );
            Some(Duration::from_secs(5))
        }
        Err(e) => return Err(e),
    };
    status.chain = Some(chain);
    status.conditions = conditions;
    if status != current {
        write_status(&mp, ctx, &status).await?;
        if current.phase != status.phase
            && let Some(phase) = status.phase
        {
            let ready = status.conditions.iter().find(|c| c.type_ == READY);
            ctx.event(
                &*mp,
                if matches!(
                    phase,
                    ModelProposalPhase::Rejected | ModelProposalPhase::Expired
                ) {
                    EventType::Warning
                } else {
                    EventType::Normal
                },
                &format!("{phase:?}"),
                ready.map_or_else(|| format!("phase {phase:?}"), |c| c.message.clone()),
            );
        }
    }
    Ok(requeue.map_or_else(Action::await_change, Action::requeue))
}

async fn write_status(
    mp: &ModelProposal,
    ctx: &Context,
    status: &ModelProposalStatus,
) -> Result<(), Error> {
    let patch = serde_json::json!({
        "apiVersion": ModelProposal::api_version(&()),
        "kind": ModelProposal::kind(&()),
        "status": status,
    });
    Api::<ModelProposal>::namespaced(ctx.client.clone(), &mp.namespace().unwrap_or_default())
        .patch_status(
            &mp.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    Ok(())
}

/// A deleted proposal: withdrawn on chain if its vote is undecided.
async fn cleanup(mp: Arc<ModelProposal>, ctx: &Context) -> Result<Action, Error> {
    let (Some(h), Some(uid)) = (ctx.ledger.clone(), mp.uid()) else {
        return Ok(Action::await_change());
    };
    let id = model_id(&uid);
    let view = h.ledger.proposal_view(&h.suite, id).await?;
    if view.status != RegistryStatus::Voting {
        return Ok(Action::await_change());
    }
    match view.state {
        Some(ProposalState::Pending | ProposalState::Active) => {
            ctx.ledger_write(
                "ModelRegistry.withdraw",
                h.ledger.withdraw_model(&h.suite, id),
            )
            .await?;
            let d = h.ledger.decision(&h.suite, id).await?;
            ctx.event(&*mp,
                EventType::Normal,
                reason::WITHDRAWN,
                d.map_or_else(
                    || "withdrawn on chain".to_string(),
                    |d| {
                        format!(
                            "withdrawn on chain in tx {}: {} refunded, {} slashed",
                            d.tx, d.refunded, d.slashed
                        )
                    },
                ),
            );
        }
        Some(ProposalState::Defeated | ProposalState::Expired) => {
            ctx.ledger_write(
                "ModelRegistry.settleDefeat",
                h.ledger.settle_defeat(&h.suite, id),
            )
            .await?;
        }
        other => ctx.event(&*mp,
            EventType::Warning,
            reason::DECISION_PENDING,
            format!(
                "deleted after the vote passed ({other:?}): it can no longer be withdrawn; anyone may execute it through the timelock, which refunds the stake"
            ),
        ),
    }
    Ok(Action::await_change())
}

/// Reconciles one ModelProposal (timed and counted in the metrics).
pub async fn reconcile(mp: Arc<ModelProposal>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let api =
        Api::<ModelProposal>::namespaced(ctx.client.clone(), &mp.namespace().unwrap_or_default());
    let res = finalizer::finalizer(&api, FINALIZER, mp, |event| async {
        match event {
            Finalizer::Apply(mp) => apply(mp, &ctx).await,
            Finalizer::Cleanup(mp) => cleanup(mp, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
        finalizer::Error::AddFinalizer(e) | finalizer::Error::RemoveFinalizer(e) => Error::Kube(e),
        other => Error::Invalid(other.to_string()),
    });
    ctx.metrics.observe(
        "ModelProposal",
        res.is_ok(),
        started.elapsed().as_secs_f64(),
    );
    res
}

fn error_policy(_mp: Arc<ModelProposal>, err: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(error = %err, "ModelProposal reconcile failed");
    Action::requeue(Duration::from_secs(5))
}

/// Runs the controller until the stream ends (only with a ledger: the chain is the record).
pub async fn run(ctx: Context) {
    if ctx.ledger.is_none() {
        tracing::warn!("no ledger configured: the ModelProposal controller is off");
        return;
    }
    let client = ctx.client.clone();
    let (mps, ftjs, datanets) = match &ctx.config.namespace {
        Some(ns) => (
            Api::<ModelProposal>::namespaced(client.clone(), ns),
            Api::<FineTuneJob>::namespaced(client.clone(), ns),
            Api::<Datanet>::namespaced(client.clone(), ns),
        ),
        None => (
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
        ),
    };
    Controller::new(mps, watcher::Config::default())
        .watches(ftjs, watcher::Config::default(), |f: FineTuneJob| {
            let ns = f.namespace().unwrap_or_default();
            Some(ObjectRef::new(&f.spec.proposal_ref.name).within(&ns))
        })
        .watches(datanets, watcher::Config::default(), |d: Datanet| {
            let ns = d.namespace().unwrap_or_default();
            Some(ObjectRef::new(&d.spec.proposal_ref.name).within(&ns))
        })
        .shutdown_on_signal()
        .run(reconcile, error_policy, Arc::new(ctx))
        .for_each(super::log_result)
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_are_short_decimals() {
        assert_eq!(hours(1.5), "1.5");
        assert_eq!(hours(2.0), "2");
        assert_eq!(hours(-3.0), "0");
        assert_eq!(hours(0.00004), "0");
        assert_eq!(hours(std::iter::empty::<f64>().sum()), "0");
        assert_eq!(hours(0.1234567), "0.1235");
    }
}
