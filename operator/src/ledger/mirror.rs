//! Idempotent writes: the operator mirrors Kubernetes state onto the chain without ever
//! writing twice. Each write carries a deterministic id derived from the object (see
//! [`super::ids`]); the mirror reads the chain before it writes, treats "already done with the
//! same content" as success and "already done with other content" as a conflict, and when a
//! concurrent or crashed earlier attempt wins the race (the contract refuses the duplicate),
//! it reads again and reports what is there.

use alloy::primitives::{Address, B256, U256};

use super::bindings::ModelRegistry;
use super::ids::model_id;
use super::{Error, Ledger, Result};

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
        "already known",
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
    pub quorum_bps: u16,
    pub threshold_bps: u16,
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
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            if let Some(done) = self.existing_registration(registry, id, req).await? {
                return Ok(done);
            }
            let sent = contract
                .register(
                    id,
                    req.spec_hash,
                    req.proposer,
                    req.stake,
                    req.quorum_bps,
                    req.threshold_bps,
                )
                .send()
                .await;
            let err = match sent {
                Ok(pending) => {
                    let tx = *pending.tx_hash();
                    let receipt = pending
                        .with_required_confirmations(self.confirmations)
                        .get_receipt()
                        .await?;
                    if !receipt.status() {
                        return Err(Error::Reverted {
                            contract: "ModelRegistry",
                            method: "register",
                            tx,
                        });
                    }
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
                    return Ok(Outcome::Written {
                        tx,
                        proposal_id: m.proposalId,
                    });
                }
                Err(err) => err,
            };
            // Refused as a duplicate: another attempt got there first; the next read reports
            // it (or the conflict). A nonce race with another writer of the same key, or a
            // transient RPC failure: read again and retry, a bounded number of times.
            let duplicate = err
                .as_decoded_interface_error::<ModelRegistry::ModelRegistryErrors>()
                .is_some_and(|e| matches!(e, ModelRegistry::ModelRegistryErrors::ModelExists(_)));
            if (duplicate || is_retryable(&err)) && attempt < MAX_ATTEMPTS {
                tokio::time::sleep(std::time::Duration::from_millis(100 * u64::from(attempt)))
                    .await;
                continue;
            }
            return Err(Error::Call {
                contract: "ModelRegistry",
                method: "register",
                address: registry,
                source: Box::new(err),
            });
        }
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
        if m.proposer != req.proposer || m.stake != req.stake || m.specHash != req.spec_hash {
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
