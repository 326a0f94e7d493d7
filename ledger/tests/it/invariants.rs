//! Property test on a real chain: for random sequences of stakes, votes, decisions, publishes,
//! claims (honest and forged), bonds and settlements with slashes, the tokens each contract
//! holds always equal what the bookkeeping says (stakes + pools + bonds − refunds − claims −
//! slashes moved out), and no leaf pays twice or more than its amount.

use std::sync::atomic::{AtomicUsize, Ordering};

use alloy::primitives::{Address, B256, U256, keccak256};
use alloy::sol_types::SolValue;
use modelcommons_ledger::bindings::{
    ModelGovernor, ModelRegistry, OpenToken, RewardDistributor, ValidatorPool,
};
use modelcommons_ledger::governance::ProposalState;
use modelcommons_ledger::ids::{datanet_version_id, model_id};
use modelcommons_ledger::merkle::{Payout, PayoutTree};
use modelcommons_testbed::chain::{Chain, Mined, OPERATOR, PROPOSER, open};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// Register a proposal staking this many OPEN.
    Stake(u64),
    /// Holder `voter` (0..3) votes `support` on the oldest open proposal.
    Vote { voter: usize, support: u8 },
    /// End the oldest open vote and settle it: ratify (refund) when it passed, slash + refund
    /// when it lost.
    Decide,
    /// Publish a distribution with these amounts (OPEN) to fresh accounts.
    Publish(Vec<u64>),
    /// Claim leaf `leaf` of distribution `dist`, forged as `forge` (0 honest, 1 amount+1,
    /// 2 another account, 3 another leaf's proof).
    Claim { dist: usize, leaf: usize, forge: u8 },
    /// Validator `v` (0..3) bonds this many OPEN.
    Bond { v: usize, amount: u64 },
    /// Open a round, let it end, and slash these amounts from validators 0..3.
    Settle(Vec<u64>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1u64..500).prop_map(Op::Stake),
        (0usize..3, 0u8..3).prop_map(|(voter, support)| Op::Vote { voter, support }),
        Just(Op::Decide),
        prop::collection::vec(1u64..100, 1..6).prop_map(Op::Publish),
        (0usize..4, 0usize..6, 0u8..4).prop_map(|(dist, leaf, forge)| Op::Claim {
            dist,
            leaf,
            forge
        }),
        (0usize..3, 1u64..200).prop_map(|(v, amount)| Op::Bond { v, amount }),
        prop::collection::vec(0u64..150, 3).prop_map(Op::Settle),
    ]
}

const VALIDATORS: [usize; 3] = [6, 7, 8];
const HOLDERS: [usize; 3] = [2, 3, 4];

struct Book {
    stakes: Vec<(B256, U256, bool, U256, Vec<usize>)>, // id, stake, open, proposal id, voters
    dists: Vec<(B256, Vec<Payout>, PayoutTree, Vec<bool>)>,
    bonds: [U256; 3],
    rounds: u64,
}

static SEQUENCES: AtomicUsize = AtomicUsize::new(0);
static OPERATIONS: AtomicUsize = AtomicUsize::new(0);

async fn held(chain: &Chain, a: Address) -> U256 {
    chain.balance(a).await
}

async fn run(ops: Vec<Op>) {
    let chain = Chain::new().await;
    chain.allow_direct_publishing().await;
    let op_l = chain.as_(OPERATOR);
    let token = OpenToken::new(chain.suite.open, op_l.provider());
    token
        .approve(chain.suite.distributor, U256::MAX)
        .mined()
        .await;
    chain.fund(PROPOSER, open(1_000_000)).await;
    let pl = chain.as_(PROPOSER);
    OpenToken::new(chain.suite.open, pl.provider())
        .approve(chain.suite.registry, U256::MAX)
        .mined()
        .await;
    for v in VALIDATORS {
        chain.fund(v, open(10_000)).await;
        let l = chain.as_(v);
        OpenToken::new(chain.suite.open, l.provider())
            .approve(chain.suite.validator_pool, U256::MAX)
            .mined()
            .await;
    }
    for h in HOLDERS {
        chain.wrap_and_delegate(h, open(100)).await;
    }
    let registry = ModelRegistry::new(chain.suite.registry, op_l.provider());
    let dist = RewardDistributor::new(chain.suite.distributor, op_l.provider());
    let pool = ValidatorPool::new(chain.suite.validator_pool, op_l.provider());
    let mut book = Book {
        stakes: vec![],
        dists: vec![],
        bonds: [U256::ZERO; 3],
        rounds: 0,
    };

    for (n, op) in ops.into_iter().enumerate() {
        match op {
            Op::Stake(k) => {
                let id = model_id(&format!("uid-{n}"));
                let r = chain
                    .registration(&format!("uid-{n}"), open(k), 400, 5001)
                    .await;
                registry.register(r).mined().await;
                let proposal = registry.models(id).call().await.unwrap().proposalId;
                chain.mine(chain.params.voting_delay_blocks + 1);
                book.stakes.push((id, open(k), true, proposal, vec![]));
            }
            Op::Vote { voter, support } => {
                if let Some(entry) = book.stakes.iter_mut().find(|s| s.2) {
                    let l = chain.as_(HOLDERS[voter]);
                    let g = ModelGovernor::new(chain.suite.governor, l.provider());
                    // The vote lands in the next block: it counts only if that block is still
                    // inside the voting period (the state now may be Active in its last block).
                    let deadline = g.proposalDeadline(entry.3).call().await.unwrap();
                    let next = alloy::providers::Provider::get_block_number(l.provider())
                        .await
                        .unwrap()
                        + 1;
                    let active = chain.state(entry.3).await == ProposalState::Active
                        && U256::from(next) <= deadline;
                    let result = g.castVote(entry.3, support).send().await;
                    if active && !entry.4.contains(&voter) {
                        result.unwrap().watch().await.unwrap();
                        entry.4.push(voter);
                    } else {
                        assert!(
                            result.is_err(),
                            "a second vote, or a vote outside the voting period, is refused"
                        );
                    }
                }
            }
            Op::Decide => {
                if let Some(entry) = book.stakes.iter_mut().find(|s| s.2) {
                    chain.mine(u64::from(chain.params.voting_period_blocks) + 1);
                    match chain.state(entry.3).await {
                        ProposalState::Succeeded => {
                            chain.queue_and_execute(OPERATOR, entry.0).await
                        }
                        ProposalState::Defeated => {
                            registry.settleDefeat(entry.0).mined().await;
                        }
                        other => panic!("a vote past its period is decided, not {other:?}"),
                    }
                    entry.2 = false;
                } else {
                    assert!(
                        registry
                            .settleDefeat(B256::repeat_byte(0xee))
                            .send()
                            .await
                            .is_err(),
                        "unknown model"
                    );
                }
            }
            Op::Publish(amounts) => {
                let id = datanet_version_id("inv", n as u32);
                let payouts: Vec<Payout> = amounts
                    .iter()
                    .enumerate()
                    .map(|(i, a)| Payout {
                        index: U256::from(i),
                        account: Address::from_word(keccak256((n as u64, i as u64).abi_encode())),
                        amount: open(*a),
                    })
                    .collect();
                let total = payouts.iter().map(|p| p.amount).sum();
                let tree = PayoutTree::new(&payouts).unwrap();
                dist.publish(id, 0, tree.root(), B256::ZERO, total, u64::MAX / 2)
                    .mined()
                    .await;
                let claimed = vec![false; payouts.len()];
                book.dists.push((id, payouts, tree, claimed));
            }
            Op::Claim {
                dist: d,
                leaf,
                forge,
            } => {
                let Some((id, payouts, tree, claimed)) = book.dists.get_mut(d) else {
                    continue;
                };
                let leaf = leaf % payouts.len();
                let p = payouts[leaf];
                let mut proof = tree.proof(leaf).unwrap();
                let (mut account, mut amount) = (p.account, p.amount);
                match forge {
                    1 => amount += U256::from(1u64),
                    2 => account = Chain::address(OPERATOR),
                    3 if payouts.len() > 1 => {
                        proof = tree.proof((leaf + 1) % payouts.len()).unwrap()
                    }
                    _ => {}
                }
                let honest = account == p.account
                    && amount == p.amount
                    && (forge != 3 || payouts.len() == 1);
                let before = held(&chain, p.account).await;
                let result = dist
                    .claim(*id, p.index, account, amount, proof)
                    .send()
                    .await;
                if honest && !claimed[leaf] {
                    result.unwrap().watch().await.unwrap();
                    claimed[leaf] = true;
                    assert_eq!(
                        held(&chain, p.account).await,
                        before + p.amount,
                        "a leaf pays exactly its amount"
                    );
                } else {
                    assert!(
                        result.is_err(),
                        "a forged or repeated claim must be refused"
                    );
                    assert_eq!(held(&chain, p.account).await, before);
                }
            }
            Op::Bond { v, amount } => {
                let l = chain.as_(VALIDATORS[v]);
                ValidatorPool::new(chain.suite.validator_pool, l.provider())
                    .bond(open(amount))
                    .mined()
                    .await;
                book.bonds[v] += open(amount);
            }
            Op::Settle(amounts) => {
                book.rounds += 1;
                let round = keccak256(format!("round-{}", book.rounds));
                let now = modelcommons_testbed::chain::now(&chain.anvil);
                pool.openRound(round, B256::ZERO, now + 10, now + 20, U256::ZERO)
                    .mined()
                    .await;
                chain.wait_seconds(21);
                let who: Vec<Address> = VALIDATORS.iter().map(|v| Chain::address(*v)).collect();
                let amounts: Vec<U256> = amounts.iter().map(|a| open(*a)).collect();
                pool.settle(round, B256::ZERO, who, amounts.clone())
                    .mined()
                    .await;
                for (i, a) in amounts.iter().enumerate() {
                    let taken = (*a).min(book.bonds[i]);
                    book.bonds[i] -= taken;
                }
            }
        }
        OPERATIONS.fetch_add(1, Ordering::Relaxed);

        // The invariants, after every operation.
        let stakes: U256 = book.stakes.iter().filter(|s| s.2).map(|s| s.1).sum();
        assert_eq!(
            held(&chain, chain.suite.registry).await,
            stakes,
            "registry holds exactly the open stakes"
        );
        let pools: U256 = book
            .dists
            .iter()
            .map(|(_, ps, _, c)| {
                ps.iter()
                    .zip(c)
                    .filter(|(_, c)| !**c)
                    .map(|(p, _)| p.amount)
                    .sum::<U256>()
            })
            .sum();
        assert_eq!(
            held(&chain, chain.suite.distributor).await,
            pools,
            "distributor holds exactly the unclaimed pools"
        );
        let bonds: U256 = book.bonds.iter().copied().sum();
        assert_eq!(
            held(&chain, chain.suite.validator_pool).await,
            bonds,
            "pool holds exactly the unslashed bonds"
        );
        for (i, v) in VALIDATORS.iter().enumerate() {
            let b = pool.bonds(Chain::address(*v)).call().await.unwrap();
            assert_eq!(b.active + b.unbonding, book.bonds[i]);
        }
    }
    SEQUENCES.fetch_add(1, Ordering::Relaxed);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn contract_balances_always_match_the_books(ops in prop::collection::vec(op(), 5..20)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run(ops));
        eprintln!(
            "ledger invariants held over {} sequences, {} operations so far",
            SEQUENCES.load(Ordering::Relaxed),
            OPERATIONS.load(Ordering::Relaxed)
        );
    }
}
