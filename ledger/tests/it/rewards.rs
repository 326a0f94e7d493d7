//! Merkle claims pay each leaf once and refuse everything else; commit–reveal refuses late
//! and mismatched actions; settlement slashes the listed bonds. Balances to the wei.

use alloy::primitives::{Address, B256, Bytes, U256, keccak256};
use alloy::sol_types::SolValue;
use modelcommons_ledger::bindings::{OpenToken, RewardDistributor, ValidatorPool};
use modelcommons_ledger::ids::{datanet_version_id, rlhf_round_id};
use modelcommons_ledger::merkle::{Payout, PayoutTree};
use modelcommons_testbed::chain::{Chain, Mined, OPERATOR, RELAYER, open};

/// The custom error a call reverted with, by name.
fn revert_name(err: &alloy::contract::Error) -> String {
    if let Some(e) = err.as_decoded_interface_error::<RewardDistributor::RewardDistributorErrors>()
    {
        return variant(&format!("{e:?}")).to_string();
    }
    if let Some(e) = err.as_decoded_interface_error::<ValidatorPool::ValidatorPoolErrors>() {
        return variant(&format!("{e:?}")).to_string();
    }
    format!("undecoded: {err}")
}

fn variant(debug: &str) -> &str {
    debug.split(['(', ' ', '{']).next().unwrap_or(debug)
}

#[tokio::test]
async fn a_valid_proof_pays_once_and_everything_else_is_refused() {
    let chain = Chain::new().await;
    chain.allow_direct_publishing().await;
    let op = chain.as_(OPERATOR);
    let contributors: Vec<Address> = (6..9).map(Chain::address).collect();
    let payouts: Vec<Payout> = contributors
        .iter()
        .enumerate()
        .map(|(i, a)| Payout {
            index: U256::from(i),
            account: *a,
            amount: open(100) * U256::from(i + 1),
        })
        .collect();
    let total = payouts.iter().map(|p| p.amount).sum::<U256>();
    let tree = PayoutTree::new(&payouts).unwrap();
    let id = datanet_version_id("uid-datanet", 1);
    let deadline = modelcommons_testbed::chain::now(&chain.anvil) + 3_600;

    OpenToken::new(chain.suite.open, op.provider())
        .approve(chain.suite.distributor, total)
        .mined()
        .await;
    let dist = RewardDistributor::new(chain.suite.distributor, op.provider());
    let dataset_root = B256::repeat_byte(0xda);
    dist.publish(id, 0, tree.root(), dataset_root, total, deadline)
        .mined()
        .await;
    assert_eq!(
        chain.balance(chain.suite.distributor).await,
        total,
        "the pool is funded at publish"
    );
    let again = dist
        .publish(id, 0, tree.root(), dataset_root, total, deadline)
        .send()
        .await
        .unwrap_err();
    assert_eq!(revert_name(&again), "DistributionExists");

    // Anyone may relay a claim; the tokens go to the leaf's account.
    let relayer = chain.as_(RELAYER);
    let d = RewardDistributor::new(chain.suite.distributor, relayer.provider());
    let p = payouts[1];
    let proof = tree.proof(1).unwrap();
    let before = chain.balance(p.account).await;
    d.claim(id, p.index, p.account, p.amount, proof.clone())
        .mined()
        .await;
    assert_eq!(chain.balance(p.account).await, before + p.amount);
    assert!(d.isClaimed(id, p.index).call().await.unwrap());

    let refused = |index: U256, account: Address, amount: U256, proof: Vec<B256>| {
        let d = d.clone();
        async move {
            revert_name(
                &d.claim(id, index, account, amount, proof)
                    .send()
                    .await
                    .unwrap_err(),
            )
        }
    };
    assert_eq!(
        refused(p.index, p.account, p.amount, proof.clone()).await,
        "AlreadyClaimed"
    );
    let q = payouts[2];
    let q_proof = tree.proof(2).unwrap();
    assert_eq!(
        refused(
            q.index,
            q.account,
            q.amount + U256::from(1),
            q_proof.clone()
        )
        .await,
        "InvalidProof"
    );
    assert_eq!(
        refused(q.index, Chain::address(RELAYER), q.amount, q_proof.clone()).await,
        "InvalidProof"
    );
    assert_eq!(
        refused(q.index, q.account, q.amount, proof.clone()).await,
        "InvalidProof",
        "another leaf's proof"
    );

    // After the deadline: no more claims; the rest is swept to the treasury once.
    chain.wait_seconds(3_601);
    assert_eq!(
        refused(q.index, q.account, q.amount, q_proof).await,
        "ClaimWindowClosed"
    );
    let treasury_before = chain.balance(chain.suite.treasury).await;
    d.sweep(id).mined().await;
    assert_eq!(
        chain.balance(chain.suite.treasury).await,
        treasury_before + total - p.amount
    );
    assert_eq!(chain.balance(chain.suite.distributor).await, U256::ZERO);
    assert_eq!(
        revert_name(&d.sweep(id).send().await.unwrap_err()),
        "AlreadySwept"
    );
}

fn commitment(round: B256, validator: Address, choices: &[u8], salt: B256) -> B256 {
    keccak256((round, validator, Bytes::copy_from_slice(choices), salt).abi_encode_params())
}

#[tokio::test]
async fn commit_reveal_refuses_late_and_mismatched_actions_and_settlement_slashes() {
    let chain = Chain::new().await;
    chain.allow_direct_publishing().await;
    let op = chain.as_(OPERATOR);
    let validators = [6usize, 7, 8];
    let bond = open(100);
    for v in validators {
        chain.fund(v, bond).await;
        let l = chain.as_(v);
        OpenToken::new(chain.suite.open, l.provider())
            .approve(chain.suite.validator_pool, bond)
            .mined()
            .await;
        ValidatorPool::new(chain.suite.validator_pool, l.provider())
            .bond(bond)
            .mined()
            .await;
    }
    let round = rlhf_round_id("uid-round");
    let t0 = modelcommons_testbed::chain::now(&chain.anvil);
    let (commit_deadline, reveal_deadline) = (t0 + 600, t0 + 1_200);
    let pool = ValidatorPool::new(chain.suite.validator_pool, op.provider());
    pool.openRound(
        round,
        B256::repeat_byte(0x17),
        commit_deadline,
        reveal_deadline,
        open(50),
    )
    .mined()
    .await;

    let choices: [&[u8]; 3] = [&[0, 1, 1, 0], &[0, 1, 1, 1], &[1, 0, 0, 1]];
    let salts = [
        B256::repeat_byte(1),
        B256::repeat_byte(2),
        B256::repeat_byte(3),
    ];
    let as_pool =
        |v: usize| ValidatorPool::new(chain.suite.validator_pool, chain.as_(v).provider().clone());
    for (i, v) in validators.iter().enumerate().take(2) {
        let c = commitment(round, Chain::address(*v), choices[i], salts[i]);
        assert_eq!(
            as_pool(*v)
                .commitmentOf(
                    round,
                    Chain::address(*v),
                    Bytes::copy_from_slice(choices[i]),
                    salts[i]
                )
                .call()
                .await
                .unwrap(),
            c,
            "the contract and the client agree on the commitment"
        );
        as_pool(*v).commit(round, c).mined().await;
    }
    // Revealing before commits close is refused.
    let early = as_pool(validators[0])
        .reveal(round, Bytes::copy_from_slice(choices[0]), salts[0])
        .send()
        .await;
    assert_eq!(revert_name(&early.unwrap_err()), "RevealNotOpen");

    chain.wait_seconds(601);
    // A commit after the deadline is refused.
    let late = commitment(round, Chain::address(validators[2]), choices[2], salts[2]);
    assert_eq!(
        revert_name(
            &as_pool(validators[2])
                .commit(round, late)
                .send()
                .await
                .unwrap_err()
        ),
        "CommitClosed"
    );
    // A reveal that does not match the commitment is refused.
    let wrong = as_pool(validators[1])
        .reveal(round, Bytes::copy_from_slice(choices[0]), salts[1])
        .send()
        .await;
    assert_eq!(revert_name(&wrong.unwrap_err()), "RevealMismatch");
    as_pool(validators[0])
        .reveal(round, Bytes::copy_from_slice(choices[0]), salts[0])
        .mined()
        .await;
    assert!(
        pool.revealed(round, Chain::address(validators[0]))
            .call()
            .await
            .unwrap()
    );
    // Settling before the reveal deadline is refused.
    let slashed = vec![Chain::address(validators[1])];
    let amounts = vec![open(5)];
    let early = pool
        .settle(round, B256::ZERO, slashed.clone(), amounts.clone())
        .send()
        .await;
    assert_eq!(revert_name(&early.unwrap_err()), "NotSettleable");

    chain.wait_seconds(601);
    let late = as_pool(validators[1])
        .reveal(round, Bytes::copy_from_slice(choices[1]), salts[1])
        .send()
        .await;
    assert_eq!(revert_name(&late.unwrap_err()), "RevealClosed");

    let treasury_before = chain.balance(chain.suite.treasury).await;
    let reward_id = rlhf_round_id("uid-round");
    pool.settle(round, reward_id, slashed.clone(), amounts.clone())
        .mined()
        .await;
    assert_eq!(
        chain.balance(chain.suite.treasury).await,
        treasury_before + open(5)
    );
    let b = pool
        .bonds(Chain::address(validators[1]))
        .call()
        .await
        .unwrap();
    assert_eq!(
        b.active,
        bond - open(5),
        "the listed bond loses exactly the listed amount"
    );
    let b = pool
        .bonds(Chain::address(validators[0]))
        .call()
        .await
        .unwrap();
    assert_eq!(b.active, bond, "others keep their bonds");
    let r = pool.rounds(round).call().await.unwrap();
    assert!(r.settled);
    assert_eq!(
        r.rewardId, reward_id,
        "the round points at the distribution that pays its rewards"
    );
    assert_eq!(
        revert_name(
            &pool
                .settle(round, reward_id, slashed, amounts)
                .send()
                .await
                .unwrap_err()
        ),
        "AlreadySettled"
    );
}

#[tokio::test]
async fn a_paused_distributor_refuses_claims_until_unpaused() {
    let chain = Chain::new().await;
    chain.allow_direct_publishing().await;
    let op = chain.as_(OPERATOR);
    let p = Payout {
        index: U256::ZERO,
        account: Chain::address(6),
        amount: open(3),
    };
    let tree = PayoutTree::new(&[p]).unwrap();
    let id = datanet_version_id("uid-paused", 1);
    OpenToken::new(chain.suite.open, op.provider())
        .approve(chain.suite.distributor, p.amount)
        .mined()
        .await;
    let dist = RewardDistributor::new(chain.suite.distributor, op.provider());
    dist.publish(id, 0, tree.root(), B256::ZERO, p.amount, u64::MAX / 2)
        .mined()
        .await;
    dist.pause().mined().await;
    let relayer = chain.as_(RELAYER);
    let d = RewardDistributor::new(chain.suite.distributor, relayer.provider());
    let err = d
        .claim(id, p.index, p.account, p.amount, vec![])
        .send()
        .await
        .unwrap_err();
    assert_eq!(revert_name(&err), "EnforcedPause");
    // Only the admin may unpause.
    assert!(d.unpause().send().await.is_err());
    dist.unpause().mined().await;
    d.claim(id, p.index, p.account, p.amount, vec![])
        .mined()
        .await;
    assert_eq!(chain.balance(p.account).await, p.amount);
}
