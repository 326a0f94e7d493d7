//! The operator↔pod contract: where the operator mounts things in the pods it starts, and the
//! command lines it gives them. Written once, here; the trainer's tests parse every argument
//! list built here with the trainer's own `clap` parser, so the two cannot drift.

use crate::deployment::ModelDeployment;
use crate::finetune::{FineTuneJobSpec, MethodType};

/// Where `pvc://claim/path` URIs are mounted: `/mnt/pvc/claim/path`.
pub const PVC_ROOT: &str = "/mnt/pvc";
/// Where the API-key Secrets are mounted in the server container.
pub const KEYS_DIR: &str = "/var/run/modelcommons/api-keys";
/// The server's container port.
pub const SERVER_PORT: i32 = 8000;
/// Where the evaluation pod writes its result (the termination message).
pub const EVAL_RESULT_FILE: &str = "/dev/termination-log";
/// The held-out split of a curated Datanet version (only the operator's evaluation reads it).
pub const HOLDOUT_FILE: &str = "holdout.jsonl";
/// The trainer's binary in its image.
pub const TRAINER_BIN: &str = "modelcommons-trainer";

/// The path a storage URI has inside a container: `file:///p` (a hostPath) is `/p`,
/// `pvc://claim/p` is `/mnt/pvc/claim/p`; other schemes are not mounted (None).
pub fn container_path(uri: &str) -> Option<String> {
    if let Some(p) = uri.strip_prefix("file://") {
        return p.starts_with('/').then(|| p.to_string());
    }
    let rest = uri.strip_prefix("pvc://")?;
    let (claim, path) = rest.split_once('/').unwrap_or((rest, ""));
    (!claim.is_empty()).then(|| {
        format!("{PVC_ROOT}/{claim}/{path}")
            .trim_end_matches('/')
            .to_string()
    })
}

/// `modelcommons-trainer serve`'s command line for `md`, serving the model at `model_dir`
/// (a container path) whose weights must hash to `digest`.
pub fn serve_args(md: &ModelDeployment, model_dir: &str, digest: &str) -> Vec<String> {
    let s = &md.spec;
    let name = md.metadata.name.clone().unwrap_or_default();
    let mut a = vec![
        "serve".to_string(),
        "--model".into(),
        model_dir.into(),
        "--listen".into(),
        format!("0.0.0.0:{SERVER_PORT}"),
        "--served-model-name".into(),
        name,
        "--expect-sha256".into(),
        digest.into(),
    ];
    if !s.access.public {
        a.extend(["--api-keys".into(), KEYS_DIR.into()]);
    }
    if !s.access.allowed_consumers.is_empty() {
        a.extend([
            "--allowed-consumers".into(),
            s.access.allowed_consumers.join(","),
        ]);
    }
    if let Some(l) = &s.rate_limits {
        a.extend([
            "--requests-per-minute".into(),
            l.requests_per_minute.to_string(),
        ]);
        if let Some(t) = l.tokens_per_minute {
            a.extend(["--tokens-per-minute".into(), t.to_string()]);
        }
    }
    a.extend([
        "--device".into(),
        if s.resources.gpus > 0 { "cuda" } else { "cpu" }.into(),
    ]);
    a
}

/// `modelcommons-trainer train`'s command line for a FineTuneJob whose curated training split
/// is mounted at `dataset_dir`.
pub fn train_args(spec: &FineTuneJobSpec, dataset_dir: &str) -> Vec<String> {
    let h = &spec.hyperparameters;
    let path = |u: &str| container_path(u).unwrap_or_default();
    let mut a: Vec<String> = vec![
        "train".into(),
        "--model".into(),
        path(&spec.base_model.uri),
        "--data".into(),
        format!("{dataset_dir}/train.jsonl"),
        "--eval-data".into(),
        format!("{dataset_dir}/eval.jsonl"),
        "--out".into(),
        path(&spec.output_uri),
        "--expect-base-sha256".into(),
        spec.base_model.sha256.clone(),
        "--epochs".into(),
        h.epochs.to_string(),
        "--lr".into(),
        h.learning_rate.clone(),
        "--batch-size".into(),
        h.batch_size.to_string(),
        "--grad-accum".into(),
        h.gradient_accumulation_steps.to_string(),
        "--warmup-steps".into(),
        h.warmup_steps.to_string(),
        "--max-seq-len".into(),
        h.max_seq_len.to_string(),
        "--seed".into(),
        h.seed.to_string(),
        "--checkpoint-every".into(),
        spec.checkpointing.every_steps.to_string(),
        "--keep-checkpoints".into(),
        spec.checkpointing.keep.to_string(),
    ];
    if let Some(s) = h.max_steps {
        a.extend(["--max-steps".into(), s.to_string()]);
    }
    match (&spec.method.kind, &spec.method.lora) {
        (MethodType::LoRA, Some(l)) => a.extend([
            "--method".into(),
            "lora".into(),
            "--lora-r".into(),
            l.rank.to_string(),
            "--lora-alpha".into(),
            l.alpha.to_string(),
            "--lora-dropout".into(),
            (f64::from(l.dropout_bps) / 10_000.0).to_string(),
            "--lora-targets".into(),
            l.target_modules.join(","),
        ]),
        _ => a.extend(["--method".into(), "full".into()]),
    }
    if spec.resources.gpus_per_worker == 0 {
        a.extend(["--device".into(), "cpu".into()]);
    }
    a
}

/// `modelcommons-trainer eval`'s command line for the evaluation of a FineTuneJob's output
/// against its base model on the held-out split of the Datanet version at `dataset_uri`.
pub fn eval_args(spec: &FineTuneJobSpec, dataset_uri: &str) -> Vec<String> {
    let path = |u: &str| container_path(u).unwrap_or_default();
    let mut a = vec![
        "eval".to_string(),
        "--model".into(),
        path(&spec.output_uri),
        "--baseline".into(),
        path(&spec.base_model.uri),
        "--data".into(),
        format!("{}/{HOLDOUT_FILE}", path(dataset_uri)),
        "--max-seq-len".into(),
        spec.hyperparameters.max_seq_len.to_string(),
        "--out".into(),
        EVAL_RESULT_FILE.into(),
    ];
    if spec.resources.gpus_per_worker == 0 {
        a.extend(["--device".into(), "cpu".into()]);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_map_to_container_paths() {
        assert_eq!(container_path("file:///data/x").as_deref(), Some("/data/x"));
        assert_eq!(
            container_path("pvc://models/tiny").as_deref(),
            Some("/mnt/pvc/models/tiny")
        );
        assert_eq!(
            container_path("pvc://models").as_deref(),
            Some("/mnt/pvc/models")
        );
        assert_eq!(container_path("file://relative"), None);
        assert_eq!(container_path("s3://bucket/x"), None);
        assert_eq!(container_path("pvc:///x"), None);
    }
}
