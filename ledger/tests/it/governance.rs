//! The governance path on a real chain: delegate → register + stake → vote (directly and by a
//! relayed signature) → queue → execute → mandate ratified and stake refunded; defeated and
//! no-quorum votes → stake slashed by the configured share. Balances are checked to the wei.

use alloy::primitives::U256;
use modelcommons_ledger::bindings::{ModelGovernor, ModelRegistry};
use modelcommons_ledger::governance::{ProposalState, Support};
use modelcommons_testbed::chain::{Chain, Mined, OPERATOR, PROPOSER, RELAYER, VOTERS, open};

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
    // Its mandate voted no reward budget: no pool of it can be funded, by anyone.
    let e = ModelRegistry::new(chain.suite.registry, op.provider())
        .fundDistribution(
            id,
            alloy::primitives::B256::repeat_byte(1),
            0,
            alloy::primitives::B256::repeat_byte(2),
            alloy::primitives::B256::ZERO,
            U256::from(1u64),
            u64::MAX / 2,
        )
        .send()
        .await
        .unwrap_err();
    assert!(matches!(
        registry_error(e),
        ModelRegistry::ModelRegistryErrors::RewardBudgetExceeded(_)
    ));
    // And the distributor takes publications from the registry alone.
    let d = modelcommons_ledger::bindings::RewardDistributor::new(
        chain.suite.distributor,
        op.provider(),
    );
    assert!(
        d.publish(
            alloy::primitives::B256::repeat_byte(3),
            0,
            alloy::primitives::B256::repeat_byte(2),
            alloy::primitives::B256::ZERO,
            U256::from(1u64),
            u64::MAX / 2
        )
        .send()
        .await
        .is_err(),
        "the operator's key cannot publish around the budget"
    );
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

/// The custom error a registry call reverted with.
fn registry_error(e: alloy::contract::Error) -> ModelRegistry::ModelRegistryErrors {
    e.as_decoded_interface_error::<ModelRegistry::ModelRegistryErrors>()
        .unwrap_or_else(|| panic!("not a registry error: {e}"))
}

#[tokio::test]
async fn the_registry_refuses_what_the_proposer_did_not_sign_or_governance_did_not_allow() {
    use ModelRegistry::ModelRegistryErrors as E;
    let chain = Chain::new().await;
    let stake = open(100);
    chain.fund(PROPOSER, stake * U256::from(4u64)).await;
    let l = chain.as_(PROPOSER);
    modelcommons_ledger::bindings::OpenToken::new(chain.suite.open, l.provider())
        .approve(chain.suite.registry, stake * U256::from(4u64))
        .mined()
        .await;
    let op = chain.as_(OPERATOR);
    let registry = ModelRegistry::new(chain.suite.registry, op.provider());
    let before = chain.balance(Chain::address(PROPOSER)).await;

    // A quorum or threshold below the floors.
    let low = chain.registration("uid-low-quorum", stake, 1, 5001).await;
    let e = registry.register(low).send().await.unwrap_err();
    assert!(matches!(registry_error(e), E::QuorumBelowFloor(_)));
    let low = chain.registration("uid-low-threshold", stake, 400, 1).await;
    let e = registry.register(low).send().await.unwrap_err();
    assert!(matches!(registry_error(e), E::ThresholdBelowFloor(_)));
    // Another stake, budget or spec than the one signed; a signature of someone else.
    let mut other = chain
        .registration("uid-other-stake", stake, 400, 5001)
        .await;
    other.stake = stake * U256::from(2u64);
    let e = registry.register(other).send().await.unwrap_err();
    assert!(matches!(registry_error(e), E::StakeNotAuthorized(_)));
    let mut budget = chain
        .registration("uid-other-budget", stake, 400, 5001)
        .await;
    budget.rewardBudget = open(1);
    let e = registry.register(budget).send().await.unwrap_err();
    assert!(matches!(registry_error(e), E::StakeNotAuthorized(_)));
    let mut stolen = chain.registration("uid-stolen", stake, 400, 5001).await;
    stolen.proposer = Chain::address(VOTERS[0]);
    let e = registry.register(stolen).send().await.unwrap_err();
    assert!(matches!(registry_error(e), E::StakeNotAuthorized(_)));
    // An expired authorization.
    let mut late = chain.registration("uid-late", stake, 400, 5001).await;
    late.deadline = U256::from(1u64);
    let e = registry.register(late).send().await.unwrap_err();
    assert!(matches!(registry_error(e), E::AuthorizationExpired(_)));
    assert_eq!(chain.balance(Chain::address(PROPOSER)).await, before);

    // One authorization registers one model.
    let once = chain.registration("uid-once", stake, 400, 5001).await;
    let mut twice = once.clone();
    registry.register(once).mined().await;
    twice.modelId = alloy::primitives::B256::repeat_byte(7);
    let e = registry.register(twice).send().await.unwrap_err();
    assert!(matches!(registry_error(e), E::AuthorizationUsed(_)));
    assert_eq!(
        chain.balance(Chain::address(PROPOSER)).await,
        before - stake
    );

    // Nothing but the model's own vote ratifies it: a vote whose action is ratify(model)
    // passes and is executed, but the registry refuses.
    for v in VOTERS {
        chain.wrap_and_delegate(v, open(1_000)).await;
    }
    chain.mine(1);
    let id = modelcommons_ledger::ids::model_id("uid-once");
    let voter = chain.as_(VOTERS[0]);
    let g = ModelGovernor::new(chain.suite.governor, voter.provider());
    let calldata: alloy::primitives::Bytes =
        alloy::sol_types::SolCall::abi_encode(&ModelRegistry::ratifyCall { modelId: id }).into();
    let desc = "ratify someone else's model".to_string();
    g.propose(
        vec![chain.suite.registry],
        vec![U256::ZERO],
        vec![calldata.clone()],
        desc.clone(),
    )
    .mined()
    .await;
    let pid = g
        .hashProposal(
            vec![chain.suite.registry],
            vec![U256::ZERO],
            vec![calldata.clone()],
            alloy::primitives::keccak256(desc.as_bytes()),
        )
        .call()
        .await
        .unwrap();
    chain.mine(chain.params.voting_delay_blocks + 1);
    for v in VOTERS {
        chain.vote(v, pid, Support::For).await;
    }
    chain.mine(u64::from(chain.params.voting_period_blocks) + 1);
    let dh = alloy::primitives::keccak256(desc.as_bytes());
    g.queue(
        vec![chain.suite.registry],
        vec![U256::ZERO],
        vec![calldata.clone()],
        dh,
    )
    .mined()
    .await;
    chain.wait_seconds(chain.params.timelock_delay_seconds + 1);
    let e = g
        .execute(
            vec![chain.suite.registry],
            vec![U256::ZERO],
            vec![calldata],
            dh,
        )
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(registry_error(e), E::NotThisModelsVote(_)),
        "the registry refused the foreign vote"
    );
    assert_eq!(
        registry.models(id).call().await.unwrap().status,
        1,
        "still Voting"
    );
}
