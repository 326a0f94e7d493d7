//! Typed bindings generated at compile time from the solc artifacts (`make contracts`). Each
//! contract gets its own module: the ABIs share type names (`IGovernor`, …).

#![allow(clippy::too_many_arguments, missing_docs)]

/// OPEN, the utility token (stakes, reward pools, bonds, usage revenue).
pub mod open_token {
    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug)]
        OpenToken,
        "../contracts/artifacts/OpenToken.json"
    );
}

/// gOPEN, voting power backed 1:1 by OPEN (ERC20Votes wrapper).
pub mod gov_token {
    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug)]
        GovToken,
        "../contracts/artifacts/GovToken.json"
    );
}

/// The OpenZeppelin Governor with per-proposal quorum and threshold.
pub mod model_governor {
    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug)]
        ModelGovernor,
        "../contracts/artifacts/ModelGovernor.json"
    );
}

/// The timelock between a successful vote and its execution.
pub mod model_timelock {
    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug)]
        ModelTimelock,
        "../contracts/artifacts/ModelTimelock.json"
    );
}

/// Proposals, stakes, mandates and training records.
pub mod model_registry {
    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug)]
        ModelRegistry,
        "../contracts/artifacts/ModelRegistry.json"
    );
}

/// Merkle distributions: Datanet versions, RLHF rounds, usage epochs.
pub mod reward_distributor {
    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug)]
        RewardDistributor,
        "../contracts/artifacts/RewardDistributor.json"
    );
}

/// Validator bonds and commit–reveal judgments.
pub mod validator_pool {
    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug)]
        ValidatorPool,
        "../contracts/artifacts/ValidatorPool.json"
    );
}

pub use gov_token::GovToken;
pub use model_governor::ModelGovernor;
pub use model_registry::ModelRegistry;
pub use model_timelock::ModelTimelock;
pub use open_token::OpenToken;
pub use reward_distributor::RewardDistributor;
pub use validator_pool::ValidatorPool;
