//! A ModelProposal's life on chain after registration: what the chain says about it
//! ([`ProposalView`]) and the steps that drive it to a decision — queue and execute a passed
//! vote through the timelock, settle a lost one, withdraw an undecided one. Every step reads
//! the chain before it writes and treats "already done" as success, so a crash or a lost
//! connection between send and status update never writes twice.

use alloy::primitives::{Address, B256, U256, keccak256};
use alloy::providers::Provider;

use super::bindings::{GovToken, ModelGovernor, ModelRegistry};
use super::governance::ProposalState;
use super::mirror::Write;
use super::suite::SuiteAddresses;
use super::{Ledger, Result, call_error};

/// What a proposer authorizes: escrowing `stake` for the spec with `spec_hash`, whose
/// mandate's reward budget is `reward_budget`, once (`nonce`), until `deadline`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StakeTerms {
    pub spec_hash: B256,
    pub stake: U256,
    pub reward_budget: U256,
    /// Any number the proposer has not used before.
    pub nonce: U256,
    /// Unix seconds.
    pub deadline: U256,
}

/// The registry's status of a model (`ModelRegistry.Status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryStatus {
    /// Not registered.
    None,
    /// Registered; its vote is open or not yet settled.
    Voting,
    /// The vote passed and was executed; the stake was refunded.
    Ratified,
    /// The vote was lost and settled; part of the stake was slashed.
    Rejected,
    /// Withdrawn before a decision.
    Withdrawn,
}

impl RegistryStatus {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Voting,
            2 => Self::Ratified,
            3 => Self::Rejected,
            4 => Self::Withdrawn,
            _ => Self::None,
        }
    }
}

/// Everything the chain says about one model's proposal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProposalView {
    pub status: RegistryStatus,
    pub spec_hash: B256,
    pub stake: U256,
    pub proposal_id: U256,
    /// The Governor's state (None before registration).
    pub state: Option<ProposalState>,
    pub against: U256,
    pub for_: U256,
    pub abstain: U256,
    pub snapshot: u64,
    pub deadline: u64,
    /// The for + abstain votes needed, once the snapshot block is past.
    pub quorum_votes: Option<U256>,
    /// When a queued proposal may be executed (unix seconds; 0 when not queued).
    pub eta: u64,
    /// The latest block's number and timestamp.
    pub block: u64,
    pub block_time: u64,
}

impl ProposalView {
    /// Whether for + abstain votes reached the quorum (false until it is known).
    pub fn quorum_reached(&self) -> bool {
        self.quorum_votes
            .is_some_and(|q| self.for_ + self.abstain >= q && !q.is_zero())
    }
}

/// How a decided proposal's stake was split, from the registry's events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub tx: B256,
    pub block: Option<u64>,
    pub slashed: U256,
    pub refunded: U256,
}

fn u64_of(v: U256) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

impl Ledger {
    /// Reads a model's registration and its vote.
    pub async fn proposal_view(&self, suite: &SuiteAddresses, id: B256) -> Result<ProposalView> {
        let registry = ModelRegistry::new(suite.registry, &self.provider);
        let governor = ModelGovernor::new(suite.governor, &self.provider);
        let m = registry.models(id).call().await.map_err(call_error(
            "ModelRegistry",
            "models",
            suite.registry,
        ))?;
        let latest = self
            .provider
            .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
            .await?
            .map(|b| (b.header.number, b.header.timestamp))
            .unwrap_or_default();
        let mut view = ProposalView {
            status: RegistryStatus::from_u8(m.status),
            spec_hash: m.specHash,
            stake: m.stake,
            proposal_id: m.proposalId,
            state: None,
            against: U256::ZERO,
            for_: U256::ZERO,
            abstain: U256::ZERO,
            snapshot: 0,
            deadline: 0,
            quorum_votes: None,
            eta: 0,
            block: latest.0,
            block_time: latest.1,
        };
        if view.status == RegistryStatus::None {
            return Ok(view);
        }
        let g = suite.governor;
        let pid = m.proposalId;
        let state =
            governor
                .state(pid)
                .call()
                .await
                .map_err(call_error("ModelGovernor", "state", g))?;
        view.state = ProposalState::from_u8(state);
        let votes = governor
            .proposalVotes(pid)
            .call()
            .await
            .map_err(call_error("ModelGovernor", "proposalVotes", g))?;
        (view.against, view.for_, view.abstain) =
            (votes.againstVotes, votes.forVotes, votes.abstainVotes);
        view.snapshot = u64_of(
            governor
                .proposalSnapshot(pid)
                .call()
                .await
                .map_err(call_error("ModelGovernor", "proposalSnapshot", g))?,
        );
        view.deadline = u64_of(
            governor
                .proposalDeadline(pid)
                .call()
                .await
                .map_err(call_error("ModelGovernor", "proposalDeadline", g))?,
        );
        view.eta = u64_of(governor.proposalEta(pid).call().await.map_err(call_error(
            "ModelGovernor",
            "proposalEta",
            g,
        ))?);
        if view.snapshot < view.block {
            let params = governor
                .proposalParams(pid)
                .call()
                .await
                .map_err(call_error("ModelGovernor", "proposalParams", g))?;
            let supply = GovToken::new(suite.gov_token, &self.provider)
                .getPastTotalSupply(U256::from(view.snapshot))
                .call()
                .await
                .map_err(call_error(
                    "GovToken",
                    "getPastTotalSupply",
                    suite.gov_token,
                ))?;
            // (for + abstain) * 10000 >= supply * bps, i.e. the ceiling of supply * bps / 10000.
            let num = supply * U256::from(params.quorumBps);
            let den = U256::from(10_000u64);
            view.quorum_votes = Some(num.div_ceil(den));
        }
        Ok(view)
    }

    /// The ratification call of `id` and its description hash, as the Governor needs them.
    async fn ratification(
        &self,
        suite: &SuiteAddresses,
        id: B256,
    ) -> Result<(Vec<Address>, Vec<U256>, Vec<alloy::primitives::Bytes>, B256)> {
        let registry = ModelRegistry::new(suite.registry, &self.provider);
        let r = suite.registry;
        let call = registry
            .ratificationCall(id)
            .call()
            .await
            .map_err(call_error("ModelRegistry", "ratificationCall", r))?;
        let desc = registry
            .proposalDescription(id)
            .call()
            .await
            .map_err(call_error("ModelRegistry", "proposalDescription", r))?;
        Ok((call.targets, call.values, call.calldatas, keccak256(desc)))
    }

    async fn governor_state(&self, suite: &SuiteAddresses, pid: U256) -> Result<ProposalState> {
        let s = ModelGovernor::new(suite.governor, &self.provider)
            .state(pid)
            .call()
            .await
            .map_err(call_error("ModelGovernor", "state", suite.governor))?;
        Ok(ProposalState::from_u8(s).unwrap_or(ProposalState::Pending))
    }

    /// Queues a passed vote in the timelock (once).
    pub async fn queue_ratification(
        &self,
        suite: &SuiteAddresses,
        id: B256,
        pid: U256,
    ) -> Result<Write> {
        let (targets, values, calldatas, desc) = self.ratification(suite, id).await?;
        let governor = ModelGovernor::new(suite.governor, &self.provider);
        self.write_once(
            ("ModelGovernor", "queue", suite.governor),
            || async {
                Ok(matches!(
                    self.governor_state(suite, pid).await?,
                    ProposalState::Queued | ProposalState::Executed
                ))
            },
            || async {
                governor
                    .queue(targets.clone(), values.clone(), calldatas.clone(), desc)
                    .send()
                    .await
            },
            |e| e.as_revert_data().is_some(),
        )
        .await
    }

    /// Executes a queued vote (once): the timelock calls `ratify`, refunding the stake.
    pub async fn execute_ratification(
        &self,
        suite: &SuiteAddresses,
        id: B256,
        pid: U256,
    ) -> Result<Write> {
        let (targets, values, calldatas, desc) = self.ratification(suite, id).await?;
        let governor = ModelGovernor::new(suite.governor, &self.provider);
        self.write_once(
            ("ModelGovernor", "execute", suite.governor),
            || async { Ok(self.governor_state(suite, pid).await? == ProposalState::Executed) },
            || async {
                governor
                    .execute(targets.clone(), values.clone(), calldatas.clone(), desc)
                    .send()
                    .await
            },
            |e| e.as_revert_data().is_some(),
        )
        .await
    }

    async fn registry_status(&self, suite: &SuiteAddresses, id: B256) -> Result<RegistryStatus> {
        let m = ModelRegistry::new(suite.registry, &self.provider)
            .models(id)
            .call()
            .await
            .map_err(call_error("ModelRegistry", "models", suite.registry))?;
        Ok(RegistryStatus::from_u8(m.status))
    }

    /// Settles a lost vote (once): slashes the configured share, refunds the rest.
    pub async fn settle_defeat(&self, suite: &SuiteAddresses, id: B256) -> Result<Write> {
        let registry = ModelRegistry::new(suite.registry, &self.provider);
        self.write_once(
            ("ModelRegistry", "settleDefeat", suite.registry),
            || async { Ok(self.registry_status(suite, id).await? != RegistryStatus::Voting) },
            || async { registry.settleDefeat(id).send().await },
            |e| {
                e.as_decoded_interface_error::<ModelRegistry::ModelRegistryErrors>()
                    .is_some_and(|e| {
                        matches!(e, ModelRegistry::ModelRegistryErrors::WrongStatus(_))
                    })
            },
        )
        .await
    }

    /// Withdraws an undecided proposal (once): cancels its vote and refunds the stake per the
    /// registry's rules (all of it before voting opens, less the slash share after).
    pub async fn withdraw_model(&self, suite: &SuiteAddresses, id: B256) -> Result<Write> {
        let registry = ModelRegistry::new(suite.registry, &self.provider);
        self.write_once(
            ("ModelRegistry", "withdraw", suite.registry),
            || async { Ok(self.registry_status(suite, id).await? != RegistryStatus::Voting) },
            || async { registry.withdraw(id).send().await },
            |e| {
                e.as_decoded_interface_error::<ModelRegistry::ModelRegistryErrors>()
                    .is_some_and(|e| {
                        matches!(e, ModelRegistry::ModelRegistryErrors::WrongStatus(_))
                    })
            },
        )
        .await
    }

    /// How a decided model's stake went, from the registry's `ModelRatified`, `ModelRejected`
    /// or `ModelWithdrawn` event (None while undecided).
    pub async fn decision(&self, suite: &SuiteAddresses, id: B256) -> Result<Option<Decision>> {
        let registry = ModelRegistry::new(suite.registry, &self.provider);
        let r = suite.registry;
        let q = |e: alloy::contract::Error| call_error("ModelRegistry", "events", r)(e);
        let meta =
            |l: &alloy::rpc::types::Log| (l.transaction_hash.unwrap_or_default(), l.block_number);
        if let Some((e, l)) = registry
            .ModelRatified_filter()
            .topic1(id)
            .from_block(0)
            .query()
            .await
            .map_err(q)?
            .into_iter()
            .next()
        {
            let (tx, block) = meta(&l);
            return Ok(Some(Decision {
                tx,
                block,
                slashed: U256::ZERO,
                refunded: e.refunded,
            }));
        }
        if let Some((e, l)) = registry
            .ModelRejected_filter()
            .topic1(id)
            .from_block(0)
            .query()
            .await
            .map_err(q)?
            .into_iter()
            .next()
        {
            let (tx, block) = meta(&l);
            return Ok(Some(Decision {
                tx,
                block,
                slashed: e.slashed,
                refunded: e.refunded,
            }));
        }
        if let Some((e, l)) = registry
            .ModelWithdrawn_filter()
            .topic1(id)
            .from_block(0)
            .query()
            .await
            .map_err(q)?
            .into_iter()
            .next()
        {
            let (tx, block) = meta(&l);
            return Ok(Some(Decision {
                tx,
                block,
                slashed: e.slashed,
                refunded: e.refunded,
            }));
        }
        Ok(None)
    }

    /// The transaction that registered `id`, from the registry's `ModelRegistered` event.
    pub async fn registration_tx(&self, suite: &SuiteAddresses, id: B256) -> Result<Option<B256>> {
        let registry = ModelRegistry::new(suite.registry, &self.provider);
        Ok(registry
            .ModelRegistered_filter()
            .topic1(id)
            .from_block(0)
            .query()
            .await
            .map_err(|e| call_error("ModelRegistry", "events", suite.registry)(e))?
            .into_iter()
            .next()
            .and_then(|(_, l)| l.transaction_hash))
    }

    /// The proposer's OPEN balance and allowance to the registry (what registration escrows).
    pub async fn stake_readiness(
        &self,
        suite: &SuiteAddresses,
        proposer: Address,
    ) -> Result<(U256, U256)> {
        let t = super::bindings::OpenToken::new(suite.open, &self.provider);
        let balance = t.balanceOf(proposer).call().await.map_err(call_error(
            "OpenToken",
            "balanceOf",
            suite.open,
        ))?;
        let allowance = t
            .allowance(proposer, suite.registry)
            .call()
            .await
            .map_err(call_error("OpenToken", "allowance", suite.open))?;
        Ok((balance, allowance))
    }

    /// The EIP-712 digest a proposer signs to authorize `terms`, and whether its nonce is
    /// used already.
    pub async fn stake_authorization_digest(
        &self,
        suite: &SuiteAddresses,
        proposer: Address,
        terms: &StakeTerms,
    ) -> Result<(B256, bool)> {
        let StakeTerms {
            spec_hash,
            stake,
            reward_budget,
            nonce,
            deadline,
        } = *terms;
        let r = ModelRegistry::new(suite.registry, &self.provider);
        let used = r
            .authorizationUsed(proposer, nonce)
            .call()
            .await
            .map_err(call_error(
                "ModelRegistry",
                "authorizationUsed",
                suite.registry,
            ))?;
        let digest = r
            .stakeAuthorizationDigest(spec_hash, stake, reward_budget, nonce, deadline)
            .call()
            .await
            .map_err(call_error(
                "ModelRegistry",
                "stakeAuthorizationDigest",
                suite.registry,
            ))?;
        Ok((digest, used))
    }

    /// Signs a stake authorization with the proposer's own key: the 0x-hex signature of
    /// [`Ledger::stake_authorization_digest`] (what `spec.stakeAuthorization.signature` holds).
    pub async fn sign_stake_authorization(
        &self,
        suite: &SuiteAddresses,
        key: &alloy::signers::local::PrivateKeySigner,
        terms: &StakeTerms,
    ) -> Result<String> {
        use alloy::signers::SignerSync;
        let (digest, _) = self
            .stake_authorization_digest(suite, key.address(), terms)
            .await?;
        let sig = key
            .sign_hash_sync(&digest)
            .map_err(|e| super::Error::Signer(e.to_string()))?;
        Ok(format!("0x{}", alloy::hex::encode(sig.as_bytes())))
    }

    /// The lowest quorum and approval threshold the registry accepts (basis points).
    pub async fn governance_floors(&self, suite: &SuiteAddresses) -> Result<(u16, u16)> {
        let r = ModelRegistry::new(suite.registry, &self.provider);
        let q = r.minQuorumBps().call().await.map_err(call_error(
            "ModelRegistry",
            "minQuorumBps",
            suite.registry,
        ))?;
        let t = r.minThresholdBps().call().await.map_err(call_error(
            "ModelRegistry",
            "minThresholdBps",
            suite.registry,
        ))?;
        Ok((q, t))
    }

    /// Whether `address` holds contract code (a smart-contract wallet signs with EIP-1271,
    /// which only the chain checks).
    pub async fn has_code(&self, address: Address) -> Result<bool> {
        Ok(!self.provider.get_code_at(address).await?.is_empty())
    }
}
