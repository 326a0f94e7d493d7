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
//!
//! Chain actions, each signed with the caller's own key ($MODELCOMMONS_KEY, or --key-env /
//! --key-file) against the suite in --addresses (what `ledger bootstrap` wrote):
//! modelcommons gov delegate --rpc URL --addresses F --amount OPEN
//!         token holder: wrap OPEN into gOPEN and delegate the votes to yourself
//! modelcommons gov vote --rpc URL --addresses F --proposal ID --support for|against|abstain
//!         token holder: vote on a ModelProposal (its `status.chain.proposalId`)
//! modelcommons stake approve --rpc URL --addresses F --amount BASE_UNITS
//!         proposer: let the registry escrow your stake (`spec.stake`, in base units)
//! modelcommons stake authorize --rpc URL --addresses F --proposal FILE [--valid-seconds N]
//!         proposer: sign, with your own key, the authorization to escrow the stake for
//!         exactly the spec in FILE (its hash, stake and reward budget) and print the
//!         `spec.stakeAuthorization` to add to it (valid 7 days unless --valid-seconds)
//! modelcommons rewards claim --rpc URL --addresses F --report FILE --distribution ID
//!         contributor: claim your reward with the proof from a curation report
//!         (`status.rewardMapUri`) for the distribution id of the Datanet version
//! ```

use anyhow::{Context, bail};
use modelcommons_operator::contribution::{self, Contribution, Manifest};
use modelcommons_operator::ledger::bindings::{
    GovToken, ModelGovernor, OpenToken, RewardDistributor,
};
use modelcommons_operator::ledger::suite::{SuiteAddresses, SuiteParams};
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

/// The caller's connection and the suite, for chain actions.
fn connect(args: &[String]) -> anyhow::Result<(Ledger, SuiteAddresses)> {
    let rpc = required(args, "--rpc")?;
    let path = required(args, "--addresses")?;
    let suite: SuiteAddresses = serde_json::from_str(
        &std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?,
    )
    .with_context(|| format!("{path}: not a contract addresses file"))?;
    Ok((Ledger::connect_with(rpc, &key_source(args))?, suite))
}

fn whole_open(s: &str) -> anyhow::Result<alloy::primitives::U256> {
    let n: alloy::primitives::U256 = s
        .parse()
        .with_context(|| format!("{s} is not a whole number of OPEN"))?;
    Ok(n * alloy::primitives::U256::from(10u64).pow(alloy::primitives::U256::from(18u64)))
}

/// A failed send as the contract's revert reason when there is one.
fn reverted(e: alloy::contract::Error) -> anyhow::Error {
    anyhow::anyhow!(
        "{}",
        modelcommons_operator::ledger::revert_reason(&e).unwrap_or_else(|| e.to_string())
    )
}

async fn chain_action(group: &str, action: &str, args: &[String]) -> anyhow::Result<()> {
    let (l, suite) = connect(args)?;
    let me = l.address();
    let p = l.provider();
    match (group, action) {
        ("gov", "delegate") => {
            let amount = whole_open(required(args, "--amount")?)?;
            OpenToken::new(suite.open, p)
                .approve(suite.gov_token, amount)
                .send()
                .await?
                .watch()
                .await?;
            let g = GovToken::new(suite.gov_token, p);
            g.depositFor(me, amount).send().await?.watch().await?;
            let tx = g.delegate(me).send().await?.watch().await?;
            println!(
                "{me} wrapped {amount} base units into gOPEN and delegated to itself (tx {tx})"
            );
        }
        ("gov", "vote") => {
            let proposal: alloy::primitives::U256 = required(args, "--proposal")?
                .parse()
                .context("--proposal is the Governor proposal id (a decimal number)")?;
            let support = match required(args, "--support")? {
                "against" => 0u8,
                "for" => 1,
                "abstain" => 2,
                other => bail!("--support {other}: use for, against or abstain"),
            };
            let tx = ModelGovernor::new(suite.governor, p)
                .castVote(proposal, support)
                .send()
                .await
                .map_err(reverted)?
                .watch()
                .await?;
            println!(
                "{me} voted {} on proposal {proposal} (tx {tx})",
                required(args, "--support")?
            );
        }
        ("stake", "approve") => {
            let amount: alloy::primitives::U256 = required(args, "--amount")?
                .parse()
                .context("--amount is the stake in OPEN base units (spec.stake)")?;
            let tx = OpenToken::new(suite.open, p)
                .approve(suite.registry, amount)
                .send()
                .await?
                .watch()
                .await?;
            println!(
                "the registry {} may escrow {amount} from {me} (tx {tx})",
                suite.registry
            );
        }
        ("stake", "authorize") => {
            let path = required(args, "--proposal")?;
            let mp: modelcommons_crds::proposal::ModelProposal = serde_yaml::from_str(
                &std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?,
            )
            .with_context(|| format!("{path}: not a ModelProposal"))?;
            let key = key_source(args).signer()?;
            let proposer: alloy::primitives::Address = mp
                .spec
                .proposer
                .parse()
                .with_context(|| format!("spec.proposer {:?}", mp.spec.proposer))?;
            if key.address() != proposer {
                bail!(
                    "this key is {}'s, but the proposal's spec.proposer is {proposer}: only the proposer can authorize its stake",
                    key.address()
                );
            }
            let stake: alloy::primitives::U256 = mp
                .spec
                .stake
                .parse()
                .context("spec.stake is not a number of base units")?;
            let budget = modelcommons_operator::controller::proposal::reward_budget(&mp.spec)
                .context("spec.mandate.rewardBudget is not a number of base units")?;
            let hash = modelcommons_operator::controller::proposal::spec_hash(&mp.spec);
            let valid: u64 = flag(args, "--valid-seconds")
                .unwrap_or("604800")
                .parse()
                .context("--valid-seconds is a number of seconds")?;
            let now = alloy::providers::Provider::get_block_by_number(
                p,
                alloy::eips::BlockNumberOrTag::Latest,
            )
            .await?
            .map(|b| b.header.timestamp)
            .context("the chain has no latest block")?;
            let deadline = now + valid;
            // Any number not used before; the clock makes one without a registry lookup.
            let nonce: u64 = match flag(args, "--nonce") {
                Some(n) => n.parse().context("--nonce is a whole number")?,
                None => std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)?
                    .as_nanos() as u64,
            };
            let terms = modelcommons_operator::ledger::proposal::StakeTerms {
                spec_hash: hash,
                stake,
                reward_budget: budget,
                nonce: alloy::primitives::U256::from(nonce),
                deadline: alloy::primitives::U256::from(deadline),
            };
            let signature = l.sign_stake_authorization(&suite, &key, &terms).await?;
            eprintln!(
                "{me} authorizes escrowing {stake} base units for spec {hash} (reward budget {budget}) until {deadline}; add this to the proposal's spec:"
            );
            println!(
                "stakeAuthorization:\n  signature: \"{signature}\"\n  deadline: {deadline}\n  nonce: {nonce}"
            );
        }
        ("rewards", "claim") => {
            let path = required(args, "--report")?;
            let report: modelcommons_operator::curate::CurationReport = serde_json::from_str(
                &std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?,
            )
            .with_context(|| format!("{path}: not a curation report"))?;
            let id: alloy::primitives::B256 = required(args, "--distribution")?
                .parse()
                .context("--distribution is the distribution id (0x + 64 hex digits)")?;
            let claim = report
                .proof_for(me)
                .with_context(|| format!("{me} is not paid in {path}"))?;
            let tx = RewardDistributor::new(suite.distributor, p)
                .claim(id, claim.payout.index, me, claim.payout.amount, claim.proof)
                .send()
                .await
                .map_err(reverted)?
                .watch()
                .await?;
            println!("{me} claimed {} base units (tx {tx})", claim.payout.amount);
        }
        _ => bail!("unknown action {group} {action}"),
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
        (Some(group @ ("gov" | "stake" | "rewards")), Some(action)) => {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(chain_action(group, action, &args))
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
            "usage: modelcommons contribution sign --datanet NS/NAME --file PATH --id ID --uri URI [--license SPDX] [--key-env VAR]\n       modelcommons contribution verify --datanet NS/NAME --manifest PATH\n       modelcommons ledger bootstrap --rpc URL [--key-file F | --key-env VAR] [--out FILE] [--fund ADDRESS=OPEN ...]\n       modelcommons gov delegate --rpc URL --addresses F --amount OPEN\n       modelcommons gov vote --rpc URL --addresses F --proposal ID --support for|against|abstain\n       modelcommons stake approve --rpc URL --addresses F --amount BASE_UNITS\n       modelcommons stake authorize --rpc URL --addresses F --proposal FILE [--valid-seconds N]\n       modelcommons rewards claim --rpc URL --addresses F --report FILE --distribution ID"
        ),
    }
}
