//! The curated dataset's files: the split (held-out, training, validation records), written
//! content-addressed to the artifact store, and the operator's check of a curation result
//! against them.

use super::*;

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
    pub(super) fn every(n: usize, k: usize) -> impl Fn(usize) -> bool {
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

pub(super) enum SplitError {
    Io(PathBuf, std::io::Error),
    Differs(&'static str),
}

/// Whether the split files of the curated dataset directory `dir` are exactly [`split`] of
/// its `dataset.jsonl` — streamed, line by line, so a large dataset is never held in memory.
pub(super) fn split_matches(dir: &Path) -> Result<(), SplitError> {
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

pub(super) fn io(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let msg = format!("{what} {}", path.display());
    move |e| Error::Invalid(format!("{msg}: {e}"))
}

/// Writes `bytes` to `path` atomically (a temporary file renamed into place).
pub(super) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(io("writing", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io("renaming into", path))
}

/// The artifact store's path in this process (and in pods), where it has one.
pub(super) fn artifact_local(store: &str) -> Vec<PathBuf> {
    container_path(store)
        .map(PathBuf::from)
        .into_iter()
        .collect()
}

/// Where the curation Job writes, as a URI of the store and a local path.
pub(super) fn artifact_dir(store: &str, ns: &str, name: &str) -> Result<(String, PathBuf), Error> {
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

/// Why a curation result is not published (yet).
pub(super) enum Unverified {
    /// The operator cannot read the artifacts: it retries.
    Unreadable(String),
    /// They do not check out.
    Forged(curate::Forgery),
}

/// The curation report's bytes, at most [`MAX_REPORT_BYTES`], which must hash to its address
/// (`Err(Ok(_))`: they do not; `Err(Err(_))`: unreadable).
fn read_report(
    path: &Path,
    hex: &str,
    r: &CurationResult,
) -> Result<Vec<u8>, Result<Unverified, std::io::Error>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_REPORT_BYTES + 1).read_to_end(&mut bytes))
        .map_err(Err)?;
    if bytes.len() as u64 > MAX_REPORT_BYTES || crate::contribution::sha256_hex(&bytes) != hex {
        return Err(Ok(Unverified::Forged(curate::Forgery::Tampered(format!(
            "the curation report {} is not the content its address names: it was rewritten in the store",
            r.reward_map_uri
        )))));
    }
    Ok(bytes)
}

/// The curation pod's own summary must agree with what was verified.
fn summary_agrees(r: &CurationResult, report: &CurationReport) -> Result<(), String> {
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
    if claimed == verified {
        return Ok(());
    }
    Err(format!(
        "its summary (reward root {:?}, total {}) is not what its artifacts give (reward root {:?}, total {})",
        r.reward_root, r.reward_total, verified.1, verified.2
    ))
}

/// The largest curation report the operator reads back.
pub(super) const MAX_REPORT_BYTES: u64 = 64 * 1024 * 1024;

/// Reads the curation report and the curated dataset named by `r` back from the artifact
/// store — by content address, under this Datanet's own directory of the operator's store —
/// and verifies them against the manifest the operator read ([`curate::verify`]).
pub(super) fn read_verified(
    ctx: &Context,
    dn: &Datanet,
    manifest: &crate::contribution::Manifest,
    r: &CurationResult,
) -> Result<CurationReport, Unverified> {
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
    let bytes = read_report(&report_path, &report_hex, r).map_err(|e| match e {
        Err(e) => unreadable(&report_path, e),
        Ok(tampered) => tampered,
    })?;
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
    summary_agrees(r, &report).map_err(forged)?;
    Ok(report)
}
