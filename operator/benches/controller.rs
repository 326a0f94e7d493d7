//! The FineTuneJob controller's speed and footprint on a real control plane with kwok nodes
//! (chain writes excluded: no ledger is configured). Prints:
//! - spec change → status: p50/p90/p99/max over 200 samples of the time from a gate opening
//!   on one FineTuneJob (its proposal approved) to its status leaving `Pending` (target p99
//!   ≤ 100 ms);
//! - N FineTuneJobs created (gates open) → all with a Job and a phase past `Pending`
//!   (target ≤ 60 s for 1,000);
//! - the RSS of the operator process (the real binary, run by this bench) with N objects of
//!   each kind — ModelProposals, Datanets, FineTuneJobs with their Jobs, ModelDeployments —
//!   in its caches (target ≤ 100 MiB);
//! - writes during a 5-minute idle window (`IDLE_SECONDS` overrides) once every job has
//!   settled: FineTuneJobs whose resourceVersion changed and events the operator created
//!   (target 0).
//!
//! Without a ledger the operator runs its FineTuneJob and ModelDeployment controllers (the
//! ModelProposal and Datanet controllers need a chain); this bench stands in for them by
//! writing those objects' status.
//!
//! `make bench-operator` (N=1000 by default; `FTJ_COUNT` overrides).
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use modelcommons_crds::datanet::Datanet;
use modelcommons_crds::deployment::ModelDeployment;
use modelcommons_crds::finetune::{FineTuneJob, FineTuneJobPhase};
use modelcommons_crds::proposal::ModelProposal;
use modelcommons_testbed::{ControlPlane, ControlPlaneOptions, install_crds, workspace_root};
use serde_json::json;

fn example(file: &str, ns: &str) -> serde_json::Value {
    let text =
        std::fs::read_to_string(workspace_root().join("examples/contract-review").join(file))
            .unwrap();
    let mut v: serde_json::Value = serde_yaml::from_str(&text).unwrap();
    v["metadata"]["namespace"] = json!(ns);
    v
}

fn ftj(ns: &str, name: &str, proposal: &str) -> FineTuneJob {
    let mut v = example("04-finetune.yaml", ns);
    v["metadata"]["name"] = json!(name);
    v["spec"]["proposalRef"]["name"] = json!(proposal);
    v["spec"]["baseModel"]["uri"] = json!("file:///models/base");
    v["spec"]["outputUri"] = json!(format!("file:///models/{name}"));
    v["spec"]["resources"] =
        json!({"workers": 1, "gpusPerWorker": 0, "cpu": "10m", "memory": "10Mi"});
    v["spec"]["runPolicy"] = json!({"backoffLimit": 1});
    serde_json::from_value(v).unwrap()
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

async fn status(
    api: &Api<impl kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug>,
    name: &str,
    kind: &str,
    status: serde_json::Value,
) {
    let body = json!({"apiVersion": "modelcommons.dev/v1alpha1", "kind": kind, "status": status});
    api.patch_status(
        name,
        &PatchParams::apply("bench-stand-in").force(),
        &Patch::Apply(&body),
    )
    .await
    .unwrap();
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("FTJ_COUNT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let plane = ControlPlane::start(ControlPlaneOptions::default())
        .await
        .unwrap();
    let client = plane.client().await.unwrap();
    install_crds(&client, &modelcommons_crds::all_crds())
        .await
        .unwrap();
    let ns = "bench";
    kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
        )
        .await
        .unwrap();
    let proposals: Api<ModelProposal> = Api::namespaced(client.clone(), ns);
    let datanets: Api<Datanet> = Api::namespaced(client.clone(), ns);
    let ftjs: Api<FineTuneJob> = Api::namespaced(client.clone(), ns);
    datanets
        .create(
            &PostParams::default(),
            &serde_json::from_value(example("03-datanet.yaml", ns)).unwrap(),
        )
        .await
        .unwrap();
    status(
        &datanets,
        "clause-review-data",
        "Datanet",
        json!({"phase": "Ready", "version": 1, "datasetUri": "file:///data/v1"}),
    )
    .await;
    // Jobs kwok completes wait in Evaluating for a result that never comes (no trainer runs):
    // a long grace keeps them there, settled, for the idle window.
    let mut operator = tokio::process::Command::new(env!("CARGO_BIN_EXE_modelcommons-operator"))
        .args([
            "run",
            "--no-leader-elect",
            "--namespace",
            ns,
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .args(["--result-grace-seconds", "3600"])
        .env("KUBECONFIG", plane.kubeconfig())
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = operator.id().unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_before = rss_mib(pid);

    // 1. Gate opens → status leaves Pending, one job at a time.
    // Enough samples that p99 is not simply the slowest one (LATENCY_SAMPLES overrides).
    let samples: usize = std::env::var("LATENCY_SAMPLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let mut latencies = Vec::new();
    for i in 0..samples {
        let p = format!("latency-{i}");
        let mut v = example("01-proposal.yaml", ns);
        v["metadata"]["name"] = json!(p);
        proposals
            .create(&PostParams::default(), &serde_json::from_value(v).unwrap())
            .await
            .unwrap();
        ftjs.create(&PostParams::default(), &ftj(ns, &p, &p))
            .await
            .unwrap();
        // Wait until it is gated (Pending), then open the gate and time the reaction.
        loop {
            let f = ftjs.get(&p).await.unwrap();
            if f.status.as_ref().and_then(|s| s.phase) == Some(FineTuneJobPhase::Pending) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The watch is established (its initial list done) before the clock starts: the
        // figure is the operator's reaction, not this bench's LIST and WATCH round trips.
        let mut watch = Box::pin(kube::runtime::watcher(
            ftjs.clone(),
            kube::runtime::watcher::Config::default().fields(&format!("metadata.name={p}")),
        ));
        while let Some(Ok(e)) = watch.next().await {
            if matches!(e, kube::runtime::watcher::Event::InitDone) {
                break;
            }
        }
        let t = Instant::now();
        status(
            &proposals,
            &p,
            "ModelProposal",
            json!({"phase": "Approved"}),
        )
        .await;
        while let Some(Ok(e)) = watch.next().await {
            if let kube::runtime::watcher::Event::Apply(f) = e
                && f.status
                    .as_ref()
                    .and_then(|s| s.phase)
                    .is_some_and(|ph| ph != FineTuneJobPhase::Pending)
            {
                break;
            }
        }
        latencies.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    latencies.sort_by(f64::total_cmp);

    // 2. N jobs with open gates → all with a Job and past Pending.
    let mut v = example("01-proposal.yaml", ns);
    v["metadata"]["name"] = json!("bulk");
    proposals
        .create(&PostParams::default(), &serde_json::from_value(v).unwrap())
        .await
        .unwrap();
    status(
        &proposals,
        "bulk",
        "ModelProposal",
        json!({"phase": "Approved"}),
    )
    .await;
    let t = Instant::now();
    let create = futures::stream::iter(0..n)
        .map(|i| {
            let ftjs = ftjs.clone();
            async move {
                ftjs.create(
                    &PostParams::default(),
                    &ftj(ns, &format!("bulk-{i}"), "bulk"),
                )
                .await
                .unwrap()
            }
        })
        .buffer_unordered(16)
        .count();
    create.await;
    let created = t.elapsed();
    loop {
        let list = ftjs.list(&ListParams::default().labels("")).await.unwrap();
        let done = list
            .items
            .iter()
            .filter(|f| {
                f.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| n.starts_with("bulk-"))
            })
            .filter(|f| {
                f.status.as_ref().is_some_and(|s| {
                    s.job_name.is_some()
                        && s.phase != Some(FineTuneJobPhase::Pending)
                        && s.phase.is_some()
                })
            })
            .count();
        if done == n {
            break;
        }
        if t.elapsed() > Duration::from_secs(600) {
            println!("only {done}/{n} past Pending after 600 s");
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let settled = t.elapsed();
    let rss = rss_mib(pid);

    // 3. Idle: once every job is Evaluating (kwok has run and completed every pod), count
    //    the FineTuneJobs whose resourceVersion changes in a window.
    let t_idle = Instant::now();
    loop {
        let list = ftjs.list(&ListParams::default()).await.unwrap();
        let waiting = list
            .items
            .iter()
            .filter(|f| {
                f.status.as_ref().and_then(|s| s.phase) != Some(FineTuneJobPhase::Evaluating)
            })
            .count();
        if waiting == 0 || t_idle.elapsed() > Duration::from_secs(300) {
            println!(
                "settled (all Evaluating) {:.0} s after the last job was past Pending; {waiting} not Evaluating",
                t_idle.elapsed().as_secs_f64()
            );
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let before: std::collections::BTreeMap<String, String> = ftjs
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|f| {
            (
                f.metadata.name.unwrap_or_default(),
                f.metadata.resource_version.unwrap_or_default(),
            )
        })
        .collect();
    let idle = Duration::from_secs(
        std::env::var("IDLE_SECONDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(300),
    );
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    let ours = |list: Vec<k8s_openapi::api::events::v1::Event>| {
        list.into_iter()
            .filter(|e| e.reporting_controller.as_deref() == Some("modelcommons-operator"))
            .count()
    };
    let events_before = ours(events.list(&ListParams::default()).await.unwrap().items);
    tokio::time::sleep(idle).await;
    let events_after = ours(events.list(&ListParams::default()).await.unwrap().items);
    let after = ftjs.list(&ListParams::default()).await.unwrap().items;
    let writes = after
        .iter()
        .filter(|f| {
            before.get(f.metadata.name.as_deref().unwrap_or_default())
                != f.metadata.resource_version.as_ref()
        })
        .count();

    // 4. N objects of every other kind the operator caches.
    let create_all = |kind: &'static str| {
        let client = client.clone();
        async move {
            futures::stream::iter(0..n)
                .map(|i| {
                    let client = client.clone();
                    async move {
                        let name = format!("many-{i}");
                        match kind {
                            "ModelProposal" => {
                                let mut v = example("01-proposal.yaml", ns);
                                v["metadata"]["name"] = json!(name);
                                Api::<ModelProposal>::namespaced(client, ns)
                                    .create(&PostParams::default(), &serde_json::from_value(v).unwrap())
                                    .await
                                    .map(|_| ())
                            }
                            "Datanet" => {
                                let mut v = example("03-datanet.yaml", ns);
                                v["metadata"]["name"] = json!(name);
                                Api::<Datanet>::namespaced(client, ns)
                                    .create(&PostParams::default(), &serde_json::from_value(v).unwrap())
                                    .await
                                    .map(|_| ())
                            }
                            _ => {
                                let v = json!({"apiVersion": "modelcommons.dev/v1alpha1", "kind": "ModelDeployment",
                                    "metadata": {"name": name, "namespace": ns},
                                    "spec": {"modelRef": {"fineTuneJob": format!("bulk-{i}")}, "replicas": 1,
                                        "resources": {"gpus": 0, "cpu": "10m", "memory": "10Mi"},
                                        "access": {"apiKeySecrets": ["keys"]}}});
                                Api::<ModelDeployment>::namespaced(client, ns)
                                    .create(&PostParams::default(), &serde_json::from_value(v).unwrap())
                                    .await
                                    .map(|_| ())
                            }
                        }
                        .unwrap();
                    }
                })
                .buffer_unordered(16)
                .count()
                .await
        }
    };
    create_all("ModelProposal").await;
    create_all("Datanet").await;
    create_all("ModelDeployment").await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let rss_all = rss_mib(pid);
    operator.kill().await.unwrap();

    println!(
        "FineTuneJob controller, real control plane (kube-apiserver 1.37.2 + kwok), no chain writes, {} build of the operator",
        if cfg!(debug_assertions) {
            "dev"
        } else {
            "release"
        }
    );
    println!(
        "gate opens -> status past Pending ({samples} samples): p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms (target p99 <= 100 ms)",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.9),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default()
    );
    println!(
        "{n} FineTuneJobs: created in {:.1} s; all with a Job and past Pending after {:.1} s (target <= 60 s)",
        created.as_secs_f64(),
        settled.as_secs_f64()
    );
    println!(
        "RSS of the operator process: {rss_before:.0} MiB idle and empty, {rss:.0} MiB with {} FineTuneJobs and their Jobs, {rss_all:.0} MiB with {n} more of each of ModelProposal, Datanet, ModelDeployment (target <= 100 MiB)",
        n + samples
    );
    println!(
        "during {} s idle with every job settled: {writes} FineTuneJobs written, {} events created (target 0)",
        idle.as_secs(),
        events_after.saturating_sub(events_before)
    );
}
