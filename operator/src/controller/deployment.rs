//! The ModelDeployment controller: resolves the model (a `Succeeded` FineTuneJob's output, or
//! an artifact by URI and digest), runs `modelcommons-trainer serve` as an `apps/v1`
//! Deployment with the API-key Secrets mounted and the rate limits as flags, a Service in front,
//! and reports the endpoint URL, ready replicas and the revision (the model digest).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use modelcommons_crds::conditions::{READY, set_condition};
use modelcommons_crds::deployment::{ModelDeployment, ModelDeploymentPhase, ModelDeploymentSpec};
use modelcommons_crds::finetune::{FineTuneJob, FineTuneJobPhase};
use serde_json::json;

use super::finetune::container_path;
use super::{Context, Error, FIELD_MANAGER, LABEL_INSTANCE, LABEL_MANAGED_BY, now};

/// Where the API-key Secrets are mounted in the server container.
pub const KEYS_DIR: &str = "/var/run/modelcommons/api-keys";
/// The server's container port.
pub const PORT: i32 = 8000;

/// The model a deployment serves.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// The model directory's URI.
    pub uri: String,
    /// The weights' sha256.
    pub digest: String,
}

/// Why the model cannot be served yet.
#[derive(Debug, Clone, PartialEq)]
pub struct NotReady {
    /// Condition reason.
    pub reason: &'static str,
    /// What to do.
    pub message: String,
}

/// Resolves `modelRef` (`ftj`: the referenced FineTuneJob, when it is one).
pub fn resolve(
    spec: &ModelDeploymentSpec,
    ftj: Option<&FineTuneJob>,
) -> Result<Resolved, NotReady> {
    let r = &spec.model_ref;
    let resolved = if let Some(a) = &r.artifact {
        Resolved {
            uri: a.uri.clone(),
            digest: a.sha256.clone(),
        }
    } else if let Some(name) = &r.fine_tune_job {
        let Some(f) = ftj else {
            return Err(NotReady {
                reason: "ModelNotFound",
                message: format!("FineTuneJob {name} does not exist in this namespace"),
            });
        };
        let st = f.status.clone().unwrap_or_default();
        if st.phase != Some(FineTuneJobPhase::Succeeded) {
            return Err(NotReady {
                reason: "ModelNotReady",
                message: format!(
                    "FineTuneJob {name} is {}; serving starts once it has Succeeded",
                    st.phase.map_or("new".to_string(), |p| format!("{p:?}"))
                ),
            });
        }
        let Some(digest) = st.result.and_then(|r| r.model_digest) else {
            return Err(NotReady {
                reason: "ModelNotReady",
                message: format!("FineTuneJob {name} reports no model digest"),
            });
        };
        Resolved {
            uri: f.spec.output_uri.clone(),
            digest,
        }
    } else {
        return Err(NotReady {
            reason: "SourceNotSupported",
            message: "serving an RLHFRound's model needs the RLHFRound controller, which is not built yet; point modelRef at a FineTuneJob or an artifact".into(),
        });
    };
    if container_path(&resolved.uri).is_none() {
        return Err(NotReady {
            reason: "StorageUnsupported",
            message: format!(
                "{}: this operator mounts file:// and pvc:// locations",
                resolved.uri
            ),
        });
    }
    Ok(resolved)
}

/// The server's command line.
pub fn serve_args(md: &ModelDeployment, model_dir: &str, digest: &str) -> Vec<String> {
    let s = &md.spec;
    let mut a = vec![
        "serve".to_string(),
        "--model".into(),
        model_dir.into(),
        "--listen".into(),
        format!("0.0.0.0:{PORT}"),
        "--served-model-name".into(),
        md.name_any(),
        "--expect-sha256".into(),
        digest.into(),
    ];
    if !s.access.public {
        a.extend(["--api-keys".into(), KEYS_DIR.into()]);
    }
    if !s.access.allowed_consumers.is_empty() {
        a.extend([
            "--allowed-consumers".into(),
            s.access.allowed_consumers.join(","),
        ]);
    }
    if let Some(l) = &s.rate_limits {
        a.extend([
            "--requests-per-minute".into(),
            l.requests_per_minute.to_string(),
        ]);
        if let Some(t) = l.tokens_per_minute {
            a.extend(["--tokens-per-minute".into(), t.to_string()]);
        }
    }
    a.extend([
        "--device".into(),
        if s.resources.gpus > 0 { "cuda" } else { "cpu" }.into(),
    ]);
    a
}

/// Desired replicas.
pub fn replicas(spec: &ModelDeploymentSpec) -> u32 {
    spec.replicas
        .or(spec.autoscaling.as_ref().map(|a| a.min_replicas))
        .unwrap_or(1)
}

fn owner(md: &ModelDeployment) -> serde_json::Value {
    json!({"apiVersion": ModelDeployment::api_version(&()), "kind": ModelDeployment::kind(&()),
        "name": md.name_any(), "uid": md.uid().unwrap_or_default(), "controller": true, "blockOwnerDeletion": true})
}

/// The server Deployment.
pub fn server_deployment(md: &ModelDeployment, image: &str, model: &Resolved) -> serde_json::Value {
    let name = md.name_any();
    let ns = md.namespace().unwrap_or_default();
    let model_dir = container_path(&model.uri).unwrap_or_default();
    let revision: String = model.digest.chars().take(12).collect();
    let labels = json!({LABEL_MANAGED_BY: "modelcommons-operator", LABEL_INSTANCE: name,
        "app.kubernetes.io/name": "modelcommons-server"});
    let mut pod_labels = labels.clone();
    pod_labels["modelcommons.dev/revision"] = json!(revision);
    let (vol, mount) = if let Some(p) = model.uri.strip_prefix("file://") {
        (
            json!({"name": "model", "hostPath": {"path": p, "type": "Directory"}}),
            json!({"name": "model", "mountPath": p, "readOnly": true}),
        )
    } else {
        let rest = model.uri.trim_start_matches("pvc://");
        let claim = rest.split('/').next().unwrap_or_default();
        (
            json!({"name": "model", "persistentVolumeClaim": {"claimName": claim, "readOnly": true}}),
            json!({"name": "model", "mountPath": format!("{}/{claim}", super::finetune::PVC_ROOT), "readOnly": true}),
        )
    };
    let mut volumes = vec![vol];
    let mut mounts = vec![mount];
    if !md.spec.access.public {
        let sources: Vec<serde_json::Value> = md
            .spec
            .access
            .api_key_secrets
            .iter()
            .map(|s| json!({"secret": {"name": s}}))
            .collect();
        volumes.push(json!({"name": "api-keys", "projected": {"sources": sources}}));
        mounts.push(json!({"name": "api-keys", "mountPath": KEYS_DIR, "readOnly": true}));
    }
    let r = &md.spec.resources;
    let mut resources = json!({"requests": {"cpu": r.cpu.clone().unwrap_or_else(|| "2".into()),
        "memory": r.memory.clone().unwrap_or_else(|| "8Gi".into())}});
    if r.gpus > 0 {
        resources["requests"]["nvidia.com/gpu"] = json!(r.gpus.to_string());
        resources["limits"] = json!({"nvidia.com/gpu": r.gpus.to_string()});
    }
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": labels, "ownerReferences": [owner(md)],
            "annotations": {"modelcommons.dev/model-digest": model.digest}},
        "spec": {
            "replicas": replicas(&md.spec),
            "selector": {"matchLabels": {LABEL_INSTANCE: name, "app.kubernetes.io/name": "modelcommons-server"}},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "securityContext": {"runAsNonRoot": true, "runAsUser": 65532},
                    "containers": [{
                        "name": "server",
                        "image": image,
                        "command": ["modelcommons-trainer"],
                        "args": serve_args(md, &model_dir, &model.digest),
                        "ports": [{"name": "http", "containerPort": PORT}],
                        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 5},
                        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10},
                        "resources": resources,
                        "volumeMounts": mounts,
                        "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                            "capabilities": {"drop": ["ALL"]}},
                    }],
                    "volumes": volumes,
                }
            }
        }
    })
}

/// Reconciles one ModelDeployment.
pub async fn reconcile(md: Arc<ModelDeployment>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let res = reconcile_inner(md, ctx.clone()).await;
    ctx.metrics.observe(
        "ModelDeployment",
        res.is_ok(),
        started.elapsed().as_secs_f64(),
    );
    res
}

async fn reconcile_inner(md: Arc<ModelDeployment>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = md
        .namespace()
        .ok_or_else(|| Error::Invalid("ModelDeployment without a namespace".into()))?;
    let name = md.name_any();
    let ftj = match &md.spec.model_ref.fine_tune_job {
        Some(f) => {
            Api::<FineTuneJob>::namespaced(ctx.client.clone(), &ns)
                .get_opt(f)
                .await?
        }
        None => None,
    };
    let generation = md.metadata.generation;
    let mut conds = md
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let mut body = json!({"observedGeneration": generation});
    let requeue;
    match resolve(&md.spec, ftj.as_ref()) {
        Err(nr) => {
            set_condition(
                &mut conds,
                READY,
                false,
                nr.reason,
                &nr.message,
                generation,
                now(),
            );
            body["phase"] = json!(ModelDeploymentPhase::Pending);
            requeue = Action::requeue(ctx.config.recheck);
        }
        Ok(model) => {
            let pp = PatchParams::apply(FIELD_MANAGER).force();
            let dep = server_deployment(&md, &ctx.config.trainer_image, &model);
            let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
            let applied = deployments.patch(&name, &pp, &Patch::Apply(&dep)).await?;
            let svc = json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": ns, "labels": {LABEL_MANAGED_BY: "modelcommons-operator", LABEL_INSTANCE: name},
                    "ownerReferences": [owner(&md)]},
                "spec": {"selector": {LABEL_INSTANCE: name, "app.kubernetes.io/name": "modelcommons-server"},
                    "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}});
            Api::<Service>::namespaced(ctx.client.clone(), &ns)
                .patch(&name, &pp, &Patch::Apply(&svc))
                .await?;
            let want = replicas(&md.spec);
            let st = applied.status.unwrap_or_default();
            let ready = st.available_replicas.unwrap_or(0).max(0) as u32;
            let current = st.observed_generation >= applied.metadata.generation
                && st.updated_replicas.unwrap_or(0) as u32 >= want;
            let (phase, ok, reason, message) = if current && ready >= want {
                (
                    ModelDeploymentPhase::Ready,
                    true,
                    "Serving",
                    format!(
                        "{ready}/{want} replicas serve revision {}",
                        &model.digest[..12.min(model.digest.len())]
                    ),
                )
            } else if ready > 0 && !current {
                (
                    ModelDeploymentPhase::Rolling,
                    false,
                    "Rolling",
                    format!(
                        "rolling out revision {}",
                        &model.digest[..12.min(model.digest.len())]
                    ),
                )
            } else if ready > 0 {
                (
                    ModelDeploymentPhase::Degraded,
                    false,
                    "ReplicasUnavailable",
                    format!(
                        "{ready}/{want} replicas available; see `kubectl describe deployment {name}`"
                    ),
                )
            } else {
                (
                    ModelDeploymentPhase::Rolling,
                    false,
                    "Starting",
                    format!("waiting for the first of {want} replicas to load the model"),
                )
            };
            set_condition(&mut conds, READY, ok, reason, &message, generation, now());
            body["phase"] = json!(phase);
            body["url"] = json!(format!("http://{name}.{ns}.svc/v1"));
            body["readyReplicas"] = json!(format!("{ready}/{want}"));
            body["latestRevision"] = json!(model.digest);
            requeue = if ok {
                Action::requeue(Duration::from_secs(300))
            } else {
                Action::requeue(Duration::from_secs(5))
            };
        }
    }
    body["conditions"] = json!(conds);
    let current = serde_json::to_value(md.status.clone().unwrap_or_default())?;
    let changed = body
        .as_object()
        .is_some_and(|o| o.iter().any(|(k, v)| current.get(k) != Some(v)));
    if changed {
        let patch = json!({"apiVersion": ModelDeployment::api_version(&()), "kind": ModelDeployment::kind(&()), "status": body});
        Api::<ModelDeployment>::namespaced(ctx.client.clone(), &ns)
            .patch_status(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await?;
    }
    Ok(requeue)
}

fn error_policy(_md: Arc<ModelDeployment>, err: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(error = %err, "ModelDeployment reconcile failed");
    Action::requeue(Duration::from_secs(5))
}

/// Runs the controller until the stream ends.
pub async fn run(ctx: Context) {
    let client = ctx.client.clone();
    let (mds, deps, ftjs) = match &ctx.config.namespace {
        Some(ns) => (
            Api::<ModelDeployment>::namespaced(client.clone(), ns),
            Api::<Deployment>::namespaced(client.clone(), ns),
            Api::<FineTuneJob>::namespaced(client.clone(), ns),
        ),
        None => (
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
        ),
    };
    let controller = Controller::new(mds, watcher::Config::default());
    let store = controller.store();
    controller
        .owns(deps, watcher::Config::default().labels(LABEL_INSTANCE))
        .watches(ftjs, watcher::Config::default(), move |f: FineTuneJob| {
            let ns = f.namespace();
            store
                .state()
                .into_iter()
                .filter(|m| {
                    m.namespace() == ns
                        && m.spec.model_ref.fine_tune_job.as_deref() == Some(f.name_any().as_str())
                })
                .map(|m| ObjectRef::from_obj(&*m))
                .collect::<Vec<_>>()
        })
        .shutdown_on_signal()
        .run(reconcile, error_policy, Arc::new(ctx))
        .for_each(super::log_result)
        .await;
}
