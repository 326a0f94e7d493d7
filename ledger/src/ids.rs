//! Deterministic on-chain ids derived from Kubernetes objects, so that every write is
//! idempotent: the same object (uid) and version always maps to the same id, and a retried
//! write finds its earlier self on chain instead of writing twice.

use alloy::primitives::{B256, keccak256};

/// The registry id of a ModelProposal: `keccak256("modelcommons.dev/ModelProposal/" ‖ uid)`.
pub fn model_id(uid: &str) -> B256 {
    keccak256(format!("modelcommons.dev/ModelProposal/{uid}"))
}

/// The id of a FineTuneJob run's training record.
pub fn training_id(uid: &str, generation: i64) -> B256 {
    keccak256(format!("modelcommons.dev/FineTuneJob/{uid}/{generation}"))
}

/// The distribution id of a Datanet version's contributor rewards.
pub fn datanet_version_id(uid: &str, version: u32) -> B256 {
    keccak256(format!("modelcommons.dev/Datanet/{uid}/v{version}"))
}

/// The round id (and reward distribution id) of an RLHFRound.
pub fn rlhf_round_id(uid: &str) -> B256 {
    keccak256(format!("modelcommons.dev/RLHFRound/{uid}"))
}

/// The distribution id of a ModelDeployment's usage epoch.
pub fn usage_epoch_id(uid: &str, epoch: u64) -> B256 {
    keccak256(format!(
        "modelcommons.dev/ModelDeployment/{uid}/epoch/{epoch}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_distinct() {
        let uid = "5f0c6a3e-2b1d-4c7e-9a8b-1f2e3d4c5b6a";
        assert_eq!(model_id(uid), model_id(uid));
        assert_ne!(model_id(uid), rlhf_round_id(uid));
        assert_ne!(datanet_version_id(uid, 1), datanet_version_id(uid, 2));
        assert_ne!(training_id(uid, 1), training_id(uid, 2));
        assert_ne!(usage_epoch_id(uid, 7), usage_epoch_id(uid, 8));
    }
}
