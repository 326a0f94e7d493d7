//! The lifecycle on the real control plane and a real anvil chain, with the operator's
//! controllers in this process and this test as token holders (votes with dev keys), as
//! contributors (claims with their keys) and as the kubelet for our pods (it runs the real
//! `curate`, trainer and `serve` binaries with the pods' args and env).
//!
//! - governance: a staked proposal waits for its stake, is registered, mirrors the tally,
//!   and is approved (queued and executed through the timelock, stake refunded), rejected
//!   (slashed), expired (no quorum, slashed) or — deleted while voting — withdrawn (finalizer);
//! - end to end: proposal `Approved` → Datanet curated with exact counts by reason, published
//!   on chain and claimed by a contributor with the proof from the reward map → FineTuneJob
//!   `Succeeded` with its result recorded on chain → ModelDeployment `Ready`, and a chat
//!   completion through the served model.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::lifecycle::*;
use crate::common::{Chain, Mined, OPERATOR, PROPOSER, VOTERS, open, stores};
use alloy::primitives::U256;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams};
use modelcommons_crds::datanet::DatanetPhase;
use modelcommons_crds::deployment::{ModelDeployment, ModelDeploymentPhase};
use modelcommons_crds::finetune::{FineTuneJob, FineTuneJobPhase};
use modelcommons_crds::proposal::{ModelProposal, ModelProposalPhase};
use modelcommons_operator::controller::deployment::KEYS_DIR;
use modelcommons_operator::controller::{datanet, deployment, finetune, proposal};
use modelcommons_operator::curate::CurationReport;
use modelcommons_operator::ledger::bindings::{ModelRegistry, RewardDistributor};
use modelcommons_operator::ledger::governance::Support;
use modelcommons_operator::ledger::ids::{datanet_version_id, model_id, training_id};
use modelcommons_testbed::{TestNamespace, cluster, install_crds, workspace_binary};
use serde_json::json;
use tokio::io::AsyncBufReadExt;

#[tokio::test]
async fn governance_approves_rejects_expires_and_withdraws_proposals() {
    let chain = Chain::new().await;
    for v in VOTERS {
        chain.wrap_and_delegate(v, open(1_000)).await;
    }
    let cluster = cluster().await.unwrap();
    let client = cluster.client().await.unwrap();
    install_crds(&client, &modelcommons_crds::all_crds())
        .await
        .unwrap();
    let ns = TestNamespace::create(&client, "gov").await.unwrap();
    let n = ns.name();
    let store = tempfile::tempdir().unwrap();
    let ctx = context(&client, n, &chain, store.path());
    let controller = tokio::spawn(proposal::run(ctx));

    let mps: Api<ModelProposal> = Api::namespaced(client.clone(), n);
    let names = ["approved", "defeated", "silent", "withdrawn"];
    let each = open(100);
    for name in names {
        mps.create(
            &PostParams::default(),
            &proposal_spec(&chain, n, name, each).await,
        )
        .await
        .unwrap();
    }
    // No allowance yet: each waits for its stake and says how to give it.
    for name in names {
        let p = wait(&mps, name, "AwaitingStake", |p| {
            ready_reason(&p.status.clone().unwrap_or_default().conditions)
                .starts_with("AwaitingStake")
        })
        .await;
        assert_eq!(phase(&p), Some(ModelProposalPhase::Pending));
        let msg = ready_reason(&p.status.unwrap().conditions);
        assert!(
            msg.contains(&each.to_string()) && msg.contains(&chain.suite.registry.to_string()),
            "{msg}"
        );
        assert!(
            p.metadata
                .finalizers
                .unwrap_or_default()
                .contains(&"modelcommons.dev/withdraw".to_string())
        );
    }
    let proposer = Chain::address(PROPOSER);
    let treasury = chain.suite.treasury;
    // Measured before the stake exists: the operator escrows it as soon as it may.
    let before = chain.balance(proposer).await;
    stake(&chain, each * U256::from(4u64)).await;
    // Slashes and the approved mandate's reward budget move the treasury (the timelock) only
    // with decisions, later.
    let treasury_before = chain.balance(treasury).await;
    let mut ids = std::collections::BTreeMap::new();
    for name in names {
        let p = wait(&mps, name, "Voting", |p| {
            phase(p) == Some(ModelProposalPhase::Voting)
        })
        .await;
        let st = p.status.clone().unwrap();
        let c = st.chain.clone().unwrap();
        assert!(c.register_tx.is_some() && c.model_id.is_some(), "{c:?}");
        ids.insert(name, proposal_id(&p));
    }
    assert_eq!(
        chain.balance(proposer).await,
        before,
        "every stake is escrowed (funded, then taken)"
    );

    chain.mine(chain.params.voting_delay_blocks + 1);
    chain.vote(VOTERS[0], ids["approved"], Support::For).await;
    chain
        .vote_by_signature(VOTERS[1], ids["approved"], Support::For)
        .await;
    chain
        .vote(VOTERS[2], ids["approved"], Support::Against)
        .await;
    chain
        .vote(VOTERS[0], ids["defeated"], Support::Against)
        .await;
    chain
        .vote(VOTERS[1], ids["defeated"], Support::Against)
        .await;
    chain.vote(VOTERS[2], ids["defeated"], Support::For).await;
    chain.vote(VOTERS[0], ids["withdrawn"], Support::For).await;

    // The tally is mirrored from the chain.
    let p = wait(&mps, "approved", "the tally", |p| {
        p.status
            .as_ref()
            .and_then(|s| s.tally.as_ref())
            .is_some_and(|t| {
                t.for_votes == open(2_000).to_string() && t.against_votes == open(1_000).to_string()
            })
    })
    .await;
    let t = p.status.unwrap().tally.unwrap();
    assert_eq!(t.abstain_votes, "0");
    assert!(t.quorum_reached);
    assert_eq!(
        t.quorum_votes,
        Some((open(3_000) * U256::from(400u64) / U256::from(10_000u64)).to_string())
    );

    // Deleting a proposal while its vote runs withdraws it on chain before the object goes.
    mps.delete("withdrawn", &DeleteParams::default())
        .await
        .unwrap();
    let deadline = Instant::now() + TIMEOUT;
    while mps.get_opt("withdrawn").await.unwrap().is_some() {
        assert!(
            Instant::now() < deadline,
            "the withdrawn proposal was never released"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let registry = ModelRegistry::new(chain.suite.registry, chain.as_(OPERATOR).provider().clone());

    chain.mine(u64::from(chain.params.voting_period_blocks) + 1);
    wait(&mps, "approved", "queued in the timelock", |p| {
        ready_reason(&p.status.clone().unwrap_or_default().conditions)
            .starts_with("AwaitingTimelock")
    })
    .await;
    chain.wait_seconds(chain.params.timelock_delay_seconds + 1);
    let approved = wait(&mps, "approved", "Approved", |p| {
        phase(p) == Some(ModelProposalPhase::Approved)
    })
    .await;
    let defeated = wait(&mps, "defeated", "Rejected", |p| {
        phase(p) == Some(ModelProposalPhase::Rejected)
    })
    .await;
    let silent = wait(&mps, "silent", "Expired", |p| {
        phase(p) == Some(ModelProposalPhase::Expired)
    })
    .await;

    // Decided against is final: GitOps tools show it as Degraded, with the reason.
    for p in [&defeated, &silent] {
        let stalled = p
            .status
            .as_ref()
            .unwrap()
            .conditions
            .iter()
            .find(|c| c.type_ == "Stalled");
        assert_eq!(
            stalled.map(|c| c.status.as_str()),
            Some("True"),
            "{}",
            p.name_any()
        );
        assert_eq!(argocd_health(&serde_json::to_vec(p).unwrap()), "Degraded");
    }
    assert_eq!(
        argocd_health(&serde_json::to_vec(&approved).unwrap()),
        "Healthy"
    );

    let slash = each * U256::from(chain.params.slash_bps) / U256::from(10_000u64);
    let a = approved.status.clone().unwrap().chain.unwrap();
    assert_eq!(a.stake_refunded, Some(each.to_string()));
    assert_eq!(a.stake_slashed, Some("0".into()));
    assert!(a.decision_tx.is_some());
    for p in [&defeated, &silent] {
        let c = p.status.clone().unwrap().chain.unwrap();
        assert_eq!(c.stake_slashed, Some(slash.to_string()), "{}", p.name_any());
        assert_eq!(c.stake_refunded, Some((each - slash).to_string()));
    }
    assert!(!silent.status.clone().unwrap().tally.unwrap().quorum_reached);
    // To the wei: the approved stake back, three slashes (defeated, silent, withdrawn while
    // voting) to the treasury.
    assert_eq!(
        chain.balance(proposer).await,
        before + each * U256::from(4u64) - slash * U256::from(3u64)
    );
    // The treasury (the timelock) also paid the approved mandate's reward budget into the
    // registry's escrow, in the same vote.
    let budget =
        U256::from_str_radix(approved.spec.mandate.reward_budget.as_deref().unwrap(), 10).unwrap();
    assert!(!budget.is_zero());
    assert_eq!(
        chain.balance(treasury).await,
        treasury_before + slash * U256::from(3u64) - budget
    );
    assert_eq!(chain.balance(chain.suite.registry).await, budget);
    let withdrawn = registry
        .ModelWithdrawn_filter()
        .from_block(0)
        .query()
        .await
        .unwrap();
    assert_eq!(withdrawn.len(), 1, "withdrawn once");
    assert_eq!(withdrawn[0].0.slashed, slash);
    assert_eq!(
        registry
            .models(withdrawn[0].0.modelId)
            .call()
            .await
            .unwrap()
            .status,
        4
    );
    let budget = approved.status.clone().unwrap().budget.unwrap();
    assert_eq!(
        (
            budget.gpu_hours_used.as_str(),
            budget.gpu_hours_left.as_str()
        ),
        ("0", "48")
    );

    // One registration event and one chain registration per proposal; a decided proposal is
    // left alone.
    for name in ["approved", "defeated", "silent"] {
        assert_eq!(events(&client, n, name, "Registered").await, 1, "{name}");
    }
    assert_eq!(
        registry
            .ModelRegistered_filter()
            .from_block(0)
            .query()
            .await
            .unwrap()
            .len(),
        4
    );
    let rv = mps.get("approved").await.unwrap().metadata.resource_version;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        mps.get("approved").await.unwrap().metadata.resource_version,
        rv
    );
    delete_proposals(&mps).await;
    controller.abort();
    ns.delete().await.unwrap();
}

#[tokio::test]
async fn the_lifecycle_runs_end_to_end() {
    let _one_at_a_time = FULL_TRAINING.lock().await;
    let chain = Chain::new().await;
    for v in VOTERS {
        chain.wrap_and_delegate(v, open(1_000)).await;
    }
    let cluster = cluster().await.unwrap();
    let client = cluster.client().await.unwrap();
    install_crds(&client, &modelcommons_crds::all_crds())
        .await
        .unwrap();
    let ns = TestNamespace::create(&client, "e2e").await.unwrap();
    let n = ns.name();
    let dir = tempfile::tempdir().unwrap();
    let (data, store) = (dir.path().join("data"), dir.path().join("store"));
    std::fs::create_dir_all(&data).unwrap();
    // Version 2 of the Datanet is read from S3 (a real S3 server); the operator reads its
    // manifest with the settings of its own environment.
    let s3 = stores::s3().await;
    trusted(&client).await;
    let mut ctx = context(&client, n, &chain, &store);
    let config = std::sync::Arc::make_mut(&mut ctx.config);
    config.objects = s3.fetch();
    config.egress = s3.egress();
    let controllers = [
        tokio::spawn(proposal::run(ctx.clone())),
        tokio::spawn(datanet::run(ctx.clone())),
        tokio::spawn(finetune::run(ctx.clone())),
        tokio::spawn(deployment::run(ctx.clone())),
    ];

    // 1. The proposal, staked and approved by token holders.
    let mps: Api<ModelProposal> = Api::namespaced(client.clone(), n);
    stake(&chain, open(100)).await;
    mps.create(
        &PostParams::default(),
        &proposal_spec(&chain, n, "clause-review", open(100)).await,
    )
    .await
    .unwrap();

    // The Datanet waits for the approval.
    let (manifest, dns) = create_datanet(&client, n, &data).await;
    let d = wait(&dns, "clause-review-data", "Collecting", |d| {
        d.status.as_ref().and_then(|s| s.phase) == Some(DatanetPhase::Collecting)
    })
    .await;
    assert!(ready_reason(&d.status.clone().unwrap().conditions).starts_with("ProposalNotApproved"));
    // Waiting for a vote is progress, not a fault: GitOps tools show it as Progressing.
    let reconciling = d
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "Reconciling");
    assert_eq!(
        reconciling.map(|c| (c.status.as_str(), c.reason.as_str())),
        Some(("True", "ProposalNotApproved"))
    );
    assert_eq!(
        argocd_health(&serde_json::to_vec(&d).unwrap()),
        "Progressing"
    );
    let p = approve(&chain, &mps, "clause-review").await;
    let model = model_id(&p.uid().unwrap());
    gitops_ready(&cluster, n, "modelproposal/clause-review").await;

    // 2. Curation runs as a Job of the operator's image in its trusted namespace; this test
    // runs it as the kubelet.
    let job = curation_job_of(&client, TRUSTED, n, "clause-review-data", None).await;
    let c = container(&job);
    assert_eq!(c.args.as_ref().unwrap()[0], "curate");
    assert_eq!(
        job.spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .automount_service_account_token,
        Some(false),
        "the curation pod has no API access"
    );
    let out = run_curation_pod(
        &client,
        Path::new(env!("CARGO_BIN_EXE_modelcommons-operator")),
        &job,
    )
    .await;
    assert!(out.contains("version 1"), "{out}");
    let d = wait(&dns, "clause-review-data", "Ready", |d| {
        d.status.as_ref().and_then(|s| s.phase) == Some(DatanetPhase::Ready)
    })
    .await;
    gitops_ready(&cluster, n, "datanet/clause-review-data").await;
    let st = d.status.clone().unwrap();
    let counts = st.counts.clone().unwrap();
    let by = |r: &str| counts.rejected_by_reason.get(r).copied().unwrap_or(0);
    assert_eq!(
        (counts.total, counts.accepted, counts.rejected),
        (9, 5, 4),
        "{counts:?}"
    );
    assert_eq!(
        (
            by("Duplicate"),
            by("HashMismatch"),
            by("BadSignature"),
            by("NearDuplicate")
        ),
        (1, 1, 1, 1),
        "{counts:?}"
    );
    assert_eq!(st.version, Some(1));
    assert_eq!(
        st.reward_total.as_deref(),
        Some("500000000000000000000"),
        "the pool to the unit"
    );
    assert!(st.chain.as_ref().and_then(|c| c.tx_hash.as_ref()).is_some());
    // The version's reward root is on chain, funded with the pool.
    let dist_id = datanet_version_id(&d.uid().unwrap(), 1);
    let distributor = RewardDistributor::new(
        chain.suite.distributor,
        chain.as_(OPERATOR).provider().clone(),
    );
    let on_chain = distributor.distributions(dist_id).call().await.unwrap();
    assert_eq!(on_chain.root.to_string(), st.reward_root.clone().unwrap());
    assert_eq!(
        on_chain.contentRoot.to_string(),
        st.dataset_root.clone().unwrap()
    );
    // A contributor claims with the proof from the reward map.
    let report: CurationReport = serde_json::from_slice(
        &std::fs::read(path_of(st.reward_map_uri.as_ref().unwrap())).unwrap(),
    )
    .unwrap();
    let alice = manifest.contributions[0].contributor;
    let claim = report.proof_for(alice).unwrap();
    let before = chain.balance(alice).await;
    let as_alice = chain.as_(2);
    assert_eq!(as_alice.address(), alice);
    RewardDistributor::new(chain.suite.distributor, as_alice.provider())
        .claim(
            dist_id,
            claim.payout.index,
            alice,
            claim.payout.amount,
            claim.proof.clone(),
        )
        .mined()
        .await;
    assert_eq!(chain.balance(alice).await, before + claim.payout.amount);
    assert!(!claim.payout.amount.is_zero());
    let dataset = path_of(st.dataset_uri.as_ref().unwrap());
    for f in [
        "dataset.jsonl",
        "holdout.jsonl",
        "train/train.jsonl",
        "train/eval.jsonl",
    ] {
        assert!(dataset.join(f).is_file(), "{f}");
    }

    // The trainer's directory holds no held-out record: those are the operator's.
    let holdout = std::fs::read_to_string(dataset.join("holdout.jsonl")).unwrap();
    let train = std::fs::read_to_string(dataset.join("train/train.jsonl")).unwrap()
        + &std::fs::read_to_string(dataset.join("train/eval.jsonl")).unwrap();
    assert!(
        holdout.lines().count() >= 30,
        "a held-out split of the generated clauses"
    );
    assert!(holdout.lines().all(|l| !train.contains(l)));

    // 3. Fine-tuning on version 1 with the real trainer, judged by the operator's own
    // evaluation on the held-out records against the proposal's rubric; the result goes on
    // chain.
    let f = small_finetune(n, dir.path(), 1, 300);
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
    let mounts: Vec<String> = job
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .volumes
        .clone()
        .unwrap()
        .into_iter()
        .filter_map(|v| v.host_path.map(|h| h.path))
        .collect();
    assert!(
        mounts.contains(&format!("{}/train", dataset.display()))
            && !mounts.contains(&dataset.display().to_string()),
        "the trainer mounts the dataset's train/ only: {mounts:?}"
    );
    run_pod(
        &workspace_binary("modelcommons-trainer"),
        &job,
        cluster.kubeconfig(),
    )
    .await;
    let eval = run_evaluation_pod(&client, &ftjs, "clause-review-lora", TRUSTED).await;
    let f = wait(&ftjs, "clause-review-lora", "Succeeded", |f| {
        f.status.as_ref().and_then(|s| s.phase) == Some(FineTuneJobPhase::Succeeded)
    })
    .await;
    gitops_ready(&cluster, n, "finetunejob/clause-review-lora").await;
    let fst = f.status.clone().unwrap();
    // The rubric (loss <= 2.5, exactMatch >= 0.6) on the held-out records: the untrained base
    // misses it, the trained model meets it.
    let ev = fst.evaluation.clone().unwrap();
    let metric = |m: &[modelcommons_crds::common::MetricValue], name: &str| -> f64 {
        m.iter()
            .find(|v| v.name == name)
            .unwrap()
            .value
            .parse()
            .unwrap()
    };
    let (base_loss, base_em) = (
        metric(&ev.baseline, "loss"),
        metric(&ev.baseline, "exactMatch"),
    );
    let (loss, em) = (
        metric(&ev.metrics, "loss"),
        metric(&ev.metrics, "exactMatch"),
    );
    eprintln!(
        "held-out evaluation ({} records): base loss {base_loss:.3} exactMatch {base_em:.3}; trained loss {loss:.3} exactMatch {em:.3}",
        ev.examples.unwrap()
    );
    assert!(
        base_loss > 2.5 && base_em < 0.6,
        "the base model misses the rubric"
    );
    assert!(loss <= 2.5 && em >= 0.6, "the trained model meets it");
    assert_eq!(ev.targets_met, Some(true));
    assert_eq!(ev.namespace.as_deref(), Some(TRUSTED));
    assert_eq!(
        eval["examples"].as_u64(),
        Some(u64::from(ev.examples.unwrap()))
    );
    assert!(ready_reason(&fst.conditions).starts_with("TargetsMet"));
    assert!(
        fst.chain
            .as_ref()
            .and_then(|c| c.tx_hash.as_ref())
            .is_some()
    );
    let digest = ev.model_digest.clone().unwrap();
    let registry = ModelRegistry::new(chain.suite.registry, chain.as_(OPERATOR).provider().clone());
    let rec = registry
        .trainings(training_id(
            &f.uid().unwrap(),
            f.metadata.generation.unwrap(),
        ))
        .call()
        .await
        .unwrap();
    assert_eq!(rec.modelId, model);
    assert!(rec.passed);
    assert_eq!(
        rec.modelDigest.to_string().trim_start_matches("0x"),
        digest.trim_start_matches("sha256:")
    );
    assert_eq!(
        rec.datasetRoot.to_string(),
        st.dataset_root.clone().unwrap()
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
    // The mandate is in use.
    wait(&mps, "clause-review", "Active", |p| {
        phase(p) == Some(ModelProposalPhase::Active)
    })
    .await;

    // 4. Serving the fine-tuned model.
    let secret: Secret = serde_json::from_value(
        json!({"metadata": {"name": "clause-review-api-keys", "namespace": n},
        "stringData": {"legal-ops-agent": "mc-dev-legal-ops-7f3a9c"}}),
    )
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), n)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let md: ModelDeployment = serde_json::from_value(json!({
        "apiVersion": "modelcommons.dev/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": "clause-review", "namespace": n},
        "spec": {"modelRef": {"fineTuneJob": "clause-review-lora"}, "replicas": 1,
            "resources": {"gpus": 0, "cpu": "1", "memory": "1Gi"},
            "access": {"apiKeySecrets": ["clause-review-api-keys"], "allowedConsumers": ["legal-ops-agent"]},
            "rateLimits": {"requestsPerMinute": 60, "tokensPerMinute": 40000}}
    }))
    .unwrap();
    let mds: Api<ModelDeployment> = Api::namespaced(client.clone(), n);
    mds.create(&PostParams::default(), &md).await.unwrap();
    wait(&mds, "clause-review", "Ready", |m| {
        m.status.as_ref().and_then(|s| s.phase) == Some(ModelDeploymentPhase::Ready)
    })
    .await;
    gitops_ready(&cluster, n, "modeldeployment/clause-review").await;
    let dep = Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(client.clone(), n)
        .get("clause-review")
        .await
        .unwrap();
    let args: Vec<String> = dep.spec.unwrap().template.spec.unwrap().containers[0]
        .args
        .clone()
        .unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::write(keys.join("legal-ops-agent"), "mc-dev-legal-ops-7f3a9c").unwrap();
    let args: Vec<String> = args
        .into_iter()
        .map(|a| {
            if a == KEYS_DIR {
                keys.display().to_string()
            } else if a.starts_with("0.0.0.0:") {
                "127.0.0.1:0".into()
            } else {
                a
            }
        })
        .collect();
    let mut server = tokio::process::Command::new(workspace_binary("modelcommons-trainer"))
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(server.stdout.take().unwrap()).lines();
    let addr = loop {
        let l = lines.next_line().await.unwrap().expect("the server exited");
        if let Some(a) = l.strip_prefix("listening on ") {
            break a.trim().to_string();
        }
    };
    let http = reqwest::Client::new();
    let deadline = Instant::now() + TIMEOUT;
    let reply = loop {
        let r = http
            .post(format!("http://{addr}/v1/chat/completions"))
            .bearer_auth("mc-dev-legal-ops-7f3a9c")
            .json(
                &json!({"model": "clause-review", "max_tokens": 8, "temperature": 0,
                "messages": [{"role": "user", "content": "Is an unlimited indemnity risky?"}]}),
            )
            .send()
            .await
            .unwrap();
        if r.status() != 503 {
            break r;
        }
        assert!(Instant::now() < deadline, "the server never became ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(reply.status(), 200);
    let body: serde_json::Value = reply.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    server.kill().await.unwrap();

    // 5. A new manifest makes a new version (the tampered entry and carol's clauses dropped:
    // other data), now on S3 with its contributions, read with the credentials of a Secret:
    // curated, published.
    let mut v2 = manifest.clone();
    v2.contributions
        .retain(|c| c.id != "tampered" && c.id != "carol-governing-law");
    for c in &mut v2.contributions {
        let key = format!("items/{}.jsonl", c.id);
        s3.put(
            &key,
            std::fs::read(c.uri.strip_prefix("file://").unwrap()).unwrap(),
        )
        .await;
        c.uri = s3.uri(&key);
    }
    s3.put("v2/manifest.yaml", serde_yaml::to_string(&v2).unwrap())
        .await;
    let secret = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "contributions-store"},
        "stringData": s3.env.iter().cloned().collect::<std::collections::BTreeMap<_, _>>()});
    Api::<Secret>::namespaced(client.clone(), n)
        .create(
            &PostParams::default(),
            &serde_json::from_value(secret).unwrap(),
        )
        .await
        .unwrap();
    // A job admitted on version 1 whose trainer has not run yet when version 2 is published:
    // its lineage stays version 1's.
    let mut mid = small_finetune(n, &dir.path().join("mid"), 1, 4);
    mid["metadata"]["name"] = json!("mid-training");
    mid["spec"]["datanetRef"]["version"] = json!(null); // the latest: 1 when admitted
    ftjs.create(
        &PostParams::default(),
        &serde_json::from_value(mid).unwrap(),
    )
    .await
    .unwrap();
    let mid_job = job_of(&client, n, "mid-training").await;
    dns.patch(
        "clause-review-data",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"spec": {"contributions": {
            "configMapRef": null,
            "manifestUri": s3.uri("v2/manifest.yaml"),
            "credentialsSecretRef": {"name": "contributions-store"}}}})),
    )
    .await
    .unwrap();
    let job2 = curation_job_of(&client, TRUSTED, n, "clause-review-data", Some(2)).await;
    // The pod gets the store's credentials from the operator's copy of the Secret beside
    // it, and the manifest as the bytes the operator read.
    let c2 = container(&job2);
    let copy = &c2.env_from.as_ref().unwrap()[0]
        .secret_ref
        .as_ref()
        .unwrap()
        .name;
    assert_eq!(copy, &format!("{}-credentials", job2.name_any()));
    let tenant = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), n)
        .get("contributions-store")
        .await
        .unwrap();
    let copied = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), TRUSTED)
        .get(copy)
        .await
        .unwrap();
    assert_eq!(copied.data, tenant.data, "the tenant's credentials, copied");
    let handed = Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client.clone(), TRUSTED)
        .get(&format!("{}-manifest", job2.name_any()))
        .await
        .unwrap();
    assert_eq!(
        handed.data.unwrap()["manifest.yaml"],
        serde_yaml::to_string(&v2).unwrap(),
        "version 2's manifest, the bytes the operator read from S3"
    );
    run_curation_pod(
        &client,
        Path::new(env!("CARGO_BIN_EXE_modelcommons-operator")),
        &job2,
    )
    .await;
    let d2 = wait(&dns, "clause-review-data", "version 2 Ready", |d| {
        d.status
            .as_ref()
            .is_some_and(|s| s.version == Some(2) && s.phase == Some(DatanetPhase::Ready))
    })
    .await;
    let c2 = d2.status.clone().unwrap().counts.unwrap();
    assert_eq!((c2.total, c2.accepted, c2.rejected), (7, 4, 3), "{c2:?}");
    assert_eq!(
        distributor
            .distributions(datanet_version_id(&d.uid().unwrap(), 2))
            .call()
            .await
            .unwrap()
            .total,
        500_000_000_000_000_000_000u128,
        "version 2 funded with its own pool"
    );

    let v2 = d2.status.clone().unwrap();
    assert_ne!(v2.dataset_root, st.dataset_root, "version 2 is other data");

    // Lineage: a job pinned to version 1 while version 2 is the latest trains on version 1,
    // and the job admitted before version 2 was published keeps version 1 — each records
    // version 1's root on chain. (Four steps: judged TargetsMissed, recorded all the same.)
    let mut pinned = small_finetune(n, &dir.path().join("pinned"), 1, 4);
    pinned["metadata"]["name"] = json!("pinned-v1");
    pinned["spec"]["datanetRef"]["version"] = json!(1);
    ftjs.create(
        &PostParams::default(),
        &serde_json::from_value(pinned).unwrap(),
    )
    .await
    .unwrap();
    let pinned_job = job_of(&client, n, "pinned-v1").await;
    let v1_train = format!(
        "{}/train",
        st.dataset_uri
            .clone()
            .unwrap()
            .trim_start_matches("file://")
    );
    for job in [&mid_job, &pinned_job] {
        let env = env_of(job);
        assert_eq!(env["MODELCOMMONS_DATASET_VERSION"], "1");
        assert_eq!(
            Some(&env["MODELCOMMONS_DATASET_ROOT"]),
            st.dataset_root.as_ref()
        );
        assert!(
            container(job)
                .args
                .clone()
                .unwrap()
                .iter()
                .any(|a| a.starts_with(&v1_train)),
            "{:?}",
            container(job).args
        );
        run_pod(
            &workspace_binary("modelcommons-trainer"),
            job,
            cluster.kubeconfig(),
        )
        .await;
    }
    for name in ["mid-training", "pinned-v1"] {
        let eval = run_evaluation_pod(&client, &ftjs, name, TRUSTED).await;
        assert_eq!(eval["examples"], 40, "version 1's held-out records");
        let f = wait(&ftjs, name, "judged and recorded", |f| {
            f.status
                .as_ref()
                .is_some_and(|s| s.chain.is_some() && s.evaluation.is_some())
        })
        .await;
        let fs = f.status.clone().unwrap();
        assert_eq!(fs.dataset_version, Some(1), "{name}");
        assert_eq!(fs.dataset_root, st.dataset_root, "{name}");
        let rec = registry
            .trainings(training_id(
                &f.uid().unwrap(),
                f.metadata.generation.unwrap(),
            ))
            .call()
            .await
            .unwrap();
        assert_eq!(
            Some(rec.datasetRoot.to_string()),
            st.dataset_root,
            "{name} on chain"
        );
    }
    // A Datanet status rewritten by a tenant (a version 7 with other data) changes nothing of
    // what a new job trains on: the latest version the operator published, 2.
    dns.patch_status(
        "clause-review-data",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"status": {"version": 7,
            "datasetRoot": format!("0x{}", "ee".repeat(32)),
            "datasetUri": format!("file://{}/elsewhere", dir.path().display())}})),
    )
    .await
    .unwrap();
    let mut latest = small_finetune(n, &dir.path().join("latest"), 1, 4);
    latest["metadata"]["name"] = json!("latest");
    latest["spec"]["datanetRef"]["version"] = json!(null);
    ftjs.create(
        &PostParams::default(),
        &serde_json::from_value(latest).unwrap(),
    )
    .await
    .unwrap();
    let env = env_of(&job_of(&client, n, "latest").await);
    assert_eq!(env["MODELCOMMONS_DATASET_VERSION"], "2");
    assert_eq!(
        Some(&env["MODELCOMMONS_DATASET_ROOT"]),
        v2.dataset_root.as_ref()
    );
    assert_eq!(
        Some(&env["MODELCOMMONS_DATASET_URI"]),
        v2.dataset_uri.as_ref()
    );

    // Exactly one on-chain record per write.
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
        distributor
            .Published_filter()
            .from_block(0)
            .query()
            .await
            .unwrap()
            .len(),
        2,
        "one publication per version"
    );
    // The writes are in the operator's metrics.
    let metrics = ctx.metrics.encode();
    assert!(ctx.metrics.ledger_gas.get() > 0, "{metrics}");
    assert!(
        metrics.contains(r#"modelcommons_operator_ledger_writes_total{method="ModelRegistry.register",result="ok"} 1"#),
        "{metrics}"
    );
    delete_proposals(&mps).await;
    for c in controllers {
        c.abort();
    }
    ns.delete().await.unwrap();
}
