//! Datanet contributions: the manifest format and the contributor's signature.
//!
//! A contributor signs, with their own EVM key, an EIP-191 personal message that binds the
//! content hash to one Datanet:
//!
//! ```text
//! modelcommons.dev contribution
//! datanet: <namespace>/<name>
//! sha256: <64 lowercase hex digits>
//! ```
//!
//! Any wallet can produce it (`personal_sign`), anyone can check it, and a signature made for
//! one Datanet cannot be replayed into another to be paid twice.

use alloy::primitives::{Address, Signature};
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One entry of a contributions manifest.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Contribution {
    /// Unique within the manifest.
    pub id: String,
    /// The contributor's EVM address; rewards are paid to it.
    pub contributor: Address,
    /// Where the file is.
    pub uri: String,
    /// sha256 of the file, lowercase hex.
    pub sha256: String,
    /// The contributor's signature over [`message`], 0x + 130 hex digits.
    pub signature: String,
    /// The SPDX license the data is contributed under.
    pub license: String,
}

/// A contributions manifest, as stored at `spec.contributions`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Manifest {
    /// The contributions, in submission order (earlier wins on duplicates).
    pub contributions: Vec<Contribution>,
}

/// Why a contribution's signature does not hold.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("signature is not 65 bytes of hex: {0}")]
    Malformed(String),
    #[error("sha256 must be 64 lowercase hex digits, got {0:?}")]
    BadDigest(String),
    #[error("signed by {recovered}, not by the listed contributor {expected}")]
    WrongSigner {
        expected: Address,
        recovered: Address,
    },
}

/// The lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn valid_digest(sha256: &str) -> bool {
    sha256.len() == 64
        && sha256
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The message a contributor signs for `sha256` in the Datanet `namespace/name`.
pub fn message(datanet: &str, sha256: &str) -> String {
    format!("modelcommons.dev contribution\ndatanet: {datanet}\nsha256: {sha256}")
}

/// Signs a contribution of `sha256` to `datanet` (`namespace/name`).
pub fn sign(key: &PrivateKeySigner, datanet: &str, sha256: &str) -> Result<String, SignatureError> {
    if !valid_digest(sha256) {
        return Err(SignatureError::BadDigest(sha256.into()));
    }
    let sig = key
        .sign_message_sync(message(datanet, sha256).as_bytes())
        .map_err(|e| SignatureError::Malformed(e.to_string()))?;
    Ok(format!("0x{}", alloy::hex::encode(sig.as_bytes())))
}

/// Checks that `c.signature` was made by `c.contributor` for `c.sha256` in `datanet`.
pub fn verify(datanet: &str, c: &Contribution) -> Result<(), SignatureError> {
    if !valid_digest(&c.sha256) {
        return Err(SignatureError::BadDigest(c.sha256.clone()));
    }
    let sig: Signature = c
        .signature
        .parse()
        .map_err(|e: alloy::primitives::SignatureError| SignatureError::Malformed(e.to_string()))?;
    let recovered = sig
        .recover_address_from_msg(message(datanet, &c.sha256))
        .map_err(|e| SignatureError::Malformed(e.to_string()))?;
    if recovered == c.contributor {
        Ok(())
    } else {
        Err(SignatureError::WrongSigner {
            expected: c.contributor,
            recovered,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

    fn signed(datanet: &str, data: &[u8]) -> Contribution {
        let key: PrivateKeySigner = KEY.parse().unwrap();
        let sha256 = sha256_hex(data);
        Contribution {
            id: "c1".into(),
            contributor: key.address(),
            uri: "file:///data/c1.jsonl".into(),
            signature: sign(&key, datanet, &sha256).unwrap(),
            sha256,
            license: "CC-BY-4.0".into(),
        }
    }

    #[test]
    fn sha256_matches_the_standard_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_signature_verifies_for_its_datanet_only() {
        let c = signed("legal/clauses", b"{\"text\":\"x\"}\n");
        assert_eq!(verify("legal/clauses", &c), Ok(()));
        assert!(matches!(
            verify("other/clauses", &c),
            Err(SignatureError::WrongSigner { .. })
        ));
    }

    #[test]
    fn tampering_is_detected() {
        let mut c = signed("legal/clauses", b"original");
        c.sha256 = sha256_hex(b"tampered");
        assert!(matches!(
            verify("legal/clauses", &c),
            Err(SignatureError::WrongSigner { .. })
        ));
        let mut c = signed("legal/clauses", b"original");
        c.contributor = Address::repeat_byte(7);
        assert!(matches!(
            verify("legal/clauses", &c),
            Err(SignatureError::WrongSigner { .. })
        ));
        c.signature = "0x1234".into();
        assert!(matches!(
            verify("legal/clauses", &c),
            Err(SignatureError::Malformed(_))
        ));
        c.sha256 = "ABC".into();
        assert!(matches!(
            verify("legal/clauses", &c),
            Err(SignatureError::BadDigest(_))
        ));
    }
}
