//! The ModelDeployment controller on the real control plane: a deployment of a model that is
//! not there waits `Pending` with the reason; one of an artifact gets a Deployment running
//! `modelcommons-trainer serve` (keys mounted from the Secret, limits as flags) and a Service,
//! turns `Ready` with its URL when kwok reports the replica ready; and this test, playing the
//! kubelet, runs the real server with the pod's args and gets a chat completion with a key.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Secret, Service};
use kube::api::{Api, Patch, PatchParams, PostParams};
use modelcommons_crds::deployment::{ModelDeployment, ModelDeploymentPhase};
use modelcommons_operator::controller::deployment::{self, KEYS_DIR};
use modelcommons_operator::controller::{Config, Context};
use modelcommons_testbed::{TestNamespace, cluster, install_crds, workspace_binary};
use serde_json::json;
use sha2::Digest;
use tokio::io::AsyncBufReadExt;

fn trainer_binary() -> PathBuf {
    workspace_binary("modelcommons-trainer")
}

fn md(ns: &str, name: &str, model_ref: serde_json::Value) -> ModelDeployment {
    serde_json::from_value(json!({
        "apiVersion": "modelcommons.dev/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"modelRef": model_ref, "replicas": 1,
            "resources": {"gpus": 0, "cpu": "1", "memory": "1Gi"},
            "access": {"apiKeySecrets": ["clause-review-api-keys"], "allowedConsumers": ["legal-ops-agent"]},
            "rateLimits": {"requestsPerMinute": 60, "tokensPerMinute": 40000}}
    }))
    .unwrap()
}

/// Merge-patches the ModelDeployment `clause-review`.
async fn merge(mds: &Api<ModelDeployment>, v: serde_json::Value) {
    mds.patch("clause-review", &PatchParams::default(), &Patch::Merge(&v))
        .await
        .unwrap();
}

async fn wait_phase(
    api: &Api<ModelDeployment>,
    name: &str,
    want: ModelDeploymentPhase,
) -> ModelDeployment {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let m = api.get(name).await.unwrap();
        if m.status.as_ref().and_then(|s| s.phase) == Some(want) {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: no {want:?}: {:?}",
            m.status
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_reason(api: &Api<ModelDeployment>, name: &str, reason: &str) -> ModelDeployment {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let m = api.get(name).await.unwrap();
        let r = m
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.reason.clone());
        if r.as_deref() == Some(reason) {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: no {reason}: {:?}",
            m.status
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_model_deployment_serves_through_the_real_server() {
    let cluster = cluster().await.unwrap();
    let client = cluster.client().await.unwrap();
    install_crds(&client, &modelcommons_crds::all_crds())
        .await
        .unwrap();
    let ns = TestNamespace::create(&client, "mdep").await.unwrap();
    let n = ns.name();
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    let out = std::process::Command::new(trainer_binary())
        .args(["init", "--out", model.to_str().unwrap(), "--seed", "7"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let digest: String =
        sha2::Sha256::digest(std::fs::read(model.join("model.safetensors")).unwrap())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
    let secret: Secret = serde_json::from_value(json!({"metadata": {"name": "clause-review-api-keys", "namespace": n},
        "stringData": {"legal-ops-agent": "mc-dev-legal-ops-7f3a9c", "procurement-bot": "mc-dev-procurement-2b8e41"}})).unwrap();
    Api::<Secret>::namespaced(client.clone(), n)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();

    let mds: Api<ModelDeployment> = Api::namespaced(client.clone(), n);
    mds.create(
        &PostParams::default(),
        &md(n, "waiting", json!({"fineTuneJob": "not-trained-yet"})),
    )
    .await
    .unwrap();
    mds.create(
        &PostParams::default(),
        &md(
            n,
            "clause-review",
            json!({"artifact": {"uri": format!("file://{}", model.display()), "sha256": digest}}),
        ),
    )
    .await
    .unwrap();
    let config = Config {
        namespace: Some(n.to_string()),
        recheck: Duration::from_secs(2),
        // The models are host directories of this test: the dev host directory.
        dev_host_dirs: vec![model.parent().unwrap().to_path_buf()],
        ..Config::default()
    };
    let controller = tokio::spawn(deployment::run(Context::new(client.clone(), config)));

    let w = wait_phase(&mds, "waiting", ModelDeploymentPhase::Pending).await;
    assert_eq!(w.status.unwrap().conditions[0].reason, "ModelNotFound");
    let m = wait_phase(&mds, "clause-review", ModelDeploymentPhase::Ready).await;
    let st = m.status.unwrap();
    assert_eq!(
        st.url.as_deref(),
        Some(format!("http://clause-review.{n}.svc/v1").as_str())
    );
    assert_eq!(st.ready_replicas.as_deref(), Some("1/1"));
    assert_eq!(st.latest_revision.as_deref(), Some(digest.as_str()));
    assert!(
        Api::<Service>::namespaced(client.clone(), n)
            .get_opt("clause-review")
            .await
            .unwrap()
            .is_some()
    );
    let dep = Api::<Deployment>::namespaced(client.clone(), n)
        .get("clause-review")
        .await
        .unwrap();
    let pod = dep.spec.unwrap().template.spec.unwrap();
    // What PodSecurity `restricted` asks of the pod, and no API token.
    assert_eq!(pod.automount_service_account_token, Some(false));
    let psc = pod.security_context.clone().unwrap();
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(psc.seccomp_profile.unwrap().type_, "RuntimeDefault");
    let c = pod.containers[0].clone();
    let sc = c.security_context.clone().unwrap();
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.capabilities.unwrap().drop, Some(vec!["ALL".to_string()]));
    let args = c.args.unwrap();
    assert!(
        args.join(" ").contains(
            "--allowed-consumers legal-ops-agent --requests-per-minute 60 --tokens-per-minute 40000"
        ),
        "{args:?}"
    );

    // Play the kubelet: the Secret's keys as the mounted files, the pod's args, a local port.
    let keys = dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::write(keys.join("legal-ops-agent"), "mc-dev-legal-ops-7f3a9c").unwrap();
    std::fs::write(keys.join("procurement-bot"), "mc-dev-procurement-2b8e41").unwrap();
    let args: Vec<String> = args
        .into_iter()
        .map(|a| {
            if a == KEYS_DIR {
                keys.display().to_string()
            } else if a.starts_with("0.0.0.0:") {
                "127.0.0.1:0".into()
            } else {
                a
            }
        })
        .collect();
    // The server refuses weights other than the recorded digest.
    let mut wrong: Vec<String> = args.clone();
    let at = wrong.iter().position(|a| a == "--expect-sha256").unwrap() + 1;
    wrong[at] = "0".repeat(64);
    let refused = tokio::process::Command::new(trainer_binary())
        .args(&wrong)
        .output()
        .await
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("refusing to serve"));
    let mut server = tokio::process::Command::new(trainer_binary())
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(server.stdout.take().unwrap()).lines();
    let addr = loop {
        let l = lines.next_line().await.unwrap().expect("the server exited");
        if let Some(a) = l.strip_prefix("listening on ") {
            break a.trim().to_string();
        }
    };
    let http = reqwest::Client::new();
    let ask = |key: &'static str| {
        http.post(format!("http://{addr}/v1/chat/completions"))
            .bearer_auth(key)
            .json(
                &json!({"model": "clause-review", "max_tokens": 8, "temperature": 0,
                "messages": [{"role": "user", "content": "Is an unlimited indemnity risky?"}]}),
            )
            .send()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let reply = loop {
        let r = ask("mc-dev-legal-ops-7f3a9c").await.unwrap();
        if r.status() != 503 {
            break r;
        }
        assert!(Instant::now() < deadline, "the server never became ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(reply.status(), 200);
    let body: serde_json::Value = reply.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "clause-review");
    assert!(body["usage"]["completion_tokens"].as_u64().unwrap() >= 1);
    assert_eq!(ask("wrong-key").await.unwrap().status(), 401);
    assert_eq!(
        ask("mc-dev-procurement-2b8e41").await.unwrap().status(),
        403,
        "not an allowed consumer"
    );
    server.kill().await.unwrap();

    // A new revision rolls out as a canary beside the stable one (traffic by replica ratio),
    // then is promoted.
    let model2 = dir.path().join("model2");
    let out = std::process::Command::new(trainer_binary())
        .args(["init", "--out", model2.to_str().unwrap(), "--seed", "8"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let digest2: String =
        sha2::Sha256::digest(std::fs::read(model2.join("model.safetensors")).unwrap())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
    assert_ne!(digest, digest2);
    merge(&mds, json!({"spec": {"replicas": 4, "canary": {"trafficPercent": 25},
        "modelRef": {"artifact": {"uri": format!("file://{}", model2.display()), "sha256": digest2}}}}))
    .await;
    let deployments = Api::<Deployment>::namespaced(client.clone(), n);
    let served = |d: &Deployment| {
        (
            d.metadata.annotations.as_ref().unwrap()["modelcommons.dev/model-digest"].clone(),
            d.spec.as_ref().unwrap().replicas,
        )
    };
    let m = wait_reason(&mds, "clause-review", "CanaryServing").await;
    let st = m.status.unwrap();
    assert_eq!(st.latest_revision.as_deref(), Some(digest2.as_str()));
    assert_eq!(st.previous_revision.as_deref(), Some(digest.as_str()));
    assert_eq!(st.ready_replicas.as_deref(), Some("4/4"));
    assert_eq!(
        served(&deployments.get("clause-review").await.unwrap()),
        (digest.clone(), Some(3))
    );
    assert_eq!(
        served(&deployments.get("clause-review-canary").await.unwrap()),
        (digest2.clone(), Some(1))
    );
    merge(&mds, json!({"spec": {"canary": {"trafficPercent": 100}}})).await;
    wait_reason(&mds, "clause-review", "Serving").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while deployments
        .get_opt("clause-review-canary")
        .await
        .unwrap()
        .is_some()
    {
        assert!(
            Instant::now() < deadline,
            "the canary was not removed on promotion"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        served(&deployments.get("clause-review").await.unwrap()),
        (digest2.clone(), Some(4))
    );
    let st = mds.get("clause-review").await.unwrap().status.unwrap();
    assert_eq!(
        st.previous_revision.as_deref(),
        Some(digest.as_str()),
        "the promoted-over revision stays known"
    );

    // Autoscaling: an HPA on the servers' in-flight requests owns the replica count.
    merge(
        &mds,
        json!({"spec": {"replicas": null, "canary": null,
        "autoscaling": {"minReplicas": 1, "maxReplicas": 3, "targetConcurrency": 4}}}),
    )
    .await;
    let hpas = Api::<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler>::namespaced(
        client.clone(),
        n,
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let hpa = loop {
        if let Some(h) = hpas.get_opt("clause-review").await.unwrap() {
            break h;
        }
        assert!(Instant::now() < deadline, "no HorizontalPodAutoscaler");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let spec = hpa.spec.unwrap();
    assert_eq!((spec.min_replicas, spec.max_replicas), (Some(1), 3));
    assert_eq!(spec.scale_target_ref.name, "clause-review");
    let metric = &spec.metrics.unwrap()[0];
    assert_eq!(
        metric.pods.as_ref().unwrap().metric.name,
        "modelcommons_serve_http_requests_in_flight"
    );

    // Settled: nothing is written again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rvs = |d: &Deployment, h: &k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler| {
        (
            d.metadata.resource_version.clone(),
            h.metadata.resource_version.clone(),
        )
    };
    let before = rvs(
        &deployments.get("clause-review").await.unwrap(),
        &hpas.get("clause-review").await.unwrap(),
    );
    let md_rv = mds
        .get("clause-review")
        .await
        .unwrap()
        .metadata
        .resource_version;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        rvs(
            &deployments.get("clause-review").await.unwrap(),
            &hpas.get("clause-review").await.unwrap()
        ),
        before
    );
    assert_eq!(
        mds.get("clause-review")
            .await
            .unwrap()
            .metadata
            .resource_version,
        md_rv
    );
    controller.abort();
    ns.delete().await.unwrap();
}

/// `spec.route`: without the Gateway API the `Routed` condition says what to install and the
/// Service serves; with its CRDs (the real ones, from the Go module proxy) an HTTPRoute attaches
/// the endpoint to the Gateway, a canary splits traffic by route weights between one Service per
/// revision, a Gateway's refusal shows in the condition, promotion leaves one backend and
/// removing `spec.route` removes the route. On its own control plane: it installs
/// cluster-scoped CRDs.
#[tokio::test]
async fn a_canary_splits_traffic_by_gateway_api_route_weights() {
    use kube::api::DynamicObject;
    let plane = modelcommons_testbed::ControlPlane::start(
        modelcommons_testbed::ControlPlaneOptions::default(),
    )
    .await
    .unwrap();
    let client = plane.client().await.unwrap();
    install_crds(&client, &modelcommons_crds::all_crds())
        .await
        .unwrap();
    let ns = TestNamespace::create(&client, "route").await.unwrap();
    let n = ns.name();
    let (d1, d2) = ("1".repeat(64), "2".repeat(64));
    let mut m = md(
        n,
        "clause-review",
        json!({"artifact": {"uri": "file:///models/v1", "sha256": d1}}),
    );
    m.spec.route = Some(
        serde_json::from_value(
            json!({"parentRefs": [{"name": "public", "namespace": "gateways"}],
            "hostnames": ["clause-review.example.org"]}),
        )
        .unwrap(),
    );
    let mds: Api<ModelDeployment> = Api::namespaced(client.clone(), n);
    mds.create(&PostParams::default(), &m).await.unwrap();
    let config = Config {
        namespace: Some(n.to_string()),
        recheck: Duration::from_secs(1),
        dev_host_dirs: vec!["/models".into()],
        ..Config::default()
    };
    let controller = tokio::spawn(deployment::run(Context::new(client.clone(), config)));
    let routed = |m: &ModelDeployment| {
        m.status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Routed").cloned())
    };
    let wait_routed = |reason: &'static str| {
        let mds = mds.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let m = mds.get("clause-review").await.unwrap();
                if let Some(c) = routed(&m).filter(|c| c.reason == reason) {
                    return (m, c);
                }
                assert!(
                    Instant::now() < deadline,
                    "no Routed {reason}: {:?}",
                    m.status
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };

    // 1. No Gateway API: said, and the Service serves.
    let (_, c) = wait_routed("GatewayAPIMissing").await;
    assert_eq!(c.status, "False");
    assert!(c.message.contains("install them"), "{}", c.message);
    wait_phase(&mds, "clause-review", ModelDeploymentPhase::Ready).await;

    // 2. The Gateway API's CRDs installed: the route appears by itself, one backend.
    let crds = PathBuf::from(std::env::var("MODELCOMMONS_GATEWAY_API_CRDS").expect(
        "MODELCOMMONS_GATEWAY_API_CRDS: run through `make test` or eval \"$(hack/deps.sh)\"",
    ));
    let out = plane
        .kubectl()
        .unwrap()
        .args(["apply", "--server-side", "-f"])
        .arg(crds.join("gateway.networking.k8s.io_httproutes.yaml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, c) = wait_routed("RouteApplied").await;
    assert_eq!(c.status, "True");
    let gvk = kube::api::GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute");
    let routes: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        n,
        &kube::api::ApiResource::from_gvk_with_plural(&gvk, "httproutes"),
    );
    let backends = |r: &DynamicObject| -> Vec<(String, u64)> {
        r.data["spec"]["rules"][0]["backendRefs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                (
                    b["name"].as_str().unwrap().to_string(),
                    b["weight"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let r = routes.get("clause-review").await.unwrap();
    assert_eq!(backends(&r), [("clause-review".to_string(), 100)]);
    assert_eq!(r.data["spec"]["parentRefs"][0]["name"], "public");
    assert_eq!(r.data["spec"]["parentRefs"][0]["namespace"], "gateways");
    assert_eq!(r.data["spec"]["hostnames"][0], "clause-review.example.org");

    // 3. A canary at 20%: weights 80/20 between one Service per revision.
    merge(
        &mds,
        json!({"spec": {"replicas": 2, "canary": {"trafficPercent": 20},
        "modelRef": {"artifact": {"uri": "file:///models/v2", "sha256": d2}}}}),
    )
    .await;
    let m = wait_reason(&mds, "clause-review", "CanaryServing").await;
    let ready = m
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert!(
        ready.message.contains("HTTPRoute weights"),
        "{}",
        ready.message
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = routes.get("clause-review").await.unwrap();
        if backends(&r).len() == 2 {
            assert_eq!(
                backends(&r),
                [
                    ("clause-review-stable".to_string(), 80),
                    ("clause-review-canary".to_string(), 20)
                ]
            );
            break;
        }
        assert!(Instant::now() < deadline, "the route never split");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let services = Api::<Service>::namespaced(client.clone(), n);
    let selector =
        |s: Service| s.spec.unwrap().selector.unwrap()["modelcommons.dev/revision"].clone();
    assert_eq!(
        selector(services.get("clause-review-stable").await.unwrap()),
        "1".repeat(12)
    );
    assert_eq!(
        selector(services.get("clause-review-canary").await.unwrap()),
        "2".repeat(12)
    );

    // 4. A Gateway refusing the route shows in the condition.
    routes
        .patch_status(
            "clause-review",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"parents": [{
                "parentRef": {"name": "public", "namespace": "gateways"},
                "controllerName": "example.org/gateway",
                "conditions": [{"type": "Accepted", "status": "False", "reason": "NotAllowedByListeners",
                    "message": "no listener allows routes from this namespace",
                    "lastTransitionTime": "2026-11-30T00:00:00Z", "observedGeneration": 1}]}]}})),
        )
        .await
        .unwrap();
    // The operator looks at the route's status when it reconciles (any change to the
    // ModelDeployment, or its periodic look): touch it.
    merge(
        &mds,
        json!({"metadata": {"annotations": {"example.org/touched": "1"}}}),
    )
    .await;
    let (_, c) = wait_routed("RouteNotAccepted").await;
    assert_eq!(c.status, "False");
    assert!(
        c.message.contains("no listener allows routes"),
        "{}",
        c.message
    );

    // 5. Promotion: one backend again, the per-revision Services gone.
    merge(&mds, json!({"spec": {"canary": {"trafficPercent": 100}}})).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = routes.get("clause-review").await.unwrap();
        let gone = services
            .get_opt("clause-review-canary")
            .await
            .unwrap()
            .is_none()
            && services
                .get_opt("clause-review-stable")
                .await
                .unwrap()
                .is_none();
        if backends(&r) == [("clause-review".to_string(), 100)] && gone {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not promoted: {:?}",
            backends(&r)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // 6. Without spec.route the route goes, and so does the condition.
    merge(&mds, json!({"spec": {"route": null}})).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let m = mds.get("clause-review").await.unwrap();
        if routed(&m).is_none() && routes.get_opt("clause-review").await.unwrap().is_none() {
            break;
        }
        assert!(Instant::now() < deadline, "the route stayed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    controller.abort();
}
