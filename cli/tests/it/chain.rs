//! The chain actions of the `modelcommons` CLI, each with the actor's own key, on anvil: a
//! token holder delegates and votes, a proposer approves the stake escrow, a contributor claims
//! a Datanet reward with the proof from a real curation report.

use alloy::primitives::U256;
use modelcommons_curate::contribution::{self, Contribution, Manifest, sha256_hex};
use modelcommons_curate::{self as curate, FileFetch};
use modelcommons_ledger::bindings::{GovToken, ModelGovernor, OpenToken};
use modelcommons_ledger::governance::ProposalState;
use modelcommons_ledger::mirror::PublishDistribution;
use modelcommons_testbed::DEV_KEYS;
use modelcommons_testbed::chain::{Chain, OPERATOR, PROPOSER, VOTERS, open};

fn cli(chain: &Chain, addresses: &std::path::Path, who: usize, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_modelcommons"))
        .args(args)
        .args(["--rpc", &chain.anvil.endpoint(), "--addresses"])
        .arg(addresses)
        .env("MODELCOMMONS_KEY", DEV_KEYS[who])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{args:?}: {text}");
    assert!(
        !text.contains(&DEV_KEYS[who][2..]),
        "the key must never be printed"
    );
    text
}

#[tokio::test]
async fn holders_proposers_and_contributors_act_with_their_own_keys() {
    let chain = Chain::new().await;
    chain.allow_direct_publishing().await;
    let dir = tempfile::tempdir().unwrap();
    let addresses = dir.path().join("suite.json");
    std::fs::write(&addresses, serde_json::to_string(&chain.suite).unwrap()).unwrap();
    let op = chain.as_(OPERATOR);

    // A holder wraps and delegates.
    let holder = VOTERS[0];
    chain.fund(holder, open(500)).await;
    cli(
        &chain,
        &addresses,
        holder,
        &["gov", "delegate", "--amount", "500"],
    );
    let votes = GovToken::new(chain.suite.gov_token, op.provider())
        .getVotes(Chain::address(holder))
        .call()
        .await
        .unwrap();
    assert_eq!(votes, open(500));

    // A proposer approves the escrow; the operator registers; the holder votes for it.
    chain.fund(PROPOSER, open(10)).await;
    cli(
        &chain,
        &addresses,
        PROPOSER,
        &["stake", "approve", "--amount", &open(10).to_string()],
    );
    let allowance = OpenToken::new(chain.suite.open, op.provider())
        .allowance(Chain::address(PROPOSER), chain.suite.registry)
        .call()
        .await
        .unwrap();
    assert_eq!(allowance, open(10));
    // The proposer authorizes the stake for exactly its proposal's spec; the registry takes
    // that authorization, and no other stake or spec.
    let example =
        modelcommons_testbed::workspace_root().join("examples/contract-review/01-proposal.yaml");
    let mut mp: modelcommons_crds::proposal::ModelProposal =
        serde_yaml::from_str(&std::fs::read_to_string(example).unwrap()).unwrap();
    mp.spec.proposer = Chain::address(PROPOSER).to_string();
    mp.spec.stake = open(10).to_string();
    let file = dir.path().join("proposal.yaml");
    std::fs::write(&file, serde_yaml::to_string(&mp).unwrap()).unwrap();
    let out = cli(
        &chain,
        &addresses,
        PROPOSER,
        &["stake", "authorize", "--proposal", file.to_str().unwrap()],
    );
    let yaml = &out[out.find("stakeAuthorization:").unwrap()..];
    let auth: modelcommons_crds::proposal::StakeAuthorization = serde_yaml::from_value(
        serde_yaml::from_str::<serde_yaml::Value>(yaml).unwrap()["stakeAuthorization"].clone(),
    )
    .unwrap();
    let spec_hash = modelcommons_ledger::spec::spec_hash(&mp.spec);
    let budget = modelcommons_ledger::spec::reward_budget(&mp.spec).unwrap();
    let registration =
        |uid: &str, stake: U256| modelcommons_ledger::bindings::ModelRegistry::Registration {
            modelId: modelcommons_ledger::ids::model_id(uid),
            specHash: spec_hash,
            proposer: Chain::address(PROPOSER),
            stake,
            rewardBudget: budget,
            quorumBps: 400,
            thresholdBps: 5001,
            nonce: U256::from(auth.nonce),
            deadline: U256::from(auth.deadline),
            signature: auth.signature.parse().unwrap(),
        };
    let registry =
        modelcommons_ledger::bindings::ModelRegistry::new(chain.suite.registry, op.provider());
    assert!(
        registry
            .register(registration("uid-cli", open(9)))
            .send()
            .await
            .is_err(),
        "another stake than the signed one is refused"
    );
    registry
        .register(registration("uid-cli", open(10)))
        .send()
        .await
        .unwrap()
        .watch()
        .await
        .unwrap();
    let proposal = registry
        .models(modelcommons_ledger::ids::model_id("uid-cli"))
        .call()
        .await
        .unwrap()
        .proposalId;
    // Another key than the proposer's is refused by the CLI itself.
    let wrong = std::process::Command::new(env!("CARGO_BIN_EXE_modelcommons"))
        .args(["stake", "authorize", "--proposal", file.to_str().unwrap()])
        .args(["--rpc", &chain.anvil.endpoint(), "--addresses"])
        .arg(&addresses)
        .env("MODELCOMMONS_KEY", DEV_KEYS[VOTERS[0]])
        .output()
        .unwrap();
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("only the proposer"));
    chain.mine(chain.params.voting_delay_blocks + 1);
    cli(
        &chain,
        &addresses,
        holder,
        &[
            "gov",
            "vote",
            "--proposal",
            &proposal.to_string(),
            "--support",
            "for",
        ],
    );
    let g = ModelGovernor::new(chain.suite.governor, op.provider());
    let tally = g.proposalVotes(proposal).call().await.unwrap();
    assert_eq!(tally.forVotes, open(500));
    chain.mine(u64::from(chain.params.voting_period_blocks) + 1);
    assert_eq!(chain.state(proposal).await, ProposalState::Succeeded);

    // A contributor claims with the proof from a real curation report.
    let contributor = VOTERS[1];
    let key: alloy::signers::local::PrivateKeySigner = DEV_KEYS[contributor].parse().unwrap();
    let bytes = b"{\"prompt\":\"Review: the supplier may terminate at will.\",\"completion\":\"Risk: one-sided termination. Suggest: mutual termination on 30 days notice.\"}\n";
    std::fs::write(dir.path().join("c.jsonl"), bytes).unwrap();
    let sha256 = sha256_hex(bytes);
    let manifest = Manifest {
        contributions: vec![Contribution {
            id: "c".into(),
            contributor: key.address(),
            uri: "file:///c.jsonl".into(),
            signature: contribution::sign(&key, "ns/dn", &sha256).unwrap(),
            sha256,
            license: "CC-BY-4.0".into(),
        }],
    };
    let spec = serde_yaml::from_str(
        r#"
proposalRef: {name: p}
format: {type: Jsonl, fields: [prompt, completion]}
contributions: {configMapRef: {name: m, key: k}}
rewards: {pool: "1000", policy: Proportional}
"#,
    )
    .unwrap();
    let report = curate::curate(
        "ns/dn",
        &spec,
        &serde_yaml::to_string(&manifest).unwrap(),
        &FileFetch::new(dir.path()),
        &curate::Options::default(),
    )
    .await
    .unwrap();
    assert_eq!(report.counts.accepted, 1);
    let id = alloy::primitives::B256::repeat_byte(0x42);
    let now = modelcommons_testbed::chain::now(&chain.anvil);
    op.publish_distribution(
        chain.suite.open,
        chain.suite.distributor,
        &PublishDistribution {
            id,
            kind: 0,
            root: report.reward_root.unwrap(),
            content_root: report.dataset_root.unwrap(),
            total: U256::from(1000u64),
            deadline: now + 3600,
        },
    )
    .await
    .unwrap();
    let report_file = dir.path().join("report.json");
    std::fs::write(&report_file, serde_json::to_vec(&report).unwrap()).unwrap();
    let before = chain.balance(key.address()).await;
    let text = cli(
        &chain,
        &addresses,
        contributor,
        &[
            "rewards",
            "claim",
            "--report",
            report_file.to_str().unwrap(),
            "--distribution",
            &id.to_string(),
        ],
    );
    assert!(text.contains("claimed 1000"), "{text}");
    assert_eq!(
        chain.balance(key.address()).await,
        before + U256::from(1000u64)
    );
}
