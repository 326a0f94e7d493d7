//! A bootstrapped contract suite on a fresh anvil chain, and actions as dev accounts: what
//! the tests of every crate that talks to the chain start from.

#![allow(clippy::unwrap_used)] // a test helper fails loudly

use alloy::primitives::keccak256;
use alloy::primitives::{Address, B256, U256};
use alloy::signers::local::PrivateKeySigner;
use modelcommons_ledger::Ledger;
use modelcommons_ledger::bindings::{GovToken, ModelGovernor, ModelRegistry, OpenToken};
use modelcommons_ledger::governance::{ProposalState, Support, sign_ballot};
use modelcommons_ledger::ids::model_id;
use modelcommons_ledger::suite::{SuiteAddresses, SuiteParams};
use serde_json::json;

use crate::{Anvil, DEV_KEYS};

/// Sends a call and waits until it is mined, failing the test on any error.
pub trait Mined {
    fn mined(self) -> impl std::future::Future<Output = alloy::rpc::types::TransactionReceipt>;
}

impl<P: alloy::providers::Provider, D: alloy::contract::CallDecoder> Mined
    for alloy::contract::CallBuilder<P, D>
{
    async fn mined(self) -> alloy::rpc::types::TransactionReceipt {
        self.send().await.unwrap().get_receipt().await.unwrap()
    }
}

/// The latest block's timestamp.
pub fn now(anvil: &Anvil) -> u64 {
    let b = anvil
        .rpc("eth_getBlockByNumber", json!(["latest", false]))
        .unwrap();
    u64::from_str_radix(
        b["timestamp"].as_str().unwrap().trim_start_matches("0x"),
        16,
    )
    .unwrap()
}

pub const OPERATOR: usize = 0;
pub const PROPOSER: usize = 1;
pub const VOTERS: [usize; 3] = [2, 3, 4];
pub const RELAYER: usize = 5;

pub fn open(n: u64) -> U256 {
    modelcommons_ledger::units::open(n)
}

/// A fresh anvil chain with the suite bootstrapped by [`OPERATOR`].
#[derive(Debug)]
pub struct Chain {
    pub anvil: Anvil,
    pub params: SuiteParams,
    pub suite: SuiteAddresses,
}

impl Chain {
    pub async fn new() -> Self {
        let anvil = Anvil::start().unwrap();
        let params = SuiteParams::default();
        let suite = Ledger::connect(&anvil.endpoint(), DEV_KEYS[OPERATOR])
            .unwrap()
            .bootstrap(&params)
            .await
            .unwrap();
        Self {
            anvil,
            params,
            suite,
        }
    }

    pub fn as_(&self, who: usize) -> Ledger {
        Ledger::connect(&self.anvil.endpoint(), DEV_KEYS[who]).unwrap()
    }

    pub fn address(who: usize) -> Address {
        DEV_KEYS[who].parse::<PrivateKeySigner>().unwrap().address()
    }

    pub fn mine(&self, blocks: u64) {
        self.anvil
            .rpc("anvil_mine", json!([format!("{blocks:#x}")]))
            .unwrap();
    }

    pub fn wait_seconds(&self, secs: u64) {
        self.anvil.rpc("evm_increaseTime", json!([secs])).unwrap();
        self.mine(1);
    }

    pub async fn balance(&self, who: Address) -> U256 {
        self.as_(OPERATOR)
            .token_balance(self.suite.open, who)
            .await
            .unwrap()
    }

    /// Gives `who` OPEN from the treasury.
    pub async fn fund(&self, who: usize, amount: U256) {
        let op = self.as_(OPERATOR);
        let token = OpenToken::new(self.suite.open, op.provider());
        token.transfer(Self::address(who), amount).mined().await;
    }

    /// `who` wraps `amount` OPEN into gOPEN and delegates the votes to itself.
    pub async fn wrap_and_delegate(&self, who: usize, amount: U256) {
        self.fund(who, amount).await;
        let l = self.as_(who);
        let me = Self::address(who);
        let token = OpenToken::new(self.suite.open, l.provider());
        token.approve(self.suite.gov_token, amount).mined().await;
        let gov = GovToken::new(self.suite.gov_token, l.provider());
        gov.depositFor(me, amount).mined().await;
        gov.delegate(me).mined().await;
    }

    /// The proposer's signed authorization of `stake` and `reward_budget` for `spec_hash`:
    /// (nonce, deadline, signature), valid for a day of chain time.
    pub async fn authorize(
        &self,
        spec_hash: B256,
        stake: U256,
        reward_budget: U256,
    ) -> (u64, u64, alloy::primitives::Bytes) {
        static NONCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let nonce = NONCE.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let deadline = now(&self.anvil) + 86_400;
        let key: PrivateKeySigner = DEV_KEYS[PROPOSER].parse().unwrap();
        let terms = modelcommons_ledger::proposal::StakeTerms {
            spec_hash,
            stake,
            reward_budget,
            nonce: U256::from(nonce),
            deadline: U256::from(deadline),
        };
        let sig = self
            .as_(PROPOSER)
            .sign_stake_authorization(&self.suite, &key, &terms)
            .await
            .unwrap();
        (nonce, deadline, sig.parse().unwrap())
    }

    /// A registration of `uid` the proposer authorized (no reward budget).
    pub async fn registration(
        &self,
        uid: &str,
        stake: U256,
        quorum_bps: u16,
        threshold_bps: u16,
    ) -> ModelRegistry::Registration {
        let spec_hash = B256::repeat_byte(0x5e);
        let (nonce, deadline, signature) = self.authorize(spec_hash, stake, U256::ZERO).await;
        ModelRegistry::Registration {
            modelId: model_id(uid),
            specHash: spec_hash,
            proposer: Self::address(PROPOSER),
            stake,
            rewardBudget: U256::ZERO,
            quorumBps: quorum_bps,
            thresholdBps: threshold_bps,
            nonce: U256::from(nonce),
            deadline: U256::from(deadline),
            signature,
        }
    }

    /// The operator account may publish distributions itself (funding them from its own
    /// balance), as only the registry may after bootstrap: for tests of the distributor alone.
    pub async fn allow_direct_publishing(&self) {
        let op = self.as_(OPERATOR);
        let d = modelcommons_ledger::bindings::RewardDistributor::new(
            self.suite.distributor,
            op.provider(),
        );
        let role = d.OPERATOR_ROLE().call().await.unwrap();
        d.grantRole(role, Self::address(OPERATOR)).mined().await;
    }

    /// The proposer approves the stake; the operator registers the proposal.
    pub async fn register(
        &self,
        uid: &str,
        stake: U256,
        quorum_bps: u16,
        threshold_bps: u16,
    ) -> (B256, U256) {
        let l = self.as_(PROPOSER);
        OpenToken::new(self.suite.open, l.provider())
            .approve(self.suite.registry, stake)
            .mined()
            .await;
        let op = self.as_(OPERATOR);
        let registry = ModelRegistry::new(self.suite.registry, op.provider());
        let id = model_id(uid);
        let r = self
            .registration(uid, stake, quorum_bps, threshold_bps)
            .await;
        registry.register(r).mined().await;
        let m = registry.models(id).call().await.unwrap();
        assert_eq!(m.stake, stake);
        assert_eq!(m.proposer, Self::address(PROPOSER));
        (id, m.proposalId)
    }

    pub async fn state(&self, proposal: U256) -> ProposalState {
        let g = ModelGovernor::new(self.suite.governor, self.as_(OPERATOR).provider().clone());
        ProposalState::from_u8(g.state(proposal).call().await.unwrap()).unwrap()
    }

    pub async fn vote(&self, who: usize, proposal: U256, support: Support) {
        let l = self.as_(who);
        let g = ModelGovernor::new(self.suite.governor, l.provider());
        g.castVote(proposal, support as u8).mined().await;
    }

    /// `who` signs a ballot off chain; the relayer submits it and pays the gas.
    pub async fn vote_by_signature(&self, who: usize, proposal: U256, support: Support) {
        let key: PrivateKeySigner = DEV_KEYS[who].parse().unwrap();
        let relayer = self.as_(RELAYER);
        let g = ModelGovernor::new(self.suite.governor, relayer.provider());
        let nonce = g.nonces(key.address()).call().await.unwrap();
        let sig = sign_ballot(
            &key,
            self.suite.chain_id,
            self.suite.governor,
            proposal,
            support,
            nonce,
        )
        .unwrap();
        g.castVoteBySig(proposal, support as u8, key.address(), sig.into())
            .mined()
            .await;
        assert!(
            g.hasVoted(proposal, key.address()).call().await.unwrap(),
            "the signed ballot counts for the voter"
        );
        assert!(
            !g.hasVoted(proposal, Self::address(RELAYER))
                .call()
                .await
                .unwrap(),
            "not for the relayer"
        );
    }

    /// After a successful vote: anyone queues, waits out the timelock and executes, which
    /// makes the timelock call `registry.ratify(id)`.
    pub async fn queue_and_execute(&self, who: usize, id: B256) {
        let l = self.as_(who);
        let g = ModelGovernor::new(self.suite.governor, l.provider());
        let r = ModelRegistry::new(self.suite.registry, l.provider());
        let call = r.ratificationCall(id).call().await.unwrap();
        let desc = keccak256(r.proposalDescription(id).call().await.unwrap());
        g.queue(
            call.targets.clone(),
            call.values.clone(),
            call.calldatas.clone(),
            desc,
        )
        .mined()
        .await;
        self.wait_seconds(self.params.timelock_delay_seconds + 1);
        g.execute(call.targets, call.values, call.calldatas, desc)
            .mined()
            .await;
    }
}
