//! The FineTuneJob controller: gates (proposal approved, Datanet Ready at the pinned version,
//! budget left) as conditions with reasons; children by server-side apply with owner
//! references (a ConfigMap with the training config, an Indexed `batch/v1` Job of trainer
//! pods with torchrun-style env, a headless Service for several workers); phases from the Job
//! and from the result the trainer writes; targets judged with their direction.

//!
//! The reconcile reads top to bottom (see [`reconcile`]); the decisions are [`decide`]'s,
//! pure and unit-tested; the gates are [`gates`]'; the children [`children`]'s typed
//! builders; the effects that cannot wait for a decision (the mandate's usage record, the
//! evaluation Job, the chain record) are [`admission`], [`evaluation`] and [`record`].

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use modelcommons_crds::datanet::Datanet;
use modelcommons_crds::finetune::{FineTuneJob, FineTuneJobStatus, reason};
use modelcommons_crds::proposal::ModelProposal;

use super::{Context, Error, LABEL_INSTANCE, now};
use crate::runtime::children::{apply as ssa, apply_status};
use crate::runtime::reconcile::{error_policy, instrumented};
use crate::runtime::watch::get;

pub mod admission;
pub mod children;
pub mod decide;
pub mod evaluation;
pub mod gates;
pub mod record;
#[cfg(test)]
mod tests;

pub use children::{
    child_name, evaluation_job, evaluation_name, train_uri, trainer_account, trainer_identity,
    trainer_job, volumes,
};
pub use decide::{JobState, gpu_hours, job_state, progress};
pub use evaluation::{Baseline, EvalOutput, Evaluated};
pub use gates::{
    Admitted, Gate, check_gates, targets, targets_met, trainer_image_allowed, workload_uri_allowed,
};

/// Condition: a gate holds the job back.
pub const GATED: &str = "Gated";
/// Condition: the job is suspended or waits for queue admission.
pub const SUSPENDED: &str = "Suspended";
/// The Kueue queue label.
pub const KUEUE_QUEUE_LABEL: &str = "kueue.x-k8s.io/queue-name";
pub(crate) use crate::runtime::watch::{cached, keep};
pub use modelcommons_crds::contract::{PVC_ROOT, container_path};

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
pub use modelcommons_crds::contract::EVAL_RESULT_FILE;
/// The label naming the FineTuneJob (its uid) an evaluation Job judges.
pub const LABEL_EVALUATES: &str = "modelcommons.dev/evaluates";

pub use modelcommons_crds::contract::train_args as trainer_args;

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

impl AsRef<Context> for Caches {
    fn as_ref(&self) -> &Context {
        &self.ctx
    }
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

/// Reconciles one FineTuneJob: observe (the caches) → admission (the gates, then the
/// mandate's usage record) → the trainer Job as it is or will be → decide → the effects the
/// decision needs (the evaluation, the chain record) → apply → status.
pub async fn reconcile(ftj: Arc<FineTuneJob>, c: Arc<Caches>) -> Result<Action, Error> {
    instrumented(&c.ctx, &*ftj, async {
        let ctx = &c.ctx;
        let ns = ftj
            .namespace()
            .ok_or_else(|| Error::Invalid("FineTuneJob without a namespace".into()))?;
        let recorded =
            ftj.status.as_ref().is_some_and(|s| s.chain.is_some()) || ctx.ledger.is_none();
        if decide::finished(&ftj, recorded) {
            return Ok(Action::await_change());
        }
        if !c.ready() {
            return Ok(Action::requeue(Duration::from_millis(200)));
        }
        let seen = observe(&ftj, &ns, &c);
        let env = decide::Env {
            now: now(),
            recheck: ctx.config.recheck,
            result_grace: ctx.config.result_grace,
            trusted_namespace: &ctx.config.trusted_namespace,
        };
        let admitted = match admission::admission(&ftj, &seen, &c).await? {
            Ok(a) => a,
            Err(gate) => {
                let shown = decide::gated(&gate, &env);
                write_status(&ftj, ctx, &shown, &env).await?;
                return Ok(action(&shown));
            }
        };
        // Without a Job yet, the status is judged from the Job as it will be created, and
        // written while the children are applied: an opened gate shows in one round trip.
        let fresh = seen.job.is_none();
        let job = seen.job.clone().unwrap_or_else(|| {
            let suspend = ftj.spec.run_policy.suspend || ftj.spec.run_policy.queue_name.is_some();
            children::trainer_job(&ftj, &ctx.config.trainer_image, &admitted, suspend)
        });
        if !fresh {
            patch_job(&ftj, ctx, &job, &admitted, seen.proposal.as_ref()).await?;
        }
        let shown = match decide::from_job(&ftj, &job, &admitted, &env) {
            decide::Next::Show(s) => s,
            decide::Next::Evaluate(extra) => {
                judge(&ftj, &seen, &admitted, extra, ctx, &env).await?
            }
        };
        if fresh {
            create(&ftj, ctx, &admitted, &shown, &env).await?;
        } else {
            write_status(&ftj, ctx, &shown, &env).await?;
        }
        Ok(action(&shown))
    })
    .await
}

fn action(shown: &decide::Shown) -> Action {
    shown
        .requeue
        .map_or_else(Action::await_change, Action::requeue)
}

/// What the reconcile reads from the caches.
#[derive(Debug, Clone)]
pub struct Observed {
    /// The proposal `spec.proposalRef` names.
    pub proposal: Option<ModelProposal>,
    /// The Datanet `spec.datanetRef` names.
    pub datanet: Option<Datanet>,
    /// The trainer Job.
    pub job: Option<Job>,
}

fn observe(ftj: &FineTuneJob, ns: &str, c: &Caches) -> Observed {
    Observed {
        proposal: get(&c.proposals, ns, &ftj.spec.proposal_ref.name),
        datanet: get(&c.datanets, ns, &ftj.spec.datanet_ref.name),
        job: get(&c.jobs, ns, &children::child_name(ftj)),
    }
}

/// Sets back what a tenant changed of the trainer Job (its suspension under
/// `runPolicy.suspend`, its deadline), and records the GPU-hours of a finished one.
async fn patch_job(
    ftj: &FineTuneJob,
    ctx: &Context,
    job: &Job,
    admitted: &Admitted,
    proposal: Option<&ModelProposal>,
) -> Result<(), Error> {
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ftj.namespace().unwrap_or_default());
    let name = children::child_name(ftj);
    let p = decide::job_patches(ftj, job, admitted, false);
    let merge = |spec: JobSpec| Job {
        spec: Some(spec),
        ..Default::default()
    };
    if let Some(want) = p.suspend {
        let patch = merge(JobSpec {
            suspend: Some(want),
            ..Default::default()
        });
        jobs.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    if let Some((got, want)) = p.deadline {
        let patch = merge(JobSpec {
            active_deadline_seconds: Some(i64::try_from(want).unwrap_or(i64::MAX)),
            ..Default::default()
        });
        jobs.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        let note = decide::deadline_note(got, want);
        ctx.event(ftj, EventType::Warning, reason::DEADLINE_RESTORED, note);
    }
    if matches!(
        decide::job_state(job).0,
        JobState::Complete | JobState::Failed
    ) {
        let hours = decide::gpu_hours(&ftj.spec, job, &now());
        admission::finish_usage(ftj, proposal, hours, ctx).await?;
    }
    Ok(())
}

/// The operator's evaluation of a finished job, then its records: in the trusted namespace
/// ([`crate::controller::training`]) and on chain.
async fn judge(
    ftj: &FineTuneJob,
    seen: &Observed,
    admitted: &Admitted,
    extra: FineTuneJobStatus,
    ctx: &Context,
    env: &decide::Env<'_>,
) -> Result<decide::Shown, Error> {
    use evaluation::Evaluated;
    let out = match evaluation::evaluate(ftj, ctx, admitted).await? {
        Evaluated::Done(out) => out,
        Evaluated::Pending(message) => return Ok(decide::evaluating(extra, None, message)),
        Evaluated::Failed(r, message) => return Ok(decide::evaluating(extra, Some(r), message)),
    };
    let judged = decide::judge(ftj, admitted, &out, env);
    // The operator's record first: what a ModelDeployment of this job serves.
    let record = crate::controller::training::Judged {
        generation: ftj.metadata.generation.unwrap_or(0),
        model_uri: ftj.spec.output_uri.clone(),
        model_digest: out.model_digest.clone(),
        passed: judged.met,
        dataset_root: admitted.dataset_root.clone(),
    };
    crate::controller::training::record(ctx, ftj, &record).await?;
    let chain = match &ctx.ledger {
        Some(h) => {
            let p = seen.proposal.as_ref();
            record::record_training(ftj, p, admitted, &out, judged.met, h, ctx)
                .await
                .map(Some)
                .map_err(|e| e.to_string())
        }
        None => Ok(None),
    };
    Ok(decide::judged(ftj, admitted, extra, judged, chain))
}

/// Creates the children of an admitted job and writes its status beside them; when the
/// trainer Job cannot be created (a quota, an admission webhook, …) the status says so
/// instead, and the reconcile is retried.
async fn create(
    ftj: &FineTuneJob,
    ctx: &Context,
    admitted: &Admitted,
    shown: &decide::Shown,
    env: &decide::Env<'_>,
) -> Result<(), Error> {
    let (applied, written) = futures::join!(
        apply_children(ftj, ctx, admitted),
        write_status(ftj, ctx, shown, env)
    );
    let name = children::child_name(ftj);
    if let Err(e) = applied {
        let failed = decide::not_created(&name, &e.to_string());
        write_status(ftj, ctx, &failed, env).await?;
        let message = failed.sets[0].3.clone();
        ctx.event(ftj, EventType::Warning, reason::JOB_NOT_CREATED, message);
        return Err(e);
    }
    written?;
    tracing::info!(job = %name, dataset_version = admitted.dataset_version, "trainer Job created");
    Ok(())
}

/// Applies the trainer's identity (first, in order: the Job's pods are refused until the
/// account exists, and a binding is checked against the Role it names), then its
/// configuration, its Service (several workers) and the Job, at once.
async fn apply_children(
    ftj: &FineTuneJob,
    ctx: &Context,
    admitted: &Admitted,
) -> Result<Job, Error> {
    let ns = ftj.namespace().unwrap_or_default();
    let client = ctx.client.clone();
    let (account, role, binding) = children::trainer_identity(ftj);
    ssa(
        &Api::<ServiceAccount>::namespaced(client.clone(), &ns),
        &account,
    )
    .await?;
    ssa(&Api::<Role>::namespaced(client.clone(), &ns), &role).await?;
    ssa(
        &Api::<RoleBinding>::namespaced(client.clone(), &ns),
        &binding,
    )
    .await?;
    let suspend = ftj.spec.run_policy.suspend || ftj.spec.run_policy.queue_name.is_some();
    let job = children::trainer_job(ftj, &ctx.config.trainer_image, admitted, suspend);
    let config = children::training_config(ftj, admitted);
    let configmaps = Api::<ConfigMap>::namespaced(client.clone(), &ns);
    let services = Api::<Service>::namespaced(client.clone(), &ns);
    let jobs = Api::<Job>::namespaced(client, &ns);
    let (_, _, job) = futures::try_join!(
        ssa(&configmaps, &config),
        async {
            if ftj.spec.resources.workers > 1 {
                ssa(&services, &children::rendezvous_service(ftj))
                    .await
                    .map(Some)
            } else {
                Ok(None)
            }
        },
        ssa(&jobs, &job),
    )?;
    Ok(job)
}

/// Writes the status when it differs from what is there; an event on phase changes.
async fn write_status(
    ftj: &FineTuneJob,
    ctx: &Context,
    shown: &decide::Shown,
    env: &decide::Env<'_>,
) -> Result<(), Error> {
    let status = decide::status(ftj, shown, &env.now);
    if !decide::changed(ftj, &status) {
        return Ok(());
    }
    let api =
        Api::<FineTuneJob>::namespaced(ctx.client.clone(), &ftj.namespace().unwrap_or_default());
    apply_status(&api, &ftj.name_any(), &status).await?;
    if ftj.status.as_ref().and_then(|s| s.phase) != Some(shown.phase) {
        let (type_, reason, note) = decide::phase_event(shown, &status);
        ctx.event(ftj, type_, &reason, note);
    }
    Ok(())
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
