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
