//! Installing it: the Helm chart lints, renders manifests the real API server accepts
//! (server-side dry run), installs into the control plane, and refuses bad values by its
//! schema; the kustomize base and overlays render and are accepted too. helm is built from the
//! Go module proxy by `hack/helm.sh` (`MODELCOMMONS_HELM`).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;
use modelcommons_testbed::{Cluster, TestNamespace, cluster, install_crds, workspace_root};

fn helm() -> PathBuf {
    std::env::var_os("MODELCOMMONS_HELM")
        .map(PathBuf::from)
        .or_else(|| {
            let out = Command::new(workspace_root().join("hack/helm.sh"))
                .output()
                .ok()?;
            Some(PathBuf::from(String::from_utf8(out.stdout).ok()?.trim()))
        })
        .expect("helm: set MODELCOMMONS_HELM or let hack/helm.sh build it")
}

fn chart() -> PathBuf {
    workspace_root().join("charts/modelcommons")
}

/// Runs `cmd`, failing the test with its output unless it succeeds; returns stdout.
fn ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Server-side dry run of `manifests` against the real API server.
fn dry_run(cluster: &Cluster, manifests: &str) {
    let mut child = cluster
        .kubectl()
        .unwrap()
        .args([
            "apply",
            "--server-side",
            "--force-conflicts",
            "--dry-run=server",
        ])
        .args(["--field-manager", "install-test", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(manifests.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the API server refused the manifests: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn the_chart_lints_renders_installs_and_refuses_bad_values() {
    let cluster = cluster().await.unwrap();
    let client = cluster.client().await.unwrap();
    install_crds(&client, &modelcommons_crds::all_crds())
        .await
        .unwrap();
    let ns = TestNamespace::create(&client, "helm").await.unwrap();
    let n = ns.name();
    let helm = helm();

    ok(Command::new(&helm).arg("lint").arg(chart()).arg("--strict"));
    ok(Command::new(&helm)
        .arg("lint")
        .arg(chart())
        .args(["--set", "devChain.enabled=true"]));

    // What `helm template` makes is accepted by the API server, with and without a chain.
    let watch = format!("watchNamespaces[0]={n}");
    for values in [
        vec![],
        vec!["--set", "devChain.enabled=true"],
        vec!["--set", watch.as_str(), "--set", "replicaCount=1"],
        vec![
            "--set",
            "ledger.rpcUrl=https://rpc.example.org",
            "--set",
            "ledger.keySecret.name=k",
            "--set",
            "ledger.addressesConfigMap.name=a",
        ],
    ] {
        let rendered = ok(Command::new(&helm)
            .args(["template", &format!("mc-{n}"), "--namespace", n])
            .arg(chart())
            .args(&values));
        assert!(rendered.contains("kind: Deployment"));
        dry_run(&cluster, &rendered);
    }

    // Bad values fail at install, by the schema, with the field named.
    for (set, field) in [
        ("replicaCount=0", "replicaCount"),
        ("artifactStore=s3://bucket", "artifactStore"),
        ("ledger.rpcUrl=http://chain:8545", "keySecret"),
        ("governance.defaultQuorumBps=20000", "defaultQuorumBps"),
        ("unknownValue=1", "unknownValue"),
    ] {
        let out = Command::new(&helm)
            .args(["install", &format!("bad-{n}"), "--namespace", n])
            .arg(chart())
            .args(["--set", set, "--kubeconfig"])
            .arg(cluster.kubeconfig())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{set} was accepted");
        assert!(err.contains(field), "{set}: {err}");
    }

    // A real install: the operator Deployment with two replicas, restricted pods, and kwok
    // running them. The operator mounts the artifact store's claim (it reads curation
    // results back to verify them), which the platform provides: here a static volume.
    let pv_name = format!("artifacts-{n}");
    let pv: k8s_openapi::api::core::v1::PersistentVolume =
        serde_json::from_value(serde_json::json!({
        "metadata": {"name": pv_name},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany"],
            "storageClassName": "", "persistentVolumeReclaimPolicy": "Retain",
            "hostPath": {"path": format!("/tmp/{pv_name}")},
            "claimRef": {"namespace": n, "name": "modelcommons-artifacts"}}}))
        .unwrap();
    let pvs: Api<k8s_openapi::api::core::v1::PersistentVolume> = Api::all(client.clone());
    pvs.create(&Default::default(), &pv).await.unwrap();
    let pvc: k8s_openapi::api::core::v1::PersistentVolumeClaim =
        serde_json::from_value(serde_json::json!({
        "metadata": {"name": "modelcommons-artifacts", "namespace": n},
        "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "", "volumeName": pv_name,
            "resources": {"requests": {"storage": "1Gi"}}}}))
        .unwrap();
    Api::<k8s_openapi::api::core::v1::PersistentVolumeClaim>::namespaced(client.clone(), n)
        .create(&Default::default(), &pvc)
        .await
        .unwrap();
    ok(Command::new(&helm)
        .args([
            "install",
            &format!("mc-{n}"),
            "--namespace",
            n,
            "--wait=false",
        ])
        .arg(chart())
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig()));
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), n);
    let name = format!("mc-{n}-modelcommons");
    let deadline = Instant::now() + Duration::from_secs(60);
    let d = loop {
        let d = deployments.get(&name).await.unwrap();
        if d.status
            .as_ref()
            .and_then(|s| s.available_replicas)
            .unwrap_or(0)
            >= 2
        {
            break d;
        }
        assert!(
            Instant::now() < deadline,
            "the operator never became available: {:?}",
            d.status
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let pod = d.spec.unwrap().template.spec.unwrap();
    let c = &pod.containers[0];
    assert!(
        c.volume_mounts.clone().unwrap_or_default().iter().any(|m| m.mount_path
            == "/mnt/pvc/modelcommons-artifacts"
            && m.read_only == Some(true)),
        "the operator reads the artifact store, read-only"
    );
    let sc = c.security_context.clone().unwrap();
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.capabilities.unwrap().drop, Some(vec!["ALL".to_string()]));
    ok(Command::new(&helm)
        .args([
            "uninstall",
            &format!("mc-{n}"),
            "--namespace",
            n,
            "--kubeconfig",
        ])
        .arg(cluster.kubeconfig()));
    ns.delete().await.unwrap();
    let _ = pvs.delete(&pv_name, &Default::default()).await;
}

#[tokio::test]
async fn the_kustomize_base_and_overlays_render_and_are_accepted() {
    let cluster = cluster().await.unwrap();
    let client = cluster.client().await.unwrap();
    install_crds(&client, &modelcommons_crds::all_crds())
        .await
        .unwrap();
    // The namespace the overlays install into must exist for a dry run of what goes in it.
    let _ = cluster
        .kubectl()
        .unwrap()
        .args(["create", "namespace", "modelcommons-system"])
        .output();
    for overlay in ["base", "overlays/dev", "overlays/production"] {
        let rendered = ok(cluster
            .kubectl()
            .unwrap()
            .arg("kustomize")
            .arg(workspace_root().join("deploy").join(overlay)));
        assert!(
            rendered.contains("kind: CustomResourceDefinition"),
            "{overlay}"
        );
        assert!(rendered.contains("kind: Deployment"), "{overlay}");
        dry_run(&cluster, &rendered);
    }
    let dev = ok(cluster
        .kubectl()
        .unwrap()
        .arg("kustomize")
        .arg(workspace_root().join("deploy/overlays/dev")));
    assert!(
        dev.contains("--ledger-rpc-url=http://modelcommons-anvil.modelcommons-system.svc:8545")
    );
    for gitops in ["argocd-application.yaml", "flux-kustomization.yaml"] {
        let text =
            std::fs::read_to_string(workspace_root().join("deploy/gitops").join(gitops)).unwrap();
        assert!(text.contains("deploy/overlays/production"), "{gitops}");
    }
}
