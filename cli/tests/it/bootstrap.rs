//! `modelcommons ledger bootstrap` deploys the suite to a dev chain, funds accounts and writes
//! the addresses file the operator reads; the key comes from a file and never shows in output.

use alloy::primitives::{Address, U256};
use modelcommons_ledger::suite::{SuiteAddresses, SuiteParams};
use modelcommons_ledger::{KeySource, Ledger};
use modelcommons_testbed::{Anvil, DEV_KEYS};

#[tokio::test]
async fn bootstrap_deploys_funds_and_writes_the_addresses() {
    let anvil = Anvil::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("operator.key");
    std::fs::write(&key_file, format!("{}\n", DEV_KEYS[0])).unwrap();
    let out = dir.path().join("suite.json");
    let alice: Address = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
        .parse()
        .unwrap();
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_modelcommons"))
        .args([
            "ledger",
            "bootstrap",
            "--rpc",
            &anvil.endpoint(),
            "--key-file",
        ])
        .arg(&key_file)
        .args(["--out"])
        .arg(&out)
        .args(["--fund", &format!("{alice}=250")])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(run.status.success(), "{text}");
    assert!(
        !text.contains(&DEV_KEYS[0][2..]),
        "the key must never be printed"
    );

    let suite: SuiteAddresses =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(suite.chain_id, 31337);
    let ledger = Ledger::connect_with(&anvil.endpoint(), &KeySource::File(key_file)).unwrap();
    let info = ledger.token_info(suite.open).await.unwrap();
    assert_eq!(info.symbol, "OPEN");
    let unit = modelcommons_ledger::units::one_open();
    assert_eq!(
        ledger.token_balance(suite.open, alice).await.unwrap(),
        U256::from(250u64) * unit
    );
    // The treasury is the timelock: only votes spend what it holds.
    let funding = SuiteParams::default().treasury_funding;
    assert_eq!(suite.treasury, suite.timelock);
    assert_eq!(
        ledger
            .token_balance(suite.open, suite.treasury)
            .await
            .unwrap(),
        funding
    );
    assert_eq!(
        ledger
            .token_balance(suite.open, ledger.address())
            .await
            .unwrap(),
        info.total_supply - funding - U256::from(250u64) * unit
    );

    // A missing key is a clear error naming where it was looked for.
    let err = Ledger::connect_with(
        &anvil.endpoint(),
        &KeySource::Env("MODELCOMMONS_NO_SUCH_KEY".into()),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("MODELCOMMONS_NO_SUCH_KEY is not set"),
        "{err}"
    );
}

#[tokio::test]
async fn bootstrap_gives_the_operator_its_role_only() {
    use alloy::primitives::B256;
    use alloy::signers::local::PrivateKeySigner;
    use modelcommons_ledger::bindings::{
        ModelRegistry, ModelTimelock, RewardDistributor, ValidatorPool,
    };
    let anvil = Anvil::start().unwrap();
    let deployer = Ledger::connect(&anvil.endpoint(), DEV_KEYS[0]).unwrap();
    let key = |i: usize| DEV_KEYS[i].parse::<PrivateKeySigner>().unwrap().address();
    let (operator, admin) = (key(8), key(7));
    // The roles go to the addresses given on the command line.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("suite.json");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_modelcommons"))
        .args(["ledger", "bootstrap", "--rpc", &anvil.endpoint()])
        .args([
            "--operator",
            &operator.to_string(),
            "--admin",
            &admin.to_string(),
        ])
        .arg("--out")
        .arg(&out)
        .env("MODELCOMMONS_KEY", DEV_KEYS[0])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let s: SuiteAddresses = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let p = deployer.provider();
    let me = deployer.address();
    let r = ModelRegistry::new(s.registry, p);
    let d = RewardDistributor::new(s.distributor, p);
    let v = ValidatorPool::new(s.validator_pool, p);
    let t = ModelTimelock::new(s.timelock, p);
    let op = r.OPERATOR_ROLE().call().await.unwrap();
    let gov = r.GOVERNANCE_ROLE().call().await.unwrap();
    let admin_role = B256::ZERO;
    let has = |c: &str, ok: bool, what: &str| assert!(ok, "{c}: {what}");
    has(
        "registry",
        r.hasRole(op, operator).call().await.unwrap(),
        "operator operates",
    );
    has(
        "registry",
        !r.hasRole(op, me).call().await.unwrap(),
        "the deployer does not",
    );
    has(
        "registry",
        r.hasRole(gov, s.timelock).call().await.unwrap(),
        "the timelock governs",
    );
    has(
        "registry",
        r.hasRole(admin_role, admin).call().await.unwrap(),
        "admin",
    );
    has(
        "registry",
        !r.hasRole(admin_role, me).call().await.unwrap(),
        "deployer not admin",
    );
    has(
        "registry",
        !r.hasRole(admin_role, operator).call().await.unwrap(),
        "operator not admin",
    );
    has(
        "distributor",
        d.hasRole(op, s.registry).call().await.unwrap(),
        "only the registry publishes",
    );
    has(
        "distributor",
        !d.hasRole(op, operator).call().await.unwrap(),
        "not the operator",
    );
    has(
        "distributor",
        !d.hasRole(admin_role, me).call().await.unwrap(),
        "deployer not admin",
    );
    has(
        "pool",
        v.hasRole(op, operator).call().await.unwrap(),
        "operator operates",
    );
    has(
        "pool",
        v.hasRole(admin_role, admin).call().await.unwrap(),
        "admin",
    );
    has(
        "timelock",
        !t.hasRole(admin_role, me).call().await.unwrap(),
        "the timelock administers itself",
    );
    assert_eq!(s.treasury, s.timelock);
    assert_eq!(s.operator, operator);
}
