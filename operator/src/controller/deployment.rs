//! The ModelDeployment controller: resolves the model (a `Succeeded` FineTuneJob's output, or
//! an artifact by URI and digest), runs `modelcommons-trainer serve` as an `apps/v1`
//! Deployment with the API-key Secrets mounted and the rate limits as flags, a Service in front,
//! and reports the endpoint URL, ready replicas and the revision (the model digest).
//!
//! A changed model rolls out as a new revision. Without `canary` the server Deployment rolls
//! (Kubernetes' rolling update). With `canary.trafficPercent` below 100 the new revision runs
//! beside the stable one in a `<name>-canary` Deployment behind the same Service, and traffic
//! splits by replica ratio (⌈total × percent / 100⌉ canary replicas, the rest stable); 100 (or
//! removing `canary`) promotes it: the stable Deployment rolls to the new revision and the
//! canary goes. With `autoscaling` an `autoscaling/v2` HorizontalPodAutoscaler scales the
//! stable Deployment on the servers' in-flight requests
//! (`modelcommons_serve_http_requests_in_flight`, served to the HPA by a custom-metrics adapter
//! such as prometheus-adapter).
//!
//! With `spec.route` and the Gateway API installed, an `HTTPRoute` attaches the endpoint to the
//! named Gateways; during a canary it splits traffic by backend weights between a
//! `<name>-stable` and a `<name>-canary` Service (one per revision), exactly `trafficPercent`
//! to the new revision whatever the replica counts. The `Routed` condition says whether the
//! route is in place and accepted, or that the Gateway API is not installed (then the replica
//! ratio splits traffic).
//!
//! Children are applied only when what the operator would write differs from what it wrote
//! last (a hash of it in an annotation): an idle resync writes nothing.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use modelcommons_crds::conditions::{READY, set_condition};
use modelcommons_crds::deployment::{ModelDeployment, ModelDeploymentPhase, ModelDeploymentSpec};
use modelcommons_crds::finetune::{FineTuneJob, FineTuneJobPhase};
use serde_json::json;

use super::finetune::{cached, container_path, keep};
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
    dev_host_dirs: &[std::path::PathBuf],
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
    if let Err(g) = super::finetune::workload_uri_allowed(&resolved.uri, dev_host_dirs) {
        return Err(NotReady {
            reason: g.reason,
            message: g.message,
        });
    }
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
pub fn server_deployment(
    md: &ModelDeployment,
    image: &str,
    model: &Resolved,
    name: &str,
    replicas: Option<u32>,
) -> serde_json::Value {
    let instance = md.name_any();
    let ns = md.namespace().unwrap_or_default();
    let model_dir = container_path(&model.uri).unwrap_or_default();
    let revision: String = model.digest.chars().take(12).collect();
    let labels = json!({LABEL_MANAGED_BY: "modelcommons-operator", LABEL_INSTANCE: instance,
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
    let selector = if name == instance {
        json!({LABEL_INSTANCE: instance, "app.kubernetes.io/name": "modelcommons-server", ROLE: "stable"})
    } else {
        json!({LABEL_INSTANCE: instance, "app.kubernetes.io/name": "modelcommons-server", ROLE: "canary"})
    };
    pod_labels[ROLE] = selector[ROLE].clone();
    let mut d = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": labels, "ownerReferences": [owner(md)],
            "annotations": {DIGEST_ANNOTATION: model.digest, URI_ANNOTATION: model.uri}},
        "spec": {
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    // The server needs no Kubernetes API: no token in a pod that serves
                    // tenants' traffic.
                    "automountServiceAccountToken": false,
                    "securityContext": {"runAsNonRoot": true, "runAsUser": 65532,
                        "seccompProfile": {"type": "RuntimeDefault"}},
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
    });
    if let Some(n) = replicas {
        d["spec"]["replicas"] = json!(n);
    }
    d
}

/// The annotation naming the model digest a server Deployment serves.
pub const DIGEST_ANNOTATION: &str = "modelcommons.dev/model-digest";
/// The annotation naming the model URI a server Deployment serves.
pub const URI_ANNOTATION: &str = "modelcommons.dev/model-uri";
/// The annotation holding the hash of what the operator last applied to a child.
pub const APPLIED_ANNOTATION: &str = "modelcommons.dev/applied-hash";
/// The pod label telling the stable revision's pods from the canary's.
pub const ROLE: &str = "modelcommons.dev/role";

/// How replicas split between the stable and the canary revision for `percent` of traffic:
/// ⌈total × percent / 100⌉ canary replicas (none at 0 %), the rest stable (at least one).
pub fn split_replicas(total: u32, percent: u32) -> (u32, u32) {
    let total = total.max(1);
    if percent == 0 {
        return (total, 0);
    }
    let canary = (total * percent.min(100)).div_ceil(100).clamp(1, total);
    let stable = (total - canary).max(1);
    (stable, canary)
}

/// The HorizontalPodAutoscaler of the stable Deployment.
pub fn autoscaler(
    md: &ModelDeployment,
    a: &modelcommons_crds::deployment::Autoscaling,
) -> serde_json::Value {
    let name = md.name_any();
    json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "namespace": md.namespace().unwrap_or_default(),
            "labels": {LABEL_MANAGED_BY: "modelcommons-operator", LABEL_INSTANCE: name},
            "ownerReferences": [owner(md)]},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            // HPAs cannot scale to zero without the HPAScaleToZero feature gate.
            "minReplicas": a.min_replicas.max(1),
            "maxReplicas": a.max_replicas,
            "metrics": [{"type": "Pods", "pods": {
                "metric": {"name": "modelcommons_serve_http_requests_in_flight"},
                "target": {"type": "AverageValue", "averageValue": a.target_concurrency.unwrap_or(8).to_string()}}}]
        }
    })
}

/// The hash of a child's desired content (what the operator writes).
fn content_hash(v: &serde_json::Value) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(super::proposal::canonical_json(v).as_bytes());
    digest.iter().take(12).map(|b| format!("{b:02x}")).collect()
}

/// Server-side applies `desired` unless `existing` carries the same content hash. Returns the
/// object as it is now.
async fn apply_if_changed<K>(
    api: &Api<K>,
    name: &str,
    existing: Option<K>,
    mut desired: serde_json::Value,
) -> Result<K, Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let hash = content_hash(&desired);
    if let Some(e) = existing
        && e.annotations().get(APPLIED_ANNOTATION) == Some(&hash)
    {
        return Ok(e);
    }
    desired["metadata"]["annotations"][APPLIED_ANNOTATION] = json!(hash);
    Ok(api
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&desired),
        )
        .await?)
}

/// The Gateway API group and version the operator writes routes in.
pub const GATEWAY_API: &str = "gateway.networking.k8s.io/v1";
/// The `Routed` condition: whether the HTTPRoute of `spec.route` is in place.
pub const ROUTED: &str = "Routed";

/// The HTTPRoutes of `ns`, when the Gateway API's CRD is served (None: not installed).
async fn httproutes(
    client: &kube::Client,
    ns: &str,
) -> Result<Option<Api<kube::api::DynamicObject>>, Error> {
    match client.list_api_group_resources(GATEWAY_API).await {
        Ok(list) if list.resources.iter().any(|r| r.name == "httproutes") => {
            let gvk =
                kube::api::GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute");
            let ar = kube::api::ApiResource::from_gvk_with_plural(&gvk, "httproutes");
            Ok(Some(Api::namespaced_with(client.clone(), ns, &ar)))
        }
        Ok(_) => Ok(None),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The HTTPRoute of `spec.route`: its rule sends traffic to `backends` — (Service, weight).
pub fn http_route(
    md: &ModelDeployment,
    route: &modelcommons_crds::deployment::Route,
    backends: &[(String, u32)],
) -> serde_json::Value {
    let name = md.name_any();
    let parents: Vec<_> = route
        .parent_refs
        .iter()
        .map(|p| {
            let mut v =
                json!({"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": p.name});
            if let Some(n) = &p.namespace {
                v["namespace"] = json!(n);
            }
            if let Some(s) = &p.section_name {
                v["sectionName"] = json!(s);
            }
            v
        })
        .collect();
    let backend_refs: Vec<_> = backends
        .iter()
        .map(|(svc, weight)| json!({"group": "", "kind": "Service", "name": svc, "port": 80, "weight": weight}))
        .collect();
    let mut spec = json!({"parentRefs": parents,
        "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "backendRefs": backend_refs}]});
    if !route.hostnames.is_empty() {
        spec["hostnames"] = json!(route.hostnames);
    }
    json!({"apiVersion": GATEWAY_API, "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": md.namespace(),
            "labels": {LABEL_MANAGED_BY: "modelcommons-operator", LABEL_INSTANCE: name},
            "ownerReferences": [owner(md)]},
        "spec": spec})
}

/// A Service in front of the server pods of one revision (a canary's two backends).
fn revision_service(md: &ModelDeployment, name: &str, digest: &str) -> serde_json::Value {
    let instance = md.name_any();
    let revision: String = digest.chars().take(12).collect();
    json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": md.namespace(),
            "labels": {LABEL_MANAGED_BY: "modelcommons-operator", LABEL_INSTANCE: instance},
            "ownerReferences": [owner(md)]},
        "spec": {"selector": {LABEL_INSTANCE: instance, "app.kubernetes.io/name": "modelcommons-server",
                "modelcommons.dev/revision": revision},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}})
}

/// Whether every Gateway that reported on the route accepted it: Some(false, why) when one
/// refused it, None while none has reported.
fn route_accepted(route: &kube::api::DynamicObject) -> Option<(bool, String)> {
    let parents = route.data.get("status")?.get("parents")?.as_array()?;
    let mut seen = false;
    for p in parents {
        let gateway = p
            .pointer("/parentRef/name")
            .and_then(|v| v.as_str())
            .unwrap_or("?");
        for c in p
            .get("conditions")
            .and_then(|c| c.as_array())
            .into_iter()
            .flatten()
        {
            if c.get("type").and_then(|t| t.as_str()) != Some("Accepted") {
                continue;
            }
            seen = true;
            if c.get("status").and_then(|s| s.as_str()) != Some("True") {
                let why = c.get("message").and_then(|m| m.as_str()).unwrap_or("");
                return Some((
                    false,
                    format!("Gateway {gateway} did not accept the route: {why}"),
                ));
            }
        }
    }
    seen.then(|| (true, String::new()))
}

fn availability(d: &Deployment, want: u32) -> (u32, bool) {
    let st = d.status.clone().unwrap_or_default();
    let ready = u32::try_from(st.available_replicas.unwrap_or(0).max(0)).unwrap_or(0);
    let current = st.observed_generation >= d.metadata.generation
        && u32::try_from(st.updated_replicas.unwrap_or(0).max(0)).unwrap_or(0) >= want;
    (ready, current)
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
    match resolve(&md.spec, ftj.as_ref(), &ctx.config.dev_host_dirs) {
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
            let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
            let canary_name = format!("{name}-canary");
            let stable = deployments.get_opt(&name).await?;
            let canary = deployments.get_opt(&canary_name).await?;
            let served = |d: &Option<Deployment>| {
                d.as_ref().and_then(|d| {
                    let a = d.annotations();
                    Some(Resolved {
                        uri: a.get(URI_ANNOTATION)?.clone(),
                        digest: a.get(DIGEST_ANNOTATION)?.clone(),
                    })
                })
            };
            let stable_model = served(&stable);
            let total = replicas(&md.spec);
            let percent = md
                .spec
                .canary
                .as_ref()
                .map(|c| c.traffic_percent)
                .filter(|p| *p < 100);
            let image = &ctx.config.trainer_image;
            let hpa_managed = md.spec.autoscaling.is_some();
            // spec.route with the Gateway API installed: canary traffic splits by route weights.
            let routes = match &md.spec.route {
                Some(_) => httproutes(&ctx.client, &ns).await?,
                None => None,
            };
            let mut backends: Vec<(String, u32)> = vec![(name.clone(), 100)];
            let short = |d: &str| d.chars().take(12).collect::<String>();
            let (phase, ok, reason, message, ready, want);
            match (percent, stable_model.clone()) {
                (Some(pct), Some(old)) if old.digest != model.digest => {
                    // Canary: the stable revision keeps serving beside the new one.
                    let (n_stable, n_canary) = split_replicas(total, pct);
                    let s_desired = server_deployment(&md, image, &old, &name, Some(n_stable));
                    let s = apply_if_changed(&deployments, &name, stable, s_desired).await?;
                    let c_desired =
                        server_deployment(&md, image, &model, &canary_name, Some(n_canary));
                    let c = apply_if_changed(&deployments, &canary_name, canary, c_desired).await?;
                    let (rs, cs) = (availability(&s, n_stable), availability(&c, n_canary));
                    ready = rs.0 + cs.0;
                    want = n_stable + n_canary;
                    body["previousRevision"] = json!(old.digest);
                    let split = if routes.is_some() {
                        // One Service per revision, weighted in the route: the split is exact.
                        let services: Api<Service> = Api::namespaced(ctx.client.clone(), &ns);
                        for (svc, digest) in [
                            (format!("{name}-stable"), &old.digest),
                            (canary_name.clone(), &model.digest),
                        ] {
                            let existing = services.get_opt(&svc).await?;
                            apply_if_changed(
                                &services,
                                &svc,
                                existing,
                                revision_service(&md, &svc, digest),
                            )
                            .await?;
                        }
                        backends = vec![
                            (format!("{name}-stable"), 100 - pct),
                            (canary_name.clone(), pct),
                        ];
                        format!(
                            "{pct}% of traffic (HTTPRoute weights) to revision {} on {n_canary} replicas, {}% to {} on {n_stable}",
                            short(&model.digest),
                            100 - pct,
                            short(&old.digest)
                        )
                    } else {
                        format!(
                            "{n_canary} of {want} replicas (~{pct}% of traffic) serve revision {} beside {} on {}",
                            short(&model.digest),
                            n_stable,
                            short(&old.digest)
                        )
                    };
                    (phase, ok, reason, message) =
                        if rs.1 && cs.1 && rs.0 >= n_stable && cs.0 >= n_canary {
                            (
                                ModelDeploymentPhase::Ready,
                                true,
                                "CanaryServing",
                                format!(
                                    "{split}; set spec.canary.trafficPercent to 100 to promote it"
                                ),
                            )
                        } else {
                            (
                                ModelDeploymentPhase::Rolling,
                                false,
                                "CanaryStarting",
                                format!("starting the canary: {split}"),
                            )
                        };
                }
                _ => {
                    // One revision: the stable Deployment serves the model (promoting a canary).
                    let s_desired = server_deployment(
                        &md,
                        image,
                        &model,
                        &name,
                        (!hpa_managed).then_some(total),
                    );
                    let s = apply_if_changed(&deployments, &name, stable, s_desired).await?;
                    if canary.is_some() {
                        deployments
                            .delete(&canary_name, &Default::default())
                            .await?;
                        ctx.event(
                            &*md,
                            kube::runtime::events::EventType::Normal,
                            "Promoted",
                            format!("revision {} promoted to all replicas", short(&model.digest)),
                        );
                    }
                    let replaced = stable_model.as_ref().filter(|m| m.digest != model.digest);
                    if let Some(old) = replaced {
                        body["previousRevision"] = json!(old.digest);
                    }
                    want = if hpa_managed {
                        s.spec
                            .as_ref()
                            .and_then(|sp| sp.replicas)
                            .map_or(total, |r| u32::try_from(r.max(1)).unwrap_or(1))
                    } else {
                        total
                    };
                    let (r, current) = availability(&s, want);
                    ready = r;
                    let rev = short(&model.digest);
                    (phase, ok, reason, message) = if current && ready >= want {
                        (
                            ModelDeploymentPhase::Ready,
                            true,
                            "Serving",
                            format!("{ready}/{want} replicas serve revision {rev}"),
                        )
                    } else if ready > 0 && !current {
                        (
                            ModelDeploymentPhase::Rolling,
                            false,
                            "Rolling",
                            format!("rolling out revision {rev}"),
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
                }
            }
            let svc = json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": ns, "labels": {LABEL_MANAGED_BY: "modelcommons-operator", LABEL_INSTANCE: name},
                    "ownerReferences": [owner(&md)]},
                "spec": {"selector": {LABEL_INSTANCE: name, "app.kubernetes.io/name": "modelcommons-server"},
                    "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}});
            let services: Api<Service> = Api::namespaced(ctx.client.clone(), &ns);
            let existing = services.get_opt(&name).await?;
            apply_if_changed(&services, &name, existing, svc).await?;
            // The per-revision Services of a routed canary go once it is promoted or dropped
            // (or the route is): only a route ever made them.
            let routed_before = conds.iter().any(|c| c.type_ == ROUTED);
            if backends.len() == 1 && (md.spec.route.is_some() || routed_before) {
                for svc in [format!("{name}-stable"), canary_name.clone()] {
                    if services.get_opt(&svc).await?.is_some() {
                        services.delete(&svc, &Default::default()).await?;
                    }
                }
            }
            match (&md.spec.route, routes) {
                (Some(route), Some(routes)) => {
                    let existing = routes.get_opt(&name).await?;
                    let applied = apply_if_changed(
                        &routes,
                        &name,
                        existing,
                        http_route(&md, route, &backends),
                    )
                    .await?;
                    let gateways = route
                        .parent_refs
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ");
                    let weights = backends
                        .iter()
                        .map(|(s, w)| format!("{s} {w}"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    let (ok, reason, message) = match route_accepted(&applied) {
                        Some((false, why)) => (false, "RouteNotAccepted", why),
                        Some((true, _)) => (
                            true,
                            "Accepted",
                            format!("HTTPRoute {name} accepted by {gateways}; weights: {weights}"),
                        ),
                        None => (
                            true,
                            "RouteApplied",
                            format!(
                                "HTTPRoute {name} attached to {gateways} (no Gateway has reported on it yet); weights: {weights}"
                            ),
                        ),
                    };
                    set_condition(&mut conds, ROUTED, ok, reason, &message, generation, now());
                }
                (Some(_), None) => {
                    set_condition(
                        &mut conds,
                        ROUTED,
                        false,
                        "GatewayAPIMissing",
                        &format!(
                            "spec.route needs the Gateway API CRDs ({GATEWAY_API} HTTPRoute): install them and a Gateway implementation, or remove spec.route; the Service {name} serves meanwhile and a canary splits traffic by replica ratio"
                        ),
                        generation,
                        now(),
                    );
                }
                (None, _) => {
                    // A route this operator made for an earlier spec goes with spec.route.
                    if conds.iter().any(|c| c.type_ == ROUTED) {
                        if let Some(routes) = httproutes(&ctx.client, &ns).await? {
                            match routes.delete(&name, &Default::default()).await {
                                Ok(_) => {}
                                Err(kube::Error::Api(e)) if e.code == 404 => {}
                                Err(e) => return Err(e.into()),
                            }
                        }
                        conds.retain(|c| c.type_ != ROUTED);
                    }
                }
            }
            let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(ctx.client.clone(), &ns);
            let existing = hpas.get_opt(&name).await?;
            match &md.spec.autoscaling {
                Some(a) => {
                    apply_if_changed(&hpas, &name, existing, autoscaler(&md, a)).await?;
                }
                None if existing.is_some() => {
                    hpas.delete(&name, &Default::default()).await?;
                }
                None => {}
            }
            set_condition(&mut conds, READY, ok, reason, &message, generation, now());
            body["phase"] = json!(phase);
            body["url"] = json!(format!("http://{name}.{ns}.svc/v1"));
            body["readyReplicas"] = json!(format!("{ready}/{want}"));
            body["latestRevision"] = json!(model.digest);
            let unrouted = conds
                .iter()
                .any(|c| c.type_ == ROUTED && c.status != "True");
            requeue = if ok && unrouted {
                // Looks again soon for the Gateway API being installed or a Gateway accepting.
                Action::requeue(ctx.config.recheck)
            } else if ok {
                Action::requeue(Duration::from_secs(300))
            } else {
                Action::requeue(Duration::from_secs(5))
            };
        }
    }
    body["conditions"] = json!(conds);
    // The revision served before the newest one stays known after its promotion.
    if body.get("previousRevision").is_none()
        && let Some(p) = md.status.as_ref().and_then(|s| s.previous_revision.clone())
    {
        body["previousRevision"] = json!(p);
    }
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

/// The controller reads a server Deployment's annotations and status; its pod template stays
/// out of the cache.
fn trim_deployment(d: &mut Deployment) {
    if let Some(spec) = d.spec.as_mut() {
        spec.template = Default::default();
    }
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
    let wc = watcher::Config::default;
    let (store, writer) = reflector::store();
    let (_deps, deps_writer) = reflector::store();
    let (_ftjs, ftjs_writer) = reflector::store();
    Controller::for_stream(cached(mds, wc(), writer, keep), store.clone())
        .owns_stream(cached(
            deps,
            wc().labels(LABEL_INSTANCE),
            deps_writer,
            trim_deployment,
        ))
        .watches_stream(
            cached(ftjs, wc(), ftjs_writer, keep),
            move |f: FineTuneJob| {
                let ns = f.namespace();
                store
                    .state()
                    .into_iter()
                    .filter(|m| {
                        m.namespace() == ns
                            && m.spec.model_ref.fine_tune_job.as_deref()
                                == Some(f.name_any().as_str())
                    })
                    .map(|m| ObjectRef::from_obj(&*m))
                    .collect::<Vec<_>>()
            },
        )
        .shutdown_on_signal()
        .run(reconcile, error_policy, Arc::new(ctx))
        .for_each(super::log_result)
        .await;
}
