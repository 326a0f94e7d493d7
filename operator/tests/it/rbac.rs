//! Least privilege, proven: the chart is installed; the real operator binary runs with a token
//! of the chart's ServiceAccount (TokenRequest) and carries the lifecycle — proposal approved
//! on chain, Datanet curated and published, FineTuneJob trained and recorded, ModelDeployment
//! serving — without one `forbidden` error; and the same account is refused what it must not
//! do (read Secrets, create pods, touch RBAC, impersonate, …).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::lifecycle::*;
use crate::common::{Chain, OPERATOR, VOTERS, open};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use modelcommons_crds::datanet::DatanetPhase;
use modelcommons_crds::deployment::{ModelDeployment, ModelDeploymentPhase};
use modelcommons_crds::finetune::{FineTuneJob, FineTuneJobPhase};
use modelcommons_crds::proposal::ModelProposal;
use modelcommons_testbed::{
    DEV_KEYS, TestNamespace, cluster, install_crds, workspace_binary, workspace_root,
};
use serde_json::json;

fn helm() -> PathBuf {
    std::env::var_os("MODELCOMMONS_HELM")
        .map(PathBuf::from)
        .expect("MODELCOMMONS_HELM (hack/deps.sh exports it)")
}

/// A kubeconfig for the API server in `admin` that authenticates with `token`.
fn token_kubeconfig(admin: &Path, token: &str, out: &Path) {
    let cfg: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(admin).unwrap()).unwrap();
    let cluster = cfg["clusters"][0]["cluster"].clone();
    let k = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": serde_json::to_value(&cluster).unwrap()}],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "operator"}}],
        "current-context": "c",
    });
    std::fs::write(out, serde_yaml::to_string(&k).unwrap()).unwrap();
}

#[tokio::test]
async fn the_operator_runs_the_lifecycle_with_only_the_charts_permissions() {
    let _one_at_a_time = FULL_TRAINING.lock().await;
    let chain = Chain::new().await;
    for v in VOTERS {
        chain.wrap_and_delegate(v, open(1_000)).await;
    }
    let cluster = cluster().await.unwrap();
    let client = cluster.client().await.unwrap();
    install_crds(&client, &modelcommons_crds::all_crds())
        .await
        .unwrap();
    let ns = TestNamespace::create(&client, "rbac").await.unwrap();
    let n = ns.name();
    // The operator's trusted namespace (curation, evaluation, its records): its own, apart
    // from the tenant's.
    let trusted_ns = TestNamespace::create(&client, "rbac-trusted")
        .await
        .unwrap();
    let t = trusted_ns.name();
    let release = format!("mc-{n}");
    let sa = format!("{release}-modelcommons");
    let out = Command::new(helm())
        .args(["install", &release, "--namespace", n, "--kubeconfig"])
        .arg(cluster.kubeconfig())
        .arg(workspace_root().join("charts/modelcommons"))
        .args(["--set", "replicaCount=1"])
        .args(["--set", &format!("evaluation.namespace={t}")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A token of the chart's ServiceAccount, as its pods get (TokenRequest).
    let token = cluster
        .kubectl()
        .unwrap()
        .args(["create", "token", &sa, "--namespace", n, "--duration", "1h"])
        .output()
        .unwrap();
    assert!(
        token.status.success(),
        "{}",
        String::from_utf8_lossy(&token.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let kubeconfig = d.join("operator.kubeconfig");
    token_kubeconfig(
        cluster.kubeconfig(),
        String::from_utf8_lossy(&token.stdout).trim(),
        &kubeconfig,
    );

    let who = format!("system:serviceaccount:{n}:{sa}");
    let can = |verb: &str, resource: &str, ns: &str| {
        let out = cluster
            .kubectl()
            .unwrap()
            .args([
                "auth",
                "can-i",
                verb,
                resource,
                "--namespace",
                ns,
                "--as",
                &who,
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim() == "yes"
    };
    // What it must not be able to do, in a tenant's namespace and in its trusted one.
    for ns in [n, t] {
        for (verb, resource) in [
            ("get", "secrets"),
            ("list", "secrets"),
            ("watch", "secrets"),
            ("create", "pods"),
            ("delete", "pods"),
            ("create", "pods/exec"),
            ("delete", "modelproposals.modelcommons.dev"),
            ("create", "modelproposals.modelcommons.dev"),
            ("create", "clusterroles.rbac.authorization.k8s.io"),
            ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
            ("bind", "roles.rbac.authorization.k8s.io"),
            ("escalate", "roles.rbac.authorization.k8s.io"),
            ("delete", "rolebindings.rbac.authorization.k8s.io"),
            ("impersonate", "serviceaccounts"),
            ("create", "namespaces"),
            ("patch", "nodes"),
            ("create", "customresourcedefinitions.apiextensions.k8s.io"),
        ] {
            assert!(
                !can(verb, resource, ns),
                "the operator may {verb} {resource} in {ns}"
            );
        }
    }
    // A tenant's Jobs and Secrets are not the operator's to delete or write.
    for (verb, resource) in [
        ("delete", "jobs.batch"),
        ("create", "secrets"),
        ("patch", "secrets"),
    ] {
        assert!(
            !can(verb, resource, n),
            "the operator may {verb} {resource} in {n}"
        );
    }

    // And what it must (a check that the question above is asked of the right account):
    // in the tenant's namespace, and in the trusted one — where it deletes a failed curation
    // Job asked to run again, and writes (never reads) the copy of a tenant's credentials.
    for (verb, resource, ns) in [
        ("patch", "finetunejobs.modelcommons.dev", n),
        ("create", "jobs.batch", n),
        ("list", "pods", n),
        ("create", "events.events.k8s.io", n),
        ("update", "leases.coordination.k8s.io", n),
        ("create", "jobs.batch", t),
        ("watch", "jobs.batch", t),
        ("delete", "jobs.batch", t),
        ("list", "pods", t),
        ("create", "secrets", t),
        ("create", "configmaps", t),
    ] {
        assert!(
            can(verb, resource, ns),
            "the operator may not {verb} {resource} in {ns}"
        );
    }

    // The real binary with that token, leader election on, the chain configured.
    std::fs::write(d.join("key"), DEV_KEYS[OPERATOR]).unwrap();
    std::fs::write(
        d.join("addresses.json"),
        serde_json::to_string(&chain.suite).unwrap(),
    )
    .unwrap();
    std::fs::create_dir_all(d.join("data")).unwrap();
    let log = std::fs::File::create(d.join("operator.log")).unwrap();
    let mut operator = tokio::process::Command::new(env!("CARGO_BIN_EXE_modelcommons-operator"))
        .args([
            "run",
            "--namespace",
            n,
            "--lease-namespace",
            n,
            "--trusted-namespace",
            t,
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .args([
            "--recheck-seconds",
            "1",
            "--ledger-rpc-url",
            &chain.anvil.endpoint(),
        ])
        .arg("--ledger-key-file")
        .arg(d.join("key"))
        .arg("--ledger-addresses-file")
        .arg(d.join("addresses.json"))
        .arg("--artifact-store")
        .arg(format!("file://{}", d.join("store").display()))
        .arg("--dev-host-dir")
        .arg(d)
        .env("KUBECONFIG", &kubeconfig)
        .env("POD_SERVICE_ACCOUNT", &sa)
        .env("RUST_LOG", "info,kube=warn")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    let mps: Api<ModelProposal> = Api::namespaced(client.clone(), n);
    stake(&chain, open(100)).await;
    mps.create(
        &PostParams::default(),
        &proposal_spec(&chain, n, "clause-review", open(100)).await,
    )
    .await
    .unwrap();
    // The Datanet names a credentials Secret (its contributions are files here; the keys
    // reach the curation pod all the same). The chart grants no Secret: the operator asks
    // the tenant for this one, and the commands it gives are all it takes.
    let (_, dns) = create_datanet(&client, n, &d.join("data")).await;
    let creds: Secret = serde_json::from_value(json!({"metadata": {"name": "contributions-store"},
        "stringData": {"AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true"}}))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), n)
        .create(&PostParams::default(), &creds)
        .await
        .unwrap();
    dns.patch(
        "clause-review-data",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"spec": {"contributions": {
            "credentialsSecretRef": {"name": "contributions-store"}}}})),
    )
    .await
    .unwrap();
    approve(&chain, &mps, "clause-review").await;
    let forbidden = wait(&dns, "clause-review-data", "CredentialsForbidden", |d| {
        d.status
            .as_ref()
            .is_some_and(|s| ready_reason(&s.conditions).starts_with("CredentialsForbidden"))
    })
    .await;
    let why = ready_reason(&forbidden.status.unwrap().conditions);
    let commands = why
        .split_once("Allow it with: ")
        .and_then(|(_, rest)| rest.split_once("; curation"))
        .map(|(c, _)| c.to_string())
        .unwrap_or_else(|| panic!("no commands in: {why}"));
    for command in commands.split(" && ") {
        let words: Vec<&str> = command.split_whitespace().collect();
        assert_eq!(words[0], "kubectl", "{command}");
        let out = cluster
            .kubectl()
            .unwrap()
            .args(&words[1..])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Still no Secret of the tenant's but that one.
    assert!(
        !can("get", "secrets", n),
        "the operator may read every Secret of {n}"
    );

    let job = curation_job_of(&client, t, n, "clause-review-data", None).await;
    let copy = Api::<Secret>::namespaced(client.clone(), t)
        .get(&format!(
            "{}-credentials",
            job.metadata.name.as_deref().unwrap()
        ))
        .await
        .unwrap();
    assert_eq!(
        copy.data.unwrap()["AWS_REGION"].0,
        b"us-east-1",
        "the credentials, copied beside the curation Job"
    );
    run_curation_pod(
        &client,
        Path::new(env!("CARGO_BIN_EXE_modelcommons-operator")),
        &job,
    )
    .await;
    wait(&dns, "clause-review-data", "Ready", |d| {
        d.status.as_ref().and_then(|s| s.phase) == Some(DatanetPhase::Ready)
    })
    .await;

    let f = small_finetune(n, d, 2, 300);
    let ftjs: Api<FineTuneJob> = Api::namespaced(client.clone(), n);
    ftjs.create(&PostParams::default(), &serde_json::from_value(f).unwrap())
        .await
        .unwrap();
    wait(&ftjs, "clause-review-lora", "Evaluating", |f| {
        f.status.as_ref().and_then(|s| s.phase) == Some(FineTuneJobPhase::Evaluating)
    })
    .await;
    let job = Api::<Job>::namespaced(client.clone(), n)
        .get("clause-review-lora-trainer")
        .await
        .unwrap();
    // The trainer runs with a token of its own account, as its pods get it: it may report
    // into its own job's status and into no other job's.
    let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let account = pod.service_account_name.clone().unwrap();
    assert_eq!(account, "clause-review-lora-trainer");
    assert_eq!(pod.automount_service_account_token, Some(true));
    let token = cluster
        .kubectl()
        .unwrap()
        .args([
            "create",
            "token",
            &account,
            "--namespace",
            n,
            "--duration",
            "1h",
        ])
        .output()
        .unwrap();
    assert!(
        token.status.success(),
        "{}",
        String::from_utf8_lossy(&token.stderr)
    );
    let trainer_kubeconfig = d.join("trainer.kubeconfig");
    token_kubeconfig(
        cluster.kubeconfig(),
        String::from_utf8_lossy(&token.stdout).trim(),
        &trainer_kubeconfig,
    );
    let trainer = format!("system:serviceaccount:{n}:{account}");
    for (verb, what, want) in [
        (
            "patch",
            "finetunejobs.modelcommons.dev/clause-review-lora",
            "yes",
        ),
        ("patch", "finetunejobs.modelcommons.dev/another-job", "no"),
        ("patch", "finetunejobs.modelcommons.dev", "no"),
        ("list", "finetunejobs.modelcommons.dev", "no"),
        ("get", "secrets", "no"),
        ("create", "pods", "no"),
    ] {
        let mut args = vec![
            "auth",
            "can-i",
            verb,
            what,
            "--namespace",
            n,
            "--as",
            &trainer,
        ];
        if what.ends_with("/clause-review-lora") || what.ends_with("/another-job") {
            args.extend(["--subresource", "status"]);
        }
        // The authorizer sees a new binding within moments: a "yes" is waited for.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let got = loop {
            let out = cluster.kubectl().unwrap().args(&args).output().unwrap();
            let got = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if got == want || std::time::Instant::now() > deadline {
                break got;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        assert_eq!(got, want, "the trainer's account: can-i {verb} {what}");
    }
    run_pod(
        &workspace_binary("modelcommons-trainer"),
        &job,
        &trainer_kubeconfig,
    )
    .await;
    // The operator evaluates in its own namespace (here the release namespace, its default):
    // creating that Job and reading its pod are within the chart's rules.
    run_evaluation_pod(&client, &ftjs, "clause-review-lora", t).await;
    wait(&ftjs, "clause-review-lora", "Succeeded", |f| {
        f.status
            .as_ref()
            .is_some_and(|s| s.phase == Some(FineTuneJobPhase::Succeeded) && s.chain.is_some())
    })
    .await;

    let secret: Secret = serde_json::from_value(
        json!({"metadata": {"name": "clause-review-api-keys", "namespace": n},
        "stringData": {"legal-ops-agent": "mc-dev-legal-ops-7f3a9c"}}),
    )
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), n)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let md: ModelDeployment = serde_json::from_value(json!({
        "apiVersion": "modelcommons.dev/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": "clause-review", "namespace": n},
        "spec": {"modelRef": {"fineTuneJob": "clause-review-lora"},
            "autoscaling": {"minReplicas": 1, "maxReplicas": 2},
            "resources": {"gpus": 0, "cpu": "1", "memory": "1Gi"},
            "access": {"apiKeySecrets": ["clause-review-api-keys"]}}
    }))
    .unwrap();
    let mds: Api<ModelDeployment> = Api::namespaced(client.clone(), n);
    mds.create(&PostParams::default(), &md).await.unwrap();
    wait(&mds, "clause-review", "Ready", |m| {
        m.status.as_ref().and_then(|s| s.phase) == Some(ModelDeploymentPhase::Ready)
    })
    .await;

    delete_proposals(&mps).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    operator.kill().await.unwrap();
    let log = std::fs::read_to_string(d.join("operator.log")).unwrap();
    assert!(log.contains("leading as"), "the operator led: {log}");
    assert!(
        !log.to_ascii_lowercase().contains("forbidden"),
        "the operator hit a permission it lacks:\n{log}"
    );
    let out = Command::new(helm())
        .args(["uninstall", &release, "--namespace", n, "--kubeconfig"])
        .arg(cluster.kubeconfig())
        .output()
        .unwrap();
    assert!(out.status.success());
    ns.delete().await.unwrap();
}
