//! The FineTuneJob controller on the real control plane: gates hold a job `Pending` with the
//! reason and release it by themselves; the trainer Job, its ConfigMap and labels are created
//! with owner references; kwok runs the pod while this test plays the kubelet by running the
//! real trainer binary with the pod's args and env; once it reports, the operator evaluates
//! the output in its trusted namespace (this test plays that pod too) and judges the held-out
//! metrics against the proposal's rubric tightened by the job's targets → `Succeeded` or
//! `TargetsMissed`. A job with a Kueue queue waits suspended in `Queued`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use modelcommons_crds::datanet::Datanet;
use modelcommons_crds::finetune::{FineTuneJob, FineTuneJobPhase};
use modelcommons_crds::proposal::ModelProposal;
use modelcommons_operator::controller::{Config, Context, finetune};
use modelcommons_testbed::{
    TestNamespace, cluster, install_crds, workspace_binary, workspace_root,
};
use serde_json::json;

const STAND_IN: &str = "modelcommons.dev-test-stand-in";

fn example<T: serde::de::DeserializeOwned>(file: &str, ns: &str) -> T {
    let text =
        std::fs::read_to_string(workspace_root().join("examples/contract-review").join(file))
            .unwrap();
    let mut v: serde_json::Value = serde_yaml::from_str(&text).unwrap();
    v["metadata"]["namespace"] = json!(ns);
    serde_json::from_value(v).unwrap()
}

fn trainer_binary() -> PathBuf {
    workspace_binary("modelcommons-trainer")
}

async fn wait_for(
    api: &Api<FineTuneJob>,
    name: &str,
    what: &str,
    ok: impl Fn(&FineTuneJob) -> bool,
) -> FineTuneJob {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(f) = api.get_opt(name).await.unwrap()
            && ok(&f)
        {
            return f;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: timed out waiting for {what}: {:?}",
            api.get(name).await.unwrap().status
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The Job `name`, waited for: a job's status is written while its children are applied, so
/// the Job may follow it by moments.
async fn job_named(jobs: &Api<Job>, name: &str) -> Job {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(j) = jobs.get_opt(name).await.unwrap() {
            return j;
        }
        assert!(Instant::now() < deadline, "no Job {name}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn reason(f: &FineTuneJob, type_: &str) -> Option<String> {
    f.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.reason.clone())
}

fn phase(f: &FineTuneJob) -> Option<FineTuneJobPhase> {
    f.status.as_ref().and_then(|s| s.phase)
}

/// What the proposal and Datanet controllers would write (they are not part of this test).
async fn set_status<K>(api: &Api<K>, name: &str, kind: &str, status: serde_json::Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let body = json!({"apiVersion": "modelcommons.dev/v1alpha1", "kind": kind, "status": status});
    api.patch_status(
        name,
        &PatchParams::apply(STAND_IN).force(),
        &Patch::Apply(&body),
    )
    .await
    .unwrap();
}

fn job_spec(
    ns: &str,
    name: &str,
    dir: &std::path::Path,
    targets: serde_json::Value,
    queue: Option<&str>,
) -> FineTuneJob {
    let mut f: serde_json::Value =
        serde_json::to_value(example::<FineTuneJob>("04-finetune.yaml", ns)).unwrap();
    f["metadata"]["name"] = json!(name);
    f["spec"]["baseModel"]["uri"] = json!(format!("file://{}/base", dir.display()));
    f["spec"]["outputUri"] = json!(format!("file://{}/out-{name}", dir.display()));
    f["spec"]["resources"] = json!({"workers": 1, "gpusPerWorker": 1, "cpu": "1", "memory": "1Gi"});
    f["spec"]["hyperparameters"] = json!({"epochs": 1, "maxSteps": 12, "learningRate": "0.01", "batchSize": 8,
        "gradientAccumulationSteps": 1, "warmupSteps": 2, "maxSeqLen": 128, "seed": 1});
    f["spec"]["checkpointing"] = json!({"everySteps": 5, "keep": 1});
    f["spec"]["targets"] = targets;
    f["spec"]["runPolicy"] = match queue {
        Some(q) => json!({"backoffLimit": 1, "activeDeadlineSeconds": 600, "queueName": q}),
        None => json!({"backoffLimit": 1, "activeDeadlineSeconds": 600}),
    };
    serde_json::from_value(f).unwrap()
}

/// Plays the kubelet for the trainer pod: runs the real binary with the pod's args and env.
async fn run_trainer_pod(job: &Job, kubeconfig: &std::path::Path) {
    let c = &job
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0];
    let mut cmd = tokio::process::Command::new(trainer_binary());
    cmd.args(c.args.clone().unwrap())
        .env("KUBECONFIG", kubeconfig)
        .env("MODELCOMMONS_REPORT_INTERVAL_SECONDS", "0");
    for e in c.env.clone().unwrap_or_default() {
        if let Some(v) = e.value {
            cmd.env(e.name, v);
        }
    }
    let out = cmd.output().await.unwrap();
    assert!(
        out.status.success(),
        "trainer: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn gates_children_and_phases_of_a_finetune_job() {
    let cluster = cluster().await.unwrap();
    let client = cluster.client().await.unwrap();
    install_crds(&client, &modelcommons_crds::all_crds())
        .await
        .unwrap();
    let ns = TestNamespace::create(&client, "ftj").await.unwrap();
    let n = ns.name();
    let dir = tempfile::tempdir().unwrap();
    init_base(&dir.path().join("base"));
    // A curated dataset's layout: the trainer's train/ and the held-out records beside it.
    std::fs::create_dir_all(dir.path().join("data/train")).unwrap();
    let rows: Vec<String> = (0..48)
        .map(|i| json!({"prompt": format!("Clause {i}: the supplier shall {}", if i % 2 == 0 { "indemnify" } else { "notify" }),
                        "completion": if i % 2 == 0 { " high" } else { " low" }}).to_string())
        .collect();
    std::fs::write(
        dir.path().join("data/train/train.jsonl"),
        rows[8..].join("\n"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("data/train/eval.jsonl"),
        rows[..4].join("\n"),
    )
    .unwrap();
    std::fs::write(dir.path().join("data/holdout.jsonl"), rows[4..8].join("\n")).unwrap();
    crate::common::lifecycle::trusted(&client).await;

    let proposals: Api<ModelProposal> = Api::namespaced(client.clone(), n);
    let datanets: Api<Datanet> = Api::namespaced(client.clone(), n);
    let ftjs: Api<FineTuneJob> = Api::namespaced(client.clone(), n);
    let jobs: Api<Job> = Api::namespaced(client.clone(), n);
    // A rubric 12 steps meet (`loss <= 100`): "easy" adds nothing to it, "hard" tightens it
    // (`loss <= 0.0001`) and misses.
    let mut proposal: ModelProposal = example("01-proposal.yaml", n);
    proposal.spec.mandate.evaluation.metrics = serde_json::from_value(
        json!([{"name": "loss", "direction": "Minimize", "threshold": "100"}]),
    )
    .unwrap();
    proposals
        .create(&PostParams::default(), &proposal)
        .await
        .unwrap();
    datanets
        .create(&PostParams::default(), &example("03-datanet.yaml", n))
        .await
        .unwrap();
    let easy = json!([{"name": "loss", "direction": "Minimize", "threshold": "1000"}]);
    let hard = json!([{"name": "loss", "direction": "Minimize", "threshold": "0.0001"}]);
    for (name, targets, queue) in [
        ("easy", easy, None),
        ("hard", hard, None),
        ("queued", json!([]), Some("legal-team")),
    ] {
        ftjs.create(
            &PostParams::default(),
            &job_spec(n, name, dir.path(), targets, queue),
        )
        .await
        .unwrap();
    }

    let config = Config {
        namespace: Some(n.to_string()),
        recheck: Duration::from_secs(2),
        result_grace: Duration::from_secs(120),
        dev_host_dirs: vec![dir.path().to_path_buf()],
        trusted_namespace: crate::common::lifecycle::TRUSTED.into(),
        ..Config::default()
    };
    let controller = tokio::spawn(finetune::run(Context::new(client.clone(), config)));

    // Gate 1: the proposal is not approved.
    let f = wait_for(&ftjs, "easy", "ProposalNotApproved", |f| {
        reason(f, "Gated").as_deref() == Some("ProposalNotApproved")
    })
    .await;
    assert_eq!(phase(&f), Some(FineTuneJobPhase::Pending));
    assert!(
        jobs.get_opt("easy-trainer").await.unwrap().is_none(),
        "no pods before the gates open"
    );
    // The mandate's 48 GPU-hours are spent by another job, in the operator's usage record;
    // the status claims otherwise, which counts for nothing.
    set_status(
        &proposals,
        "clause-review",
        "ModelProposal",
        json!({"phase": "Approved", "budget": {"gpuHoursUsed": "0", "gpuHoursLeft": "48"}}),
    )
    .await;
    let mp = proposals.get("clause-review").await.unwrap();
    let usage_name =
        modelcommons_operator::controller::usage::record_name(&mp.metadata.uid.clone().unwrap());
    let trusted_cms: Api<ConfigMap> =
        Api::namespaced(client.clone(), crate::common::lifecycle::TRUSTED);
    trusted_cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": usage_name},
                "data": {"0000-spent": json!({"job": "elsewhere/spent", "gpus": 8,
                    "reservedHours": 48.0, "usedHours": 48.0}).to_string()}}))
            .unwrap(),
        )
        .await
        .unwrap();
    // Gate 2: the Datanet has no Ready version (released by the proposal watch, not a timer).
    wait_for(&ftjs, "easy", "DatanetNotReady", |f| {
        reason(f, "Gated").as_deref() == Some("DatanetNotReady")
    })
    .await;
    // A status saying Ready opens nothing: what counts is the operator's record of the
    // published version, in its trusted namespace.
    set_status(&datanets, "clause-review-data", "Datanet", json!({"phase": "Ready", "version": 1,
        "datasetRoot": format!("0x{}", "ab".repeat(32)), "datasetUri": format!("file://{}/data", dir.path().display())})).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        reason(&ftjs.get("easy").await.unwrap(), "Gated").as_deref(),
        Some("DatanetNotReady")
    );
    let dn = datanets.get("clause-review-data").await.unwrap();
    let lineage_name =
        modelcommons_operator::controller::lineage::record_name(&dn.metadata.uid.clone().unwrap());
    // What the Datanet controller records once version 1 is published — at first with three
    // accepted contributions, one short of the mandate's data need (4 of quality >= 6000).
    let version_1 = |qualities: &[u32]| -> ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": lineage_name},
            "data": {"v1": json!({"datasetUri": format!("file://{}/data", dir.path().display()),
                "datasetRoot": format!("0x{}", "ab".repeat(32)), "manifestSha256": "00",
                "rewardMapUri": "file:///unused", "acceptedQualityBps": qualities}).to_string()}}))
        .unwrap()
    };
    let trusted_lineage: Api<ConfigMap> =
        Api::namespaced(client.clone(), crate::common::lifecycle::TRUSTED);
    trusted_lineage
        .create(
            &PostParams::default(),
            &version_1(&[9000, 8000, 7000, 5000]),
        )
        .await
        .unwrap();
    // The record is not watched: the next recheck (2 s) or any Datanet event finds it.
    set_status(
        &datanets,
        "clause-review-data",
        "Datanet",
        json!({"phase": "Ready", "version": 1}),
    )
    .await;
    let f = wait_for(&ftjs, "easy", "DataNeedsUnmet", |f| {
        reason(f, "Gated").as_deref() == Some("DataNeedsUnmet")
    })
    .await;
    let gated = serde_json::to_string(&f.status.unwrap().conditions).unwrap();
    assert!(
        gated.contains("reviewed-clauses") && gated.contains("has 3"),
        "{gated}"
    );
    trusted_lineage
        .replace(&lineage_name, &PostParams::default(), &{
            let mut cm = version_1(&[9000, 8000, 7000, 6000, 5000]);
            cm.metadata.resource_version = trusted_lineage
                .get(&lineage_name)
                .await
                .unwrap()
                .metadata
                .resource_version;
            cm
        })
        .await
        .unwrap();
    // Gate 3 (admission): the mandate's GPU-hours are spent.
    let f = wait_for(&ftjs, "easy", "BudgetExhausted", |f| {
        reason(f, "Gated").as_deref() == Some("BudgetExhausted")
    })
    .await;
    let gated = &f.status.unwrap().conditions;
    assert!(
        gated
            .iter()
            .any(|c| c.message.contains("0.00 of its 48 GPU-hours left")),
        "{gated:?}"
    );
    trusted_cms
        .delete(&usage_name, &Default::default())
        .await
        .unwrap();

    // The gates open: children appear.
    let f = wait_for(&ftjs, "easy", "a trainer Job", |f| {
        f.status.as_ref().and_then(|s| s.job_name.clone()).is_some()
    })
    .await;
    assert_eq!(f.status.as_ref().unwrap().dataset_version, Some(1));
    let job = job_named(&jobs, "easy-trainer").await;
    let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("FineTuneJob", "easy", Some(true))
    );
    let spec = job.spec.clone().unwrap();
    assert_eq!(spec.completion_mode.as_deref(), Some("Indexed"));
    let c = &spec.template.spec.as_ref().unwrap().containers[0];
    let env: Vec<String> = c.env.clone().unwrap().into_iter().map(|e| e.name).collect();
    for want in [
        "MODELCOMMONS_FINETUNEJOB",
        "MODELCOMMONS_NAMESPACE",
        "PET_NNODES",
        "PET_NODE_RANK",
        "PET_MASTER_ADDR",
    ] {
        assert!(env.contains(&want.to_string()), "{want} in {env:?}");
    }
    let gpus = &c.resources.as_ref().unwrap().limits.as_ref().unwrap()["nvidia.com/gpu"];
    assert_eq!(gpus.0, "1");
    let args = c.args.clone().unwrap().join(" ");
    assert!(
        args.contains("--method lora --lora-r 16") && args.contains("--max-steps 12"),
        "{args}"
    );
    let cm: Api<ConfigMap> = Api::namespaced(client.clone(), n);
    assert!(
        cm.get("easy-trainer")
            .await
            .unwrap()
            .data
            .unwrap()
            .contains_key("args.json")
    );

    // kwok runs and completes the pod; nothing has reported a result yet → Evaluating.
    for name in ["easy", "hard"] {
        wait_for(&ftjs, name, "Evaluating", |f| {
            phase(f) == Some(FineTuneJobPhase::Evaluating)
        })
        .await;
    }
    // Play the kubelet: the real trainer with the pod's args and env reports into the status.
    for name in ["easy", "hard"] {
        let job = jobs.get(&format!("{name}-trainer")).await.unwrap();
        run_trainer_pod(&job, cluster.kubeconfig()).await;
    }
    // The trainer's report alone decides nothing: the operator's evaluation runs.
    let f = wait_for(&ftjs, "easy", "the evaluation", |f| {
        reason(f, "Ready").as_deref() == Some("Evaluating")
    })
    .await;
    assert_eq!(phase(&f), Some(FineTuneJobPhase::Evaluating));
    for name in ["easy", "hard"] {
        crate::common::lifecycle::run_evaluation_pod(
            &client,
            &ftjs,
            name,
            crate::common::lifecycle::TRUSTED,
        )
        .await;
    }
    let f = wait_for(&ftjs, "easy", "Succeeded", |f| {
        phase(f) == Some(FineTuneJobPhase::Succeeded)
    })
    .await;
    let st = f.status.clone().unwrap();
    let ev = st.evaluation.clone().unwrap();
    assert_eq!(ev.targets_met, Some(true));
    assert_eq!(ev.examples, Some(4), "the four held-out records");
    assert_eq!(
        ev.model_digest
            .as_deref()
            .map(|d| d.trim_start_matches("sha256:")),
        st.result
            .as_ref()
            .unwrap()
            .model_digest
            .as_deref()
            .map(|d| d.trim_start_matches("sha256:")),
        "the evaluated weights are the ones the trainer wrote"
    );
    assert!(ev.baseline.iter().any(|m| m.name == "loss"));
    // A job target looser than the rubric changes nothing of it.
    assert_eq!(ev.targets.len(), 1);
    assert_eq!(ev.targets[0].threshold, "100");
    assert_eq!(reason(&f, "Ready").as_deref(), Some("TargetsMet"));
    assert!(st.gpu_hours_used.is_some());
    let f = wait_for(&ftjs, "hard", "TargetsMissed", |f| {
        phase(f) == Some(FineTuneJobPhase::TargetsMissed)
    })
    .await;
    let ready = f
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .clone();
    assert!(ready.message.contains("loss"), "{}", ready.message);
    // The operator's own record of both judgments, in its trusted namespace: what a
    // ModelDeployment of either job serves (the status above is the tenant's to rewrite).
    let records: Api<ConfigMap> =
        Api::namespaced(client.clone(), crate::common::lifecycle::TRUSTED);
    for (name, passed) in [("easy", true), ("hard", false)] {
        let f = ftjs.get(name).await.unwrap();
        let uid = kube::ResourceExt::uid(&f).unwrap();
        let data = records
            .get(&modelcommons_operator::controller::training::record_name(
                &uid,
            ))
            .await
            .unwrap()
            .data
            .unwrap();
        let judged = modelcommons_operator::controller::training::parse(&data);
        let j = judged.get(&1).expect("generation 1 is judged");
        assert_eq!(j.passed, passed, "{name}");
        assert_eq!(j.model_uri, f.spec.output_uri, "{name}");
        let ev = f.status.unwrap().evaluation.unwrap().model_digest.unwrap();
        assert_eq!(format!("sha256:{}", j.model_digest), ev, "{name}");
    }

    // With a Kueue queue the Job is created suspended, labelled, and the job waits in Queued.
    let f = wait_for(&ftjs, "queued", "Queued", |f| {
        phase(f) == Some(FineTuneJobPhase::Queued)
    })
    .await;
    assert_eq!(
        reason(&f, "Suspended").as_deref(),
        Some("AwaitingAdmission")
    );
    let q = job_named(&jobs, "queued-trainer").await;
    assert_eq!(q.spec.unwrap().suspend, Some(true));
    assert_eq!(
        q.metadata.labels.unwrap()["kueue.x-k8s.io/queue-name"],
        "legal-team"
    );
    // The rubric of the proposal stands in for absent targets.
    let targets: serde_json::Value = serde_json::from_str(
        &cm.get("queued-trainer").await.unwrap().data.unwrap()["targets.json"],
    )
    .unwrap();
    assert_eq!(targets.as_array().unwrap().len(), 1);

    // More GPUs than the mandate allows at once: it waits, saying why.
    let mut big = job_spec(n, "big", dir.path(), json!([]), None);
    big.spec.resources.workers = 9;
    ftjs.create(&PostParams::default(), &big).await.unwrap();
    let f = wait_for(&ftjs, "big", "GpuLimitReached", |f| {
        reason(f, "Gated").as_deref() == Some("GpuLimitReached")
    })
    .await;
    let msg = serde_json::to_string(&f.status.unwrap().conditions).unwrap();
    assert!(
        msg.contains("allows 8 GPUs at once") && msg.contains("needs 9"),
        "{msg}"
    );
    assert!(jobs.get_opt("big-trainer").await.unwrap().is_none());
    // What the others reserved is in the operator's usage record: each admitted 1-GPU job
    // holds 600 s of one GPU until it finishes.
    let usage = modelcommons_operator::controller::usage::parse(
        &trusted_cms.get(&usage_name).await.unwrap().data.unwrap(),
    );
    assert_eq!(usage.len(), 3, "{usage:?}");
    assert!(
        usage
            .values()
            .all(|u| u.gpus == 1 && (u.reserved_hours - 600.0 / 3600.0).abs() < 1e-9),
        "{usage:?}"
    );
    assert_eq!(
        usage.values().filter(|u| u.used_hours.is_some()).count(),
        2,
        "easy and hard finished; queued still holds its GPU: {usage:?}"
    );
    ftjs.delete("big", &Default::default()).await.unwrap();

    // A settled job is left alone: no further writes.
    let rv = ftjs.get("easy").await.unwrap().metadata.resource_version;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        ftjs.get("easy").await.unwrap().metadata.resource_version,
        rv
    );
    controller.abort();
    ns.delete().await.unwrap();
}

/// The tiny base model, written by the trainer binary's `init` (the operator does not link
/// libtorch).
fn init_base(dir: &std::path::Path) {
    let out = std::process::Command::new(trainer_binary())
        .args(["init", "--out", dir.to_str().unwrap(), "--seed", "7"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
