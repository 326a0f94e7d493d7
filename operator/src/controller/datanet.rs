//! The Datanet controller and the curation Job it runs.
//!
//! The operator reads the contributions manifest (a ConfigMap key, or a `file://` /
//! `http(s)://` URI) and takes its sha256: a manifest it has not published yet is a new
//! version. It runs curation as a Job of its own image (`modelcommons-operator curate`), which
//! fetches and checks every contribution (see [`crate::curate`]), writes the curated dataset
//! and the curation report content-addressed to the artifact store, and reports the result as
//! its termination message. The curation pod needs no Kubernetes API access at all (no service
//! account token is mounted): its Datanet spec comes in an environment variable, a ConfigMap
//! manifest as a mounted volume. The operator reads the result from the finished pod, keeps it
//! in `status.curation`, then publishes the
//! version on chain — a RewardDistributor distribution whose root is the reward root, funded
//! with the pool — and the Datanet becomes `Ready` with counts by reason, both roots, the
//! artifact URIs and the transaction. A bad contribution is an outcome, never a failure.
//!
//! The curated dataset is a directory `sha256-<hex of dataset.jsonl>/` holding `dataset.jsonl`
//! (every accepted record, in the order the dataset root commits to), and the split trainers
//! read: `eval.jsonl` (every tenth record, or the last one when there are fewer than ten) and
//! `train.jsonl` (the rest).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{B256, U256};
use alloy::providers::Provider;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use modelcommons_crds::common::ChainRecord;
use modelcommons_crds::conditions::{READY, set_condition};
use modelcommons_crds::datanet::{CurationResult, Datanet, DatanetPhase, DatanetStatus};
use modelcommons_crds::proposal::{ModelProposal, ModelProposalPhase};
use serde_json::json;

use super::finetune::{JobState, container_path, job_state, volumes};
use super::{Context, Error, FIELD_MANAGER, LABEL_INSTANCE, LABEL_MANAGED_BY, LEDGER_SYNCED, now};
use crate::curate::{self, AnyFetch, CurationReport, Fetch};
use crate::ledger::ids::datanet_version_id;
use crate::ledger::mirror::{PublishDistribution, Write};

/// The environment variable that carries the Datanet's spec (JSON) into the curation pod.
pub const SPEC_ENV: &str = "MODELCOMMONS_DATANET_SPEC";
/// Where a ConfigMap manifest is mounted in the curation pod.
pub const MANIFEST_DIR: &str = "/etc/modelcommons/manifest";
/// Where the curation pod writes its result (Kubernetes' default termination message path).
pub const RESULT_FILE: &str = "/dev/termination-log";
/// How long contributors may claim a version's rewards: 90 days.
pub const CLAIM_WINDOW_SECONDS: u64 = 90 * 24 * 3600;
/// Distribution kind of a Datanet version (RewardDistributor.Kind.Datanet).
const KIND_DATANET: u8 = 0;

/// Splits curated JSONL into (train, eval): every tenth record goes to eval, or the last one
/// when there are fewer than ten (and at least two).
pub fn split(jsonl: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let lines: Vec<&[u8]> = jsonl
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let n = lines.len();
    let to_eval = |i: usize| {
        if n >= 10 {
            i % 10 == 9
        } else {
            n >= 2 && i == n - 1
        }
    };
    let (mut train, mut eval) = (Vec::new(), Vec::new());
    for (i, l) in lines.into_iter().enumerate() {
        let out = if to_eval(i) { &mut eval } else { &mut train };
        out.extend_from_slice(l);
        out.push(b'\n');
    }
    (train, eval)
}

fn io(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let msg = format!("{what} {}", path.display());
    move |e| Error::Invalid(format!("{msg}: {e}"))
}

/// Writes `bytes` to `path` atomically (a temporary file renamed into place).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(io("writing", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io("renaming into", path))
}

/// Where the curation Job writes, as a URI of the store and a local path.
fn artifact_dir(store: &str, ns: &str, name: &str) -> Result<(String, PathBuf), Error> {
    let local = container_path(store).ok_or_else(|| {
        Error::Invalid(format!(
            "artifact store {store}: only file:///dir and pvc://claim/dir are supported"
        ))
    })?;
    let sub = format!("datanets/{ns}/{name}");
    Ok((
        format!("{}/{sub}", store.trim_end_matches('/')),
        PathBuf::from(local).join(sub),
    ))
}

/// Writes the curated dataset and the report content-addressed under `store`; returns their
/// URIs.
pub fn write_artifacts(
    store: &str,
    ns: &str,
    name: &str,
    report: &CurationReport,
) -> Result<(String, String), Error> {
    let (uri, dir) = artifact_dir(store, ns, name)?;
    let digest = crate::contribution::sha256_hex(&report.dataset.jsonl);
    let data_dir = dir.join(format!("sha256-{digest}"));
    std::fs::create_dir_all(&data_dir).map_err(io("creating", &data_dir))?;
    let (train, eval) = split(&report.dataset.jsonl);
    write_atomic(&data_dir.join("dataset.jsonl"), &report.dataset.jsonl)?;
    write_atomic(&data_dir.join("train.jsonl"), &train)?;
    write_atomic(&data_dir.join("eval.jsonl"), &eval)?;
    let report_json = serde_json::to_vec_pretty(report)?;
    let report_digest = crate::contribution::sha256_hex(&report_json);
    let report_file = dir.join(format!("curation-sha256-{report_digest}.json"));
    write_atomic(&report_file, &report_json)?;
    Ok((
        format!("{uri}/sha256-{digest}"),
        format!("{uri}/curation-sha256-{report_digest}.json"),
    ))
}

/// Where the manifest comes from, as the curation Job is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestSource {
    /// A key of a ConfigMap in the Datanet's namespace.
    ConfigMap { name: String, key: String },
    /// A `file://` or `http(s)://` URI.
    Uri(String),
}

impl ManifestSource {
    fn of(dn: &Datanet) -> Result<Self, String> {
        let c = &dn.spec.contributions;
        match (&c.config_map_ref, &c.manifest_uri) {
            (Some(r), _) => Ok(Self::ConfigMap {
                name: r.name.clone(),
                key: r.key.clone(),
            }),
            (None, Some(u))
                if u.starts_with("file://")
                    || u.starts_with("http://")
                    || u.starts_with("https://")
                    || crate::curate::is_object_uri(u) =>
            {
                Ok(Self::Uri(u.clone()))
            }
            (None, Some(u)) => Err(format!(
                "{u}: this operator reads manifests from ConfigMaps and s3://, gs://, az://, http(s):// and file:// URIs; put the manifest in one of those"
            )),
            (None, None) => {
                Err("set contributions.manifestUri or contributions.configMapRef".into())
            }
        }
    }

    /// Reads the manifest's text; object-store URIs with `objects`' settings.
    pub async fn read(
        &self,
        client: &kube::Client,
        ns: &str,
        data_root: &Path,
        objects: &crate::curate::ObjectFetch,
    ) -> Result<String, String> {
        match self {
            Self::ConfigMap { name, key } => {
                let cm = Api::<ConfigMap>::namespaced(client.clone(), ns)
                    .get_opt(name)
                    .await
                    .map_err(|e| format!("reading ConfigMap {name}: {e}"))?
                    .ok_or_else(|| format!("ConfigMap {name} does not exist; create it with the manifest under key {key}"))?;
                cm.data
                    .and_then(|mut d| d.remove(key))
                    .ok_or_else(|| format!("ConfigMap {name} has no key {key}"))
            }
            Self::Uri(uri) => {
                let fetch = AnyFetch::new(data_root)
                    .map_err(|e| e.to_string())?
                    .with_objects(objects.clone());
                let bytes = fetch
                    .fetch(uri, 64 * 1024 * 1024)
                    .await
                    .map_err(|e| e.to_string())?;
                String::from_utf8(bytes).map_err(|_| format!("{uri}: the manifest is not UTF-8"))
            }
        }
    }

    /// The manifest as the curation pod sees it: a ConfigMap mounted under [`MANIFEST_DIR`].
    fn uri_in_pod(&self) -> String {
        match self {
            Self::ConfigMap { key, .. } => format!("file://{MANIFEST_DIR}/{key}"),
            Self::Uri(u) => u.clone(),
        }
    }
}

/// What `modelcommons-operator curate` is told.
#[derive(Debug, Clone)]
pub struct CurateArgs {
    /// The Datanet's id, `<namespace>/<name>` (what contributors sign for).
    pub datanet: String,
    /// Its spec (format, curation, rewards).
    pub spec: modelcommons_crds::datanet::DatanetSpec,
    pub version: u32,
    /// The manifest: `file://`, `http(s)://`, `s3://`, `gs://` or `az://`.
    pub manifest: String,
    pub artifact_store: String,
    /// The root `file://` URIs resolve under (`/` in a pod).
    pub data_root: PathBuf,
    /// Where the result goes ([`RESULT_FILE`] in a pod).
    pub result_file: PathBuf,
}

/// The curation Job's work: read the manifest, curate, write the artifacts and the result
/// (JSON, well under the 4 KiB a termination message holds). Needs no Kubernetes API.
pub async fn curate_job(args: &CurateArgs) -> Result<(CurationReport, CurationResult), Error> {
    let (ns, name) = args.datanet.split_once('/').ok_or_else(|| {
        Error::Invalid(format!(
            "--datanet {}: expected <namespace>/<name>",
            args.datanet
        ))
    })?;
    let fetch = AnyFetch::new(&args.data_root).map_err(|e| Error::Invalid(e.to_string()))?;
    let manifest = fetch
        .fetch(&args.manifest, 64 * 1024 * 1024)
        .await
        .map_err(|e| Error::Invalid(format!("reading the manifest: {e}")))?;
    let manifest = String::from_utf8(manifest)
        .map_err(|_| Error::Invalid(format!("{}: the manifest is not UTF-8", args.manifest)))?;
    let report = curate::curate(
        &args.datanet,
        &args.spec,
        &manifest,
        &fetch,
        &curate::Options::default(),
    )
    .await
    .map_err(|e| Error::Invalid(e.to_string()))?;
    let (dataset_uri, reward_map_uri) = write_artifacts(&args.artifact_store, ns, name, &report)?;
    let result = CurationResult {
        version: args.version,
        manifest_sha256: report.manifest_sha256.clone(),
        counts: report.counts.to_status(),
        dataset_root: report.dataset_root.map(|r| r.to_string()),
        reward_root: report.reward_root.map(|r| r.to_string()),
        dataset_uri,
        reward_map_uri,
        reward_total: report.rewards.allocated.to_string(),
    };
    std::fs::write(&args.result_file, serde_json::to_vec(&result)?)
        .map_err(io("writing the result to", &args.result_file))?;
    Ok((report, result))
}

/// The result a finished curation pod left in its termination message.
async fn pod_result(ctx: &Context, ns: &str, job: &str) -> Result<Option<CurationResult>, Error> {
    let pods = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(ctx.client.clone(), ns)
        .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
        .await?;
    Ok(pods
        .items
        .iter()
        .filter_map(|p| p.status.as_ref()?.container_statuses.as_ref())
        .flatten()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref())
        .filter(|t| t.exit_code == 0)
        .find_map(|t| serde_json::from_str(t.message.as_deref()?).ok()))
}

/// The version digest of a manifest's text.
pub fn manifest_digest(text: &str) -> String {
    crate::contribution::sha256_hex(text.as_bytes())
}

/// The name of the curation Job of `version` of Datanet `datanet` with manifest `digest`.
pub fn job_name(datanet: &str, version: u32, digest: &str) -> String {
    let base: String = datanet.chars().take(40).collect();
    format!(
        "{}-curate-v{version}-{}",
        base.trim_end_matches('-'),
        &digest[..8.min(digest.len())]
    )
}

/// The curation Job.
pub fn curation_job(
    dn: &Datanet,
    ctx: &Context,
    version: u32,
    digest: &str,
    source: &ManifestSource,
) -> serde_json::Value {
    let ns = dn.namespace().unwrap_or_default();
    let name = job_name(&dn.name_any(), version, digest);
    let args = vec![
        "curate".to_string(),
        "--datanet".into(),
        format!("{ns}/{}", dn.name_any()),
        "--version".into(),
        version.to_string(),
        "--artifact-store".into(),
        ctx.config.artifact_store.clone(),
        "--manifest".into(),
        source.uri_in_pod(),
    ];
    let (mut vols, mut mounts) = volumes(&[ctx.config.artifact_store.as_str()]);
    if let ManifestSource::ConfigMap { name, key } = source {
        vols.push(json!({"name": "manifest", "configMap": {"name": name, "items": [{"key": key, "path": key}]}}));
        mounts.push(json!({"name": "manifest", "mountPath": MANIFEST_DIR, "readOnly": true}));
    }
    let labels = json!({LABEL_MANAGED_BY: "modelcommons-operator", LABEL_INSTANCE: dn.name_any(),
        "modelcommons.dev/datanet-version": version.to_string()});
    let pod = json!({
        "restartPolicy": "Never",
        // The pod reads and writes files only; it needs no API access.
        "automountServiceAccountToken": false,
        "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{
            "name": "curate",
            "image": ctx.config.operator_image,
            "args": args,
            "env": [{"name": SPEC_ENV, "value": serde_json::to_string(&dn.spec).unwrap_or_default()}],
            // Object-store credentials as the environment object_store reads; the kubelet
            // resolves the Secret, the operator never reads it.
            "envFrom": dn.spec.contributions.credentials_secret_ref.as_ref()
                .map(|r| json!([{"secretRef": {"name": r.name}}])).unwrap_or_else(|| json!([])),
            "volumeMounts": mounts,
            "terminationMessagePath": RESULT_FILE,
            "terminationMessagePolicy": "File",
            "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}},
            "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                "capabilities": {"drop": ["ALL"]}},
        }],
        "volumes": vols,
    });
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": ns, "labels": labels,
            "ownerReferences": [owner(dn)]},
        "spec": {"backoffLimit": 2, "ttlSecondsAfterFinished": 86400,
            "template": {"metadata": {"labels": labels}, "spec": pod}},
    })
}

fn owner(dn: &Datanet) -> serde_json::Value {
    json!({"apiVersion": Datanet::api_version(&()), "kind": "Datanet", "name": dn.name_any(),
        "uid": dn.uid().unwrap_or_default(), "controller": true, "blockOwnerDeletion": true})
}

struct Shown {
    phase: DatanetPhase,
    ready: bool,
    reason: &'static str,
    message: String,
    requeue: Option<Duration>,
}

impl Shown {
    fn new(
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
        }
    }
}

fn b256(s: &Option<String>) -> B256 {
    s.as_deref()
        .and_then(|s| s.parse().ok())
        .unwrap_or_default()
}

async fn step(dn: &Datanet, ctx: &Context, status: &mut DatanetStatus) -> Result<Shown, Error> {
    let ns = dn.namespace().unwrap_or_default();
    let recheck = Some(ctx.config.recheck);
    let proposal = Api::<ModelProposal>::namespaced(ctx.client.clone(), &ns)
        .get_opt(&dn.spec.proposal_ref.name)
        .await?;
    let phase = proposal.as_ref().and_then(|p| p.status.as_ref()?.phase);
    if !matches!(
        phase,
        Some(ModelProposalPhase::Approved | ModelProposalPhase::Active)
    ) {
        // A published version stays Ready whatever happens to the proposal later.
        if status.phase == Some(DatanetPhase::Ready) {
            return Ok(Shown::new(
                DatanetPhase::Ready,
                "Published",
                ready_message(status),
                None,
            ));
        }
        return Ok(Shown::new(
            DatanetPhase::Collecting,
            "ProposalNotApproved",
            format!(
                "ModelProposal {} is {}; curation starts by itself once token holders approve it (rewards are paid under its mandate)",
                dn.spec.proposal_ref.name,
                phase.map_or_else(
                    || if proposal.is_some() {
                        "not yet registered".into()
                    } else {
                        "missing".into()
                    },
                    |p| format!("{p:?}")
                )
            ),
            recheck,
        ));
    }
    let source = match ManifestSource::of(dn) {
        Ok(s) => s,
        Err(m) => {
            return Ok(Shown::new(
                DatanetPhase::Failed,
                "ManifestUnsupported",
                m,
                None,
            ));
        }
    };
    let manifest = match source
        .read(&ctx.client, &ns, Path::new("/"), &ctx.config.objects)
        .await
    {
        Ok(m) => m,
        Err(m) => {
            let phase = if status.phase == Some(DatanetPhase::Ready) {
                DatanetPhase::Ready
            } else {
                DatanetPhase::Collecting
            };
            return Ok(Shown::new(
                phase,
                "ManifestUnavailable",
                match &source {
                    ManifestSource::Uri(u) if crate::curate::is_object_uri(u) => format!(
                        "{m}; retrying. The operator reads object-store manifests with the AWS_*, GOOGLE_* and AZURE_* settings of its own environment (Helm value objectStore.envFromSecret); the curation Job with contributions.credentialsSecretRef"
                    ),
                    _ => format!("{m}; retrying"),
                },
                recheck,
            ));
        }
    };
    let digest = crate::contribution::sha256_hex(manifest.as_bytes());
    if status.phase == Some(DatanetPhase::Ready)
        && status.manifest_sha256.as_deref() == Some(&digest)
    {
        return Ok(Shown::new(
            DatanetPhase::Ready,
            "Published",
            ready_message(status),
            None,
        ));
    }
    let version = status.version.unwrap_or(0)
        + u32::from(
            status.manifest_sha256.as_deref() != Some(digest.as_str()) || status.version.is_none(),
        );

    // The Job's result for this manifest and version → publish.
    if let Some(c) = status
        .curation
        .clone()
        .filter(|c| c.version == version && c.manifest_sha256 == digest)
    {
        let h = ctx
            .ledger
            .clone()
            .ok_or_else(|| Error::Invalid("no ledger".into()))?;
        let uid = dn.uid().unwrap_or_default();
        let total = U256::from_str_radix(&c.reward_total, 10).unwrap_or_default();
        let mut record = ChainRecord::default();
        if let Some(root) = c.reward_root.as_ref().filter(|_| !total.is_zero()) {
            let block = h
                .ledger
                .provider()
                .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
                .await
                .map_err(crate::ledger::Error::from)?
                .map(|b| b.header.timestamp)
                .unwrap_or_default();
            let req = PublishDistribution {
                id: datanet_version_id(&uid, version),
                kind: KIND_DATANET,
                root: root.parse().unwrap_or_default(),
                content_root: b256(&c.dataset_root),
                total,
                deadline: block + CLAIM_WINDOW_SECONDS,
            };
            let w = ctx
                .ledger_write(
                    "RewardDistributor.publish",
                    h.ledger
                        .publish_distribution(h.suite.open, h.suite.distributor, &req),
                )
                .await?;
            record.tx_hash = match w {
                Write::Written { tx } => Some(tx.to_string()),
                Write::AlreadyDone => h
                    .ledger
                    .published_tx(h.suite.distributor, req.id)
                    .await?
                    .map(|t| t.to_string())
                    .or_else(|| Some(format!("published as {}", req.id))),
            };
        }
        status.version = Some(version);
        status.manifest_sha256 = Some(digest);
        status.counts = Some(c.counts.clone());
        status.dataset_root = c.dataset_root.clone();
        status.reward_root = c.reward_root.clone();
        status.dataset_uri = Some(c.dataset_uri.clone());
        status.reward_map_uri = Some(c.reward_map_uri.clone());
        status.reward_total = Some(c.reward_total.clone());
        status.chain = Some(record);
        ctx.event(
            dn,
            EventType::Normal,
            "Published",
            format!(
                "version {version}: {} accepted, {} rejected; {} OPEN base units to contributors{}",
                c.counts.accepted,
                c.counts.rejected,
                c.reward_total,
                status
                    .chain
                    .as_ref()
                    .and_then(|r| r.tx_hash.as_ref())
                    .map(|t| format!(" (tx {t})"))
                    .unwrap_or_default()
            ),
        );
        return Ok(Shown::new(
            DatanetPhase::Ready,
            "Published",
            ready_message(status),
            None,
        ));
    }

    // Otherwise the curation Job runs (created once per manifest digest and version).
    let jobs = Api::<Job>::namespaced(ctx.client.clone(), &ns);
    let name = job_name(&dn.name_any(), version, &digest);
    let job = match jobs.get_opt(&name).await? {
        Some(j) => j,
        None => {
            let body = curation_job(dn, ctx, version, &digest, &source);
            let j = jobs
                .patch(
                    &name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&body),
                )
                .await?;
            ctx.event(
                dn,
                EventType::Normal,
                "CurationStarted",
                format!("Job {name} curates version {version} (manifest sha256 {digest})"),
            );
            j
        }
    };
    let (state, failure) = job_state(&job);
    let result = if state == JobState::Complete {
        pod_result(ctx, &ns, &name).await?
    } else {
        None
    };
    if let Some(r) = result {
        if r.version == version && r.manifest_sha256 == digest {
            status.curation = Some(r);
            // Published at once, in this reconcile.
            return Box::pin(step(dn, ctx, status)).await;
        }
        return Ok(Shown::new(
            DatanetPhase::Failed,
            "CurationMismatch",
            format!(
                "the curation Job {name} reported version {} of manifest {}, not version {version} of {digest}; change the manifest to retry",
                r.version, r.manifest_sha256
            ),
            None,
        ));
    }
    Ok(match state {
        JobState::Failed => {
            let (_, why) = failure.unwrap_or_default();
            Shown::new(
                DatanetPhase::Failed,
                "CurationFailed",
                format!(
                    "the curation Job {name} failed: {why}; see `kubectl logs job/{name}`, fix the cause (manifest or artifact store) and change the manifest to retry"
                ),
                None,
            )
        }
        JobState::Complete => {
            let finished = job
                .status
                .as_ref()
                .and_then(|s| s.completion_time.as_ref())
                .map(|t| t.0);
            let waited = finished.map_or(0.0, |f| {
                k8s_openapi::jiff::Timestamp::now()
                    .duration_since(f)
                    .as_secs_f64()
            });
            if waited > ctx.config.result_grace.as_secs_f64() {
                Shown::new(
                    DatanetPhase::Failed,
                    "NoResult",
                    format!(
                        "the curation Job {name} completed {waited:.0}s ago without reporting a result; check its logs (`kubectl logs job/{name}`)"
                    ),
                    None,
                )
            } else {
                Shown::new(
                    DatanetPhase::Curating,
                    "AwaitingResult",
                    format!("the curation Job {name} finished; waiting for its report"),
                    Some(Duration::from_secs(2)),
                )
            }
        }
        _ => Shown::new(
            DatanetPhase::Curating,
            "Curating",
            format!(
                "the curation Job {name} fetches and checks the contributions of version {version}"
            ),
            recheck,
        ),
    })
}

fn ready_message(st: &DatanetStatus) -> String {
    let c = st.counts.clone().unwrap_or_default();
    format!(
        "version {} sealed: {} of {} contributions accepted",
        st.version.unwrap_or_default(),
        c.accepted,
        c.total
    )
}

async fn reconcile_inner(dn: Arc<Datanet>, ctx: Arc<Context>) -> Result<Action, Error> {
    let current = dn.status.clone().unwrap_or_default();
    let mut status = current.clone();
    let generation = dn.metadata.generation;
    status.observed_generation = generation;
    let mut conditions = current.conditions.clone();
    let requeue = match step(&dn, &ctx, &mut status).await {
        Ok(shown) => {
            status.phase = Some(shown.phase);
            set_condition(
                &mut conditions,
                READY,
                shown.ready,
                shown.reason,
                &shown.message,
                generation,
                now(),
            );
            set_condition(
                &mut conditions,
                LEDGER_SYNCED,
                true,
                "InSync",
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
                "LedgerUnavailable",
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
        let body = serde_json::to_value(&status)?;
        let patch = json!({"apiVersion": Datanet::api_version(&()), "kind": Datanet::kind(&()), "status": body});
        Api::<Datanet>::namespaced(ctx.client.clone(), &dn.namespace().unwrap_or_default())
            .patch_status(
                &dn.name_any(),
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await?;
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
    let started = std::time::Instant::now();
    let res = reconcile_inner(dn, ctx.clone()).await;
    ctx.metrics
        .observe("Datanet", res.is_ok(), started.elapsed().as_secs_f64());
    res
}

fn error_policy(_dn: Arc<Datanet>, err: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(error = %err, "Datanet reconcile failed");
    Action::requeue(Duration::from_secs(5))
}

/// Runs the controller until the stream ends (only with a ledger: versions are published).
pub async fn run(ctx: Context) {
    if ctx.ledger.is_none() {
        tracing::warn!("no ledger configured: the Datanet controller is off");
        return;
    }
    let client = ctx.client.clone();
    let (dns, jobs, proposals, cms) = match &ctx.config.namespace {
        Some(ns) => (
            Api::<Datanet>::namespaced(client.clone(), ns),
            Api::<Job>::namespaced(client.clone(), ns),
            Api::<ModelProposal>::namespaced(client.clone(), ns),
            Api::<ConfigMap>::namespaced(client.clone(), ns),
        ),
        None => (
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
        ),
    };
    let controller = Controller::new(dns, watcher::Config::default());
    let store = controller.store();
    let by_proposal = store.clone();
    let by_configmap = store;
    controller
        .owns(jobs, watcher::Config::default().labels(LABEL_INSTANCE))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tenth_record_is_held_out() {
        let data: Vec<u8> = (0..20)
            .flat_map(|i| format!("{{\"i\":{i}}}\n").into_bytes())
            .collect();
        let (train, eval) = split(&data);
        assert_eq!(
            String::from_utf8(eval).unwrap_or_default(),
            "{\"i\":9}\n{\"i\":19}\n"
        );
        assert_eq!(
            train
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .count(),
            18
        );
    }

    #[test]
    fn small_datasets_hold_out_their_last_record() {
        let (train, eval) = split(b"a\nb\nc\n");
        assert_eq!(
            (train.as_slice(), eval.as_slice()),
            (&b"a\nb\n"[..], &b"c\n"[..])
        );
        let (train, eval) = split(b"only\n");
        assert_eq!(
            (train.as_slice(), eval.as_slice()),
            (&b"only\n"[..], &b""[..])
        );
    }
}
