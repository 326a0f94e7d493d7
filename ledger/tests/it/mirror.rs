//! The mirror never writes twice: a write that "crashed" before it was recorded, a repeated
//! reconcile and two racing reconciles all leave exactly one on-chain record (counted by
//! events); a changed object is a conflict, not a silent second record.

use alloy::primitives::{B256, U256};
use alloy::providers::Provider;
use alloy::rpc::types::Filter;
use alloy::sol_types::SolEvent;
use modelcommons_ledger::Error;
use modelcommons_ledger::bindings::{ModelRegistry, OpenToken};
use modelcommons_ledger::ids::model_id;
use modelcommons_ledger::mirror::{Outcome, RegisterModel};
use modelcommons_testbed::chain::{Chain, Mined, OPERATOR, PROPOSER, open};

/// A registration of `uid` the proposer authorized.
async fn request(chain: &Chain, uid: &str, stake: U256) -> RegisterModel {
    let r = chain.registration(uid, stake, 400, 5001).await;
    RegisterModel {
        uid: uid.into(),
        spec_hash: r.specHash,
        proposer: r.proposer,
        stake,
        reward_budget: r.rewardBudget,
        quorum_bps: r.quorumBps,
        threshold_bps: r.thresholdBps,
        nonce: r.nonce,
        deadline: r.deadline,
        signature: r.signature,
    }
}

async fn registrations(chain: &Chain) -> usize {
    let op = chain.as_(OPERATOR);
    let filter = Filter::new()
        .address(chain.suite.registry)
        .event_signature(ModelRegistry::ModelRegistered::SIGNATURE_HASH)
        .from_block(0);
    op.provider().get_logs(&filter).await.unwrap().len()
}

async fn approve(chain: &Chain, amount: U256) {
    let l = chain.as_(PROPOSER);
    OpenToken::new(chain.suite.open, l.provider())
        .approve(chain.suite.registry, amount)
        .mined()
        .await;
}

#[tokio::test]
async fn a_write_that_crashed_before_it_was_recorded_is_not_repeated() {
    let chain = Chain::new().await;
    let stake = open(500);
    chain.fund(PROPOSER, stake * U256::from(3u64)).await;
    // Allowance for three stakes: only the contract's and the mirror's checks stop a repeat.
    approve(&chain, stake * U256::from(3u64)).await;
    let before = chain.balance(Chain::address(PROPOSER)).await;
    let req = request(&chain, "uid-crash", stake).await;

    // The first attempt sends its transaction and "crashes": nothing is recorded, the pending
    // transaction is dropped without waiting for a receipt.
    let op = chain.as_(OPERATOR);
    let registry = ModelRegistry::new(chain.suite.registry, op.provider());
    let pending = registry
        .register(ModelRegistry::Registration {
            modelId: model_id(&req.uid),
            specHash: req.spec_hash,
            proposer: req.proposer,
            stake: req.stake,
            rewardBudget: req.reward_budget,
            quorumBps: req.quorum_bps,
            thresholdBps: req.threshold_bps,
            nonce: req.nonce,
            deadline: req.deadline,
            signature: req.signature.clone(),
        })
        .send()
        .await
        .unwrap();
    drop(pending);

    // The restarted operator reconciles the same object: it finds the record, writes nothing.
    let again = op.register_model(chain.suite.registry, &req).await.unwrap();
    assert!(matches!(again, Outcome::AlreadyDone { .. }), "{again:?}");
    let third = op.register_model(chain.suite.registry, &req).await.unwrap();
    assert_eq!(third, again);
    assert_eq!(
        registrations(&chain).await,
        1,
        "exactly one on-chain record"
    );
    assert_eq!(
        chain.balance(Chain::address(PROPOSER)).await,
        before - stake,
        "the stake was taken once"
    );
}

#[tokio::test]
async fn racing_reconciles_write_once_and_a_changed_object_is_a_conflict() {
    let chain = Chain::new().await;
    let stake = open(200);
    chain.fund(PROPOSER, stake * U256::from(2u64)).await;
    approve(&chain, stake * U256::from(2u64)).await;
    let req = request(&chain, "uid-race", stake).await;
    let (a, b) = (chain.as_(OPERATOR), chain.as_(OPERATOR));
    let (ra, rb) = tokio::join!(
        a.register_model(chain.suite.registry, &req),
        b.register_model(chain.suite.registry, &req)
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    let written = [&ra, &rb]
        .iter()
        .filter(|o| matches!(o, Outcome::Written { .. }))
        .count();
    assert!(
        written <= 1,
        "at most one of two racing writes writes: {ra:?} {rb:?}"
    );
    assert_eq!(ra.proposal_id(), rb.proposal_id());
    assert_eq!(registrations(&chain).await, 1);

    let changed = request(&chain, "uid-race", stake + U256::from(1u64)).await;
    let err = a
        .register_model(chain.suite.registry, &changed)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("already on chain with other content"),
        "{err}"
    );
    assert_eq!(registrations(&chain).await, 1);
}

#[tokio::test]
async fn a_first_write_reports_its_transaction() {
    let chain = Chain::new().await;
    let stake = open(10);
    chain.fund(PROPOSER, stake).await;
    approve(&chain, stake).await;
    let op = chain.as_(OPERATOR).with_confirmations(2);
    // Two confirmations on an instant-mining chain need one more block: the write must wait
    // for it, and return once it is there.
    let req = request(&chain, "uid-first", stake).await;
    let write = async {
        let t = std::time::Instant::now();
        (
            op.register_model(chain.suite.registry, &req).await,
            t.elapsed(),
        )
    };
    let later_block = async {
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        chain.mine(1);
    };
    let ((out, waited), ()) = tokio::join!(write, later_block);
    let out = out.unwrap();
    assert!(
        waited >= std::time::Duration::from_millis(1400),
        "returned after {waited:?}, before the 2nd confirmation"
    );
    assert!(
        matches!(out, Outcome::Written { tx, .. } if tx != B256::ZERO),
        "{out:?}"
    );
    assert_eq!(registrations(&chain).await, 1);
}

#[tokio::test]
async fn reverts_read_as_named_errors() {
    let chain = Chain::new().await;
    let op = chain.as_(OPERATOR);
    // The operator registers without the proposer's approval: the token refuses the transfer.
    let req = request(&chain, "uid-no-allowance", open(5)).await;
    chain.fund(PROPOSER, open(5)).await;
    let err = op
        .register_model(chain.suite.registry, &req)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("ERC20InsufficientAllowance"), "{text}");
    assert!(
        !text.contains("custom error 0x"),
        "the revert is decoded, not hex: {text}"
    );
}

async fn events(chain: &Chain, address: alloy::primitives::Address, signature: B256) -> usize {
    let op = chain.as_(OPERATOR);
    let filter = Filter::new()
        .address(address)
        .event_signature(signature)
        .from_block(0);
    op.provider().get_logs(&filter).await.unwrap().len()
}

#[tokio::test]
async fn every_mirror_write_is_written_once() {
    use modelcommons_ledger::bindings::{
        ModelRegistry as Registry, RewardDistributor, ValidatorPool,
    };
    use modelcommons_ledger::ids::{datanet_version_id, rlhf_round_id, training_id};
    use modelcommons_ledger::mirror::{
        OpenRound, PublishDistribution, RecordTraining, SettleRound, Write,
    };

    let chain = Chain::new().await;
    chain.allow_direct_publishing().await;
    let op = chain.as_(OPERATOR);
    let s = chain.suite;

    // A distribution: published once, a repeat is AlreadyDone, changed content a Conflict.
    let publish = PublishDistribution {
        id: datanet_version_id("uid-dn", 1),
        kind: 0,
        root: B256::repeat_byte(0x11),
        content_root: B256::repeat_byte(0x22),
        total: open(50),
        deadline: u64::MAX / 2,
    };
    assert!(matches!(
        op.publish_distribution(s.open, s.distributor, &publish)
            .await
            .unwrap(),
        Write::Written { .. }
    ));
    assert_eq!(
        op.publish_distribution(s.open, s.distributor, &publish)
            .await
            .unwrap(),
        Write::AlreadyDone
    );
    let changed = PublishDistribution {
        total: open(51),
        ..publish.clone()
    };
    assert!(matches!(
        op.publish_distribution(s.open, s.distributor, &changed)
            .await,
        Err(Error::Conflict { .. })
    ));
    assert_eq!(
        events(
            &chain,
            s.distributor,
            RewardDistributor::Published::SIGNATURE_HASH
        )
        .await,
        1
    );
    assert_eq!(chain.balance(s.distributor).await, open(50), "funded once");

    // A training record needs a ratified model: ratify one through a vote.
    chain
        .wrap_and_delegate(modelcommons_testbed::chain::VOTERS[0], open(100))
        .await;
    chain.fund(PROPOSER, open(10)).await;
    let (model, proposal) = chain.register("uid-trained", open(10), 400, 5001).await;
    chain.mine(chain.params.voting_delay_blocks + 1);
    chain
        .vote(
            modelcommons_testbed::chain::VOTERS[0],
            proposal,
            modelcommons_ledger::governance::Support::For,
        )
        .await;
    chain.mine(u64::from(chain.params.voting_period_blocks) + 1);
    chain.queue_and_execute(OPERATOR, model).await;
    let record = RecordTraining {
        job_id: training_id("uid-ftj", 1),
        model_id: model,
        dataset_root: B256::repeat_byte(1),
        model_digest: B256::repeat_byte(2),
        metrics_hash: B256::repeat_byte(3),
        passed: true,
    };
    assert!(matches!(
        op.record_training(s.registry, &record).await.unwrap(),
        Write::Written { .. }
    ));
    assert_eq!(
        op.record_training(s.registry, &record).await.unwrap(),
        Write::AlreadyDone
    );
    let changed = RecordTraining {
        passed: false,
        ..record.clone()
    };
    assert!(matches!(
        op.record_training(s.registry, &changed).await,
        Err(Error::Conflict { .. })
    ));
    assert_eq!(
        events(
            &chain,
            s.registry,
            Registry::TrainingRecorded::SIGNATURE_HASH
        )
        .await,
        1
    );

    // A round: opened once, settled once (the slash applies once).
    let v = 6;
    chain.fund(v, open(100)).await;
    let lv = chain.as_(v);
    OpenToken::new(s.open, lv.provider())
        .approve(s.validator_pool, open(100))
        .mined()
        .await;
    ValidatorPool::new(s.validator_pool, lv.provider())
        .bond(open(100))
        .mined()
        .await;
    let now = modelcommons_testbed::chain::now(&chain.anvil);
    let round = OpenRound {
        round_id: rlhf_round_id("uid-round"),
        items_root: B256::repeat_byte(7),
        commit_deadline: now + 100,
        reveal_deadline: now + 200,
        min_bond: open(1),
    };
    assert!(matches!(
        op.open_round(s.validator_pool, &round).await.unwrap(),
        Write::Written { .. }
    ));
    assert_eq!(
        op.open_round(s.validator_pool, &round).await.unwrap(),
        Write::AlreadyDone
    );
    chain.wait_seconds(201);
    let settle = SettleRound {
        round_id: round.round_id,
        reward_id: round.round_id,
        validators: vec![Chain::address(v)],
        amounts: vec![open(5)],
    };
    assert!(matches!(
        op.settle_round(s.validator_pool, &settle).await.unwrap(),
        Write::Written { .. }
    ));
    assert_eq!(
        op.settle_round(s.validator_pool, &settle).await.unwrap(),
        Write::AlreadyDone
    );
    assert_eq!(
        events(
            &chain,
            s.validator_pool,
            ValidatorPool::RoundSettled::SIGNATURE_HASH
        )
        .await,
        1
    );
    let bond = ValidatorPool::new(s.validator_pool, op.provider())
        .bonds(Chain::address(v))
        .call()
        .await
        .unwrap();
    assert_eq!(bond.active, open(95), "slashed once");
}
