//! Crashes and leader election on the real control plane and a real anvil chain: two replicas
//! of the real `modelcommons-operator` binary (leader election on a Lease, the ledger from a
//! key file and an addresses file) carry the lifecycle; at three points — while the proposal's
//! registration, the Datanet version's publication and the training record are in the chain's
//! mempool — the leader is SIGKILLed and restarted as a follower. The other replica takes the
//! Lease over and finishes. The final state is the same as without crashes, and every write is
//! on chain exactly once (counted by the contracts' events).

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::lifecycle::*;
use crate::common::{Chain, OPERATOR, VOTERS, open};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, ListParams, PostParams};
use modelcommons_crds::datanet::DatanetPhase;
use modelcommons_crds::finetune::{FineTuneJob, FineTuneJobPhase};
use modelcommons_crds::proposal::{ModelProposal, ModelProposalPhase};
use modelcommons_operator::ledger::bindings::{ModelRegistry, RewardDistributor};
use modelcommons_testbed::{DEV_KEYS, TestNamespace, cluster, install_crds, workspace_binary};
use serde_json::json;

struct Replicas {
    kubeconfig: std::path::PathBuf,
    ns: String,
    dir: std::path::PathBuf,
    running: Vec<(String, tokio::process::Child)>,
    started: usize,
}

impl Replicas {
    fn start(&mut self) {
        self.started += 1;
        let identity = format!("replica-{}", self.started);
        let d = &self.dir;
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_modelcommons-operator"))
            .args([
                "run",
                "--namespace",
                &self.ns,
                "--lease-namespace",
                &self.ns,
            ])
            .args([
                "--lease-duration-seconds",
                "3",
                "--metrics-addr",
                "127.0.0.1:0",
            ])
            .args(["--identity", &identity, "--recheck-seconds", "1"])
            .args(["--trusted-namespace", TRUSTED])
            .arg("--ledger-rpc-url")
            .arg(std::fs::read_to_string(d.join("rpc")).unwrap())
            .arg("--ledger-key-file")
            .arg(d.join("key"))
            .arg("--ledger-addresses-file")
            .arg(d.join("addresses.json"))
            .arg("--artifact-store")
            .arg(format!("file://{}", d.join("store").display()))
            .arg("--dev-host-dir")
            .arg(d)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        self.running.push((identity, child));
    }

    /// SIGKILLs the replica holding the Lease and starts a new one (a follower until the
    /// survivor's lease lapses, which it does not while the survivor lives).
    async fn kill_leader(&mut self, client: &kube::Client) -> String {
        let leases: Api<Lease> = Api::namespaced(client.clone(), &self.ns);
        let holder = leases
            .get("modelcommons-operator")
            .await
            .unwrap()
            .spec
            .unwrap()
            .holder_identity
            .unwrap();
        let at = self
            .running
            .iter()
            .position(|(id, _)| *id == holder)
            .unwrap();
        let (_, mut child) = self.running.remove(at);
        child.kill().await.unwrap();
        self.start();
        holder
    }
}

/// Waits until the chain's mempool holds a transaction (the leader's write in flight).
async fn pending_write(chain: &Chain) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = chain.anvil.rpc("txpool_status", json!([])).unwrap();
        let n = u64::from_str_radix(
            s["pending"]
                .as_str()
                .unwrap_or("0x0")
                .trim_start_matches("0x"),
            16,
        )
        .unwrap();
        if n > 0 {
            return;
        }
        assert!(Instant::now() < deadline, "no write reached the mempool");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn automine(chain: &Chain, on: bool) {
    chain.anvil.rpc("evm_setAutomine", json!([on])).unwrap();
}

/// A crash point: with mining paused, `trigger` makes the leader write; once the write is in
/// the mempool the leader dies; the write is then mined and mining resumes.
async fn crash_during_write(
    chain: &Chain,
    replicas: &mut Replicas,
    client: &kube::Client,
) -> String {
    pending_write(chain).await;
    let killed = replicas.kill_leader(client).await;
    chain.mine(1);
    automine(chain, true);
    killed
}

#[tokio::test]
async fn the_lifecycle_survives_sigkills_and_a_new_leader_finishes_it() {
    let chain = Chain::new().await;
    for v in VOTERS {
        chain.wrap_and_delegate(v, open(1_000)).await;
    }
    let cluster = cluster().await.unwrap();
    let client = cluster.client().await.unwrap();
    install_crds(&client, &modelcommons_crds::all_crds())
        .await
        .unwrap();
    trusted(&client).await;
    let ns = TestNamespace::create(&client, "crash").await.unwrap();
    let n = ns.name();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("rpc"), chain.anvil.endpoint()).unwrap();
    std::fs::write(d.join("key"), DEV_KEYS[OPERATOR]).unwrap();
    std::fs::write(
        d.join("addresses.json"),
        serde_json::to_string(&chain.suite).unwrap(),
    )
    .unwrap();
    std::fs::create_dir_all(d.join("data")).unwrap();
    let mut replicas = Replicas {
        kubeconfig: cluster.kubeconfig().to_path_buf(),
        ns: n.to_string(),
        dir: d.to_path_buf(),
        running: vec![],
        started: 0,
    };
    replicas.start();
    replicas.start();
    let mut killed = vec![];

    // Crash 1: while the registration (stake escrow + vote) is in flight.
    let mps: Api<ModelProposal> = Api::namespaced(client.clone(), n);
    stake(&chain, open(100)).await;
    automine(&chain, false);
    mps.create(
        &PostParams::default(),
        &proposal_spec(&chain, n, "clause-review", open(100)).await,
    )
    .await
    .unwrap();
    killed.push(crash_during_write(&chain, &mut replicas, &client).await);
    approve(&chain, &mps, "clause-review").await;

    // Crash 2: while the Datanet version's funding and publication are in flight.
    let (_, dns) = create_datanet(&client, n, &d.join("data")).await;
    let job = curation_job_of(&client, TRUSTED, n, "clause-review-data", None).await;
    automine(&chain, false);
    run_curation_pod(
        &client,
        Path::new(env!("CARGO_BIN_EXE_modelcommons-operator")),
        &job,
    )
    .await;
    killed.push(crash_during_write(&chain, &mut replicas, &client).await);
    let dn = wait(&dns, "clause-review-data", "Ready", |d| {
        d.status.as_ref().and_then(|s| s.phase) == Some(DatanetPhase::Ready)
    })
    .await;
    let st = dn.status.unwrap();
    assert_eq!(st.version, Some(1));
    assert_eq!(st.counts.unwrap().accepted, 5);

    // Crash 3: while the training result's record is in flight.
    let f = small_finetune(n, d, 1, 4);
    let ftjs: Api<FineTuneJob> = Api::namespaced(client.clone(), n);
    ftjs.create(&PostParams::default(), &serde_json::from_value(f).unwrap())
        .await
        .unwrap();
    wait(&ftjs, "clause-review-lora", "Evaluating", |f| {
        f.status.as_ref().and_then(|s| s.phase) == Some(FineTuneJobPhase::Evaluating)
    })
    .await;
    let job = Api::<Job>::namespaced(client.clone(), n)
        .get("clause-review-lora-trainer")
        .await
        .unwrap();
    automine(&chain, false);
    run_pod(
        &workspace_binary("modelcommons-trainer"),
        &job,
        cluster.kubeconfig(),
    )
    .await;
    run_evaluation_pod(&client, &ftjs, "clause-review-lora", TRUSTED).await;
    killed.push(crash_during_write(&chain, &mut replicas, &client).await);
    // Four steps miss the rubric: the judged result is recorded all the same.
    let f = wait(&ftjs, "clause-review-lora", "judged and recorded", |f| {
        f.status
            .as_ref()
            .is_some_and(|s| s.phase == Some(FineTuneJobPhase::TargetsMissed) && s.chain.is_some())
    })
    .await;
    let tx = f.status.unwrap().chain.unwrap().tx_hash.unwrap();
    assert!(
        tx.starts_with("0x") && tx.len() == 66,
        "the record's transaction: {tx}"
    );
    wait(&mps, "clause-review", "Active", |p| {
        p.status.as_ref().and_then(|s| s.phase) == Some(ModelProposalPhase::Active)
    })
    .await;

    // Three leaders died; the lease moved each time.
    assert_eq!(killed.len(), 3);
    let lease = Api::<Lease>::namespaced(client.clone(), n)
        .get("modelcommons-operator")
        .await
        .unwrap();
    assert!(lease.spec.unwrap().lease_transitions.unwrap() >= 3);
    // Exactly one on-chain record per write, and one Job per piece of work.
    let op = chain.as_(OPERATOR);
    let registry = ModelRegistry::new(chain.suite.registry, op.provider().clone());
    let distributor = RewardDistributor::new(chain.suite.distributor, op.provider().clone());
    assert_eq!(
        registry
            .ModelRegistered_filter()
            .from_block(0)
            .query()
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        registry
            .ModelRatified_filter()
            .from_block(0)
            .query()
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        distributor
            .Published_filter()
            .from_block(0)
            .query()
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        registry
            .TrainingRecorded_filter()
            .from_block(0)
            .query()
            .await
            .unwrap()
            .len(),
        1
    );
    let jobs = Api::<Job>::namespaced(client.clone(), n)
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(jobs.items.len(), 1, "one trainer Job");
    assert_eq!(
        curation_jobs(&client, n, "clause-review-data").await.len(),
        1,
        "one curation Job, in the trusted namespace"
    );

    delete_proposals(&mps).await;
    drop(replicas);
    ns.delete().await.unwrap();
}
