//! The trainer's reports land in a real FineTuneJob's status on a real API server: under the
//! trainer's own field manager, rate-bounded, and without touching what the operator owns.

use std::collections::BTreeMap;
use std::time::Duration;

use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use modelcommons_crds::all_crds;
use modelcommons_crds::common::MetricValue;
use modelcommons_crds::finetune::{FineTuneJob, FineTuneJobPhase};
use modelcommons_testbed::{TestNamespace, cluster};
use modelcommons_trainer::train::report::{FIELD_MANAGER, ProgressUpdate, Reporter, ResultUpdate};
use serde_json::json;

/// Stands in for the operator, which writes phase and conditions under its own manager.
const OPERATOR: &str = "modelcommons.dev/operator";
const DIGEST: &str = "047882518740d7d0ced5c901b04ae06fba38baaaba78a404f42fbb9953091764";

/// Applies every CRD (server-side) and waits until each is Established.
async fn install_crds(client: &kube::Client) {
    modelcommons_testbed::install_crds(client, &all_crds())
        .await
        .unwrap();
}

/// The example's LoRA FineTuneJob (examples/contract-review/04-finetune.yaml), created.
async fn create_job(api: &Api<FineTuneJob>, name: &str) -> FineTuneJob {
    let job: FineTuneJob = serde_json::from_value(json!({
        "apiVersion": "modelcommons.dev/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": { "name": name },
        "spec": {
            "proposalRef": { "name": "clause-review" },
            "datanetRef": { "name": "clause-review-data", "version": 1 },
            "baseModel": { "uri": "pvc://models/tiny-llama", "sha256": DIGEST },
            "method": {
                "type": "LoRA",
                "lora": { "rank": 16, "alpha": 32, "dropoutBps": 500, "targetModules": ["q_proj", "v_proj"] }
            },
            "hyperparameters": { "epochs": 3, "learningRate": "0.0002", "batchSize": 8, "warmupSteps": 10 },
            "resources": { "workers": 1, "gpusPerWorker": 1 },
            "targets": [{ "name": "loss", "direction": "Minimize", "threshold": "2.0" }],
            "outputUri": "pvc://models/clause-review-lora"
        }
    }))
    .unwrap();
    api.create(&PostParams::default(), &job).await.unwrap()
}

/// What the operator would write: phase (and a condition) under its own field manager.
async fn operator_sets_phase(api: &Api<FineTuneJob>, name: &str, phase: &str) {
    let body = json!({
        "apiVersion": "modelcommons.dev/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": { "name": name },
        "status": {
            "phase": phase,
            "conditions": [{
                "type": "Ready", "status": "False", "reason": phase, "message": "training",
                "lastTransitionTime": "2026-01-01T00:00:00Z"
            }]
        }
    });
    api.patch_status(
        name,
        &PatchParams::apply(OPERATOR).force(),
        &Patch::Apply(&body),
    )
    .await
    .unwrap();
}

fn update(step: u64, total_steps: u64, loss: f64) -> ProgressUpdate {
    ProgressUpdate {
        step,
        total_steps,
        loss,
        tokens_per_second: 1834.4,
    }
}

fn result() -> ResultUpdate {
    ResultUpdate {
        model_digest: DIGEST.into(),
        model_uri: "pvc://models/clause-review-lora".into(),
        metrics: BTreeMap::from([
            ("loss".to_string(), 1.25),
            ("exactMatch".to_string(), f64::from(0.6_f32)),
        ]),
    }
}

/// The `fieldsV1` of the status entry of `manager`, as JSON text.
fn status_fields_of(job: &FineTuneJob, manager: &str) -> String {
    let entry = job
        .managed_fields()
        .iter()
        .find(|e| {
            e.manager.as_deref() == Some(manager) && e.subresource.as_deref() == Some("status")
        })
        .unwrap_or_else(|| {
            panic!(
                "no status entry of {manager} in {:#?}",
                job.managed_fields()
            )
        });
    assert_eq!(
        entry.operation.as_deref(),
        Some("Apply"),
        "{manager} applies"
    );
    entry.fields_v1.as_ref().unwrap().0.to_string()
}

#[tokio::test]
async fn progress_and_result_land_in_the_status_under_the_trainer_s_field_manager() {
    let cluster = cluster().await.unwrap();
    let client = cluster.client().await.unwrap();
    install_crds(&client).await;
    let ns = TestNamespace::create(&client, "report").await.unwrap();
    let api: Api<FineTuneJob> = Api::namespaced(client.clone(), ns.name());
    create_job(&api, "lora").await;
    operator_sets_phase(&api, "lora", "Running").await;

    let mut reporter =
        Reporter::for_job(client.clone(), ns.name(), "lora", Duration::ZERO).resumed_from(0);
    for step in 1..=5 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        reporter.progress(update(step, 10, 2.315_432)).await;
    }
    let job = api.get("lora").await.unwrap();
    let status = job.status.clone().unwrap();
    let p = status.progress.clone().unwrap();
    assert_eq!((p.step, p.total_steps), (5, 10));
    assert_eq!(p.percent.as_deref(), Some("50%"));
    assert_eq!(p.loss.as_deref(), Some("2.3154"));
    assert_eq!(p.tokens_per_second, Some(1834));
    assert!(p.eta.is_some(), "5 steps measured: an ETA");
    assert!(p.last_update_time.is_some());
    assert_eq!(
        status.phase,
        Some(FineTuneJobPhase::Running),
        "the operator's phase survives the trainer's writes"
    );
    assert_eq!(status.conditions.len(), 1, "and so do its conditions");

    // The operator's next write (without progress) leaves the trainer's progress alone.
    operator_sets_phase(&api, "lora", "Evaluating").await;
    let status = api.get("lora").await.unwrap().status.unwrap();
    assert_eq!(status.phase, Some(FineTuneJobPhase::Evaluating));
    assert_eq!(status.progress.unwrap().step, 5);

    reporter.result(result()).await.unwrap();
    let job = api.get("lora").await.unwrap();
    let status = job.status.clone().unwrap();
    let r = status.result.clone().unwrap();
    assert_eq!(r.model_digest.as_deref(), Some(DIGEST));
    assert_eq!(
        r.model_uri.as_deref(),
        Some("pvc://models/clause-review-lora")
    );
    assert_eq!(
        r.metrics,
        vec![
            MetricValue {
                name: "exactMatch".into(),
                value: "0.6".into()
            },
            MetricValue {
                name: "loss".into(),
                value: "1.25".into()
            },
        ]
    );
    assert_eq!(r.targets_met, None, "the operator judges the targets");
    assert_eq!(status.progress.unwrap().step, 5);
    assert_eq!(status.phase, Some(FineTuneJobPhase::Evaluating));

    // Who owns what: the trainer progress and result, the operator phase and conditions.
    let trainer = status_fields_of(&job, FIELD_MANAGER);
    assert!(
        trainer.contains("f:progress") && trainer.contains("f:result"),
        "{trainer}"
    );
    assert!(
        !trainer.contains("f:phase") && !trainer.contains("f:conditions"),
        "{trainer}"
    );
    let operator = status_fields_of(&job, OPERATOR);
    assert!(
        operator.contains("f:phase") && !operator.contains("f:progress"),
        "{operator}"
    );

    // The operator records its verdict inside result; the trainer's later writes keep both.
    let verdict = json!({
        "apiVersion": "modelcommons.dev/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": { "name": "lora" },
        "status": { "phase": "Succeeded", "result": { "targetsMet": true } }
    });
    api.patch_status(
        "lora",
        &PatchParams::apply(OPERATOR).force(),
        &Patch::Apply(&verdict),
    )
    .await
    .unwrap();
    reporter.progress(update(10, 10, 1.1)).await;
    let status = api.get("lora").await.unwrap().status.unwrap();
    let r = status.result.unwrap();
    assert_eq!(r.targets_met, Some(true));
    assert_eq!(
        r.model_digest.as_deref(),
        Some(DIGEST),
        "the trainer's result stays"
    );
    let p = status.progress.unwrap();
    assert_eq!(
        (p.step, p.percent.as_deref(), p.eta.as_deref()),
        (10, Some("100%"), Some("0s"))
    );
    assert_eq!(status.phase, Some(FineTuneJobPhase::Succeeded));

    ns.delete().await.unwrap();
}

#[tokio::test]
async fn reports_between_writes_are_coalesced_and_the_final_ones_are_written() {
    let cluster = cluster().await.unwrap();
    let client = cluster.client().await.unwrap();
    install_crds(&client).await;
    let ns = TestNamespace::create(&client, "report-rate").await.unwrap();
    let api: Api<FineTuneJob> = Api::namespaced(client.clone(), ns.name());
    create_job(&api, "lora").await;

    let mut reporter =
        Reporter::for_job(client.clone(), ns.name(), "lora", Duration::from_secs(60));
    reporter.progress(update(1, 100, 3.0)).await;
    let first = api.get("lora").await.unwrap();
    assert_eq!(
        first
            .status
            .as_ref()
            .unwrap()
            .progress
            .as_ref()
            .unwrap()
            .step,
        1
    );
    for step in 2..=10 {
        reporter
            .progress(update(step, 100, 3.0 - step as f64 / 10.0))
            .await;
    }
    let after = api.get("lora").await.unwrap();
    assert_eq!(
        after.resource_version(),
        first.resource_version(),
        "nine reports within the interval write nothing"
    );

    // The result is written at once, with the latest progress held back.
    reporter.result(result()).await.unwrap();
    let status = api.get("lora").await.unwrap().status.unwrap();
    let p = status.progress.unwrap();
    assert_eq!((p.step, p.loss.as_deref()), (10, Some("2.0000")));
    assert_eq!(status.result.unwrap().model_digest.as_deref(), Some(DIGEST));

    // So is the final step, interval or not.
    reporter.progress(update(100, 100, 1.0)).await;
    let status = api.get("lora").await.unwrap().status.unwrap();
    let p = status.progress.unwrap();
    assert_eq!((p.step, p.percent.as_deref()), (100, Some("100%")));
    assert!(status.result.is_some());

    ns.delete().await.unwrap();
}

#[tokio::test]
async fn a_failed_write_does_not_stop_training_and_a_later_report_retries() {
    let cluster = cluster().await.unwrap();
    let client = cluster.client().await.unwrap();
    install_crds(&client).await;
    let ns = TestNamespace::create(&client, "report-retry")
        .await
        .unwrap();
    let api: Api<FineTuneJob> = Api::namespaced(client.clone(), ns.name());

    // The object does not exist yet: the write fails, the report returns all the same.
    let mut reporter = Reporter::for_job(client.clone(), ns.name(), "late", Duration::ZERO);
    reporter.progress(update(1, 10, 2.0)).await;
    create_job(&api, "late").await;
    reporter.progress(update(2, 10, 1.9)).await;
    let p = api
        .get("late")
        .await
        .unwrap()
        .status
        .unwrap()
        .progress
        .unwrap();
    assert_eq!(p.step, 2);

    // A result that cannot be written is an error the caller sees, naming the object.
    let mut lost = Reporter::for_job(client.clone(), ns.name(), "missing", Duration::ZERO);
    let err = lost.result(result()).await.unwrap_err().to_string();
    assert!(
        err.contains(&format!("{}/missing", ns.name())) && err.contains("3 times"),
        "{err}"
    );

    ns.delete().await.unwrap();
}

/// The whole path a pod takes: the trainer binary, run with the env a FineTuneJob pod gets,
/// trains and evaluates a tiny model, and its progress and result land in the object's status.
#[tokio::test]
async fn a_training_process_with_the_pod_env_fills_the_finetunejob_status() {
    let cluster = cluster().await.unwrap();
    let client = cluster.client().await.unwrap();
    install_crds(&client).await;
    let ns = TestNamespace::create(&client, "trainpod").await.unwrap();
    let api: Api<FineTuneJob> = Api::namespaced(client.clone(), ns.name());
    create_job(&api, "pod").await;
    operator_sets_phase(&api, "pod", "Running").await;

    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    modelcommons_trainer::model::init::TinyLlama::default()
        .write(&base, 7)
        .unwrap();
    let data = dir.path().join("train.jsonl");
    let rows: Vec<String> = (0..64)
        .map(|i| json!({"prompt": format!("Clause {i}:"), "completion": if i % 2 == 0 { " high" } else { " low" }}).to_string())
        .collect();
    std::fs::write(&data, rows.join("\n")).unwrap();
    let out = dir.path().join("out");
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_modelcommons-trainer"))
        .args([
            "train",
            "--model",
            base.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--eval-data",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--method",
            "lora",
            "--max-steps",
            "12",
            "--batch-size",
            "8",
            "--lr",
            "1e-2",
            "--device",
            "cpu",
        ])
        .env("KUBECONFIG", cluster.kubeconfig())
        .env("MODELCOMMONS_FINETUNEJOB", "pod")
        .env("MODELCOMMONS_NAMESPACE", ns.name())
        .env("MODELCOMMONS_REPORT_INTERVAL_SECONDS", "0")
        .output()
        .await
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let result: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("result.json")).unwrap()).unwrap();

    let job = api.get("pod").await.unwrap();
    let status = job.status.clone().unwrap();
    let p = status.progress.clone().unwrap();
    assert_eq!((p.step, p.total_steps), (12, 12));
    assert_eq!(p.percent.as_deref(), Some("100%"));
    assert!(p.loss.is_some() && p.tokens_per_second.is_some_and(|t| t > 0));
    let r = status.result.clone().unwrap();
    assert_eq!(r.model_digest.as_deref(), result["digest"].as_str());
    assert!(r.model_uri.unwrap().ends_with("adapter_model.safetensors"));
    let names: Vec<&str> = r.metrics.iter().map(|m| m.name.as_str()).collect();
    for want in ["exactMatch", "loss", "perplexity"] {
        assert!(names.contains(&want), "{want} in {names:?}");
    }
    assert_eq!(
        r.targets_met, None,
        "the operator judges targets, not the trainer"
    );
    assert_eq!(status.phase, Some(FineTuneJobPhase::Running));
    assert!(status_fields_of(&job, FIELD_MANAGER).contains("progress"));
    ns.delete().await.unwrap();
}
