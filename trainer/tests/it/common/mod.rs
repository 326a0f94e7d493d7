//! Shared helpers of the trainer's integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};

/// The Python with torch 2.13.0 + transformers (`hack/pyenv.sh`; `MODELCOMMONS_PYTHON` wins).
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("MODELCOMMONS_PYTHON") {
        return PathBuf::from(p);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hack/pyenv.sh");
    let out = std::process::Command::new("bash")
        .arg(script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "hack/pyenv.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// `trainer/py/reference.py`.
pub fn reference_py() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("py/reference.py")
}

/// The trainer binary.
pub fn trainer() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_modelcommons-trainer"))
}

/// A small learnable task: label a contract clause `high` or `low` risk by the keyword hidden
/// among filler words. Held-out examples are new word combinations.
pub fn risk_task(seed: u64, n: usize) -> Vec<serde_json::Value> {
    use modelcommons_trainer::model::generate::Rng;
    let high = ["indemnify", "unlimited", "penalty"];
    let low = ["notice", "courtesy", "summary"];
    let fill: Vec<&str> = "the party shall provide a written within days of any each other and to for under this agreement"
        .split(' ')
        .collect();
    let mut rng = Rng::new(seed);
    let mut pick = |k: usize| (rng.next_u64() % k as u64) as usize;
    (0..n)
        .map(|_| {
            let (label, words) = if pick(2) == 0 { ("high", &high) } else { ("low", &low) };
            let mut clause: Vec<&str> = (0..5).map(|_| fill[pick(fill.len())]).collect();
            clause.insert(pick(6), words[pick(3)]);
            serde_json::json!({"prompt": format!("Clause: {}\nRisk:", clause.join(" ")), "completion": format!(" {label}")})
        })
        .collect()
}

/// Writes JSON lines.
pub fn write_jsonl(path: &Path, rows: &[serde_json::Value]) {
    let text: Vec<String> = rows.iter().map(|r| r.to_string()).collect();
    std::fs::write(path, text.join("\n") + "\n").unwrap();
}

/// A tiny base model, training and held-out data in a temp dir.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        // Weights drawn wider than `init`'s default 0.02: with a frozen final norm and lm_head
        // (LoRA, DPO's reference), N(0, 0.02) bounds every logit near ±1.3, too tight to learn.
        modelcommons_trainer::model::init::TinyLlama {
            init_std: 0.1,
            ..Default::default()
        }
        .write(&dir.path().join("base"), 7)
        .unwrap();
        write_jsonl(&dir.path().join("train.jsonl"), &risk_task(1, 400));
        write_jsonl(&dir.path().join("eval.jsonl"), &risk_task(2, 40));
        Self { dir }
    }
    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    /// `train` flags for this workspace writing to `out`.
    pub fn train_args(&self, out: &str) -> Vec<String> {
        [
            "train",
            "--model",
            self.path("base").to_str().unwrap(),
            "--data",
            self.path("train.jsonl").to_str().unwrap(),
            "--eval-data",
            self.path("eval.jsonl").to_str().unwrap(),
            "--out",
            self.path(out).to_str().unwrap(),
            "--batch-size",
            "16",
            "--warmup-steps",
            "10",
            "--device",
            "cpu",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }
}

/// Runs the trainer to completion; panics with its stderr on failure.
pub fn run_ok(args: &[String]) -> std::process::Output {
    let out = trainer().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "trainer {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Reads a JSON file.
pub fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}
