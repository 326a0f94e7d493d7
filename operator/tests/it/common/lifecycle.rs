//! Helpers of the lifecycle tests: the example objects, a context mirroring to a test chain,
//! waiting for a state, and playing the token holders, the contributors and the kubelet.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, U256};
use alloy::signers::local::PrivateKeySigner;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};
use modelcommons_crds::proposal::{ModelProposal, ModelProposalPhase};
use modelcommons_operator::contribution::{self, Contribution, Manifest, sha256_hex};
use modelcommons_operator::controller::{Config, Context, LedgerHandle};
use modelcommons_operator::ledger::governance::Support;
use modelcommons_testbed::{DEV_KEYS, workspace_root};
use serde_json::json;

use super::{Chain, Mined, OPERATOR, PROPOSER, VOTERS};

pub const TIMEOUT: Duration = Duration::from_secs(120);

/// The operator's trusted namespace in the tests (evaluation Jobs run there), shared by
/// every test: [`trusted`] creates it.
pub const TRUSTED: &str = "modelcommons-trusted";

/// Held by the tests that train for real (300 steps, the rubric met): in one test binary
/// they would otherwise run at once and, on a small machine, each run past the time the
/// operator waits for a finished trainer's report.
pub static FULL_TRAINING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Creates [`TRUSTED`] unless it exists.
pub async fn trusted(client: &kube::Client) {
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let ns = serde_json::from_value(json!({"metadata": {"name": TRUSTED}})).unwrap();
    match api.create(&kube::api::PostParams::default(), &ns).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("creating namespace {TRUSTED}: {e}"),
    }
}

/// Plays the kubelet for the operator's evaluation of FineTuneJob `name`: waits for its Job
/// in the operator's trusted namespace `trusted_ns`, runs the real trainer with the pod's args (the result file redirected
/// here) and reports the result as the pod's termination message. Returns the result.
pub async fn run_evaluation_pod(
    client: &kube::Client,
    ftjs: &Api<modelcommons_crds::finetune::FineTuneJob>,
    name: &str,
    trusted_ns: &str,
) -> serde_json::Value {
    let uid = ftjs.get(name).await.unwrap().metadata.uid.unwrap();
    let jobs: Api<Job> = Api::namespaced(client.clone(), trusted_ns);
    let deadline = Instant::now() + TIMEOUT;
    let job = loop {
        if let Some(j) = jobs.get_opt(&format!("eval-{uid}")).await.unwrap() {
            break j;
        }
        if Instant::now() > deadline {
            let st = ftjs.get(name).await.unwrap().status;
            panic!(
                "no evaluation Job for {name}; its status: {}",
                serde_json::to_string(&st).unwrap()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let dir = tempfile::tempdir().unwrap();
    let result = dir.path().join("termination-log");
    let args: Vec<String> = container(&job)
        .args
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|a| a.replace("/dev/termination-log", result.to_str().unwrap()))
        .collect();
    let out = tokio::process::Command::new(modelcommons_testbed::workspace_binary(
        "modelcommons-trainer",
    ))
    .args(&args)
    .output()
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "evaluation: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let message = std::fs::read_to_string(&result).unwrap();
    report_terminated(client, &job, &message).await;
    serde_json::from_str(&message).unwrap()
}

pub fn example(file: &str, ns: &str) -> serde_json::Value {
    let text =
        std::fs::read_to_string(workspace_root().join("examples/contract-review").join(file))
            .unwrap();
    let mut v: serde_json::Value = serde_yaml::from_str(&text).unwrap();
    v["metadata"]["namespace"] = json!(ns);
    v
}

pub fn context(client: &kube::Client, ns: &str, chain: &Chain, store: &Path) -> Context {
    let config = Config {
        namespace: Some(ns.to_string()),
        recheck: Duration::from_secs(1),
        result_grace: Duration::from_secs(120),
        artifact_store: format!("file://{}", store.display()),
        // The tests' contributions, base models and outputs are files beside the store:
        // the dev host directory.
        dev_host_dirs: vec![store.parent().unwrap().to_path_buf()],
        trusted_namespace: TRUSTED.into(),
        ..Config::default()
    };
    Context::new(client.clone(), config).with_ledger(LedgerHandle {
        ledger: chain.as_(OPERATOR),
        suite: chain.suite,
    })
}

pub async fn wait<K>(api: &Api<K>, name: &str, what: &str, ok: impl Fn(&K) -> bool) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(o) = api.get_opt(name).await.unwrap()
            && ok(&o)
        {
            return o;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: timed out waiting for {what}: {:?}",
            api.get_opt(name).await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub fn phase(p: &ModelProposal) -> Option<ModelProposalPhase> {
    p.status.as_ref()?.phase
}

pub fn ready_reason(conds: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]) -> String {
    conds
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| format!("{}: {}", c.reason, c.message))
        .unwrap_or_default()
}

/// The example proposal staking `stake`, with the proposer's signed authorization.
pub async fn proposal_spec(chain: &Chain, ns: &str, name: &str, stake: U256) -> ModelProposal {
    let mut v = example("01-proposal.yaml", ns);
    v["metadata"]["name"] = json!(name);
    v["spec"]["proposer"] = json!(Chain::address(PROPOSER).to_string());
    v["spec"]["stake"] = json!(stake.to_string());
    v["spec"]["governance"] = json!({"quorumBps": 400, "approvalThresholdBps": 5001});
    let mut p: ModelProposal = serde_json::from_value(v).unwrap();
    authorize(chain, &mut p).await;
    p
}

/// Signs `p`'s stake authorization with the proposer's key, as `modelcommons stake
/// authorize` does.
pub async fn authorize(chain: &Chain, p: &mut ModelProposal) {
    use modelcommons_operator::controller::proposal::{reward_budget, spec_hash};
    let stake = U256::from_str_radix(&p.spec.stake, 10).unwrap();
    let (nonce, deadline, sig) = chain
        .authorize(spec_hash(&p.spec), stake, reward_budget(&p.spec).unwrap())
        .await;
    p.spec.stake_authorization = Some(modelcommons_crds::proposal::StakeAuthorization {
        signature: sig.to_string(),
        deadline,
        nonce,
    });
}

/// Events the operator published about `name` with `reason`.
pub async fn events(client: &kube::Client, ns: &str, name: &str, reason: &str) -> usize {
    Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter(|e| {
            e.reason.as_deref() == Some(reason)
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
        })
        .count()
}

/// The proposer escrows: funds and approves the registry for `amount`.
pub async fn stake(chain: &Chain, amount: U256) {
    chain.fund(PROPOSER, amount).await;
    let l = chain.as_(PROPOSER);
    modelcommons_operator::ledger::bindings::OpenToken::new(chain.suite.open, l.provider())
        .approve(chain.suite.registry, amount)
        .mined()
        .await;
}

pub fn proposal_id(p: &ModelProposal) -> U256 {
    p.status
        .as_ref()
        .unwrap()
        .chain
        .as_ref()
        .unwrap()
        .proposal_id
        .as_ref()
        .unwrap()
        .parse()
        .unwrap()
}
/// Drives a proposal through an approving vote.
pub async fn approve(chain: &Chain, mps: &Api<ModelProposal>, name: &str) -> ModelProposal {
    let p = wait(mps, name, "Voting", |p| {
        phase(p) == Some(ModelProposalPhase::Voting)
    })
    .await;
    let pid = proposal_id(&p);
    chain.mine(chain.params.voting_delay_blocks + 1);
    for v in VOTERS {
        chain.vote(v, pid, Support::For).await;
    }
    chain.mine(u64::from(chain.params.voting_period_blocks) + 1);
    wait(mps, name, "queued", |p| {
        ready_reason(&p.status.clone().unwrap_or_default().conditions)
            .starts_with("AwaitingTimelock")
    })
    .await;
    chain.wait_seconds(chain.params.timelock_delay_seconds + 1);
    wait(mps, name, "Approved or Active", |p| {
        matches!(
            phase(p),
            Some(ModelProposalPhase::Approved | ModelProposalPhase::Active)
        )
    })
    .await
}

/// The dev key of the example's contributor `address` (anvil accounts 2–5).
pub fn key_of(address: Address) -> PrivateKeySigner {
    DEV_KEYS
        .iter()
        .map(|k| k.parse::<PrivateKeySigner>().unwrap())
        .find(|k| k.address() == address)
        .unwrap()
}

/// The example's contributions, re-signed for this test's Datanet id, plus the bad ones.
pub fn manifest(datanet: &str, data: &Path) -> Manifest {
    let cm: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(
            workspace_root().join("examples/contract-review/02-contributions.yaml"),
        )
        .unwrap(),
    )
    .unwrap();
    let example: Manifest =
        serde_yaml::from_str(cm["data"]["manifest.yaml"].as_str().unwrap()).unwrap();
    let src = workspace_root().join("examples/contract-review/data/contributions");
    let mut out = Manifest::default();
    let mut add =
        |id: &str, signer: &PrivateKeySigner, bytes: &[u8], tweak: &dyn Fn(&mut Contribution)| {
            let path = data.join(format!("{id}.jsonl"));
            std::fs::write(&path, bytes).unwrap();
            let sha256 = sha256_hex(bytes);
            let mut c = Contribution {
                id: id.into(),
                contributor: signer.address(),
                uri: format!("file://{}", path.display()),
                signature: contribution::sign(signer, datanet, &sha256).unwrap(),
                sha256,
                license: "CC-BY-4.0".into(),
            };
            tweak(&mut c);
            out.contributions.push(c);
        };
    let file =
        |c: &Contribution| std::fs::read(src.join(c.uri.rsplit('/').next().unwrap())).unwrap();
    for c in &example.contributions {
        add(&c.id, &key_of(c.contributor), &file(c), &|_| {});
    }
    let (alice, bob) = (
        key_of(example.contributions[0].contributor),
        key_of(example.contributions[2].contributor),
    );
    let liability = file(&example.contributions[3]);
    // The sha256 in the manifest is not the file's.
    let signer = bob.clone();
    add(
        "tampered",
        &bob,
        b"{\"prompt\":\"x\",\"completion\":\"y\"}\n",
        &move |c| {
            c.sha256 = sha256_hex(b"other bytes");
            c.signature = contribution::sign(&signer, datanet, &c.sha256).unwrap();
        },
    );
    // Listed as alice's, signed by bob.
    let alice_address = alice.address();
    add(
        "forged",
        &bob,
        &file(&example.contributions[2]),
        &move |c| c.contributor = alice_address,
    );
    // bob-liability with a word changed in each record (every generated clause opens with
    // "This Agreement between …").
    let near = String::from_utf8(liability)
        .unwrap()
        .replace("Agreement", "contract");
    assert!(near.lines().all(|l| l.contains("contract")));
    add("reworded", &alice, near.as_bytes(), &|_| {});
    out
}

/// Plays the kubelet for the only pod of `job`: runs `binary` with its args and env.
/// The first container of a Job's pod template.
pub fn container(job: &Job) -> &k8s_openapi::api::core::v1::Container {
    &job.spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
}

/// The literal environment of a Job's first container, by name.
pub fn env_of(job: &Job) -> std::collections::BTreeMap<String, String> {
    container(job)
        .env
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| Some((e.name, e.value?)))
        .collect()
}

pub async fn run_pod(binary: &Path, job: &Job, kubeconfig: &Path) -> String {
    let c = container(job);
    let mut cmd = tokio::process::Command::new(binary);
    cmd.args(c.args.clone().unwrap_or_default())
        .env("KUBECONFIG", kubeconfig)
        .env("MODELCOMMONS_REPORT_INTERVAL_SECONDS", "0");
    for e in c.env.clone().unwrap_or_default() {
        if let Some(v) = e.value {
            cmd.env(e.name, v);
        }
    }
    let out = cmd.output().await.unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        binary.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub async fn job_of(client: &kube::Client, ns: &str, instance: &str) -> Job {
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let list = jobs
            .list(&ListParams::default().labels(&format!("modelcommons.dev/instance={instance}")))
            .await
            .unwrap();
        if let Some(j) = list.items.into_iter().next() {
            return j;
        }
        assert!(Instant::now() < deadline, "no Job for {instance}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The operator's curation Job of Datanet `name` of namespace `ns` — of `version`, or the
/// first found — in the operator's trusted namespace `trusted_ns` (where curation runs).
pub async fn curation_job_of(
    client: &kube::Client,
    trusted_ns: &str,
    ns: &str,
    name: &str,
    version: Option<u32>,
) -> Job {
    let jobs: Api<Job> = Api::namespaced(client.clone(), trusted_ns);
    let mut selector = format!(
        "app.kubernetes.io/name=modelcommons-curation,modelcommons.dev/datanet-namespace={ns},modelcommons.dev/instance={name}"
    );
    if let Some(v) = version {
        selector.push_str(&format!(",modelcommons.dev/datanet-version={v}"));
    }
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let list = jobs
            .list(&ListParams::default().labels(&selector))
            .await
            .unwrap();
        if let Some(j) = list.items.into_iter().next() {
            return j;
        }
        assert!(
            Instant::now() < deadline,
            "no curation Job for {ns}/{name} in {trusted_ns}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every curation Job of Datanet `name` of namespace `ns` in [`TRUSTED`] now.
pub async fn curation_jobs(client: &kube::Client, ns: &str, name: &str) -> Vec<Job> {
    Api::<Job>::namespaced(client.clone(), TRUSTED)
        .list(&ListParams::default().labels(&format!(
            "app.kubernetes.io/name=modelcommons-curation,modelcommons.dev/datanet-namespace={ns},modelcommons.dev/instance={name}"
        )))
        .await
        .unwrap()
        .items
}

pub fn path_of(uri: &str) -> PathBuf {
    PathBuf::from(uri.strip_prefix("file://").unwrap())
}

/// Deletes every proposal and waits until the controller has released them (its finalizer
/// withdraws undecided ones), so that no object outlives the test's namespace.
pub async fn delete_proposals(mps: &Api<ModelProposal>) {
    mps.delete_collection(&Default::default(), &ListParams::default())
        .await
        .unwrap();
    let deadline = Instant::now() + TIMEOUT;
    while !mps
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .is_empty()
    {
        assert!(Instant::now() < deadline, "proposals were not released");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Plays the kubelet for a curation pod: mounts its ConfigMap volumes (writes their keys into
/// a directory and points the args there), runs `binary` with the pod's args and env, the
/// termination-message file redirected there too, and reports the message in the pod's status
/// as a kubelet would. Returns the process's stdout.
pub async fn run_curation_pod(client: &kube::Client, binary: &Path, job: &Job) -> String {
    let (message, stdout) = run_curation_binary(client, binary, job).await;
    report_terminated(client, job, &message).await;
    stdout
}

/// Runs the curation pod's program as [`run_curation_pod`] does, without reporting: returns
/// its termination message and stdout.
pub async fn run_curation_binary(
    client: &kube::Client,
    binary: &Path,
    job: &Job,
) -> (String, String) {
    use k8s_openapi::api::core::v1::ConfigMap;
    let ns = job.metadata.namespace.clone().unwrap();
    let spec = job.spec.as_ref().unwrap().template.spec.clone().unwrap();
    let c = &spec.containers[0];
    let dir = tempfile::tempdir().unwrap();
    let mut args = c.args.clone().unwrap_or_default();
    for v in spec.volumes.clone().unwrap_or_default() {
        let Some(cm) = v.config_map else { continue };
        let data = Api::<ConfigMap>::namespaced(client.clone(), &ns)
            .get(&cm.name)
            .await
            .unwrap()
            .data
            .unwrap_or_default();
        let at = dir.path().join(&v.name);
        std::fs::create_dir_all(&at).unwrap();
        for (k, text) in data {
            std::fs::write(at.join(k), text).unwrap();
        }
        let mount = c
            .volume_mounts
            .clone()
            .unwrap_or_default()
            .into_iter()
            .find(|m| m.name == v.name)
            .unwrap();
        for a in &mut args {
            *a = a.replace(&mount.mount_path, at.to_str().unwrap());
        }
    }
    let result = dir.path().join("termination-log");
    let mut cmd = tokio::process::Command::new(binary);
    cmd.args(&args).arg("--result-file").arg(&result);
    // As the kubelet does: Secrets named by envFrom become environment variables.
    for from in c.env_from.clone().unwrap_or_default() {
        let Some(r) = from.secret_ref else { continue };
        let secret = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), &ns)
            .get(&r.name)
            .await
            .unwrap();
        for (k, v) in secret.data.unwrap_or_default() {
            cmd.env(k, String::from_utf8(v.0).unwrap());
        }
    }
    for e in c.env.clone().unwrap_or_default() {
        if let Some(v) = e.value {
            cmd.env(e.name, v);
        }
    }
    let out = cmd.output().await.unwrap();
    assert!(
        out.status.success(),
        "curate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let message = std::fs::read_to_string(&result).unwrap();
    (message, String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Reports, as the kubelet would, that the completed pod of `job` ended with `message`.
pub async fn report_terminated(client: &kube::Client, job: &Job, message: &str) {
    let selector = format!(
        "batch.kubernetes.io/job-name={}",
        job.metadata.name.as_deref().unwrap()
    );
    report_pod(
        client,
        job.metadata.namespace.as_deref().unwrap(),
        &selector,
        message,
    )
    .await;
}

/// Waits until the pod selected by `selector` has completed (the fake node finishes every
/// pod) and writes `message` as its container's termination message, as a kubelet would.
pub async fn report_pod(client: &kube::Client, ns: &str, selector: &str, message: &str) {
    use k8s_openapi::api::core::v1::Pod;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let deadline = Instant::now() + TIMEOUT;
    let pod = loop {
        let done = pods
            .list(&ListParams::default().labels(selector))
            .await
            .unwrap()
            .items
            .into_iter()
            .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded"));
        if let Some(p) = done {
            break p;
        }
        assert!(Instant::now() < deadline, "no pod {selector} completed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let c = &pod.spec.as_ref().unwrap().containers[0];
    let status = json!({"status": {"containerStatuses": [{
        "name": c.name, "image": c.image, "imageID": "", "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": 0, "reason": "Completed", "message": message}}}]}});
    pods.patch_status(
        pod.metadata.name.as_deref().unwrap(),
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Strategic(status),
    )
    .await
    .unwrap();
}

/// The example FineTuneJob made small enough for a CPU: a base model freshly written under
/// `dir/base` by the real trainer (`init --seed 7`, the tiny random model the example pins),
/// fully fine-tuned (a LoRA of a random base learns nothing) for `max_steps` steps by
/// `workers` workers, the output under `dir/out`; no targets of its own, so the proposal's
/// rubric judges it (some 300 steps meet it on the example's data).
pub fn small_finetune(ns: &str, dir: &Path, workers: u32, max_steps: u32) -> serde_json::Value {
    let base = dir.join("base");
    let init = std::process::Command::new(modelcommons_testbed::workspace_binary(
        "modelcommons-trainer",
    ))
    .args(["init", "--out", base.to_str().unwrap(), "--seed", "7"])
    .output()
    .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let mut f = example("04-finetune.yaml", ns);
    f["spec"]["baseModel"]["uri"] = json!(format!("file://{}", base.display()));
    f["spec"]["outputUri"] = json!(format!("file://{}/out", dir.display()));
    f["spec"]["resources"] =
        json!({"workers": workers, "gpusPerWorker": 1, "cpu": "1", "memory": "1Gi"});
    f["spec"]["method"] = json!({"type": "Full"});
    let warmup = (max_steps.min(100) / 10).max(1);
    f["spec"]["hyperparameters"] = json!({"epochs": 1, "maxSteps": max_steps, "learningRate": "0.003",
        "batchSize": 16, "gradientAccumulationSteps": 1, "warmupSteps": warmup, "maxSeqLen": 512, "seed": 1});
    f["spec"]["checkpointing"] = json!({"everySteps": 100, "keep": 1});
    f["spec"]["targets"] = json!([]);
    f["spec"]["runPolicy"] = json!({"backoffLimit": 1});
    f
}

/// The example Datanet with its contributions ConfigMap: the example's files re-signed for
/// this namespace plus the bad ones of [`manifest`], written under `data`. Returns the
/// manifest and the Datanets API.
pub async fn create_datanet(
    client: &kube::Client,
    ns: &str,
    data: &Path,
) -> (Manifest, Api<modelcommons_crds::datanet::Datanet>) {
    let manifest = manifest(&format!("{ns}/clause-review-data"), data);
    let mut cm = example("02-contributions.yaml", ns);
    cm["data"]["manifest.yaml"] = json!(serde_yaml::to_string(&manifest).unwrap());
    Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client.clone(), ns)
        .create(
            &kube::api::PostParams::default(),
            &serde_json::from_value(cm).unwrap(),
        )
        .await
        .unwrap();
    let dns = Api::namespaced(client.clone(), ns);
    dns.create(
        &kube::api::PostParams::default(),
        &serde_json::from_value(example("03-datanet.yaml", ns)).unwrap(),
    )
    .await
    .unwrap();
    (manifest, dns)
}

/// What GitOps tools see of `kind/name`: `kubectl wait --for=condition=Ready` returns, the
/// status carries neither `Reconciling` nor `Stalled`, and the Argo CD health check (the Lua
/// of `deploy/gitops/health`, run in gopher-lua as Argo CD runs it) says Healthy.
pub async fn gitops_ready(cluster: &modelcommons_testbed::Cluster, ns: &str, object: &str) {
    let out = cluster
        .kubectl()
        .unwrap()
        .args([
            "wait",
            "--for=condition=Ready",
            "--timeout=60s",
            "-n",
            ns,
            object,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl wait --for=condition=Ready {object}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = cluster
        .kubectl()
        .unwrap()
        .args(["get", "-n", ns, object, "-o", "json"])
        .output()
        .unwrap();
    assert!(json.status.success());
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let types: Vec<&str> = v["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["type"].as_str())
        .collect();
    assert!(
        !types.contains(&"Reconciling") && !types.contains(&"Stalled"),
        "{object} is Ready beside {types:?}"
    );
    assert_eq!(
        argocd_health(&json.stdout),
        "Healthy",
        "{object}: {}",
        v["status"]
    );
}

/// The Argo CD health (`Healthy`, `Progressing`, `Degraded`…) of an object's JSON.
pub fn argocd_health(object_json: &[u8]) -> String {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), object_json).unwrap();
    let root = workspace_root();
    let out = std::process::Command::new("go")
        .arg("-C")
        .arg(root.join("hack/gitops-health"))
        .args(["run", ".", "--health"])
        .arg(file.path())
        .output()
        .expect("go runs the Argo CD health check");
    assert!(
        out.status.success(),
        "gitops-health: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.split('\t').next().unwrap_or_default().to_string()
}
