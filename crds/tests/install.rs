//! The generated CRDs install on a real API server, and the server enforces their schema.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use common::install_crds;
use kube::api::{Api, PostParams};
use modelcommons_crds::ModelProposal;
use modelcommons_testbed::{TestNamespace, cluster};
use serde_json::json;

fn proposal(name: &str, proposer: &str, stake: &str) -> ModelProposal {
    serde_json::from_value(json!({
        "apiVersion": "modelcommons.dev/v1alpha1",
        "kind": "ModelProposal",
        "metadata": { "name": name },
        "spec": {
            "title": "Contract-clause review assistant",
            "domain": "legal-contracts",
            "proposer": proposer,
            "stake": stake,
            "mandate": {
                "budget": { "gpuHours": "120", "maxConcurrentGpus": 8 },
                "evaluation": { "metrics": [{ "name": "accuracy", "direction": "Maximize", "threshold": "0.8" }] }
            }
        }
    }))
    .unwrap()
}

#[tokio::test]
async fn crds_become_established_and_the_server_enforces_the_schema() {
    let cluster = cluster().await.unwrap();
    let client = cluster.client().await.unwrap();
    install_crds(&client).await;
    let ns = TestNamespace::create(&client, "crd").await.unwrap();
    let api: Api<ModelProposal> = Api::namespaced(client.clone(), ns.name());
    let pp = PostParams::default();

    let ok = proposal(
        "clause-review",
        "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
        "1000000000000000000000",
    );
    let created = api.create(&pp, &ok).await.unwrap();
    assert_eq!(created.spec.stake, "1000000000000000000000");

    let refused = |name: &'static str, p: ModelProposal, expect: &'static str| {
        let api = api.clone();
        async move {
            let err = api
                .create(&PostParams::default(), &p)
                .await
                .expect_err(name);
            let text = err.to_string();
            assert!(
                text.contains(expect),
                "{name}: expected the refusal to mention {expect:?}, got: {text}"
            );
        }
    };
    refused(
        "bad address",
        proposal("bad-address", "0x1234", "1"),
        "spec.proposer",
    )
    .await;
    refused(
        "zero stake",
        proposal(
            "zero-stake",
            "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
            "0",
        ),
        "stake must be greater than zero",
    )
    .await;
    refused(
        "leading zeros",
        proposal(
            "zero-padded-stake",
            "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
            "0001",
        ),
        "spec.stake",
    )
    .await;
    refused(
        "float stake",
        proposal(
            "float-stake",
            "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
            "1.5",
        ),
        "spec.stake",
    )
    .await;
    assert_eq!(
        api.list(&Default::default()).await.unwrap().items.len(),
        1,
        "refused objects are not stored"
    );

    // What token holders vote on cannot change after the proposal is made.
    for (what, patch, expect) in [
        (
            "stake",
            json!({"spec": {"stake": "1"}}),
            "stake and proposer are fixed",
        ),
        (
            "proposer",
            json!({"spec": {"proposer": "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"}}),
            "stake and proposer are fixed",
        ),
        (
            "governance",
            json!({"spec": {"governance": {"quorumBps": 1}}}),
            "governance is fixed",
        ),
        (
            "mandate",
            json!({"spec": {"mandate": {"budget": {"gpuHours": "100000"}}}}),
            "the mandate is fixed",
        ),
    ] {
        let err = api
            .patch(
                "clause-review",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(patch),
            )
            .await
            .expect_err(what);
        assert!(err.to_string().contains(expect), "{what}: {err}");
    }
    let err = api
        .patch(
            "clause-review",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {"title": "Clause review assistant"}})),
        )
        .await
        .expect_err("title");
    assert!(
        err.to_string()
            .contains("title, domain and description are fixed"),
        "{err}"
    );
    // Only the stake authorization (a signature of the spec hash, outside it) may be added.
    api.patch(
        "clause-review",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"spec": {"stakeAuthorization": {
            "signature": format!("0x{}", "ab".repeat(65)), "deadline": 4_000_000_000u64, "nonce": 1}}})),
    )
    .await
    .unwrap();
    ns.delete().await.unwrap();
}
