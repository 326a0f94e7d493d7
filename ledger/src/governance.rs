//! Governance helpers: gasless ballots (EIP-712 `Ballot`, as OpenZeppelin's Governor checks
//! them in `castVoteBySig`), and the Governor's proposal states.

use alloy::primitives::{Address, B256, U256, keccak256};
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolValue;

/// The name the Governor's EIP-712 domain is built with.
pub const GOVERNOR_NAME: &str = "modelcommons governor";

/// How a vote is cast (GovernorCountingSimple).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Support {
    Against = 0,
    For = 1,
    Abstain = 2,
}

/// The Governor's proposal states (`IGovernor.ProposalState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProposalState {
    Pending,
    Active,
    Canceled,
    Defeated,
    Succeeded,
    Queued,
    Expired,
    Executed,
}

impl ProposalState {
    /// From the `uint8` the contract returns.
    pub fn from_u8(v: u8) -> Option<Self> {
        use ProposalState::*;
        [
            Pending, Active, Canceled, Defeated, Succeeded, Queued, Expired, Executed,
        ]
        .get(usize::from(v))
        .copied()
    }
}

/// The EIP-712 digest of a ballot for `castVoteBySig`.
pub fn ballot_digest(
    chain_id: u64,
    governor: Address,
    proposal_id: U256,
    support: Support,
    voter: Address,
    nonce: U256,
) -> B256 {
    let domain_type = keccak256(
        "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)",
    );
    let domain = keccak256(
        (
            domain_type,
            keccak256(GOVERNOR_NAME),
            keccak256("1"),
            U256::from(chain_id),
            governor,
        )
            .abi_encode(),
    );
    let ballot_type =
        keccak256("Ballot(uint256 proposalId,uint8 support,address voter,uint256 nonce)");
    let ballot = keccak256(
        (
            ballot_type,
            proposal_id,
            U256::from(support as u8),
            voter,
            nonce,
        )
            .abi_encode(),
    );
    let mut buf = Vec::with_capacity(66);
    buf.extend_from_slice(&[0x19, 0x01]);
    buf.extend_from_slice(domain.as_slice());
    buf.extend_from_slice(ballot.as_slice());
    keccak256(buf)
}

/// A holder signs a ballot with their own key; anyone can relay it.
pub fn sign_ballot(
    key: &PrivateKeySigner,
    chain_id: u64,
    governor: Address,
    proposal_id: U256,
    support: Support,
    nonce: U256,
) -> Result<Vec<u8>, alloy::signers::Error> {
    let digest = ballot_digest(
        chain_id,
        governor,
        proposal_id,
        support,
        key.address(),
        nonce,
    );
    Ok(key.sign_hash_sync(&digest)?.as_bytes().to_vec())
}
