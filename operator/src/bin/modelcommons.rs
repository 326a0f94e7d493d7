//! `modelcommons`: the command line for contributors, validators and token holders, who act
//! with their own keys.
//!
//! ```text
//! modelcommons contribution sign --datanet NS/NAME --file PATH --id ID --uri URI
//!     [--license SPDX] [--key-env VAR]
//!         hash the file, sign it for the Datanet with the key in $VAR (default
//!         MODELCOMMONS_KEY) and print the manifest entry as YAML
//! modelcommons contribution verify --datanet NS/NAME --manifest PATH
//!         check every signature of a manifest; exit 1 if one fails
//! modelcommons ledger bootstrap --rpc URL [--key-file F | --key-env VAR] [--out FILE]
//!     [--fund ADDRESS=OPEN ...]
//!         deploy the contract suite to a dev chain, fund accounts with OPEN, and write the
//!         addresses (JSON) the operator reads
//! ```

use anyhow::{Context, bail};
use modelcommons_operator::contribution::{self, Contribution, Manifest};
use modelcommons_operator::ledger::suite::SuiteParams;
use modelcommons_operator::ledger::{KeySource, Ledger};

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn required<'a>(args: &'a [String], name: &str) -> anyhow::Result<&'a str> {
    flag(args, name).with_context(|| format!("{name} is required"))
}

fn key_source(args: &[String]) -> KeySource {
    match flag(args, "--key-file") {
        Some(path) => KeySource::File(path.into()),
        None => KeySource::Env(flag(args, "--key-env").unwrap_or("MODELCOMMONS_KEY").into()),
    }
}

async fn bootstrap(args: &[String]) -> anyhow::Result<()> {
    let rpc = required(args, "--rpc")?;
    let ledger = Ledger::connect_with(rpc, &key_source(args))?;
    let suite = ledger
        .bootstrap(&SuiteParams::default())
        .await
        .context("deploying the suite")?;
    for (i, a) in args.iter().enumerate() {
        if a != "--fund" {
            continue;
        }
        let spec = args.get(i + 1).context("--fund takes ADDRESS=OPEN")?;
        let (addr, amount) =
            modelcommons_operator::ledger::suite::parse_fund(spec).map_err(anyhow::Error::msg)?;
        ledger.fund_open(&suite, addr, amount).await?;
        eprintln!("funded {addr} with {amount} OPEN");
    }
    let json = serde_json::to_string_pretty(&suite)?;
    match flag(args, "--out") {
        Some(path) => {
            std::fs::write(path, format!("{json}\n")).with_context(|| format!("writing {path}"))?;
            eprintln!("wrote the suite's addresses to {path}");
        }
        None => println!("{json}"),
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match (
        args.first().map(String::as_str),
        args.get(1).map(String::as_str),
    ) {
        (Some("ledger"), Some("bootstrap")) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(bootstrap(&args)),
        (Some("contribution"), Some("sign")) => {
            let datanet = required(&args, "--datanet")?;
            let path = required(&args, "--file")?;
            let var = flag(&args, "--key-env").unwrap_or("MODELCOMMONS_KEY");
            let key = std::env::var(var)
                .with_context(|| format!("the signing key is read from ${var}"))?;
            let key: alloy::signers::local::PrivateKeySigner = key
                .trim()
                .parse()
                .map_err(|_| anyhow::anyhow!("${var} does not hold a valid private key"))?;
            let bytes = std::fs::read(path).with_context(|| format!("reading {path}"))?;
            let sha256 = contribution::sha256_hex(&bytes);
            let entry = Contribution {
                id: required(&args, "--id")?.into(),
                contributor: key.address(),
                uri: required(&args, "--uri")?.into(),
                signature: contribution::sign(&key, datanet, &sha256)?,
                sha256,
                license: flag(&args, "--license").unwrap_or("CC-BY-4.0").into(),
            };
            print!("{}", serde_yaml::to_string(&vec![entry])?);
            Ok(())
        }
        (Some("contribution"), Some("verify")) => {
            let datanet = required(&args, "--datanet")?;
            let path = required(&args, "--manifest")?;
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
            let manifest: Manifest =
                serde_yaml::from_str(&text).with_context(|| format!("parsing {path}"))?;
            let mut bad = 0;
            for c in &manifest.contributions {
                match contribution::verify(datanet, c) {
                    Ok(()) => println!("ok    {}  {}", c.id, c.contributor),
                    Err(e) => {
                        bad += 1;
                        println!("FAIL  {}  {e}", c.id);
                    }
                }
            }
            if bad > 0 {
                bail!(
                    "{bad} of {} signatures do not hold",
                    manifest.contributions.len()
                );
            }
            Ok(())
        }
        _ => bail!(
            "usage: modelcommons contribution sign --datanet NS/NAME --file PATH --id ID --uri URI [--license SPDX] [--key-env VAR]\n       modelcommons contribution verify --datanet NS/NAME --manifest PATH\n       modelcommons ledger bootstrap --rpc URL [--key-file F | --key-env VAR] [--out FILE] [--fund ADDRESS=OPEN ...]"
        ),
    }
}
