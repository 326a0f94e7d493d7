//! The gates a FineTuneJob passes before its trainer Job is created: the operator's workload
//! policy (images, host paths), the proposal approved, its own Datanet with a published
//! version that meets the mandate's data needs; and the targets it is judged by. Pure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use modelcommons_crds::common::{Direction, MetricTarget};
use modelcommons_crds::contract::container_path;
use modelcommons_crds::datanet::Datanet;
use modelcommons_crds::finetune::{FineTuneJobSpec, reason};
use modelcommons_crds::proposal::{ModelProposal, ModelProposalPhase};

use crate::controller::Config;
use crate::controller::lineage::VersionRecord;

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
        reason: reason::HOST_PATH_REFUSED,
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
pub fn trainer_image_allowed(spec: &FineTuneJobSpec, config: &Config) -> Result<(), Gate> {
    match &spec.trainer_image {
        Some(image)
            if *image != config.trainer_image
                && !config.allowed_trainer_images.iter().any(|a| a == image) =>
        {
            Err(Gate {
                reason: reason::TRAINER_IMAGE_NOT_ALLOWED,
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
    published: &BTreeMap<u32, VersionRecord>,
    config: &Config,
) -> Result<Admitted, Gate> {
    trainer_image_allowed(spec, config)?;
    for uri in [&spec.base_model.uri, &spec.output_uri] {
        workload_uri_allowed(uri, &config.dev_host_dirs)?;
    }
    let p = approved_proposal(spec, proposal)?;
    own_datanet(spec, datanet)?;
    let version = published_version(spec, datanet, published)?;
    let record = &published[&version];
    data_needs_met(spec, p, record, version)?;
    let dataset_uri = record.dataset_uri.clone();
    for uri in [&spec.base_model.uri, &dataset_uri, &spec.output_uri] {
        if container_path(uri).is_none() {
            return Err(Gate {
                reason: reason::STORAGE_UNSUPPORTED,
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

/// The proposal, if it exists and its status says it is approved (the chain is asked too,
/// at admission: a status is tenant-writable).
fn approved_proposal<'a>(
    spec: &FineTuneJobSpec,
    proposal: Option<&'a ModelProposal>,
) -> Result<&'a ModelProposal, Gate> {
    let Some(p) = proposal else {
        return Err(Gate {
            reason: reason::PROPOSAL_NOT_FOUND,
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
            reason: reason::PROPOSAL_NOT_APPROVED,
            message: format!(
                "ModelProposal {} is {}; training starts by itself once token holders approve it",
                spec.proposal_ref.name,
                phase.map_or("not yet registered".to_string(), |p| format!("{p:?}"))
            ),
        });
    }
    Ok(p)
}

/// The Datanet exists and gathers data for the job's own proposal.
fn own_datanet(spec: &FineTuneJobSpec, datanet: Option<&Datanet>) -> Result<(), Gate> {
    let Some(d) = datanet else {
        return Err(Gate {
            reason: reason::DATANET_NOT_FOUND,
            message: format!(
                "Datanet {} does not exist in this namespace; create it or fix spec.datanetRef",
                spec.datanet_ref.name
            ),
        });
    };
    if d.spec.proposal_ref.name != spec.proposal_ref.name {
        return Err(Gate {
            reason: reason::DATANET_OF_ANOTHER_PROPOSAL,
            message: format!(
                "Datanet {} gathers data for ModelProposal {}, not {}: a job trains under its own mandate on its own mandate's data; name a Datanet of {}",
                spec.datanet_ref.name,
                d.spec.proposal_ref.name,
                spec.proposal_ref.name,
                spec.proposal_ref.name
            ),
        });
    }
    Ok(())
}

/// The version trained on: the pinned one or the latest, from the operator's own record of
/// published versions (not the Datanet's status).
fn published_version(
    spec: &FineTuneJobSpec,
    datanet: Option<&Datanet>,
    published: &BTreeMap<u32, VersionRecord>,
) -> Result<u32, Gate> {
    let latest = published.keys().last().copied();
    match (spec.datanet_ref.version, latest) {
        (Some(want), _) if published.contains_key(&want) => Ok(want),
        (None, Some(have)) => Ok(have),
        (want, _) => {
            let st = datanet.and_then(|d| d.status.clone()).unwrap_or_default();
            Err(Gate {
                reason: reason::DATANET_NOT_READY,
                message: format!(
                    "Datanet {} has no published version{} yet (it is {}{}); training starts when curation publishes it",
                    spec.datanet_ref.name,
                    want.map(|v| format!(" {v}")).unwrap_or_default(),
                    st.phase.map_or("new".to_string(), |p| format!("{p:?}")),
                    latest
                        .map(|l| format!(", at version {l}"))
                        .unwrap_or_default(),
                ),
            })
        }
    }
}

/// The mandate's data needs, against the version trained on (the operator's record of it).
fn data_needs_met(
    spec: &FineTuneJobSpec,
    p: &ModelProposal,
    record: &VersionRecord,
    version: u32,
) -> Result<(), Gate> {
    for need in &p.spec.mandate.data_needs {
        let have = record
            .accepted_quality_bps
            .iter()
            .filter(|q| **q >= need.min_quality_bps)
            .count();
        if have < need.min_accepted_contributions as usize {
            return Err(Gate {
                reason: reason::DATA_NEEDS_UNMET,
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
    Ok(())
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
