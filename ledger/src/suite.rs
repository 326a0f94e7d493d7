//! The whole contract suite: deployment (`bootstrap`) and the addresses file the operator reads.

use alloy::primitives::{Address, B256, U256};
use alloy::providers::Provider;
use serde::{Deserialize, Serialize};

use super::bindings::{
    GovToken, ModelGovernor, ModelRegistry, ModelTimelock, OpenToken, RewardDistributor,
    ValidatorPool,
};
use super::{Error, Ledger, Result, call_error};

/// Deployment parameters. Defaults suit a dev chain (blocks and seconds are short).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SuiteParams {
    /// OPEN minted to the treasury, in base units.
    pub supply: U256,
    /// Blocks between a proposal and the start of its vote.
    pub voting_delay_blocks: u64,
    /// Blocks a vote stays open.
    pub voting_period_blocks: u32,
    /// The global quorum in percent of the voting supply (proposals from the registry carry
    /// their own).
    pub quorum_percent: u64,
    /// Seconds between a successful vote's queueing and its execution.
    pub timelock_delay_seconds: u64,
    /// The share of a defeated proposal's stake sent to the treasury, in basis points.
    pub slash_bps: u16,
    /// Seconds a validator waits between requesting an unbond and withdrawing it.
    pub unbond_delay_seconds: u64,
    /// The lowest quorum a proposal may ask for, in basis points of the voting supply.
    #[serde(default = "default_min_quorum_bps")]
    pub min_quorum_bps: u16,
    /// The lowest approval threshold a proposal may ask for, in basis points.
    #[serde(default = "default_min_threshold_bps")]
    pub min_threshold_bps: u16,
    /// OPEN moved from the deployer to the treasury (the timelock) at bootstrap: what votes
    /// can grant as mandates' reward budgets.
    #[serde(default = "default_treasury_funding")]
    pub treasury_funding: U256,
}

fn default_min_quorum_bps() -> u16 {
    400
}

fn default_min_threshold_bps() -> u16 {
    5001
}

fn default_treasury_funding() -> U256 {
    crate::units::open(10_000_000)
}

/// Who holds which role after bootstrap. The operator's key gets the operator role only;
/// the admin (pausing, role administration) is another address unless a dev chain keeps one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    /// Registers proposals, funds the mandates' pools from their budgets, records results.
    pub operator: Address,
    /// DEFAULT_ADMIN_ROLE of the registry, the distributor and the validator pool.
    pub admin: Address,
}

impl Default for SuiteParams {
    fn default() -> Self {
        Self {
            supply: crate::units::open(100_000_000),
            voting_delay_blocks: 1,
            voting_period_blocks: 20,
            quorum_percent: 4,
            timelock_delay_seconds: 60,
            slash_bps: 2_000,
            unbond_delay_seconds: 3_600,
            min_quorum_bps: default_min_quorum_bps(),
            min_threshold_bps: default_min_threshold_bps(),
            treasury_funding: default_treasury_funding(),
        }
    }
}

/// Where the suite lives; written by `bootstrap`, read by the operator.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SuiteAddresses {
    pub chain_id: u64,
    pub open: Address,
    pub gov_token: Address,
    pub timelock: Address,
    pub governor: Address,
    pub registry: Address,
    pub distributor: Address,
    pub validator_pool: Address,
    /// The treasury: the timelock, so only votes spend it. Receives slashes and swept
    /// rewards and holds what mandates' reward budgets are granted from.
    pub treasury: Address,
    /// The operator's address (its role only).
    #[serde(default)]
    pub operator: Address,
}

fn deploy_err(contract: &'static str) -> impl FnOnce(alloy::contract::Error) -> Error {
    move |source| Error::Deploy {
        contract,
        source: Box::new(source),
    }
}

/// Sends a configuration call and waits until it is mined.
async fn mined<P: Provider, D: alloy::contract::CallDecoder>(
    call: alloy::contract::CallBuilder<P, D>,
    contract: &'static str,
    method: &'static str,
    address: Address,
) -> Result<()> {
    call.send()
        .await
        .map_err(call_error(contract, method, address))?
        .watch()
        .await?;
    Ok(())
}

impl Ledger {
    /// Deploys the suite with this ledger's key as deployer, operator and admin (a dev
    /// chain); see [`Ledger::bootstrap_with`].
    pub async fn bootstrap(&self, params: &SuiteParams) -> Result<SuiteAddresses> {
        let me = self.address();
        self.bootstrap_with(
            params,
            Roles {
                operator: me,
                admin: me,
            },
        )
        .await
    }

    /// Deploys the suite with this ledger's key as deployer and wires the roles: the
    /// timelock governs and is the treasury (it holds `treasury_funding` OPEN; the rest of
    /// the supply stays with the deployer to hand out), the registry alone publishes reward
    /// distributions (from mandates' budgets), `roles.operator` operates, `roles.admin`
    /// administers. The deployer keeps no role it was not given, and the timelock
    /// administers itself.
    pub async fn bootstrap_with(
        &self,
        params: &SuiteParams,
        roles: Roles,
    ) -> Result<SuiteAddresses> {
        let p = &self.provider;
        let me = self.address();
        let open = *OpenToken::deploy(p, me, params.supply)
            .await
            .map_err(deploy_err("OpenToken"))?
            .address();
        let gov_token = *GovToken::deploy(p, open)
            .await
            .map_err(deploy_err("GovToken"))?
            .address();
        let timelock = ModelTimelock::deploy(
            p,
            U256::from(params.timelock_delay_seconds),
            vec![],
            vec![Address::ZERO],
            me,
        )
        .await
        .map_err(deploy_err("ModelTimelock"))?;
        let governor = ModelGovernor::deploy(
            p,
            gov_token,
            *timelock.address(),
            alloy::primitives::Uint::<48, 1>::from(params.voting_delay_blocks),
            params.voting_period_blocks,
            U256::from(params.quorum_percent),
        )
        .await
        .map_err(deploy_err("ModelGovernor"))?;
        let t = *timelock.address();
        let distributor = RewardDistributor::deploy(p, open, t, me)
            .await
            .map_err(deploy_err("RewardDistributor"))?;
        let registry = ModelRegistry::deploy(
            p,
            open,
            *governor.address(),
            *distributor.address(),
            t,
            params.slash_bps,
            params.min_quorum_bps,
            params.min_threshold_bps,
            me,
        )
        .await
        .map_err(deploy_err("ModelRegistry"))?;
        let pool = ValidatorPool::deploy(p, open, t, params.unbond_delay_seconds, me)
            .await
            .map_err(deploy_err("ValidatorPool"))?;

        let (t, g, r, d, v) = (
            *timelock.address(),
            *governor.address(),
            *registry.address(),
            *distributor.address(),
            *pool.address(),
        );
        // Wiring: the governor proposes to the timelock; the registry proposes to the governor;
        // the timelock governs the registry and the distributor; the operator operates.
        let proposer_role = timelock.PROPOSER_ROLE().call().await.map_err(call_error(
            "ModelTimelock",
            "PROPOSER_ROLE",
            t,
        ))?;
        let canceller_role = timelock.CANCELLER_ROLE().call().await.map_err(call_error(
            "ModelTimelock",
            "CANCELLER_ROLE",
            t,
        ))?;
        for role in [proposer_role, canceller_role] {
            mined(timelock.grantRole(role, g), "ModelTimelock", "grantRole", t).await?;
        }
        mined(governor.setRegistry(r), "ModelGovernor", "setRegistry", g).await?;
        let op = registry.OPERATOR_ROLE().call().await.map_err(call_error(
            "ModelRegistry",
            "OPERATOR_ROLE",
            r,
        ))?;
        let gov = registry.GOVERNANCE_ROLE().call().await.map_err(call_error(
            "ModelRegistry",
            "GOVERNANCE_ROLE",
            r,
        ))?;
        mined(
            registry.grantRole(op, roles.operator),
            "ModelRegistry",
            "grantRole",
            r,
        )
        .await?;
        mined(registry.grantRole(gov, t), "ModelRegistry", "grantRole", r).await?;
        // Only the registry publishes distributions: every pool is drawn from a budget.
        mined(
            distributor.grantRole(op, r),
            "RewardDistributor",
            "grantRole",
            d,
        )
        .await?;
        mined(
            distributor.grantRole(gov, t),
            "RewardDistributor",
            "grantRole",
            d,
        )
        .await?;
        mined(
            pool.grantRole(op, roles.operator),
            "ValidatorPool",
            "grantRole",
            v,
        )
        .await?;
        // The treasury's funds: what votes can grant as reward budgets.
        if !params.treasury_funding.is_zero() {
            mined(
                OpenToken::new(open, p).transfer(t, params.treasury_funding),
                "OpenToken",
                "transfer",
                open,
            )
            .await?;
        }
        // The timelock administers itself; the deployer hands its admin roles on.
        let admin_role = B256::ZERO;
        if roles.admin != me {
            mined(
                registry.grantRole(admin_role, roles.admin),
                "ModelRegistry",
                "grantRole",
                r,
            )
            .await?;
            mined(
                distributor.grantRole(admin_role, roles.admin),
                "RewardDistributor",
                "grantRole",
                d,
            )
            .await?;
            mined(
                pool.grantRole(admin_role, roles.admin),
                "ValidatorPool",
                "grantRole",
                v,
            )
            .await?;
            mined(
                registry.renounceRole(admin_role, me),
                "ModelRegistry",
                "renounceRole",
                r,
            )
            .await?;
            mined(
                distributor.renounceRole(admin_role, me),
                "RewardDistributor",
                "renounceRole",
                d,
            )
            .await?;
            mined(
                pool.renounceRole(admin_role, me),
                "ValidatorPool",
                "renounceRole",
                v,
            )
            .await?;
        }
        mined(
            timelock.renounceRole(admin_role, me),
            "ModelTimelock",
            "renounceRole",
            t,
        )
        .await?;

        Ok(SuiteAddresses {
            chain_id: p.get_chain_id().await?,
            open,
            gov_token,
            timelock: t,
            governor: g,
            registry: r,
            distributor: d,
            validator_pool: v,
            treasury: t,
            operator: roles.operator,
        })
    }
}

impl Ledger {
    /// Transfers `whole` OPEN (whole tokens, 10^18 base units each) from this ledger's account
    /// to `to`, and waits for it to be mined.
    pub async fn fund_open(&self, suite: &SuiteAddresses, to: Address, whole: U256) -> Result<()> {
        let unit = crate::units::one_open();
        mined(
            OpenToken::new(suite.open, &self.provider).transfer(to, whole * unit),
            "OpenToken",
            "transfer",
            suite.open,
        )
        .await
    }
}

/// Parses `ADDRESS=OPEN` (an account and a whole number of OPEN), as `--fund` takes it.
pub fn parse_fund(spec: &str) -> std::result::Result<(Address, U256), String> {
    let (addr, amount) = spec
        .split_once('=')
        .ok_or_else(|| format!("{spec}: --fund takes ADDRESS=OPEN"))?;
    let addr: Address = addr
        .parse()
        .map_err(|_| format!("{addr} is not an address"))?;
    let amount: U256 = amount
        .parse()
        .map_err(|_| format!("{amount} is not a whole number of OPEN"))?;
    Ok((addr, amount))
}
