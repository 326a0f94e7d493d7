//! The control plane is real: Jobs run on kwok nodes, garbage collection follows owner
//! references, and several control planes run side by side.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::Resource;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use modelcommons_testbed::{ControlPlane, ControlPlaneOptions, FakeNode, TestNamespace, cluster};
use serde_json::json;

async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn job_pods_are_scheduled_on_kwok_nodes_and_the_job_completes() {
    let cluster = cluster().await.unwrap();
    let client = cluster.client().await.unwrap();
    let ns = TestNamespace::create(&client, "job").await.unwrap();
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns.name());
    let job: Job = serde_json::from_value(json!({
        "metadata": { "name": "train" },
        "spec": {
            "completions": 2, "parallelism": 2, "completionMode": "Indexed", "backoffLimit": 0,
            "template": { "spec": {
                "restartPolicy": "Never",
                "containers": [{
                    "name": "trainer", "image": "modelcommons/trainer:dev",
                    "resources": { "limits": { "nvidia.com/gpu": "1" } }
                }]
            }}
        }
    }))
    .unwrap();
    jobs.create(&PostParams::default(), &job).await.unwrap();

    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    let nodes = eventually("both pods scheduled", Duration::from_secs(60), || {
        let pods = pods.clone();
        async move {
            let list = pods
                .list(&ListParams::default().labels("job-name=train"))
                .await
                .ok()?;
            let nodes: Vec<String> = list
                .items
                .iter()
                .filter_map(|p| p.spec.as_ref()?.node_name.clone())
                .collect();
            (nodes.len() == 2).then_some(nodes)
        }
    })
    .await;
    assert!(
        nodes.iter().all(|n| n.starts_with("kwok-gpu-")),
        "scheduled onto {nodes:?}"
    );

    eventually("the Job to be Complete", Duration::from_secs(90), || {
        let jobs = jobs.clone();
        async move {
            let j = jobs.get("train").await.ok()?;
            let conds = j.status?.conditions?;
            conds
                .iter()
                .any(|c| c.type_ == "Complete" && c.status == "True")
                .then_some(())
        }
    })
    .await;
    let status = jobs.get("train").await.unwrap().status.unwrap();
    assert_eq!(status.succeeded, Some(2));
    assert_eq!(status.failed.unwrap_or(0), 0);
    ns.delete().await.unwrap();
}

#[tokio::test]
async fn deleting_an_owner_garbage_collects_its_dependents() {
    let cluster = cluster().await.unwrap();
    let client = cluster.client().await.unwrap();
    let ns = TestNamespace::create(&client, "gc").await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns.name());
    let owner: ConfigMap = serde_json::from_value(
        json!({ "metadata": { "name": "owner" }, "data": { "role": "owner" } }),
    )
    .unwrap();
    let owner = cms.create(&PostParams::default(), &owner).await.unwrap();
    let mut child: ConfigMap = serde_json::from_value(
        json!({ "metadata": { "name": "child" }, "data": { "role": "child" } }),
    )
    .unwrap();
    child.metadata.owner_references = Some(vec![owner.controller_owner_ref(&()).unwrap()]);
    cms.create(&PostParams::default(), &child).await.unwrap();
    let bystander: ConfigMap =
        serde_json::from_value(json!({ "metadata": { "name": "bystander" } })).unwrap();
    cms.create(&PostParams::default(), &bystander)
        .await
        .unwrap();

    cms.delete("owner", &DeleteParams::background())
        .await
        .unwrap();
    eventually(
        "the dependent to be garbage-collected",
        Duration::from_secs(60),
        || {
            let cms = cms.clone();
            async move { cms.get_opt("child").await.ok()?.is_none().then_some(()) }
        },
    )
    .await;
    assert!(
        cms.get_opt("bystander").await.unwrap().is_some(),
        "an object without the owner reference stays"
    );
    ns.delete().await.unwrap();
}

#[tokio::test]
async fn two_control_planes_run_side_by_side_and_clean_up_after_themselves() {
    let one_node = |name: &str| ControlPlaneOptions {
        nodes: vec![FakeNode::gpu(name, 1)],
        ..Default::default()
    };
    // One keeps its state in a relative directory (as `make cluster-up` does): its kubeconfig
    // must still work from anywhere.
    let relative =
        std::path::PathBuf::from(format!("target/testbed-relative-{}", std::process::id()));
    let a_opts = ControlPlaneOptions {
        dir: Some(relative),
        ..one_node("kwok-gpu-a")
    };
    let (a, b) = tokio::join!(
        ControlPlane::start(a_opts),
        ControlPlane::start(one_node("kwok-gpu-b"))
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_ne!(a.server(), b.server());

    // Each sees only its own nodes: separate etcds, separate API servers.
    for (cp, want) in [(&a, "kwok-gpu-a"), (&b, "kwok-gpu-b")] {
        let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(cp.client().await.unwrap());
        let names: Vec<String> = nodes
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|n| n.metadata.name)
            .collect();
        assert_eq!(names, vec![want.to_string()]);
    }

    let dir = a.dir().unwrap().to_path_buf();
    let pids: Vec<u32> = a.pids().into_iter().map(|(_, p)| p).collect();
    assert!(dir.join("kubeconfig").is_file());
    a.stop();
    assert!(!dir.exists(), "the state directory is removed on stop");
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} still runs after stop"
        );
    }
    // The other one is unaffected.
    let v = b.client().await.unwrap().apiserver_version().await.unwrap();
    assert_eq!(v.git_version, "v1.37.2");
}
