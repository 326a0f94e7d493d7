//! The FineTuneJob controller: gates (proposal approved, Datanet Ready at the pinned version,
//! budget left) as conditions with reasons; children by server-side apply with owner
//! references (a ConfigMap with the training config, an Indexed `batch/v1` Job of trainer
//! pods with torchrun-style env, a headless Service for several workers); phases from the Job
//! and from the result the trainer writes; targets judged with their direction.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use modelcommons_crds::common::{Direction, MetricTarget};
use modelcommons_crds::conditions::{READY, set_condition};
use modelcommons_crds::datanet::Datanet;
use modelcommons_crds::finetune::{FineTuneJob, FineTuneJobPhase, FineTuneJobSpec, MethodType};
use modelcommons_crds::proposal::{ModelProposal, ModelProposalPhase};
use serde_json::json;

use super::{Context, Error, FIELD_MANAGER, LABEL_INSTANCE, LABEL_MANAGED_BY, LEDGER_SYNCED, now};

/// Condition: a gate holds the job back.
pub const GATED: &str = "Gated";
/// Condition: the job is suspended or waits for queue admission.
pub const SUSPENDED: &str = "Suspended";
/// The Kueue queue label.
pub const KUEUE_QUEUE_LABEL: &str = "kueue.x-k8s.io/queue-name";
/// Where the trainer container finds its files: URIs `file:///p` map to `/p` (hostPath),
/// `pvc://claim/p` to `/mnt/pvc/claim/p`.
pub const PVC_ROOT: &str = "/mnt/pvc";

/// The trainer pod's environment names the dataset version it was created for: once the
/// Job exists, its (immutable) pod template is where the job's lineage is read from, so a
/// version published mid-training changes nothing of a running job.
pub const DATASET_URI_ENV: &str = "MODELCOMMONS_DATASET_URI";
/// See [`DATASET_URI_ENV`].
pub const DATASET_VERSION_ENV: &str = "MODELCOMMONS_DATASET_VERSION";
/// See [`DATASET_URI_ENV`].
pub const DATASET_ROOT_ENV: &str = "MODELCOMMONS_DATASET_ROOT";
/// The deadline, and so the GPU-hours reserved, of a GPU job that names none: 24 hours.
pub const DEFAULT_DEADLINE_SECONDS: u64 = 24 * 3600;
/// Where the evaluation pod writes its result (the termination message).
pub const EVAL_RESULT_FILE: &str = "/dev/termination-log";
/// The label naming the FineTuneJob (its uid) an evaluation Job judges.
pub const LABEL_EVALUATES: &str = "modelcommons.dev/evaluates";

/// Why a job may not start yet.
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    /// Condition reason (CamelCase).
    pub reason: &'static str,
    /// What is wrong and what to do.
    pub message: String,
}

/// What the gates resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Admitted {
    /// The dataset version trained on.
    pub dataset_version: u32,
    /// Its Merkle root.
    pub dataset_root: Option<String>,
    /// Its location.
    pub dataset_uri: String,
    /// The targets: the proposal's rubric, tightened by the job's own ([`targets`]).
    pub targets: Vec<MetricTarget>,
    /// Whether the proposal's rubric is among them (false once the proposal is gone: then
    /// nothing passes).
    pub rubric: bool,
    /// The trainer Job's deadline: the job's own, capped by what is left of the mandate's
    /// GPU-hours (what admission reserved); None for a job that holds no GPU.
    pub active_deadline_seconds: Option<u64>,
}

/// Whether a storage URI a tenant wrote may become a volume of a workload pod: `pvc://`
/// always; `file://` — a host path of the node, in a pod whose image the tenant may choose —
/// only under the operator's dev host directory (the test bed, the demo), and never with `..`.
pub fn workload_uri_allowed(uri: &str, dev_host_dirs: &[PathBuf]) -> Result<(), Gate> {
    let Some(path) = uri.strip_prefix("file://") else {
        return Ok(());
    };
    let path = Path::new(path);
    let inside = dev_host_dirs.iter().any(|dev| {
        path.is_absolute()
            && path.starts_with(dev)
            && !path
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
    });
    if inside {
        return Ok(());
    }
    Err(Gate {
        reason: "HostPathRefused",
        message: match dev_host_dirs {
            [] => format!(
                "{uri}: a file:// location would be a host path of the node; this operator runs without a dev host directory, so it refuses them: use pvc://<claim>/<path>"
            ),
            dirs => format!(
                "{uri}: a file:// location must lie under one of the operator's dev host directories ({}); use pvc://<claim>/<path> elsewhere",
                dirs.iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
    })
}

/// Whether `spec.trainerImage` is one the operator may run: its own trainer image or one
/// the platform team allowed (`--allowed-trainer-image`). The trainer's report decides
/// whether a job succeeds, so no other image runs.
pub fn trainer_image_allowed(spec: &FineTuneJobSpec, config: &super::Config) -> Result<(), Gate> {
    match &spec.trainer_image {
        Some(image)
            if *image != config.trainer_image
                && !config.allowed_trainer_images.iter().any(|a| a == image) =>
        {
            Err(Gate {
                reason: "TrainerImageNotAllowed",
                message: format!(
                    "spec.trainerImage {image} is not an image this operator runs (allowed: {}); remove it to use the operator's trainer, or ask the platform team to allow it",
                    std::iter::once(config.trainer_image.as_str())
                        .chain(config.allowed_trainer_images.iter().map(String::as_str))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
        }
        _ => Ok(()),
    }
}

/// Checks the gates against the proposal and the Datanet (None: not found) and the
/// operator's workload policy.
pub fn check_gates(
    spec: &FineTuneJobSpec,
    proposal: Option<&ModelProposal>,
    datanet: Option<&Datanet>,
    published: &BTreeMap<u32, super::lineage::VersionRecord>,
    config: &super::Config,
) -> Result<Admitted, Gate> {
    trainer_image_allowed(spec, config)?;
    for uri in [&spec.base_model.uri, &spec.output_uri] {
        workload_uri_allowed(uri, &config.dev_host_dirs)?;
    }
    let Some(p) = proposal else {
        return Err(Gate {
            reason: "ProposalNotFound",
            message: format!(
                "ModelProposal {} does not exist in this namespace; create it or fix spec.proposalRef",
                spec.proposal_ref.name
            ),
        });
    };
    let phase = p.status.as_ref().and_then(|s| s.phase);
    if !matches!(
        phase,
        Some(ModelProposalPhase::Approved | ModelProposalPhase::Active)
    ) {
        return Err(Gate {
            reason: "ProposalNotApproved",
            message: format!(
                "ModelProposal {} is {}; training starts by itself once token holders approve it",
                spec.proposal_ref.name,
                phase.map_or("not yet registered".to_string(), |p| format!("{p:?}"))
            ),
        });
    }
    let Some(d) = datanet else {
        return Err(Gate {
            reason: "DatanetNotFound",
            message: format!(
                "Datanet {} does not exist in this namespace; create it or fix spec.datanetRef",
                spec.datanet_ref.name
            ),
        });
    };
    if d.spec.proposal_ref.name != spec.proposal_ref.name {
        return Err(Gate {
            reason: "DatanetOfAnotherProposal",
            message: format!(
                "Datanet {} gathers data for ModelProposal {}, not {}: a job trains under its own mandate on its own mandate's data; name a Datanet of {}",
                spec.datanet_ref.name,
                d.spec.proposal_ref.name,
                spec.proposal_ref.name,
                spec.proposal_ref.name
            ),
        });
    }
    // The versions the operator published, from its own record (not the Datanet's status).
    let latest = published.keys().last().copied();
    let version = match (spec.datanet_ref.version, latest) {
        (Some(want), _) if published.contains_key(&want) => want,
        (None, Some(have)) => have,
        (want, _) => {
            let st = d.status.clone().unwrap_or_default();
            return Err(Gate {
                reason: "DatanetNotReady",
                message: format!(
                    "Datanet {} has no published version{} yet (it is {}{}); training starts when curation publishes it",
                    spec.datanet_ref.name,
                    want.map(|v| format!(" {v}")).unwrap_or_default(),
                    st.phase.map_or("new".to_string(), |p| format!("{p:?}")),
                    latest
                        .map(|l| format!(", at version {l}"))
                        .unwrap_or_default(),
                ),
            });
        }
    };
    let record = &published[&version];
    // The mandate's data needs, against the version trained on (the operator's record of it).
    for need in &p.spec.mandate.data_needs {
        let have = record
            .accepted_quality_bps
            .iter()
            .filter(|q| **q >= need.min_quality_bps)
            .count();
        if have < need.min_accepted_contributions as usize {
            return Err(Gate {
                reason: "DataNeedsUnmet",
                message: format!(
                    "ModelProposal {}'s data need {} asks for {} accepted contributions of quality >= {} bps before training; Datanet {} version {version} has {have}: training starts on a version that has them",
                    spec.proposal_ref.name,
                    need.name,
                    need.min_accepted_contributions,
                    need.min_quality_bps,
                    spec.datanet_ref.name
                ),
            });
        }
    }
    let dataset_uri = record.dataset_uri.clone();
    for uri in [&spec.base_model.uri, &dataset_uri, &spec.output_uri] {
        if container_path(uri).is_none() {
            return Err(Gate {
                reason: "StorageUnsupported",
                message: format!(
                    "{uri}: this operator mounts file:// and pvc:// locations; copy the data there"
                ),
            });
        }
    }
    Ok(Admitted {
        dataset_version: version,
        dataset_root: record.dataset_root.clone(),
        dataset_uri,
        targets: targets(spec, Some(p)),
        rubric: true,
        active_deadline_seconds: spec.run_policy.active_deadline_seconds,
    })
}

/// The targets a job is judged by: the proposal's rubric — what token holders approved —
/// with each threshold tightened, never loosened, by the job's own target on the same
/// metric, plus the job's targets on metrics the rubric does not name. A job target looser
/// than the rubric changes nothing. Without the proposal, the job's own targets alone (and
/// [`Admitted::rubric`] false, so the result cannot pass).
pub fn targets(spec: &FineTuneJobSpec, proposal: Option<&ModelProposal>) -> Vec<MetricTarget> {
    let Some(p) = proposal else {
        return spec.targets.clone();
    };
    let rubric = &p.spec.mandate.evaluation.metrics;
    let stricter = |r: &MetricTarget, j: &MetricTarget| -> bool {
        let (Ok(rv), Ok(jv)) = (r.threshold.parse::<f64>(), j.threshold.parse::<f64>()) else {
            return false;
        };
        match r.direction {
            Direction::Maximize => jv > rv,
            Direction::Minimize => jv < rv,
        }
    };
    let mut out: Vec<MetricTarget> = rubric
        .iter()
        .map(|r| {
            spec.targets
                .iter()
                .find(|j| j.name == r.name && j.direction == r.direction && stricter(r, j))
                .cloned()
                .unwrap_or_else(|| r.clone())
        })
        .collect();
    out.extend(
        spec.targets
            .iter()
            .filter(|j| !rubric.iter().any(|r| r.name == j.name))
            .cloned(),
    );
    out
}

/// The path a storage URI has inside the trainer container.
pub fn container_path(uri: &str) -> Option<String> {
    if let Some(p) = uri.strip_prefix("file://") {
        return p.starts_with('/').then(|| p.to_string());
    }
    let rest = uri.strip_prefix("pvc://")?;
    let (claim, path) = rest.split_once('/').unwrap_or((rest, ""));
    (!claim.is_empty()).then(|| {
        format!("{PVC_ROOT}/{claim}/{path}")
            .trim_end_matches('/')
            .to_string()
    })
}

/// Whether every target is met by `metrics` (decimal strings by name).
pub fn targets_met(targets: &[MetricTarget], metrics: &BTreeMap<String, String>) -> bool {
    targets.iter().all(|t| {
        let (Some(v), Ok(th)) = (
            metrics.get(&t.name).and_then(|v| v.parse::<f64>().ok()),
            t.threshold.parse::<f64>(),
        ) else {
            return false;
        };
        match t.direction {
            Direction::Maximize => v >= th,
            Direction::Minimize => v <= th,
        }
    })
}

/// The trainer's command line for this job.
pub fn trainer_args(spec: &FineTuneJobSpec, dataset_dir: &str) -> Vec<String> {
    let h = &spec.hyperparameters;
    let path = |u: &str| container_path(u).unwrap_or_default();
    let mut a: Vec<String> = vec![
        "train".into(),
        "--model".into(),
        path(&spec.base_model.uri),
        "--data".into(),
        format!("{dataset_dir}/train.jsonl"),
        "--eval-data".into(),
        format!("{dataset_dir}/eval.jsonl"),
        "--out".into(),
        path(&spec.output_uri),
        "--expect-base-sha256".into(),
        spec.base_model.sha256.clone(),
        "--epochs".into(),
        h.epochs.to_string(),
        "--lr".into(),
        h.learning_rate.clone(),
        "--batch-size".into(),
        h.batch_size.to_string(),
        "--grad-accum".into(),
        h.gradient_accumulation_steps.to_string(),
        "--warmup-steps".into(),
        h.warmup_steps.to_string(),
        "--max-seq-len".into(),
        h.max_seq_len.to_string(),
        "--seed".into(),
        h.seed.to_string(),
        "--checkpoint-every".into(),
        spec.checkpointing.every_steps.to_string(),
        "--keep-checkpoints".into(),
        spec.checkpointing.keep.to_string(),
    ];
    if let Some(s) = h.max_steps {
        a.extend(["--max-steps".into(), s.to_string()]);
    }
    match (&spec.method.kind, &spec.method.lora) {
        (MethodType::LoRA, Some(l)) => a.extend([
            "--method".into(),
            "lora".into(),
            "--lora-r".into(),
            l.rank.to_string(),
            "--lora-alpha".into(),
            l.alpha.to_string(),
            "--lora-dropout".into(),
            (f64::from(l.dropout_bps) / 10_000.0).to_string(),
            "--lora-targets".into(),
            l.target_modules.join(","),
        ]),
        _ => a.extend(["--method".into(), "full".into()]),
    }
    if spec.resources.gpus_per_worker == 0 {
        a.extend(["--device".into(), "cpu".into()]);
    }
    a
}

fn child_name(ftj: &FineTuneJob) -> String {
    format!("{}-trainer", ftj.name_any())
}

/// Volumes for the file:// and pvc:// locations the job reads and writes.
pub(crate) fn volumes(uris: &[&str]) -> (Vec<serde_json::Value>, Vec<serde_json::Value>) {
    let (mut vols, mut mounts) = (Vec::new(), Vec::new());
    let mut seen = std::collections::BTreeSet::new();
    for uri in uris {
        let (name, vol, mount) = if let Some(p) = uri.strip_prefix("file://") {
            let n = format!("host-{}", seen.len());
            (
                n.clone(),
                json!({"name": n, "hostPath": {"path": p, "type": "DirectoryOrCreate"}}),
                p.to_string(),
            )
        } else if let Some(rest) = uri.strip_prefix("pvc://") {
            let claim = rest.split('/').next().unwrap_or_default();
            if !seen.insert(claim.to_string()) {
                continue;
            }
            let n = format!("pvc-{claim}");
            (
                n.clone(),
                json!({"name": n, "persistentVolumeClaim": {"claimName": claim}}),
                format!("{PVC_ROOT}/{claim}"),
            )
        } else {
            continue;
        };
        seen.insert(name.clone());
        vols.push(vol);
        mounts.push(json!({"name": name, "mountPath": mount}));
    }
    (vols, mounts)
}

/// The Indexed trainer Job (one pod per worker).
pub fn trainer_job(
    ftj: &FineTuneJob,
    image: &str,
    admitted: &Admitted,
    suspend: bool,
) -> serde_json::Value {
    let spec = &ftj.spec;
    let name = child_name(ftj);
    let ns = ftj.namespace().unwrap_or_default();
    let workers = spec.resources.workers.max(1);
    // The trainer mounts the dataset's train/ directory only: the held-out records beside it
    // are the operator's evaluation's.
    let train_uri = train_uri(&admitted.dataset_uri);
    let dataset_dir = container_path(&train_uri).unwrap_or_default();
    let (vols, mounts) = volumes(&[&spec.base_model.uri, &train_uri, &spec.output_uri]);
    let mut resources = json!({"requests": {
        "cpu": spec.resources.cpu.clone().unwrap_or_else(|| "4".into()),
        "memory": spec.resources.memory.clone().unwrap_or_else(|| "16Gi".into()),
    }});
    if spec.resources.gpus_per_worker > 0 {
        let g = spec.resources.gpus_per_worker.to_string();
        resources["requests"]["nvidia.com/gpu"] = json!(g);
        resources["limits"] = json!({"nvidia.com/gpu": g});
    }
    let mut labels = json!({LABEL_MANAGED_BY: "modelcommons-operator", LABEL_INSTANCE: ftj.name_any(),
        "app.kubernetes.io/name": "modelcommons-trainer"});
    if let Some(q) = &spec.run_policy.queue_name {
        labels[KUEUE_QUEUE_LABEL] = json!(q);
    }
    let env = json!([
        {"name": "MODELCOMMONS_FINETUNEJOB", "value": ftj.name_any()},
        {"name": "MODELCOMMONS_NAMESPACE", "value": ns},
        {"name": "PET_NNODES", "value": workers.to_string()},
        {"name": "PET_NPROC_PER_NODE", "value": spec.resources.gpus_per_worker.max(1).to_string()},
        {"name": "PET_NODE_RANK", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}},
        {"name": "PET_MASTER_ADDR", "value": format!("{name}-0.{name}.{ns}.svc")},
        {"name": "PET_MASTER_PORT", "value": "29500"},
        {"name": DATASET_URI_ENV, "value": admitted.dataset_uri},
        {"name": DATASET_VERSION_ENV, "value": admitted.dataset_version.to_string()},
        {"name": DATASET_ROOT_ENV, "value": admitted.dataset_root.clone().unwrap_or_default()},
    ]);
    let mut job = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": ns, "labels": labels,
            "ownerReferences": [owner(ftj)]},
        "spec": {
            "completionMode": "Indexed",
            "completions": workers,
            "parallelism": workers,
            "backoffLimit": spec.run_policy.backoff_limit,
            "suspend": suspend,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "subdomain": name,
                    // The trainer reports under its own account, allowed to patch this job's
                    // status and nothing else (see trainer_identity).
                    "serviceAccountName": trainer_account(ftj),
                    "automountServiceAccountToken": true,
                    "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "fsGroup": 65532,
                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "trainer",
                        "image": spec.trainer_image.clone().unwrap_or_else(|| image.to_string()),
                        "command": ["modelcommons-trainer"],
                        "args": trainer_args(spec, &dataset_dir),
                        "env": env,
                        "resources": resources,
                        "volumeMounts": mounts,
                        "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
                    }],
                    "volumes": vols,
                }
            }
        }
    });
    if let Some(d) = admitted.active_deadline_seconds {
        job["spec"]["activeDeadlineSeconds"] = json!(d);
    }
    if let Some(t) = spec.run_policy.ttl_seconds_after_finished {
        job["spec"]["ttlSecondsAfterFinished"] = json!(t);
    }
    job
}

/// The ServiceAccount the trainer pods of `ftj` run as (named as its Job).
pub fn trainer_account(ftj: &FineTuneJob) -> String {
    child_name(ftj)
}

/// The trainer's least-privilege identity: a ServiceAccount, and a Role (with its binding)
/// that allows `patch` on this FineTuneJob's status alone (`resourceNames`) —
/// what the trainer's progress and result reports need, and nothing of any other job.
pub fn trainer_identity(ftj: &FineTuneJob) -> [serde_json::Value; 3] {
    let ns = ftj.namespace().unwrap_or_default();
    let name = trainer_account(ftj);
    let labels = json!({LABEL_MANAGED_BY: "modelcommons-operator", LABEL_INSTANCE: ftj.name_any()});
    let meta =
        json!({"name": name, "namespace": ns, "labels": labels, "ownerReferences": [owner(ftj)]});
    [
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta,
            "rules": [{"apiGroups": ["modelcommons.dev"], "resources": ["finetunejobs/status"],
                "resourceNames": [ftj.name_any()], "verbs": ["patch"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}]}),
    ]
}

/// The part of a curated dataset a trainer pod mounts.
pub fn train_uri(dataset_uri: &str) -> String {
    format!(
        "{}/{}",
        dataset_uri.trim_end_matches('/'),
        super::datanet::TRAIN_DIR
    )
}

/// The evaluation Job of `ftj`: named by its uid, in the operator's trusted namespace.
pub fn evaluation_name(ftj: &FineTuneJob) -> String {
    format!("eval-{}", ftj.uid().unwrap_or_default())
}

/// The operator's evaluation of a trained model: its own trainer image (never
/// `spec.trainerImage`), in its trusted namespace (`config.trusted_namespace`, where tenants
/// neither exec nor read), reading the output, the base model (the baseline, and the base of
/// a LoRA output) and the dataset version's `holdout.jsonl`, all read-only. No API access:
/// the result is the pod's termination message, taken only from a pod of this Job.
pub fn evaluation_job(
    ftj: &FineTuneJob,
    config: &super::Config,
    admitted: &Admitted,
) -> Result<serde_json::Value, Gate> {
    let spec = &ftj.spec;
    if admitted.dataset_uri.is_empty() {
        return Err(Gate {
            reason: "LineageUnknown",
            message: format!(
                "the trainer Job {} names no dataset version the operator published (it was made by an older operator, or not by the operator), so there are no held-out records to judge it by; delete the Job and this FineTuneJob and create it again",
                child_name(ftj)
            ),
        });
    }
    let uris = [
        &spec.output_uri,
        &spec.base_model.uri,
        &admitted.dataset_uri,
    ];
    if let Some(u) = uris.iter().find(|u| !u.starts_with("file://")) {
        return Err(Gate {
            reason: "EvaluationStorageUnsupported",
            message: format!(
                "{u}: the operator evaluates trained models in its own namespace ({}), which cannot mount a claim of this one; until object stores are supported for models, evaluation reads file:// locations under the operator's dev host directories only",
                config.trusted_namespace
            ),
        });
    }
    let path = |u: &str| container_path(u).unwrap_or_default();
    let (mut vols, mut mounts) = volumes(&[uris[0].as_str(), uris[1].as_str(), uris[2].as_str()]);
    for m in &mut mounts {
        m["readOnly"] = json!(true);
    }
    for v in &mut vols {
        if let Some(h) = v.get_mut("hostPath") {
            h["type"] = json!("Directory");
        }
    }
    // The evaluation copies the model here, then hashes and loads the copy: a writer of the
    // output cannot swap the weights between the two.
    vols.push(json!({"name": "scratch", "emptyDir": {}}));
    mounts.push(json!({"name": "scratch", "mountPath": "/tmp"}));
    let mut args = vec![
        "eval".to_string(),
        "--model".into(),
        path(&spec.output_uri),
        "--baseline".into(),
        path(&spec.base_model.uri),
        "--data".into(),
        format!(
            "{}/{}",
            path(&admitted.dataset_uri),
            super::datanet::HOLDOUT_FILE
        ),
        "--max-seq-len".into(),
        spec.hyperparameters.max_seq_len.to_string(),
        "--out".into(),
        EVAL_RESULT_FILE.into(),
    ];
    let mut resources = json!({"requests": {"cpu": "1",
        "memory": spec.resources.memory.clone().unwrap_or_else(|| "4Gi".into())}});
    if spec.resources.gpus_per_worker > 0 {
        resources["requests"]["nvidia.com/gpu"] = json!("1");
        resources["limits"] = json!({"nvidia.com/gpu": "1"});
    } else {
        args.extend(["--device".into(), "cpu".into()]);
    }
    let labels = json!({LABEL_MANAGED_BY: "modelcommons-operator",
        "app.kubernetes.io/name": "modelcommons-evaluation",
        LABEL_EVALUATES: ftj.uid().unwrap_or_default()});
    Ok(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": evaluation_name(ftj), "namespace": config.trusted_namespace,
            "labels": labels,
            "annotations": {"modelcommons.dev/finetunejob": format!("{}/{}", ftj.namespace().unwrap_or_default(), ftj.name_any())}},
        "spec": {"backoffLimit": 1, "activeDeadlineSeconds": 3600, "ttlSecondsAfterFinished": 86400,
            "template": {"metadata": {"labels": labels}, "spec": {
                "restartPolicy": "Never",
                "automountServiceAccountToken": false,
                "securityContext": {"runAsNonRoot": true, "runAsUser": 65532,
                    "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{
                    "name": "evaluate",
                    "image": config.trainer_image,
                    "command": ["modelcommons-trainer"],
                    "args": args,
                    "resources": resources,
                    "volumeMounts": mounts,
                    "terminationMessagePath": EVAL_RESULT_FILE,
                    "terminationMessagePolicy": "File",
                    "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                        "capabilities": {"drop": ["ALL"]}},
                }],
                "volumes": vols,
            }}},
    }))
}

/// What the evaluation pod reports (`modelcommons-trainer eval --baseline … --out`).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvalOutput {
    /// Held-out records evaluated.
    pub examples: u32,
    /// The trained model's metrics.
    pub metrics: BTreeMap<String, f64>,
    /// sha256 of the weights evaluated.
    pub model_digest: String,
    /// The base model's.
    #[serde(default)]
    pub baseline: Option<Baseline>,
}

/// The base model's figures in an [`EvalOutput`].
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Baseline {
    /// Its metrics.
    pub metrics: BTreeMap<String, f64>,
    /// sha256 of its weights.
    pub model_digest: String,
}

/// Where the evaluation stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Evaluated {
    /// Created or running; the message says which.
    Pending(String),
    /// It cannot give a result; (reason, message).
    Failed(&'static str, String),
    /// The result, from a pod of the operator's own Job.
    Done(EvalOutput),
}

/// Creates the evaluation Job if it does not exist and reads its result once it completed.
async fn evaluate(
    ftj: &FineTuneJob,
    ctx: &Context,
    admitted: &Admitted,
) -> Result<Evaluated, Error> {
    let desired = match evaluation_job(ftj, &ctx.config, admitted) {
        Ok(j) => j,
        Err(g) => return Ok(Evaluated::Failed(g.reason, g.message)),
    };
    let ns = &ctx.config.trusted_namespace;
    let name = evaluation_name(ftj);
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    let desired: Job = serde_json::from_value(desired)?;
    let Some(job) = jobs.get_opt(&name).await? else {
        jobs.create(&kube::api::PostParams::default(), &desired)
            .await?;
        return Ok(Evaluated::Pending(format!(
            "the operator evaluates the trained model on the held-out records of dataset version {} (Job {ns}/{name})",
            admitted.dataset_version
        )));
    };
    let ours = job.labels().get(LABEL_EVALUATES) == ftj.uid().as_ref()
        && super::datanet::same_containers(
            job.spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .map(|s| s.containers.as_slice())
                .unwrap_or_default(),
            desired
                .spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .map(|s| s.containers.as_slice())
                .unwrap_or_default(),
        );
    if !ours {
        return Ok(Evaluated::Failed(
            "ForgedResult",
            format!(
                "Job {ns}/{name} is not the evaluation the operator would run for this job; delete it and the operator runs its own"
            ),
        ));
    }
    match job_state(&job) {
        (JobState::Failed, why) => {
            let (reason, message) = why.unwrap_or_default();
            Ok(Evaluated::Failed(
                "EvaluationFailed",
                format!(
                    "the evaluation Job {ns}/{name} failed ({reason}: {message}); the output at {} may not be a model the trainer can load",
                    ftj.spec.output_uri
                ),
            ))
        }
        (JobState::Complete, _) => {
            match super::datanet::pod_result::<EvalOutput, _>(ctx, ftj, &job).await? {
                // The base the evaluation loaded must be the one the job names.
                Some(out)
                    if out.baseline.as_ref().is_some_and(|b| {
                        b.model_digest != ftj.spec.base_model.sha256.trim_start_matches("sha256:")
                    }) =>
                {
                    Ok(Evaluated::Failed(
                        "BaseModelDigestMismatch",
                        format!(
                            "the base model at {} has weights with sha256 {}, not spec.baseModel.sha256 {}: the job did not start from the model it names; nothing is recorded",
                            ftj.spec.base_model.uri,
                            out.baseline.map(|b| b.model_digest).unwrap_or_default(),
                            ftj.spec.base_model.sha256
                        ),
                    ))
                }
                Some(out) => Ok(Evaluated::Done(out)),
                None => Ok(Evaluated::Pending(format!(
                    "the evaluation Job {ns}/{name} completed; reading its result"
                ))),
            }
        }
        _ => Ok(Evaluated::Pending(format!(
            "the operator evaluates the trained model on the held-out records of dataset version {} (Job {ns}/{name})",
            admitted.dataset_version
        ))),
    }
}

fn owner(ftj: &FineTuneJob) -> serde_json::Value {
    json!({"apiVersion": FineTuneJob::api_version(&()), "kind": FineTuneJob::kind(&()),
        "name": ftj.name_any(), "uid": ftj.uid().unwrap_or_default(),
        "controller": true, "blockOwnerDeletion": true})
}

/// What the trainer Job says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Suspended (by the spec or by Kueue until admission).
    Suspended,
    /// Pods run or wait to.
    Running,
    /// Every index completed.
    Complete,
    /// Failed (backoff limit, deadline).
    Failed,
}

/// Reads a Job's state and, when failed, its reason and message.
pub fn job_state(job: &Job) -> (JobState, Option<(String, String)>) {
    let conds = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let holds = |t: &str| conds.iter().find(|c| c.type_ == t && c.status == "True");
    if let Some(c) = holds("Failed") {
        return (
            JobState::Failed,
            Some((
                c.reason.clone().unwrap_or_else(|| "JobFailed".into()),
                c.message.clone().unwrap_or_default(),
            )),
        );
    }
    if holds("Complete").is_some() {
        return (JobState::Complete, None);
    }
    if job.spec.as_ref().and_then(|s| s.suspend).unwrap_or(false) {
        return (JobState::Suspended, None);
    }
    (JobState::Running, None)
}

/// GPU-hours a job has used.
pub fn gpu_hours(spec: &FineTuneJobSpec, job: &Job) -> f64 {
    let st = job.status.clone().unwrap_or_default();
    let Some(start) = st.start_time else {
        return 0.0;
    };
    let end = st
        .completion_time
        .map_or_else(k8s_openapi::jiff::Timestamp::now, |t| t.0);
    let secs = end.duration_since(start.0).as_secs_f64().max(0.0);
    secs / 3600.0 * f64::from(spec.resources.workers.max(1) * spec.resources.gpus_per_worker)
}

struct Desired {
    phase: FineTuneJobPhase,
    conditions: Vec<Condition>,
    extra: serde_json::Value,
}

fn desired_conditions(ftj: &FineTuneJob, sets: &[(&str, bool, &str, &str)]) -> Vec<Condition> {
    let mut conds = ftj
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let generation = ftj.metadata.generation;
    for (t, s, r, m) in sets {
        set_condition(&mut conds, t, *s, r, m, generation, now());
    }
    conds
}

/// Reconciles one FineTuneJob (timed and counted in the metrics).
pub async fn reconcile(ftj: Arc<FineTuneJob>, c: Arc<Caches>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let ctx = &c.ctx;
    let res = reconcile_inner(ftj, &c).await;
    ctx.metrics
        .observe("FineTuneJob", res.is_ok(), started.elapsed().as_secs_f64());
    res
}

/// What the FineTuneJob controller reads instead of asking the API server: the watched
/// proposals, Datanets and trainer Jobs (kept current by their watches).
#[derive(Clone, Debug)]
pub struct Caches {
    /// The shared context.
    pub ctx: Context,
    proposals: Store<ModelProposal>,
    datanets: Store<Datanet>,
    jobs: Store<Job>,
    /// The FineTuneJobs (the controller's own store): which admitted jobs still exist.
    ftjs: Store<FineTuneJob>,
    /// Held while a job is admitted: admissions of one mandate read and write its usage
    /// record one at a time.
    admission: Arc<tokio::sync::Mutex<()>>,
}

impl Caches {
    /// Whether every cache has been filled by its first list: before that a cache is empty,
    /// and "no Job yet" would be wrong.
    fn ready(&self) -> bool {
        use futures::FutureExt;
        self.proposals.wait_until_ready().now_or_never().is_some()
            && self.datanets.wait_until_ready().now_or_never().is_some()
            && self.jobs.wait_until_ready().now_or_never().is_some()
    }
}

async fn reconcile_inner(ftj: Arc<FineTuneJob>, c: &Caches) -> Result<Action, Error> {
    let ctx = &c.ctx;
    let ns = ftj
        .namespace()
        .ok_or_else(|| Error::Invalid("FineTuneJob without a namespace".into()))?;
    let client = ctx.client.clone();
    let current_phase = ftj.status.as_ref().and_then(|s| s.phase);
    let recorded = ftj.status.as_ref().is_some_and(|s| s.chain.is_some()) || ctx.ledger.is_none();
    match current_phase {
        Some(FineTuneJobPhase::Failed) => return Ok(Action::await_change()),
        Some(FineTuneJobPhase::Succeeded | FineTuneJobPhase::TargetsMissed) if recorded => {
            return Ok(Action::await_change());
        }
        _ => {}
    }
    if !c.ready() {
        return Ok(Action::requeue(Duration::from_millis(200)));
    }
    let proposal = c
        .proposals
        .get(&ObjectRef::new(&ftj.spec.proposal_ref.name).within(&ns))
        .map(|p| (*p).clone());
    let datanet = c
        .datanets
        .get(&ObjectRef::new(&ftj.spec.datanet_ref.name).within(&ns))
        .map(|d| (*d).clone());
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
    let name = child_name(&ftj);
    let existing = c
        .jobs
        .get(&ObjectRef::new(&name).within(&ns))
        .map(|j| (*j).clone());
    let recheck = Action::requeue(ctx.config.recheck);

    let admitted = match existing
        .as_ref()
        .map(|j| started(&ftj, proposal.as_ref(), j))
    {
        // Once the Job exists its version is fixed (read from its pod template), and a gate
        // that closes after the trainer started does not stop it. A tenant can create a Job
        // under that name first, so only the version number is taken from it: the data's
        // location and root come from the operator's record of that version.
        Some(mut a) => {
            let published = match &datanet {
                Some(d) => super::lineage::versions(ctx, d).await?,
                None => BTreeMap::new(),
            };
            let rec = published.get(&a.dataset_version);
            a.dataset_uri = rec.map(|r| r.dataset_uri.clone()).unwrap_or_default();
            a.dataset_root = rec.and_then(|r| r.dataset_root.clone());
            // Nor its deadline: that is the GPU time reserved at admission (the operator's
            // usage record), which a tenant editing its Job does not extend.
            let gpus = ftj.spec.resources.workers.max(1) * ftj.spec.resources.gpus_per_worker;
            let reserved = match &proposal {
                Some(p) if gpus > 0 => super::usage::usage(ctx, p)
                    .await?
                    .get(&ftj.uid().unwrap_or_default())
                    .map(|u| (u.reserved_hours / f64::from(gpus) * 3600.0).round() as u64),
                _ => None,
            };
            a.active_deadline_seconds = reserved.or(ftj.spec.run_policy.active_deadline_seconds);
            Ok(a)
        }
        None => {
            let published = match &datanet {
                Some(d) => super::lineage::versions(ctx, d).await?,
                None => BTreeMap::new(),
            };
            match check_gates(
                &ftj.spec,
                proposal.as_ref(),
                datanet.as_ref(),
                &published,
                &ctx.config,
            ) {
                Ok(a) => admit(&ftj, proposal.as_ref(), a, c).await?,
                Err(g) => Err(g),
            }
        }
    };
    let admitted = match admitted {
        Ok(a) => a,
        Err(gate) => {
            let d = Desired {
                phase: FineTuneJobPhase::Pending,
                conditions: desired_conditions(
                    &ftj,
                    &[
                        (GATED, true, gate.reason, &gate.message),
                        (READY, false, gate.reason, &gate.message),
                    ],
                ),
                extra: json!({}),
            };
            write_status(&ftj, ctx, d, Some(("Gated", gate.reason, &gate.message))).await?;
            return Ok(recheck);
        }
    };

    // Without a Job yet, the status is judged from the Job as it will be created, and written
    // while the children are applied: an opened gate shows in one round trip, not two.
    let fresh = existing.is_none();
    let job = match existing {
        Some(j) => j,
        None => {
            let suspend = ftj.spec.run_policy.suspend || ftj.spec.run_policy.queue_name.is_some();
            serde_json::from_value(trainer_job(
                &ftj,
                &ctx.config.trainer_image,
                &admitted,
                suspend,
            ))?
        }
    };
    // runPolicy.suspend toggles the Job when no queue manages it.
    if ftj.spec.run_policy.queue_name.is_none() {
        let want = ftj.spec.run_policy.suspend;
        if job.spec.as_ref().and_then(|s| s.suspend).unwrap_or(false) != want {
            jobs.patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"suspend": want}})),
            )
            .await?;
        }
    }
    let (state, failure) = job_state(&job);
    if let (false, Some(want), JobState::Running | JobState::Suspended) =
        (fresh, admitted.active_deadline_seconds, state)
    {
        let got = job.spec.as_ref().and_then(|s| s.active_deadline_seconds);
        if got.and_then(|g| u64::try_from(g).ok()) != Some(want) {
            jobs.patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"activeDeadlineSeconds": want}})),
            )
            .await?;
            ctx.event(
                &*ftj,
                EventType::Warning,
                "DeadlineRestored",
                format!(
                    "the trainer Job's activeDeadlineSeconds was {}; set back to {want}, the GPU time reserved for this job at admission",
                    got.map_or_else(|| "unset".into(), |g| g.to_string())
                ),
            );
        }
    }
    let hours = gpu_hours(&ftj.spec, &job);
    if matches!(state, JobState::Complete | JobState::Failed) && !fresh {
        finish_usage(&ftj, proposal.as_ref(), hours, ctx).await?;
    }
    let job_status = job.status.clone().unwrap_or_default();
    let mut extra = json!({
        "jobName": name,
        "datasetVersion": admitted.dataset_version,
        "gpuHoursUsed": format!("{hours:.4}"),
    });
    if let Some(r) = &admitted.dataset_root {
        extra["datasetRoot"] = json!(r);
    }
    if let Some(t) = &job_status.start_time {
        extra["startTime"] = json!(t);
    }
    let result = ftj.status.as_ref().and_then(|s| s.result.clone());
    let has_result = result.as_ref().is_some_and(|r| r.model_digest.is_some());
    let clear_gate = (GATED, false, "Admitted", "every gate holds");
    let (d, requeue) = match state {
        JobState::Suspended => {
            let why = if ftj.spec.run_policy.queue_name.is_some() {
                (
                    "AwaitingAdmission",
                    "the trainer Job waits for admission by its Kueue queue",
                )
            } else {
                (
                    "Suspended",
                    "spec.runPolicy.suspend is true; set it to false to run",
                )
            };
            (
                Desired {
                    phase: FineTuneJobPhase::Queued,
                    conditions: desired_conditions(
                        &ftj,
                        &[
                            clear_gate,
                            (SUSPENDED, true, why.0, why.1),
                            (READY, false, why.0, why.1),
                        ],
                    ),
                    extra,
                },
                recheck,
            )
        }
        JobState::Running => (
            Desired {
                phase: FineTuneJobPhase::Running,
                conditions: desired_conditions(
                    &ftj,
                    &[
                        clear_gate,
                        (SUSPENDED, false, "Running", "trainer pods run"),
                        (READY, false, "Training", "trainer pods run"),
                    ],
                ),
                extra,
            },
            recheck,
        ),
        JobState::Failed => {
            let (reason, message) = failure.unwrap_or_default();
            let message =
                format!("the trainer Job failed: {message} (see `kubectl logs job/{name}`)");
            extra["completionTime"] = json!(now());
            (
                Desired {
                    phase: FineTuneJobPhase::Failed,
                    conditions: desired_conditions(
                        &ftj,
                        &[clear_gate, (READY, false, &reason, &message)],
                    ),
                    extra,
                },
                Action::await_change(),
            )
        }
        JobState::Complete if has_result => {
            extra["completionTime"] = json!(job_status.completion_time.clone().unwrap_or_else(now));
            // The trainer's report says it is done; what decides is the operator's evaluation.
            let out = match evaluate(&ftj, ctx, &admitted).await? {
                Evaluated::Done(out) => out,
                Evaluated::Pending(message) => {
                    let d = Desired {
                        phase: FineTuneJobPhase::Evaluating,
                        conditions: desired_conditions(
                            &ftj,
                            &[clear_gate, (READY, false, "Evaluating", &message)],
                        ),
                        extra,
                    };
                    write_status(&ftj, ctx, d, None).await?;
                    return Ok(Action::requeue(Duration::from_secs(2)));
                }
                Evaluated::Failed(reason, message) => {
                    let d = Desired {
                        phase: FineTuneJobPhase::Failed,
                        conditions: desired_conditions(
                            &ftj,
                            &[clear_gate, (READY, false, reason, &message)],
                        ),
                        extra,
                    };
                    write_status(&ftj, ctx, d, Some(("Warning", reason, &message))).await?;
                    return Ok(Action::await_change());
                }
            };
            let values = |m: &BTreeMap<String, f64>| -> BTreeMap<String, String> {
                m.iter().map(|(k, v)| (k.clone(), v.to_string())).collect()
            };
            let metrics = values(&out.metrics);
            let met = admitted.rubric && targets_met(&admitted.targets, &metrics);
            let listed = |m: &BTreeMap<String, String>| -> Vec<serde_json::Value> {
                m.iter()
                    .map(|(k, v)| json!({"name": k, "value": v}))
                    .collect()
            };
            extra["evaluation"] = json!({
                "jobName": evaluation_name(&ftj),
                "namespace": ctx.config.trusted_namespace,
                "examples": out.examples,
                "modelDigest": format!("sha256:{}", out.model_digest),
                "metrics": listed(&metrics),
                "baseline": listed(&out.baseline.as_ref().map(|b| values(&b.metrics)).unwrap_or_default()),
                "targets": admitted.targets,
                "targetsMet": met,
            });
            let mut ledger_note = None;
            if let Some(h) = &ctx.ledger {
                match record_training(&ftj, proposal.as_ref(), &admitted, &out, met, h, ctx).await {
                    Ok(tx) => extra["chain"] = json!({"txHash": tx}),
                    Err(e) => ledger_note = Some(e.to_string()),
                }
            }
            if let Some(why) = ledger_note {
                let message = format!("{why}; the result is recorded on chain when it answers");
                let d = Desired {
                    phase: FineTuneJobPhase::Evaluating,
                    conditions: desired_conditions(
                        &ftj,
                        &[
                            clear_gate,
                            (
                                READY,
                                false,
                                "RecordingResult",
                                "the result is judged; recording it on chain",
                            ),
                            (LEDGER_SYNCED, false, "LedgerUnavailable", &message),
                        ],
                    ),
                    extra,
                };
                write_status(&ftj, ctx, d, None).await?;
                return Ok(Action::requeue(Duration::from_secs(5)));
            }
            let (phase, reason, message) = if met {
                (
                    FineTuneJobPhase::Succeeded,
                    "TargetsMet",
                    "every target is met".to_string(),
                )
            } else {
                let mut missed: Vec<String> = admitted
                    .targets
                    .iter()
                    .filter(|t| !targets_met(std::slice::from_ref(t), &metrics))
                    .map(|t| {
                        format!(
                            "{} {} (wanted {:?} {})",
                            t.name,
                            metrics.get(&t.name).map_or("unmeasured", String::as_str),
                            t.direction,
                            t.threshold
                        )
                    })
                    .collect();
                if !admitted.rubric {
                    missed.push(format!(
                        "the rubric of ModelProposal {} (it no longer exists, so the result cannot be judged by what was approved)",
                        ftj.spec.proposal_ref.name
                    ));
                }
                (
                    FineTuneJobPhase::TargetsMissed,
                    "TargetsMissed",
                    format!("missed: {}", missed.join(", ")),
                )
            };
            (
                Desired {
                    phase,
                    conditions: desired_conditions(
                        &ftj,
                        &[
                            clear_gate,
                            (SUSPENDED, false, "Finished", "trainer finished"),
                            (READY, met, reason, &message),
                        ],
                    ),
                    extra,
                },
                Action::await_change(),
            )
        }
        JobState::Complete => {
            let finished = job_status.completion_time.as_ref().map(|t| t.0);
            let waited = finished.map_or(0.0, |f| {
                k8s_openapi::jiff::Timestamp::now()
                    .duration_since(f)
                    .as_secs_f64()
            });
            if waited > ctx.config.result_grace.as_secs_f64() {
                let message = format!(
                    "the trainer Job completed {waited:.0}s ago without reporting a result; check its logs (`kubectl logs job/{name}`)"
                );
                extra["completionTime"] = json!(now());
                (
                    Desired {
                        phase: FineTuneJobPhase::Failed,
                        conditions: desired_conditions(
                            &ftj,
                            &[clear_gate, (READY, false, "NoResult", &message)],
                        ),
                        extra,
                    },
                    Action::await_change(),
                )
            } else {
                (
                    Desired {
                        phase: FineTuneJobPhase::Evaluating,
                        conditions: desired_conditions(
                            &ftj,
                            &[
                                clear_gate,
                                (
                                    READY,
                                    false,
                                    "AwaitingResult",
                                    "the trainer finished; waiting for its evaluation result",
                                ),
                            ],
                        ),
                        extra,
                    },
                    Action::requeue(Duration::from_secs(5)),
                )
            }
        }
    };
    if !fresh {
        write_status(&ftj, ctx, d, None).await?;
        return Ok(requeue);
    }
    let (applied, written) = futures::join!(
        apply_children(&ftj, ctx, &admitted),
        write_status(&ftj, ctx, d, None)
    );
    if let Err(e) = applied {
        // Not created (a quota, an admission webhook, …): say so instead of the status
        // written beside it, and try again.
        let message = format!("creating the trainer Job {name} failed: {e}; retrying");
        let d = Desired {
            phase: FineTuneJobPhase::Pending,
            conditions: desired_conditions(&ftj, &[(READY, false, "JobNotCreated", &message)]),
            extra: json!({}),
        };
        write_status(&ftj, ctx, d, None).await?;
        ctx.event(&*ftj, EventType::Warning, "JobNotCreated", message);
        return Err(e);
    }
    written?;
    tracing::info!(job = %name, dataset_version = admitted.dataset_version, "trainer Job created");
    Ok(requeue)
}

/// Admission against the mandate (after the other gates): the job's GPUs must fit under
/// `maxConcurrentGpus` beside what the mandate's other admitted jobs hold, and its GPU-hours
/// under what is left of `gpuHours` — both from the operator's usage record, never from a
/// status. The job is reserved its GPUs × its deadline, and its Job gets that deadline (the
/// job's own, capped by what is left), so it cannot run past the budget. Jobs without GPUs
/// charge nothing.
async fn admit(
    ftj: &FineTuneJob,
    proposal: Option<&ModelProposal>,
    mut a: Admitted,
    c: &Caches,
) -> Result<Result<Admitted, Gate>, Error> {
    use super::usage::{self, JobUsage};
    let Some(p) = proposal else {
        return Ok(Ok(a));
    };
    let ctx = &c.ctx;
    // The vote decides, not the proposal's status (which a tenant can write): with a chain,
    // the mandate must be ratified there.
    if let Some(h) = &ctx.ledger {
        let model = crate::ledger::ids::model_id(&p.uid().unwrap_or_default());
        if !h.ledger.ratified(h.suite.registry, model).await? {
            return Ok(Err(Gate {
                reason: "ProposalNotApproved",
                message: format!(
                    "the chain has not ratified ModelProposal {}'s mandate (whatever its status says); training starts by itself once token holders approve it",
                    p.name_any()
                ),
            }));
        }
    }
    let spec = &ftj.spec;
    let gpus = spec.resources.workers.max(1) * spec.resources.gpus_per_worker;
    if gpus == 0 {
        return Ok(Ok(a));
    }
    let uid = ftj.uid().unwrap_or_default();
    let _one_at_a_time = c.admission.lock().await;
    let record = usage::usage(ctx, p).await?;
    if let Some(mine) = record.get(&uid) {
        // Admitted before (its Job was not created, or not seen yet): the same reservation.
        a.active_deadline_seconds =
            Some((mine.reserved_hours / f64::from(gpus.max(1)) * 3600.0).round() as u64);
        return Ok(Ok(a));
    }
    let live = |u: &str| c.ftjs.state().iter().any(|f| f.uid().as_deref() == Some(u));
    let (held, charged, holders) = usage::held(&record, &uid, &live);
    let budget = &p.spec.mandate.budget;
    if held + gpus > budget.max_concurrent_gpus {
        return Ok(Err(Gate {
            reason: "GpuLimitReached",
            message: format!(
                "ModelProposal {} allows {} GPUs at once; {held} are held by {} and this job needs {gpus}: it starts by itself when they finish",
                p.name_any(),
                budget.max_concurrent_gpus,
                holders.join(", ")
            ),
        }));
    }
    let total: f64 = budget.gpu_hours.parse().unwrap_or(0.0);
    let left = total - charged;
    let cap = (left.max(0.0) / f64::from(gpus) * 3600.0).floor() as u64;
    if cap < 60 {
        return Ok(Err(Gate {
            reason: "BudgetExhausted",
            message: format!(
                "ModelProposal {} has {:.2} of its {total} GPU-hours left ({charged:.2} used or reserved by its jobs): not a minute for this job's {gpus} GPUs; raise the mandate's budget through governance",
                p.name_any(),
                left.max(0.0)
            ),
        }));
    }
    let deadline = spec
        .run_policy
        .active_deadline_seconds
        .unwrap_or(DEFAULT_DEADLINE_SECONDS)
        .min(cap);
    usage::record(
        ctx,
        p,
        &uid,
        &JobUsage {
            job: format!("{}/{}", ftj.namespace().unwrap_or_default(), ftj.name_any()),
            gpus,
            reserved_hours: f64::from(gpus) * deadline as f64 / 3600.0,
            used_hours: None,
        },
    )
    .await?;
    a.active_deadline_seconds = Some(deadline);
    Ok(Ok(a))
}

/// Records what a finished job used (once): its GPUs for the time its Job ran.
async fn finish_usage(
    ftj: &FineTuneJob,
    proposal: Option<&ModelProposal>,
    hours: f64,
    ctx: &Context,
) -> Result<(), Error> {
    use super::usage;
    let Some(p) = proposal else { return Ok(()) };
    let uid = ftj.uid().unwrap_or_default();
    let record = usage::usage(ctx, p).await?;
    if let Some(u) = record.get(&uid).filter(|u| u.active()) {
        let mut u = u.clone();
        u.used_hours = Some(hours);
        usage::record(ctx, p, &uid, &u).await?;
    }
    Ok(())
}

/// Records the judged result on chain once (job id from the object's uid and generation):
/// dataset root → model digest → metrics hash → passed. Returns the transaction (or, when an
/// earlier attempt already recorded it, the record's id).
async fn record_training(
    ftj: &FineTuneJob,
    proposal: Option<&ModelProposal>,
    admitted: &Admitted,
    evaluation: &EvalOutput,
    passed: bool,
    h: &super::LedgerHandle,
    ctx: &Context,
) -> Result<String, Error> {
    use crate::ledger::ids::{model_id, training_id};
    let proposal_uid = proposal.and_then(|p| p.uid()).ok_or_else(|| {
        Error::Invalid(format!(
            "ModelProposal {} is gone: the result cannot be recorded under its model",
            ftj.spec.proposal_ref.name
        ))
    })?;
    // The evaluation's metrics, by name, as the decimal strings the status shows.
    let metrics: BTreeMap<&str, String> = evaluation
        .metrics
        .iter()
        .map(|(k, v)| (k.as_str(), v.to_string()))
        .collect();
    let hex32 = |s: Option<&str>| -> alloy::primitives::B256 {
        s.map(|s| s.trim_start_matches("sha256:"))
            .and_then(|s| s.parse().ok())
            .unwrap_or_default()
    };
    let job_id = training_id(
        &ftj.uid().unwrap_or_default(),
        ftj.metadata.generation.unwrap_or(0),
    );
    let req = crate::ledger::mirror::RecordTraining {
        job_id,
        model_id: model_id(&proposal_uid),
        dataset_root: hex32(admitted.dataset_root.as_deref()),
        model_digest: hex32(Some(&evaluation.model_digest)),
        metrics_hash: alloy::primitives::keccak256(serde_json::to_vec(&metrics)?),
        passed,
    };
    let w = ctx
        .ledger_write(
            "ModelRegistry.recordTraining",
            h.ledger.record_training(h.suite.registry, &req),
        )
        .await?;
    Ok(match w {
        crate::ledger::mirror::Write::Written { tx } => tx.to_string(),
        crate::ledger::mirror::Write::AlreadyDone => h
            .ledger
            .training_tx(h.suite.registry, job_id)
            .await?
            .map_or_else(|| format!("recorded as {job_id}"), |t| t.to_string()),
    })
}

/// A started job: its dataset version, root and location as the operator created its Job
/// with (the pod template's environment; a Job made before these were set falls back to the
/// status), judged by the rubric tightened by its targets (see [`targets`]).
fn started(ftj: &FineTuneJob, proposal: Option<&ModelProposal>, job: &Job) -> Admitted {
    let env: BTreeMap<String, String> = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.containers.first())
        .and_then(|c| c.env.clone())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| Some((e.name, e.value?)))
        .collect();
    let st = ftj.status.clone().unwrap_or_default();
    Admitted {
        dataset_version: env
            .get(DATASET_VERSION_ENV)
            .and_then(|v| v.parse().ok())
            .or(st.dataset_version)
            .unwrap_or_default(),
        dataset_root: env
            .get(DATASET_ROOT_ENV)
            .filter(|r| !r.is_empty())
            .cloned()
            .or(st.dataset_root),
        dataset_uri: env.get(DATASET_URI_ENV).cloned().unwrap_or_default(),
        targets: targets(&ftj.spec, proposal),
        rubric: proposal.is_some(),
        active_deadline_seconds: job
            .spec
            .as_ref()
            .and_then(|s| s.active_deadline_seconds)
            .and_then(|d| u64::try_from(d).ok()),
    }
}

async fn apply_children(
    ftj: &FineTuneJob,
    ctx: &Context,
    admitted: &Admitted,
) -> Result<Job, Error> {
    let ns = ftj.namespace().unwrap_or_default();
    let name = child_name(ftj);
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let labels = json!({LABEL_MANAGED_BY: "modelcommons-operator", LABEL_INSTANCE: ftj.name_any()});
    let config = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns, "labels": labels, "ownerReferences": [owner(ftj)]},
        "data": {
            "args.json": serde_json::to_string(&trainer_args(&ftj.spec, &container_path(&train_uri(&admitted.dataset_uri)).unwrap_or_default()))?,
            "targets.json": serde_json::to_string(&admitted.targets)?,
            "dataset.json": serde_json::to_string(&json!({"version": admitted.dataset_version, "root": admitted.dataset_root, "uri": admitted.dataset_uri}))?,
        }
    });
    // The three children do not depend on each other: one round trip, not three.
    let configmaps = Api::<ConfigMap>::namespaced(ctx.client.clone(), &ns);
    let services = Api::<Service>::namespaced(ctx.client.clone(), &ns);
    let jobs = Api::<Job>::namespaced(ctx.client.clone(), &ns);
    let suspend = ftj.spec.run_policy.suspend || ftj.spec.run_policy.queue_name.is_some();
    let job = trainer_job(ftj, &ctx.config.trainer_image, admitted, suspend);
    let svc = (ftj.spec.resources.workers > 1).then(|| json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "labels": labels, "ownerReferences": [owner(ftj)]},
        "spec": {"clusterIP": "None", "publishNotReadyAddresses": true,
            "selector": {LABEL_INSTANCE: ftj.name_any()},
            "ports": [{"name": "rendezvous", "port": 29500}]}
    }));
    // The identity first, in order: the Job's pods are refused until the account exists,
    // and a binding is checked against the Role it names (which must exist by then).
    let [account, role, binding] = trainer_identity(ftj);
    let account_name = trainer_account(ftj);
    Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(ctx.client.clone(), &ns)
        .patch(&account_name, &pp, &Patch::Apply(&account))
        .await?;
    Api::<k8s_openapi::api::rbac::v1::Role>::namespaced(ctx.client.clone(), &ns)
        .patch(&account_name, &pp, &Patch::Apply(&role))
        .await?;
    Api::<k8s_openapi::api::rbac::v1::RoleBinding>::namespaced(ctx.client.clone(), &ns)
        .patch(&account_name, &pp, &Patch::Apply(&binding))
        .await?;
    let (config, job) = (Patch::Apply(&config), Patch::Apply(&job));
    let (_, _, job) = futures::try_join!(
        configmaps.patch(&name, &pp, &config),
        async {
            match &svc {
                Some(svc) => services
                    .patch(&name, &pp, &Patch::Apply(svc))
                    .await
                    .map(Some),
                None => Ok(None),
            }
        },
        jobs.patch(&name, &pp, &job),
    )?;
    Ok(job)
}

/// Writes the status when it differs from what is there; an event on phase changes.
async fn write_status(
    ftj: &FineTuneJob,
    ctx: &Context,
    d: Desired,
    gate: Option<(&str, &str, &str)>,
) -> Result<(), Error> {
    let status = ftj.status.clone().unwrap_or_default();
    let mut body = d.extra.clone();
    body["phase"] = json!(d.phase);
    body["observedGeneration"] = json!(ftj.metadata.generation);
    body["conditions"] = json!(d.conditions);
    let current = serde_json::to_value(&status)?;
    let changed = body
        .as_object()
        .map(|o| {
            o.iter().any(|(k, v)| match (k.as_str(), v) {
                ("result", v) => {
                    current.get("result").and_then(|r| r.get("targetsMet")) != v.get("targetsMet")
                }
                (k, v) => current.get(k) != Some(v),
            })
        })
        .unwrap_or(true);
    if !changed {
        return Ok(());
    }
    let patch = json!({"apiVersion": FineTuneJob::api_version(&()), "kind": FineTuneJob::kind(&()), "status": body});
    Api::<FineTuneJob>::namespaced(ctx.client.clone(), &ftj.namespace().unwrap_or_default())
        .patch_status(
            &ftj.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    if status.phase != Some(d.phase) {
        let (type_, reason, note) = match gate {
            Some((_, reason, message)) => {
                (EventType::Warning, reason.to_string(), message.to_string())
            }
            None => {
                let ready = d.conditions.iter().find(|c| c.type_ == READY);
                let note = match (body.get("jobName").and_then(|j| j.as_str()), ready) {
                    (Some(job), Some(c)) => format!("{} (Job {job})", c.message),
                    (None, Some(c)) => c.message.clone(),
                    _ => format!("phase {:?}", d.phase),
                };
                (EventType::Normal, format!("{:?}", d.phase), note)
            }
        };
        ctx.event(ftj, type_, &reason, note);
    }
    Ok(())
}

fn error_policy(_ftj: Arc<FineTuneJob>, err: &Error, _ctx: Arc<Caches>) -> Action {
    tracing::warn!(error = %err, "FineTuneJob reconcile failed");
    Action::requeue(Duration::from_secs(5))
}

/// Drops what no reconcile reads (managed fields, the last-applied annotation) before an
/// object enters a cache: a good part of a typical object, times every object watched.
pub(crate) fn slim<K: Resource>(o: &mut K) {
    o.meta_mut().managed_fields = None;
    if let Some(a) = o.meta_mut().annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// A watch of `api` that keeps `writer`'s cache (objects slimmed by `trim` first) and yields
/// every object it touches.
pub(crate) fn cached<K>(
    api: Api<K>,
    wc: watcher::Config,
    writer: reflector::store::Writer<K>,
    trim: fn(&mut K),
) -> impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    watcher(api, wc)
        .default_backoff()
        .modify(move |o| {
            slim(o);
            trim(o);
        })
        .reflect(writer)
        .touched_objects()
}

/// What the controllers read of a Job is its status, `suspend` and metadata: the pod template
/// (args, env, volumes — most of a trainer Job) stays out of the cache.
pub(crate) fn trim_job(j: &mut Job) {
    if let Some(spec) = j.spec.as_mut() {
        // All a reconcile reads of the pod template is its lineage (see `started`).
        let lineage: Vec<_> = spec
            .template
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .and_then(|c| c.env.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|e| {
                [DATASET_URI_ENV, DATASET_VERSION_ENV, DATASET_ROOT_ENV].contains(&e.name.as_str())
            })
            .collect();
        spec.template = Default::default();
        if !lineage.is_empty() {
            spec.template.spec = Some(k8s_openapi::api::core::v1::PodSpec {
                containers: vec![k8s_openapi::api::core::v1::Container {
                    env: Some(lineage),
                    ..Default::default()
                }],
                ..Default::default()
            });
        }
    }
}

/// No trimming beyond [`slim`].
pub(crate) fn keep<K>(_: &mut K) {}

/// Runs the controller until the stream ends.
pub async fn run(ctx: Context) {
    let client = ctx.client.clone();
    let (ftjs, jobs, proposals, datanets) = match &ctx.config.namespace {
        Some(ns) => (
            Api::<FineTuneJob>::namespaced(client.clone(), ns),
            Api::<Job>::namespaced(client.clone(), ns),
            Api::<ModelProposal>::namespaced(client.clone(), ns),
            Api::<Datanet>::namespaced(client.clone(), ns),
        ),
        None => (
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
        ),
    };
    let wc = watcher::Config::default;
    let (ftj_store, ftj_writer) = reflector::store();
    let (proposal_store, proposal_writer) = reflector::store();
    let (datanet_store, datanet_writer) = reflector::store();
    let (job_store, job_writer) = reflector::store();
    let by_proposal = ftj_store.clone();
    let by_datanet = ftj_store.clone();
    let caches = Caches {
        ctx,
        proposals: proposal_store,
        datanets: datanet_store,
        jobs: job_store,
        ftjs: ftj_store.clone(),
        admission: Arc::default(),
    };
    Controller::for_stream(cached(ftjs, wc(), ftj_writer, keep), ftj_store)
        .owns_stream(cached(
            jobs,
            wc().labels(LABEL_INSTANCE),
            job_writer,
            trim_job,
        ))
        .watches_stream(
            cached(proposals, wc(), proposal_writer, keep),
            move |p: ModelProposal| {
                let ns = p.namespace();
                by_proposal
                    .state()
                    .into_iter()
                    .filter(|f| f.namespace() == ns && f.spec.proposal_ref.name == p.name_any())
                    .map(|f| ObjectRef::from_obj(&*f))
                    .collect::<Vec<_>>()
            },
        )
        .watches_stream(
            cached(datanets, wc(), datanet_writer, keep),
            move |d: Datanet| {
                let ns = d.namespace();
                by_datanet
                    .state()
                    .into_iter()
                    .filter(|f| f.namespace() == ns && f.spec.datanet_ref.name == d.name_any())
                    .map(|f| ObjectRef::from_obj(&*f))
                    .collect::<Vec<_>>()
            },
        )
        .shutdown_on_signal()
        .run(reconcile, error_policy, Arc::new(caches))
        .for_each(super::log_result)
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_map_to_container_paths() {
        assert_eq!(container_path("file:///data/x").as_deref(), Some("/data/x"));
        assert_eq!(
            container_path("pvc://models/tiny").as_deref(),
            Some("/mnt/pvc/models/tiny")
        );
        assert_eq!(
            container_path("pvc://models").as_deref(),
            Some("/mnt/pvc/models")
        );
        assert_eq!(container_path("s3://b/k"), None);
        assert_eq!(container_path("file://relative"), None);
    }

    #[test]
    fn host_paths_only_under_the_dev_directory_and_only_allowed_trainer_images() {
        let dev = &[PathBuf::from("/srv/dev")][..];
        for uri in [
            "file:///var/lib/kubelet",
            "file:///srv/dev/../../etc",
            "file:///",
        ] {
            let g = workload_uri_allowed(uri, dev).err();
            assert_eq!(g.map(|g| g.reason), Some("HostPathRefused"), "{uri}");
        }
        assert!(workload_uri_allowed("file:///srv/dev/models/a", dev).is_ok());
        assert!(workload_uri_allowed("pvc://models/a", &[]).is_ok());
        let g = workload_uri_allowed("file:///srv/dev/models/a", &[]).err();
        assert!(g.is_some_and(|g| g.message.contains("pvc://")));

        let mut spec: FineTuneJobSpec = serde_yaml::from_str(
            &std::fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../examples/contract-review/04-finetune.yaml"),
            )
            .unwrap_or_default(),
        )
        .map(|f: FineTuneJob| f.spec)
        .unwrap_or_else(|e| panic!("{e}"));
        let mut config = super::super::Config::default();
        spec.trainer_image = Some("attacker.example/trainer:latest".into());
        let g = trainer_image_allowed(&spec, &config).err();
        assert_eq!(g.map(|g| g.reason), Some("TrainerImageNotAllowed"));
        config.allowed_trainer_images = vec!["attacker.example/trainer:latest".into()];
        assert!(trainer_image_allowed(&spec, &config).is_ok());
        spec.trainer_image = Some(config.trainer_image.clone());
        assert!(trainer_image_allowed(&spec, &super::super::Config::default()).is_ok());
    }

    #[test]
    fn the_trainer_may_patch_its_own_jobs_status_and_nothing_else() {
        let mut f: FineTuneJob = serde_yaml::from_str(
            &std::fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../examples/contract-review/04-finetune.yaml"),
            )
            .unwrap_or_default(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        f.metadata.uid = Some("uid-1".into());
        let [account, role, binding] = trainer_identity(&f);
        let name = trainer_account(&f);
        assert_eq!(account["metadata"]["name"], json!(name));
        assert_eq!(
            role["rules"],
            json!([{"apiGroups": ["modelcommons.dev"], "resources": ["finetunejobs/status"],
                "resourceNames": [f.name_any()], "verbs": ["patch"]}])
        );
        assert_eq!(binding["roleRef"]["name"], json!(name));
        assert_eq!(binding["subjects"][0]["name"], json!(name));
        let job = trainer_job(
            &f,
            "trainer:1",
            &Admitted {
                dataset_version: 1,
                dataset_root: None,
                dataset_uri: "pvc://artifacts/d".into(),
                targets: vec![],
                rubric: true,
                active_deadline_seconds: None,
            },
            false,
        );
        let pod = &job["spec"]["template"]["spec"];
        assert_eq!(pod["serviceAccountName"], json!(name));
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"],
            json!("RuntimeDefault")
        );
    }

    fn example<T: serde::de::DeserializeOwned>(file: &str) -> T {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples/contract-review")
            .join(file);
        serde_yaml::from_str(&std::fs::read_to_string(path).unwrap_or_default())
            .unwrap_or_else(|e| panic!("{file}: {e}"))
    }

    #[test]
    fn job_targets_tighten_the_rubric_and_never_loosen_it() {
        let p: ModelProposal = example("01-proposal.yaml");
        let mut f: FineTuneJob = example("04-finetune.yaml");
        let t = |name: &str, direction, threshold: &str| MetricTarget {
            name: name.into(),
            direction,
            threshold: threshold.into(),
        };
        // The rubric: loss <= 2.5, exactMatch >= 0.6.
        f.spec.targets = vec![
            t("loss", Direction::Minimize, "100"),
            t("exactMatch", Direction::Maximize, "0.8"),
            t("perplexity", Direction::Minimize, "9"),
        ];
        let got = targets(&f.spec, Some(&p));
        assert_eq!(
            got,
            vec![
                t("loss", Direction::Minimize, "2.5"),
                t("exactMatch", Direction::Maximize, "0.8"),
                t("perplexity", Direction::Minimize, "9"),
            ],
            "a looser loss keeps the rubric's, a stricter exactMatch wins, a new metric adds"
        );
        f.spec.targets.clear();
        assert_eq!(
            targets(&f.spec, Some(&p)),
            p.spec.mandate.evaluation.metrics
        );
    }

    #[test]
    fn targets_are_judged_with_their_direction() {
        let t = |name: &str, direction, threshold: &str| MetricTarget {
            name: name.into(),
            direction,
            threshold: threshold.into(),
        };
        let targets = vec![
            t("loss", Direction::Minimize, "2.0"),
            t("exactMatch", Direction::Maximize, "0.6"),
        ];
        let m = |l: &str, e: &str| {
            BTreeMap::from([
                ("loss".to_string(), l.to_string()),
                ("exactMatch".to_string(), e.to_string()),
            ])
        };
        assert!(targets_met(&targets, &m("1.5", "0.6")));
        assert!(!targets_met(&targets, &m("2.5", "0.9")));
        assert!(!targets_met(&targets, &m("1.0", "0.5")));
        assert!(!targets_met(&targets, &BTreeMap::new()), "unmeasured fails");
    }
}
