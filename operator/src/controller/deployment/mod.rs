//! The ModelDeployment controller: resolves the model (a FineTuneJob's output as the operator's
//! evaluation judged it — see [`crate::controller::training`] — or
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
//!
//! The reconcile reads top to bottom: [`observe`] (the watch caches; the HTTPRoute from the
//! API) → [`decide::decide`] (pure) → [`apply`] → the status write.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Service;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use modelcommons_crds::deployment::{ModelDeployment, ROUTED};
use modelcommons_crds::finetune::FineTuneJob;

use super::{Context, Error, LABEL_INSTANCE, now};
use crate::runtime::children::{apply_status, delete};
use crate::runtime::gateway::{GATEWAY_API, HTTPRoute};
use crate::runtime::reconcile::{error_policy, instrumented};
use crate::runtime::watch::{cached, get, keep, scoped};

pub mod children;
pub mod decide;
#[cfg(test)]
mod tests;

pub use children::{DIGEST_ANNOTATION, ROLE, URI_ANNOTATION};
pub use decide::{Resolved, replicas, resolve, split_replicas};
pub use modelcommons_crds::contract::{KEYS_DIR, SERVER_PORT as PORT};

/// What the ModelDeployment controller reads instead of asking the API server.
#[derive(Clone, Debug)]
pub struct Caches {
    /// The shared context.
    pub ctx: Context,
    ftjs: Store<FineTuneJob>,
    deployments: Store<Deployment>,
    services: Store<Service>,
    hpas: Store<HorizontalPodAutoscaler>,
}

impl Caches {
    /// Whether every cache has been filled by its first list: before that a cache is empty,
    /// and "no FineTuneJob" or "no Deployment yet" would be wrong.
    fn ready(&self) -> bool {
        use futures::FutureExt;
        self.ftjs.wait_until_ready().now_or_never().is_some()
            && self.deployments.wait_until_ready().now_or_never().is_some()
            && self.services.wait_until_ready().now_or_never().is_some()
            && self.hpas.wait_until_ready().now_or_never().is_some()
    }
}

impl AsRef<Context> for Caches {
    fn as_ref(&self) -> &Context {
        &self.ctx
    }
}

/// Reconciles one ModelDeployment.
pub async fn reconcile(md: Arc<ModelDeployment>, c: Arc<Caches>) -> Result<Action, Error> {
    instrumented(&c.ctx, &*md, async {
        let ns = md
            .namespace()
            .ok_or_else(|| Error::Invalid("ModelDeployment without a namespace".into()))?;
        if !c.ready() {
            return Ok(Action::requeue(std::time::Duration::from_millis(200)));
        }
        let seen = observe(&md, &ns, &c).await?;
        let cfg = &c.ctx.config;
        let env = decide::Env {
            image: &cfg.trainer_image,
            dev_host_dirs: &cfg.dev_host_dirs,
            recheck: cfg.recheck,
            now: now(),
        };
        let d = decide::decide(&md, &seen, &env);
        apply(&md, &ns, &c.ctx, &d).await?;
        if md.status.as_ref() != Some(&d.status) {
            let api = Api::<ModelDeployment>::namespaced(c.ctx.client.clone(), &ns);
            apply_status(&api, &md.name_any(), &d.status).await?;
        }
        Ok(Action::requeue(d.requeue))
    })
    .await
}

/// What the decide step reads: the caches, and the Gateway API only where a route is (or
/// was) wanted.
pub async fn observe(
    md: &ModelDeployment,
    ns: &str,
    c: &Caches,
) -> Result<decide::Observed, Error> {
    let name = md.name_any();
    let ftj = md
        .spec
        .model_ref
        .fine_tune_job
        .as_deref()
        .and_then(|f| get(&c.ftjs, ns, f));
    let services: BTreeMap<String, Service> = [
        name.clone(),
        format!("{name}-stable"),
        format!("{name}-canary"),
    ]
    .into_iter()
    .filter_map(|n| get(&c.services, ns, &n).map(|s| (n, s)))
    .collect();
    let routed_before = md
        .status
        .as_ref()
        .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == ROUTED));
    let (gateway_api, route) = if md.spec.route.is_some() || routed_before {
        if gateway_api(&c.ctx.client).await? {
            let routes = Api::<HTTPRoute>::namespaced(c.ctx.client.clone(), ns);
            (Some(true), routes.get_opt(&name).await?)
        } else {
            (Some(false), None)
        }
    } else {
        (None, None)
    };
    let trained = match &ftj {
        Some(f) => crate::controller::training::verify(&c.ctx, f).await?,
        None => None,
    };
    Ok(decide::Observed {
        ftj,
        trained,
        stable: get(&c.deployments, ns, &name),
        canary: get(&c.deployments, ns, &format!("{name}-canary")),
        services,
        hpa: get(&c.hpas, ns, &name),
        gateway_api,
        route,
    })
}

/// Whether the Gateway API's HTTPRoute is served.
async fn gateway_api(client: &kube::Client) -> Result<bool, Error> {
    match client.list_api_group_resources(GATEWAY_API).await {
        Ok(list) => Ok(list.resources.iter().any(|r| r.name == "httproutes")),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Applies the decision's children and deletions, and publishes its events.
pub async fn apply(
    md: &ModelDeployment,
    ns: &str,
    ctx: &Context,
    d: &decide::Decision,
) -> Result<(), Error> {
    use crate::runtime::children::apply as ssa;
    use decide::{Apply, Kind};
    let client = &ctx.client;
    for child in &d.apply {
        match child {
            Apply::Deployment(o) => drop(ssa(&Api::namespaced(client.clone(), ns), &**o).await?),
            Apply::Service(o) => drop(ssa(&Api::namespaced(client.clone(), ns), o).await?),
            Apply::Autoscaler(o) => drop(ssa(&Api::namespaced(client.clone(), ns), o).await?),
            Apply::Route(o) => drop(ssa(&Api::namespaced(client.clone(), ns), o).await?),
        }
    }
    for del in &d.delete {
        let n = &del.name;
        let removed = match del.kind {
            Kind::Deployment => {
                delete(&Api::<Deployment>::namespaced(client.clone(), ns), n).await?
            }
            Kind::Service => delete(&Api::<Service>::namespaced(client.clone(), ns), n).await?,
            Kind::Autoscaler => {
                delete(
                    &Api::<HorizontalPodAutoscaler>::namespaced(client.clone(), ns),
                    n,
                )
                .await?
            }
            Kind::Route => delete(&Api::<HTTPRoute>::namespaced(client.clone(), ns), n).await?,
        };
        if let (true, Some(e)) = (removed, &del.event) {
            ctx.event(md, e.type_, e.reason, e.note.clone());
        }
    }
    Ok(())
}

/// The controller reads a server Deployment's annotations, replicas and status; its pod
/// template stays out of the cache.
fn trim_deployment(d: &mut Deployment) {
    if let Some(spec) = d.spec.as_mut() {
        spec.template = Default::default();
    }
}

/// Runs the controller until the stream ends.
pub async fn run(ctx: Context) {
    let client = ctx.client.clone();
    let namespace = ctx.config.namespace.clone();
    let ns = namespace.as_deref();
    let wc = watcher::Config::default;
    let owned = || wc().labels(LABEL_INSTANCE);
    let (store, writer) = reflector::store();
    let (deployments, deps_writer) = reflector::store();
    let (ftjs, ftjs_writer) = reflector::store();
    let (services, svc_writer) = reflector::store();
    let (hpas, hpa_writer) = reflector::store();
    let by_ftj = store.clone();
    let caches = Caches {
        ctx,
        ftjs,
        deployments,
        services,
        hpas,
    };
    Controller::for_stream(cached(scoped(&client, ns), wc(), writer, keep), store)
        .owns_stream(cached(
            scoped(&client, ns),
            owned(),
            deps_writer,
            trim_deployment,
        ))
        .owns_stream(cached(
            scoped::<Service>(&client, ns),
            owned(),
            svc_writer,
            keep,
        ))
        .owns_stream(cached(
            scoped::<HorizontalPodAutoscaler>(&client, ns),
            owned(),
            hpa_writer,
            keep,
        ))
        .watches_stream(
            cached(scoped(&client, ns), wc(), ftjs_writer, keep),
            move |f: FineTuneJob| {
                let ns = f.namespace();
                by_ftj
                    .state()
                    .into_iter()
                    .filter(|m: &Arc<ModelDeployment>| {
                        m.namespace() == ns
                            && m.spec.model_ref.fine_tune_job.as_deref()
                                == Some(f.name_any().as_str())
                    })
                    .map(|m| ObjectRef::from_obj(&*m))
                    .collect::<Vec<_>>()
            },
        )
        .shutdown_on_signal()
        .run(reconcile, error_policy, Arc::new(caches))
        .for_each(super::log_result)
        .await;
}
