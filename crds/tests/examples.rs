//! The examples are accepted, the invalid examples are refused with their messages, references
//! cannot change, and kubectl explains and lists the kinds.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use std::time::{Duration, Instant};

use common::{apply, documents, examples_dir, install_crds, yaml_files};
use kube::api::{Api, Patch, PatchParams};
use modelcommons_crds::{FineTuneJob, ModelDeployment};
use modelcommons_testbed::{TestNamespace, cluster};
use serde_json::json;

fn lifecycle_files() -> Vec<std::path::PathBuf> {
    yaml_files(&examples_dir().join("contract-review"))
}

#[tokio::test]
async fn every_example_is_accepted_by_server_side_dry_run() {
    let cluster = cluster().await.unwrap();
    let client = cluster.client().await.unwrap();
    install_crds(&client).await;
    let ns = TestNamespace::create(&client, "examples").await.unwrap();
    let mut kinds = std::collections::BTreeSet::new();
    for file in lifecycle_files() {
        for doc in documents(&file) {
            let kind = doc["kind"].as_str().unwrap().to_string();
            if let Some(result) = apply(&client, ns.name(), doc, true).await {
                if let Err(e) = result {
                    panic!("{}: {kind} refused: {e}", file.display());
                }
                kinds.insert(kind);
            }
        }
    }
    for k in [
        "ModelProposal",
        "Datanet",
        "FineTuneJob",
        "RLHFRound",
        "ModelDeployment",
    ] {
        assert!(kinds.contains(k), "the lifecycle example has no {k}");
    }
    ns.delete().await.unwrap();
}

#[tokio::test]
async fn every_invalid_example_is_refused_with_its_message() {
    let cluster = cluster().await.unwrap();
    let client = cluster.client().await.unwrap();
    install_crds(&client).await;
    let ns = TestNamespace::create(&client, "invalid").await.unwrap();
    let files = yaml_files(&examples_dir().join("invalid"));
    assert!(
        files.len() >= 25,
        "examples/invalid holds {} manifests, want at least 25",
        files.len()
    );
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let expect = text
            .lines()
            .find_map(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} has no `# expect: <message>` line", file.display()))
            .trim()
            .to_string();
        let docs = documents(file);
        assert_eq!(
            docs.len(),
            1,
            "{}: one object per invalid example",
            file.display()
        );
        let result = apply(&client, ns.name(), docs[0].clone(), true)
            .await
            .unwrap();
        match result {
            Ok(_) => failures.push(format!(
                "{}: accepted, expected refusal with {expect:?}",
                file.display()
            )),
            Err(e) if !e.to_string().contains(&expect) => failures.push(format!(
                "{}: refused, but without {expect:?}: {e}",
                file.display()
            )),
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    ns.delete().await.unwrap();
}

#[tokio::test]
async fn references_are_immutable_and_canary_needs_a_previous_revision() {
    let cluster = cluster().await.unwrap();
    let client = cluster.client().await.unwrap();
    install_crds(&client).await;
    let ns = TestNamespace::create(&client, "immutable").await.unwrap();
    let dir = examples_dir().join("contract-review");
    for doc in documents(&dir.join("04-finetune.yaml"))
        .into_iter()
        .chain(documents(&dir.join("06-deployment.yaml")))
    {
        apply(&client, ns.name(), doc, false)
            .await
            .unwrap()
            .unwrap();
    }
    let pp = PatchParams::default();
    let jobs: Api<FineTuneJob> = Api::namespaced(client.clone(), ns.name());
    let refused = |patch: serde_json::Value, expect: &'static str| {
        let jobs = jobs.clone();
        let pp = pp.clone();
        async move {
            let err = jobs
                .patch("clause-review-lora", &pp, &Patch::Merge(&patch))
                .await
                .unwrap_err();
            assert!(
                err.to_string().contains(expect),
                "expected {expect:?}: {err}"
            );
        }
    };
    refused(
        json!({"spec": {"datanetRef": {"version": 2}}}),
        "datanetRef (and its pinned version) is immutable",
    )
    .await;
    refused(
        json!({"spec": {"datanetRef": {"name": "other-data"}}}),
        "datanetRef (and its pinned version) is immutable",
    )
    .await;
    refused(
        json!({"spec": {"proposalRef": {"name": "other"}}}),
        "proposalRef is immutable",
    )
    .await;
    // A mutable field still changes.
    jobs.patch(
        "clause-review-lora",
        &pp,
        &Patch::Merge(&json!({"spec": {"runPolicy": {"suspend": true}}})),
    )
    .await
    .unwrap();
    assert!(
        jobs.get("clause-review-lora")
            .await
            .unwrap()
            .spec
            .run_policy
            .suspend
    );

    // A canary is refused at creation (invalid examples) but allowed as an update, within 0–100.
    let deps: Api<ModelDeployment> = Api::namespaced(client.clone(), ns.name());
    let over = json!({"spec": {"modelRef": {"rlhfRound": "clause-review-round-2"}, "canary": {"trafficPercent": 150}}});
    let err = deps
        .patch("clause-review", &pp, &Patch::Merge(&over))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("should be less than or equal to 100"),
        "{err}"
    );
    let ok = json!({"spec": {"modelRef": {"rlhfRound": "clause-review-round-2"}, "canary": {"trafficPercent": 10}}});
    let d = deps
        .patch("clause-review", &pp, &Patch::Merge(&ok))
        .await
        .unwrap();
    assert_eq!(d.spec.canary.unwrap().traffic_percent, 10);
    ns.delete().await.unwrap();
}

fn kubectl(cluster: &modelcommons_testbed::Cluster, args: &[&str]) -> (bool, String) {
    let out = cluster.kubectl().unwrap().args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
async fn kubectl_explains_nested_fields_and_lists_the_whole_lifecycle() {
    let cluster = cluster().await.unwrap();
    let client = cluster.client().await.unwrap();
    install_crds(&client).await;

    // The OpenAPI v3 document is published shortly after the CRDs are Established.
    let deadline = Instant::now() + Duration::from_secs(60);
    let explained = loop {
        let (ok, text) = kubectl(&cluster, &["explain", "finetunejob.spec.method.lora.rank"]);
        if ok && text.contains("The adapter rank r") {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "kubectl explain never showed the field's doc: {text}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(explained.contains("FIELD: rank"), "{explained}");
    let (_, text) = kubectl(
        &cluster,
        &["explain", "modelproposal.spec.governance.quorumBps"],
    );
    assert!(text.contains("basis points"), "{text}");
    let (_, text) = kubectl(&cluster, &["explain", "rlhfround.spec.deadlines"]);
    assert!(text.contains("counted from the publication"), "{text}");

    let ns = TestNamespace::create(&client, "get").await.unwrap();
    for file in lifecycle_files() {
        for doc in documents(&file) {
            apply(&client, ns.name(), doc, false)
                .await
                .map(Result::unwrap);
        }
    }
    let (ok, text) = kubectl(&cluster, &["get", "modelcommons", "-n", ns.name()]);
    assert!(ok, "{text}");
    for needle in [
        "modelproposal.modelcommons.dev/clause-review",
        "datanet.modelcommons.dev/clause-review-data",
        "finetunejob.modelcommons.dev/clause-review-lora",
        "rlhfround.modelcommons.dev/clause-review-round-1",
        "modeldeployment.modelcommons.dev/clause-review",
        "DOMAIN",
        "legal-contracts",
        "PROPOSAL",
        "METHOD",
        "LoRA",
        "MODEL",
        "CANARY",
    ] {
        assert!(
            text.contains(needle),
            "`kubectl get modelcommons` lacks {needle:?}:\n{text}"
        );
    }
    // Short names work too.
    for short in ["mp", "dn", "ftj", "rlhf", "mdep"] {
        let (ok, text) = kubectl(&cluster, &["get", short, "-n", ns.name()]);
        assert!(
            ok && text.contains("clause-review"),
            "kubectl get {short}: {text}"
        );
    }
    ns.delete().await.unwrap();
}
