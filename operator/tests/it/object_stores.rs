//! Datanet manifests and contributions on object stores, read through the `object_store`
//! crate: a real S3 server (s3proxy, signatures checked), Azurite (Microsoft's Azure Blob
//! emulator, shared key checked) and fake-gcs-server. The real `modelcommons-operator
//! curate` binary runs as a curation pod would, the store's settings in its environment as
//! `contributions.credentialsSecretRef` puts them there, and reports exact counts by reason.

use std::path::Path;

use crate::common::lifecycle::{example, manifest};
use crate::common::stores::{self, Store};
use alloy::signers::local::PrivateKeySigner;
use modelcommons_crds::datanet::CurationResult;
use modelcommons_operator::contribution::{self, sha256_hex};
use modelcommons_operator::curate::{Fetch, FetchError, ObjectFetch};
use modelcommons_testbed::DEV_KEYS;

const DATANET: &str = "legal/clause-review-data";

/// Puts the example's contributions (with its bad hash, bad signature, duplicate and near
/// duplicate) on `store`, plus one listed but never uploaded, and the manifest; returns the
/// manifest's URI.
async fn upload(store: &Store, data: &Path) -> String {
    let mut m = manifest(DATANET, data);
    for c in &mut m.contributions {
        let local = c.uri.strip_prefix("file://").unwrap().to_string();
        let key = format!("items/{}.jsonl", c.id);
        store.put(&key, std::fs::read(&local).unwrap()).await;
        c.uri = store.uri(&key);
    }
    // Listed and signed, never uploaded.
    let signer: PrivateKeySigner = DEV_KEYS[7].parse().unwrap();
    let sha256 = sha256_hex(b"{\"prompt\": \"lost\", \"completion\": \"never uploaded\"}\n");
    let mut lost = m.contributions[0].clone();
    lost.id = "lost".into();
    lost.contributor = signer.address();
    lost.uri = store.uri("items/lost.jsonl");
    lost.signature = contribution::sign(&signer, DATANET, &sha256).unwrap();
    lost.sha256 = sha256;
    m.contributions.push(lost);
    store
        .put("manifest.yaml", serde_yaml::to_string(&m).unwrap())
        .await;
    store.uri("manifest.yaml")
}

/// Runs the real `curate` with the store's settings in its environment.
async fn curate(store: &Store, manifest_uri: &str, env: &[(String, String)]) -> CurationResult {
    let dir = tempfile::tempdir().unwrap();
    let spec = example("03-datanet.yaml", "legal")["spec"].clone();
    let result = dir.path().join("result.json");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_modelcommons-operator"))
        .args([
            "curate",
            "--datanet",
            DATANET,
            "--version",
            "1",
            "--manifest",
        ])
        .arg(manifest_uri)
        .arg("--artifact-store")
        .arg(format!("file://{}", dir.path().join("artifacts").display()))
        .arg("--data-root")
        .arg(dir.path())
        .arg("--result-file")
        .arg(&result)
        .env("MODELCOMMONS_DATANET_SPEC", spec.to_string())
        .envs(env.iter().cloned())
        .env_remove("AWS_PROFILE")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "curate from {}: {}",
        store.bucket,
        String::from_utf8_lossy(&out.stderr)
    );
    let result: CurationResult =
        serde_json::from_str(&std::fs::read_to_string(&result).unwrap()).unwrap();
    // The curated dataset is on disk where the result says: the 200 generated records of the
    // 5 accepted contributions.
    let dataset = result.dataset_uri.strip_prefix("file://").unwrap();
    assert_eq!(
        std::fs::read_to_string(Path::new(dataset).join("dataset.jsonl"))
            .unwrap()
            .lines()
            .count(),
        200
    );
    result
}

async fn curates_from(store: Store) {
    let data = tempfile::tempdir().unwrap();
    let uri = upload(&store, data.path()).await;
    let r = curate(&store, &uri, &store.env).await;
    let c = &r.counts;
    assert_eq!(
        (c.total, c.accepted, c.rejected),
        (10, 5, 5),
        "{}: {c:?}",
        store.bucket
    );
    let by_reason: Vec<_> = c
        .rejected_by_reason
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    assert_eq!(
        by_reason,
        [
            ("BadSignature", 1),
            ("Duplicate", 1),
            ("HashMismatch", 1),
            ("NearDuplicate", 1),
            ("Unreachable", 1)
        ],
        "{}",
        store.bucket
    );
    assert!(r.dataset_root.is_some() && r.reward_root.is_some());

    // The same manifest read by the library: the bytes the curation hashed.
    let text = store.fetch().fetch(&uri, 1 << 20).await.unwrap();
    assert_eq!(
        modelcommons_operator::controller::datanet::manifest_digest(
            std::str::from_utf8(&text).unwrap()
        ),
        r.manifest_sha256
    );
    // A limit smaller than the object: TooLarge, without reading it.
    assert_eq!(
        store.fetch().fetch(&uri, 16).await,
        Err(FetchError::TooLarge { limit: 16 })
    );
    // A missing object: Unreachable, saying so, at once (a 404 is not retried).
    let started = std::time::Instant::now();
    let missing = store.fetch().fetch(&store.uri("nope.yaml"), 1 << 20).await;
    assert!(
        matches!(&missing, Err(FetchError::Unreachable(m)) if m.contains("nope.yaml")),
        "{missing:?}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[tokio::test]
async fn curates_from_s3() {
    let store = stores::s3().await;
    // A wrong secret is refused by the server: the curation fails with S3's reason, and
    // quickly (a 403 is not retried).
    let data = tempfile::tempdir().unwrap();
    let uri = upload(&store, data.path()).await;
    let mut wrong = store.options();
    for (k, v) in &mut wrong {
        if k == "aws_secret_access_key" {
            *v = "not-the-secret".into();
        }
    }
    let started = std::time::Instant::now();
    let refused = ObjectFetch::new(wrong)
        .with_egress(store.egress())
        .fetch(&uri, 1 << 20)
        .await;
    assert!(
        matches!(&refused, Err(FetchError::Unreachable(m)) if m.contains("403") || m.contains("Forbidden") || m.contains("SignatureDoesNotMatch")),
        "{refused:?}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    // The same store without its address allowed: refused before any request, at once —
    // an endpoint in a tenant's Secret cannot reach the cluster's own network.
    let started = std::time::Instant::now();
    let internal = ObjectFetch::new(store.options())
        .with_egress(Default::default())
        .fetch(&uri, 1 << 20)
        .await;
    assert!(
        matches!(&internal, Err(FetchError::Unreachable(m)) if m.contains("not a public address")),
        "{internal:?}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    curates_from(store).await;
}

#[tokio::test]
async fn curates_from_azure_blob() {
    curates_from(stores::azure().await).await;
}

#[tokio::test]
async fn curates_from_gcs() {
    curates_from(stores::gcs().await).await;
}
