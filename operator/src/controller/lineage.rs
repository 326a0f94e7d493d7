//! The operator's record of every published Datanet version: where its curated dataset is,
//! its dataset root, the manifest digest it was curated from and its reward map — one
//! ConfigMap per Datanet (`datanet-<uid>`, a key `v<N>` per version) in the operator's
//! trusted namespace, which tenants cannot write. It is written once the version is verified
//! and published on chain, and read instead of the Datanet's `status` (which anyone with
//! `patch datanets/status` can rewrite) wherever a version decides something: which manifest
//! is already published and what the next version is (the Datanet controller), and what a
//! FineTuneJob trains on, pinned or latest (the FineTuneJob controller).

use std::collections::BTreeMap;

use kube::ResourceExt;
use modelcommons_crds::datanet::Datanet;
use serde::{Deserialize, Serialize};

use super::{Context, Error};

/// One published version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionRecord {
    /// The content-addressed curated dataset directory.
    pub dataset_uri: String,
    /// Its Merkle root (also the on-chain distribution's content root).
    pub dataset_root: Option<String>,
    /// The canonical digest of the manifest it was curated from.
    pub manifest_sha256: String,
    /// The content-addressed curation report.
    pub reward_map_uri: String,
    /// The quality score (basis points) of each accepted contribution: what the mandate's
    /// `dataNeeds` are checked against.
    #[serde(default)]
    pub accepted_quality_bps: Vec<u32>,
}

/// The record's ConfigMap name for the Datanet with `uid`.
pub fn record_name(uid: &str) -> String {
    format!("datanet-{uid}")
}

/// Every published version of `dn`, by number (empty when none is).
pub async fn versions(ctx: &Context, dn: &Datanet) -> Result<BTreeMap<u32, VersionRecord>, Error> {
    let data = super::trusted::read(ctx, &record_name(&dn.uid().unwrap_or_default())).await?;
    Ok(parse(&data))
}

/// The versions in a record's data (keys `v<N>`; anything else is skipped).
pub fn parse(data: &BTreeMap<String, String>) -> BTreeMap<u32, VersionRecord> {
    data.iter()
        .filter_map(|(k, v)| {
            let n = k.strip_prefix('v')?.parse().ok()?;
            Some((n, serde_json::from_str(v).ok()?))
        })
        .collect()
}

/// Records version `version` of `dn` (idempotent: the same version writes the same value).
pub async fn record(
    ctx: &Context,
    dn: &Datanet,
    version: u32,
    rec: &VersionRecord,
) -> Result<(), Error> {
    super::trusted::write(
        ctx,
        &record_name(&dn.uid().unwrap_or_default()),
        "modelcommons-lineage",
        (
            "modelcommons.dev/datanet",
            format!("{}/{}", dn.namespace().unwrap_or_default(), dn.name_any()),
        ),
        &format!("v{version}"),
        serde_json::to_string(rec)?,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_by_number_and_skip_anything_else() {
        let rec = VersionRecord {
            dataset_uri: "file:///s/d".into(),
            dataset_root: Some("0x01".into()),
            manifest_sha256: "ab".into(),
            reward_map_uri: "file:///s/r.json".into(),
            accepted_quality_bps: vec![10_000, 7_000],
        };
        let data = BTreeMap::from([
            (
                "v2".to_string(),
                serde_json::to_string(&rec).unwrap_or_default(),
            ),
            (
                "v10".to_string(),
                serde_json::to_string(&rec).unwrap_or_default(),
            ),
            ("notes".to_string(), "x".to_string()),
            ("v3".to_string(), "not json".to_string()),
        ]);
        let got = parse(&data);
        assert_eq!(got.keys().copied().collect::<Vec<_>>(), [2, 10]);
        assert_eq!(got[&2], rec);
    }
}
