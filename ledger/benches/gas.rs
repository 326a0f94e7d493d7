//! Prints the gas of every lifecycle operation on a real anvil chain, and of Merkle
//! publication and claims at 10, 1,000 and 10,000 recipients.
//!
//! `cargo bench -p modelcommons-operator --bench gas` (or `make bench-gas`).

#![allow(clippy::unwrap_used)] // a bench fails loudly

use alloy::primitives::{Address, B256, Bytes, U256, keccak256};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolValue;
use modelcommons_ledger::Ledger;
use modelcommons_ledger::bindings::{
    GovToken, ModelGovernor, ModelRegistry, OpenToken, RewardDistributor, ValidatorPool,
};
use modelcommons_ledger::governance::{Support, sign_ballot};
use modelcommons_ledger::ids::{datanet_version_id, model_id};
use modelcommons_ledger::merkle::{Payout, PayoutTree};
use modelcommons_ledger::suite::SuiteParams;
use modelcommons_testbed::{Anvil, DEV_KEYS};
use serde_json::json;

/// Sends a call, waits for its receipt and returns the gas it used.
async fn gas<P: alloy::providers::Provider, D: alloy::contract::CallDecoder>(
    call: alloy::contract::CallBuilder<P, D>,
) -> u64 {
    call.send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap()
        .gas_used
}

fn addr(i: usize) -> Address {
    DEV_KEYS[i].parse::<PrivateKeySigner>().unwrap().address()
}

fn row(rows: &mut Vec<(String, u64, String)>, what: &str, g: u64, note: &str) {
    rows.push((what.into(), g, note.into()));
}

#[tokio::main]
async fn main() {
    let anvil = Anvil::start().unwrap();
    let url = anvil.endpoint();
    let l = |i: usize| Ledger::connect(&url, DEV_KEYS[i]).unwrap();
    let op = l(0);
    let params = SuiteParams::default();
    let s = op.bootstrap(&params).await.unwrap();
    let unit = modelcommons_ledger::units::one_open();
    let mut rows = Vec::new();
    let mine = |n: u64| anvil.rpc("anvil_mine", json!([format!("{n:#x}")])).unwrap();
    let wait = |secs: u64| {
        anvil.rpc("evm_increaseTime", json!([secs])).unwrap();
        anvil.rpc("anvil_mine", json!(["0x1"])).unwrap();
    };

    // Governance: wrap + delegate, register, vote, vote by signature, queue, execute.
    let open = OpenToken::new(s.open, op.provider());
    for i in [1usize, 2, 3] {
        gas(open.transfer(addr(i), U256::from(2_000u64) * unit)).await;
    }
    for i in [2usize, 3] {
        let li = l(i);
        let o = OpenToken::new(s.open, li.provider());
        gas(o.approve(s.gov_token, U256::from(1_000u64) * unit)).await;
        let g = GovToken::new(s.gov_token, li.provider());
        let w = gas(g.depositFor(addr(i), U256::from(1_000u64) * unit)).await;
        let d = gas(g.delegate(addr(i))).await;
        if i == 2 {
            row(&mut rows, "gOPEN depositFor (wrap)", w, "");
            row(&mut rows, "gOPEN delegate", d, "");
        }
    }
    let lp = l(1);
    gas(OpenToken::new(s.open, lp.provider()).approve(s.registry, U256::from(1_000u64) * unit))
        .await;
    let reg = ModelRegistry::new(s.registry, op.provider());
    let id = model_id("bench");
    let key1: PrivateKeySigner = DEV_KEYS[1].parse().unwrap();
    let (stake, budget) = (U256::from(500u64) * unit, U256::from(1_000u64) * unit);
    let deadline = U256::from(u64::MAX / 2);
    let terms = modelcommons_ledger::proposal::StakeTerms {
        spec_hash: B256::ZERO,
        stake,
        reward_budget: budget,
        nonce: U256::from(1u64),
        deadline,
    };
    let signature = lp
        .sign_stake_authorization(&s, &key1, &terms)
        .await
        .unwrap();
    let g = gas(reg.register(ModelRegistry::Registration {
        modelId: id,
        specHash: B256::ZERO,
        proposer: addr(1),
        stake,
        rewardBudget: budget,
        quorumBps: 400,
        thresholdBps: 5001,
        nonce: U256::from(1u64),
        deadline,
        signature: signature.parse().unwrap(),
    }))
    .await;
    row(
        &mut rows,
        "registry.register (authorization + escrow + propose)",
        g,
        "",
    );
    let m = reg.models(id).call().await.unwrap();
    mine(params.voting_delay_blocks + 1);
    let l2 = l(2);
    let gov2 = ModelGovernor::new(s.governor, l2.provider());
    row(
        &mut rows,
        "governor.castVote",
        gas(gov2.castVote(m.proposalId, 1)).await,
        "",
    );
    let key3: PrivateKeySigner = DEV_KEYS[3].parse().unwrap();
    let gov_relay = ModelGovernor::new(s.governor, op.provider());
    let nonce = gov_relay.nonces(addr(3)).call().await.unwrap();
    let sig = sign_ballot(
        &key3,
        s.chain_id,
        s.governor,
        m.proposalId,
        Support::For,
        nonce,
    )
    .unwrap();
    let g = gas(gov_relay.castVoteBySig(m.proposalId, 1, addr(3), sig.into())).await;
    row(
        &mut rows,
        "governor.castVoteBySig (relayed)",
        g,
        "paid by the relayer",
    );
    mine(u64::from(params.voting_period_blocks) + 1);
    let call = reg.ratificationCall(id).call().await.unwrap();
    let desc = keccak256(reg.proposalDescription(id).call().await.unwrap());
    let g = gas(gov_relay.queue(
        call.targets.clone(),
        call.values.clone(),
        call.calldatas.clone(),
        desc,
    ))
    .await;
    row(&mut rows, "governor.queue", g, "");
    wait(params.timelock_delay_seconds + 1);
    let g = gas(gov_relay.execute(call.targets, call.values, call.calldatas, desc)).await;
    row(
        &mut rows,
        "governor.execute → registry.ratify (refund, budget escrow)",
        g,
        "",
    );
    let g = gas(reg.fundDistribution(
        id,
        keccak256("bench-pool"),
        0,
        keccak256("root"),
        B256::ZERO,
        U256::from(500u64) * unit,
        u64::MAX / 2,
    ))
    .await;
    row(
        &mut rows,
        "registry.fundDistribution (from the budget)",
        g,
        "publish included",
    );
    let g = gas(reg.recordTraining(
        keccak256("job"),
        id,
        B256::ZERO,
        B256::ZERO,
        B256::ZERO,
        true,
    ))
    .await;
    row(&mut rows, "registry.recordTraining", g, "");

    // Merkle distributions: publish (settlement) and claim at three sizes.
    let dist = RewardDistributor::new(s.distributor, op.provider());
    // Only the registry publishes after bootstrap; the bench measures the distributor alone.
    gas(dist.grantRole(dist.OPERATOR_ROLE().call().await.unwrap(), addr(0))).await;
    gas(open.approve(s.distributor, U256::MAX)).await;
    for n in [10usize, 1_000, 10_000] {
        let payouts: Vec<Payout> = (0..n)
            .map(|i| Payout {
                index: U256::from(i),
                account: Address::from_word(keccak256((i as u64).abi_encode())),
                amount: U256::from(1_000 + i as u64),
            })
            .collect();
        let total = payouts.iter().map(|p| p.amount).sum::<U256>();
        let tree = PayoutTree::new(&payouts).unwrap();
        let did = datanet_version_id("bench", n as u32);
        let deadline = u64::MAX / 2;
        let g = gas(dist.publish(did, 0, tree.root(), B256::ZERO, total, deadline)).await;
        row(
            &mut rows,
            &format!("distributor.publish, {n} recipients"),
            g,
            "one root: flat",
        );
        // The first claim of a bitmap word to an account without OPEN pays two fresh storage
        // slots (bitmap word, recipient balance): the worst case. A typical claim lands in a
        // word already touched, for an account that already holds OPEN.
        let (first, typical) = (n / 2 - 1, n / 2);
        gas(open.transfer(payouts[typical].account, U256::from(1u64))).await;
        for (i, what) in [(first, "first in word, new holder"), (typical, "typical")] {
            let p = payouts[i];
            let proof = tree.proof(i).unwrap();
            let depth = proof.len();
            let g = gas(dist.claim(did, p.index, p.account, p.amount, proof)).await;
            row(
                &mut rows,
                &format!("distributor.claim, {n} recipients, {what}"),
                g,
                &format!("proof of {depth}; target ≤ 80000"),
            );
        }
    }

    // Validators: bond, open, commit, reveal, settle.
    let l4 = l(4);
    gas(open.transfer(addr(4), U256::from(100u64) * unit)).await;
    gas(OpenToken::new(s.open, l4.provider()).approve(s.validator_pool, U256::MAX)).await;
    let pool4 = ValidatorPool::new(s.validator_pool, l4.provider());
    row(
        &mut rows,
        "validatorPool.bond",
        gas(pool4.bond(U256::from(100u64) * unit)).await,
        "",
    );
    let pool = ValidatorPool::new(s.validator_pool, op.provider());
    let now = anvil
        .rpc("eth_getBlockByNumber", json!(["latest", false]))
        .unwrap()["timestamp"]
        .as_str()
        .map(|t| u64::from_str_radix(t.trim_start_matches("0x"), 16).unwrap())
        .unwrap();
    let round = keccak256("round");
    let g = gas(pool.openRound(round, B256::ZERO, now + 100, now + 200, U256::from(1u64))).await;
    row(&mut rows, "validatorPool.openRound", g, "");
    let choices = Bytes::from(vec![1u8; 64]);
    let salt = B256::repeat_byte(9);
    let c = keccak256((round, addr(4), choices.clone(), salt).abi_encode_params());
    row(
        &mut rows,
        "validatorPool.commit",
        gas(pool4.commit(round, c)).await,
        "",
    );
    wait(101);
    let g = gas(pool4.reveal(round, choices, salt)).await;
    row(&mut rows, "validatorPool.reveal (64 judgments)", g, "");
    wait(101);
    let g = gas(pool.settle(round, B256::ZERO, vec![addr(4)], vec![unit])).await;
    row(
        &mut rows,
        "validatorPool.settle (1 slash)",
        g,
        "rewards: a distribution",
    );

    println!("{:<60} {:>9}  note", "operation", "gas");
    for (what, g, note) in rows {
        println!("{what:<60} {g:>9}  {note}");
    }
}
