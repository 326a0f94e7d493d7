//! The ledger mirror: bindings to the modelcommons contracts and a client over alloy.
//!
//! alloy is used rather than ethers-rs, which is archived. The bindings are generated at
//! compile time from the artifacts that `make contracts` writes with solc, so a contract change
//! that is not recompiled cannot silently diverge from the Rust side (the artifact check fails).

use alloy::network::EthereumWallet;
use alloy::primitives::{Address, U256};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;

pub mod bindings;
pub mod governance;
pub mod ids;
pub mod merkle;
pub mod mirror;
pub mod proposal;
pub mod spec;
pub mod suite;
pub mod units;

use bindings::OpenToken;

/// Errors of the ledger client. Messages say what was attempted and against which endpoint.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid RPC URL {url:?}: {reason}")]
    RpcUrl { url: String, reason: String },
    #[error("invalid signing key: {0} (expected 32 bytes of hex, with or without 0x)")]
    Key(String),
    #[error("signing: {0}")]
    Signer(String),
    #[error("deploying {contract}: {}", revert_reason(source).unwrap_or_else(|| source.to_string()))]
    Deploy {
        contract: &'static str,
        #[source]
        source: Box<alloy::contract::Error>,
    },
    #[error("calling {contract}.{method} at {address}: {}", revert_reason(source).unwrap_or_else(|| source.to_string()))]
    Call {
        contract: &'static str,
        method: &'static str,
        address: Address,
        #[source]
        source: Box<alloy::contract::Error>,
    },
    #[error("no contract code at {address}: wrong address or wrong chain")]
    NoCode { address: Address },
    #[error("RPC transport: {0}")]
    Transport(#[from] alloy::transports::TransportError),
    #[error("{contract}.{method} reverted in transaction {tx}")]
    Reverted {
        contract: &'static str,
        method: &'static str,
        tx: alloy::primitives::B256,
    },
    #[error(
        "{what} is already on chain with other content ({detail}): the object changed after it was recorded; create a new object instead"
    )]
    Conflict { what: String, detail: String },
    #[error("waiting for a transaction: {0}")]
    Pending(#[from] alloy::providers::PendingTransactionError),
}

impl Error {
    /// A short, bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::RpcUrl { .. } | Error::Key(_) | Error::Signer(_) => "config",
            Error::Deploy { .. } => "deploy",
            Error::Call { .. } | Error::Reverted { .. } => "call",
            Error::Conflict { .. } => "conflict",
            Error::NoCode { .. } => "no_code",
            Error::Transport(_) | Error::Pending(_) => "transport",
        }
    }
}

/// The custom error a call reverted with, decoded against every contract of the suite, as a
/// readable `Name { field: value, … }` (e.g. `ModelExists { modelId: 0x… }`), or `None`
/// when the failure was not a decodable revert.
pub fn revert_reason(err: &alloy::contract::Error) -> Option<String> {
    use bindings::*;
    fn show<E: std::fmt::Debug>(e: E) -> String {
        format!("reverted with {e:?}")
    }
    err.as_decoded_interface_error::<model_registry::ModelRegistry::ModelRegistryErrors>()
        .map(show)
        .or_else(|| err.as_decoded_interface_error::<reward_distributor::RewardDistributor::RewardDistributorErrors>().map(show))
        .or_else(|| err.as_decoded_interface_error::<validator_pool::ValidatorPool::ValidatorPoolErrors>().map(show))
        .or_else(|| err.as_decoded_interface_error::<model_governor::ModelGovernor::ModelGovernorErrors>().map(show))
        .or_else(|| err.as_decoded_interface_error::<model_timelock::ModelTimelock::ModelTimelockErrors>().map(show))
        .or_else(|| err.as_decoded_interface_error::<gov_token::GovToken::GovTokenErrors>().map(show))
        .or_else(|| err.as_decoded_interface_error::<open_token::OpenToken::OpenTokenErrors>().map(show))
}

/// Maps a failed contract call to [`Error::Call`], naming the contract, method and address.
pub(crate) fn call_error(
    contract: &'static str,
    method: &'static str,
    address: Address,
) -> impl FnOnce(alloy::contract::Error) -> Error {
    move |source| Error::Call {
        contract,
        method,
        address,
        source: Box::new(source),
    }
}

/// Result with the ledger's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the chain says about an OPEN token contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub name: String,
    pub symbol: String,
    pub decimals: u8,
    pub total_supply: U256,
}

/// Where the signing key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A file holding the hex key (a mounted Secret).
    File(std::path::PathBuf),
    /// An environment variable holding the hex key.
    Env(String),
}

impl KeySource {
    /// Reads the key. Errors name only where it was read from, never its content.
    pub fn signer(&self) -> Result<PrivateKeySigner> {
        let text = match self {
            KeySource::File(path) => std::fs::read_to_string(path)
                .map_err(|e| Error::Key(format!("reading the key file {}: {e}", path.display())))?,
            KeySource::Env(var) => std::env::var(var)
                .map_err(|_| Error::Key(format!("the environment variable {var} is not set")))?,
        };
        text.trim()
            .parse()
            .map_err(|e: alloy::signers::local::LocalSignerError| Error::Key(e.to_string()))
    }
}

/// A connection to the chain with the operator's signing key.
#[derive(Debug, Clone)]
pub struct Ledger {
    pub(crate) provider: alloy::providers::DynProvider,
    signer: Address,
    /// Blocks a write must be buried under before it counts (default 1).
    pub(crate) confirmations: u64,
    /// Counts the gas of every write this ledger mines (the operator exports it).
    gas: Option<prometheus_client::metrics::counter::Counter>,
}

impl Ledger {
    /// Connects to `rpc_url` (HTTP JSON-RPC) signing with `private_key` (hex). The key is
    /// never logged or included in errors.
    pub fn connect(rpc_url: &str, private_key: &str) -> Result<Self> {
        let url = rpc_url
            .parse()
            .map_err(|e: url::ParseError| Error::RpcUrl {
                url: rpc_url.into(),
                reason: e.to_string(),
            })?;
        let signer: PrivateKeySigner = private_key
            .trim()
            .parse()
            .map_err(|e: alloy::signers::local::LocalSignerError| Error::Key(e.to_string()))?;
        let address = signer.address();
        // Nonces are read from the chain (pending block) for every transaction instead of being
        // cached: a cached nonce is consumed even when gas estimation then fails (a reverting
        // call), and the next transaction would wait forever behind the gap. The operator writes
        // rarely, so one extra read per write is cheap, and it survives restarts and other
        // writers of the same key.
        let provider = ProviderBuilder::new()
            .disable_recommended_fillers()
            .with_gas_estimation()
            .with_simple_nonce_management()
            .fetch_chain_id()
            .wallet(EthereumWallet::from(signer))
            .connect_http(url)
            .erased();
        Ok(Self {
            provider,
            signer: address,
            confirmations: 1,
            gas: None,
        })
    }

    /// Connects with the key read from a file (e.g. a mounted Secret) or an environment
    /// variable. The key is never logged; errors name only where it was read from.
    pub fn connect_with(rpc_url: &str, key: &KeySource) -> Result<Self> {
        let text = match key {
            KeySource::File(path) => std::fs::read_to_string(path)
                .map_err(|e| Error::Key(format!("reading the key file {}: {e}", path.display())))?,
            KeySource::Env(var) => std::env::var(var)
                .map_err(|_| Error::Key(format!("the environment variable {var} is not set")))?,
        };
        Self::connect(rpc_url, text.trim())
    }

    /// Adds the gas of every mined write to `counter`.
    pub fn with_gas_counter(
        mut self,
        counter: prometheus_client::metrics::counter::Counter,
    ) -> Self {
        self.gas = Some(counter);
        self
    }

    /// Records the gas a mined write used.
    pub(crate) fn count_gas(&self, gas: u64) {
        if let Some(c) = &self.gas {
            c.inc_by(gas);
        }
    }

    /// Requires `n` confirmations (at least 1) before a write counts.
    pub fn with_confirmations(mut self, n: u64) -> Self {
        self.confirmations = n.max(1);
        self
    }

    /// The provider (signing with the ledger's key), for calls the typed helpers do not cover.
    pub fn provider(&self) -> &alloy::providers::DynProvider {
        &self.provider
    }

    /// The operator's own address (derived from its key).
    pub fn address(&self) -> Address {
        self.signer
    }

    /// Deploys an OPEN token minting `supply` base units to `treasury`.
    pub async fn deploy_open_token(&self, treasury: Address, supply: U256) -> Result<Address> {
        let token = OpenToken::deploy(&self.provider, treasury, supply)
            .await
            .map_err(|source| Error::Deploy {
                contract: "OpenToken",
                source: Box::new(source),
            })?;
        Ok(*token.address())
    }

    /// Reads an OPEN token's name, symbol, decimals and supply back from the chain.
    pub async fn token_info(&self, address: Address) -> Result<TokenInfo> {
        if self.provider.get_code_at(address).await?.is_empty() {
            return Err(Error::NoCode { address });
        }
        let token = OpenToken::new(address, &self.provider);
        let call = |method: &'static str| {
            move |source| Error::Call {
                contract: "OpenToken",
                method,
                address,
                source: Box::new(source),
            }
        };
        Ok(TokenInfo {
            name: token.name().call().await.map_err(call("name"))?,
            symbol: token.symbol().call().await.map_err(call("symbol"))?,
            decimals: token.decimals().call().await.map_err(call("decimals"))?,
            total_supply: token
                .totalSupply()
                .call()
                .await
                .map_err(call("totalSupply"))?,
        })
    }

    /// An account's OPEN balance in base units.
    pub async fn token_balance(&self, token: Address, account: Address) -> Result<U256> {
        OpenToken::new(token, &self.provider)
            .balanceOf(account)
            .call()
            .await
            .map_err(|source| Error::Call {
                contract: "OpenToken",
                method: "balanceOf",
                address: token,
                source: Box::new(source),
            })
    }
}
