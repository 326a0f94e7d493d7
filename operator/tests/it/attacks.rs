//! Attacks a tenant of a shared cluster can make on the money the operator moves, each run
//! against the real control plane, a real anvil chain and the operator's controllers in this
//! process. A tenant here may create Jobs and pods in its namespace, patch the status of its
//! own objects, edit its ConfigMaps and write the artifact store its pods mount; it holds no
//! key the operator trusts. Curation and evaluation run in the operator's trusted namespace,
//! which tenants cannot write; the forgeries there are those of an attacker who got that far
//! anyway. Each test checks token balances to the wei — the operator's wallet,
//! the attacker's and the distributor's — and the condition or event the user sees.
//!
//! Datanet curation results:
//! - a pod that merely carries the curation Job's name label and a forged result (beside the
//!   Job, in the trusted namespace);
//! - a Job created before the operator's own under the name the operator would give it, in
//!   the tenant's namespace and in the trusted one;
//! - a forged `status.curation` (anyone with `patch datanets/status`);
//! - a whitespace edit of the manifest (the same content: no new version, nothing paid);
//! - a rewritten `status.manifestSha256` / `status.version` (no new version, nothing paid);
//! - the curation report (the reward map) rewritten in the artifact store;
//! - contributions that point into the artifact store (another version's curated dataset),
//!   at a loopback address, and at a redirect to one.
//!
//! Governance and mandates:
//! - a proposal naming someone else (who approved the registry for their own) as proposer;
//! - a proposal asking for a quorum and threshold of 1 basis point;
//! - a Datanet pool beyond the mandate's reward budget;
//! - a proposal status forged to `Approved` while its vote is open.
//!
//! Workloads:
//! - a FineTuneJob writing to `file:///var/lib/kubelet` (a host path of the node), one with a
//!   trainer image the operator does not run, and a ModelDeployment serving from a host path.
//!
//! Training results:
//! - a trainer report with forged metrics (the output is the untrained base), and job targets
//!   looser than the proposal's rubric — judged by the operator's own evaluation on held-out
//!   records, against the rubric;
//! - a base model other than the one `baseModel.sha256` names;
//! - a FineTuneJob's `outputUri` and `baseModel` edited after the run.
//! - a FineTuneJob's status forged to `Succeeded` with weights of the tenant's choosing, and a
//!   ModelDeployment of that job.
//!
//! Lineage (in `lifecycle.rs`): a job pinned to version 1 while version 2 is the latest, a job
//! admitted before version 2 was published, and one created after the Datanet's status was
//! rewritten to name other data.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::lifecycle::*;
use crate::common::{Chain, OPERATOR, PROPOSER, VOTERS, open};
use alloy::primitives::{Address, B256, U256};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use modelcommons_crds::datanet::{Datanet, DatanetPhase};
use modelcommons_crds::proposal::{ModelProposal, ModelProposalPhase};
use modelcommons_operator::contribution::{self, Contribution, Manifest, sha256_hex};
use modelcommons_operator::controller::{Config, datanet, deployment, finetune, proposal};
use modelcommons_operator::curate::{CurationReport, Reason};
use modelcommons_operator::ledger::bindings::RewardDistributor;
use modelcommons_operator::ledger::ids::datanet_version_id;
use modelcommons_operator::ledger::merkle::{Payout, PayoutTree};
use modelcommons_testbed::{TestNamespace, cluster, install_crds};
use serde_json::json;

/// The attacker: a dev account that is no contributor, voter or operator.
const ATTACKER: usize = 9;
const DATANET: &str = "clause-review-data";
const POOL: &str = "500000000000000000000";

fn curate_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_modelcommons-operator"))
}

struct World {
    chain: Chain,
    client: kube::Client,
    ns: TestNamespace,
    _dir: tempfile::TempDir,
    store: PathBuf,
    dns: Api<Datanet>,
    mps: Api<ModelProposal>,
    manifest: Manifest,
    controllers: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for World {
    fn drop(&mut self) {
        for c in &self.controllers {
            c.abort();
        }
    }
}

impl World {
    /// A staked proposal (not yet voted on) and the example Datanet waiting for it.
    async fn new(tag: &str) -> Self {
        Self::with_config(tag, |_| {}).await
    }

    /// [`World::new`] with the operator's configuration changed by `configure`.
    async fn with_config(tag: &str, configure: impl FnOnce(&mut Config)) -> Self {
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
        let ns = TestNamespace::create(&client, tag).await.unwrap();
        let n = ns.name().to_string();
        let dir = tempfile::tempdir().unwrap();
        let (data, store) = (dir.path().join("data"), dir.path().join("store"));
        std::fs::create_dir_all(&data).unwrap();
        let mut ctx = context(&client, &n, &chain, &store);
        configure(std::sync::Arc::make_mut(&mut ctx.config));
        let controllers = vec![
            tokio::spawn(proposal::run(ctx.clone())),
            tokio::spawn(datanet::run(ctx.clone())),
            tokio::spawn(finetune::run(ctx.clone())),
            tokio::spawn(deployment::run(ctx.clone())),
        ];
        let mps: Api<ModelProposal> = Api::namespaced(client.clone(), &n);
        stake(&chain, open(100)).await;
        mps.create(
            &PostParams::default(),
            &proposal_spec(&chain, &n, "clause-review", open(100)).await,
        )
        .await
        .unwrap();
        let (manifest, dns) = create_datanet(&client, &n, &data).await;
        wait(&dns, DATANET, "Collecting", |d| {
            d.status.as_ref().and_then(|s| s.phase) == Some(DatanetPhase::Collecting)
        })
        .await;
        Self {
            chain,
            client,
            ns,
            _dir: dir,
            store,
            dns,
            mps,
            manifest,
            controllers,
        }
    }

    fn n(&self) -> &str {
        self.ns.name()
    }

    /// Waits until the world's own proposal has escrowed its stake (so that balances read
    /// afterwards do not race its registration).
    async fn registered(&self) {
        wait(&self.mps, "clause-review", "Voting", |p| {
            phase(p) == Some(ModelProposalPhase::Voting)
        })
        .await;
    }

    async fn approve(&self) {
        approve(&self.chain, &self.mps, "clause-review").await;
    }

    /// The balances that must not move: the operator's wallet, the attacker's, the
    /// distributor's, and the registry's (the mandates' escrowed reward budgets).
    async fn balances(&self) -> [U256; 4] {
        [
            self.chain.balance(Chain::address(OPERATOR)).await,
            self.chain.balance(Chain::address(ATTACKER)).await,
            self.chain.balance(self.chain.suite.distributor).await,
            self.chain.balance(self.chain.suite.registry).await,
        ]
    }

    async fn datanet(&self) -> Datanet {
        self.dns.get(DATANET).await.unwrap()
    }

    /// The manifest text as the ConfigMap holds it, and its version digest.
    async fn manifest_text(&self) -> (String, String) {
        let cm = Api::<ConfigMap>::namespaced(self.client.clone(), self.n())
            .get("clause-review-contributions")
            .await
            .unwrap();
        let text = cm.data.unwrap()["manifest.yaml"].clone();
        let digest = datanet::manifest_digest(&text);
        (text, digest)
    }

    /// The operator's curation Job of version 1 (in its trusted namespace).
    async fn curation_job(&self) -> Job {
        curation_job_of(&self.client, TRUSTED, self.n(), DATANET, Some(1)).await
    }

    /// The operator's curation Jobs of this world's Datanet.
    async fn curation_jobs(&self) -> Vec<Job> {
        curation_jobs(&self.client, self.n(), DATANET).await
    }

    /// The operator's curation Job of version 2, once it exists.
    async fn v2_job(&self) -> Job {
        curation_job_of(&self.client, TRUSTED, self.n(), DATANET, Some(2)).await
    }

    /// Tries to claim `amount` from version 1's distribution as the attacker with a one-leaf
    /// proof; returns whether the claim went through.
    async fn attacker_claims(&self, amount: U256) -> bool {
        let id = datanet_version_id(&self.datanet().await.uid().unwrap(), 1);
        let l = self.chain.as_(ATTACKER);
        RewardDistributor::new(self.chain.suite.distributor, l.provider())
            .claim(id, U256::ZERO, Chain::address(ATTACKER), amount, vec![])
            .send()
            .await
            .is_ok()
    }

    /// Version 1 as published on chain: (root, total), zero when nothing is published.
    async fn published(&self) -> (B256, U256) {
        let id = datanet_version_id(&self.datanet().await.uid().unwrap(), 1);
        let d = RewardDistributor::new(
            self.chain.suite.distributor,
            self.chain.as_(OPERATOR).provider().clone(),
        )
        .distributions(id)
        .call()
        .await
        .unwrap();
        (d.root, U256::from(d.total))
    }

    /// Lets the controllers react for a while (they requeue every second here).
    async fn settle(&self) {
        tokio::time::sleep(Duration::from_secs(6)).await;
    }

    /// [`World::new`] with the proposal approved, version 1 curated and paid honestly, and
    /// the operator's trusted namespace in place: where the training attacks start.
    async fn curated(tag: &str) -> Self {
        let w = Self::new(tag).await;
        trusted(&w.client).await;
        w.approve().await;
        let before = w.balances().await;
        w.honest_curation_pays_exactly_the_pool(before).await;
        w
    }

    /// Runs the operator's own curation pod honestly and waits for the version to be
    /// published: the pool, exactly, moves from the mandate's escrow to the distributor; the
    /// operator's wallet pays nothing.
    async fn honest_curation_pays_exactly_the_pool(&self, before: [U256; 4]) {
        run_curation_pod(&self.client, curate_bin(), &self.curation_job().await).await;
        let d = wait(&self.dns, DATANET, "Ready", |d| {
            d.status.as_ref().and_then(|s| s.phase) == Some(DatanetPhase::Ready)
        })
        .await;
        let st = d.status.unwrap();
        assert_eq!(st.reward_total.as_deref(), Some(POOL));
        let pool = U256::from_str_radix(POOL, 10).unwrap();
        let after = self.balances().await;
        assert_eq!(after[0], before[0], "the operator's wallet paid nothing");
        assert_eq!(after[1], before[1], "the attacker got nothing");
        assert_eq!(after[2] - before[2], pool, "the distributor holds the pool");
        assert_eq!(
            before[3] - after[3],
            pool,
            "drawn from the mandate's budget"
        );
        assert_eq!(self.published().await.1, pool);
    }
}

/// A curation result as a curation pod reports it, paying `amount` to the attacker alone.
fn forged_result(digest: &str, amount: U256, uri: &str) -> String {
    let leaf = Payout {
        index: U256::ZERO,
        account: Chain::address(ATTACKER),
        amount,
    };
    let root = PayoutTree::new(&[leaf]).unwrap().root();
    json!({
        "version": 1, "manifestSha256": digest,
        "counts": {"total": 1, "accepted": 1, "rejected": 0},
        "datasetRoot": root.to_string(), "rewardRoot": root.to_string(),
        "datasetUri": format!("{uri}/sha256-00"), "rewardMapUri": format!("{uri}/curation.json"),
        "rewardTotal": amount.to_string(),
    })
    .to_string()
}

/// The most a forged result could take: everything the operator and the mandate's escrow
/// hold (within uint128).
async fn loot(w: &World) -> U256 {
    (w.chain.balance(Chain::address(OPERATOR)).await
        + w.chain.balance(w.chain.suite.registry).await)
        .min(U256::from(u128::MAX))
}

fn assert_unmoved(before: [U256; 4], after: [U256; 4], what: &str) {
    assert_eq!(
        after,
        before,
        "{what}: balances [operator, attacker, distributor, registry escrow] moved by [-{}, +{}, +{}, -{}] wei",
        before[0].saturating_sub(after[0]),
        after[1].saturating_sub(before[1]),
        after[2].saturating_sub(before[2]),
        before[3].saturating_sub(after[3]),
    );
}

/// A Warning event with `reason` about the Datanet.
async fn warned(w: &World, reason: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if events(&w.client, w.n(), DATANET, reason).await > 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    false
}

#[tokio::test]
async fn a_forged_pod_result_publishes_nothing() {
    let w = World::new("atk-pod").await;
    w.approve().await;
    let job = w.curation_job().await;
    let (_, digest) = w.manifest_text().await;
    let before = w.balances().await;
    let amount = loot(&w).await;
    // A pod of the attacker's own image that carries the Job's name label, beside the Job:
    // in the trusted namespace, where tenants cannot create pods — an attacker who got that
    // far (a careless RoleBinding) still publishes nothing.
    let evil: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("evil-curate-{}", w.n()), "namespace": TRUSTED,
            "labels": {"batch.kubernetes.io/job-name": job.name_any(), "attack": w.n()},
            // Not the Job's controller reference, which the Job controller alone sets.
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job",
                "name": job.name_any(), "uid": job.uid().unwrap()}]},
        "spec": {"restartPolicy": "Never",
            "containers": [{"name": "curate", "image": "attacker.example/curate:latest"}]},
    }))
    .unwrap();
    Api::<Pod>::namespaced(w.client.clone(), TRUSTED)
        .create(&PostParams::default(), &evil)
        .await
        .unwrap();
    let store = format!("file://{}/datanets/{}/{DATANET}", w.store.display(), w.n());
    report_pod(
        &w.client,
        TRUSTED,
        &format!("attack={}", w.n()),
        &forged_result(&digest, amount, &store),
    )
    .await;
    w.settle().await;
    let claimed = w.attacker_claims(amount).await;
    assert_unmoved(before, w.balances().await, "a forged pod result");
    assert!(!claimed, "the attacker claimed {amount} wei");
    assert!(warned(&w, "ForgedResult").await, "a ForgedResult warning");
    assert_eq!(w.published().await.0, B256::ZERO, "nothing published");
    // The real curation still publishes, and pays the pool only.
    w.honest_curation_pays_exactly_the_pool(before).await;
}

#[tokio::test]
async fn a_job_created_before_the_operators_is_not_trusted() {
    let w = World::new("atk-job").await;
    let (_, digest) = w.manifest_text().await;
    let dn = w.datanet().await;
    let uid = dn.uid().unwrap();
    let name = datanet::job_name(&uid, 1, &digest);
    // The Job the operator would create, with its labels, but the attacker's own image: one
    // in the tenant's namespace (where tenants can create Jobs: the operator never looks
    // there), and one in the trusted namespace under the operator's name (where tenants
    // cannot: an attacker who got that far).
    let labels = json!({"app.kubernetes.io/managed-by": "modelcommons-operator",
        "app.kubernetes.io/name": "modelcommons-curation",
        "modelcommons.dev/instance": DATANET, "modelcommons.dev/datanet-namespace": w.n(),
        "modelcommons.dev/datanet-uid": uid, "modelcommons.dev/datanet-version": "1"});
    let mut made = Vec::new();
    for ns in [w.n(), TRUSTED] {
        let job: Job = serde_json::from_value(json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"backoffLimit": 0, "template": {"metadata": {"labels": labels},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "curate",
                    "image": "attacker.example/curate:latest"}]}}},
        }))
        .unwrap();
        made.push(
            Api::<Job>::namespaced(w.client.clone(), ns)
                .create(&PostParams::default(), &job)
                .await
                .unwrap(),
        );
    }
    w.approve().await;
    let before = w.balances().await;
    let amount = loot(&w).await;
    let store = format!("file://{}/datanets/{}/{DATANET}", w.store.display(), w.n());
    for job in &made {
        report_terminated(&w.client, job, &forged_result(&digest, amount, &store)).await;
    }
    w.settle().await;
    let claimed = w.attacker_claims(amount).await;
    assert_unmoved(before, w.balances().await, "a pre-created Job");
    assert!(!claimed, "the attacker claimed");
    assert!(warned(&w, "ForgedResult").await, "a ForgedResult warning");
    assert_eq!(w.published().await.0, B256::ZERO, "nothing published");
    let d = w.datanet().await;
    let why = ready_reason(&d.status.unwrap().conditions);
    assert!(why.starts_with("ForgedResult"), "{why}");
    assert!(why.contains(&name), "the message names the Job: {why}");
    assert!(why.contains(TRUSTED), "and where it is: {why}");
    // Once the platform team deletes the impostor, the operator's own curation pays the
    // pool, and nothing more.
    Api::<Job>::namespaced(w.client.clone(), TRUSTED)
        .delete(&name, &kube::api::DeleteParams::background())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let ours = loop {
        let j = w.curation_job().await;
        if j.uid() != made[1].uid() {
            break j;
        }
        assert!(
            Instant::now() < deadline,
            "the operator made no Job of its own"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(ours.name_any(), name);
    run_curation_pod(&w.client, curate_bin(), &ours).await;
    let d = wait(&w.dns, DATANET, "Ready", |d| {
        d.status.as_ref().and_then(|s| s.phase) == Some(DatanetPhase::Ready)
    })
    .await;
    assert_eq!(d.status.unwrap().reward_total.as_deref(), Some(POOL));
}

#[tokio::test]
async fn a_forged_status_curation_publishes_nothing() {
    let w = World::new("atk-status").await;
    w.approve().await;
    w.curation_job().await;
    let (_, digest) = w.manifest_text().await;
    let before = w.balances().await;
    let amount = loot(&w).await;
    let store = format!("file://{}/datanets/{}/{DATANET}", w.store.display(), w.n());
    let forged: serde_json::Value =
        serde_json::from_str(&forged_result(&digest, amount, &store)).unwrap();
    w.dns
        .patch_status(
            DATANET,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"curation": forged}})),
        )
        .await
        .unwrap();
    w.settle().await;
    let claimed = w.attacker_claims(amount).await;
    assert_unmoved(before, w.balances().await, "a status.curation patch");
    assert!(!claimed, "the attacker claimed");
    assert_eq!(w.published().await.0, B256::ZERO, "nothing published");
    w.honest_curation_pays_exactly_the_pool(before).await;
}

#[tokio::test]
async fn a_whitespace_edit_of_the_manifest_is_no_new_version() {
    let w = World::curated("atk-ws").await;
    let paid = w.balances().await;
    let (text, _) = w.manifest_text().await;
    // The same contributions, reformatted: blank lines, a comment, trailing spaces.
    let edited = format!(
        "# reformatted\n\n{}\n\n",
        text.lines()
            .map(|l| format!("{l}  "))
            .collect::<Vec<_>>()
            .join("\n")
    );
    Api::<ConfigMap>::namespaced(w.client.clone(), w.n())
        .patch(
            "clause-review-contributions",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"manifest.yaml": edited}})),
        )
        .await
        .unwrap();
    w.settle().await;
    let jobs = w.curation_jobs().await;
    // Were a second version cut, run its curation to see what it would pay.
    if let Some(v2) = jobs.iter().find(|j| {
        j.labels()
            .get("modelcommons.dev/datanet-version")
            .map(String::as_str)
            == Some("2")
    }) {
        run_curation_pod(&w.client, curate_bin(), v2).await;
        w.settle().await;
    }
    assert_unmoved(paid, w.balances().await, "a whitespace edit");
    assert_eq!(jobs.len(), 1, "no second curation Job");
    let st = w.datanet().await.status.unwrap();
    assert_eq!(st.version, Some(1));
    assert_eq!(st.phase, Some(DatanetPhase::Ready));
}

#[tokio::test]
async fn a_reward_map_rewritten_in_the_store_is_not_published() {
    let w = World::new("atk-store").await;
    w.approve().await;
    let job = w.curation_job().await;
    let before = w.balances().await;
    let (message, _) = run_curation_binary(&w.client, curate_bin(), &job).await;
    let result: serde_json::Value = serde_json::from_str(&message).unwrap();
    // The tenant's pods mount the artifact store: the attacker rewrites the reward map so
    // that it is paid what the first contributor was.
    let file = path_of(result["rewardMapUri"].as_str().unwrap());
    let mut report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let attacker: Address = Chain::address(ATTACKER);
    report["rewards"]["payouts"][0]["contributor"] = json!(attacker.to_string());
    std::fs::write(&file, serde_json::to_vec_pretty(&report).unwrap()).unwrap();
    report_terminated(&w.client, &job, &message).await;
    let d = wait(&w.dns, DATANET, "a verdict", |d| {
        let why = ready_reason(&d.status.clone().unwrap_or_default().conditions);
        why.starts_with("ArtifactTampered") || why.starts_with("Published")
    })
    .await;
    let why = ready_reason(&d.status.unwrap().conditions);
    assert_unmoved(before, w.balances().await, "a rewritten reward map");
    assert!(why.starts_with("ArtifactTampered"), "{why}");
    assert!(warned(&w, "ArtifactTampered").await);
    assert_eq!(w.published().await.0, B256::ZERO, "nothing published");
}

/// A loopback HTTP server answering every request with `body` (or a redirect to
/// `redirect`), counting the requests. Returns its `host:port`.
async fn http_server(
    body: Vec<u8>,
    redirect: Option<String>,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = sock.read(&mut buf).await;
            let head = match &redirect {
                Some(to) => format!(
                    "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                ),
                None => format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                ),
            };
            let _ = sock.write_all(head.as_bytes()).await;
            if redirect.is_none() {
                let _ = sock.write_all(&body).await;
            }
            let _ = sock.shutdown().await;
        }
    });
    (addr, hits)
}

#[tokio::test]
async fn contributions_into_the_store_or_the_internal_network_are_unreachable() {
    // Contributions of valid records, served on loopback (an internal service).
    let records = std::fs::read(
        modelcommons_testbed::workspace_root()
            .join("examples/contract-review/data/contributions/carol-governing-law.jsonl"),
    )
    .unwrap();
    let (internal, internal_hits) = http_server(records.clone(), None).await;
    let (redirector, _) =
        http_server(Vec::new(), Some(format!("http://{internal}/law.jsonl"))).await;
    // The redirector stands for a public host: the operator allows it explicitly.
    let allow = redirector.clone();
    let w = World::with_config("atk-fetch", move |c| {
        c.egress = modelcommons_operator::curate::Egress::allowing([allow]);
    })
    .await;
    w.approve().await;
    let before = w.balances().await;
    w.honest_curation_pays_exactly_the_pool(before).await;
    let v1 = w.datanet().await.status.unwrap();
    let curated = path_of(v1.dataset_uri.as_ref().unwrap()).join("dataset.jsonl");
    let curated_bytes = std::fs::read(&curated).unwrap();

    // Version 2: the attacker's entries first, so that were they read, every honest
    // contribution would be a duplicate of theirs and the pool theirs.
    let key: alloy::signers::local::PrivateKeySigner =
        modelcommons_testbed::DEV_KEYS[ATTACKER].parse().unwrap();
    let id = format!("{}/{DATANET}", w.n());
    let entry = |name: &str, uri: String, bytes: &[u8]| {
        let sha256 = sha256_hex(bytes);
        Contribution {
            id: name.into(),
            contributor: key.address(),
            uri,
            signature: contribution::sign(&key, &id, &sha256).unwrap(),
            sha256,
            license: "CC-BY-4.0".into(),
        }
    };
    let mut m = Manifest::default();
    m.contributions.push(entry(
        "from-the-store",
        format!("file://{}", curated.display()),
        &curated_bytes,
    ));
    m.contributions.push(entry(
        "loopback",
        format!("http://{internal}/law.jsonl"),
        &records,
    ));
    m.contributions.push(entry(
        "redirected",
        format!("http://{redirector}/law.jsonl"),
        &records,
    ));
    m.contributions
        .extend(w.manifest.contributions.iter().cloned());
    Api::<ConfigMap>::namespaced(w.client.clone(), w.n())
        .patch(
            "clause-review-contributions",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"manifest.yaml": serde_yaml::to_string(&m).unwrap()}})),
        )
        .await
        .unwrap();
    let v2_job = w.v2_job().await;
    let paid = w.balances().await;
    run_curation_pod(&w.client, curate_bin(), &v2_job).await;
    let d = wait(&w.dns, DATANET, "version 2", |d| {
        d.status.as_ref().and_then(|s| s.version) == Some(2)
    })
    .await;
    let st = d.status.unwrap();
    let report: CurationReport = serde_json::from_slice(
        &std::fs::read(path_of(st.reward_map_uri.as_ref().unwrap())).unwrap(),
    )
    .unwrap();
    let attacker = Chain::address(ATTACKER);
    let theirs: Vec<_> = report
        .items
        .iter()
        .filter(|i| i.contributor == attacker)
        // What the detail says beyond the URI the attacker wrote.
        .map(|i| (i.id.as_str(), i.reason, i.detail.replace(&i.uri, "")))
        .collect();
    let paid_to_attacker = report
        .rewards
        .payouts
        .iter()
        .find(|p| p.contributor == attacker)
        .map(|p| p.amount)
        .unwrap_or_default();
    assert_eq!(
        paid_to_attacker,
        U256::ZERO,
        "the attacker was paid; their items: {theirs:?}"
    );
    assert_eq!(
        internal_hits.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the internal server was asked"
    );
    for (name, reason, detail) in &theirs {
        assert_eq!(*reason, Reason::Unreachable, "{name}: {detail}");
        assert!(
            detail.contains("refused") && !detail.contains(&sha256_hex(&curated_bytes)[..12]),
            "{name}: a generic reason, no digest: {detail}"
        );
    }
    assert_eq!(theirs.len(), 3);
    // The honest contributors share version 2's pool as before, from the mandate's budget.
    let pool = U256::from_str_radix(POOL, 10).unwrap();
    assert_eq!(paid[3] - w.balances().await[3], pool);
}

/// The condition reasons an object's status shows.
fn reasons(status: &serde_json::Value) -> Vec<String> {
    status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["reason"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn workloads_get_no_host_path_and_no_image_the_operator_does_not_run() {
    use modelcommons_crds::deployment::ModelDeployment;
    use modelcommons_crds::finetune::FineTuneJob;
    let w = World::curated("atk-work").await;
    let dir = tempfile::tempdir_in(w.store.parent().unwrap()).unwrap();
    let ftjs: Api<FineTuneJob> = Api::namespaced(w.client.clone(), w.n());
    let mut host = small_finetune(w.n(), dir.path(), 1, 4);
    host["metadata"]["name"] = json!("to-the-kubelet");
    host["spec"]["outputUri"] = json!("file:///var/lib/kubelet");
    let mut image = small_finetune(w.n(), dir.path(), 1, 4);
    image["metadata"]["name"] = json!("own-trainer");
    image["spec"]["trainerImage"] = json!("attacker.example/trainer:latest");
    for f in [host, image] {
        ftjs.create(&PostParams::default(), &serde_json::from_value(f).unwrap())
            .await
            .unwrap();
    }
    let mds: Api<ModelDeployment> = Api::namespaced(w.client.clone(), w.n());
    let md: ModelDeployment = serde_json::from_value(json!({
        "apiVersion": "modelcommons.dev/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": "from-the-host", "namespace": w.n()},
        "spec": {"modelRef": {"artifact": {"uri": "file:///var/lib/kubelet/pki",
            "sha256": "ab".repeat(32)}}, "access": {"public": true}},
    }))
    .unwrap();
    mds.create(&PostParams::default(), &md).await.unwrap();

    let refused = |want: &'static str| {
        move |v: &serde_json::Value| reasons(&v["status"]).iter().any(|r| r == want)
    };
    for (name, want) in [
        ("to-the-kubelet", "HostPathRefused"),
        ("own-trainer", "TrainerImageNotAllowed"),
    ] {
        let ok = refused(want);
        let f = wait(&ftjs, name, want, |f| ok(&serde_json::to_value(f).unwrap())).await;
        let msg = serde_json::to_string(&f.status).unwrap();
        assert!(msg.contains(want), "{msg}");
    }
    let ok = refused("HostPathRefused");
    wait(&mds, "from-the-host", "HostPathRefused", |m| {
        ok(&serde_json::to_value(m).unwrap())
    })
    .await;
    // Nothing was created that mounts the host.
    let jobs = Api::<Job>::namespaced(w.client.clone(), w.n())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let names: Vec<String> = jobs.iter().map(ResourceExt::name_any).collect();
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("to-the-kubelet") || n.starts_with("own-trainer")),
        "trainer Jobs were created: {names:?}"
    );
    let deployments =
        Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(w.client.clone(), w.n())
            .list(&ListParams::default())
            .await
            .unwrap()
            .items;
    assert!(deployments.is_empty(), "a server Deployment was created");
}

/// The phase and Ready reason of a proposal, once it has one.
async fn proposal_reason(w: &World, name: &str) -> (Option<ModelProposalPhase>, String) {
    let p = w.mps.get(name).await.unwrap();
    let st = p.status.unwrap_or_default();
    (st.phase, ready_reason(&st.conditions))
}

#[tokio::test]
async fn a_tenant_cannot_stake_someone_elses_tokens() {
    let w = World::new("atk-stake").await;
    w.registered().await;
    // The victim (the example's proposer) approved the registry for more than its own
    // proposal needs; a tenant names the victim as proposer of its own proposal.
    stake(&w.chain, open(500)).await;
    let victim = Chain::address(PROPOSER);
    let before = w.chain.balance(victim).await;
    let mut v = example("01-proposal.yaml", w.n());
    v["metadata"]["name"] = json!("on-your-dime");
    v["spec"]["proposer"] = json!(victim.to_string());
    v["spec"]["stake"] = json!(open(400).to_string());
    v["spec"]["governance"] = json!({"quorumBps": 400, "approvalThresholdBps": 5001});
    w.mps
        .create(&PostParams::default(), &serde_json::from_value(v).unwrap())
        .await
        .unwrap();
    w.settle().await;
    let (phase, why) = proposal_reason(&w, "on-your-dime").await;
    assert_eq!(
        w.chain.balance(victim).await,
        before,
        "the victim's tokens moved ({why})"
    );
    assert_eq!(phase, Some(ModelProposalPhase::Pending), "{why}");
    assert!(why.starts_with("AwaitingStakeAuthorization"), "{why}");
    // Deleting it costs the victim nothing either.
    w.mps
        .delete("on-your-dime", &Default::default())
        .await
        .unwrap();
    w.settle().await;
    assert_eq!(w.chain.balance(victim).await, before);
}

#[tokio::test]
async fn a_proposal_cannot_lower_the_quorum_below_the_floor() {
    let w = World::new("atk-quorum").await;
    w.registered().await;
    stake(&w.chain, open(100)).await;
    let mut p = proposal_spec(&w.chain, w.n(), "self-approved", open(100)).await;
    p.spec.governance.quorum_bps = Some(1);
    p.spec.governance.approval_threshold_bps = Some(1);
    authorize(&w.chain, &mut p).await;
    let before = w.chain.balance(Chain::address(PROPOSER)).await;
    w.mps.create(&PostParams::default(), &p).await.unwrap();
    w.settle().await;
    let (phase, why) = proposal_reason(&w, "self-approved").await;
    assert_eq!(
        w.chain.balance(Chain::address(PROPOSER)).await,
        before,
        "registered with quorum 1 bps ({why})"
    );
    assert_eq!(phase, Some(ModelProposalPhase::Pending), "{why}");
    assert!(why.starts_with("GovernanceBelowFloor"), "{why}");
}

#[tokio::test]
async fn a_pool_beyond_the_mandates_reward_budget_is_not_paid() {
    let w = World::new("atk-budget").await;
    // The example mandate's reward budget is 2000 OPEN; this Datanet asks 5000 per version.
    w.dns
        .patch(
            DATANET,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"rewards": {"pool": open(5_000).to_string()}}})),
        )
        .await
        .unwrap();
    w.approve().await;
    let before = w.balances().await;
    w.settle().await;
    // Were a curation Job started, run it to see what would be paid.
    let jobs = w.curation_jobs().await;
    if let Some(j) = jobs.first() {
        run_curation_pod(&w.client, curate_bin(), j).await;
        w.settle().await;
    }
    assert_unmoved(before, w.balances().await, "a pool beyond the budget");
    let d = w.datanet().await;
    let why = ready_reason(&d.status.unwrap().conditions);
    assert!(why.starts_with("RewardBudgetExceeded"), "{why}");
    assert!(
        jobs.is_empty(),
        "no curation runs for a pool nobody can pay"
    );
    assert!(warned(&w, "RewardBudgetExceeded").await);
}

#[tokio::test]
async fn a_forged_proposal_status_funds_nothing() {
    // The vote is open, nothing is ratified; the tenant writes `Approved` into the proposal's
    // status (anyone with `patch modelproposals/status` can) to open the Datanet's gate.
    let w = World::new("atk-mpstatus").await;
    w.registered().await;
    let before = w.balances().await;
    w.mps
        .patch_status(
            "clause-review",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Approved"}})),
        )
        .await
        .unwrap();
    w.settle().await;
    // Were a curation Job started, run it to see what would be paid.
    let jobs = w.curation_jobs().await;
    if let Some(j) = jobs.first() {
        run_curation_pod(&w.client, curate_bin(), j).await;
        w.settle().await;
    }
    assert_unmoved(before, w.balances().await, "a forged proposal status");
    assert_eq!(w.published().await.0, B256::ZERO, "nothing published");
    // The budget comes from the chain, where the mandate is not ratified: nothing to spend.
    let why = ready_reason(&w.datanet().await.status.unwrap().conditions);
    assert!(
        why.starts_with("RewardBudgetExceeded") || why.starts_with("ProposalNotApproved"),
        "{why}"
    );
    assert!(
        jobs.is_empty(),
        "no curation for a mandate the chain has not ratified"
    );
}

/// Training results: the trainer's report is the tenant's (its pod runs the tenant's job and
/// may patch that job's status), so nothing in it decides an outcome. "forged" never trains:
/// its output is the untrained base, and its status claims `exactMatch` 1.0; "loosened"
/// trains four honest steps under job targets looser than the rubric (`loss <= 100`,
/// `exactMatch >= 0`). Both are judged by the operator's own evaluation on held-out records
/// against the proposal's rubric (`loss <= 2.5`, `exactMatch >= 0.6`): both miss it, and the
/// chain records them as not passed, with the digest of the weights that were evaluated.
#[tokio::test]
async fn a_self_reported_metric_or_a_loosened_target_passes_nothing() {
    use modelcommons_crds::finetune::{FineTuneJob, FineTuneJobPhase};
    use modelcommons_operator::ledger::bindings::ModelRegistry;
    use modelcommons_operator::ledger::ids::training_id;
    let w = World::curated("atk-train").await;
    let after_curation = w.balances().await;
    let dir = tempfile::tempdir_in(w.store.parent().unwrap()).unwrap();
    let ftjs: Api<FineTuneJob> = Api::namespaced(w.client.clone(), w.n());
    let mut forged = small_finetune(w.n(), &dir.path().join("forged"), 1, 4);
    forged["metadata"]["name"] = json!("forged");
    let mut loosened = small_finetune(w.n(), &dir.path().join("loosened"), 1, 4);
    loosened["metadata"]["name"] = json!("loosened");
    loosened["spec"]["targets"] = json!([
        {"name": "loss", "direction": "Minimize", "threshold": "100"},
        {"name": "exactMatch", "direction": "Maximize", "threshold": "0"}]);
    for f in [forged, loosened] {
        ftjs.create(&PostParams::default(), &serde_json::from_value(f).unwrap())
            .await
            .unwrap();
    }
    for name in ["forged", "loosened"] {
        wait(&ftjs, name, "its trainer Job", |f| {
            f.status.as_ref().is_some_and(|s| s.job_name.is_some())
        })
        .await;
    }
    // "forged": the base copied as the "trained" model, and a report no training made.
    let out = dir.path().join("forged/out");
    std::fs::create_dir_all(&out).unwrap();
    for f in std::fs::read_dir(dir.path().join("forged/base")).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), out.join(f.file_name())).unwrap();
    }
    ftjs.patch_status(
        "forged",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"result": {
            "modelDigest": format!("sha256:{}", "ab".repeat(32)),
            "modelUri": format!("file://{}", out.display()),
            "metrics": [{"name": "loss", "value": "0.01"}, {"name": "exactMatch", "value": "1.0"}],
            "targetsMet": true}}})),
    )
    .await
    .unwrap();
    // "loosened": the real trainer, four steps.
    run_pod(
        &modelcommons_testbed::workspace_binary("modelcommons-trainer"),
        &job_of(&w.client, w.n(), "loosened").await,
        cluster().await.unwrap().kubeconfig(),
    )
    .await;
    for name in ["forged", "loosened"] {
        run_evaluation_pod(&w.client, &ftjs, name, TRUSTED).await;
    }
    let registry = ModelRegistry::new(
        w.chain.suite.registry,
        w.chain.as_(OPERATOR).provider().clone(),
    );
    for name in ["forged", "loosened"] {
        let f = wait(&ftjs, name, "judged and recorded", |f| {
            f.status.as_ref().is_some_and(|s| {
                matches!(
                    s.phase,
                    Some(FineTuneJobPhase::Succeeded | FineTuneJobPhase::TargetsMissed)
                ) && s.chain.is_some()
            })
        })
        .await;
        let st = f.status.clone().unwrap();
        assert_eq!(
            st.phase,
            Some(FineTuneJobPhase::TargetsMissed),
            "{name}: {:?}",
            st.conditions
        );
        let msg = ready_reason(&st.conditions);
        assert!(
            msg.contains("exactMatch") && msg.contains("0.6"),
            "{name}: judged by the rubric: {msg}"
        );
        let rec = registry
            .trainings(training_id(
                &f.uid().unwrap(),
                f.metadata.generation.unwrap(),
            ))
            .call()
            .await
            .unwrap();
        assert!(!rec.passed, "{name}: recorded as not passed");
        let ev = st.evaluation.clone().unwrap();
        assert_eq!(
            rec.modelDigest.to_string().trim_start_matches("0x"),
            ev.model_digest.unwrap().trim_start_matches("sha256:"),
            "{name}: the chain has the digest of the weights evaluated"
        );
    }
    // The forged digest went nowhere; the evaluated one is the base's own.
    let forged = ftjs.get("forged").await.unwrap().status.unwrap();
    assert_ne!(
        forged.evaluation.unwrap().model_digest.unwrap(),
        format!("sha256:{}", "ab".repeat(32))
    );
    assert_eq!(w.balances().await, after_curation, "no token moved");
}

/// A base model that is not the one the job names (`baseModel.sha256`): the trainer refuses
/// to start on it, and a report forged past that refusal is caught by the operator's
/// evaluation, which hashes the base it loads — `BaseModelDigestMismatch`, nothing recorded.
#[tokio::test]
async fn a_base_model_other_than_the_one_named_is_refused() {
    use modelcommons_crds::finetune::{FineTuneJob, FineTuneJobPhase};
    use modelcommons_operator::ledger::bindings::ModelRegistry;
    use modelcommons_operator::ledger::ids::training_id;
    let w = World::curated("atk-base").await;
    let dir = tempfile::tempdir_in(w.store.parent().unwrap()).unwrap();
    let ftjs: Api<FineTuneJob> = Api::namespaced(w.client.clone(), w.n());
    let mut f = small_finetune(w.n(), dir.path(), 1, 4);
    f["metadata"]["name"] = json!("other-base");
    // The spec names the example's base (init --seed 7); the directory holds another one.
    let other = std::process::Command::new(modelcommons_testbed::workspace_binary(
        "modelcommons-trainer",
    ))
    .args([
        "init",
        "--out",
        dir.path().join("base").to_str().unwrap(),
        "--seed",
        "8",
    ])
    .output()
    .unwrap();
    assert!(other.status.success());
    ftjs.create(&PostParams::default(), &serde_json::from_value(f).unwrap())
        .await
        .unwrap();
    let job = job_of(&w.client, w.n(), "other-base").await;
    // The trainer, as the pod runs it, refuses before training.
    let c = container(&job);
    let mut cmd = tokio::process::Command::new(modelcommons_testbed::workspace_binary(
        "modelcommons-trainer",
    ));
    cmd.args(c.args.clone().unwrap_or_default())
        .env("KUBECONFIG", cluster().await.unwrap().kubeconfig())
        .env("MODELCOMMONS_REPORT_INTERVAL_SECONDS", "0");
    for e in c.env.clone().unwrap_or_default() {
        if let Some(v) = e.value {
            cmd.env(e.name, v);
        }
    }
    let out = cmd.output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the trainer trained on another base");
    assert!(stderr.contains("BaseModelDigestMismatch"), "{stderr}");
    assert!(
        !dir.path().join("out/model.safetensors").exists(),
        "nothing was written"
    );
    // A report forged past the refusal (the base copied as the "trained" model).
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    for f in std::fs::read_dir(dir.path().join("base")).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), out.join(f.file_name())).unwrap();
    }
    ftjs.patch_status(
        "other-base",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"status": {"result": {"modelDigest": format!("sha256:{}", "cd".repeat(32)),
            "metrics": [{"name": "exactMatch", "value": "1.0"}]}}}),
        ),
    )
    .await
    .unwrap();
    run_evaluation_pod(&w.client, &ftjs, "other-base", TRUSTED).await;
    let f = wait(&ftjs, "other-base", "Failed", |f| {
        f.status.as_ref().and_then(|s| s.phase) == Some(FineTuneJobPhase::Failed)
    })
    .await;
    let st = f.status.clone().unwrap();
    let msg = ready_reason(&st.conditions);
    assert!(msg.starts_with("BaseModelDigestMismatch"), "{msg}");
    assert!(st.chain.is_none(), "nothing recorded");
    let rec = ModelRegistry::new(
        w.chain.suite.registry,
        w.chain.as_(OPERATOR).provider().clone(),
    )
    .trainings(training_id(
        &f.uid().unwrap(),
        f.metadata.generation.unwrap(),
    ))
    .call()
    .await
    .unwrap();
    assert!(rec.modelId.is_zero(), "no training record on chain");
    let deadline = Instant::now() + Duration::from_secs(20);
    while events(&w.client, w.n(), "other-base", "BaseModelDigestMismatch").await == 0 {
        assert!(Instant::now() < deadline, "a Warning event says why");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The Datanet's version bookkeeping: a tenant rewrites `status.manifestSha256` and
/// `status.version` after version 1 was published. Which manifests are published is the
/// operator's own record (in its trusted namespace), so no version 2 is curated and nothing
/// is paid twice; the status is written back.
#[tokio::test]
async fn a_rewritten_version_status_cuts_no_new_version() {
    let w = World::curated("atk-version").await;
    let (_, digest) = w.manifest_text().await;
    let after = w.balances().await;
    w.dns
        .patch_status(
            DATANET,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"manifestSha256": "0".repeat(64), "version": 1}})),
        )
        .await
        .unwrap();
    w.settle().await;
    // Play the kubelet for any curation the operator started meanwhile.
    let jobs: Vec<Job> = w
        .curation_jobs()
        .await
        .into_iter()
        .filter(|j| {
            j.labels()
                .get("modelcommons.dev/datanet-version")
                .map(String::as_str)
                == Some("2")
        })
        .collect();
    for job in &jobs {
        run_curation_pod(&w.client, curate_bin(), job).await;
    }
    w.settle().await;
    assert_eq!(w.balances().await, after, "nothing moved");
    assert!(jobs.is_empty(), "a version 2 was curated");
    let st = w.datanet().await.status.unwrap();
    assert_eq!(
        (st.version, st.manifest_sha256.as_deref()),
        (Some(1), Some(digest.as_str())),
        "the status is the operator's again"
    );
}

/// Training under a mandate the vote has not ratified: a second proposal, still voting, gets
/// its status forged to `Approved`, and a FineTuneJob under it names the Datanet published
/// for the first. No trainer Job is created: ratification is read from the chain, and the
/// Datanet must be the job's own proposal's.
#[tokio::test]
async fn a_forged_approval_or_another_mandates_data_trains_nothing() {
    use modelcommons_crds::finetune::FineTuneJob;
    let w = World::curated("atk-unratified").await;
    stake(&w.chain, open(100)).await;
    w.mps
        .create(
            &PostParams::default(),
            &proposal_spec(&w.chain, w.n(), "unratified", open(100)).await,
        )
        .await
        .unwrap();
    wait(&w.mps, "unratified", "Voting", |p| {
        phase(p) == Some(ModelProposalPhase::Voting)
    })
    .await;
    let forge = || async {
        w.mps
            .patch_status(
                "unratified",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"phase": "Approved"}})),
            )
            .await
            .unwrap();
    };
    forge().await;
    let dir = tempfile::tempdir_in(w.store.parent().unwrap()).unwrap();
    let ftjs: Api<FineTuneJob> = Api::namespaced(w.client.clone(), w.n());
    let mut f = small_finetune(w.n(), dir.path(), 1, 4);
    f["metadata"]["name"] = json!("unratified-training");
    f["spec"]["proposalRef"]["name"] = json!("unratified");
    ftjs.create(&PostParams::default(), &serde_json::from_value(f).unwrap())
        .await
        .unwrap();
    // The proposal controller writes the status back; the tenant keeps forging it.
    for _ in 0..10 {
        forge().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let f = ftjs.get("unratified-training").await.unwrap();
    let gated = serde_json::to_string(&f.status.as_ref().map(|s| &s.conditions)).unwrap();
    assert!(
        Api::<Job>::namespaced(w.client.clone(), w.n())
            .get_opt("unratified-training-trainer")
            .await
            .unwrap()
            .is_none(),
        "a trainer Job was created: {gated}"
    );
    assert!(
        gated.contains("ProposalNotApproved") || gated.contains("DatanetOfAnotherProposal"),
        "{gated}"
    );
}

/// A trainer Job created by the tenant before the FineTuneJob, under the name the operator
/// would give it, its environment naming other data (another root, a directory of easy
/// "held-out" records). Only the version number is taken from it: the job's root and the
/// records it is judged on are those the operator recorded for that version.
#[tokio::test]
async fn a_precreated_trainer_job_does_not_choose_the_lineage() {
    use modelcommons_crds::finetune::FineTuneJob;
    let w = World::curated("atk-lineage").await;
    let real = w.datanet().await.status.unwrap();
    let dir = tempfile::tempdir_in(w.store.parent().unwrap()).unwrap();
    let forged_root = format!("0x{}", "ee".repeat(32));
    let job: Job = serde_json::from_value(json!({
        "metadata": {"name": "lineage-trainer", "namespace": w.n(),
            "labels": {"modelcommons.dev/instance": "lineage"}},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{
            "name": "trainer", "image": "attacker.example/trainer:latest",
            "env": [
                {"name": "MODELCOMMONS_DATASET_VERSION", "value": "1"},
                {"name": "MODELCOMMONS_DATASET_ROOT", "value": forged_root},
                {"name": "MODELCOMMONS_DATASET_URI", "value": format!("file://{}/easy", dir.path().display())}]}]}}}
    }))
    .unwrap();
    Api::<Job>::namespaced(w.client.clone(), w.n())
        .create(&PostParams::default(), &job)
        .await
        .unwrap();
    let ftjs: Api<FineTuneJob> = Api::namespaced(w.client.clone(), w.n());
    let mut f = small_finetune(w.n(), dir.path(), 1, 4);
    f["metadata"]["name"] = json!("lineage");
    ftjs.create(&PostParams::default(), &serde_json::from_value(f).unwrap())
        .await
        .unwrap();
    let f = wait(&ftjs, "lineage", "its lineage", |f| {
        f.status
            .as_ref()
            .is_some_and(|s| s.dataset_version.is_some())
    })
    .await;
    let st = f.status.unwrap();
    assert_eq!(st.dataset_version, Some(1));
    assert_eq!(
        st.dataset_root, real.dataset_root,
        "the operator's root, not the Job's"
    );
}

/// After the run, the tenant edits where its FineTuneJob's model was written and which base
/// it started from — so that the evaluation (or a re-evaluation) would judge weights trained
/// elsewhere against another baseline. The API server refuses both edits (CEL
/// `self == oldSelf`) with a message that says what to do; the spec is unchanged.
#[tokio::test]
async fn a_finetune_jobs_output_and_base_cannot_be_edited() {
    use modelcommons_crds::finetune::FineTuneJob;
    let w = World::new("atk-edit").await;
    let dir = tempfile::tempdir_in(w.store.parent().unwrap()).unwrap();
    let ftjs: Api<FineTuneJob> = Api::namespaced(w.client.clone(), w.n());
    let mut f = small_finetune(w.n(), dir.path(), 1, 4);
    f["metadata"]["name"] = json!("edited");
    let created = ftjs
        .create(&PostParams::default(), &serde_json::from_value(f).unwrap())
        .await
        .unwrap();
    let elsewhere = format!("file://{}/elsewhere", dir.path().display());
    let edits = [
        (
            json!({"spec": {"outputUri": elsewhere}}),
            "outputUri is immutable",
        ),
        (
            json!({"spec": {"baseModel": {"sha256": "ab".repeat(32)}}}),
            "baseModel is immutable",
        ),
        (
            json!({"spec": {"baseModel": {"uri": elsewhere}}}),
            "baseModel is immutable",
        ),
    ];
    for (patch, says) in edits {
        match ftjs
            .patch("edited", &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Err(kube::Error::Api(e)) => {
                assert_eq!(e.code, 422, "{patch}: {e:?}");
                assert!(e.message.contains(says), "{patch}: {}", e.message);
            }
            other => panic!("{patch} was accepted: {other:?}"),
        }
    }
    let now = ftjs.get("edited").await.unwrap();
    assert_eq!(now.spec.output_uri, created.spec.output_uri);
    assert_eq!(now.spec.base_model, created.spec.base_model);
}

/// The tenant raises its running trainer Job's `activeDeadlineSeconds` (a Job's deadline is
/// mutable) to train on past the GPU time reserved for it at admission — time the mandate's
/// budget would pay. The operator sets it back to the reservation, with a Warning event.
#[tokio::test]
async fn a_raised_trainer_deadline_is_set_back() {
    use modelcommons_crds::finetune::FineTuneJob;
    let w = World::curated("atk-deadline").await;
    let dir = tempfile::tempdir_in(w.store.parent().unwrap()).unwrap();
    let ftjs: Api<FineTuneJob> = Api::namespaced(w.client.clone(), w.n());
    let mut f = small_finetune(w.n(), dir.path(), 1, 4);
    f["metadata"]["name"] = json!("overtime");
    ftjs.create(&PostParams::default(), &serde_json::from_value(f).unwrap())
        .await
        .unwrap();
    let job = job_of(&w.client, w.n(), "overtime").await;
    let reserved = job.spec.as_ref().unwrap().active_deadline_seconds.unwrap();
    assert!(
        reserved <= 24 * 3600,
        "the default deadline caps it: {reserved}"
    );
    let jobs: Api<Job> = Api::namespaced(w.client.clone(), w.n());
    jobs.patch(
        "overtime-trainer",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"activeDeadlineSeconds": 10_000_000}})),
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = jobs.get("overtime-trainer").await.unwrap();
        if now.spec.unwrap().active_deadline_seconds == Some(reserved) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the raised deadline stayed: the job may run past its reservation of {reserved} s"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while events(&w.client, w.n(), "overtime", "DeadlineRestored").await == 0 {
        assert!(Instant::now() < deadline, "a Warning event says so");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A FineTuneJob's status forged to `Succeeded` with the digest of weights of the tenant's
/// choosing (anyone with `patch finetunejobs/status` — the trainer pod's own token has it):
/// a ModelDeployment of that job serves nothing. What it serves comes from the operator's
/// judgment of the job (its record in the trusted namespace, and the chain record beside it),
/// never from the job's status; here the operator never judged the job, so the deployment
/// waits, says so, and no server Deployment exists.
#[tokio::test]
async fn a_forged_training_status_serves_nothing() {
    use k8s_openapi::api::apps::v1::Deployment;
    use modelcommons_crds::deployment::ModelDeployment;
    use modelcommons_crds::finetune::FineTuneJob;
    use sha2::Digest;
    let chain = Chain::new().await;
    let cluster = cluster().await.unwrap();
    let client = cluster.client().await.unwrap();
    install_crds(&client, &modelcommons_crds::all_crds())
        .await
        .unwrap();
    trusted(&client).await;
    let ns = TestNamespace::create(&client, "atk-serve").await.unwrap();
    let n = ns.name();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let ftjs: Api<FineTuneJob> = Api::namespaced(client.clone(), n);
    let mut f = small_finetune(n, &dir.path().join("job"), 1, 4);
    f["metadata"]["name"] = json!("never-judged");
    ftjs.create(&PostParams::default(), &serde_json::from_value(f).unwrap())
        .await
        .unwrap();
    // The tenant's weights (the untrained base) where the job's output goes, and a status
    // that says the job succeeded with them.
    let out = dir.path().join("job/out");
    std::fs::create_dir_all(&out).unwrap();
    for f in std::fs::read_dir(dir.path().join("job/base")).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), out.join(f.file_name())).unwrap();
    }
    let digest: String =
        sha2::Sha256::digest(std::fs::read(out.join("model.safetensors")).unwrap())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
    ftjs.patch_status(
        "never-judged",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Succeeded",
            "result": {"modelDigest": digest, "modelUri": format!("file://{}", out.display()),
                "metrics": [{"name": "exactMatch", "value": "1.0"}], "targetsMet": true},
            "evaluation": {"modelDigest": format!("sha256:{digest}"), "targetsMet": true}}})),
    )
    .await
    .unwrap();
    let mds: Api<ModelDeployment> = Api::namespaced(client.clone(), n);
    let md: ModelDeployment = serde_json::from_value(json!({
        "apiVersion": "modelcommons.dev/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": "forged-serve", "namespace": n},
        "spec": {"modelRef": {"fineTuneJob": "never-judged"}, "replicas": 1, "access": {"public": true},
            "resources": {"gpus": 0, "cpu": "1", "memory": "1Gi"}}
    }))
    .unwrap();
    mds.create(&PostParams::default(), &md).await.unwrap();
    let ctx = context(&client, n, &chain, &store);
    let controller = tokio::spawn(deployment::run(ctx));
    let m = wait(&mds, "forged-serve", "a Ready condition", |m| {
        m.status
            .as_ref()
            .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Ready"))
    })
    .await;
    controller.abort();
    let st = m.status.unwrap();
    let ready = st.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "ModelNotReady"),
        "{}",
        ready.message
    );
    assert!(
        ready.message.contains("operator's evaluation"),
        "says what it waits for: {}",
        ready.message
    );
    assert!(
        Api::<Deployment>::namespaced(client.clone(), n)
            .get_opt("forged-serve")
            .await
            .unwrap()
            .is_none(),
        "no server runs the forged model"
    );
    assert_eq!(st.latest_revision, None, "no revision is the forged digest");
}
