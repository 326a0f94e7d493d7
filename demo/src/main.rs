//! `make demo`: the whole lifecycle on this machine, live.
//!
//! Starts a local Kubernetes control plane (kwok nodes) and an anvil chain, deploys the
//! contracts, starts the operator, applies `examples/contract-review`, and then plays everyone
//! who is not the operator: the token holders (delegate, vote), the proposer (approves the
//! stake) and — clearly labelled — a node's kubelet, by running the real `curate`, trainer and
//! `serve` binaries as local processes with our pods' args and env. A table of the lifecycle
//! updates as phases change; the demo ends with a chat completion answered by the deployed
//! model through its endpoint with an API key. `--exit` (non-interactive, what the test runs)
//! stops there; otherwise everything keeps running until Ctrl-C, and the demo cleans up.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use alloy::primitives::U256;
use alloy::signers::local::PrivateKeySigner;
use anyhow::{Context as _, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use modelcommons_crds::datanet::Datanet;
use modelcommons_crds::deployment::ModelDeployment;
use modelcommons_crds::finetune::FineTuneJob;
use modelcommons_crds::proposal::ModelProposal;
use modelcommons_operator::ledger::Ledger;
use modelcommons_operator::ledger::bindings::{GovToken, ModelGovernor, OpenToken};
use modelcommons_operator::ledger::suite::SuiteParams;
use modelcommons_testbed::{
    Anvil, ControlPlane, ControlPlaneOptions, DEV_KEYS, install_crds, workspace_binary,
    workspace_root,
};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

const NS: &str = "contract-review";
/// The operator's trusted namespace: its curation and evaluation Jobs run here, out of the
/// tenant's reach.
const TRUSTED_NS: &str = "modelcommons-system";
const FIELD_MANAGER: &str = "modelcommons.dev/demo";
const VOTERS: [usize; 3] = [2, 3, 4];
const PROPOSER: usize = 1;

fn say(what: &str) {
    println!("\n\x1b[1m==> {what}\x1b[0m");
}

fn kubelet(what: &str) {
    println!("    [kubelet stand-in] {what}");
}

fn open(n: u64) -> U256 {
    modelcommons_operator::ledger::units::open(n)
}

fn example(file: &str) -> anyhow::Result<Vec<Value>> {
    let path = workspace_root().join("examples/contract-review").join(file);
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    let mut out = vec![];
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let v: Value = serde::Deserialize::deserialize(doc)?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

async fn apply(client: &Client, v: &Value) -> anyhow::Result<()> {
    let gvk = (
        v["apiVersion"].as_str().unwrap_or_default(),
        v["kind"].as_str().unwrap_or_default(),
    );
    let name = v["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let (ar, namespaced) = match gvk {
        ("v1", "Namespace") => (
            kube::core::ApiResource::erase::<k8s_openapi::api::core::v1::Namespace>(&()),
            false,
        ),
        ("v1", "ConfigMap") => (kube::core::ApiResource::erase::<ConfigMap>(&()), true),
        ("v1", "Secret") => (kube::core::ApiResource::erase::<Secret>(&()), true),
        (_, "ModelProposal") => (kube::core::ApiResource::erase::<ModelProposal>(&()), true),
        (_, "Datanet") => (kube::core::ApiResource::erase::<Datanet>(&()), true),
        (_, "FineTuneJob") => (kube::core::ApiResource::erase::<FineTuneJob>(&()), true),
        (_, "ModelDeployment") => (kube::core::ApiResource::erase::<ModelDeployment>(&()), true),
        other => bail!("the demo does not apply {other:?}"),
    };
    let api: Api<kube::api::DynamicObject> = if namespaced {
        Api::namespaced_with(client.clone(), NS, &ar)
    } else {
        Api::all_with(client.clone(), &ar)
    };
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(v),
    )
    .await
    .with_context(|| format!("applying {} {name}", gvk.1))?;
    println!("    applied {} {name}", gvk.1);
    Ok(())
}

/// A table row: kind, name, phase, and the Ready reason.
type Row = (String, String, String, String);

/// The rows of one kind: each object's phase and Ready reason, read from its status as JSON.
async fn rows_of<K>(client: &Client) -> Vec<Row>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let Ok(list) = Api::<K>::namespaced(client.clone(), NS)
        .list(&ListParams::default())
        .await
    else {
        return vec![];
    };
    list.items
        .into_iter()
        .map(|o| {
            let s = serde_json::to_value(&o).unwrap_or_default()["status"].clone();
            let reason = s["conditions"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
                .and_then(|c| c["reason"].as_str())
                .unwrap_or("")
                .to_string();
            (
                K::kind(&()).into_owned(),
                o.name_any(),
                s["phase"].as_str().unwrap_or("-").to_string(),
                reason,
            )
        })
        .collect()
}

/// One row per object of the lifecycle.
async fn table(client: &Client) -> Vec<Row> {
    let mut rows = rows_of::<ModelProposal>(client).await;
    rows.extend(rows_of::<Datanet>(client).await);
    rows.extend(rows_of::<FineTuneJob>(client).await);
    rows.extend(rows_of::<ModelDeployment>(client).await);
    rows
}

fn print_table(rows: &[Row]) {
    println!("    {:<16} {:<22} {:<14} REASON", "KIND", "NAME", "PHASE");
    for (k, n, p, r) in rows {
        println!("    {k:<16} {n:<22} {p:<14} {r}");
    }
}

/// Prints the table whenever it changes until `done` holds for it, or fails after `limit`.
async fn watch_until(
    client: &Client,
    last: &mut Vec<Row>,
    what: &str,
    limit: Duration,
    done: impl Fn(&[Row]) -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let rows = table(client).await;
        if rows != *last {
            print_table(&rows);
            *last = rows.clone();
        }
        if done(&rows) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn phase_of(rows: &[Row], kind: &str) -> String {
    rows.iter()
        .find(|r| r.0 == kind)
        .map(|r| r.2.clone())
        .unwrap_or_default()
}

/// Runs one pod's container as a local process: args with mount paths replaced, env values.
async fn run_container(
    binary: &Path,
    c: &k8s_openapi::api::core::v1::Container,
    mounts: &BTreeMap<String, PathBuf>,
    extra: &[String],
) -> anyhow::Result<String> {
    let args: Vec<String> = c
        .args
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|a| {
            mounts.iter().fold(a, |a, (from, to)| {
                a.replace(from.as_str(), to.to_str().unwrap_or_default())
            })
        })
        .collect();
    let mut cmd = tokio::process::Command::new(binary);
    cmd.args(&args)
        .args(extra)
        .env("MODELCOMMONS_REPORT_INTERVAL_SECONDS", "1");
    for e in c.env.clone().unwrap_or_default() {
        if let Some(v) = e.value {
            cmd.env(e.name, v);
        }
    }
    let out = cmd.output().await?;
    if !out.status.success() {
        bail!(
            "{}: {}",
            binary.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

struct Demo {
    dir: PathBuf,
    client: Client,
    kubeconfig: PathBuf,
    done_jobs: std::collections::BTreeSet<String>,
}

impl Demo {
    /// Where a `pvc://claim/…` volume lives on this machine.
    fn pvc_root(&self) -> PathBuf {
        self.dir.join("pvc")
    }

    /// Plays the kubelet for every Job of ours whose pod kwok has "run": curation and training.
    async fn run_jobs(&mut self) -> anyhow::Result<()> {
        let mut jobs = Api::<Job>::namespaced(self.client.clone(), NS)
            .list(&ListParams::default().labels("modelcommons.dev/instance"))
            .await?
            .items;
        // Curation runs in the operator's trusted namespace.
        jobs.extend(
            Api::<Job>::namespaced(self.client.clone(), TRUSTED_NS)
                .list(&ListParams::default().labels("app.kubernetes.io/name=modelcommons-curation"))
                .await?
                .items,
        );
        for job in jobs {
            let name = job.name_any();
            let job_ns = job.namespace().unwrap_or_else(|| NS.to_string());
            if self.done_jobs.contains(&name)
                || job.spec.as_ref().and_then(|s| s.suspend) == Some(true)
            {
                continue;
            }
            let spec = job
                .spec
                .clone()
                .unwrap_or_default()
                .template
                .spec
                .unwrap_or_default();
            let c = &spec.containers[0];
            let mut mounts = BTreeMap::new();
            mounts.insert("/mnt/pvc".to_string(), self.pvc_root());
            let args = c.args.clone().unwrap_or_default();
            if args.first().map(String::as_str) == Some("curate") {
                kubelet(&format!(
                    "runs the curation pod of Job {job_ns}/{name}: modelcommons-operator curate"
                ));
                // The pod's filesystem: its ConfigMap volume at its mount path, and the
                // example's contributions where their file:///data/contributions/… URIs point.
                let root = self.dir.join("node-root").join(&name);
                for v in spec.volumes.clone().unwrap_or_default() {
                    let Some(cm) = v.config_map else { continue };
                    let data = Api::<ConfigMap>::namespaced(self.client.clone(), &job_ns)
                        .get(&cm.name)
                        .await?
                        .data
                        .unwrap_or_default();
                    let mount = c
                        .volume_mounts
                        .clone()
                        .unwrap_or_default()
                        .into_iter()
                        .find(|m| m.name == v.name);
                    if let Some(m) = mount {
                        let at = root.join(m.mount_path.trim_start_matches('/'));
                        std::fs::create_dir_all(&at)?;
                        for (k, t) in data {
                            std::fs::write(at.join(k), t)?;
                        }
                    }
                }
                let contributions = root.join("data/contributions");
                std::fs::create_dir_all(&contributions)?;
                let src = workspace_root().join("examples/contract-review/data/contributions");
                for f in std::fs::read_dir(&src)? {
                    let f = f?;
                    std::fs::copy(f.path(), contributions.join(f.file_name()))?;
                }
                let result = root.join("termination-log");
                let extra = vec![
                    "--result-file".to_string(),
                    result.display().to_string(),
                    "--data-root".into(),
                    root.display().to_string(),
                ];
                let out = run_container(
                    &workspace_binary("modelcommons-operator"),
                    c,
                    &mounts,
                    &extra,
                )
                .await?;
                println!("    {}", out.trim());
                self.report_termination(
                    &job_ns,
                    &name,
                    &c.name,
                    &std::fs::read_to_string(&result)?,
                )
                .await?;
            } else if args.first().map(String::as_str) == Some("train") {
                kubelet(&format!(
                    "runs the trainer pod of Job {name}: modelcommons-trainer train (CPU)"
                ));
                let mut c = c.clone();
                // `--device cpu`: this machine's stand-in node has no GPU.
                c.args = Some(
                    args.into_iter()
                        .chain(["--device".into(), "cpu".into()])
                        .collect(),
                );
                let mut env = c.env.clone().unwrap_or_default();
                env.push(k8s_openapi::api::core::v1::EnvVar {
                    name: "KUBECONFIG".into(),
                    value: Some(self.kubeconfig.display().to_string()),
                    ..Default::default()
                });
                c.env = Some(env);
                run_container(&workspace_binary("modelcommons-trainer"), &c, &mounts, &[]).await?;
            } else {
                continue;
            }
            self.done_jobs.insert(name);
        }
        // The operator's evaluations, in its trusted namespace.
        let evals = Api::<Job>::namespaced(self.client.clone(), TRUSTED_NS)
            .list(&ListParams::default().labels("app.kubernetes.io/name=modelcommons-evaluation"))
            .await?;
        for job in evals.items {
            let name = job.name_any();
            if self.done_jobs.contains(&name) {
                continue;
            }
            let spec = job
                .spec
                .clone()
                .unwrap_or_default()
                .template
                .spec
                .unwrap_or_default();
            let c = &spec.containers[0];
            kubelet(&format!(
                "runs the operator's evaluation pod of Job {TRUSTED_NS}/{name}: modelcommons-trainer eval on the held-out records (CPU)"
            ));
            let result = self.dir.join(format!("{name}.termination-log"));
            let mut c = c.clone();
            c.args = Some(
                c.args
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|a| a.replace("/dev/termination-log", &result.display().to_string()))
                    .collect(),
            );
            let mut mounts = BTreeMap::new();
            mounts.insert("/mnt/pvc".to_string(), self.pvc_root());
            run_container(&workspace_binary("modelcommons-trainer"), &c, &mounts, &[]).await?;
            let message = std::fs::read_to_string(&result)?;
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&message) {
                let m = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
                println!(
                    "    held-out records: {}; base model loss {:.3}, exactMatch {:.3}; trained loss {:.3}, exactMatch {:.3} (rubric: loss <= 2.5, exactMatch >= 0.6)",
                    v["examples"],
                    m(&v["baseline"]["metrics"], "loss"),
                    m(&v["baseline"]["metrics"], "exactMatch"),
                    m(&v["metrics"], "loss"),
                    m(&v["metrics"], "exactMatch"),
                );
            }
            self.report_termination(TRUSTED_NS, &name, &c.name, &message)
                .await?;
            self.done_jobs.insert(name);
        }
        Ok(())
    }

    /// What a kubelet reports when a container ends: its termination message.
    async fn report_termination(
        &self,
        ns: &str,
        job: &str,
        container: &str,
        message: &str,
    ) -> anyhow::Result<()> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let deadline = Instant::now() + Duration::from_secs(60);
        let pod = loop {
            let l = pods
                .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
                .await?;
            if let Some(p) = l
                .items
                .into_iter()
                .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded"))
            {
                break p;
            }
            if Instant::now() > deadline {
                bail!("the pod of Job {job} never completed");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let status = json!({"status": {"containerStatuses": [{"name": container, "image": "", "imageID": "",
            "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "reason": "Completed", "message": message}}}]}});
        pods.patch_status(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Strategic(status),
        )
        .await?;
        Ok(())
    }

    /// Plays the kubelet for the server Deployment: `serve` with the pod's args, the API-key
    /// Secret as files, a local port. Returns the process and its address.
    async fn serve(&self, name: &str) -> anyhow::Result<(tokio::process::Child, String)> {
        let d = Api::<Deployment>::namespaced(self.client.clone(), NS)
            .get(name)
            .await?;
        let c = d
            .spec
            .and_then(|s| s.template.spec)
            .context("no pod spec")?
            .containers[0]
            .clone();
        let keys = self.dir.join("api-keys");
        std::fs::create_dir_all(&keys)?;
        let secret = Api::<Secret>::namespaced(self.client.clone(), NS)
            .get("clause-review-api-keys")
            .await?;
        for (k, v) in secret.data.unwrap_or_default() {
            std::fs::write(keys.join(k), v.0)?;
        }
        let args: Vec<String> = c
            .args
            .unwrap_or_default()
            .into_iter()
            .map(|a| {
                if a == modelcommons_operator::controller::deployment::KEYS_DIR {
                    keys.display().to_string()
                } else if a.starts_with("0.0.0.0:") {
                    "127.0.0.1:0".into()
                } else {
                    a.replace("/mnt/pvc", self.pvc_root().to_str().unwrap_or_default())
                }
            })
            .collect();
        kubelet(&format!(
            "runs a server pod of Deployment {name}: modelcommons-trainer serve"
        ));
        let mut child = tokio::process::Command::new(workspace_binary("modelcommons-trainer"))
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let mut lines = tokio::io::BufReader::new(child.stdout.take().context("stdout")?).lines();
        let addr = loop {
            let Some(l) = lines.next_line().await? else {
                bail!("the server exited")
            };
            if let Some(a) = l.strip_prefix("listening on ") {
                break a.trim().to_string();
            }
        };
        Ok((child, addr))
    }
}

/// A plain HTTP/1.1 POST (the demo needs one request).
async fn post(addr: &str, path: &str, key: &str, body: &Value) -> anyhow::Result<(u16, String)> {
    let body = body.to_string();
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).await?;
    let code = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let exit = std::env::args().any(|a| a == "--exit");
    let started = Instant::now();
    let dir = std::env::var_os("MODELCOMMONS_DEMO_DIR")
        .map_or_else(|| workspace_root().join(".tmp/demo"), PathBuf::from);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;

    say(
        "starting a Kubernetes control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok GPU nodes) and an anvil chain",
    );
    let plane = ControlPlane::start(ControlPlaneOptions {
        dir: Some(dir.join("cluster")),
        ..Default::default()
    })
    .await?;
    let anvil = Anvil::start()?;
    let client = plane.client().await?;
    let kubeconfig = plane.kubeconfig().to_path_buf();
    println!("    kubeconfig: {}", kubeconfig.display());
    println!("    chain:      {}", anvil.endpoint());

    say(
        "deploying the contracts (OPEN, gOPEN, Governor + timelock, registry, rewards, validator pool)",
    );
    let operator_key = DEV_KEYS[0];
    let ledger = Ledger::connect(&anvil.endpoint(), operator_key)?;
    let suite = ledger.bootstrap(&SuiteParams::default()).await?;
    std::fs::write(
        dir.join("addresses.json"),
        serde_json::to_string_pretty(&suite)?,
    )?;
    std::fs::write(dir.join("operator.key"), operator_key)?;
    println!(
        "    registry {}  governor {}  distributor {}",
        suite.registry, suite.governor, suite.distributor
    );

    say("token holders wrap OPEN into gOPEN and delegate their votes (accounts 2, 3, 4)");
    for v in VOTERS {
        let key: PrivateKeySigner = DEV_KEYS[v].parse()?;
        ledger
            .fund_open(&suite, key.address(), U256::from(1_000u64))
            .await?;
        let l = Ledger::connect(&anvil.endpoint(), DEV_KEYS[v])?;
        OpenToken::new(suite.open, l.provider())
            .approve(suite.gov_token, open(1_000))
            .send()
            .await?
            .watch()
            .await?;
        let g = GovToken::new(suite.gov_token, l.provider());
        g.depositFor(key.address(), open(1_000))
            .send()
            .await?
            .watch()
            .await?;
        g.delegate(key.address()).send().await?.watch().await?;
        println!(
            "    {} holds 1000 gOPEN, delegated to itself",
            key.address()
        );
    }

    say("installing the CRDs and starting the operator (leader election, chain configured)");
    install_crds(&client, &modelcommons_crds::all_crds()).await?;
    apply(
        &client,
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": TRUSTED_NS}}),
    )
    .await?;
    let log = std::fs::File::create(dir.join("operator.log"))?;
    let mut operator = tokio::process::Command::new(workspace_binary("modelcommons-operator"))
        .args([
            "run",
            "--namespace",
            NS,
            "--lease-namespace",
            NS,
            "--metrics-addr",
            "127.0.0.1:0",
            "--recheck-seconds",
            "1",
            "--trusted-namespace",
            TRUSTED_NS,
        ])
        .args(["--ledger-rpc-url", &anvil.endpoint()])
        .arg("--ledger-key-file")
        .arg(dir.join("operator.key"))
        .arg("--ledger-addresses-file")
        .arg(dir.join("addresses.json"))
        .arg("--artifact-store")
        .arg(format!("file://{}", dir.join("store").display()))
        // Dev host directories on this one machine: the example's contributions
        // (file:///data/contributions/… in the pods' sandboxes) and the models.
        .args(["--dev-host-dir", "/data/contributions"])
        .arg("--dev-host-dir")
        .arg(dir.join("pvc").join("models"))
        .env("KUBECONFIG", &kubeconfig)
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()?;
    println!("    log: {}", dir.join("operator.log").display());

    let mut demo = Demo {
        dir: dir.clone(),
        client: client.clone(),
        kubeconfig: kubeconfig.clone(),
        done_jobs: Default::default(),
    };
    say(
        "the base model: modelcommons-trainer init --seed 7 (the example's pvc://models/tiny-llama)",
    );
    let base = demo.pvc_root().join("models/tiny-llama");
    let out = std::process::Command::new(workspace_binary("modelcommons-trainer"))
        .args([
            "init",
            "--out",
            base.to_str().unwrap_or_default(),
            "--seed",
            "7",
        ])
        .output()?;
    if !out.status.success() {
        bail!("trainer init: {}", String::from_utf8_lossy(&out.stderr));
    }

    say("kubectl apply -f examples/contract-review (namespace, proposal, contributions, Datanet)");
    for f in [
        "00-namespace.yaml",
        "01-proposal.yaml",
        "02-contributions.yaml",
        "03-datanet.yaml",
    ] {
        for v in example(f)? {
            apply(&client, &v).await?;
        }
    }
    let mut last = vec![];
    watch_until(
        &client,
        &mut last,
        "the proposal to wait for its stake",
        Duration::from_secs(60),
        |r| phase_of(r, "ModelProposal") == "Pending",
    )
    .await?;

    say("the proposer approves the registry for the 1000 OPEN stake (account 1)");
    let proposer = Ledger::connect(&anvil.endpoint(), DEV_KEYS[PROPOSER])?;
    ledger
        .fund_open(&suite, proposer.address(), U256::from(1_000u64))
        .await?;
    OpenToken::new(suite.open, proposer.provider())
        .approve(suite.registry, open(1_000))
        .send()
        .await?
        .watch()
        .await?;
    say(
        "the proposer authorizes the stake for exactly this spec with its own key (modelcommons stake authorize): the operator cannot stake anyone's tokens without it",
    );
    let mps = Api::<ModelProposal>::namespaced(client.clone(), NS);
    let mp = mps.get("clause-review").await?;
    let hash = modelcommons_operator::controller::proposal::spec_hash(&mp.spec);
    let budget = modelcommons_operator::controller::proposal::reward_budget(&mp.spec)
        .context("rewardBudget")?;
    let key: alloy::signers::local::PrivateKeySigner = DEV_KEYS[PROPOSER].parse()?;
    let now = alloy::providers::Provider::get_block_by_number(
        proposer.provider(),
        alloy::eips::BlockNumberOrTag::Latest,
    )
    .await?
    .map(|b| b.header.timestamp)
    .context("no block")?;
    let (nonce, deadline) = (1u64, now + 86_400);
    let terms = modelcommons_operator::ledger::proposal::StakeTerms {
        spec_hash: hash,
        stake: open(1_000),
        reward_budget: budget,
        nonce: U256::from(nonce),
        deadline: U256::from(deadline),
    };
    let signature = proposer
        .sign_stake_authorization(&suite, &key, &terms)
        .await?;
    mps.patch(
        "clause-review",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"spec": {"stakeAuthorization":
            {"signature": signature, "deadline": deadline, "nonce": nonce}}})),
    )
    .await?;
    watch_until(
        &client,
        &mut last,
        "the vote to open",
        Duration::from_secs(60),
        |r| phase_of(r, "ModelProposal") == "Voting",
    )
    .await?;

    say("token holders vote: two for, one against");
    let p = Api::<ModelProposal>::namespaced(client.clone(), NS)
        .get("clause-review")
        .await?;
    let pid: U256 = p
        .status
        .and_then(|s| s.chain)
        .and_then(|c| c.proposal_id)
        .context("no proposal id")?
        .parse()?;
    let params = SuiteParams::default();
    anvil.rpc(
        "anvil_mine",
        json!([format!("{:#x}", params.voting_delay_blocks + 1)]),
    )?;
    for (v, support) in [(VOTERS[0], 1u8), (VOTERS[1], 1), (VOTERS[2], 0)] {
        let l = Ledger::connect(&anvil.endpoint(), DEV_KEYS[v])?;
        ModelGovernor::new(suite.governor, l.provider())
            .castVote(pid, support)
            .send()
            .await?
            .watch()
            .await?;
        println!(
            "    {} votes {}",
            l.address(),
            if support == 1 { "for" } else { "against" }
        );
    }
    say(
        "the voting period ends (blocks mined) and the timelock delay passes (chain time advanced)",
    );
    anvil.rpc(
        "anvil_mine",
        json!([format!("{:#x}", u64::from(params.voting_period_blocks) + 1)]),
    )?;
    watch_until(
        &client,
        &mut last,
        "the passed vote to be queued",
        Duration::from_secs(60),
        |r| {
            r.iter()
                .any(|x| x.0 == "ModelProposal" && x.3 == "AwaitingTimelock")
        },
    )
    .await?;
    anvil.rpc(
        "evm_increaseTime",
        json!([params.timelock_delay_seconds + 1]),
    )?;
    anvil.rpc("anvil_mine", json!(["0x1"]))?;

    say("curation: the operator runs a Job of its own image; the stand-in node runs it");
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        demo.run_jobs().await?;
        let rows = table(&client).await;
        if rows != last {
            print_table(&rows);
            last = rows.clone();
        }
        if phase_of(&rows, "Datanet") == "Ready" {
            break;
        }
        if Instant::now() > deadline {
            bail!("the Datanet did not become Ready");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    say(
        "fine-tuning: kubectl apply -f 04-finetune.yaml (demo: one CPU worker, full fine-tuning of the tiny random base for 300 steps, host paths instead of the models PVC, no Kueue queue); judged by the operator's evaluation on held-out records against the proposal's rubric",
    );
    for mut v in example("04-finetune.yaml")? {
        v["spec"]["resources"] =
            json!({"workers": 1, "gpusPerWorker": 1, "cpu": "2", "memory": "2Gi"});
        // A LoRA of a random base learns nothing: the tiny base is trained in full.
        v["spec"]["method"] = json!({"type": "Full"});
        v["spec"]["hyperparameters"] = json!({"epochs": 1, "maxSteps": 300, "learningRate": "0.003",
            "batchSize": 16, "gradientAccumulationSteps": 1, "warmupSteps": 10, "maxSeqLen": 512, "seed": 42});
        v["spec"]["checkpointing"] = json!({"everySteps": 100, "keep": 1});
        // No volume provisioner on kwok nodes: the model directories are host paths.
        let models = demo.pvc_root().join("models");
        v["spec"]["baseModel"]["uri"] =
            json!(format!("file://{}", models.join("tiny-llama").display()));
        v["spec"]["outputUri"] = json!(format!(
            "file://{}",
            models.join("clause-review-lora").display()
        ));
        // The example's own target (loss <= 2.0) tightens the rubric's loss <= 2.5.
        v["spec"]["runPolicy"] = json!({"backoffLimit": 1});
        apply(&client, &v).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        demo.run_jobs().await?;
        let rows = table(&client).await;
        if rows != last {
            print_table(&rows);
            last = rows.clone();
        }
        match phase_of(&rows, "FineTuneJob").as_str() {
            "Succeeded" => break,
            "TargetsMissed" | "Failed" => {
                bail!("the FineTuneJob ended {}", phase_of(&rows, "FineTuneJob"))
            }
            _ => {}
        }
        if Instant::now() > deadline {
            bail!("the FineTuneJob did not finish");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    say(
        "serving: kubectl apply -f 06-deployment.yaml (demo: the fine-tuned model; RLHF rounds are not built yet)",
    );
    for mut v in example("06-deployment.yaml")? {
        if v["kind"] == "ModelDeployment" {
            v["spec"]["modelRef"] = json!({"fineTuneJob": "clause-review-lora"});
            v["spec"]["resources"] = json!({"gpus": 0, "cpu": "2", "memory": "2Gi"});
        }
        apply(&client, &v).await?;
    }
    watch_until(
        &client,
        &mut last,
        "the ModelDeployment to be Ready",
        Duration::from_secs(120),
        |r| phase_of(r, "ModelDeployment") == "Ready",
    )
    .await?;
    let (mut server, addr) = demo.serve("clause-review").await?;

    say("a chat completion through the endpoint, with the legal-ops-agent's API key");
    let ask = json!({"model": "clause-review", "max_tokens": 24, "temperature": 0,
        "messages": [{"role": "user", "content": "Review this clause: \"The supplier's liability is unlimited.\""}]});
    let deadline = Instant::now() + Duration::from_secs(60);
    let (code, body) = loop {
        let r = post(
            &addr,
            "/v1/chat/completions",
            "mc-dev-legal-ops-7f3a9c",
            &ask,
        )
        .await?;
        if r.0 != 503 || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let reply: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    if code != 200 {
        bail!("the endpoint answered {code}: {body}");
    }
    println!(
        "    HTTP {code}: {}",
        reply["choices"][0]["message"]["content"]
    );
    println!("    usage: {}", reply["usage"]);
    println!(
        "    (a 32K-parameter model trained for six steps: the words are noise, the path is real)"
    );

    say(&format!("done in {:.0} s", started.elapsed().as_secs_f64()));
    println!("    export KUBECONFIG={}", kubeconfig.display());
    println!("    kubectl get modelcommons -n {NS}");
    println!("    kubectl describe modelproposal clause-review -n {NS}");
    println!("    kubectl get events -n {NS} --sort-by=.lastTimestamp");
    println!(
        "    chain RPC: {}   contracts: {}",
        anvil.endpoint(),
        dir.join("addresses.json").display()
    );
    if !exit {
        println!("\n    everything keeps running; Ctrl-C stops it and cleans up");
        tokio::signal::ctrl_c().await?;
    }
    say("cleaning up");
    server.kill().await.ok();
    operator.kill().await.ok();
    drop(anvil);
    plane.stop();
    Ok(())
}
