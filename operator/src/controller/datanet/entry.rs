//! `modelcommons-operator curate`: the curation Job's entry point.

use super::*;

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
