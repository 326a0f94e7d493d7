//! A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler and kwok, with fake nodes whose pods are scheduled, run and complete.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, ServiceAccount};
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::json;
use tempfile::TempDir;

use crate::paths::controlplane_bin_dir;
use crate::pki::Pki;
use crate::process::{Component, free_port};
use crate::{Error, Result};

/// The environment variable naming a running control plane's kubeconfig; `make test` sets it
/// so that all tests share one control plane (each in its own namespace).
pub const KUBECONFIG_ENV: &str = "MODELCOMMONS_TEST_KUBECONFIG";

/// The annotation kwok selects the nodes it manages by.
const KWOK_NODE_ANNOTATION: &str = "kwok.x-k8s.io/node";

/// A fake node managed by kwok. Capacity is what the scheduler sees; nothing really runs.
#[derive(Debug, Clone)]
pub struct FakeNode {
    pub name: String,
    /// CPU cores, e.g. `"32"`.
    pub cpu: String,
    /// Memory, e.g. `"256Gi"`.
    pub memory: String,
    /// `nvidia.com/gpu` capacity, so GPU-requesting trainer pods can be scheduled.
    pub gpus: u32,
    pub labels: BTreeMap<String, String>,
}

impl FakeNode {
    /// A GPU node like a cloud `8×GPU` machine.
    pub fn gpu(name: &str, gpus: u32) -> Self {
        Self {
            name: name.into(),
            cpu: "64".into(),
            memory: "512Gi".into(),
            gpus,
            labels: BTreeMap::from([("nvidia.com/gpu.present".into(), "true".into())]),
        }
    }

    fn manifest(&self) -> serde_json::Value {
        let mut labels = self.labels.clone();
        labels.insert("type".into(), "kwok".into());
        labels.insert("kubernetes.io/hostname".into(), self.name.clone());
        labels.insert("kubernetes.io/os".into(), "linux".into());
        labels.insert("kubernetes.io/arch".into(), "amd64".into());
        let resources = json!({
            "cpu": self.cpu,
            "memory": self.memory,
            "pods": "110",
            "nvidia.com/gpu": self.gpus.to_string(),
        });
        // Nodes accept status on create; kwok keeps the capacity given here.
        json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": labels,
                "annotations": { KWOK_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0" },
            },
            "status": { "capacity": resources, "allocatable": resources },
        })
    }
}

/// How to start a control plane.
#[derive(Debug, Clone)]
pub struct ControlPlaneOptions {
    /// The fake nodes kwok manages. Default: two GPU nodes with 8 GPUs each.
    pub nodes: Vec<FakeNode>,
    /// Keep state in this directory (created, and removed on stop) instead of a fresh
    /// temporary one. `make cluster-up` uses `.tmp/cluster` so the kubeconfig has a known path.
    pub dir: Option<PathBuf>,
    /// How long each stage may take before the start fails with the component's log.
    pub timeout: Duration,
}

impl Default for ControlPlaneOptions {
    fn default() -> Self {
        Self {
            nodes: vec![
                FakeNode::gpu("kwok-gpu-0", 8),
                FakeNode::gpu("kwok-gpu-1", 8),
            ],
            dir: None,
            timeout: Duration::from_secs(90),
        }
    }
}

#[derive(Debug)]
enum StateDir {
    Temp(TempDir),
    Fixed(PathBuf),
}

impl StateDir {
    fn path(&self) -> &Path {
        match self {
            StateDir::Temp(t) => t.path(),
            StateDir::Fixed(p) => p,
        }
    }
}

/// A running control plane. Stopping (or dropping) it kills every component and removes its
/// data directory.
#[derive(Debug)]
pub struct ControlPlane {
    // Components stop in reverse start order: controllers first, etcd last.
    components: Vec<Component>,
    kubeconfig: PathBuf,
    server: String,
    startup: Duration,
    dir: Option<StateDir>,
}

impl ControlPlane {
    /// Starts a control plane and returns once the API server is ready, every fake node is
    /// `Ready` and the controller manager has created the `default` service account.
    pub async fn start(opts: ControlPlaneOptions) -> Result<Self> {
        let started = Instant::now();
        let bin = controlplane_bin_dir()?;
        let dir = match &opts.dir {
            Some(d) => {
                let _ = std::fs::remove_dir_all(d);
                std::fs::create_dir_all(d).map_err(|source| Error::Io {
                    what: format!("creating {}", d.display()),
                    source,
                })?;
                // Absolute, so the kubeconfig's certificate paths resolve from anywhere.
                let d = std::fs::canonicalize(d).map_err(|source| Error::Io {
                    what: format!("resolving {}", d.display()),
                    source,
                })?;
                StateDir::Fixed(d)
            }
            None => StateDir::Temp(
                tempfile::Builder::new()
                    .prefix("modelcommons-testbed-")
                    .tempdir()
                    .map_err(|source| Error::Io {
                        what: "creating a temporary directory".into(),
                        source,
                    })?,
            ),
        };
        let root = dir.path().to_path_buf();
        let logs = root.join("logs");
        std::fs::create_dir_all(&logs).map_err(|source| Error::Io {
            what: format!("creating {}", logs.display()),
            source,
        })?;
        let pki = Pki::generate(&root.join("pki"))?;
        let (etcd_port, peer_port, api_port) = (free_port()?, free_port()?, free_port()?);
        let server = format!("https://127.0.0.1:{api_port}");
        let kubeconfig = root.join("kubeconfig");
        write_kubeconfig(&kubeconfig, &server, &pki)?;

        let mut cp = ControlPlane {
            components: Vec::new(),
            kubeconfig: kubeconfig.clone(),
            server,
            startup: Duration::ZERO,
            dir: Some(dir),
        };

        let mut etcd = Command::new(bin.join("etcd"));
        etcd.args([
            "--name=testbed".to_string(),
            format!("--data-dir={}", root.join("etcd").display()),
            format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"),
            format!("--advertise-client-urls=http://127.0.0.1:{etcd_port}"),
            format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"),
            format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"),
            format!("--initial-cluster=testbed=http://127.0.0.1:{peer_port}"),
            "--unsafe-no-fsync=true".into(),
            "--log-level=warn".into(),
        ]);
        cp.components.push(Component::spawn("etcd", etcd, &logs)?);

        let mut apiserver = Command::new(bin.join("kube-apiserver"));
        apiserver.args([
            format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={api_port}"),
            format!("--cert-dir={}", root.join("apiserver-certs").display()),
            format!("--tls-cert-file={}", pki.server_crt.display()),
            format!("--tls-private-key-file={}", pki.server_key.display()),
            format!("--client-ca-file={}", pki.ca_crt.display()),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!("--service-account-key-file={}", pki.sa_pub.display()),
            format!(
                "--service-account-signing-key-file={}",
                pki.sa_key.display()
            ),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
            "--authorization-mode=RBAC".into(),
            "--allow-privileged=true".into(),
            "--profiling=false".into(),
            "--endpoint-reconciler-type=none".into(),
        ]);
        cp.components
            .push(Component::spawn("kube-apiserver", apiserver, &logs)?);

        let client = cp.wait_api_ready(opts.timeout).await?;

        let mut kcm = Command::new(bin.join("kube-controller-manager"));
        kcm.args([
            format!("--kubeconfig={}", kubeconfig.display()),
            "--leader-elect=false".into(),
            "--secure-port=0".into(),
            format!(
                "--service-account-private-key-file={}",
                pki.sa_key.display()
            ),
            format!("--root-ca-file={}", pki.ca_crt.display()),
            format!("--cluster-signing-cert-file={}", pki.ca_crt.display()),
            format!("--cluster-signing-key-file={}", pki.ca_key.display()),
            "--use-service-account-credentials=false".into(),
            "--concurrent-gc-syncs=5".into(),
        ]);
        cp.components
            .push(Component::spawn("kube-controller-manager", kcm, &logs)?);

        let mut scheduler = Command::new(bin.join("kube-scheduler"));
        scheduler.args([
            format!("--kubeconfig={}", kubeconfig.display()),
            "--leader-elect=false".into(),
            "--secure-port=0".into(),
        ]);
        cp.components
            .push(Component::spawn("kube-scheduler", scheduler, &logs)?);

        let mut kwok = Command::new(bin.join("kwok"));
        kwok.args([
            format!("--kubeconfig={}", kubeconfig.display()),
            format!("--config={}", bin.join("kwok-stages.yaml").display()),
            "--manage-all-nodes=false".into(),
            format!("--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake"),
            "--node-ip=10.0.1.1".into(),
            "--cidr=10.0.2.0/24".into(),
            "--node-lease-duration-seconds=40".into(),
            format!("--server-address=127.0.0.1:{}", free_port()?),
        ])
        // kwok reads ~/.kwok/kwok.yaml when present; keep it hermetic.
        .env("HOME", &root);
        cp.components.push(Component::spawn("kwok", kwok, &logs)?);

        let nodes: Api<Node> = Api::all(client.clone());
        for n in &opts.nodes {
            let node: Node = serde_json::from_value(n.manifest())
                .map_err(|e| Error::Setup(format!("node manifest: {e}")))?;
            nodes.create(&PostParams::default(), &node).await?;
        }
        cp.wait_until(opts.timeout, "kwok", || {
            let nodes = nodes.clone();
            let want = opts.nodes.len();
            async move {
                let list = nodes.list(&Default::default()).await.ok()?;
                let ready = list.items.iter().filter(|n| node_ready(n)).count();
                (ready >= want).then_some(())
            }
        })
        .await?;
        let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
        cp.wait_until(opts.timeout, "kube-controller-manager", || {
            let sas = sas.clone();
            async move { sas.get_opt("default").await.ok().flatten().map(|_| ()) }
        })
        .await?;
        cp.startup = started.elapsed();
        tracing::info!(server = %cp.server, kubeconfig = %cp.kubeconfig.display(), startup = ?cp.startup, "control plane ready");
        Ok(cp)
    }

    async fn wait_api_ready(&mut self, timeout: Duration) -> Result<Client> {
        let path = self.kubeconfig.clone();
        let client = client_for(&path).await?;
        let c = client.clone();
        self.wait_until(timeout, "kube-apiserver", || {
            let c = c.clone();
            async move {
                let req = http::Request::get("/readyz").body(Vec::new()).ok()?;
                let body = c.request_text(req).await.ok()?;
                (body.trim() == "ok").then_some(())
            }
        })
        .await?;
        Ok(client)
    }

    /// Polls `check` until it answers, failing fast when a component exits and with the
    /// log tail of `component` on timeout.
    async fn wait_until<F, Fut>(
        &mut self,
        timeout: Duration,
        component: &str,
        check: F,
    ) -> Result<()>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Option<()>>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            if check().await.is_some() {
                return Ok(());
            }
            for c in &mut self.components {
                c.check_alive()?;
            }
            if Instant::now() > deadline {
                let c = self
                    .components
                    .iter()
                    .find(|c| c.name == component)
                    .or(self.components.last());
                return Err(match c {
                    Some(c) => c.not_ready(timeout.as_secs()),
                    None => Error::Setup(format!("{component} did not become ready")),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The admin kubeconfig of this control plane.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The API server URL (`https://127.0.0.1:<port>`).
    pub fn server(&self) -> &str {
        &self.server
    }

    /// How long the start took, from the call to every node `Ready`.
    pub fn startup(&self) -> Duration {
        self.startup
    }

    /// The state directory (kubeconfig, certificates, etcd data, component logs).
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_ref().map(StateDir::path)
    }

    /// Process ids of the components, in start order.
    pub fn pids(&self) -> Vec<(&'static str, u32)> {
        self.components.iter().map(|c| (c.name, c.pid())).collect()
    }

    /// A kube client with admin access.
    pub async fn client(&self) -> Result<Client> {
        client_for(&self.kubeconfig).await
    }

    /// `kubectl` pointed at this control plane.
    pub fn kubectl(&self) -> Result<Command> {
        kubectl_for(&self.kubeconfig)
    }

    /// Stops every component (controllers first, etcd last) and removes the state directory.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        while let Some(mut c) = self.components.pop() {
            c.stop();
        }
        if let Some(StateDir::Fixed(p)) = self.dir.take() {
            let _ = std::fs::remove_dir_all(p);
        }
        // A TempDir removes itself when dropped.
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn node_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn write_kubeconfig(path: &Path, server: &str, pki: &Pki) -> Result<()> {
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: testbed\n  cluster:\n    server: {server}\n    \
         certificate-authority: {ca}\nusers:\n- name: admin\n  user:\n    client-certificate: {crt}\n    \
         client-key: {key}\ncontexts:\n- name: testbed\n  context:\n    cluster: testbed\n    user: admin\n\
         current-context: testbed\n",
        ca = pki.ca_crt.display(),
        crt = pki.admin_crt.display(),
        key = pki.admin_key.display(),
    );
    std::fs::write(path, text).map_err(|source| Error::Io {
        what: format!("writing {}", path.display()),
        source,
    })
}

/// A kube client for a kubeconfig file.
pub(crate) async fn client_for(kubeconfig: &Path) -> Result<Client> {
    let kc = Kubeconfig::read_from(kubeconfig).map_err(|e| Error::Kubeconfig(e.to_string()))?;
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|e| Error::Kubeconfig(e.to_string()))?;
    Ok(Client::try_from(config)?)
}

/// `kubectl --kubeconfig <path>` with the kubectl built alongside the control plane.
pub(crate) fn kubectl_for(kubeconfig: &Path) -> Result<Command> {
    let mut cmd = Command::new(controlplane_bin_dir()?.join("kubectl"));
    cmd.arg(format!("--kubeconfig={}", kubeconfig.display()));
    Ok(cmd)
}
