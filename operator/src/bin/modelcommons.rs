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
//! ```

use anyhow::{Context, bail};
use modelcommons_operator::contribution::{self, Contribution, Manifest};

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn required<'a>(args: &'a [String], name: &str) -> anyhow::Result<&'a str> {
    flag(args, name).with_context(|| format!("{name} is required"))
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match (
        args.first().map(String::as_str),
        args.get(1).map(String::as_str),
    ) {
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
            "usage: modelcommons contribution sign --datanet NS/NAME --file PATH --id ID --uri URI [--license SPDX] [--key-env VAR]\n       modelcommons contribution verify --datanet NS/NAME --manifest PATH"
        ),
    }
}
