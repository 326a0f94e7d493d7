//! Where the test bed finds its binaries.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::{Error, Result};

/// Overrides the control-plane binary directory (otherwise `hack/controlplane/build.sh`
/// is asked, which builds once and then answers from its cache).
pub const BIN_DIR_ENV: &str = "MODELCOMMONS_CONTROLPLANE_BIN";
/// Overrides the anvil binary (otherwise the one installed by `npm ci` in `contracts/`).
pub const ANVIL_ENV: &str = "MODELCOMMONS_ANVIL";

/// The root of the workspace (the directory holding the top `Cargo.toml`).
pub fn workspace_root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    })
}

/// The directory holding etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
/// kubectl and kwok. Builds them on first use (minutes, once per machine).
pub fn controlplane_bin_dir() -> Result<PathBuf> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os(BIN_DIR_ENV).filter(|d| !d.is_empty()) {
            return Ok(PathBuf::from(dir));
        }
        let script = workspace_root().join("hack/controlplane/build.sh");
        let out = Command::new("bash")
            .arg(&script)
            .stderr(std::process::Stdio::inherit())
            .output()
            .map_err(|e| format!("running {}: {e}", script.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{} failed ({}); it builds the control plane from the Go module proxy and needs Go >= 1.26",
                script.display(),
                out.status
            ));
        }
        let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Ok(PathBuf::from(dir))
    })
    .clone()
    .map_err(Error::Setup)
}

/// The anvil binary from npm `@foundry-rs/anvil-linux-amd64`.
pub fn anvil_binary() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(ANVIL_ENV).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let p = workspace_root().join("contracts/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
    if p.is_file() {
        Ok(p)
    } else {
        Err(Error::Setup(format!(
            "anvil not found at {}: run `npm ci --prefix contracts` (or `make deps`), or set {ANVIL_ENV}",
            p.display()
        )))
    }
}

/// A binary of this workspace's debug build (`$CARGO_TARGET_DIR` or `target/`), for tests that
/// run another crate's binary (e.g. the operator's tests playing the kubelet with the trainer).
/// Panics with the command that builds it when it is missing.
pub fn workspace_binary(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let bin = target.join("debug").join(name);
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --workspace` (make test does)",
        bin.display()
    );
    bin
}
