//! `modelcommons ledger bootstrap` deploys the suite to a dev chain, funds accounts and writes
//! the addresses file the operator reads; the key comes from a file and never shows in output.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use alloy::primitives::{Address, U256};
use modelcommons_operator::ledger::suite::SuiteAddresses;
use modelcommons_operator::ledger::{KeySource, Ledger};
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
    let unit = U256::from(10u64).pow(U256::from(18u64));
    assert_eq!(
        ledger.token_balance(suite.open, alice).await.unwrap(),
        U256::from(250u64) * unit
    );
    assert_eq!(
        ledger
            .token_balance(suite.open, suite.treasury)
            .await
            .unwrap(),
        info.total_supply - U256::from(250u64) * unit
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
