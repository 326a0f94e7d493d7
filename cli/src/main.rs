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
//!     [--fund ADDRESS=OPEN ...] [--operator ADDRESS] [--admin ADDRESS]
//!         deploy the contract suite to a chain, fund accounts with OPEN, and write the
//!         addresses (JSON) the operator reads; the operator role and the admin role go to the
//!         addresses given (the deploying key when left out: a dev chain)
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

use std::path::PathBuf;

use alloy::primitives::{Address, B256, U256};
use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use modelcommons_curate::contribution::{self, Contribution, Manifest};
use modelcommons_ledger::bindings::{GovToken, ModelGovernor, OpenToken, RewardDistributor};
use modelcommons_ledger::suite::{Roles, SuiteAddresses, SuiteParams};
use modelcommons_ledger::{KeySource, Ledger};

#[derive(Debug, Parser)]
#[command(
    name = "modelcommons",
    version,
    about = "Act on modelcommons with your own key: sign contributions, vote, stake, claim rewards"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Contributors: sign a Datanet contribution, check a manifest's signatures.
    #[command(subcommand)]
    Contribution(ContributionCmd),
    /// Platform teams: deploy the contract suite.
    #[command(subcommand)]
    Ledger(LedgerCmd),
    /// Token holders: delegate votes, vote on proposals.
    #[command(subcommand)]
    Gov(GovCmd),
    /// Proposers: let the registry escrow a stake, authorize it for one spec.
    #[command(subcommand)]
    Stake(StakeCmd),
    /// Contributors: claim a reward.
    #[command(subcommand)]
    Rewards(RewardsCmd),
}

#[derive(Debug, Subcommand)]
enum ContributionCmd {
    /// Hash a file, sign it for a Datanet and print its manifest entry (YAML).
    Sign {
        /// The Datanet, `<namespace>/<name>`.
        #[arg(long)]
        datanet: String,
        /// The contributed file.
        #[arg(long)]
        file: PathBuf,
        /// The entry's id, unique in the manifest.
        #[arg(long)]
        id: String,
        /// Where curation fetches it from.
        #[arg(long)]
        uri: String,
        /// Its SPDX license.
        #[arg(long, default_value = "CC-BY-4.0")]
        license: String,
        /// The environment variable holding the contributor's key.
        #[arg(long, default_value = "MODELCOMMONS_KEY")]
        key_env: String,
    },
    /// Check every signature of a manifest; exit 1 if one fails.
    Verify {
        /// The Datanet, `<namespace>/<name>`.
        #[arg(long)]
        datanet: String,
        /// The manifest (YAML or JSON).
        #[arg(long)]
        manifest: PathBuf,
    },
}

/// Where the signing key comes from.
#[derive(Debug, Args)]
struct Key {
    /// A file holding the hex key.
    #[arg(long, conflicts_with = "key_env")]
    key_file: Option<PathBuf>,
    /// The environment variable holding the hex key.
    #[arg(long, default_value = "MODELCOMMONS_KEY")]
    key_env: String,
}

impl Key {
    fn source(&self) -> KeySource {
        match &self.key_file {
            Some(f) => KeySource::File(f.clone()),
            None => KeySource::Env(self.key_env.clone()),
        }
    }
}

#[derive(Debug, Subcommand)]
enum LedgerCmd {
    /// Deploy the contract suite, fund accounts and write its addresses.
    Bootstrap {
        /// The chain's JSON-RPC endpoint.
        #[arg(long)]
        rpc: String,
        #[command(flatten)]
        key: Key,
        /// Where the addresses go (JSON); standard output when left out.
        #[arg(long)]
        out: Option<PathBuf>,
        /// `ADDRESS=OPEN`: give an account whole OPEN from the deployer (repeatable).
        #[arg(long, value_parser = parse_fund)]
        fund: Vec<(Address, U256)>,
        /// The operator's address: it alone gets the operator role (default: the deploying
        /// key, for a dev chain).
        #[arg(long)]
        operator: Option<Address>,
        /// The admin's address (pausing, role administration; default: the deploying key).
        #[arg(long)]
        admin: Option<Address>,
    },
}

fn parse_fund(spec: &str) -> Result<(Address, U256), String> {
    modelcommons_ledger::suite::parse_fund(spec)
}

/// The chain and suite a chain action runs against, and the caller's key.
#[derive(Debug, Args)]
struct On {
    /// The chain's JSON-RPC endpoint.
    #[arg(long)]
    rpc: String,
    /// The suite's addresses (what `ledger bootstrap` wrote).
    #[arg(long)]
    addresses: PathBuf,
    #[command(flatten)]
    key: Key,
}

#[derive(Debug, Subcommand)]
enum GovCmd {
    /// Wrap whole OPEN into gOPEN and delegate the votes to yourself.
    Delegate {
        #[command(flatten)]
        on: On,
        /// Whole OPEN.
        #[arg(long)]
        amount: U256,
    },
    /// Vote on a ModelProposal.
    Vote {
        #[command(flatten)]
        on: On,
        /// The Governor proposal id (`status.chain.proposalId`, decimal).
        #[arg(long)]
        proposal: U256,
        #[arg(long, value_enum)]
        support: Support,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Support {
    Against,
    For,
    Abstain,
}

#[derive(Debug, Subcommand)]
enum StakeCmd {
    /// Let the registry escrow your stake.
    Approve {
        #[command(flatten)]
        on: On,
        /// The stake in OPEN base units (`spec.stake`).
        #[arg(long)]
        amount: U256,
    },
    /// Sign the authorization to escrow the stake for exactly this spec; prints the
    /// `spec.stakeAuthorization` to add to it.
    Authorize {
        #[command(flatten)]
        on: On,
        /// The ModelProposal (YAML).
        #[arg(long)]
        proposal: PathBuf,
        /// How long the authorization holds.
        #[arg(long, default_value_t = 604_800)]
        valid_seconds: u64,
        /// Any number not used before (default: from the clock).
        #[arg(long)]
        nonce: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
enum RewardsCmd {
    /// Claim your reward with the proof from a curation report.
    Claim {
        #[command(flatten)]
        on: On,
        /// The curation report (`status.rewardMapUri`).
        #[arg(long)]
        report: PathBuf,
        /// The distribution id of the Datanet version (0x + 64 hex digits).
        #[arg(long)]
        distribution: B256,
    },
}

fn read(path: &std::path::Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// The caller's connection and the suite, for chain actions.
fn connect(on: &On) -> anyhow::Result<(Ledger, SuiteAddresses)> {
    let suite: SuiteAddresses = serde_json::from_str(&read(&on.addresses)?)
        .with_context(|| format!("{}: not a contract addresses file", on.addresses.display()))?;
    Ok((Ledger::connect_with(&on.rpc, &on.key.source())?, suite))
}

/// A failed send as the contract's revert reason when there is one.
fn reverted(e: alloy::contract::Error) -> anyhow::Error {
    anyhow::anyhow!(
        "{}",
        modelcommons_ledger::revert_reason(&e).unwrap_or_else(|| e.to_string())
    )
}

async fn bootstrap(cmd: LedgerCmd) -> anyhow::Result<()> {
    let LedgerCmd::Bootstrap {
        rpc,
        key,
        out,
        fund,
        operator,
        admin,
    } = cmd;
    let ledger = Ledger::connect_with(&rpc, &key.source())?;
    let me = ledger.address();
    let roles = Roles {
        operator: operator.unwrap_or(me),
        admin: admin.unwrap_or(me),
    };
    let suite = ledger
        .bootstrap_with(&SuiteParams::default(), roles)
        .await
        .context("deploying the suite")?;
    eprintln!(
        "deployed: the timelock is the treasury and governs; operator {}, admin {}",
        roles.operator, roles.admin
    );
    for (addr, amount) in fund {
        ledger.fund_open(&suite, addr, amount).await?;
        eprintln!("funded {addr} with {amount} OPEN");
    }
    let json = serde_json::to_string_pretty(&suite)?;
    match out {
        Some(path) => {
            std::fs::write(&path, format!("{json}\n"))
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!("wrote the suite's addresses to {}", path.display());
        }
        None => println!("{json}"),
    }
    Ok(())
}

async fn gov(cmd: GovCmd) -> anyhow::Result<()> {
    match cmd {
        GovCmd::Delegate { on, amount } => {
            let (l, suite) = connect(&on)?;
            let (me, p) = (l.address(), l.provider());
            let amount = amount
                .checked_mul(modelcommons_ledger::units::one_open())
                .context("--amount is too many OPEN")?;
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
        GovCmd::Vote {
            on,
            proposal,
            support,
        } => {
            let (l, suite) = connect(&on)?;
            let me = l.address();
            let tx = ModelGovernor::new(suite.governor, l.provider())
                .castVote(proposal, support as u8)
                .send()
                .await
                .map_err(reverted)?
                .watch()
                .await?;
            let said = support
                .to_possible_value()
                .map(|v| v.get_name().to_string())
                .unwrap_or_default();
            println!("{me} voted {said} on proposal {proposal} (tx {tx})");
        }
    }
    Ok(())
}

async fn stake(cmd: StakeCmd) -> anyhow::Result<()> {
    match cmd {
        StakeCmd::Approve { on, amount } => {
            let (l, suite) = connect(&on)?;
            let me = l.address();
            let tx = OpenToken::new(suite.open, l.provider())
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
        StakeCmd::Authorize {
            on,
            proposal,
            valid_seconds,
            nonce,
        } => {
            let (l, suite) = connect(&on)?;
            let me = l.address();
            let mp: modelcommons_crds::proposal::ModelProposal =
                serde_yaml::from_str(&read(&proposal)?)
                    .with_context(|| format!("{}: not a ModelProposal", proposal.display()))?;
            let key = on.key.source().signer()?;
            let proposer: Address = mp
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
            let stake: U256 = mp
                .spec
                .stake
                .parse()
                .context("spec.stake is not a number of base units")?;
            let budget = modelcommons_ledger::spec::reward_budget(&mp.spec)
                .context("spec.mandate.rewardBudget is not a number of base units")?;
            let hash = modelcommons_ledger::spec::spec_hash(&mp.spec);
            let now = alloy::providers::Provider::get_block_by_number(
                l.provider(),
                alloy::eips::BlockNumberOrTag::Latest,
            )
            .await?
            .map(|b| b.header.timestamp)
            .context("the chain has no latest block")?;
            let deadline = now + valid_seconds;
            // Any number not used before; the clock makes one without a registry lookup.
            let nonce = match nonce {
                Some(n) => n,
                None => std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)?
                    .as_nanos() as u64,
            };
            let terms = modelcommons_ledger::proposal::StakeTerms {
                spec_hash: hash,
                stake,
                reward_budget: budget,
                nonce: U256::from(nonce),
                deadline: U256::from(deadline),
            };
            let signature = l.sign_stake_authorization(&suite, &key, &terms).await?;
            eprintln!(
                "{me} authorizes escrowing {stake} base units for spec {hash} (reward budget {budget}) until {deadline}; add this to the proposal's spec:"
            );
            println!(
                "stakeAuthorization:\n  signature: \"{signature}\"\n  deadline: {deadline}\n  nonce: {nonce}"
            );
        }
    }
    Ok(())
}

async fn rewards(cmd: RewardsCmd) -> anyhow::Result<()> {
    let RewardsCmd::Claim {
        on,
        report,
        distribution,
    } = cmd;
    let (l, suite) = connect(&on)?;
    let me = l.address();
    let parsed: modelcommons_curate::CurationReport = serde_json::from_str(&read(&report)?)
        .with_context(|| format!("{}: not a curation report", report.display()))?;
    let claim = parsed
        .proof_for(me)
        .with_context(|| format!("{me} is not paid in {}", report.display()))?;
    let tx = RewardDistributor::new(suite.distributor, l.provider())
        .claim(
            distribution,
            claim.payout.index,
            me,
            claim.payout.amount,
            claim.proof,
        )
        .send()
        .await
        .map_err(reverted)?
        .watch()
        .await?;
    println!("{me} claimed {} base units (tx {tx})", claim.payout.amount);
    Ok(())
}

fn contribution(cmd: ContributionCmd) -> anyhow::Result<()> {
    match cmd {
        ContributionCmd::Sign {
            datanet,
            file,
            id,
            uri,
            license,
            key_env,
        } => {
            let key = std::env::var(&key_env)
                .with_context(|| format!("the signing key is read from ${key_env}"))?;
            let key: alloy::signers::local::PrivateKeySigner = key
                .trim()
                .parse()
                .map_err(|_| anyhow::anyhow!("${key_env} does not hold a valid private key"))?;
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let sha256 = contribution::sha256_hex(&bytes);
            let entry = Contribution {
                id,
                contributor: key.address(),
                uri,
                signature: contribution::sign(&key, &datanet, &sha256)?,
                sha256,
                license,
            };
            print!("{}", serde_yaml::to_string(&vec![entry])?);
        }
        ContributionCmd::Verify { datanet, manifest } => {
            let parsed: Manifest = serde_yaml::from_str(&read(&manifest)?)
                .with_context(|| format!("parsing {}", manifest.display()))?;
            let mut bad = 0;
            for c in &parsed.contributions {
                match contribution::verify(&datanet, c) {
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
                    parsed.contributions.len()
                );
            }
        }
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    match cli.command {
        Command::Contribution(c) => contribution(c),
        Command::Ledger(c) => rt()?.block_on(bootstrap(c)),
        Command::Gov(c) => rt()?.block_on(gov(c)),
        Command::Stake(c) => rt()?.block_on(stake(c)),
        Command::Rewards(c) => rt()?.block_on(rewards(c)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_parse_as_the_docs_say() {
        let cli = Cli::try_parse_from([
            "modelcommons",
            "ledger",
            "bootstrap",
            "--rpc",
            "http://127.0.0.1:8545",
            "--key-file",
            "k",
            "--fund",
            "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC=250",
            "--operator",
            "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
        ])
        .map_err(|e| e.to_string());
        let Ok(Cli {
            command:
                Command::Ledger(LedgerCmd::Bootstrap {
                    fund,
                    operator,
                    admin,
                    ..
                }),
        }) = cli
        else {
            panic!("{cli:?}");
        };
        assert_eq!(fund.len(), 1);
        assert_eq!(fund[0].1, U256::from(250u64));
        assert!(operator.is_some() && admin.is_none());
        let bad = Cli::try_parse_from([
            "modelcommons",
            "gov",
            "vote",
            "--rpc",
            "x",
            "--addresses",
            "a",
            "--proposal",
            "1",
            "--support",
            "maybe",
        ]);
        assert!(bad.is_err(), "an unknown --support value is refused");
    }
}
