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
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, EnvFromSource, EnvVar, HostPathVolumeSource,
    KeyToPath, PodSpec, PodTemplateSpec, ResourceRequirements, Secret, SecretEnvSource, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use modelcommons_crds::common::ChainRecord;
use modelcommons_crds::conditions::{Conditions, Progress, READY, set_condition};
use modelcommons_crds::datanet::{CurationResult, Datanet, DatanetPhase, DatanetStatus, reason};
use modelcommons_crds::proposal::{ModelProposal, ModelProposalPhase};

use super::finetune::{JobState, container_path, job_state, volumes};
use super::{Context, Error, FIELD_MANAGER, LABEL_INSTANCE, LABEL_MANAGED_BY, LEDGER_SYNCED, now};
use crate::curate::{self, AnyFetch, CurationReport, Fetch};
use crate::ledger::ids::datanet_version_id;
use crate::ledger::mirror::{PublishDistribution, Write};
use crate::runtime::children::{MANAGED_BY, apply as ssa, restricted_container, restricted_pod};
use crate::runtime::reconcile::{error_policy, instrumented};

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

/// The files of a curated dataset directory, derived from `dataset.jsonl` alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// `holdout.jsonl`: what the operator's evaluation judges the trained model on — every
    /// fifth record (the last one when there are fewer than five, and at least two). Beside
    /// the trainer's directory, never in it.
    pub holdout: Vec<u8>,
    /// `train/train.jsonl`: what the trainer learns from (the records not held out, less its
    /// validation records).
    pub train: Vec<u8>,
    /// `train/eval.jsonl`: the trainer's own validation records — every tenth of the records
    /// not held out (the last one when there are fewer than ten, and at least two).
    pub eval: Vec<u8>,
}

/// The trainer's subdirectory of a curated dataset directory: all a trainer pod mounts.
pub const TRAIN_DIR: &str = "train";
/// The held-out file of a curated dataset directory.
pub use modelcommons_crds::contract::HOLDOUT_FILE;

/// Splits curated JSONL (see [`Split`]); deterministic, so the operator recomputes it.
pub fn split(jsonl: &[u8]) -> Split {
    fn every(n: usize, k: usize) -> impl Fn(usize) -> bool {
        move |i| {
            if n >= k {
                i % k == k - 1
            } else {
                n >= 2 && i == n - 1
            }
        }
    }
    let lines: Vec<&[u8]> = jsonl
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let push = |out: &mut Vec<u8>, l: &[u8]| {
        out.extend_from_slice(l);
        out.push(b'\n');
    };
    let held = every(lines.len(), 5);
    let mut out = Split {
        holdout: Vec::new(),
        train: Vec::new(),
        eval: Vec::new(),
    };
    let mut rest = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if held(i) {
            push(&mut out.holdout, l);
        } else {
            rest.push(*l);
        }
    }
    let validation = every(rest.len(), 10);
    for (i, l) in rest.into_iter().enumerate() {
        push(
            if validation(i) {
                &mut out.eval
            } else {
                &mut out.train
            },
            l,
        );
    }
    out
}

enum SplitError {
    Io(PathBuf, std::io::Error),
    Differs(&'static str),
}

/// Whether the split files of the curated dataset directory `dir` are exactly [`split`] of
/// its `dataset.jsonl` — streamed, line by line, so a large dataset is never held in memory.
fn split_matches(dir: &Path) -> Result<(), SplitError> {
    use std::io::BufRead;
    let open =
        |p: PathBuf| -> Result<std::io::Lines<std::io::BufReader<std::fs::File>>, SplitError> {
            std::fs::File::open(&p)
                .map(|f| std::io::BufReader::new(f).lines())
                .map_err(|e| SplitError::Io(p, e))
        };
    let records = |p: PathBuf| -> Result<usize, SplitError> {
        let mut n = 0;
        for l in open(p.clone())? {
            n += usize::from(!l.map_err(|e| SplitError::Io(p.clone(), e))?.is_empty());
        }
        Ok(n)
    };
    let n = records(dir.join("dataset.jsonl"))?;
    let held_count = if n >= 5 { n / 5 } else { usize::from(n >= 2) };
    let held = |i: usize| {
        if n >= 5 {
            i % 5 == 4
        } else {
            n >= 2 && i == n - 1
        }
    };
    let m = n - held_count;
    let validates = |r: usize| {
        if m >= 10 {
            r % 10 == 9
        } else {
            m >= 2 && r == m - 1
        }
    };
    let files = [
        (dir.join(HOLDOUT_FILE), "holdout.jsonl"),
        (dir.join(TRAIN_DIR).join("train.jsonl"), "train/train.jsonl"),
        (dir.join(TRAIN_DIR).join("eval.jsonl"), "train/eval.jsonl"),
    ];
    let mut readers = Vec::new();
    for (p, _) in &files {
        readers.push(open(p.clone())?);
    }
    let (mut i, mut rest) = (0, 0);
    let dataset_path = dir.join("dataset.jsonl");
    for line in open(dataset_path.clone())? {
        let line = line.map_err(|e| SplitError::Io(dataset_path.clone(), e))?;
        if line.is_empty() {
            continue;
        }
        let k = if held(i) {
            0
        } else {
            rest += 1;
            if validates(rest - 1) { 2 } else { 1 }
        };
        i += 1;
        match readers[k].next() {
            Some(Ok(got)) if got == line => {}
            Some(Err(e)) => return Err(SplitError::Io(files[k].0.clone(), e)),
            _ => return Err(SplitError::Differs(files[k].1)),
        }
    }
    for (k, r) in readers.iter_mut().enumerate() {
        if r.next().is_some() {
            return Err(SplitError::Differs(files[k].1));
        }
    }
    Ok(())
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

/// The artifact store's path in this process (and in pods), where it has one.
fn artifact_local(store: &str) -> Vec<PathBuf> {
    container_path(store)
        .map(PathBuf::from)
        .into_iter()
        .collect()
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
    let parts = split(&report.dataset.jsonl);
    let train_dir = data_dir.join(TRAIN_DIR);
    std::fs::create_dir_all(&train_dir).map_err(io("creating", &train_dir))?;
    write_atomic(&data_dir.join("dataset.jsonl"), &report.dataset.jsonl)?;
    write_atomic(&data_dir.join(HOLDOUT_FILE), &parts.holdout)?;
    write_atomic(&train_dir.join("train.jsonl"), &parts.train)?;
    write_atomic(&train_dir.join("eval.jsonl"), &parts.eval)?;
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
        config: &super::Config,
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
                // The operator's own files are never a manifest: file:// only under the dev
                // host directory, and every address checked.
                let mut files =
                    curate::FileFetch::new("/").only_under(config.dev_host_dirs.clone());
                for s in artifact_local(&config.artifact_store) {
                    files = files.excluding(s);
                }
                // config.objects carries its egress already (and keeps its store cache).
                let mut fetch = AnyFetch::new("/")
                    .map_err(|e| e.to_string())?
                    .with_objects(config.objects.clone())
                    .with_files(files);
                fetch.http = fetch.http.with_egress(config.egress.clone());
                let bytes = fetch
                    .fetch(uri, MAX_MANIFEST_BYTES)
                    .await
                    .map_err(|e| e.to_string())?;
                String::from_utf8(bytes).map_err(|_| format!("{uri}: the manifest is not UTF-8"))
            }
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
    /// The directories `file://` contributions may be read from (the operator's dev host
    /// directories); empty: none are.
    pub files_under: Vec<PathBuf>,
    /// Where a ConfigMap manifest is mounted: the other directory a `file://` manifest may
    /// be read from.
    pub manifest_dir: Option<PathBuf>,
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
    let store = artifact_local(&args.artifact_store);
    let files = |dirs: Vec<PathBuf>| {
        let mut f = curate::FileFetch::new(&args.data_root).only_under(dirs);
        for s in &store {
            f = f.excluding(s.clone());
        }
        f
    };
    let any = AnyFetch::new(&args.data_root).map_err(|e| Error::Invalid(e.to_string()))?;
    let manifest = any
        .clone()
        .with_files(files(
            args.manifest_dir
                .iter()
                .chain(&args.files_under)
                .cloned()
                .collect(),
        ))
        .fetch(&args.manifest, MAX_MANIFEST_BYTES)
        .await
        .map_err(|e| Error::Invalid(format!("reading the manifest: {e}")))?;
    let manifest = String::from_utf8(manifest)
        .map_err(|_| Error::Invalid(format!("{}: the manifest is not UTF-8", args.manifest)))?;
    let fetch = any.with_files(files(args.files_under.clone()));
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

/// The result a finished pod of the operator's Job `job` (curation, evaluation) left in its termination
/// message. Only a pod that the Job controller made for this Job counts (its controller-uid
/// label and controller owner reference name the Job's uid) and that runs the Job's
/// container unchanged; any other pod carrying the Job's name is reported with a
/// `ForgedResult` warning and ignored.
pub(crate) async fn pod_result<T, K>(ctx: &Context, dn: &K, job: &Job) -> Result<Option<T>, Error>
where
    T: serde::de::DeserializeOwned,
    K: Resource<DynamicType = ()>,
{
    use k8s_openapi::api::core::v1::Pod;
    let ns = job.namespace().unwrap_or_default();
    let name = job.name_any();
    let uid = job.uid().unwrap_or_default();
    let pods = Api::<Pod>::namespaced(ctx.client.clone(), &ns)
        .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={name}")))
        .await?;
    let template = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    let mut found = None;
    for p in &pods.items {
        let by_controller = p.labels().get("batch.kubernetes.io/controller-uid") == Some(&uid)
            && p.owner_references()
                .iter()
                .any(|o| o.controller == Some(true) && o.uid == uid && o.kind == "Job");
        let same = p
            .spec
            .as_ref()
            .is_some_and(|s| same_containers(&s.containers, template));
        if !(by_controller && same) {
            ctx.event(
                dn,
                EventType::Warning,
                reason::FORGED_RESULT,
                format!(
                    "pod {} carries the name of Job {name} but {}; its result is ignored",
                    p.name_any(),
                    if by_controller {
                        "does not run the Job's container"
                    } else {
                        "was not made by that Job"
                    }
                ),
            );
            continue;
        }
        let message = p
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|c| c.state.as_ref()?.terminated.as_ref())
            .filter(|t| t.exit_code == 0)
            .find_map(|t| serde_json::from_str(t.message.as_deref()?).ok());
        found = found.or(message);
    }
    Ok(found)
}

/// Whether two container lists run the same thing: image, command, args, environment,
/// Secrets and mounts.
pub(crate) fn same_containers(
    got: &[k8s_openapi::api::core::v1::Container],
    want: &[k8s_openapi::api::core::v1::Container],
) -> bool {
    let key = |c: &k8s_openapi::api::core::v1::Container| {
        (
            c.name.clone(),
            c.image.clone(),
            c.command.clone().unwrap_or_default(),
            c.args.clone().unwrap_or_default(),
            c.env
                .clone()
                .unwrap_or_default()
                .into_iter()
                // The API server stores an empty value as none.
                .map(|e| (e.name, e.value.filter(|v| !v.is_empty())))
                .collect::<Vec<_>>(),
            c.env_from
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|e| e.secret_ref.map(|r| r.name))
                .collect::<Vec<_>>(),
            c.volume_mounts
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|m| (m.name, m.mount_path, m.read_only.unwrap_or(false)))
                .collect::<Vec<_>>(),
        )
    };
    got.len() == want.len() && got.iter().zip(want).all(|(g, w)| key(g) == key(w))
}

/// Whether an existing Job under the curation Job's name is the operator's: labelled with
/// this Datanet's uid and running exactly the pod the operator would create. Tenants cannot
/// create Jobs in the trusted namespace; should anyone who can make one there under that
/// name, it is not one that runs anything but the operator's own curation.
fn job_is_ours(job: &Job, dn: &Datanet, desired: &Job) -> Result<(), String> {
    if job.labels().get(LABEL_DATANET_UID) != dn.uid().as_ref() {
        return Err("it is not labelled with this Datanet's uid".into());
    }
    let pod = |j: &Job| j.spec.as_ref().and_then(|s| s.template.spec.clone());
    let (Some(got), Some(want)) = (pod(job), pod(desired)) else {
        return Err("it has no pod template".into());
    };
    if !same_containers(&got.containers, &want.containers)
        || !got.init_containers.unwrap_or_default().is_empty()
    {
        return Err("its pod does not run the operator's curation container".into());
    }
    let vols = |v: Option<Vec<k8s_openapi::api::core::v1::Volume>>| {
        v.unwrap_or_default()
            .into_iter()
            .map(|v| {
                (
                    v.name,
                    v.persistent_volume_claim.map(|c| c.claim_name),
                    v.config_map.map(|c| c.name),
                    v.host_path.map(|h| h.path),
                )
            })
            .collect::<Vec<_>>()
    };
    if vols(got.volumes) != vols(want.volumes) {
        return Err("its pod mounts other volumes than the operator's".into());
    }
    Ok(())
}

/// The version digest of a manifest's text: what `status.manifestSha256` holds and a new
/// version is cut for — the canonical digest of its entries ([`curate::manifest_digest`]),
/// so a reformatted manifest is the same version. A manifest that does not parse (and is
/// refused as `ManifestInvalid`) is named by the sha256 of its bytes.
pub fn manifest_digest(text: &str) -> String {
    curate::parse_manifest(text).map_or_else(
        |_| crate::contribution::sha256_hex(text.as_bytes()),
        |m| curate::manifest_digest(&m),
    )
}

/// The name of the curation Job of `version` of the Datanet with uid `uid` and manifest
/// `digest`, in the trusted namespace (uids keep Datanets of every namespace apart there).
pub fn job_name(uid: &str, version: u32, digest: &str) -> String {
    format!("curate-{uid}-v{version}-{}", &digest[..8.min(digest.len())])
}

/// The ConfigMap that hands the manifest to curation Job `job`.
fn manifest_copy(job: &str) -> String {
    format!("{job}-manifest")
}

/// The Secret that hands the tenant's object-store credentials to curation Job `job`.
fn credentials_copy(job: &str) -> String {
    format!("{job}-credentials")
}

/// The curation Job, in the operator's trusted namespace.
pub fn curation_job(
    dn: &Datanet,
    config: &super::Config,
    version: u32,
    digest: &str,
) -> Result<Job, Error> {
    let ns = dn.namespace().unwrap_or_default();
    let uid = dn.uid().unwrap_or_default();
    let name = job_name(&uid, version, digest);
    let mut args = vec![
        "curate".to_string(),
        "--datanet".into(),
        format!("{ns}/{}", dn.name_any()),
        "--version".into(),
        version.to_string(),
        "--artifact-store".into(),
        config.artifact_store.clone(),
        "--manifest".into(),
        format!("file://{MANIFEST_DIR}/{MANIFEST_KEY}"),
        "--manifest-dir".into(),
        MANIFEST_DIR.into(),
    ];
    let (mut vols, mut mounts) = volumes(&[config.artifact_store.as_str()]);
    vols.push(Volume {
        name: "manifest".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: manifest_copy(&name),
            items: Some(vec![KeyToPath {
                key: MANIFEST_KEY.into(),
                path: MANIFEST_KEY.into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    });
    mounts.push(read_only_mount("manifest", MANIFEST_DIR));
    for (i, dev) in config.dev_host_dirs.iter().enumerate() {
        // Dev mode only (the test bed, the demo): the host directory, read-only, at its own
        // path, so `file://` contributions name the same path on the host and in the pod.
        let dev = dev.display().to_string();
        let vol = format!("dev-data-{i}");
        vols.push(Volume {
            name: vol.clone(),
            host_path: Some(HostPathVolumeSource {
                path: dev.clone(),
                type_: Some("Directory".into()),
            }),
            ..Default::default()
        });
        mounts.push(read_only_mount(&vol, &dev));
        args.extend(["--files-under".into(), dev]);
    }
    let labels = BTreeMap::from(
        [
            (LABEL_MANAGED_BY, MANAGED_BY.to_string()),
            ("app.kubernetes.io/name", CURATION_APP.to_string()),
            (LABEL_INSTANCE, dn.name_any()),
            (LABEL_DATANET_NAMESPACE, ns.clone()),
            (LABEL_DATANET_UID, uid),
            ("modelcommons.dev/datanet-version", version.to_string()),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    );
    let annotations = BTreeMap::from([
        (
            "modelcommons.dev/datanet".to_string(),
            format!("{ns}/{}", dn.name_any()),
        ),
        (
            ANNOTATION_RETRY.to_string(),
            dn.annotations()
                .get(ANNOTATION_RETRY)
                .cloned()
                .unwrap_or_default(),
        ),
    ]);
    let pod = curation_pod(dn, config, &name, args, vols, mounts);
    Ok(Job {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(config.trusted_namespace.clone()),
            labels: Some(labels.clone()),
            annotations: Some(annotations),
            ..Default::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(2),
            active_deadline_seconds: Some(6 * 3600),
            ttl_seconds_after_finished: Some(86400),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn read_only_mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(true),
        ..Default::default()
    }
}

/// The curation pod: `modelcommons-operator curate`, with no API access (it reads and writes
/// files only), its failure's last log lines as its termination message (tenants cannot
/// read logs in the trusted namespace).
fn curation_pod(
    dn: &Datanet,
    config: &super::Config,
    job: &str,
    args: Vec<String>,
    volumes: Vec<Volume>,
    mounts: Vec<VolumeMount>,
) -> PodSpec {
    let env = |name: &str, value: String| EnvVar {
        name: name.into(),
        value: Some(value),
        ..Default::default()
    };
    // Object-store credentials as the environment object_store reads: the operator's copy
    // of the tenant's Secret, beside the Job. The two variables set here win over any of the
    // same name in it.
    let env_from = dn
        .spec
        .contributions
        .credentials_secret_ref
        .as_ref()
        .map(|_| {
            vec![EnvFromSource {
                secret_ref: Some(SecretEnvSource {
                    name: credentials_copy(job),
                    ..Default::default()
                }),
                ..Default::default()
            }]
        });
    PodSpec {
        restart_policy: Some("Never".into()),
        automount_service_account_token: Some(false),
        security_context: Some(restricted_pod()),
        containers: vec![Container {
            name: "curate".into(),
            image: Some(config.operator_image.clone()),
            args: Some(args),
            env: Some(vec![
                env(
                    SPEC_ENV,
                    serde_json::to_string(&dn.spec).unwrap_or_default(),
                ),
                env(curate::ALLOW_ENV, config.egress.to_env()),
            ]),
            env_from: Some(env_from.unwrap_or_default()),
            volume_mounts: Some(mounts),
            termination_message_path: Some(RESULT_FILE.into()),
            termination_message_policy: Some("FallbackToLogsOnError".into()),
            resources: Some(ResourceRequirements {
                requests: Some(BTreeMap::from([
                    ("cpu".to_string(), Quantity("250m".into())),
                    ("memory".to_string(), Quantity("256Mi".into())),
                ])),
                ..Default::default()
            }),
            security_context: Some(restricted_container()),
            ..Default::default()
        }],
        volumes: Some(volumes),
        ..Default::default()
    }
}

/// The Datanet annotation that asks for another attempt at a failed curation: any new value.
pub const ANNOTATION_RETRY: &str = "modelcommons.dev/retry-curation";

/// What a failed pod of the operator's Job `job` said last (its termination message, which
/// falls back to its last log lines), at most 800 characters.
async fn pod_failure(ctx: &Context, job: &Job) -> Result<Option<String>, Error> {
    use k8s_openapi::api::core::v1::Pod;
    let uid = job.uid().unwrap_or_default();
    let pods = Api::<Pod>::namespaced(ctx.client.clone(), &job.namespace().unwrap_or_default())
        .list(&ListParams::default().labels(&format!("batch.kubernetes.io/controller-uid={uid}")))
        .await?;
    Ok(pods
        .items
        .iter()
        .filter(|p| {
            p.owner_references()
                .iter()
                .any(|o| o.controller == Some(true) && o.uid == uid)
        })
        .flat_map(|p| {
            p.status
                .iter()
                .flat_map(|s| s.container_statuses.iter().flatten())
        })
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref())
        .filter(|t| t.exit_code != 0)
        .filter_map(|t| t.message.as_deref())
        .map(|m| {
            let m = m.trim();
            let start = m.len().saturating_sub(800);
            let start = (start..m.len())
                .find(|i| m.is_char_boundary(*i))
                .unwrap_or(m.len());
            m[start..].replace('\n', " | ")
        })
        .next_back())
}

/// The Role and RoleBinding a tenant applies in its namespace so that the operator may read
/// the one Secret its Datanet names (and nothing else of the namespace's Secrets), as
/// `kubectl` commands.
pub fn credentials_role(ns: &str, secret: &str, operator: &str) -> String {
    format!(
        "kubectl -n {ns} create role modelcommons-read-{secret} --verb=get --resource=secrets --resource-name={secret} && kubectl -n {ns} create rolebinding modelcommons-read-{secret} --role=modelcommons-read-{secret} --serviceaccount={operator}"
    )
}

/// Writes what the curation Job reads beside it in the trusted namespace: the manifest the
/// operator read, and a copy of the tenant's credentials Secret. `Ok(Some(_))` when the
/// Secret cannot be read (the condition to show).
async fn hand_over(
    dn: &Datanet,
    ctx: &Context,
    job: &str,
    manifest: &str,
    owner: Option<&Job>,
) -> Result<Option<Shown>, Error> {
    let trusted = &ctx.config.trusted_namespace;
    let ns = dn.namespace().unwrap_or_default();
    let owners = owner.map(|j| {
        vec![OwnerReference {
            api_version: "batch/v1".into(),
            kind: "Job".into(),
            name: j.name_any(),
            uid: j.uid().unwrap_or_default(),
            ..Default::default()
        }]
    });
    let meta = |name: String| ObjectMeta {
        name: Some(name),
        namespace: Some(trusted.clone()),
        labels: Some(BTreeMap::from(
            [
                (LABEL_MANAGED_BY, MANAGED_BY.to_string()),
                ("app.kubernetes.io/name", CURATION_APP.to_string()),
                (LABEL_DATANET_NAMESPACE, ns.clone()),
                (LABEL_DATANET_UID, dn.uid().unwrap_or_default()),
            ]
            .map(|(k, v)| (k.to_string(), v)),
        )),
        owner_references: owners.clone(),
        ..Default::default()
    };
    let cm = ConfigMap {
        metadata: meta(manifest_copy(job)),
        data: Some(BTreeMap::from([(
            MANIFEST_KEY.to_string(),
            manifest.to_string(),
        )])),
        ..Default::default()
    };
    ssa(
        &Api::<ConfigMap>::namespaced(ctx.client.clone(), trusted),
        &cm,
    )
    .await?;
    let Some(r) = &dn.spec.contributions.credentials_secret_ref else {
        return Ok(None);
    };
    let secret = match Api::<Secret>::namespaced(ctx.client.clone(), &ns)
        .get_opt(&r.name)
        .await
    {
        Ok(Some(s)) => s,
        Ok(None) => {
            return Ok(Some(Shown::new(
                DatanetPhase::Curating,
                reason::CREDENTIALS_MISSING,
                format!(
                    "contributions.credentialsSecretRef names Secret {}, which does not exist in namespace {ns}; create it with the object-store settings (AWS_*, GOOGLE_*, AZURE_*) and curation starts",
                    r.name
                ),
                Some(ctx.config.recheck),
            )));
        }
        Err(kube::Error::Api(e)) if e.code == 403 => {
            return Ok(Some(Shown::new(
                DatanetPhase::Curating,
                reason::CREDENTIALS_FORBIDDEN,
                format!(
                    "the operator may not read Secret {} of namespace {ns}: it reads a tenant's Secret only where the tenant allows it, that one alone. Allow it with: {}; curation then starts by itself",
                    r.name,
                    credentials_role(&ns, &r.name, &ctx.config.service_account)
                ),
                Some(ctx.config.recheck),
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let copy = Secret {
        metadata: meta(credentials_copy(job)),
        type_: Some("Opaque".into()),
        data: secret.data,
        ..Default::default()
    };
    ssa(
        &Api::<Secret>::namespaced(ctx.client.clone(), trusted),
        &copy,
    )
    .await?;
    Ok(None)
}

struct Shown {
    phase: DatanetPhase,
    ready: bool,
    reason: &'static str,
    message: String,
    requeue: Option<Duration>,
    /// Also a Warning event under `reason` when the condition turns to it.
    warn: bool,
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
            warn: false,
        }
    }

    /// Where the Datanet stands in kstatus terms: Ready; Stalled when a person must act (a
    /// failed version, a grant, a manifest to fix); Reconciling otherwise.
    fn progress(&self) -> Progress {
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
    fn warn(phase: DatanetPhase, reason: &'static str, message: String) -> Self {
        Self {
            warn: true,
            ..Self::new(phase, reason, message, None)
        }
    }
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
                reason::PUBLISHED,
                ready_message(status),
                None,
            ));
        }
        return Ok(Shown::new(
            DatanetPhase::Collecting,
            reason::PROPOSAL_NOT_APPROVED,
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
    // Every pool of this Datanet is drawn from the proposal's reward budget on chain.
    let model =
        crate::ledger::ids::model_id(&proposal.as_ref().and_then(|p| p.uid()).unwrap_or_default());
    let source = match ManifestSource::of(dn) {
        Ok(s) => s,
        Err(m) => {
            return Ok(Shown::new(
                DatanetPhase::Failed,
                reason::MANIFEST_UNSUPPORTED,
                m,
                None,
            ));
        }
    };
    let manifest = match source.read(&ctx.client, &ns, &ctx.config).await {
        Ok(m) => m,
        Err(m) => {
            let phase = if status.phase == Some(DatanetPhase::Ready) {
                DatanetPhase::Ready
            } else {
                DatanetPhase::Collecting
            };
            return Ok(Shown::new(
                phase,
                reason::MANIFEST_UNAVAILABLE,
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
    let parsed = match curate::parse_manifest(&manifest) {
        Ok(m) => m,
        Err(e) => {
            return Ok(Shown::new(
                DatanetPhase::Failed,
                reason::MANIFEST_INVALID,
                format!("{e}; fix the manifest and the version is curated"),
                None,
            ));
        }
    };
    let digest = curate::manifest_digest(&parsed);
    // Which manifests are published, and so the next version, come from the operator's own
    // record (never from `status`, which a tenant can rewrite).
    let published = super::lineage::versions(ctx, dn).await?;
    if let Some((v, _)) = published
        .iter()
        .rev()
        .find(|(_, r)| r.manifest_sha256 == digest)
    {
        // Published, and the status says so; otherwise the (idempotent) publication below
        // writes the status back from the verified result.
        if status.phase == Some(DatanetPhase::Ready)
            && status.version == Some(*v)
            && status.manifest_sha256.as_deref() == Some(digest.as_str())
        {
            return Ok(Shown::new(
                DatanetPhase::Ready,
                reason::PUBLISHED,
                ready_message(status),
                None,
            ));
        }
    }
    let version = published
        .iter()
        .rev()
        .find(|(_, r)| r.manifest_sha256 == digest)
        .map_or_else(|| published.keys().last().map_or(1, |v| v + 1), |(v, _)| *v);

    // A pool the mandate's budget cannot pay is refused before anything runs.
    if let Some(shown) = over_budget(dn, ctx, model, version).await? {
        return Ok(shown);
    }

    // The curation Job runs in the trusted namespace (created once per manifest digest and
    // version), on the manifest bytes the operator read; only the operator's own Job and its
    // own pods count.
    let trusted = &ctx.config.trusted_namespace;
    let jobs = Api::<Job>::namespaced(ctx.client.clone(), trusted);
    let name = job_name(&dn.uid().unwrap_or_default(), version, &digest);
    let desired = curation_job(dn, &ctx.config, version, &digest)?;
    let job = match jobs.get_opt(&name).await? {
        Some(j) => j,
        None => {
            if let Some(shown) = hand_over(dn, ctx, &name, &manifest, None).await? {
                return Ok(shown);
            }
            let j = match jobs
                .patch(
                    &name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&desired),
                )
                .await
            {
                Ok(j) => j,
                Err(kube::Error::Api(e)) if e.code == 404 => {
                    return Ok(Shown::new(
                        DatanetPhase::Curating,
                        reason::TRUSTED_NAMESPACE_MISSING,
                        format!(
                            "the operator curates in its trusted namespace {trusted}, which does not exist ({}); create it (Helm evaluation.createNamespace) and curation starts",
                            e.message
                        ),
                        Some(ctx.config.recheck),
                    ));
                }
                Err(e) => return Err(e.into()),
            };
            // The inputs go with the Job (garbage-collected when its TTL removes it).
            hand_over(dn, ctx, &name, &manifest, Some(&j)).await?;
            ctx.event(
                dn,
                EventType::Normal,
                reason::CURATION_STARTED,
                format!(
                    "Job {trusted}/{name} curates version {version} (manifest sha256 {digest})"
                ),
            );
            j
        }
    };
    if let Err(why) = job_is_ours(&job, dn, &desired) {
        return Ok(Shown::warn(
            DatanetPhase::Failed,
            reason::FORGED_RESULT,
            format!(
                "Job {trusted}/{name} was not made by the operator: {why}. Nothing is published from it; the platform team deletes it (kubectl delete job -n {trusted} {name}) and the operator curates version {version} with its own"
            ),
        ));
    }
    let (state, failure) = job_state(&job);
    let result: Option<CurationResult> = if state == JobState::Complete {
        pod_result(ctx, dn, &job).await?
    } else {
        None
    };
    if let Some(r) = result {
        if r.version != version || r.manifest_sha256 != digest {
            return Ok(Shown::warn(
                DatanetPhase::Failed,
                reason::CURATION_MISMATCH,
                format!(
                    "the curation Job {trusted}/{name} reported version {} of manifest {}, not version {version} of {digest}; nothing is published",
                    r.version, r.manifest_sha256
                ),
            ));
        }
        let report = match read_verified(ctx, dn, &parsed, &r) {
            Ok(report) => report,
            Err(Unverified::Unreadable(m)) => {
                return Ok(Shown::new(
                    DatanetPhase::Curating,
                    reason::ARTIFACTS_UNREADABLE,
                    m,
                    Some(Duration::from_secs(10)),
                ));
            }
            Err(Unverified::Forged(f)) => {
                return Ok(Shown::warn(
                    DatanetPhase::Failed,
                    f.reason(),
                    format!(
                        "the result of curation Job {trusted}/{name} does not check out: {f}. Nothing is published; the platform team deletes the Job (kubectl delete job -n {trusted} {name}) to curate version {version} again"
                    ),
                ));
            }
        };
        if let Some(shown) = over_budget(dn, ctx, model, version).await? {
            return Ok(shown);
        }
        return publish(dn, ctx, status, model, version, digest, &r, report).await;
    }
    Ok(match state {
        JobState::Failed => {
            let asked = dn.annotations().get(ANNOTATION_RETRY);
            if asked.is_some() && asked != job.annotations().get(ANNOTATION_RETRY) {
                // Another attempt asked for: the failed Job (and, with it, its inputs) goes,
                // and the next look creates it again.
                jobs.delete(&name, &kube::api::DeleteParams::background())
                    .await?;
                return Ok(Shown::new(
                    DatanetPhase::Curating,
                    reason::CURATION_RETRIED,
                    format!("curation Job {trusted}/{name} failed; it runs again as asked"),
                    Some(Duration::from_secs(1)),
                ));
            }
            let (_, why) = failure.unwrap_or_default();
            let said = pod_failure(ctx, &job)
                .await?
                .map(|m| format!("; its last words: {m}"))
                .unwrap_or_default();
            Shown::new(
                DatanetPhase::Failed,
                reason::CURATION_FAILED,
                format!(
                    "the curation Job {trusted}/{name} failed: {why}{said}. Fix the cause (the manifest, the contributions' store or credentials) and ask for another attempt: kubectl -n {ns} annotate datanet {} {ANNOTATION_RETRY}=\"$(date +%s)\" --overwrite",
                    dn.name_any()
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
                    reason::NO_RESULT,
                    format!(
                        "the curation Job {trusted}/{name} completed {waited:.0}s ago without reporting a result; the platform team can read its logs (kubectl -n {trusted} logs job/{name}); ask for another attempt: kubectl -n {ns} annotate datanet {} {ANNOTATION_RETRY}=\"$(date +%s)\" --overwrite",
                        dn.name_any()
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
            recheck,
        ),
    })
}

/// Why a curation result is not published (yet).
enum Unverified {
    /// The operator cannot read the artifacts: it retries.
    Unreadable(String),
    /// They do not check out.
    Forged(curate::Forgery),
}

/// The largest curation report the operator reads back.
const MAX_REPORT_BYTES: u64 = 64 * 1024 * 1024;

/// Reads the curation report and the curated dataset named by `r` back from the artifact
/// store — by content address, under this Datanet's own directory of the operator's store —
/// and verifies them against the manifest the operator read ([`curate::verify`]).
fn read_verified(
    ctx: &Context,
    dn: &Datanet,
    manifest: &crate::contribution::Manifest,
    r: &CurationResult,
) -> Result<CurationReport, Unverified> {
    use std::io::Read;
    let ns = dn.namespace().unwrap_or_default();
    let forged = |m: String| Unverified::Forged(curate::Forgery::Inconsistent(m));
    let (uri, dir) = artifact_dir(&ctx.config.artifact_store, &ns, &dn.name_any())
        .map_err(|e| Unverified::Unreadable(e.to_string()))?;
    let addressed = |got: &str, prefix: &str, suffix: &str| -> Option<String> {
        let hex = got
            .strip_prefix(&format!("{uri}/{prefix}"))?
            .strip_suffix(suffix)?;
        (hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| hex.to_string())
    };
    let (Some(report_hex), Some(dataset_hex)) = (
        addressed(&r.reward_map_uri, "curation-sha256-", ".json"),
        addressed(&r.dataset_uri, "sha256-", ""),
    ) else {
        return Err(forged(format!(
            "its artifacts ({}, {}) are not content-addressed under {uri}, where the operator's curation writes",
            r.reward_map_uri, r.dataset_uri
        )));
    };
    let report_path = dir.join(format!("curation-sha256-{report_hex}.json"));
    let dataset_path = dir
        .join(format!("sha256-{dataset_hex}"))
        .join("dataset.jsonl");
    let unreadable = |path: &Path, e: std::io::Error| {
        Unverified::Unreadable(format!(
            "the operator cannot read {} to verify the curation result ({e}); it must see the artifact store at the path the curation pod wrote to: mount the store into the operator (Helm artifactStore) or use a file:// store it shares",
            path.display()
        ))
    };
    let mut bytes = Vec::new();
    std::fs::File::open(&report_path)
        .map_err(|e| unreadable(&report_path, e))?
        .take(MAX_REPORT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| unreadable(&report_path, e))?;
    if bytes.len() as u64 > MAX_REPORT_BYTES
        || crate::contribution::sha256_hex(&bytes) != report_hex
    {
        return Err(Unverified::Forged(curate::Forgery::Tampered(format!(
            "the curation report {} is not the content its address names: it was rewritten in the store",
            r.reward_map_uri
        ))));
    }
    let dataset = std::fs::File::open(&dataset_path).map_err(|e| unreadable(&dataset_path, e))?;
    let report = curate::verify(
        &datanet_id(dn),
        &dn.spec,
        manifest,
        &curate::Options::default(),
        &bytes,
        std::io::BufReader::new(dataset),
    )
    .map_err(Unverified::Forged)?;
    if report.dataset.sha256 != dataset_hex {
        return Err(Unverified::Forged(curate::Forgery::Tampered(format!(
            "the curated dataset {} is not the one the report names",
            r.dataset_uri
        ))));
    }
    let data_dir = dataset_path.parent().unwrap_or(&dir).to_path_buf();
    split_matches(&data_dir).map_err(|e| match e {
        SplitError::Io(path, e) => unreadable(&path, e),
        SplitError::Differs(what) => Unverified::Forged(curate::Forgery::Tampered(format!(
            "{what} of {} is not the split of its dataset.jsonl: it was rewritten in the store",
            r.dataset_uri
        ))),
    })?;
    // The pod's own summary must agree with what was verified.
    let claimed = (
        r.dataset_root.clone(),
        r.reward_root.clone(),
        r.reward_total.clone(),
        &r.counts,
    );
    let verified = (
        report.dataset_root.map(|x| x.to_string()),
        report.reward_root.map(|x| x.to_string()),
        report.rewards.allocated.to_string(),
        &report.counts.to_status(),
    );
    if claimed != verified {
        return Err(forged(format!(
            "its summary (reward root {:?}, total {}) is not what its artifacts give (reward root {:?}, total {})",
            r.reward_root, r.reward_total, verified.1, verified.2
        )));
    }
    Ok(report)
}

fn datanet_id(dn: &Datanet) -> String {
    format!("{}/{}", dn.namespace().unwrap_or_default(), dn.name_any())
}

/// `RewardBudgetExceeded` when version `version` is not published yet and its pool is more
/// than what is left of the mandate's reward budget on chain.
async fn over_budget(
    dn: &Datanet,
    ctx: &Context,
    model: B256,
    version: u32,
) -> Result<Option<Shown>, Error> {
    let h = ctx
        .ledger
        .clone()
        .ok_or_else(|| Error::Invalid("no ledger".into()))?;
    let id = datanet_version_id(&dn.uid().unwrap_or_default(), version);
    if h.ledger
        .published_tx(h.suite.distributor, id)
        .await?
        .is_some()
    {
        return Ok(None);
    }
    let pool = U256::from_str_radix(&dn.spec.rewards.pool, 10).unwrap_or(U256::MAX);
    let (budget, spent) = h.ledger.reward_budget(h.suite.registry, model).await?;
    let left = budget.saturating_sub(spent);
    if pool <= left {
        return Ok(None);
    }
    Ok(Some(Shown::warn(
        DatanetPhase::Failed,
        reason::REWARD_BUDGET_EXCEEDED,
        format!(
            "version {version}'s pool of {pool} OPEN base units is more than is left of ModelProposal {}'s reward budget on chain ({left} of {budget}; {spent} spent; a budget is spendable once the vote has ratified it): nothing is curated or paid. Lower spec.rewards.pool, or fund a new mandate through governance",
            dn.spec.proposal_ref.name
        ),
    )))
}

/// Publishes a verified version on chain — a RewardDistributor distribution of the
/// recomputed reward root, funded with exactly the pool from the mandate's escrowed budget
/// (`ModelRegistry.fundDistribution`) — and makes the Datanet `Ready`.
#[allow(clippy::too_many_arguments)]
async fn publish(
    dn: &Datanet,
    ctx: &Context,
    status: &mut DatanetStatus,
    model: B256,
    version: u32,
    digest: String,
    r: &CurationResult,
    report: CurationReport,
) -> Result<Shown, Error> {
    let h = ctx
        .ledger
        .clone()
        .ok_or_else(|| Error::Invalid("no ledger".into()))?;
    let uid = dn.uid().unwrap_or_default();
    let total = report.rewards.allocated;
    let mut record = ChainRecord::default();
    if let Some(root) = report.reward_root.filter(|_| !total.is_zero()) {
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
            root,
            content_root: report.dataset_root.unwrap_or_default(),
            total,
            deadline: block + CLAIM_WINDOW_SECONDS,
        };
        let w = ctx
            .ledger_write(
                "ModelRegistry.fundDistribution",
                h.ledger
                    .fund_distribution(h.suite.registry, h.suite.distributor, model, &req),
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
    // The operator's record of the version, before the status mirrors it: what FineTuneJobs
    // train on and what the next version is are read from there.
    super::lineage::record(
        ctx,
        dn,
        version,
        &super::lineage::VersionRecord {
            dataset_uri: r.dataset_uri.clone(),
            dataset_root: report.dataset_root.map(|x| x.to_string()),
            manifest_sha256: digest.clone(),
            reward_map_uri: r.reward_map_uri.clone(),
            accepted_quality_bps: report
                .items
                .iter()
                .filter(|i| i.accepted())
                .filter_map(|i| i.quality_bps)
                .collect(),
        },
    )
    .await?;
    let counts = report.counts.to_status();
    status.version = Some(version);
    status.manifest_sha256 = Some(digest);
    status.counts = Some(counts.clone());
    status.dataset_root = report.dataset_root.map(|r| r.to_string());
    status.reward_root = report.reward_root.map(|r| r.to_string());
    // Both verified to be content-addressed under this Datanet's directory of the store.
    status.dataset_uri = Some(r.dataset_uri.clone());
    status.reward_map_uri = Some(r.reward_map_uri.clone());
    status.reward_total = Some(total.to_string());
    status.chain = Some(record);
    ctx.event(
        dn,
        EventType::Normal,
        reason::PUBLISHED,
        format!(
            "version {version}: {} accepted, {} rejected; {total} OPEN base units to contributors{}",
            counts.accepted,
            counts.rejected,
            status
                .chain
                .as_ref()
                .and_then(|r| r.tx_hash.as_ref())
                .map(|t| format!(" (tx {t})"))
                .unwrap_or_default()
        ),
    );
    Ok(Shown::new(
        DatanetPhase::Ready,
        reason::PUBLISHED,
        ready_message(status),
        None,
    ))
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lines(b: &[u8]) -> Vec<String> {
        String::from_utf8_lossy(b)
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn datanet(credentials: bool) -> Datanet {
        let mut spec = serde_json::json!({
            "proposalRef": {"name": "p"},
            "format": {"type": "Jsonl", "fields": ["prompt", "completion"]},
            "contributions": {"configMapRef": {"name": "m", "key": "manifest.yaml"}},
            "rewards": {"pool": "1000"},
        });
        if credentials {
            spec["contributions"]["credentialsSecretRef"] = json!({"name": "store-keys"});
        }
        let mut dn: Datanet = serde_json::from_value(json!({
            "apiVersion": "modelcommons.dev/v1alpha1", "kind": "Datanet",
            "metadata": {"name": "d", "namespace": "tenant", "uid": "0b5e2f7a-6d5c-4a4e-9c61-2f1d9b0c8e11",
                "annotations": {ANNOTATION_RETRY: "7"}},
            "spec": spec,
        }))
        .unwrap();
        dn.metadata.generation = Some(1);
        dn
    }

    #[test]
    fn curation_runs_in_the_trusted_namespace_on_what_the_operator_hands_it() {
        let config = super::super::Config {
            trusted_namespace: "trusted".into(),
            ..Default::default()
        };
        let job = curation_job(&datanet(true), &config, 3, &"ab".repeat(32)).unwrap();
        let name = job.metadata.name.clone().unwrap();
        assert_eq!(
            name,
            "curate-0b5e2f7a-6d5c-4a4e-9c61-2f1d9b0c8e11-v3-abababab"
        );
        assert!(name.len() <= 63, "a Job name is a label value");
        assert_eq!(job.metadata.namespace.as_deref(), Some("trusted"));
        assert!(
            job.metadata.owner_references.is_none(),
            "no owner across namespaces"
        );
        let labels = job.metadata.labels.clone().unwrap();
        assert_eq!(labels[LABEL_DATANET_NAMESPACE], "tenant");
        assert_eq!(
            labels[LABEL_DATANET_UID],
            "0b5e2f7a-6d5c-4a4e-9c61-2f1d9b0c8e11"
        );
        assert_eq!(
            job.metadata.annotations.clone().unwrap()[ANNOTATION_RETRY],
            "7"
        );
        let pod = job.spec.unwrap().template.spec.unwrap();
        let c = &pod.containers[0];
        let args = c.args.clone().unwrap();
        assert!(
            args.contains(&format!("file://{MANIFEST_DIR}/{MANIFEST_KEY}")),
            "{args:?}"
        );
        let cm = pod
            .volumes
            .unwrap()
            .into_iter()
            .find_map(|v| v.config_map)
            .unwrap();
        assert_eq!(
            cm.name,
            format!("{name}-manifest"),
            "the operator's copy, not the tenant's"
        );
        let secret = c.env_from.clone().unwrap()[0].secret_ref.clone().unwrap();
        assert_eq!(secret.name, format!("{name}-credentials"));
        assert_eq!(
            c.termination_message_policy.as_deref(),
            Some("FallbackToLogsOnError")
        );
        let none = curation_job(&datanet(false), &config, 3, &"ab".repeat(32)).unwrap();
        let c = &none.spec.unwrap().template.spec.unwrap().containers[0];
        assert!(c.env_from.clone().unwrap_or_default().is_empty());
    }

    #[test]
    fn the_credentials_role_names_one_secret() {
        let cmd = credentials_role("tenant", "store-keys", "ops:modelcommons");
        assert!(cmd.contains("--resource-name=store-keys"), "{cmd}");
        assert!(cmd.contains("--serviceaccount=ops:modelcommons"), "{cmd}");
        assert!(cmd.contains("--verb=get "), "{cmd}");
    }

    #[test]
    fn every_fifth_record_is_held_out_and_every_tenth_of_the_rest_validates() {
        let data: Vec<u8> = (0..20)
            .flat_map(|i| format!("{i}\n").into_bytes())
            .collect();
        let s = split(&data);
        assert_eq!(lines(&s.holdout), ["4", "9", "14", "19"]);
        assert_eq!(lines(&s.eval), ["11"]);
        assert_eq!(
            s.train
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .count(),
            15
        );
        assert!(
            !lines(&s.train)
                .iter()
                .any(|l| lines(&s.holdout).contains(l))
        );
    }

    #[test]
    fn small_datasets_hold_out_their_last_record() {
        let s = split(b"a\nb\nc\n");
        assert_eq!(lines(&s.holdout), ["c"]);
        assert_eq!(
            (lines(&s.train), lines(&s.eval)),
            (vec!["a".to_string()], vec!["b".to_string()])
        );
        let s = split(b"only\n");
        assert_eq!(
            (lines(&s.train), s.holdout.len(), s.eval.len()),
            (vec!["only".to_string()], 0, 0)
        );
    }

    #[test]
    fn the_operator_recomputes_the_split_files() {
        for n in [0, 1, 3, 5, 12, 57] {
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            let data: Vec<u8> = (0..n).flat_map(|i| format!("{i}\n").into_bytes()).collect();
            let s = split(&data);
            let w = |p: &str, b: &[u8]| {
                let p = dir.path().join(p);
                std::fs::create_dir_all(p.parent().unwrap_or(dir.path()))
                    .unwrap_or_else(|e| panic!("{e}"));
                std::fs::write(p, b).unwrap_or_else(|e| panic!("{e}"));
            };
            w("dataset.jsonl", &data);
            w(HOLDOUT_FILE, &s.holdout);
            w("train/train.jsonl", &s.train);
            w("train/eval.jsonl", &s.eval);
            assert!(split_matches(dir.path()).is_ok(), "{n} records");
            if n >= 3 {
                // A held-out record moved into the training file is caught.
                let mut train = s.train.clone();
                train.extend_from_slice(&s.holdout);
                w("train/train.jsonl", &train);
                assert!(
                    matches!(
                        split_matches(dir.path()),
                        Err(SplitError::Differs("train/train.jsonl"))
                    ),
                    "{n}"
                );
            }
        }
    }
}
