//! The decide step of the ModelProposal controller, one test per edge of its phase diagram:
//! Pending (each registration gate) → Voting (not started, open, timelocked) → Approved →
//! Active, or → Rejected | Expired | Withdrawn; the chain write each vote state calls for; a
//! deleted proposal's withdrawal.

use std::time::Duration;

use alloy::primitives::{Address, B256, U256};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use modelcommons_crds::conditions::{Progress, READY, RECONCILING, STALLED};
use modelcommons_crds::proposal::{
    Children, ModelProposal, ModelProposalPhase as Phase, ProposalChain, SPEC_MATCHES_CHAIN,
    StakeAuthorization, reason,
};

use super::decide::{self, Addresses, Drive, RegistrationSeen, Shown, Withdrawal};
use crate::controller::GovernanceDefaults;
use crate::ledger::governance::ProposalState as S;
use crate::ledger::proposal::{ProposalView, RegistryStatus};

const PROPOSAL: &str = include_str!("../../../../examples/contract-review/01-proposal.yaml");
const RECHECK: Duration = Duration::from_secs(30);

fn proposal() -> ModelProposal {
    let mut p: ModelProposal = serde_yaml::from_str(PROPOSAL).unwrap();
    p.metadata.uid = Some("5e7a0000-0000-4000-8000-000000000001".into());
    p.metadata.generation = Some(1);
    p
}

fn at() -> Addresses {
    Addresses {
        registry: Address::repeat_byte(1),
        open: Address::repeat_byte(2),
        governor: Address::repeat_byte(3),
    }
}

fn now() -> Time {
    Time(Timestamp::from_second(1_800_000_000).unwrap())
}

fn view(status: RegistryStatus, state: Option<S>) -> ProposalView {
    ProposalView {
        status,
        spec_hash: crate::ledger::spec::spec_hash(&proposal().spec),
        stake: U256::from(1000u64),
        proposal_id: U256::from(77u64),
        state,
        against: U256::from(10u64),
        for_: U256::from(600u64),
        abstain: U256::ZERO,
        snapshot: 100,
        deadline: 200,
        quorum_votes: Some(U256::from(40u64)),
        eta: 0,
        block: 150,
        block_time: 1_800_000_000,
    }
}

/// Shown's phase, Ready reason and kstatus.
fn show(s: &Shown) -> (Phase, &'static str, Progress) {
    (s.phase, s.reason, s.progress())
}

fn ready_seen(p: &ModelProposal) -> RegistrationSeen {
    let stake = U256::from_str_radix(&p.spec.stake, 10).unwrap();
    RegistrationSeen {
        floors: (100, 5001),
        block_time: 1_800_000_000,
        // A contract proposer: it authorizes on chain (EIP-1271).
        authorization: None,
        balance: stake,
        allowance: stake,
    }
}

fn authorized(mut p: ModelProposal) -> ModelProposal {
    p.spec.stake_authorization = Some(StakeAuthorization {
        signature: "0x00".into(),
        deadline: 1_900_000_000,
        nonce: 1,
    });
    p
}

#[test]
fn hours_are_short_decimals() {
    assert_eq!(decide::hours(1.5), "1.5");
    assert_eq!(decide::hours(2.0), "2");
    assert_eq!(decide::hours(-3.0), "0");
    assert_eq!(decide::hours(0.00004), "0");
    assert_eq!(decide::hours(std::iter::empty::<f64>().sum()), "0");
    assert_eq!(decide::hours(0.1234567), "0.1235");
}

#[test]
fn new_to_pending_stalled_on_terms_that_cannot_register() {
    let d = GovernanceDefaults::default();
    let mut p = proposal();
    p.spec.stake = "9".repeat(80);
    let held = decide::terms(&p, d).unwrap().unwrap_err();
    assert_eq!(
        show(&held),
        (Phase::Pending, reason::INVALID_STAKE, Progress::Stalled)
    );
    let mut p = proposal();
    p.spec.proposer = "not an address".into();
    assert!(
        decide::terms(&p, d).unwrap_err().contains("spec.proposer"),
        "an invalid object is an error, not a status"
    );
    let t = decide::terms(&proposal(), d).unwrap().unwrap();
    assert_eq!(
        t.stake.spec_hash,
        crate::ledger::spec::spec_hash(&proposal().spec)
    );
}

#[test]
fn pending_gates_until_the_stake_can_be_escrowed() {
    let d = GovernanceDefaults::default();
    let p = proposal();
    let t = decide::terms(&p, d).unwrap().unwrap();
    let seen = ready_seen(&p);

    // No authorization yet: waits for the proposer (Reconciling).
    let held = decide::registration(&p, &t, &seen, at(), RECHECK).unwrap_err();
    assert_eq!(
        show(&held),
        (
            Phase::Pending,
            reason::AWAITING_STAKE_AUTHORIZATION,
            Progress::Reconciling
        )
    );
    assert!(
        held.message.contains("modelcommons stake authorize"),
        "{}",
        held.message
    );
    assert_eq!(held.requeue, Some(RECHECK));

    let p = authorized(p);
    let t = decide::terms(&p, d).unwrap().unwrap();
    let below = RegistrationSeen {
        floors: (t.quorum_bps + 1, 0),
        ..seen.clone()
    };
    let held = decide::registration(&p, &t, &below, at(), RECHECK).unwrap_err();
    assert_eq!(show(&held).2, Progress::Stalled, "a new proposal is needed");
    assert_eq!(held.reason, reason::GOVERNANCE_BELOW_FLOOR);

    let late = RegistrationSeen {
        block_time: 2_000_000_000,
        ..seen.clone()
    };
    let held = decide::registration(&p, &t, &late, at(), RECHECK).unwrap_err();
    assert_eq!(held.reason, reason::STAKE_AUTHORIZATION_EXPIRED);

    let used = RegistrationSeen {
        authorization: Some((B256::repeat_byte(9), true)),
        ..seen.clone()
    };
    let held = decide::registration(&p, &t, &used, at(), RECHECK).unwrap_err();
    assert_eq!(
        (held.reason, held.progress()),
        (reason::STAKE_AUTHORIZATION_USED, Progress::Stalled)
    );

    let forged = RegistrationSeen {
        authorization: Some((B256::repeat_byte(9), false)),
        ..seen.clone()
    };
    let held = decide::registration(&p, &t, &forged, at(), RECHECK).unwrap_err();
    assert_eq!(held.reason, reason::STAKE_NOT_AUTHORIZED);
    assert!(held.message.contains("nothing is escrowed"));

    let poor = RegistrationSeen {
        allowance: U256::from(1u64),
        ..seen.clone()
    };
    let held = decide::registration(&p, &t, &poor, at(), RECHECK).unwrap_err();
    assert_eq!(
        show(&held),
        (
            Phase::Pending,
            reason::AWAITING_STAKE,
            Progress::Reconciling
        )
    );
    assert!(held.message.contains("cast send"), "{}", held.message);

    assert_eq!(decide::registration(&p, &t, &seen, at(), RECHECK), Ok(()));
}

#[test]
fn pending_to_voting_not_started_open_and_timelocked() {
    let chain = ProposalChain::default();
    let s = decide::shown(
        &view(RegistryStatus::None, None),
        &chain,
        RECHECK,
        at().governor,
    );
    assert_eq!(
        show(&s),
        (Phase::Pending, reason::REGISTERING, Progress::Reconciling)
    );
    for (state, why) in [
        (S::Pending, reason::VOTING_NOT_STARTED),
        (S::Active, reason::VOTE_OPEN),
        (S::Queued, reason::AWAITING_TIMELOCK),
        (S::Succeeded, reason::DECIDING),
    ] {
        let v = view(RegistryStatus::Voting, Some(state));
        let s = decide::shown(&v, &chain, RECHECK, at().governor);
        assert_eq!(show(&s), (Phase::Voting, why, Progress::Reconciling));
        assert_eq!(s.requeue, Some(RECHECK));
    }
}

#[test]
fn the_vote_is_driven_queue_execute_or_settle() {
    let mut v = view(RegistryStatus::Voting, Some(S::Succeeded));
    assert_eq!(decide::drive(&v), Some(Drive::Queue));
    v.state = Some(S::Queued);
    v.eta = v.block_time + 60;
    assert_eq!(decide::drive(&v), None, "the timelock's delay is not over");
    v.eta = v.block_time;
    assert_eq!(decide::drive(&v), Some(Drive::Execute));
    for lost in [S::Defeated, S::Expired] {
        assert_eq!(
            decide::drive(&view(RegistryStatus::Voting, Some(lost))),
            Some(Drive::Settle)
        );
    }
    for nothing in [S::Pending, S::Active, S::Canceled] {
        assert_eq!(
            decide::drive(&view(RegistryStatus::Voting, Some(nothing))),
            None
        );
    }
    assert_eq!(
        decide::drive(&view(RegistryStatus::Ratified, Some(S::Executed))),
        None
    );
}

#[test]
fn voting_to_approved_then_active_under_finetunejobs() {
    let v = view(RegistryStatus::Ratified, Some(S::Executed));
    let s = decide::shown(&v, &ProposalChain::default(), RECHECK, at().governor);
    assert_eq!(
        show(&s),
        (Phase::Approved, reason::RATIFIED, Progress::Ready)
    );
    assert_eq!(s.requeue, None);
    let none = Children::default();
    assert_eq!(decide::in_use(s.clone(), &none), s);
    let busy = Children {
        fine_tune_jobs: 2,
        ..Default::default()
    };
    let a = decide::in_use(s, &busy);
    assert_eq!(
        show(&a),
        (Phase::Active, reason::MANDATE_IN_USE, Progress::Ready)
    );
    assert!(a.message.contains("2 FineTuneJob(s)"));
}

#[test]
fn voting_to_rejected_or_expired_with_the_slashed_stake() {
    let chain = ProposalChain {
        stake_slashed: Some("100".into()),
        stake_refunded: Some("900".into()),
        ..Default::default()
    };
    let v = view(RegistryStatus::Rejected, Some(S::Defeated));
    let s = decide::shown(&v, &chain, RECHECK, at().governor);
    assert_eq!(
        show(&s),
        (Phase::Rejected, reason::DEFEATED, Progress::Stalled)
    );
    assert!(
        s.message.contains("100 of the stake was slashed"),
        "{}",
        s.message
    );
    let mut v = view(RegistryStatus::Rejected, Some(S::Defeated));
    v.for_ = U256::from(1u64);
    v.against = U256::ZERO;
    let s = decide::shown(&v, &chain, RECHECK, at().governor);
    assert_eq!(
        show(&s),
        (Phase::Expired, reason::NO_QUORUM, Progress::Stalled)
    );
}

#[test]
fn voting_to_withdrawn_or_canceled() {
    let chain = ProposalChain::default();
    let s = decide::shown(
        &view(RegistryStatus::Withdrawn, None),
        &chain,
        RECHECK,
        at().governor,
    );
    assert_eq!(
        show(&s),
        (Phase::Withdrawn, reason::WITHDRAWN, Progress::Stalled)
    );
    let v = view(RegistryStatus::Voting, Some(S::Canceled));
    let s = decide::shown(&v, &chain, RECHECK, at().governor);
    assert_eq!(
        show(&s),
        (Phase::Withdrawn, reason::CANCELED, Progress::Stalled)
    );
}

#[test]
fn the_status_mirrors_the_chain_or_says_it_did_not_answer() {
    let mut p = proposal();
    let v = view(RegistryStatus::Voting, Some(S::Active));
    let s = decide::shown(&v, &ProposalChain::default(), RECHECK, at().governor);
    let st = decide::status(
        &p,
        ProposalChain::default(),
        decide::budget(&p, 1.5),
        Children::default(),
        &Ok((s, v.clone())),
        &now(),
    );
    assert_eq!(st.phase, Some(Phase::Voting));
    let tally = st.tally.clone().unwrap();
    assert_eq!(
        (tally.for_votes.as_str(), tally.quorum_reached),
        ("600", true)
    );
    assert_eq!(st.chain.clone().unwrap().proposal_id.as_deref(), Some("77"));
    assert_eq!(st.budget.clone().unwrap().gpu_hours_used, "1.5");
    let cond = |st: &modelcommons_crds::proposal::ModelProposalStatus, t: &str| {
        st.conditions
            .iter()
            .find(|c| c.type_ == t)
            .map(|c| (c.status.clone(), c.reason.clone()))
    };
    assert_eq!(
        cond(&st, RECONCILING),
        Some(("True".into(), reason::VOTE_OPEN.into()))
    );
    assert!(cond(&st, SPEC_MATCHES_CHAIN).is_none());
    assert_eq!(
        decide::phase_event(None, &st).map(|e| e.1),
        Some("Voting".to_string())
    );
    p.status = Some(st.clone());
    assert_eq!(
        decide::phase_event(st.phase, &st),
        None,
        "no event without a phase change"
    );

    // The spec edited after registration.
    let mut edited = p.clone();
    edited.spec.stake = "1".into();
    let s = decide::shown(&v, &ProposalChain::default(), RECHECK, at().governor);
    let st = decide::status(
        &edited,
        ProposalChain::default(),
        decide::budget(&edited, 0.0),
        Children::default(),
        &Ok((s, v)),
        &now(),
    );
    assert_eq!(
        cond(&st, SPEC_MATCHES_CHAIN),
        Some((
            "False".into(),
            reason::SPEC_CHANGED_AFTER_REGISTRATION.into()
        ))
    );

    // The chain did not answer: the phase stays, LedgerSynced says why.
    let st = decide::status(
        &p,
        ProposalChain::default(),
        decide::budget(&p, 0.0),
        Children::default(),
        &Err("connection refused".into()),
        &now(),
    );
    assert_eq!(st.phase, Some(Phase::Voting));
    assert_eq!(
        cond(&st, "LedgerSynced"),
        Some(("False".into(), reason::LEDGER_UNAVAILABLE.into()))
    );
    assert_eq!(cond(&st, READY).map(|c| c.0), Some("False".into()));
    assert!(cond(&st, STALLED).is_none());
}

#[test]
fn deleting_withdraws_an_undecided_vote_only() {
    let w = |status, state| decide::withdrawal(&view(status, state));
    assert_eq!(w(RegistryStatus::None, None), Withdrawal::Nothing);
    assert_eq!(
        w(RegistryStatus::Voting, Some(S::Pending)),
        Withdrawal::Withdraw
    );
    assert_eq!(
        w(RegistryStatus::Voting, Some(S::Active)),
        Withdrawal::Withdraw
    );
    assert_eq!(
        w(RegistryStatus::Voting, Some(S::Defeated)),
        Withdrawal::Settle
    );
    assert_eq!(
        w(RegistryStatus::Voting, Some(S::Queued)),
        Withdrawal::TooLate
    );
    assert_eq!(
        w(RegistryStatus::Ratified, Some(S::Executed)),
        Withdrawal::Nothing
    );
}
