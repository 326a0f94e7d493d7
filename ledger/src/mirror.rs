//! Idempotent writes: the operator mirrors Kubernetes state onto the chain without ever
//! writing twice. Each write carries a deterministic id derived from the object (see
//! [`super::ids`]); the mirror reads the chain before it writes, treats "already done with the
//! same content" as success and "already done with other content" as a conflict, and when a
//! concurrent or crashed earlier attempt wins the race (the contract refuses the duplicate),
//! it reads again and reports what is there.

use std::future::Future;

use alloy::network::Ethereum;
use alloy::primitives::{Address, B256, U256};
use alloy::providers::PendingTransactionBuilder;

use super::bindings::{ModelRegistry, OpenToken, RewardDistributor, ValidatorPool};
use super::ids::model_id;
use super::{Error, Ledger, Result, call_error};

/// Attempts per write before an error is returned (each one reads the chain first).
const MAX_ATTEMPTS: u32 = 4;

/// Whether a failed send may succeed when retried: nonce races with another writer of the same
/// key, and transport failures that are not a revert.
fn is_retryable(err: &alloy::contract::Error) -> bool {
    if err.as_revert_data().is_some() {
        return false;
    }
    let text = err.to_string().to_ascii_lowercase();
    [
        "nonce too low",
        // geth's and anvil's words for an identical transaction already in the pool (two
        // racing writers signed the same write with the same nonce): read again, then wait.
        "already known",
        "already imported",
        "replacement transaction underpriced",
        "connection",
        "timed out",
    ]
    .iter()
    .any(|s| text.contains(s))
}

/// Registering a ModelProposal: escrow its stake and open its vote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterModel {
    /// The ModelProposal's uid (the registry id derives from it).
    pub uid: String,
    /// sha256 or keccak of the canonical spec, so the chain records what was voted on.
    pub spec_hash: B256,
    pub proposer: Address,
    pub stake: U256,
    /// OPEN the ratification escrows for the mandate's reward pools.
    pub reward_budget: U256,
    pub quorum_bps: u16,
    pub threshold_bps: u16,
    /// The proposer's authorization: its nonce, deadline (unix seconds) and EIP-712
    /// signature.
    pub nonce: U256,
    pub deadline: U256,
    pub signature: alloy::primitives::Bytes,
}

/// What a write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// This call wrote it, in transaction `tx`.
    Written { tx: B256, proposal_id: U256 },
    /// It was on chain already with the same content (an earlier attempt succeeded).
    AlreadyDone { proposal_id: U256 },
}

impl Outcome {
    /// The Governor proposal id either way.
    pub fn proposal_id(&self) -> U256 {
        match self {
            Outcome::Written { proposal_id, .. } | Outcome::AlreadyDone { proposal_id } => {
                *proposal_id
            }
        }
    }
}

impl Ledger {
    /// Registers a proposal once. Safe to call again after a crash, a lost connection or a
    /// timeout: the second call finds the first one's record and returns `AlreadyDone`.
    pub async fn register_model(&self, registry: Address, req: &RegisterModel) -> Result<Outcome> {
        let id = model_id(&req.uid);
        let contract = ModelRegistry::new(registry, &self.provider);
        let write = self
            .write_once(
                ("ModelRegistry", "register", registry),
                || async {
                    Ok(self
                        .existing_registration(registry, id, req)
                        .await?
                        .is_some())
                },
                || async {
                    contract
                        .register(ModelRegistry::Registration {
                            modelId: id,
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
                },
                |e| {
                    e.as_decoded_interface_error::<ModelRegistry::ModelRegistryErrors>()
                        .is_some_and(|e| {
                            matches!(e, ModelRegistry::ModelRegistryErrors::ModelExists(_))
                        })
                },
            )
            .await?;
        // A write found done by its revert ("ModelExists": another attempt won the race) can
        // be answered by a node whose latest state does not show that attempt's record yet:
        // read until it does (bounded), so the proposal id returned is never the zero of an
        // unseen record.
        let mut m = contract.models(id).call().await.map_err(call_error(
            "ModelRegistry",
            "models",
            registry,
        ))?;
        for _ in 0..50 {
            if !m.proposalId.is_zero() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            m = contract.models(id).call().await.map_err(call_error(
                "ModelRegistry",
                "models",
                registry,
            ))?;
        }
        Ok(match write {
            Write::Written { tx } => Outcome::Written {
                tx,
                proposal_id: m.proposalId,
            },
            Write::AlreadyDone => Outcome::AlreadyDone {
                proposal_id: m.proposalId,
            },
        })
    }

    async fn existing_registration(
        &self,
        registry: Address,
        id: B256,
        req: &RegisterModel,
    ) -> Result<Option<Outcome>> {
        let contract = ModelRegistry::new(registry, &self.provider);
        let m = contract
            .models(id)
            .call()
            .await
            .map_err(|source| Error::Call {
                contract: "ModelRegistry",
                method: "models",
                address: registry,
                source: Box::new(source),
            })?;
        if m.status == 0 {
            return Ok(None);
        }
        if m.proposer != req.proposer
            || m.stake != req.stake
            || m.specHash != req.spec_hash
            || m.rewardBudget != req.reward_budget
        {
            return Err(Error::Conflict {
                what: format!("model {id} (uid {})", req.uid),
                detail: format!(
                    "on chain: proposer {} stake {} spec {}; wanted: proposer {} stake {} spec {}",
                    m.proposer, m.stake, m.specHash, req.proposer, req.stake, req.spec_hash
                ),
            });
        }
        Ok(Some(Outcome::AlreadyDone {
            proposal_id: m.proposalId,
        }))
    }
}

/// What an idempotent write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// This call wrote it, in transaction `tx`.
    Written { tx: B256 },
    /// It was on chain already with the same content.
    AlreadyDone,
}

/// Whether a publish reverted because the distribution exists (an earlier attempt won).
fn distribution_exists(e: &alloy::contract::Error) -> bool {
    e.as_decoded_interface_error::<RewardDistributor::RewardDistributorErrors>()
        .is_some_and(|e| {
            matches!(
                e,
                RewardDistributor::RewardDistributorErrors::DistributionExists(_)
            )
        })
}

/// A funded Merkle distribution (Datanet version, RLHF round or usage epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishDistribution {
    pub id: B256,
    /// 0 Datanet version, 1 RLHF round, 2 usage epoch.
    pub kind: u8,
    pub root: B256,
    pub content_root: B256,
    pub total: U256,
    pub deadline: u64,
}

/// A training result of one FineTuneJob run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordTraining {
    pub job_id: B256,
    pub model_id: B256,
    pub dataset_root: B256,
    pub model_digest: B256,
    pub metrics_hash: B256,
    pub passed: bool,
}

/// What a ModelDeployment checks of a training result the registry holds
/// (`ModelRegistry.trainings`): the digest of the evaluated weights, and whether they passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainingRecord {
    pub model_digest: B256,
    pub passed: bool,
}

/// An RLHF round's item set and deadlines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenRound {
    pub round_id: B256,
    pub items_root: B256,
    pub commit_deadline: u64,
    pub reveal_deadline: u64,
    pub min_bond: U256,
}

/// An RLHF round's settlement: the reward distribution and the slashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettleRound {
    pub round_id: B256,
    pub reward_id: B256,
    pub validators: Vec<Address>,
    pub amounts: Vec<U256>,
}

fn conflict(what: String, detail: String) -> Error {
    Error::Conflict { what, detail }
}

impl Ledger {
    /// The shape of every idempotent write: read (done with the same content → `AlreadyDone`,
    /// other content → `Conflict`), send, wait for the configured confirmations; when the
    /// contract refuses a duplicate or another writer of the key took the nonce, read again.
    pub(crate) async fn write_once<C, CF, S, SF>(
        &self,
        (contract, method, address): (&'static str, &'static str, Address),
        done: C,
        send: S,
        duplicate: fn(&alloy::contract::Error) -> bool,
    ) -> Result<Write>
    where
        C: Fn() -> CF,
        CF: Future<Output = Result<bool>>,
        S: Fn() -> SF,
        SF: Future<Output = Result<PendingTransactionBuilder<Ethereum>, alloy::contract::Error>>,
    {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            if done().await? {
                return Ok(Write::AlreadyDone);
            }
            match send().await {
                Ok(pending) => {
                    let tx = *pending.tx_hash();
                    let receipt = pending
                        .with_required_confirmations(self.confirmations)
                        .get_receipt()
                        .await?;
                    self.count_gas(receipt.gas_used);
                    if !receipt.status() {
                        return Err(Error::Reverted {
                            contract,
                            method,
                            tx,
                        });
                    }
                    return Ok(Write::Written { tx });
                }
                Err(err) if (duplicate(&err) || is_retryable(&err)) && attempt < MAX_ATTEMPTS => {
                    tokio::time::sleep(std::time::Duration::from_millis(100 * u64::from(attempt)))
                        .await;
                }
                Err(err) => return Err(call_error(contract, method, address)(err)),
            }
        }
    }

    /// Whether `req` is published already: true with the same content, a conflict with
    /// other content, false when absent.
    async fn distribution_done(
        &self,
        distributor: Address,
        req: &PublishDistribution,
    ) -> Result<bool> {
        let cur = RewardDistributor::new(distributor, &self.provider)
            .distributions(req.id)
            .call()
            .await
            .map_err(call_error(
                "RewardDistributor",
                "distributions",
                distributor,
            ))?;
        if cur.root == B256::ZERO {
            return Ok(false);
        }
        if cur.root == req.root
            && U256::from(cur.total) == req.total
            && cur.contentRoot == req.content_root
        {
            return Ok(true);
        }
        Err(conflict(
            format!("distribution {}", req.id),
            format!(
                "on chain: root {} total {}; wanted: root {} total {}",
                cur.root, cur.total, req.root, req.total
            ),
        ))
    }

    /// Publishes and funds a distribution once (approving the distributor for `total` first
    /// when the allowance is short).
    pub async fn publish_distribution(
        &self,
        token: Address,
        distributor: Address,
        req: &PublishDistribution,
    ) -> Result<Write> {
        let d = RewardDistributor::new(distributor, &self.provider);
        let done = || self.distribution_done(distributor, req);
        if !done().await? {
            let t = OpenToken::new(token, &self.provider);
            let allowance = t
                .allowance(self.address(), distributor)
                .call()
                .await
                .map_err(call_error("OpenToken", "allowance", token))?;
            if allowance < req.total {
                t.approve(distributor, req.total)
                    .send()
                    .await
                    .map_err(call_error("OpenToken", "approve", token))?
                    .with_required_confirmations(self.confirmations)
                    .watch()
                    .await?;
            }
        }
        self.write_once(
            ("RewardDistributor", "publish", distributor),
            done,
            || async {
                d.publish(
                    req.id,
                    req.kind,
                    req.root,
                    req.content_root,
                    req.total,
                    req.deadline,
                )
                .send()
                .await
            },
            distribution_exists,
        )
        .await
    }

    /// Publishes one reward pool of a ratified mandate once, funded from the mandate's
    /// escrowed budget by the registry (`ModelRegistry.fundDistribution`): the operator's
    /// wallet pays nothing, and the chain refuses a pool beyond what is left of the budget.
    pub async fn fund_distribution(
        &self,
        registry: Address,
        distributor: Address,
        model: B256,
        req: &PublishDistribution,
    ) -> Result<Write> {
        let r = ModelRegistry::new(registry, &self.provider);
        let done = || self.distribution_done(distributor, req);
        self.write_once(
            ("ModelRegistry", "fundDistribution", registry),
            done,
            || async {
                r.fundDistribution(
                    model,
                    req.id,
                    req.kind,
                    req.root,
                    req.content_root,
                    req.total,
                    req.deadline,
                )
                .send()
                .await
            },
            distribution_exists,
        )
        .await
    }

    /// A mandate's reward budget and what its pools have drawn: (budget, spent) — as the
    /// chain says, not a proposal's status. The budget is 0 until the vote has ratified the
    /// mandate (only then is it escrowed and spendable).
    /// Whether the vote has ratified the mandate of `model` (its registry status is
    /// `Ratified`): what a mandate's spending — pools, training — waits for.
    pub async fn ratified(&self, registry: Address, model: B256) -> Result<bool> {
        let m = ModelRegistry::new(registry, &self.provider)
            .models(model)
            .call()
            .await
            .map_err(call_error("ModelRegistry", "models", registry))?;
        Ok(m.status == 2)
    }

    pub async fn reward_budget(&self, registry: Address, model: B256) -> Result<(U256, U256)> {
        let m = ModelRegistry::new(registry, &self.provider)
            .models(model)
            .call()
            .await
            .map_err(call_error("ModelRegistry", "models", registry))?;
        let ratified = m.status == 2;
        Ok((
            if ratified { m.rewardBudget } else { U256::ZERO },
            m.rewardSpent,
        ))
    }

    /// Records a training result once.
    pub async fn record_training(&self, registry: Address, req: &RecordTraining) -> Result<Write> {
        let r = ModelRegistry::new(registry, &self.provider);
        self.write_once(
            ("ModelRegistry", "recordTraining", registry),
            || async {
                let cur = r.trainings(req.job_id).call().await.map_err(call_error(
                    "ModelRegistry",
                    "trainings",
                    registry,
                ))?;
                if cur.recordedAt == 0 {
                    return Ok(false);
                }
                let same = cur.modelId == req.model_id
                    && cur.datasetRoot == req.dataset_root
                    && cur.modelDigest == req.model_digest
                    && cur.metricsHash == req.metrics_hash
                    && cur.passed == req.passed;
                if same {
                    Ok(true)
                } else {
                    Err(conflict(
                        format!("training record {}", req.job_id),
                        format!(
                            "on chain: digest {} passed {}; wanted: digest {} passed {}",
                            cur.modelDigest, cur.passed, req.model_digest, req.passed
                        ),
                    ))
                }
            },
            || async {
                r.recordTraining(
                    req.job_id,
                    req.model_id,
                    req.dataset_root,
                    req.model_digest,
                    req.metrics_hash,
                    req.passed,
                )
                .send()
                .await
            },
            |e| {
                e.as_decoded_interface_error::<ModelRegistry::ModelRegistryErrors>()
                    .is_some_and(|e| {
                        matches!(e, ModelRegistry::ModelRegistryErrors::TrainingExists(_))
                    })
            },
        )
        .await
    }

    /// Opens an RLHF round once.
    pub async fn open_round(&self, pool: Address, req: &OpenRound) -> Result<Write> {
        let p = ValidatorPool::new(pool, &self.provider);
        self.write_once(
            ("ValidatorPool", "openRound", pool),
            || async {
                let cur = p.rounds(req.round_id).call().await.map_err(call_error(
                    "ValidatorPool",
                    "rounds",
                    pool,
                ))?;
                if cur.commitDeadline == 0 {
                    return Ok(false);
                }
                let same = cur.itemsRoot == req.items_root
                    && cur.commitDeadline == req.commit_deadline
                    && cur.revealDeadline == req.reveal_deadline
                    && cur.minBond == req.min_bond;
                if same {
                    Ok(true)
                } else {
                    Err(conflict(
                        format!("round {}", req.round_id),
                        format!(
                            "on chain: items {} deadlines {}/{}; wanted: items {} deadlines {}/{}",
                            cur.itemsRoot,
                            cur.commitDeadline,
                            cur.revealDeadline,
                            req.items_root,
                            req.commit_deadline,
                            req.reveal_deadline
                        ),
                    ))
                }
            },
            || async {
                p.openRound(
                    req.round_id,
                    req.items_root,
                    req.commit_deadline,
                    req.reveal_deadline,
                    req.min_bond,
                )
                .send()
                .await
            },
            |e| {
                e.as_decoded_interface_error::<ValidatorPool::ValidatorPoolErrors>()
                    .is_some_and(|e| {
                        matches!(e, ValidatorPool::ValidatorPoolErrors::RoundExists(_))
                    })
            },
        )
        .await
    }

    /// Settles an RLHF round once (its slashes are applied exactly once).
    pub async fn settle_round(&self, pool: Address, req: &SettleRound) -> Result<Write> {
        let p = ValidatorPool::new(pool, &self.provider);
        self.write_once(
            ("ValidatorPool", "settle", pool),
            || async {
                let cur = p.rounds(req.round_id).call().await.map_err(call_error(
                    "ValidatorPool",
                    "rounds",
                    pool,
                ))?;
                if !cur.settled {
                    return Ok(false);
                }
                if cur.rewardId == req.reward_id {
                    Ok(true)
                } else {
                    Err(conflict(
                        format!("round {}", req.round_id),
                        format!(
                            "settled with reward distribution {}; wanted {}",
                            cur.rewardId, req.reward_id
                        ),
                    ))
                }
            },
            || async {
                p.settle(
                    req.round_id,
                    req.reward_id,
                    req.validators.clone(),
                    req.amounts.clone(),
                )
                .send()
                .await
            },
            |e| {
                e.as_decoded_interface_error::<ValidatorPool::ValidatorPoolErrors>()
                    .is_some_and(|e| {
                        matches!(e, ValidatorPool::ValidatorPoolErrors::AlreadySettled(_))
                    })
            },
        )
        .await
    }
}

impl Ledger {
    /// The transaction that published distribution `id` (from its `Published` event), for a
    /// write that an earlier, interrupted attempt made.
    pub async fn published_tx(&self, distributor: Address, id: B256) -> Result<Option<B256>> {
        Ok(RewardDistributor::new(distributor, &self.provider)
            .Published_filter()
            .topic1(id)
            .from_block(0)
            .query()
            .await
            .map_err(call_error("RewardDistributor", "events", distributor))?
            .into_iter()
            .next()
            .and_then(|(_, l)| l.transaction_hash))
    }

    /// The training result recorded under `job_id`, if any.
    pub async fn training(
        &self,
        registry: Address,
        job_id: B256,
    ) -> Result<Option<TrainingRecord>> {
        let t = ModelRegistry::new(registry, &self.provider)
            .trainings(job_id)
            .call()
            .await
            .map_err(call_error("ModelRegistry", "trainings", registry))?;
        Ok((t.recordedAt != 0).then_some(TrainingRecord {
            model_digest: t.modelDigest,
            passed: t.passed,
        }))
    }

    /// The transaction that recorded training `job_id` (from its `TrainingRecorded` event).
    pub async fn training_tx(&self, registry: Address, job_id: B256) -> Result<Option<B256>> {
        Ok(ModelRegistry::new(registry, &self.provider)
            .TrainingRecorded_filter()
            .topic1(job_id)
            .from_block(0)
            .query()
            .await
            .map_err(call_error("ModelRegistry", "events", registry))?
            .into_iter()
            .next()
            .and_then(|(_, l)| l.transaction_hash))
    }
}
