//! The governance path on a real chain: delegate → register + stake → vote (directly and by a
//! relayed signature) → queue → execute → mandate ratified and stake refunded; defeated and
//! no-quorum votes → stake slashed by the configured share. Balances are checked to the wei.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use alloy::primitives::U256;
use common::{Chain, Mined, OPERATOR, PROPOSER, RELAYER, VOTERS, open};
use modelcommons_operator::ledger::bindings::{ModelGovernor, ModelRegistry};
use modelcommons_operator::ledger::governance::{ProposalState, Support};

#[tokio::test]
async fn an_approved_proposal_is_ratified_through_the_timelock_and_refunds_the_stake() {
    let chain = Chain::new().await;
    for v in VOTERS {
        chain.wrap_and_delegate(v, open(1_000)).await;
    }
    let stake = open(1_000);
    chain.fund(PROPOSER, stake).await;
    let proposer = Chain::address(PROPOSER);
    let before = chain.balance(proposer).await;

    let (id, proposal) = chain.register("uid-approved", stake, 400, 5001).await;
    assert_eq!(
        chain.balance(proposer).await,
        before - stake,
        "the stake is escrowed"
    );
    assert_eq!(chain.balance(chain.suite.registry).await, stake);
    assert_eq!(chain.state(proposal).await, ProposalState::Pending);

    chain.mine(chain.params.voting_delay_blocks + 1);
    assert_eq!(chain.state(proposal).await, ProposalState::Active);
    chain.vote(VOTERS[0], proposal, Support::For).await;
    chain
        .vote_by_signature(VOTERS[1], proposal, Support::For)
        .await;
    chain.vote(VOTERS[2], proposal, Support::Against).await;
    chain.mine(u64::from(chain.params.voting_period_blocks) + 1);
    assert_eq!(chain.state(proposal).await, ProposalState::Succeeded);

    // Anyone queues and executes; the timelock calls registry.ratify.
    let relayer = chain.as_(RELAYER);
    let g = ModelGovernor::new(chain.suite.governor, relayer.provider());
    let r = ModelRegistry::new(chain.suite.registry, relayer.provider());
    let call = r.ratificationCall(id).call().await.unwrap();
    let desc = alloy::primitives::keccak256(r.proposalDescription(id).call().await.unwrap());
    g.queue(
        call.targets.clone(),
        call.values.clone(),
        call.calldatas.clone(),
        desc,
    )
    .mined()
    .await;
    assert_eq!(chain.state(proposal).await, ProposalState::Queued);
    // Executing before the delay is refused.
    let early = g
        .execute(
            call.targets.clone(),
            call.values.clone(),
            call.calldatas.clone(),
            desc,
        )
        .send()
        .await;
    assert!(
        early.is_err(),
        "execution before the timelock delay must revert"
    );
    chain.wait_seconds(chain.params.timelock_delay_seconds + 1);
    g.execute(call.targets, call.values, call.calldatas, desc)
        .mined()
        .await;
    assert_eq!(chain.state(proposal).await, ProposalState::Executed);

    let m = r.models(id).call().await.unwrap();
    assert_eq!(m.status, 2, "Ratified");
    assert_eq!(
        chain.balance(proposer).await,
        before,
        "the stake is refunded to the wei"
    );
    assert_eq!(chain.balance(chain.suite.registry).await, U256::ZERO);

    // A ratified model cannot be ratified or settled again.
    let op = chain.as_(OPERATOR);
    let again = ModelRegistry::new(chain.suite.registry, op.provider())
        .settleDefeat(id)
        .send()
        .await;
    assert!(again.is_err());
}

async fn lost_vote(quorum_bps: u16, votes: &[(usize, Support)], uid: &str) {
    let chain = Chain::new().await;
    for v in VOTERS {
        chain.wrap_and_delegate(v, open(1_000)).await;
    }
    let stake = open(777);
    chain.fund(PROPOSER, stake).await;
    let proposer = Chain::address(PROPOSER);
    let treasury = chain.suite.treasury;
    let proposer_before = chain.balance(proposer).await;
    let (id, proposal) = chain.register(uid, stake, quorum_bps, 5001).await;
    let treasury_before = chain.balance(treasury).await;

    // Settling while the vote runs is refused.
    let op = chain.as_(OPERATOR);
    let registry = ModelRegistry::new(chain.suite.registry, op.provider());
    assert!(
        registry.settleDefeat(id).send().await.is_err(),
        "no settlement before the vote ends"
    );

    chain.mine(chain.params.voting_delay_blocks + 1);
    for (who, support) in votes {
        chain.vote(*who, proposal, *support).await;
    }
    chain.mine(u64::from(chain.params.voting_period_blocks) + 1);
    assert_eq!(chain.state(proposal).await, ProposalState::Defeated);

    // Anyone may settle a lost vote.
    let relayer = chain.as_(RELAYER);
    ModelRegistry::new(chain.suite.registry, relayer.provider())
        .settleDefeat(id)
        .mined()
        .await;
    let slashed = stake * U256::from(chain.params.slash_bps) / U256::from(10_000u64);
    assert_eq!(slashed, open(777) / U256::from(5u64), "20% of 777 OPEN");
    assert_eq!(
        chain.balance(treasury).await,
        treasury_before + slashed,
        "the treasury gets the slash to the wei"
    );
    assert_eq!(
        chain.balance(proposer).await,
        proposer_before - slashed,
        "the proposer gets the rest back"
    );
    assert_eq!(chain.balance(chain.suite.registry).await, U256::ZERO);
    assert_eq!(
        registry.models(id).call().await.unwrap().status,
        3,
        "Rejected"
    );
    assert!(
        registry.settleDefeat(id).send().await.is_err(),
        "settled once only"
    );
}

#[tokio::test]
async fn a_defeated_proposal_is_slashed_by_the_configured_share() {
    lost_vote(
        400,
        &[
            (VOTERS[0], Support::Against),
            (VOTERS[1], Support::Against),
            (VOTERS[2], Support::For),
        ],
        "uid-defeated",
    )
    .await;
}

#[tokio::test]
async fn a_proposal_without_quorum_is_slashed_too() {
    // 3000 gOPEN exist; a 50% quorum needs 1500; one holder's 1000 "for" is not enough.
    lost_vote(5_000, &[(VOTERS[0], Support::For)], "uid-no-quorum").await;
}
