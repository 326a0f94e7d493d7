//! The operator's evaluation of a trained model: its own Job in the trusted namespace, whose
//! result (the pod's termination message) decides the outcome.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use kube::api::Api;
use modelcommons_crds::finetune::{FineTuneJob, reason};

use super::LABEL_EVALUATES;
use super::children::{evaluation_job, evaluation_name};
use super::decide::{JobState, job_state};
use super::gates::Admitted;
use crate::controller::{Context, Error};

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
pub async fn evaluate(
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
    let Some(job) = jobs.get_opt(&name).await? else {
        jobs.create(&kube::api::PostParams::default(), &desired)
            .await?;
        return Ok(Evaluated::Pending(format!(
            "the operator evaluates the trained model on the held-out records of dataset version {} (Job {ns}/{name})",
            admitted.dataset_version
        )));
    };
    let ours = ours(ftj, &job, &desired);
    if !ours {
        return Ok(Evaluated::Failed(
            reason::FORGED_RESULT,
            format!(
                "Job {ns}/{name} is not the evaluation the operator would run for this job; delete it and the operator runs its own"
            ),
        ));
    }
    match job_state(&job) {
        (JobState::Failed, why) => {
            let (reason, message) = why.unwrap_or_default();
            Ok(Evaluated::Failed(
                reason::EVALUATION_FAILED,
                format!(
                    "the evaluation Job {ns}/{name} failed ({reason}: {message}); the output at {} may not be a model the trainer can load",
                    ftj.spec.output_uri
                ),
            ))
        }
        (JobState::Complete, _) => {
            let out =
                crate::controller::datanet::pod_result::<EvalOutput, _>(ctx, ftj, &job).await?;
            Ok(completed(ftj, out, &format!("{ns}/{name}")))
        }
        _ => Ok(Evaluated::Pending(format!(
            "the operator evaluates the trained model on the held-out records of dataset version {} (Job {ns}/{name})",
            admitted.dataset_version
        ))),
    }
}

/// Whether `job` is the evaluation the operator would run: its label names the job's uid and
/// it runs the same containers.
fn ours(ftj: &FineTuneJob, job: &Job, desired: &Job) -> bool {
    let containers = |j: &Job| {
        j.spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .map(|s| s.containers.clone())
            .unwrap_or_default()
    };
    job.labels().get(LABEL_EVALUATES) == ftj.uid().as_ref()
        && crate::controller::datanet::same_containers(&containers(job), &containers(desired))
}

/// A completed evaluation's result (None: not read yet). The base it loaded must be the one
/// the job names.
fn completed(ftj: &FineTuneJob, out: Option<EvalOutput>, job: &str) -> Evaluated {
    let base = ftj.spec.base_model.sha256.trim_start_matches("sha256:");
    match out {
        Some(out)
            if out
                .baseline
                .as_ref()
                .is_some_and(|b| b.model_digest != base) =>
        {
            Evaluated::Failed(
                reason::BASE_MODEL_DIGEST_MISMATCH,
                format!(
                    "the base model at {} has weights with sha256 {}, not spec.baseModel.sha256 {}: the job did not start from the model it names; nothing is recorded",
                    ftj.spec.base_model.uri,
                    out.baseline.map(|b| b.model_digest).unwrap_or_default(),
                    ftj.spec.base_model.sha256
                ),
            )
        }
        Some(out) => Evaluated::Done(out),
        None => Evaluated::Pending(format!(
            "the evaluation Job {job} completed; reading its result"
        )),
    }
}
