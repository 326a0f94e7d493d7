//! What the status shows: the Datanet's phase, `Ready` reason and message, and its
//! kstatus progress.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use modelcommons_crds::conditions::Progress;
use modelcommons_crds::datanet::{CurationResult, Datanet, DatanetPhase, DatanetStatus, reason};
use modelcommons_crds::proposal::{ModelProposal, ModelProposalPhase};

use super::{ANNOTATION_RETRY, JobState, ManifestSource, Unverified, ready_message};
use crate::controller::lineage::VersionRecord;

pub(super) struct Shown {
    pub(super) phase: DatanetPhase,
    pub(super) ready: bool,
    pub(super) reason: &'static str,
    pub(super) message: String,
    pub(super) requeue: Option<Duration>,
    /// Also a Warning event under `reason` when the condition turns to it.
    pub(super) warn: bool,
}

impl Shown {
    pub(super) fn new(
        phase: DatanetPhase,
        reason: &'static str,
        message: String,
        requeue: Option<Duration>,
    ) -> Self {
        Self {
            phase,
            ready: phase == DatanetPhase::Ready,
            reason,
            message,
            requeue,
            warn: false,
        }
    }

    /// Where the Datanet stands in kstatus terms: Ready; Stalled when a person must act (a
    /// failed version, a grant, a manifest to fix); Reconciling otherwise.
    pub(super) fn progress(&self) -> Progress {
        const NEEDS_A_PERSON: &[&str] = &[
            reason::CREDENTIALS_FORBIDDEN,
            reason::CREDENTIALS_MISSING,
            reason::CURATION_FAILED,
            reason::MANIFEST_INVALID,
            reason::MANIFEST_UNSUPPORTED,
            reason::TRUSTED_NAMESPACE_MISSING,
        ];
        if self.ready {
            Progress::Ready
        } else if self.phase == DatanetPhase::Failed || NEEDS_A_PERSON.contains(&self.reason) {
            Progress::Stalled
        } else {
            Progress::Reconciling
        }
    }

    /// A verdict that publishes nothing and is worth a Warning event: waits for a change.
    pub(super) fn warn(phase: DatanetPhase, reason: &'static str, message: String) -> Self {
        Self {
            warn: true,
            ..Self::new(phase, reason, message, None)
        }
    }
}

/// Collecting while the proposal is not approved (a published version stays Ready whatever
/// happens to the proposal later); None once it is.
pub(super) fn proposal_gate(
    dn: &Datanet,
    status: &DatanetStatus,
    proposal: Option<&ModelProposal>,
    recheck: Duration,
) -> Option<Shown> {
    let phase = proposal.and_then(|p| p.status.as_ref()?.phase);
    if matches!(
        phase,
        Some(ModelProposalPhase::Approved | ModelProposalPhase::Active)
    ) {
        return None;
    }
    if status.phase == Some(DatanetPhase::Ready) {
        return Some(Shown::new(
            DatanetPhase::Ready,
            reason::PUBLISHED,
            ready_message(status),
            None,
        ));
    }
    let is = phase.map_or_else(
        || {
            if proposal.is_some() {
                "not yet registered".into()
            } else {
                "missing".into()
            }
        },
        |p| format!("{p:?}"),
    );
    Some(Shown::new(
        DatanetPhase::Collecting,
        reason::PROPOSAL_NOT_APPROVED,
        format!(
            "ModelProposal {} is {is}; curation starts by itself once token holders approve it (rewards are paid under its mandate)",
            dn.spec.proposal_ref.name
        ),
        Some(recheck),
    ))
}

/// A manifest that cannot be fetched yet (retried); a Ready Datanet stays Ready.
pub(super) fn manifest_unavailable(
    status: &DatanetStatus,
    source: &ManifestSource,
    m: String,
    recheck: Duration,
) -> Shown {
    let phase = if status.phase == Some(DatanetPhase::Ready) {
        DatanetPhase::Ready
    } else {
        DatanetPhase::Collecting
    };
    let message = match source {
        ManifestSource::Uri(u) if crate::curate::is_object_uri(u) => format!(
            "{m}; retrying. The operator reads object-store manifests with the AWS_*, GOOGLE_* and AZURE_* settings of its own environment (Helm value objectStore.envFromSecret); the curation Job with contributions.credentialsSecretRef"
        ),
        _ => format!("{m}; retrying"),
    };
    Shown::new(phase, reason::MANIFEST_UNAVAILABLE, message, Some(recheck))
}

/// The version the manifest `digest` is curated as: the one it was published as, or the
/// next; `Err` (Ready) when it is published and the status already says so.
pub(super) fn version(
    status: &DatanetStatus,
    published: &BTreeMap<u32, VersionRecord>,
    digest: &str,
) -> Result<u32, Shown> {
    let mine = published
        .iter()
        .rev()
        .find(|(_, r)| r.manifest_sha256 == digest)
        .map(|(v, _)| *v);
    if let Some(v) = mine
        && status.phase == Some(DatanetPhase::Ready)
        && status.version == Some(v)
        && status.manifest_sha256.as_deref() == Some(digest)
    {
        return Err(Shown::new(
            DatanetPhase::Ready,
            reason::PUBLISHED,
            ready_message(status),
            None,
        ));
    }
    Ok(mine.unwrap_or_else(|| published.keys().last().map_or(1, |v| v + 1)))
}

/// A curation Job the operator did not make.
pub(super) fn forged_job(trusted: &str, name: &str, version: u32, why: &str) -> Shown {
    Shown::warn(
        DatanetPhase::Failed,
        reason::FORGED_RESULT,
        format!(
            "Job {trusted}/{name} was not made by the operator: {why}. Nothing is published from it; the platform team deletes it (kubectl delete job -n {trusted} {name}) and the operator curates version {version} with its own"
        ),
    )
}

/// The trusted namespace does not exist.
pub(super) fn trusted_namespace_missing(trusted: &str, why: &str, recheck: Duration) -> Shown {
    Shown::new(
        DatanetPhase::Curating,
        reason::TRUSTED_NAMESPACE_MISSING,
        format!(
            "the operator curates in its trusted namespace {trusted}, which does not exist ({why}); create it (Helm evaluation.createNamespace) and curation starts"
        ),
        Some(recheck),
    )
}

/// A result of another version or manifest.
pub(super) fn mismatch(
    trusted: &str,
    name: &str,
    version: u32,
    digest: &str,
    r: &CurationResult,
) -> Shown {
    Shown::warn(
        DatanetPhase::Failed,
        reason::CURATION_MISMATCH,
        format!(
            "the curation Job {trusted}/{name} reported version {} of manifest {}, not version {version} of {digest}; nothing is published",
            r.version, r.manifest_sha256
        ),
    )
}

/// A result that cannot be read back yet (retried) or does not check out.
pub(super) fn unverified(trusted: &str, name: &str, version: u32, u: Unverified) -> Shown {
    match u {
        Unverified::Unreadable(m) => Shown::new(
            DatanetPhase::Curating,
            reason::ARTIFACTS_UNREADABLE,
            m,
            Some(Duration::from_secs(10)),
        ),
        Unverified::Forged(f) => Shown::warn(
            DatanetPhase::Failed,
            f.reason(),
            format!(
                "the result of curation Job {trusted}/{name} does not check out: {f}. Nothing is published; the platform team deletes the Job (kubectl delete job -n {trusted} {name}) to curate version {version} again"
            ),
        ),
    }
}

/// A failed curation asked to run again.
pub(super) fn retried(trusted: &str, name: &str) -> Shown {
    Shown::new(
        DatanetPhase::Curating,
        reason::CURATION_RETRIED,
        format!("curation Job {trusted}/{name} failed; it runs again as asked"),
        Some(Duration::from_secs(1)),
    )
}

/// What the reconcile knows of a curation Job without a result.
pub(super) struct JobFacts<'a> {
    pub(super) trusted: &'a str,
    pub(super) name: &'a str,
    pub(super) version: u32,
    pub(super) state: JobState,
    /// The Job's failure message.
    pub(super) failure: Option<String>,
    /// Its failed pod's last words.
    pub(super) said: Option<String>,
    pub(super) completed: Option<Time>,
}

/// Failed (with the pod's last words and how to retry), completed without a report (failed
/// after the grace period), or curating.
pub(super) fn job_outcome(
    dn: &Datanet,
    j: &JobFacts<'_>,
    now: &Time,
    grace: Duration,
    recheck: Duration,
) -> Shown {
    let (trusted, name, version) = (j.trusted, j.name, j.version);
    let ns = dn.namespace().unwrap_or_default();
    let retry = format!(
        "kubectl -n {ns} annotate datanet {} {ANNOTATION_RETRY}=\"$(date +%s)\" --overwrite",
        dn.name_any()
    );
    match j.state {
        JobState::Failed => {
            let why = j.failure.clone().unwrap_or_default();
            let said = j
                .said
                .as_ref()
                .map(|m| format!("; its last words: {m}"))
                .unwrap_or_default();
            Shown::new(
                DatanetPhase::Failed,
                reason::CURATION_FAILED,
                format!(
                    "the curation Job {trusted}/{name} failed: {why}{said}. Fix the cause (the manifest, the contributions' store or credentials) and ask for another attempt: {retry}"
                ),
                None,
            )
        }
        JobState::Complete => {
            let waited = j
                .completed
                .as_ref()
                .map_or(0.0, |f| now.0.duration_since(f.0).as_secs_f64());
            if waited > grace.as_secs_f64() {
                Shown::new(
                    DatanetPhase::Failed,
                    reason::NO_RESULT,
                    format!(
                        "the curation Job {trusted}/{name} completed {waited:.0}s ago without reporting a result; the platform team can read its logs (kubectl -n {trusted} logs job/{name}); ask for another attempt: {retry}"
                    ),
                    None,
                )
            } else {
                Shown::new(
                    DatanetPhase::Curating,
                    reason::AWAITING_RESULT,
                    format!("the curation Job {trusted}/{name} finished; waiting for its report"),
                    Some(Duration::from_secs(2)),
                )
            }
        }
        _ => Shown::new(
            DatanetPhase::Curating,
            reason::CURATING,
            format!(
                "the curation Job {trusted}/{name} fetches and checks the contributions of version {version}"
            ),
            Some(recheck),
        ),
    }
}
