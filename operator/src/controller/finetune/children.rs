//! The typed children of a FineTuneJob: the trainer's identity (ServiceAccount, Role,
//! RoleBinding), its configuration (ConfigMap), the Indexed trainer Job with torchrun-style
//! env, a headless Service for several workers, and the operator's evaluation Job in its
//! trusted namespace. Pure builders (no I/O).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, HostPathVolumeSource,
    ObjectFieldSelector, PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec,
    ResourceRequirements, Service, ServiceAccount, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use modelcommons_crds::contract::{
    EVAL_RESULT_FILE, PVC_ROOT, TRAINER_BIN, container_path, eval_args, train_args,
};
use modelcommons_crds::finetune::{FineTuneJob, reason};

use super::gates::{Admitted, Gate};
use super::{
    DATASET_ROOT_ENV, DATASET_URI_ENV, DATASET_VERSION_ENV, KUEUE_QUEUE_LABEL, LABEL_EVALUATES,
};
use crate::controller::{Config, LABEL_INSTANCE, LABEL_MANAGED_BY};
use crate::runtime::children::{
    MANAGED_BY, NONROOT_UID, meta, restricted_container, restricted_pod, trusted_job,
};

const APP_NAME: &str = "app.kubernetes.io/name";
/// The port the workers rendezvous on (`PET_MASTER_PORT`).
pub const RENDEZVOUS_PORT: i32 = 29500;

/// The name of the trainer Job, its ServiceAccount, ConfigMap and Service.
pub fn child_name(ftj: &FineTuneJob) -> String {
    format!("{}-trainer", ftj.name_any())
}

/// The ServiceAccount the trainer pods of `ftj` run as (named as its Job).
pub fn trainer_account(ftj: &FineTuneJob) -> String {
    child_name(ftj)
}

/// The part of a curated dataset a trainer pod mounts.
pub fn train_uri(dataset_uri: &str) -> String {
    format!(
        "{}/{}",
        dataset_uri.trim_end_matches('/'),
        crate::controller::datanet::TRAIN_DIR
    )
}

/// The evaluation Job of `ftj`: named by its uid, in the operator's trusted namespace.
pub fn evaluation_name(ftj: &FineTuneJob) -> String {
    format!("eval-{}", ftj.uid().unwrap_or_default())
}

/// Volumes for the file:// and pvc:// locations a pod reads and writes: a hostPath per
/// `file://` location at its own path, one claim per `pvc://` claim at `/mnt/pvc/<claim>`.
pub fn volumes(uris: &[&str]) -> (Vec<Volume>, Vec<VolumeMount>) {
    let (mut vols, mut mounts) = (Vec::new(), Vec::new());
    let mut seen = BTreeSet::new();
    for uri in uris {
        let (name, vol, mount) = if let Some(p) = uri.strip_prefix("file://") {
            let n = format!("host-{}", seen.len());
            let vol = Volume {
                name: n.clone(),
                host_path: Some(HostPathVolumeSource {
                    path: p.into(),
                    type_: Some("DirectoryOrCreate".into()),
                }),
                ..Default::default()
            };
            (n, vol, p.to_string())
        } else if let Some(rest) = uri.strip_prefix("pvc://") {
            let claim = rest.split('/').next().unwrap_or_default();
            if !seen.insert(claim.to_string()) {
                continue;
            }
            let n = format!("pvc-{claim}");
            let vol = Volume {
                name: n.clone(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim.into(),
                    ..Default::default()
                }),
                ..Default::default()
            };
            (n, vol, format!("{PVC_ROOT}/{claim}"))
        } else {
            continue;
        };
        seen.insert(name.clone());
        vols.push(vol);
        mounts.push(VolumeMount {
            name,
            mount_path: mount,
            ..Default::default()
        });
    }
    (vols, mounts)
}

fn resources(cpu: &str, memory: &str, gpus: u32) -> ResourceRequirements {
    let mut requests = BTreeMap::from([
        ("cpu".to_string(), Quantity(cpu.into())),
        ("memory".to_string(), Quantity(memory.into())),
    ]);
    let mut limits = None;
    if gpus > 0 {
        requests.insert("nvidia.com/gpu".into(), Quantity(gpus.to_string()));
        limits = Some(BTreeMap::from([(
            "nvidia.com/gpu".to_string(),
            Quantity(gpus.to_string()),
        )]));
    }
    ResourceRequirements {
        requests: Some(requests),
        limits,
        ..Default::default()
    }
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    }
}

/// The trainer's environment: who it reports to, torchrun's rendezvous, the lineage.
fn trainer_env(ftj: &FineTuneJob, admitted: &Admitted) -> Vec<EnvVar> {
    let name = child_name(ftj);
    let ns = ftj.namespace().unwrap_or_default();
    let r = &ftj.spec.resources;
    vec![
        env("MODELCOMMONS_FINETUNEJOB", ftj.name_any()),
        env("MODELCOMMONS_NAMESPACE", ns.clone()),
        env("PET_NNODES", r.workers.max(1).to_string()),
        env("PET_NPROC_PER_NODE", r.gpus_per_worker.max(1).to_string()),
        EnvVar {
            name: "PET_NODE_RANK".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.annotations['batch.kubernetes.io/job-completion-index']"
                        .into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
        env("PET_MASTER_ADDR", format!("{name}-0.{name}.{ns}.svc")),
        env("PET_MASTER_PORT", RENDEZVOUS_PORT.to_string()),
        env(DATASET_URI_ENV, admitted.dataset_uri.clone()),
        env(DATASET_VERSION_ENV, admitted.dataset_version.to_string()),
        env(
            DATASET_ROOT_ENV,
            admitted.dataset_root.clone().unwrap_or_default(),
        ),
    ]
}

/// The Indexed trainer Job (one pod per worker).
pub fn trainer_job(ftj: &FineTuneJob, image: &str, admitted: &Admitted, suspend: bool) -> Job {
    let spec = &ftj.spec;
    let name = child_name(ftj);
    let workers = i32::try_from(spec.resources.workers.max(1)).unwrap_or(i32::MAX);
    let mut extra = vec![(APP_NAME, "modelcommons-trainer")];
    if let Some(q) = &spec.run_policy.queue_name {
        extra.push((KUEUE_QUEUE_LABEL, q.as_str()));
    }
    let metadata = meta(ftj, &name, &extra);
    Job {
        spec: Some(JobSpec {
            completion_mode: Some("Indexed".into()),
            completions: Some(workers),
            parallelism: Some(workers),
            backoff_limit: Some(i32::try_from(spec.run_policy.backoff_limit).unwrap_or(i32::MAX)),
            suspend: Some(suspend),
            active_deadline_seconds: admitted
                .active_deadline_seconds
                .map(|d| i64::try_from(d).unwrap_or(i64::MAX)),
            ttl_seconds_after_finished: spec
                .run_policy
                .ttl_seconds_after_finished
                .map(|t| i32::try_from(t).unwrap_or(i32::MAX)),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: metadata.labels.clone(),
                    ..Default::default()
                }),
                spec: Some(trainer_pod(ftj, image, admitted)),
            },
            ..Default::default()
        }),
        metadata,
        ..Default::default()
    }
}

/// A trainer pod: `modelcommons-trainer train`, reporting under its own account.
fn trainer_pod(ftj: &FineTuneJob, image: &str, admitted: &Admitted) -> PodSpec {
    let spec = &ftj.spec;
    // The trainer mounts the dataset's train/ directory only: the held-out records beside it
    // are the operator's evaluation's.
    let train_uri = train_uri(&admitted.dataset_uri);
    let dataset_dir = container_path(&train_uri).unwrap_or_default();
    let (vols, mounts) = volumes(&[&spec.base_model.uri, &train_uri, &spec.output_uri]);
    let mut security = restricted_pod();
    security.fs_group = Some(NONROOT_UID);
    let mut container_security = restricted_container();
    // The trainer writes checkpoints and caches under its home.
    container_security.read_only_root_filesystem = None;
    PodSpec {
        restart_policy: Some("Never".into()),
        subdomain: Some(child_name(ftj)),
        // The trainer reports under its own account, allowed to patch this job's status and
        // nothing else (see trainer_identity).
        service_account_name: Some(trainer_account(ftj)),
        automount_service_account_token: Some(true),
        security_context: Some(security),
        containers: vec![Container {
            name: "trainer".into(),
            image: Some(spec.trainer_image.clone().unwrap_or_else(|| image.into())),
            command: Some(vec![TRAINER_BIN.into()]),
            args: Some(train_args(spec, &dataset_dir)),
            env: Some(trainer_env(ftj, admitted)),
            resources: Some(resources(
                spec.resources.cpu.as_deref().unwrap_or("4"),
                spec.resources.memory.as_deref().unwrap_or("16Gi"),
                spec.resources.gpus_per_worker,
            )),
            volume_mounts: Some(mounts),
            security_context: Some(container_security),
            ..Default::default()
        }],
        volumes: Some(vols),
        ..Default::default()
    }
}

/// The trainer's least-privilege identity: a ServiceAccount, and a Role (with its binding)
/// that allows `patch` on this FineTuneJob's status alone (`resourceNames`) — what the
/// trainer's progress and result reports need, and nothing of any other job.
pub fn trainer_identity(ftj: &FineTuneJob) -> (ServiceAccount, Role, RoleBinding) {
    let name = trainer_account(ftj);
    let m = meta(ftj, &name, &[]);
    (
        ServiceAccount {
            metadata: m.clone(),
            ..Default::default()
        },
        Role {
            metadata: m.clone(),
            rules: Some(vec![PolicyRule {
                api_groups: Some(vec![modelcommons_crds::GROUP.into()]),
                resources: Some(vec!["finetunejobs/status".into()]),
                resource_names: Some(vec![ftj.name_any()]),
                verbs: vec!["patch".into()],
                ..Default::default()
            }]),
        },
        RoleBinding {
            metadata: m,
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "Role".into(),
                name: name.clone(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".into(),
                name,
                namespace: ftj.namespace(),
                ..Default::default()
            }]),
        },
    )
}

/// What the job was started with, for people reading it: the trainer's arguments, the
/// targets, the dataset version.
pub fn training_config(ftj: &FineTuneJob, admitted: &Admitted) -> ConfigMap {
    let dataset_dir = container_path(&train_uri(&admitted.dataset_uri)).unwrap_or_default();
    #[derive(serde::Serialize)]
    struct Dataset<'a> {
        version: u32,
        root: &'a Option<String>,
        uri: &'a str,
    }
    let dataset = Dataset {
        version: admitted.dataset_version,
        root: &admitted.dataset_root,
        uri: &admitted.dataset_uri,
    };
    ConfigMap {
        metadata: meta(ftj, &child_name(ftj), &[]),
        data: Some(BTreeMap::from([
            (
                "args.json".to_string(),
                text(&train_args(&ftj.spec, &dataset_dir)),
            ),
            ("targets.json".to_string(), text(&admitted.targets)),
            ("dataset.json".to_string(), text(&dataset)),
        ])),
        ..Default::default()
    }
}

/// A value as JSON text (for a ConfigMap).
fn text<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// The headless Service the workers of a multi-worker job rendezvous through.
pub fn rendezvous_service(ftj: &FineTuneJob) -> Service {
    Service {
        metadata: meta(ftj, &child_name(ftj), &[]),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(BTreeMap::from([(
                LABEL_INSTANCE.to_string(),
                ftj.name_any(),
            )])),
            ports: Some(vec![ServicePort {
                name: Some("rendezvous".into()),
                port: RENDEZVOUS_PORT,
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The locations the operator's evaluation reads, or why it cannot.
fn evaluation_inputs<'a>(
    ftj: &'a FineTuneJob,
    config: &Config,
    admitted: &'a Admitted,
) -> Result<[&'a str; 3], Gate> {
    let spec = &ftj.spec;
    if admitted.dataset_uri.is_empty() {
        return Err(Gate {
            reason: reason::LINEAGE_UNKNOWN,
            message: format!(
                "the trainer Job {} names no dataset version the operator published (it was made by an older operator, or not by the operator), so there are no held-out records to judge it by; delete the Job and this FineTuneJob and create it again",
                child_name(ftj)
            ),
        });
    }
    let uris = [
        spec.output_uri.as_str(),
        spec.base_model.uri.as_str(),
        admitted.dataset_uri.as_str(),
    ];
    if let Some(u) = uris.iter().find(|u| !u.starts_with("file://")) {
        return Err(Gate {
            reason: reason::EVALUATION_STORAGE_UNSUPPORTED,
            message: format!(
                "{u}: the operator evaluates trained models in its own namespace ({}), which cannot mount a claim of this one; until object stores are supported for models, evaluation reads file:// locations under the operator's dev host directories only",
                config.trusted_namespace
            ),
        });
    }
    Ok(uris)
}

/// The operator's evaluation of a trained model: its own trainer image (never
/// `spec.trainerImage`), in its trusted namespace (`config.trusted_namespace`, where tenants
/// neither exec nor read), reading the output, the base model (the baseline, and the base of
/// a LoRA output) and the dataset version's `holdout.jsonl`, all read-only. No API access:
/// the result is the pod's termination message, taken only from a pod of this Job.
pub fn evaluation_job(
    ftj: &FineTuneJob,
    config: &Config,
    admitted: &Admitted,
) -> Result<Job, Gate> {
    let spec = &ftj.spec;
    let uris = evaluation_inputs(ftj, config, admitted)?;
    let (mut vols, mut mounts) = volumes(&uris);
    for m in &mut mounts {
        m.read_only = Some(true);
    }
    for h in vols.iter_mut().filter_map(|v| v.host_path.as_mut()) {
        h.type_ = Some("Directory".into());
    }
    // The evaluation copies the model here, then hashes and loads the copy: a writer of the
    // output cannot swap the weights between the two.
    vols.push(Volume {
        name: "scratch".into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    });
    mounts.push(VolumeMount {
        name: "scratch".into(),
        mount_path: "/tmp".into(),
        ..Default::default()
    });
    let gpus = u32::from(spec.resources.gpus_per_worker > 0);
    let memory = spec.resources.memory.as_deref().unwrap_or("4Gi");
    let labels = BTreeMap::from([
        (LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string()),
        (APP_NAME.to_string(), "modelcommons-evaluation".to_string()),
        (LABEL_EVALUATES.to_string(), ftj.uid().unwrap_or_default()),
    ]);
    let owner = format!("{}/{}", ftj.namespace().unwrap_or_default(), ftj.name_any());
    let pod = PodSpec {
        automount_service_account_token: Some(false),
        security_context: Some(restricted_pod()),
        containers: vec![Container {
            name: "evaluate".into(),
            image: Some(config.trainer_image.clone()),
            command: Some(vec![TRAINER_BIN.into()]),
            args: Some(eval_args(spec, &admitted.dataset_uri)),
            resources: Some(resources("1", memory, gpus)),
            volume_mounts: Some(mounts),
            termination_message_path: Some(EVAL_RESULT_FILE.into()),
            termination_message_policy: Some("File".into()),
            security_context: Some(restricted_container()),
            ..Default::default()
        }],
        volumes: Some(vols),
        ..Default::default()
    };
    let metadata = ObjectMeta {
        name: Some(evaluation_name(ftj)),
        namespace: Some(config.trusted_namespace.clone()),
        labels: Some(labels),
        annotations: Some(BTreeMap::from([(
            "modelcommons.dev/finetunejob".to_string(),
            owner,
        )])),
        ..Default::default()
    };
    Ok(trusted_job(metadata, 1, 3600, pod))
}
