//! The Datanet controller and the curation Job it runs.
//!
//! The operator reads the contributions manifest (a ConfigMap key, an object-store or
//! `http(s)://` URI, or `file://` under a dev host directory) and takes its canonical digest:
//! a manifest whose entries it has not published yet is a new version. It runs curation as a
//! Job of its own image (`modelcommons-operator curate`), which fetches and checks every
//! contribution (see [`crate::curate`]), writes the curated dataset and the curation report
//! content-addressed to the artifact store, and reports the result as its termination
//! message. The Job runs in the operator's trusted namespace (`Config::trusted_namespace`),
//! where tenants can neither exec into it nor read what it reads, so a verdict on a
//! contribution — which the operator cannot recompute without fetching it again — is the
//! operator's own. The curation pod needs no Kubernetes API access at all (no service account
//! token is mounted): its Datanet spec comes in an environment variable, the manifest as the
//! bytes the operator read (a ConfigMap the operator writes beside the Job), the tenant's
//! object-store credentials as a copy the operator makes of the Secret the Datanet names —
//! read only where the tenant granted it ([`credentials_role`]). Nothing it reports is trusted
//! all the same: the operator takes the result only from a
//! pod of its own Job running its own container, reads the report and the dataset back from
//! the store by content address and recomputes them ([`crate::curate::verify`]), checks the
//! pool against what is left of the mandate's reward budget, then publishes the version on
//! chain — a RewardDistributor distribution of the recomputed reward root, funded with the
//! pool from the mandate's escrow (`ModelRegistry.fundDistribution`) — and the Datanet
//! becomes `Ready` with counts by reason, both roots, the artifact URIs and the transaction.
//! A bad contribution is an outcome, never a failure.
//!
//! The curated dataset is a directory `sha256-<hex of dataset.jsonl>/` holding `dataset.jsonl`
//! (every accepted record, in the order the dataset root commits to), `holdout.jsonl` (every
//! fifth record: what the operator's evaluation judges trained models on) and `train/`, the
//! only part a trainer pod mounts: `train.jsonl` and its own validation split `eval.jsonl`
//! (see [`split`]). The operator checks all three against the verified `dataset.jsonl`
//! before it publishes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{B256, U256};
use alloy::providers::Provider;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, ListParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use modelcommons_crds::common::ChainRecord;
use modelcommons_crds::conditions::{Conditions, READY, set_condition};
use modelcommons_crds::datanet::{CurationResult, Datanet, DatanetPhase, DatanetStatus, reason};
use modelcommons_crds::proposal::ModelProposal;

use super::finetune::{JobState, container_path, job_state};
use super::{Context, Error, LABEL_INSTANCE, LABEL_MANAGED_BY, LEDGER_SYNCED, now};
use crate::curate::{self, AnyFetch, CurationReport, Fetch};
use crate::ledger::ids::datanet_version_id;
use crate::ledger::mirror::{PublishDistribution, Write};
use crate::runtime::children::{MANAGED_BY, apply as ssa};
use crate::runtime::reconcile::{error_policy, instrumented};

mod artifacts;
mod children;
mod decide;
mod entry;
mod handover;
mod manifest;
mod pods;
mod publish;
mod step;
#[cfg(test)]
mod tests;

pub use artifacts::*;
pub use children::*;
use decide::*;
pub use entry::*;
use handover::*;
pub use manifest::*;
pub(crate) use pods::*;
use publish::*;
use step::*;

/// The Datanet annotation that asks for another attempt at a failed curation: any new value.
pub const ANNOTATION_RETRY: &str = "modelcommons.dev/retry-curation";
/// The environment variable that carries the Datanet's spec (JSON) into the curation pod.
pub const SPEC_ENV: &str = "MODELCOMMONS_DATANET_SPEC";
/// Where the manifest is mounted in the curation pod.
pub const MANIFEST_DIR: &str = "/etc/modelcommons/manifest";
/// The manifest's key in the ConfigMap handed to the curation pod.
pub const MANIFEST_KEY: &str = "manifest.yaml";
/// `app.kubernetes.io/name` of the curation Jobs.
pub const CURATION_APP: &str = "modelcommons-curation";
/// On a curation Job (in the trusted namespace): the namespace of its Datanet.
pub const LABEL_DATANET_NAMESPACE: &str = "modelcommons.dev/datanet-namespace";
/// On a curation Job: the uid of its Datanet.
pub const LABEL_DATANET_UID: &str = "modelcommons.dev/datanet-uid";
/// Where the curation pod writes its result (Kubernetes' default termination message path).
pub const RESULT_FILE: &str = "/dev/termination-log";
/// How long contributors may claim a version's rewards: 90 days.
pub const CLAIM_WINDOW_SECONDS: u64 = 90 * 24 * 3600;
/// The largest manifest read, by the operator or the curation: 1,000,000 bytes (some 2,500
/// entries) — what one ConfigMap holds, in which the operator hands the bytes it read to its
/// curation pod.
pub const MAX_MANIFEST_BYTES: u64 = 1_000_000;
/// Distribution kind of a Datanet version (RewardDistributor.Kind.Datanet).
const KIND_DATANET: u8 = 0;

async fn reconcile_inner(dn: Arc<Datanet>, ctx: Arc<Context>) -> Result<Action, Error> {
    let current = dn.status.clone().unwrap_or_default();
    let mut status = current.clone();
    let generation = dn.metadata.generation;
    status.observed_generation = generation;
    let mut conditions = current.conditions.clone();
    let requeue = match step(&dn, &ctx, &mut status).await {
        Ok(shown) => {
            let was = current
                .conditions
                .iter()
                .find(|c| c.type_ == READY)
                .map(|c| c.reason.as_str());
            if shown.warn && was != Some(shown.reason) {
                ctx.event(
                    &*dn,
                    EventType::Warning,
                    shown.reason,
                    shown.message.clone(),
                );
            }
            status.phase = Some(shown.phase);
            Conditions::new(&mut conditions, generation, now()).progress(
                shown.progress(),
                shown.reason,
                &shown.message,
            );
            set_condition(
                &mut conditions,
                LEDGER_SYNCED,
                true,
                reason::IN_SYNC,
                "published versions are on chain",
                generation,
                now(),
            );
            shown.requeue
        }
        Err(Error::Ledger(e)) => {
            status.phase = status.phase.or(Some(DatanetPhase::Curating));
            set_condition(
                &mut conditions,
                LEDGER_SYNCED,
                false,
                reason::LEDGER_UNAVAILABLE,
                &format!("{e}; the version is published when the chain answers"),
                generation,
                now(),
            );
            Some(Duration::from_secs(5))
        }
        Err(e) => return Err(e),
    };
    status.conditions = conditions;
    if status != current {
        let api =
            Api::<Datanet>::namespaced(ctx.client.clone(), &dn.namespace().unwrap_or_default());
        crate::runtime::children::apply_status(&api, &dn.name_any(), &status).await?;
        if current.phase != status.phase
            && let Some(p) = status.phase
        {
            let msg = status
                .conditions
                .iter()
                .find(|c| c.type_ == READY)
                .map(|c| c.message.clone())
                .unwrap_or_default();
            let t = if p == DatanetPhase::Failed {
                EventType::Warning
            } else {
                EventType::Normal
            };
            ctx.event(&*dn, t, &format!("{p:?}"), msg);
        }
    }
    Ok(requeue.map_or_else(Action::await_change, Action::requeue))
}

/// Reconciles one Datanet (timed and counted in the metrics).
pub async fn reconcile(dn: Arc<Datanet>, ctx: Arc<Context>) -> Result<Action, Error> {
    instrumented(&ctx.clone(), &*dn.clone(), reconcile_inner(dn, ctx)).await
}

/// Runs the controller until the stream ends (only with a ledger: versions are published).
pub async fn run(ctx: Context) {
    if ctx.ledger.is_none() {
        tracing::warn!("no ledger configured: the Datanet controller is off");
        return;
    }
    let client = ctx.client.clone();
    let (dns, proposals, cms) = match &ctx.config.namespace {
        Some(ns) => (
            Api::<Datanet>::namespaced(client.clone(), ns),
            Api::<ModelProposal>::namespaced(client.clone(), ns),
            Api::<ConfigMap>::namespaced(client.clone(), ns),
        ),
        None => (
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
        ),
    };
    // The curation Jobs, in the trusted namespace, name their Datanet by labels (an owner
    // reference cannot cross namespaces).
    let jobs = Api::<Job>::namespaced(client.clone(), &ctx.config.trusted_namespace);
    let only = ctx.config.namespace.clone();
    let controller = Controller::new(dns, watcher::Config::default());
    let store = controller.store();
    let by_proposal = store.clone();
    let by_configmap = store;
    controller
        .watches(
            jobs,
            watcher::Config::default().labels(&format!("app.kubernetes.io/name={CURATION_APP}")),
            move |j: Job| {
                let l = j.labels();
                let (ns, name) = (l.get(LABEL_DATANET_NAMESPACE)?, l.get(LABEL_INSTANCE)?);
                if only.as_ref().is_some_and(|o| o != ns) {
                    return None;
                }
                Some(ObjectRef::<Datanet>::new(name).within(ns))
            },
        )
        .watches(
            proposals,
            watcher::Config::default(),
            move |p: ModelProposal| {
                let ns = p.namespace();
                by_proposal
                    .state()
                    .into_iter()
                    .filter(|d| d.namespace() == ns && d.spec.proposal_ref.name == p.name_any())
                    .map(|d| ObjectRef::from_obj(&*d))
                    .collect::<Vec<_>>()
            },
        )
        .watches(cms, watcher::Config::default(), move |cm: ConfigMap| {
            let ns = cm.namespace();
            by_configmap
                .state()
                .into_iter()
                .filter(|d| {
                    d.namespace() == ns
                        && d.spec
                            .contributions
                            .config_map_ref
                            .as_ref()
                            .is_some_and(|r| r.name == cm.name_any())
                })
                .map(|d| ObjectRef::from_obj(&*d))
                .collect::<Vec<_>>()
        })
        .shutdown_on_signal()
        .run(reconcile, error_policy, Arc::new(ctx))
        .for_each(super::log_result)
        .await;
}
