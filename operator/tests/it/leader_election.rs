//! Two operator replicas (the real binary) against the real control plane: one leads and
//! reconciles; after it is SIGKILLed the other takes the Lease over and reconciles too.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, PostParams};
use modelcommons_crds::finetune::{FineTuneJob, FineTuneJobPhase};
use modelcommons_testbed::{TestNamespace, cluster, install_crds, workspace_root};
use serde_json::json;
use tokio::io::AsyncBufReadExt;

struct Replica {
    child: tokio::process::Child,
    leading: tokio::sync::watch::Receiver<bool>,
}

fn start(kubeconfig: &std::path::Path, ns: &str, identity: &str) -> Replica {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_modelcommons-operator"))
        .args([
            "run",
            "--namespace",
            ns,
            "--lease-namespace",
            ns,
            "--lease-duration-seconds",
            "4",
            "--metrics-addr",
            "127.0.0.1:0",
            "--identity",
            identity,
        ])
        .env("KUBECONFIG", kubeconfig)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let (tx, leading) = tokio::sync::watch::channel(false);
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    tokio::spawn(async move {
        while let Ok(Some(l)) = lines.next_line().await {
            if l.starts_with("leading as") {
                let _ = tx.send(true);
            }
        }
    });
    Replica { child, leading }
}

fn job(ns: &str, name: &str) -> FineTuneJob {
    let text =
        std::fs::read_to_string(workspace_root().join("examples/contract-review/04-finetune.yaml"))
            .unwrap();
    let mut v: serde_json::Value = serde_yaml::from_str(&text).unwrap();
    v["metadata"] = json!({"name": name, "namespace": ns});
    v["spec"]["proposalRef"]["name"] = json!("missing");
    serde_json::from_value(v).unwrap()
}

async fn pending(api: &Api<FineTuneJob>, name: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let f = api.get(name).await.unwrap();
        if f.status.as_ref().and_then(|s| s.phase) == Some(FineTuneJobPhase::Pending) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} not reconciled within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn the_follower_takes_over_when_the_leader_dies() {
    let cluster = cluster().await.unwrap();
    let client = cluster.client().await.unwrap();
    install_crds(&client, &modelcommons_crds::all_crds())
        .await
        .unwrap();
    let ns = TestNamespace::create(&client, "leader").await.unwrap();
    let n = ns.name();
    let mut a = start(cluster.kubeconfig(), n, "replica-a");
    tokio::time::timeout(Duration::from_secs(30), a.leading.wait_for(|l| *l))
        .await
        .unwrap()
        .unwrap();
    let mut b = start(cluster.kubeconfig(), n, "replica-b");
    let ftjs: Api<FineTuneJob> = Api::namespaced(client.clone(), n);
    ftjs.create(&PostParams::default(), &job(n, "first"))
        .await
        .unwrap();
    pending(&ftjs, "first", Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!*b.leading.borrow(), "only one replica leads");

    a.child.kill().await.unwrap(); // SIGKILL: no graceful release of the lease
    let killed = Instant::now();
    tokio::time::timeout(Duration::from_secs(30), b.leading.wait_for(|l| *l))
        .await
        .unwrap()
        .unwrap();
    let took = killed.elapsed();
    println!("replica-b leads {took:?} after replica-a was killed (lease 4 s)");
    assert!(took < Duration::from_secs(12), "takeover took {took:?}");
    ftjs.create(&PostParams::default(), &job(n, "second"))
        .await
        .unwrap();
    pending(&ftjs, "second", Duration::from_secs(20)).await;
    let lease = Api::<Lease>::namespaced(client.clone(), n)
        .get("modelcommons-operator")
        .await
        .unwrap();
    let spec = lease.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("replica-b"));
    assert_eq!(spec.lease_transitions, Some(1));
    b.child.kill().await.unwrap();
    ns.delete().await.unwrap();
}
