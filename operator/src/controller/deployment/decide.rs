//! The decide step of the ModelDeployment controller: from what the reconcile observed, the
//! children to apply, the ones to delete, the status, the events and when to look again.
//! Pure: no API client, no clock but the one passed in; unit-tested in `tests.rs`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::runtime::events::EventType;
use modelcommons_crds::conditions::{Conditions, Progress};
use modelcommons_crds::contract::container_path;
use modelcommons_crds::deployment::{
    ModelDeployment, ModelDeploymentPhase, ModelDeploymentSpec, ModelDeploymentStatus, ROUTED,
    reason,
};
use modelcommons_crds::finetune::FineTuneJob;

use super::children::{
    DIGEST_ANNOTATION, URI_ANNOTATION, autoscaler, http_route, revision_service, server_deployment,
    service, short,
};
use crate::controller::training::{OnChain, Verified};
use crate::runtime::children::{stamped, unchanged};
use crate::runtime::gateway::{GATEWAY_API, HTTPRoute, accepted};

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

/// What the reconcile observed (from the controller's caches, and for a route from the API).
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The FineTuneJob `modelRef.fineTuneJob` names, if it exists.
    pub ftj: Option<FineTuneJob>,
    /// The operator's judgment of that FineTuneJob and the chain's record of it (None: not
    /// judged, or no FineTuneJob).
    pub trained: Option<Verified>,
    /// The stable server Deployment (named like the ModelDeployment).
    pub stable: Option<Deployment>,
    /// The canary server Deployment (`<name>-canary`).
    pub canary: Option<Deployment>,
    /// The Services of this deployment, by name (`<name>`, `<name>-stable`, `<name>-canary`).
    pub services: BTreeMap<String, Service>,
    /// The HorizontalPodAutoscaler.
    pub hpa: Option<HorizontalPodAutoscaler>,
    /// Whether the Gateway API's HTTPRoute is served (None: not looked up — no route wanted
    /// and none made before).
    pub gateway_api: Option<bool>,
    /// The HTTPRoute, when the Gateway API is served.
    pub route: Option<HTTPRoute>,
}

/// What the decide step reads besides the object: the operator's configuration and the time.
#[derive(Debug, Clone)]
pub struct Env<'a> {
    /// The server image.
    pub image: &'a str,
    /// The dev host directories `file://` models may be under.
    pub dev_host_dirs: &'a [PathBuf],
    /// How soon a waiting deployment is looked at again.
    pub recheck: Duration,
    /// Now, for condition transition times.
    pub now: Time,
}

/// A child to apply (already [`stamped`]; only those whose content changed).
#[derive(Debug, Clone, PartialEq)]
pub enum Apply {
    /// A server Deployment.
    Deployment(Box<Deployment>),
    /// A Service.
    Service(Service),
    /// The autoscaler.
    Autoscaler(HorizontalPodAutoscaler),
    /// The HTTPRoute.
    Route(HTTPRoute),
}

fn deployment(d: Deployment) -> Apply {
    Apply::Deployment(Box::new(d))
}

/// A child to delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `apps/v1` Deployment.
    Deployment,
    /// `v1` Service.
    Service,
    /// `autoscaling/v2` HorizontalPodAutoscaler.
    Autoscaler,
    /// Gateway API HTTPRoute.
    Route,
}

/// An event to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Normal or Warning.
    pub type_: EventType,
    /// The reason (a constant of `modelcommons_crds::deployment::reason`).
    pub reason: &'static str,
    /// What happened.
    pub note: String,
}

/// A child to delete, and the event to publish if it was still there.
#[derive(Debug, Clone, PartialEq)]
pub struct Delete {
    /// Its kind.
    pub kind: Kind,
    /// Its name.
    pub name: String,
    /// Published only when the delete removed something.
    pub event: Option<Event>,
}

/// What the reconcile does.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Children whose content changed.
    pub apply: Vec<Apply>,
    /// Children to remove.
    pub delete: Vec<Delete>,
    /// The status to write (written only when it differs from the object's).
    pub status: ModelDeploymentStatus,
    /// When to look again without a watch event.
    pub requeue: Duration,
}

/// Resolves `modelRef` (`ftj`: the referenced FineTuneJob, when it exists; `trained`: the
/// operator's judgment of it and the chain's record of that, see
/// [`crate::controller::training`]). A FineTuneJob's model is served only as the operator
/// judged it — the weights its evaluation loaded, and only if they met the rubric — never as
/// the job's `status` reports it (the trainer's token can write that).
pub fn resolve(
    spec: &ModelDeploymentSpec,
    ftj: Option<&FineTuneJob>,
    trained: Option<&Verified>,
    dev_host_dirs: &[PathBuf],
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
                reason: reason::MODEL_NOT_FOUND,
                message: format!("FineTuneJob {name} does not exist in this namespace"),
            });
        };
        trained_model(name, f, trained)?
    } else {
        return Err(NotReady {
            reason: reason::SOURCE_NOT_SUPPORTED,
            message: "serving an RLHFRound's model needs the RLHFRound controller, which is not built yet; point modelRef at a FineTuneJob or an artifact".into(),
        });
    };
    if let Err(g) = crate::controller::finetune::workload_uri_allowed(&resolved.uri, dev_host_dirs)
    {
        return Err(NotReady {
            reason: g.reason,
            message: g.message,
        });
    }
    if container_path(&resolved.uri).is_none() {
        return Err(NotReady {
            reason: reason::STORAGE_UNSUPPORTED,
            message: format!(
                "{}: this operator mounts file:// and pvc:// locations",
                resolved.uri
            ),
        });
    }
    Ok(resolved)
}

/// The model of FineTuneJob `name` as the operator judged it.
fn trained_model(
    name: &str,
    f: &FineTuneJob,
    trained: Option<&Verified>,
) -> Result<Resolved, NotReady> {
    let Some(Verified { judged: j, chain }) = trained else {
        // The job's own phase only words the message: it decides nothing.
        let phase = f
            .status
            .as_ref()
            .and_then(|s| s.phase)
            .map_or("new".to_string(), |p| format!("{p:?}"));
        return Err(NotReady {
            reason: reason::MODEL_NOT_READY,
            message: format!(
                "FineTuneJob {name} ({phase}) has no result of the operator's evaluation yet; serving starts once that evaluation passed its model"
            ),
        });
    };
    if !j.passed {
        return Err(NotReady {
            reason: reason::MODEL_TARGETS_MISSED,
            message: format!(
                "the operator's evaluation of FineTuneJob {name} (generation {}) found that its model misses the targets; it is not served: see `kubectl describe finetunejob {name}`, then train again or serve another model",
                j.generation
            ),
        });
    }
    match chain {
        OnChain::NoLedger => {}
        OnChain::Missing { job_id } => {
            return Err(NotReady {
                reason: reason::MODEL_NOT_READY,
                message: format!(
                    "FineTuneJob {name} passed the operator's evaluation; serving starts once the result is on chain (ModelRegistry.trainings({job_id}))"
                ),
            });
        }
        OnChain::Recorded {
            job_id,
            model_digest,
            passed,
        } if !passed || !model_digest.eq_ignore_ascii_case(&j.model_digest) => {
            return Err(NotReady {
                reason: reason::LINEAGE_MISMATCH,
                message: format!(
                    "the chain records FineTuneJob {name} as {} with weights {model_digest} (ModelRegistry.trainings({job_id})), the operator's record as passed with {}: nothing is served until an operator of this cluster has looked",
                    if *passed { "passed" } else { "not passed" },
                    j.model_digest
                ),
            });
        }
        OnChain::Recorded { .. } => {}
    }
    Ok(Resolved {
        uri: j.model_uri.clone(),
        digest: j.model_digest.clone(),
    })
}

/// Desired replicas.
pub fn replicas(spec: &ModelDeploymentSpec) -> u32 {
    spec.replicas
        .or(spec.autoscaling.as_ref().map(|a| a.min_replicas))
        .unwrap_or(1)
}

/// How replicas split between the stable and the canary revision for `percent` of traffic:
/// ⌈total × percent / 100⌉ canary replicas (none at 0 %), the rest stable (at least one):
/// the two add up to `total`, except that one replica splits into one of each.
pub fn split_replicas(total: u32, percent: u32) -> (u32, u32) {
    let total = total.max(1);
    if percent == 0 {
        return (total, 0);
    }
    let canary = (total * percent.min(100))
        .div_ceil(100)
        .clamp(1, (total - 1).max(1));
    let stable = (total - canary).max(1);
    (stable, canary)
}

/// The model a server Deployment serves, from its annotations.
fn served(d: Option<&Deployment>) -> Option<Resolved> {
    let a = d?.annotations();
    Some(Resolved {
        uri: a.get(URI_ANNOTATION)?.clone(),
        digest: a.get(DIGEST_ANNOTATION)?.clone(),
    })
}

/// Available replicas, and whether the rollout of the current spec is done. A Deployment
/// about to be applied (`applying`) is not done, whatever its status says of the old spec.
fn availability(d: Option<&Deployment>, want: u32, applying: bool) -> (u32, bool) {
    let Some(d) = d else {
        return (0, false);
    };
    let st = d.status.clone().unwrap_or_default();
    let count = |n: Option<i32>| u32::try_from(n.unwrap_or(0).max(0)).unwrap_or(0);
    let ready = count(st.available_replicas);
    let current = !applying
        && st.observed_generation.is_some()
        && st.observed_generation >= d.metadata.generation
        && count(st.updated_replicas) >= want;
    (ready, current)
}

/// Where a ModelDeployment stands, in kstatus terms, for a `Ready` reason.
pub fn progress(phase: ModelDeploymentPhase, ready_reason: &str) -> Progress {
    match phase {
        ModelDeploymentPhase::Ready => Progress::Ready,
        ModelDeploymentPhase::Degraded => Progress::Stalled,
        ModelDeploymentPhase::Rolling => Progress::Reconciling,
        ModelDeploymentPhase::Pending if ready_reason == reason::MODEL_NOT_READY => {
            Progress::Reconciling
        }
        ModelDeploymentPhase::Pending => Progress::Stalled,
    }
}

/// The children being built up by [`decide`].
#[derive(Default)]
struct Plan {
    apply: Vec<Apply>,
    delete: Vec<Delete>,
}

impl Plan {
    /// Applies `desired` unless `existing` carries its content; returns whether it applies.
    fn child<K: kube::Resource + serde::Serialize>(
        &mut self,
        existing: Option<&K>,
        desired: K,
        wrap: fn(K) -> Apply,
    ) -> bool {
        let desired = stamped(desired);
        let changed = !unchanged(existing, &desired);
        if changed {
            self.apply.push(wrap(desired));
        }
        changed
    }

    fn delete(&mut self, kind: Kind, name: &str, event: Option<Event>) {
        self.delete.push(Delete {
            kind,
            name: name.into(),
            event,
        });
    }
}

/// The servers' part of a decision: phase, Ready reason and message, `ready/want`.
struct Serving {
    phase: ModelDeploymentPhase,
    reason: &'static str,
    message: String,
    ready: u32,
    want: u32,
    previous: Option<String>,
    backends: Vec<(String, u32)>,
}

/// Decides one reconcile of `md`.
pub fn decide(md: &ModelDeployment, seen: &Observed, env: &Env<'_>) -> Decision {
    let mut status = md.status.clone().unwrap_or_default();
    let mut conds = std::mem::take(&mut status.conditions);
    let mut c = Conditions::new(&mut conds, md.metadata.generation, env.now.clone());
    let mut plan = Plan::default();
    status.observed_generation = md.metadata.generation;
    let requeue = match resolve(
        &md.spec,
        seen.ftj.as_ref(),
        seen.trained.as_ref(),
        env.dev_host_dirs,
    ) {
        Err(nr) => {
            // The servers of an earlier model keep running (and their URL stays valid).
            status.phase = Some(ModelDeploymentPhase::Pending);
            let p = progress(ModelDeploymentPhase::Pending, nr.reason);
            c.progress(p, nr.reason, &nr.message);
            env.recheck
        }
        Ok(model) => {
            let s = servers(md, seen, env, &model, &mut plan);
            let name = md.name_any();
            plan.child(seen.services.get(&name), service(md), Apply::Service);
            revision_services(md, seen, &model, &s, &mut plan, c.has(ROUTED));
            route(md, seen, &s.backends, &mut plan, &mut c);
            match &md.spec.autoscaling {
                Some(a) => {
                    plan.child(seen.hpa.as_ref(), autoscaler(md, a), Apply::Autoscaler);
                }
                None if seen.hpa.is_some() => plan.delete(Kind::Autoscaler, &name, None),
                None => {}
            }
            let p = progress(s.phase, s.reason);
            c.progress(p, s.reason, &s.message);
            status.phase = Some(s.phase);
            status.url = Some(format!(
                "http://{name}.{}.svc/v1",
                md.namespace().unwrap_or_default()
            ));
            status.ready_replicas = Some(format!("{}/{}", s.ready, s.want));
            status.latest_revision = Some(model.digest.clone());
            // The revision served before the newest one stays known after its promotion.
            if s.previous.is_some() {
                status.previous_revision = s.previous;
            }
            let unrouted = c.is_false(ROUTED);
            match p {
                // Looks again soon for the Gateway API being installed or a Gateway accepting.
                Progress::Ready if unrouted => env.recheck,
                Progress::Ready => Duration::from_secs(300),
                _ => Duration::from_secs(5),
            }
        }
    };
    status.conditions = conds;
    Decision {
        apply: plan.apply,
        delete: plan.delete,
        status,
        requeue,
    }
}

/// The server Deployments: one revision, or a canary beside the stable one.
fn servers(
    md: &ModelDeployment,
    seen: &Observed,
    env: &Env<'_>,
    model: &Resolved,
    plan: &mut Plan,
) -> Serving {
    let stable_model = served(seen.stable.as_ref());
    let percent = md
        .spec
        .canary
        .as_ref()
        .map(|c| c.traffic_percent)
        .filter(|p| *p < 100);
    if let (Some(pct), Some(old)) = (percent, &stable_model)
        && old.digest != model.digest
    {
        return canary(md, seen, env, model, old, pct, plan);
    }
    single(md, seen, env, model, stable_model, plan)
}

/// A canary: the stable revision keeps serving beside the new one on ⌈percent⌉ of the
/// replicas, or exactly `pct` of the traffic by route weights.
fn canary(
    md: &ModelDeployment,
    seen: &Observed,
    env: &Env<'_>,
    model: &Resolved,
    old: &Resolved,
    pct: u32,
    plan: &mut Plan,
) -> Serving {
    let name = md.name_any();
    let canary_name = format!("{name}-canary");
    let routed = seen.gateway_api == Some(true) && md.spec.route.is_some();
    {
        let (n_stable, n_canary) = split_replicas(replicas(&md.spec), pct);
        let s_desired = server_deployment(md, env.image, old, &name, Some(n_stable));
        let s_applying = plan.child(seen.stable.as_ref(), s_desired, deployment);
        let c_desired = server_deployment(md, env.image, model, &canary_name, Some(n_canary));
        let c_applying = plan.child(seen.canary.as_ref(), c_desired, deployment);
        let rs = availability(seen.stable.as_ref(), n_stable, s_applying);
        let cs = availability(seen.canary.as_ref(), n_canary, c_applying);
        let (new, prev) = (short(&model.digest), short(&old.digest));
        let (split, backends) = if routed {
            // One Service per revision, weighted in the route: the split is exact.
            (
                format!(
                    "{pct}% of traffic (HTTPRoute weights) to revision {new} on {n_canary} replicas, {}% to {prev} on {n_stable}",
                    100 - pct
                ),
                vec![
                    (format!("{name}-stable"), 100 - pct),
                    (canary_name.clone(), pct),
                ],
            )
        } else {
            (
                format!(
                    "{n_canary} of {} replicas (~{pct}% of traffic) serve revision {new} beside {n_stable} on {prev}",
                    n_stable + n_canary
                ),
                vec![(name.clone(), 100)],
            )
        };
        let done = rs.1 && cs.1 && rs.0 >= n_stable && cs.0 >= n_canary;
        let (phase, reason, message) = if done {
            (
                ModelDeploymentPhase::Ready,
                reason::CANARY_SERVING,
                format!("{split}; set spec.canary.trafficPercent to 100 to promote it"),
            )
        } else {
            (
                ModelDeploymentPhase::Rolling,
                reason::CANARY_STARTING,
                format!("starting the canary: {split}"),
            )
        };
        Serving {
            phase,
            reason,
            message,
            ready: rs.0 + cs.0,
            want: n_stable + n_canary,
            previous: Some(old.digest.clone()),
            backends,
        }
    }
}

/// One revision: the stable Deployment serves the model (promoting a canary).
fn single(
    md: &ModelDeployment,
    seen: &Observed,
    env: &Env<'_>,
    model: &Resolved,
    stable_model: Option<Resolved>,
    plan: &mut Plan,
) -> Serving {
    let name = md.name_any();
    let canary_name = format!("{name}-canary");
    let total = replicas(&md.spec);
    let hpa_managed = md.spec.autoscaling.is_some();
    let desired = server_deployment(md, env.image, model, &name, (!hpa_managed).then_some(total));
    let applying = plan.child(seen.stable.as_ref(), desired, deployment);
    if seen.canary.is_some() {
        plan.delete(
            Kind::Deployment,
            &canary_name,
            Some(Event {
                type_: EventType::Normal,
                reason: reason::PROMOTED,
                note: format!("revision {} promoted to all replicas", short(&model.digest)),
            }),
        );
    }
    let want = match (&seen.stable, hpa_managed) {
        (Some(s), true) => s
            .spec
            .as_ref()
            .and_then(|sp| sp.replicas)
            .map_or(total, |r| u32::try_from(r.max(1)).unwrap_or(1)),
        _ => total,
    };
    let (ready, current) = availability(seen.stable.as_ref(), want, applying);
    let (phase, reason, message) = single_phase(&name, &short(&model.digest), ready, want, current);
    Serving {
        phase,
        reason,
        message,
        ready,
        want,
        previous: stable_model
            .filter(|m| m.digest != model.digest)
            .map(|m| m.digest),
        backends: vec![(name, 100)],
    }
}

/// Phase, reason and message of one revision with `ready` of `want` replicas available.
fn single_phase(
    name: &str,
    rev: &str,
    ready: u32,
    want: u32,
    current: bool,
) -> (ModelDeploymentPhase, &'static str, String) {
    if current && ready >= want {
        (
            ModelDeploymentPhase::Ready,
            reason::SERVING,
            format!("{ready}/{want} replicas serve revision {rev}"),
        )
    } else if ready > 0 && !current {
        (
            ModelDeploymentPhase::Rolling,
            reason::ROLLING,
            format!("rolling out revision {rev}"),
        )
    } else if ready > 0 {
        (
            ModelDeploymentPhase::Degraded,
            reason::REPLICAS_UNAVAILABLE,
            format!("{ready}/{want} replicas available; see `kubectl describe deployment {name}`"),
        )
    } else {
        (
            ModelDeploymentPhase::Rolling,
            reason::STARTING,
            format!("waiting for the first of {want} replicas to load the model"),
        )
    }
}

/// A routed canary's per-revision Services; they go once it is promoted or dropped (or the
/// route is): only a route ever made them.
fn revision_services(
    md: &ModelDeployment,
    seen: &Observed,
    model: &Resolved,
    s: &Serving,
    plan: &mut Plan,
    routed_before: bool,
) {
    let name = md.name_any();
    let (stable, canary) = (format!("{name}-stable"), format!("{name}-canary"));
    if s.backends.len() > 1 {
        let old = s.previous.as_deref().unwrap_or_default();
        for (svc, digest) in [(&stable, old), (&canary, model.digest.as_str())] {
            plan.child(
                seen.services.get(svc),
                revision_service(md, svc, digest),
                Apply::Service,
            );
        }
    } else if md.spec.route.is_some() || routed_before {
        for svc in [stable, canary] {
            if seen.services.contains_key(&svc) {
                plan.delete(Kind::Service, &svc, None);
            }
        }
    }
}

/// The HTTPRoute of `spec.route` and the `Routed` condition.
fn route(
    md: &ModelDeployment,
    seen: &Observed,
    backends: &[(String, u32)],
    plan: &mut Plan,
    c: &mut Conditions<'_>,
) {
    let name = md.name_any();
    match (&md.spec.route, seen.gateway_api) {
        (Some(route), Some(true)) => {
            plan.child(
                seen.route.as_ref(),
                http_route(md, route, backends),
                Apply::Route,
            );
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
            match seen.route.as_ref().and_then(accepted) {
                Some((false, why)) => c.set(ROUTED, false, reason::ROUTE_NOT_ACCEPTED, &why),
                Some((true, _)) => c.set(
                    ROUTED,
                    true,
                    reason::ACCEPTED,
                    &format!("HTTPRoute {name} accepted by {gateways}; weights: {weights}"),
                ),
                None => c.set(
                    ROUTED,
                    true,
                    reason::ROUTE_APPLIED,
                    &format!(
                        "HTTPRoute {name} attached to {gateways} (no Gateway has reported on it yet); weights: {weights}"
                    ),
                ),
            };
        }
        (Some(_), _) => {
            c.set(
                ROUTED,
                false,
                reason::GATEWAY_API_MISSING,
                &format!(
                    "spec.route needs the Gateway API CRDs ({GATEWAY_API} HTTPRoute): install them and a Gateway implementation, or remove spec.route; the Service {name} serves meanwhile and a canary splits traffic by replica ratio"
                ),
            );
        }
        (None, _) => {
            // A route this operator made for an earlier spec goes with spec.route.
            if c.has(ROUTED) {
                if seen.gateway_api == Some(true) {
                    plan.delete(Kind::Route, &name, None);
                }
                c.remove(ROUTED);
            }
        }
    }
}
