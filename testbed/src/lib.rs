//! The real test bed of modelcommons.
//!
//! Every claim the operator makes ("reconciles", "gates", "garbage-collects") is proven against
//! real parts started here on loopback, never against mocks:
//!
//! - [`ControlPlane`]: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok
//!   (fake nodes with real pod lifecycles), built from the Go module proxy by
//!   `hack/controlplane/build.sh` and cached by version outside the clone. Several can run at
//!   once, each on its own free ports and in its own temporary directory, removed on drop.
//! - [`Anvil`]: a local EVM chain from npm `@foundry-rs/anvil-linux-amd64`.
//! - [`TestNamespace`]: a random namespace per test (linkerd's `with_temp_ns`).
//! - [`chain::Chain`]: the contract suite bootstrapped on a fresh anvil, and dev accounts'
//!   actions on it (stake, vote, queue and execute).
//!
//! Tests use [`cluster`]: it connects to the shared control plane that `make test` started
//! (`MODELCOMMONS_TEST_KUBECONFIG`), or starts a private one when run by plain `cargo test`.

mod anvil;
pub mod chain;
mod controlplane;
mod crds;
mod namespace;
mod paths;
mod pki;
mod process;

pub use anvil::{Anvil, CHAIN_ID, DEV_KEYS};
pub use controlplane::{ControlPlane, ControlPlaneOptions, FakeNode, KUBECONFIG_ENV};
pub use crds::{CRD_MANAGER, install_crds};
pub use namespace::TestNamespace;
pub use paths::{anvil_binary, controlplane_bin_dir, workspace_binary, workspace_root};

/// Errors of the test bed. Messages name what was expected, what happened and where the
/// component's log is, so a failed start can be diagnosed from the test output alone.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Setup(String),
    #[error("{component} did not become ready within {seconds}s; last lines of {log}:\n{tail}")]
    NotReady {
        component: &'static str,
        seconds: u64,
        log: String,
        tail: String,
    },
    #[error("{component} exited early ({status}); last lines of {log}:\n{tail}")]
    Exited {
        component: &'static str,
        status: String,
        log: String,
        tail: String,
    },
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),
}

/// Result with the test bed's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A handle on a control plane for one test: either the shared one started by `make test`
/// or a private one owned by this handle (and stopped when it is dropped).
#[derive(Debug)]
pub struct Cluster {
    kubeconfig: std::path::PathBuf,
    _owned: Option<ControlPlane>,
}

impl Cluster {
    /// The kubeconfig path (admin access) of this control plane.
    pub fn kubeconfig(&self) -> &std::path::Path {
        &self.kubeconfig
    }

    /// A kube client with admin access.
    pub async fn client(&self) -> Result<kube::Client> {
        controlplane::client_for(&self.kubeconfig).await
    }

    /// `kubectl` (the binary built with the control plane) pointed at this cluster.
    pub fn kubectl(&self) -> Result<std::process::Command> {
        controlplane::kubectl_for(&self.kubeconfig)
    }
}

/// The control plane a test runs against: the shared one when `MODELCOMMONS_TEST_KUBECONFIG`
/// names a kubeconfig (set by `make test`), else a private one started for this test.
pub async fn cluster() -> Result<Cluster> {
    if let Some(path) = std::env::var_os(KUBECONFIG_ENV).filter(|p| !p.is_empty()) {
        return Ok(Cluster {
            kubeconfig: path.into(),
            _owned: None,
        });
    }
    let cp = ControlPlane::start(ControlPlaneOptions::default()).await?;
    Ok(Cluster {
        kubeconfig: cp.kubeconfig().to_path_buf(),
        _owned: Some(cp),
    })
}

/// Logs to stderr for tests and the `testbed` binary (`RUST_LOG` filters, default `info`).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube_client=off")),
        )
        .with_writer(std::io::stderr)
        .try_init();
}
