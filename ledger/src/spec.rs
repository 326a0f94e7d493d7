//! The hash the chain records of a ModelProposal's spec: what token holders voted on, what
//! the proposer's stake authorization signs, and what every gate checks the live spec against.

use alloy::primitives::{B256, U256, keccak256};
use modelcommons_crds::proposal::ModelProposalSpec;
use serde_json::Value;

/// The spec's canonical encoding: JSON with object keys sorted and no whitespace.
pub fn canonical_json(v: &Value) -> String {
    fn write(v: &Value, out: &mut String) {
        match v {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(k.clone()).to_string());
                    out.push(':');
                    write(&map[k], out);
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(item, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(v, &mut out);
    out
}

/// The version of the spec's canonical encoding, hashed with it. Fields added to the spec
/// later are optional and left out when unset, so the hashes of registered proposals that do
/// not use them stay what they were; a change of the encoding itself gets a new version.
pub const SPEC_ENCODING: &str = "modelcommons.dev/ModelProposal/spec/v1";

/// keccak256 of the versioned canonical JSON of the spec without its stake authorization
/// (which signs this hash): what the chain records as voted on.
pub fn spec_hash(spec: &ModelProposalSpec) -> B256 {
    let mut spec = spec.clone();
    spec.stake_authorization = None;
    let v = serde_json::to_value(&spec).unwrap_or(Value::Null);
    keccak256(format!("{SPEC_ENCODING}\n{}", canonical_json(&v)))
}

/// The mandate's reward budget in base units (0 when unset).
pub fn reward_budget(spec: &ModelProposalSpec) -> Option<U256> {
    spec.mandate
        .reward_budget
        .as_deref()
        .map_or(Some(U256::ZERO), |b| U256::from_str_radix(b, 10).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let a: Value = serde_json::from_str(r#"{"b":1,"a":{"d":[{"y":1,"x":2}],"c":"s"}}"#)
            .unwrap_or_default();
        assert_eq!(
            canonical_json(&a),
            r#"{"a":{"c":"s","d":[{"x":2,"y":1}]},"b":1}"#
        );
    }
}
