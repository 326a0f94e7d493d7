//! A contract compiled by solc is deployed to a real anvil chain and read back through alloy.

use alloy::primitives::{Address, U256};
use alloy::signers::local::PrivateKeySigner;
use modelcommons_ledger::{Error, Ledger};
use modelcommons_testbed::{Anvil, DEV_KEYS};

#[tokio::test]
async fn open_token_deploys_and_reads_back() {
    let anvil = Anvil::start().unwrap();
    let ledger = Ledger::connect(&anvil.endpoint(), DEV_KEYS[0]).unwrap();
    let treasury: Address = DEV_KEYS[1].parse::<PrivateKeySigner>().unwrap().address();
    let supply = modelcommons_ledger::units::open(1_000_000);

    let token = ledger.deploy_open_token(treasury, supply).await.unwrap();
    let info = ledger.token_info(token).await.unwrap();
    assert_eq!(info.symbol, "OPEN");
    assert_eq!(info.name, "modelcommons OPEN");
    assert_eq!(info.decimals, 18);
    assert_eq!(info.total_supply, supply);
    assert_eq!(ledger.token_balance(token, treasury).await.unwrap(), supply);
    assert_eq!(
        ledger.token_balance(token, ledger.address()).await.unwrap(),
        U256::ZERO
    );

    // An address without code is a clear error, not a zero-filled answer.
    let nowhere = Address::repeat_byte(0x42);
    let err = ledger.token_info(nowhere).await.unwrap_err();
    assert!(
        matches!(err, Error::NoCode { address } if address == nowhere),
        "{err}"
    );
}

#[test]
fn bad_configuration_is_refused_without_echoing_the_key() {
    let err = Ledger::connect("not a url", DEV_KEYS[0]).unwrap_err();
    assert!(err.to_string().contains("invalid RPC URL"), "{err}");
    let secret = "0xdeadbeef";
    let err = Ledger::connect("http://127.0.0.1:8545", secret).unwrap_err();
    assert!(err.to_string().contains("invalid signing key"), "{err}");
    assert!(
        !err.to_string().contains("deadbeef"),
        "the key must never appear in errors: {err}"
    );
}
