//! Merkle trees of `(index, account, amount)` payouts whose proofs OpenZeppelin's
//! `MerkleProof` verifies. Leaves are encoded as in OpenZeppelin's `StandardMerkleTree`:
//! `keccak256(bytes.concat(keccak256(abi.encode(index, account, amount))))` (double-hashed so
//! a leaf can never be confused with an inner node), inner nodes hash their two children in
//! sorted order, so a proof is a plain list of sibling hashes.

use alloy::primitives::{Address, B256, U256, keccak256};
use alloy::sol_types::SolValue;

/// One payout: `amount` base units to `account`, at position `index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payout {
    pub index: U256,
    pub account: Address,
    pub amount: U256,
}

impl Payout {
    /// The leaf hash the contract recomputes.
    pub fn leaf(&self) -> B256 {
        keccak256(keccak256(
            (self.index, self.account, self.amount).abi_encode(),
        ))
    }
}

fn hash_pair(a: B256, b: B256) -> B256 {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let mut buf = [0u8; 64];
    buf[..32].copy_from_slice(lo.as_slice());
    buf[32..].copy_from_slice(hi.as_slice());
    keccak256(buf)
}

/// A built tree. Leaves keep the payouts' order; proofs are by payout position.
#[derive(Debug, Clone)]
pub struct PayoutTree {
    /// levels[0] = leaves, last = [root].
    levels: Vec<Vec<B256>>,
}

/// Why a tree cannot be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TreeError {
    #[error("a Merkle tree needs at least one payout")]
    Empty,
    #[error("payout index {0} appears twice: each leaf can be claimed once")]
    DuplicateIndex(U256),
}

impl PayoutTree {
    /// Builds the tree over `payouts` (indices must be unique).
    pub fn new(payouts: &[Payout]) -> Result<Self, TreeError> {
        if payouts.is_empty() {
            return Err(TreeError::Empty);
        }
        let mut seen = std::collections::BTreeSet::new();
        for p in payouts {
            if !seen.insert(p.index) {
                return Err(TreeError::DuplicateIndex(p.index));
            }
        }
        let mut levels = vec![payouts.iter().map(Payout::leaf).collect::<Vec<_>>()];
        while levels.last().is_some_and(|l| l.len() > 1) {
            let prev = levels.last().map(Vec::as_slice).unwrap_or_default();
            // An odd node is carried up unchanged.
            let next = prev
                .chunks(2)
                .map(|c| {
                    if let [a, b] = c {
                        hash_pair(*a, *b)
                    } else {
                        c[0]
                    }
                })
                .collect();
            levels.push(next);
        }
        Ok(Self { levels })
    }

    /// The root to publish on chain.
    pub fn root(&self) -> B256 {
        self.levels
            .last()
            .and_then(|l| l.first())
            .copied()
            .unwrap_or_default()
    }

    /// The proof of the payout at `position` (its place in the slice the tree was built from).
    pub fn proof(&self, position: usize) -> Option<Vec<B256>> {
        if position >= self.levels[0].len() {
            return None;
        }
        let mut proof = Vec::new();
        let mut i = position;
        for level in &self.levels[..self.levels.len() - 1] {
            let sibling = i ^ 1;
            if let Some(h) = level.get(sibling) {
                proof.push(*h);
            }
            i /= 2;
        }
        Some(proof)
    }

    /// Checks a proof the way `MerkleProof.verify` does.
    pub fn verify(root: B256, leaf: B256, proof: &[B256]) -> bool {
        proof.iter().fold(leaf, |h, p| hash_pair(h, *p)) == root
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payouts(n: u64) -> Vec<Payout> {
        (0..n)
            .map(|i| Payout {
                index: U256::from(i),
                account: Address::repeat_byte(i as u8 + 1),
                amount: U256::from(1000 + i),
            })
            .collect()
    }

    #[test]
    fn every_proof_verifies_for_any_size() {
        for n in 1..=17 {
            let ps = payouts(n);
            let tree = PayoutTree::new(&ps).unwrap();
            for (i, p) in ps.iter().enumerate() {
                let proof = tree.proof(i).unwrap();
                assert!(
                    PayoutTree::verify(tree.root(), p.leaf(), &proof),
                    "n={n} i={i}"
                );
            }
        }
    }

    #[test]
    fn a_changed_amount_or_account_does_not_verify() {
        let ps = payouts(5);
        let tree = PayoutTree::new(&ps).unwrap();
        let proof = tree.proof(2).unwrap();
        let mut p = ps[2];
        p.amount += U256::from(1);
        assert!(!PayoutTree::verify(tree.root(), p.leaf(), &proof));
        let mut p = ps[2];
        p.account = Address::repeat_byte(0xee);
        assert!(!PayoutTree::verify(tree.root(), p.leaf(), &proof));
    }

    #[test]
    fn leaf_matches_openzeppelin_standard_merkle_tree_encoding() {
        // keccak256(keccak256(abi.encode(uint256 0, address 0x11..11, uint256 5)))
        let p = Payout {
            index: U256::ZERO,
            account: Address::repeat_byte(0x11),
            amount: U256::from(5),
        };
        let mut enc = [0u8; 96];
        enc[44..64].copy_from_slice(&[0x11; 20]);
        enc[95] = 5;
        assert_eq!(p.leaf(), keccak256(keccak256(enc)));
        assert_eq!(PayoutTree::new(&[]).unwrap_err(), TreeError::Empty);
        assert!(matches!(
            PayoutTree::new(&[p, p]),
            Err(TreeError::DuplicateIndex(_))
        ));
    }
}
