//! The decide step of the ModelProposal controller: from the chain (the proposal's view, the
//! proposer's stake readiness), what the status shows, which chain write drives the vote on,
//! and what a deleted proposal's withdrawal does. Pure: unit-tested in `tests.rs`.

use std::time::Duration;

use alloy::primitives::{Address, B256, Bytes, U256};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::runtime::events::EventType;
use modelcommons_crds::conditions::{Conditions, Progress, READY};
use modelcommons_crds::datanet::Datanet;
use modelcommons_crds::deployment::ModelDeployment;
use modelcommons_crds::finetune::FineTuneJob;
use modelcommons_crds::proposal::{
    BudgetStatus, Children, ModelProposal, ModelProposalPhase, ModelProposalStatus, ProposalChain,
    SPEC_MATCHES_CHAIN, Tally, reason,
};
use modelcommons_crds::rlhf::RLHFRound;

use crate::controller::{GovernanceDefaults, LEDGER_SYNCED};
use crate::ledger::governance::ProposalState;
use crate::ledger::proposal::{ProposalView, RegistryStatus, StakeTerms};
use crate::ledger::spec::{reward_budget, spec_hash};

/// What the status shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Shown {
    /// The phase.
    pub phase: ModelProposalPhase,
    /// Whether the goal (an approved mandate) is reached.
    pub ready: bool,
    /// The `Ready` reason.
    pub reason: &'static str,
    /// What happened and what to do.
    pub message: String,
    /// When to look again (None: on the next change).
    pub requeue: Option<Duration>,
}

impl Shown {
    fn pending(reason: &'static str, message: String, requeue: Option<Duration>) -> Self {
        Shown {
            phase: ModelProposalPhase::Pending,
            ready: false,
            reason,
            message,
            requeue,
        }
    }

    /// Where the proposal stands in kstatus terms: Ready once approved; Stalled once decided
    /// against (rejected, expired, withdrawn) or when the spec must change; Reconciling while
    /// it is registered, staked, voted on or timelocked.
    pub fn progress(&self) -> Progress {
        use ModelProposalPhase::*;
        const NEEDS_A_NEW_PROPOSAL: &[&str] = &[
            reason::INVALID_STAKE,
            reason::INVALID_REWARD_BUDGET,
            reason::GOVERNANCE_BELOW_FLOOR,
            reason::STAKE_AUTHORIZATION_USED,
            reason::CANCELED,
        ];
        if self.ready {
            Progress::Ready
        } else if matches!(self.phase, Rejected | Expired | Withdrawn)
            || NEEDS_A_NEW_PROPOSAL.contains(&self.reason)
        {
            Progress::Stalled
        } else {
            Progress::Reconciling
        }
    }
}

/// A decimal string of GPU-hours (at most 4 decimals, no trailing zeros).
pub fn hours(h: f64) -> String {
    // Also turns the -0.0 an empty float sum yields into 0.0.
    let s = format!("{:.4}", if h > 0.0 { h } else { 0.0 });
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() { "0".into() } else { s.into() }
}

/// The objects working under the proposal `name` (of one namespace's cached objects).
pub fn children(
    name: &str,
    ftjs: &[FineTuneJob],
    datanets: &[Datanet],
    rounds: &[RLHFRound],
    deployments: &[ModelDeployment],
) -> Children {
    let jobs: Vec<String> = ftjs
        .iter()
        .filter(|f| f.spec.proposal_ref.name == name)
        .map(ResourceExt::name_any)
        .collect();
    let rounds: Vec<String> = rounds
        .iter()
        .filter(|r| jobs.contains(&r.spec.model_ref.name))
        .map(ResourceExt::name_any)
        .collect();
    let served = deployments.iter().filter(|d| {
        let m = &d.spec.model_ref;
        m.fine_tune_job.as_ref().is_some_and(|j| jobs.contains(j))
            || m.rlhf_round.as_ref().is_some_and(|r| rounds.contains(r))
    });
    let n = |x: usize| u32::try_from(x).unwrap_or(u32::MAX);
    Children {
        datanets: n(datanets
            .iter()
            .filter(|d| d.spec.proposal_ref.name == name)
            .count()),
        fine_tune_jobs: n(jobs.len()),
        rlhf_rounds: n(rounds.len()),
        model_deployments: n(served.count()),
    }
}

/// The mandate's GPU-hours: `used` (used or reserved, from the operator's usage record) and
/// what is left of the budget.
pub fn budget(mp: &ModelProposal, used: f64) -> BudgetStatus {
    let total: f64 = mp.spec.mandate.budget.gpu_hours.parse().unwrap_or(0.0);
    BudgetStatus {
        gpu_hours_used: hours(used),
        gpu_hours_left: hours(total - used),
    }
}

/// What registering the proposal needs from its spec: the proposer, the terms it signed, the
/// governance it asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Terms {
    /// The proposer.
    pub proposer: Address,
    /// The stake terms (spec hash, stake, reward budget, nonce, deadline).
    pub stake: StakeTerms,
    /// The signature (empty without one).
    pub signature: Bytes,
    /// Quorum in basis points.
    pub quorum_bps: u16,
    /// Approval threshold in basis points.
    pub threshold_bps: u16,
}

/// The terms of `mp`'s registration, or what the status shows instead. A proposer that is not
/// an address is an invalid object (an error), not a status.
pub fn terms(mp: &ModelProposal, d: GovernanceDefaults) -> Result<Result<Terms, Shown>, String> {
    let proposer: Address = mp
        .spec
        .proposer
        .parse()
        .map_err(|e| format!("spec.proposer {:?}: {e}", mp.spec.proposer))?;
    let Ok(stake) = U256::from_str_radix(&mp.spec.stake, 10) else {
        return Ok(Err(Shown::pending(
            reason::INVALID_STAKE,
            format!(
                "spec.stake {} does not fit in 256 bits; create the proposal with a smaller stake",
                mp.spec.stake
            ),
            None,
        )));
    };
    let Some(reward_budget) = reward_budget(&mp.spec) else {
        return Ok(Err(Shown::pending(
            reason::INVALID_REWARD_BUDGET,
            "spec.mandate.rewardBudget does not fit in 256 bits".into(),
            None,
        )));
    };
    let g = &mp.spec.governance;
    let bps = |v: Option<u32>, default| v.and_then(|b| u16::try_from(b).ok()).unwrap_or(default);
    let auth = mp.spec.stake_authorization.clone();
    Ok(Ok(Terms {
        proposer,
        stake: StakeTerms {
            spec_hash: spec_hash(&mp.spec),
            stake,
            reward_budget,
            nonce: U256::from(auth.as_ref().map_or(0, |a| a.nonce)),
            deadline: U256::from(auth.as_ref().map_or(0, |a| a.deadline)),
        },
        signature: auth
            .and_then(|a| a.signature.parse().ok())
            .unwrap_or_default(),
        quorum_bps: bps(g.quorum_bps, d.quorum_bps),
        threshold_bps: bps(g.approval_threshold_bps, d.threshold_bps),
    }))
}

/// What the chain says about a registration's terms.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistrationSeen {
    /// The floors governance set: (quorum, threshold) in basis points.
    pub floors: (u16, u16),
    /// The chain's time.
    pub block_time: u64,
    /// The authorization's EIP-712 digest and whether its nonce is used (None: the proposer is
    /// a contract, which authorizes by EIP-1271 on chain).
    pub authorization: Option<(B256, bool)>,
    /// The proposer's OPEN balance and allowance to the registry.
    pub balance: U256,
    /// See `balance`.
    pub allowance: U256,
}

/// The addresses the messages name.
#[derive(Debug, Clone, Copy)]
pub struct Addresses {
    /// The registry.
    pub registry: Address,
    /// The OPEN token.
    pub open: Address,
    /// The Governor.
    pub governor: Address,
}

/// Whether the proposal may be registered now, or what the status shows instead.
pub fn registration(
    mp: &ModelProposal,
    t: &Terms,
    seen: &RegistrationSeen,
    at: Addresses,
    recheck: Duration,
) -> Result<(), Shown> {
    let (q, th) = (t.quorum_bps, t.threshold_bps);
    let (min_q, min_t) = seen.floors;
    if q < min_q || th < min_t {
        return Err(Shown::pending(
            reason::GOVERNANCE_BELOW_FLOOR,
            format!(
                "quorum {q} bps and approval threshold {th} bps are below the floors governance set on chain ({min_q} and {min_t} bps): a proposal may ask only for more. Create a new ModelProposal with spec.governance at or above them"
            ),
            None,
        ));
    }
    let (proposer, s) = (t.proposer, &t.stake);
    let (hash, stake, budget) = (s.spec_hash, s.stake, s.reward_budget);
    let authorize = format!(
        "modelcommons stake authorize --proposal <this proposal's YAML> --key-file <{proposer}'s key> --rpc <chain> --registry {}",
        at.registry
    );
    let Some(auth) = &mp.spec.stake_authorization else {
        return Err(Shown::pending(
            reason::AWAITING_STAKE_AUTHORIZATION,
            format!(
                "the proposer {proposer} has not authorized escrowing {stake} OPEN base units for this spec (hash {hash}, reward budget {budget}): sign it with `{authorize}` and set the printed spec.stakeAuthorization"
            ),
            Some(recheck),
        ));
    };
    if auth.deadline < seen.block_time {
        return Err(Shown::pending(
            reason::STAKE_AUTHORIZATION_EXPIRED,
            format!(
                "spec.stakeAuthorization expired at {} (the chain's time is {}); sign again with `{authorize}`",
                auth.deadline, seen.block_time
            ),
            Some(recheck),
        ));
    }
    if let Some((digest, used)) = seen.authorization {
        signed_by_proposer(t, digest, used, &authorize, recheck)?;
    }
    if seen.allowance < stake || seen.balance < stake {
        return Err(Shown::pending(
            reason::AWAITING_STAKE,
            format!(
                "the stake of {stake} OPEN base units is escrowed from {proposer} when it may be: approve the registry {} on the OPEN token {} for at least {stake} (allowance now {}, balance {}), e.g. `cast send {} 'approve(address,uint256)' {} {stake} --private-key <proposer key>`",
                at.registry, at.open, seen.allowance, seen.balance, at.open, at.registry
            ),
            Some(recheck),
        ));
    }
    Ok(())
}

/// An EOA proposer's authorization: unused, and its signature of exactly these terms.
fn signed_by_proposer(
    t: &Terms,
    digest: B256,
    used: bool,
    authorize: &str,
    recheck: Duration,
) -> Result<(), Shown> {
    let (proposer, s) = (t.proposer, &t.stake);
    if used {
        return Err(Shown::pending(
            reason::STAKE_AUTHORIZATION_USED,
            format!(
                "spec.stakeAuthorization's nonce {} has already registered another proposal of {proposer}; each authorization registers one. Sign again with `{authorize}`",
                s.nonce
            ),
            None,
        ));
    }
    let signer = alloy::primitives::Signature::try_from(t.signature.as_ref())
        .ok()
        .and_then(|sig| sig.recover_address_from_prehash(&digest).ok());
    if signer == Some(proposer) {
        return Ok(());
    }
    Err(Shown::pending(
        reason::STAKE_NOT_AUTHORIZED,
        format!(
            "spec.stakeAuthorization is not {proposer}'s signature of this spec (hash {}), stake {}, reward budget {}, nonce {} and deadline {}{}: nothing is escrowed. Sign again with `{authorize}`",
            s.spec_hash,
            s.stake,
            s.reward_budget,
            s.nonce,
            s.deadline,
            signer
                .map(|a| format!(" (it was signed by {a})"))
                .unwrap_or_default()
        ),
        Some(recheck),
    ))
}

/// A chain write that drives a registered proposal's vote to its decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drive {
    /// The vote passed: queue it in the timelock.
    Queue,
    /// The timelock's delay is over: execute it (refunds the stake, funds the mandate).
    Execute,
    /// The vote was lost (or expired): settle it (slashes part of the stake).
    Settle,
}

/// The next chain write the proposal's vote needs (None: nothing until time or votes pass).
pub fn drive(view: &ProposalView) -> Option<Drive> {
    if view.status != RegistryStatus::Voting {
        return None;
    }
    match view.state {
        Some(ProposalState::Succeeded) => Some(Drive::Queue),
        Some(ProposalState::Defeated | ProposalState::Expired) => Some(Drive::Settle),
        Some(ProposalState::Queued) if view.eta > 0 && view.block_time >= view.eta => {
            Some(Drive::Execute)
        }
        _ => None,
    }
}

/// What the status shows of a registered proposal.
pub fn shown(
    view: &ProposalView,
    chain: &ProposalChain,
    recheck: Duration,
    governor: Address,
) -> Shown {
    let show = |phase, ready, reason, message, requeue| Shown {
        phase,
        ready,
        reason,
        message,
        requeue,
    };
    let stake = |c: &ProposalChain| {
        (
            c.stake_slashed.clone().unwrap_or_else(|| "?".into()),
            c.stake_refunded.clone().unwrap_or_else(|| "?".into()),
        )
    };
    use ModelProposalPhase as P;
    match view.status {
        RegistryStatus::None => show(
            P::Pending,
            false,
            reason::REGISTERING,
            "registration was sent; waiting for the chain to show it".into(),
            Some(Duration::from_secs(2)),
        ),
        RegistryStatus::Voting => voting(view, recheck, governor),
        RegistryStatus::Ratified => show(
            P::Approved,
            true,
            reason::RATIFIED,
            "token holders approved the mandate; the stake was refunded".into(),
            None,
        ),
        RegistryStatus::Rejected => {
            let (slashed, refunded) = stake(chain);
            let (phase, r, what) = if view.quorum_reached() {
                (
                    P::Rejected,
                    reason::DEFEATED,
                    "token holders rejected the proposal",
                )
            } else {
                (
                    P::Expired,
                    reason::NO_QUORUM,
                    "the vote ended without quorum",
                )
            };
            let message = format!(
                "{what}; {slashed} of the stake was slashed to the treasury, {refunded} refunded"
            );
            show(phase, false, r, message, None)
        }
        RegistryStatus::Withdrawn => show(
            P::Withdrawn,
            false,
            reason::WITHDRAWN,
            "withdrawn before a decision".into(),
            None,
        ),
    }
}

/// A registered proposal whose vote is undecided.
fn voting(view: &ProposalView, recheck: Duration, governor: Address) -> Shown {
    let pid = view.proposal_id;
    let (phase, reason, message, requeue) = match view.state {
        Some(ProposalState::Pending) => (
            ModelProposalPhase::Voting,
            reason::VOTING_NOT_STARTED,
            format!(
                "voting on proposal {pid} opens after block {}; holders delegate their gOPEN before then (voting power is measured at that block)",
                view.snapshot
            ),
            Some(recheck),
        ),
        Some(ProposalState::Active) => (
            ModelProposalPhase::Voting,
            reason::VOTE_OPEN,
            format!(
                "token holders vote on proposal {pid} until block {} (castVote or castVoteBySig on the Governor {governor})",
                view.deadline
            ),
            Some(recheck),
        ),
        Some(ProposalState::Queued) => (
            ModelProposalPhase::Voting,
            reason::AWAITING_TIMELOCK,
            format!(
                "the vote passed; the timelock lets it execute at unix time {} (chain time now {})",
                view.eta, view.block_time
            ),
            Some(recheck),
        ),
        Some(ProposalState::Canceled) => (
            ModelProposalPhase::Withdrawn,
            reason::CANCELED,
            format!("the Governor proposal {pid} was canceled"),
            None,
        ),
        other => (
            ModelProposalPhase::Voting,
            reason::DECIDING,
            format!("the vote is {other:?}; the operator drives it to a decision"),
            Some(recheck),
        ),
    };
    Shown {
        phase,
        ready: false,
        reason,
        message,
        requeue,
    }
}

/// An approved mandate that FineTuneJobs work under is `Active`.
pub fn in_use(mut shown: Shown, children: &Children) -> Shown {
    if shown.phase == ModelProposalPhase::Approved && children.fine_tune_jobs > 0 {
        shown.phase = ModelProposalPhase::Active;
        shown.reason = reason::MANDATE_IN_USE;
        shown.message = format!(
            "approved; {} FineTuneJob(s) work under the mandate",
            children.fine_tune_jobs
        );
    }
    shown
}

/// The status of one reconcile: `outcome` is what the chain showed (the view, with what the
/// status shows of it) or why the chain did not answer.
pub fn status(
    mp: &ModelProposal,
    chain: ProposalChain,
    budget: BudgetStatus,
    children: Children,
    outcome: &Result<(Shown, ProposalView), String>,
    now: &Time,
) -> ModelProposalStatus {
    let current = mp.status.clone().unwrap_or_default();
    let generation = mp.metadata.generation;
    let mut st = ModelProposalStatus {
        observed_generation: generation,
        budget: Some(budget),
        children: Some(children),
        ..current
    };
    let mut chain = chain;
    let mut conditions = std::mem::take(&mut st.conditions);
    let mut c = Conditions::new(&mut conditions, generation, now.clone());
    match outcome {
        Ok((shown, view)) => {
            if view.status != RegistryStatus::None {
                chain.proposal_id = Some(view.proposal_id.to_string());
                chain.snapshot_block = Some(view.snapshot);
                chain.deadline_block = Some(view.deadline);
                chain.governor_state = view.state.map(|s| format!("{s:?}"));
                st.tally = Some(Tally {
                    for_votes: view.for_.to_string(),
                    against_votes: view.against.to_string(),
                    abstain_votes: view.abstain.to_string(),
                    quorum_reached: view.quorum_reached(),
                    quorum_votes: view.quorum_votes.map(|q| q.to_string()),
                });
            }
            st.phase = Some(shown.phase);
            c.progress(shown.progress(), shown.reason, &shown.message);
            c.set(
                LEDGER_SYNCED,
                true,
                reason::IN_SYNC,
                "the status mirrors the chain",
            );
            if view.status != RegistryStatus::None && view.spec_hash != spec_hash(&mp.spec) {
                c.set(
                    SPEC_MATCHES_CHAIN,
                    false,
                    reason::SPEC_CHANGED_AFTER_REGISTRATION,
                    "the spec changed after it was registered: the vote and the mandate are the registered spec's; create a new ModelProposal for a new spec",
                );
            } else {
                c.remove(SPEC_MATCHES_CHAIN);
            }
        }
        Err(why) => {
            st.phase = st.phase.or(Some(ModelProposalPhase::Pending));
            c.set(
                LEDGER_SYNCED,
                false,
                reason::LEDGER_UNAVAILABLE,
                &format!("{why}; retrying (check the RPC endpoint and the operator's key)"),
            );
        }
    }
    st.chain = Some(chain);
    st.conditions = conditions;
    st
}

/// The event of a phase change: a Warning when decided against, Normal otherwise.
pub fn phase_event(
    before: Option<ModelProposalPhase>,
    st: &ModelProposalStatus,
) -> Option<(EventType, String, String)> {
    let phase = st.phase.filter(|p| before != Some(*p))?;
    let type_ = if matches!(
        phase,
        ModelProposalPhase::Rejected | ModelProposalPhase::Expired
    ) {
        EventType::Warning
    } else {
        EventType::Normal
    };
    let ready = st.conditions.iter().find(|c| c.type_ == READY);
    let note = ready.map_or_else(|| format!("phase {phase:?}"), |c| c.message.clone());
    Some((type_, format!("{phase:?}"), note))
}

/// What deleting a proposal does on chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Withdrawal {
    /// Nothing (not registered, or decided).
    Nothing,
    /// Withdraw it: the vote has not ended (the registry's rules return or slash the stake).
    Withdraw,
    /// Settle the lost vote first.
    Settle,
    /// Too late: the vote passed; anyone may execute it through the timelock.
    TooLate,
}

/// What deleting the proposal whose chain view is `view` does.
pub fn withdrawal(view: &ProposalView) -> Withdrawal {
    if view.status != RegistryStatus::Voting {
        return Withdrawal::Nothing;
    }
    match view.state {
        Some(ProposalState::Pending | ProposalState::Active) => Withdrawal::Withdraw,
        Some(ProposalState::Defeated | ProposalState::Expired) => Withdrawal::Settle,
        _ => Withdrawal::TooLate,
    }
}
