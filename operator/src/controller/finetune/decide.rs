//! The decide step of the FineTuneJob controller: from the trainer Job, the admission and the
//! evaluation (what the reconcile observed and the effect steps returned), the phase, the
//! conditions and the operator's part of the status, the patches a tenant-edited Job needs,
//! and when to look again. Pure: no API client, the clock passed in; unit-tested in `tests.rs`.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::events::EventType;
use modelcommons_crds::common::{MetricTarget, MetricValue};
use modelcommons_crds::conditions::{Conditions, Progress, READY};
use modelcommons_crds::finetune::{
    Evaluation, FineTuneJob, FineTuneJobPhase, FineTuneJobSpec, FineTuneJobStatus, reason,
};
use modelcommons_crds::proposal::ModelProposal;

use super::children::evaluation_name;
use super::evaluation::EvalOutput;
use super::gates::{Admitted, Gate, targets, targets_met};
use super::{DATASET_ROOT_ENV, DATASET_URI_ENV, DATASET_VERSION_ENV, GATED, SUSPENDED};
use crate::controller::LEDGER_SYNCED;

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
                c.reason
                    .clone()
                    .unwrap_or_else(|| reason::JOB_FAILED.into()),
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

/// GPU-hours a job has used by `now`.
pub fn gpu_hours(spec: &FineTuneJobSpec, job: &Job, now: &Time) -> f64 {
    let st = job.status.clone().unwrap_or_default();
    let Some(start) = st.start_time else {
        return 0.0;
    };
    let end = st.completion_time.map_or(now.0, |t| t.0);
    let secs = end.duration_since(start.0).as_secs_f64().max(0.0);
    secs / 3600.0 * f64::from(spec.resources.workers.max(1) * spec.resources.gpus_per_worker)
}

/// A started job: its dataset version, root and location as the operator created its Job
/// with (the pod template's environment; a Job made before these were set falls back to the
/// status), judged by the rubric tightened by its targets (see [`super::gates::targets`]).
pub fn started(ftj: &FineTuneJob, proposal: Option<&ModelProposal>, job: &Job) -> Admitted {
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

/// What the decide step reads besides the object.
#[derive(Debug, Clone)]
pub struct Env<'a> {
    /// Now.
    pub now: Time,
    /// How soon a waiting job is looked at again.
    pub recheck: Duration,
    /// How long a finished trainer Job may go without a result.
    pub result_grace: Duration,
    /// Where the evaluation runs.
    pub trusted_namespace: &'a str,
}

/// One condition to set: type, status, reason, message.
pub type Set = (&'static str, bool, String, String);

/// What the status shows and what happens next.
#[derive(Debug, Clone, PartialEq)]
pub struct Shown {
    /// The phase.
    pub phase: FineTuneJobPhase,
    /// The conditions to set (the kstatus pair follows `Ready`).
    pub sets: Vec<Set>,
    /// The operator's other status fields (job name, dataset, GPU-hours, times, evaluation,
    /// chain record); the trainer's (`progress`, `result`) are never written here.
    pub extra: FineTuneJobStatus,
    /// When to look again (None: on the next change).
    pub requeue: Option<Duration>,
    /// A Warning event for a phase change (reason, message); otherwise a Normal one.
    pub warn: Option<(String, String)>,
}

fn set(t: &'static str, s: bool, r: &str, m: impl Into<String>) -> Set {
    (t, s, r.to_string(), m.into())
}

fn clear_gate() -> Set {
    set(GATED, false, reason::ADMITTED, "every gate holds")
}

/// A job a gate holds back.
pub fn gated(gate: &Gate, env: &Env<'_>) -> Shown {
    Shown {
        phase: FineTuneJobPhase::Pending,
        sets: vec![
            set(GATED, true, gate.reason, gate.message.clone()),
            set(READY, false, gate.reason, gate.message.clone()),
        ],
        extra: FineTuneJobStatus::default(),
        requeue: Some(env.recheck),
        warn: Some((gate.reason.to_string(), gate.message.clone())),
    }
}

/// A trainer Job that could not be created (retried).
pub fn not_created(name: &str, error: &str) -> Shown {
    let message = format!("creating the trainer Job {name} failed: {error}; retrying");
    Shown {
        phase: FineTuneJobPhase::Pending,
        sets: vec![set(READY, false, reason::JOB_NOT_CREATED, message)],
        extra: FineTuneJobStatus::default(),
        requeue: Some(Duration::from_secs(5)),
        warn: None,
    }
}

/// Whether a job is done for good (nothing to do until it changes): Failed, or judged and
/// recorded (`recorded`: on chain, or no chain).
pub fn finished(ftj: &FineTuneJob, recorded: bool) -> bool {
    match ftj.status.as_ref().and_then(|s| s.phase) {
        Some(FineTuneJobPhase::Failed) => true,
        Some(FineTuneJobPhase::Succeeded | FineTuneJobPhase::TargetsMissed) => recorded,
        _ => false,
    }
}

/// What a tenant-edited trainer Job needs patched back.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobPatches {
    /// `spec.suspend` to set (runPolicy.suspend toggles a Job no queue manages).
    pub suspend: Option<bool>,
    /// `spec.activeDeadlineSeconds` to restore (the GPU time reserved at admission), with
    /// what it was.
    pub deadline: Option<(Option<i64>, u64)>,
}

/// The patches an existing trainer Job needs.
pub fn job_patches(ftj: &FineTuneJob, job: &Job, admitted: &Admitted, fresh: bool) -> JobPatches {
    let mut p = JobPatches::default();
    let spec = job.spec.as_ref();
    if ftj.spec.run_policy.queue_name.is_none() {
        let want = ftj.spec.run_policy.suspend;
        if spec.and_then(|s| s.suspend).unwrap_or(false) != want {
            p.suspend = Some(want);
        }
    }
    let (state, _) = job_state(job);
    if let (false, Some(want), JobState::Running | JobState::Suspended) =
        (fresh, admitted.active_deadline_seconds, state)
    {
        let got = spec.and_then(|s| s.active_deadline_seconds);
        if got.and_then(|g| u64::try_from(g).ok()) != Some(want) {
            p.deadline = Some((got, want));
        }
    }
    p
}

/// The note of the `DeadlineRestored` event.
pub fn deadline_note(got: Option<i64>, want: u64) -> String {
    format!(
        "the trainer Job's activeDeadlineSeconds was {}; set back to {want}, the GPU time reserved for this job at admission",
        got.map_or_else(|| "unset".into(), |g| g.to_string())
    )
}

/// Where the decide step goes from the trainer Job.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Show this.
    Show(Shown),
    /// The trainer finished with a result: the operator's evaluation decides (see
    /// [`evaluating`], [`judge`] and [`judged`]).
    Evaluate(FineTuneJobStatus),
}

/// The operator's status fields every started job shows.
fn started_status(
    ftj: &FineTuneJob,
    job: &Job,
    admitted: &Admitted,
    env: &Env<'_>,
) -> FineTuneJobStatus {
    let name = super::children::child_name(ftj);
    let hours = gpu_hours(&ftj.spec, job, &env.now);
    FineTuneJobStatus {
        job_name: Some(name),
        dataset_version: Some(admitted.dataset_version),
        dataset_root: admitted.dataset_root.clone(),
        gpu_hours_used: Some(format!("{hours:.4}")),
        start_time: job.status.as_ref().and_then(|s| s.start_time.clone()),
        ..Default::default()
    }
}

/// From the trainer Job (`job`: as it is, or as it will be created).
pub fn from_job(ftj: &FineTuneJob, job: &Job, admitted: &Admitted, env: &Env<'_>) -> Next {
    let name = super::children::child_name(ftj);
    let (state, failure) = job_state(job);
    let mut extra = started_status(ftj, job, admitted, env);
    let completion = job.status.as_ref().and_then(|s| s.completion_time.clone());
    let has_result = ftj
        .status
        .as_ref()
        .and_then(|s| s.result.as_ref())
        .is_some_and(|r| r.model_digest.is_some());
    let show = |phase, sets, extra, requeue| {
        Next::Show(Shown {
            phase,
            sets,
            extra,
            requeue,
            warn: None,
        })
    };
    match state {
        JobState::Suspended => {
            let (r, m) = if ftj.spec.run_policy.queue_name.is_some() {
                (
                    reason::AWAITING_ADMISSION,
                    "the trainer Job waits for admission by its Kueue queue",
                )
            } else {
                (
                    reason::SUSPENDED,
                    "spec.runPolicy.suspend is true; set it to false to run",
                )
            };
            let sets = vec![
                clear_gate(),
                set(SUSPENDED, true, r, m),
                set(READY, false, r, m),
            ];
            show(FineTuneJobPhase::Queued, sets, extra, Some(env.recheck))
        }
        JobState::Running => {
            let sets = vec![
                clear_gate(),
                set(SUSPENDED, false, reason::RUNNING, "trainer pods run"),
                set(READY, false, reason::TRAINING, "trainer pods run"),
            ];
            show(FineTuneJobPhase::Running, sets, extra, Some(env.recheck))
        }
        JobState::Failed => {
            let (r, m) = failure.unwrap_or_default();
            let m = format!("the trainer Job failed: {m} (see `kubectl logs job/{name}`)");
            extra.completion_time = Some(env.now.clone());
            let sets = vec![clear_gate(), (READY, false, r, m)];
            show(FineTuneJobPhase::Failed, sets, extra, None)
        }
        JobState::Complete if has_result => {
            extra.completion_time = Some(completion.unwrap_or_else(|| env.now.clone()));
            Next::Evaluate(extra)
        }
        JobState::Complete => {
            let waited = completion.map_or(0.0, |f| env.now.0.duration_since(f.0).as_secs_f64());
            if waited > env.result_grace.as_secs_f64() {
                let m = format!(
                    "the trainer Job completed {waited:.0}s ago without reporting a result; check its logs (`kubectl logs job/{name}`)"
                );
                extra.completion_time = Some(env.now.clone());
                let sets = vec![clear_gate(), set(READY, false, reason::NO_RESULT, m)];
                show(FineTuneJobPhase::Failed, sets, extra, None)
            } else {
                let m = "the trainer finished; waiting for its evaluation result";
                let sets = vec![clear_gate(), set(READY, false, reason::AWAITING_RESULT, m)];
                show(
                    FineTuneJobPhase::Evaluating,
                    sets,
                    extra,
                    Some(Duration::from_secs(5)),
                )
            }
        }
    }
}

/// While the evaluation runs (`message` says which step), or when it cannot give a result.
pub fn evaluating(
    extra: FineTuneJobStatus,
    failed: Option<&'static str>,
    message: String,
) -> Shown {
    match failed {
        None => Shown {
            phase: FineTuneJobPhase::Evaluating,
            sets: vec![clear_gate(), set(READY, false, reason::EVALUATING, message)],
            extra,
            requeue: Some(Duration::from_secs(2)),
            warn: None,
        },
        Some(r) => Shown {
            phase: FineTuneJobPhase::Failed,
            sets: vec![clear_gate(), set(READY, false, r, message.clone())],
            extra,
            requeue: None,
            warn: Some((r.to_string(), message)),
        },
    }
}

/// The evaluation's verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    /// Every target met (and the rubric known).
    pub met: bool,
    /// The trained model's metrics as decimal strings.
    pub metrics: BTreeMap<String, String>,
    /// What the status shows of it.
    pub evaluation: Evaluation,
}

fn values(m: &BTreeMap<String, f64>) -> BTreeMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.to_string())).collect()
}

fn listed(m: &BTreeMap<String, String>) -> Vec<MetricValue> {
    m.iter()
        .map(|(k, v)| MetricValue {
            name: k.clone(),
            value: v.clone(),
        })
        .collect()
}

/// Judges the evaluation's output against the admitted targets.
pub fn judge(ftj: &FineTuneJob, admitted: &Admitted, out: &EvalOutput, env: &Env<'_>) -> Judged {
    let metrics = values(&out.metrics);
    let met = admitted.rubric && targets_met(&admitted.targets, &metrics);
    let baseline = out
        .baseline
        .as_ref()
        .map(|b| values(&b.metrics))
        .unwrap_or_default();
    Judged {
        met,
        evaluation: Evaluation {
            job_name: Some(evaluation_name(ftj)),
            namespace: Some(env.trusted_namespace.to_string()),
            examples: Some(out.examples),
            model_digest: Some(format!("sha256:{}", out.model_digest)),
            metrics: listed(&metrics),
            baseline: listed(&baseline),
            targets: admitted.targets.clone(),
            targets_met: Some(met),
        },
        metrics,
    }
}

/// The judged job, once its record on chain is written (`Ok(tx)`), failed (`Err(why)`), or
/// not wanted (no chain: `Ok(None)`).
pub fn judged(
    ftj: &FineTuneJob,
    admitted: &Admitted,
    mut extra: FineTuneJobStatus,
    j: Judged,
    chain: Result<Option<String>, String>,
) -> Shown {
    extra.evaluation = Some(j.evaluation.clone());
    match chain {
        Err(why) => {
            let message = format!("{why}; the result is recorded on chain when it answers");
            let m = "the result is judged; recording it on chain";
            Shown {
                phase: FineTuneJobPhase::Evaluating,
                sets: vec![
                    clear_gate(),
                    set(READY, false, reason::RECORDING_RESULT, m),
                    set(LEDGER_SYNCED, false, reason::LEDGER_UNAVAILABLE, message),
                ],
                extra,
                requeue: Some(Duration::from_secs(5)),
                warn: None,
            }
        }
        Ok(tx) => {
            extra.chain = tx.map(|tx| modelcommons_crds::common::ChainRecord {
                tx_hash: Some(tx),
                ..Default::default()
            });
            let (phase, r, m) = verdict(ftj, admitted, &j);
            Shown {
                phase,
                sets: vec![
                    clear_gate(),
                    set(SUSPENDED, false, reason::FINISHED, "trainer finished"),
                    set(READY, j.met, r, m),
                ],
                extra,
                requeue: None,
                warn: None,
            }
        }
    }
}

/// Succeeded, or TargetsMissed with what was missed.
fn verdict(
    ftj: &FineTuneJob,
    admitted: &Admitted,
    j: &Judged,
) -> (FineTuneJobPhase, &'static str, String) {
    if j.met {
        return (
            FineTuneJobPhase::Succeeded,
            reason::TARGETS_MET,
            "every target is met".to_string(),
        );
    }
    let missed_target = |t: &MetricTarget| !targets_met(std::slice::from_ref(t), &j.metrics);
    let mut missed: Vec<String> = admitted
        .targets
        .iter()
        .filter(|t| missed_target(t))
        .map(|t| {
            format!(
                "{} {} (wanted {:?} {})",
                t.name,
                j.metrics.get(&t.name).map_or("unmeasured", String::as_str),
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
        reason::TARGETS_MISSED,
        format!("missed: {}", missed.join(", ")),
    )
}

/// Where a FineTuneJob stands in kstatus terms: Ready once it Succeeded; Stalled when it
/// failed, missed its targets, or a gate needs a person (a missing or foreign reference, an
/// image or location the operator refuses, an exhausted mandate); Reconciling while it waits
/// for votes, data, a queue or its pods.
pub fn progress(phase: FineTuneJobPhase, ready_reason: &str) -> Progress {
    const NEEDS_A_PERSON: &[&str] = &[
        reason::PROPOSAL_NOT_FOUND,
        reason::DATANET_NOT_FOUND,
        reason::DATANET_OF_ANOTHER_PROPOSAL,
        reason::TRAINER_IMAGE_NOT_ALLOWED,
        reason::HOST_PATH_REFUSED,
        reason::STORAGE_UNSUPPORTED,
        reason::EVALUATION_STORAGE_UNSUPPORTED,
        reason::BUDGET_EXHAUSTED,
        reason::DATA_NEEDS_UNMET,
        reason::LINEAGE_UNKNOWN,
        reason::JOB_NOT_CREATED,
    ];
    match phase {
        FineTuneJobPhase::Succeeded => Progress::Ready,
        FineTuneJobPhase::TargetsMissed | FineTuneJobPhase::Failed => Progress::Stalled,
        _ if NEEDS_A_PERSON.contains(&ready_reason) => Progress::Stalled,
        _ => Progress::Reconciling,
    }
}

/// The status the operator writes for `shown`: its fields, the phase, the generation, and
/// the conditions (the object's, with `shown`'s set and the kstatus pair beside `Ready`).
pub fn status(ftj: &FineTuneJob, shown: &Shown, now: &Time) -> FineTuneJobStatus {
    let mut conditions = ftj
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let mut c = Conditions::new(&mut conditions, ftj.metadata.generation, now.clone());
    for (t, s, r, m) in &shown.sets {
        c.set(t, *s, r, m);
    }
    let ready = shown
        .sets
        .iter()
        .find(|(t, ..)| *t == READY)
        .map(|(_, _, r, _)| r.as_str())
        .unwrap_or_default();
    c.beside_ready(progress(shown.phase, ready));
    FineTuneJobStatus {
        phase: Some(shown.phase),
        observed_generation: ftj.metadata.generation,
        conditions,
        ..shown.extra.clone()
    }
}

/// Whether writing `desired` changes anything the operator writes: each field it sets,
/// against the object's (the trainer's fields are not the operator's to compare).
pub fn changed(ftj: &FineTuneJob, desired: &FineTuneJobStatus) -> bool {
    let current = serde_json::to_value(ftj.status.clone().unwrap_or_default()).unwrap_or_default();
    let desired = serde_json::to_value(desired).unwrap_or_default();
    desired
        .as_object()
        .is_none_or(|o| o.iter().any(|(k, v)| current.get(k) != Some(v)))
}

/// The event of a phase change: a Warning with the gate's or failure's reason, or a Normal
/// one named after the phase.
pub fn phase_event(shown: &Shown, status: &FineTuneJobStatus) -> (EventType, String, String) {
    if let Some((r, m)) = &shown.warn {
        return (EventType::Warning, r.clone(), m.clone());
    }
    let ready = status.conditions.iter().find(|c| c.type_ == READY);
    let note = match (&status.job_name, ready) {
        (Some(job), Some(c)) => format!("{} (Job {job})", c.message),
        (None, Some(c)) => c.message.clone(),
        _ => format!("phase {:?}", shown.phase),
    };
    (EventType::Normal, format!("{:?}", shown.phase), note)
}
