//! `ModelProposal`: intent, stake, governance and mandate of one specialized model.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::common::MetricTarget;
use crate::deployment::Integration;

/// A proposal to build one specialized model: what it is for, the proposer's stake behind it,
/// how token holders decide on it, and — once approved — the mandate (budget, data needs,
/// evaluation rubric) every Datanet, FineTuneJob and RLHFRound of the model works under.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "modelcommons.dev",
    version = "v1alpha1",
    kind = "ModelProposal",
    doc = "A proposal to build one specialized model, staked by its proposer and decided by token-weighted governance on chain; once approved, its mandate (budget, data needs, evaluation rubric) governs every Datanet, FineTuneJob and RLHFRound of the model.",
    namespaced,
    status = "ModelProposalStatus",
    shortname = "mp",
    category = "modelcommons",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Domain","type":"string","jsonPath":".spec.domain"}"#,
    printcolumn = r#"{"name":"Stake","type":"string","jsonPath":".spec.stake"}"#,
    printcolumn = r#"{"name":"GPU-h Left","type":"string","jsonPath":".status.budget.gpuHoursLeft"}"#,
    printcolumn = r#"{"name":"For","type":"string","jsonPath":".status.tally.forVotes","priority":1}"#,
    printcolumn = r#"{"name":"Against","type":"string","jsonPath":".status.tally.againstVotes","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.title == oldSelf.title && self.domain == oldSelf.domain && has(self.description) == has(oldSelf.description) && (!has(self.description) || self.description == oldSelf.description)").message("title, domain and description are fixed once proposed: they are part of the spec hash token holders vote on; create a new ModelProposal to change them"),
    validation = Rule::new("self.stake == oldSelf.stake && self.proposer == oldSelf.proposer").message("stake and proposer are fixed once proposed: they are what the proposer authorized and token holders vote on; create a new ModelProposal to change them"),
    validation = Rule::new("has(self.governance) == has(oldSelf.governance) && (!has(self.governance) || self.governance == oldSelf.governance)").message("governance is fixed once proposed: the vote runs under it; create a new ModelProposal to change it"),
    validation = Rule::new("self.mandate == oldSelf.mandate").message("the mandate is fixed once proposed: it is what token holders approve (budget, data needs, rubric); create a new ModelProposal to change it")
)]
pub struct ModelProposalSpec {
    /// A short human title of the model, e.g. "Contract-clause review assistant".
    #[schemars(length(min = 1, max = 120))]
    pub title: String,

    /// The specialization domain, a lowercase DNS-label-like slug, e.g. `legal-contracts`.
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"))]
    pub domain: String,

    /// What the model must do and for whom; shown to token holders when they vote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub description: Option<String>,

    /// The proposer's EVM address (0x followed by 40 hex digits). The stake is escrowed from
    /// this account on chain; it is refunded on approval and partly slashed on defeat.
    #[schemars(regex(pattern = r"^0x[0-9a-fA-F]{40}$"))]
    #[x_kube(validation = Rule::new("self != '0x0000000000000000000000000000000000000000'").message("proposer must not be the zero address: nobody holds its key, so its stake could never be refunded"))]
    pub proposer: String,

    /// The stake, in OPEN token base units (1 OPEN = 10^18 base units), as a decimal string
    /// so no precision is lost: e.g. "1000000000000000000000" for 1000 OPEN. Must be > 0.
    #[schemars(regex(pattern = r"^(0|[1-9][0-9]{0,77})$"), length(max = 78))]
    #[x_kube(validation = Rule::new("size(self) < 78 || self <= '115792089237316195423570985008687907853269984665640564039457584007913129639935'").message("stake must be at most 2^256 - 1 base units (115792089237316195423570985008687907853269984665640564039457584007913129639935), the most a uint256 on chain holds"))]
    #[x_kube(validation = Rule::new("self != '0'").message("stake must be greater than zero (token base units as a decimal string)"))]
    pub stake: String,

    /// How token holders decide. Unset fields take the operator's defaults.
    #[serde(default)]
    pub governance: Governance,

    /// What the model may consume and must achieve once approved.
    pub mandate: Mandate,

    /// The proposer's authorization to escrow the stake for exactly this spec: an EIP-712
    /// signature by `proposer` over (spec hash, stake, reward budget, a nonce of the
    /// proposer's choosing, deadline) for the registry on this chain, as
    /// `modelcommons stake authorize` makes it. Not part of
    /// the spec hash (it signs it). Without it the proposal waits (`AwaitingStakeAuthorization`):
    /// nobody can stake someone else's tokens by naming them as proposer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stake_authorization: Option<StakeAuthorization>,
}

/// A proposer's signed authorization of a stake.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct StakeAuthorization {
    /// The 65-byte secp256k1 signature, 0x-prefixed hex.
    #[schemars(regex(pattern = r"^0x[0-9a-fA-F]{130}$"))]
    pub signature: String,
    /// Unix seconds after which the registry refuses it.
    #[schemars(range(min = 1))]
    pub deadline: u64,
    /// A number the proposer chose; each authorizes one registration.
    pub nonce: u64,
}

/// Voting parameters, applied on chain when the proposal is registered.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Governance {
    /// Blocks between registration and the start of voting (the snapshot of voting power is
    /// taken at the start). Default: the operator's setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 1000000))]
    pub voting_delay_blocks: Option<u64>,
    /// Blocks the vote stays open; at least 1. Default: the operator's setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 10000000))]
    #[x_kube(validation = Rule::new("self >= 1").message("governance.votingPeriodBlocks must be at least 1 block"))]
    pub voting_period_blocks: Option<u64>,
    /// The quorum: for + abstain votes needed, as a share of the voting supply at the snapshot,
    /// in basis points within (0, 10000] (400 = 4%).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0 && self <= 10000").message("governance.quorumBps must be within (0, 10000] basis points, i.e. (0, 1]"))]
    pub quorum_bps: Option<u32>,
    /// The approval threshold: the share of for votes among for + against needed to pass, in
    /// basis points within (0, 10000] (5001 = simple majority).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0 && self <= 10000").message("governance.approvalThresholdBps must be within (0, 10000] basis points, i.e. (0, 1]"))]
    pub approval_threshold_bps: Option<u32>,
}

/// The mandate a model works under once approved.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Mandate {
    /// The compute budget for all FineTuneJobs of this proposal.
    pub budget: Budget,
    /// What the Datanets of this proposal must supply.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub data_needs: Vec<DataNeed>,
    /// The rubric every FineTuneJob and RLHFRound of this proposal is judged by.
    pub evaluation: Evaluation,
    /// Where the model must be usable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub integration_targets: Vec<IntegrationTarget>,
    /// The reward budget, in OPEN base units as a decimal string: what the ratifying vote
    /// moves from the treasury into escrow for this mandate, and what every reward pool of
    /// it (Datanet versions, RLHF rounds) draws from — on chain, never beyond it. Unset: 0,
    /// and no pool of this mandate can be funded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(0|[1-9][0-9]{0,77})$"), length(max = 78))]
    #[x_kube(validation = Rule::new("size(self) < 78 || self <= '115792089237316195423570985008687907853269984665640564039457584007913129639935'").message("mandate.rewardBudget must be at most 2^256 - 1 base units, the most a uint256 on chain holds"))]
    pub reward_budget: Option<String>,
}

/// A compute budget.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("double(self.gpuHours) > 0.0").message("mandate.budget.gpuHours must be greater than zero"))]
pub struct Budget {
    /// GPU-hours all FineTuneJobs of the proposal may use together, as a decimal string
    /// (e.g. "120" or "7.5"). Each job is reserved its GPUs × its deadline at admission (its
    /// trainer Job gets a deadline capped by what is left) and charged what it used once it
    /// finished; a job that does not fit waits (`BudgetExhausted`).
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?$"), length(max = 32))]
    pub gpu_hours: String,
    /// The most GPUs the proposal's jobs may hold at once (workers × GPUs per worker of every
    /// admitted, unfinished job); a job that does not fit waits (`GpuLimitReached`).
    #[schemars(range(min = 1, max = 100000))]
    pub max_concurrent_gpus: u32,
}

/// Data a Datanet must supply.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataNeed {
    /// A short name, e.g. `annotated-clauses`.
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"))]
    pub name: String,
    /// What is needed, for contributors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,
    /// Accepted contributions needed before training may start.
    #[schemars(range(min = 1))]
    pub min_accepted_contributions: u32,
    /// The minimum quality score of accepted contributions, in basis points (0–10000).
    #[serde(default)]
    #[schemars(range(min = 0, max = 10000))]
    pub min_quality_bps: u32,
}

/// The evaluation rubric.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Evaluation {
    /// The metrics, each with a direction and a threshold; all must be met. Each metric name
    /// may appear once.
    #[schemars(length(min = 1, max = 32))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub metrics: Vec<MetricTarget>,
}

/// A protocol the model must be served over.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct IntegrationTarget {
    /// The protocol.
    pub protocol: Integration,
    /// The latency objective for the first token, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 600000))]
    pub latency_slo_ms: Option<u32>,
}

/// Where a proposal stands.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum ModelProposalPhase {
    /// Waiting for the stake to be escrowed on chain.
    Pending,
    /// Token holders are voting.
    Voting,
    /// The vote passed; the mandate is ratified.
    Approved,
    /// The vote failed; part of the stake is slashed.
    Rejected,
    /// The vote ended without quorum.
    Expired,
    /// Work runs against the mandate.
    Active,
    /// A deployment of the model serves.
    Completed,
    /// Deleted before a decision; the stake is returned.
    Withdrawn,
}

/// The vote count mirrored from the chain. Amounts are governance-token base units as
/// decimal strings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Tally {
    /// Votes for.
    pub for_votes: String,
    /// Votes against.
    pub against_votes: String,
    /// Abstentions (count toward quorum).
    pub abstain_votes: String,
    /// Whether for + abstain votes reached the quorum.
    pub quorum_reached: bool,
    /// The for + abstain votes the quorum needs (known once voting opens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum_votes: Option<String>,
}

/// The proposal's on-chain record.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProposalChain {
    /// The Governor proposal id (uint256 as a decimal string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposal_id: Option<String>,
    /// The registry id of the model (0x + 64 hex digits), derived from the object's uid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
    /// The transaction that registered the proposal and escrowed the stake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub register_tx: Option<String>,
    /// The transaction that executed the decision (ratification, or refund/slash).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_tx: Option<String>,
    /// The block voting power is measured at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_block: Option<u64>,
    /// The last block of the vote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_block: Option<u64>,
    /// The Governor's state of the proposal (Pending, Active, Succeeded, Queued, Executed,
    /// Defeated, Canceled, Expired).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub governor_state: Option<String>,
    /// The part of the stake sent to the treasury (rejected, expired or withdrawn while
    /// voting), in OPEN base units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stake_slashed: Option<String>,
    /// The part of the stake returned to the proposer, in OPEN base units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stake_refunded: Option<String>,
}

/// The mandate's budget accounting: a mirror of the operator's usage record (in its trusted
/// namespace), which is what admission reads.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BudgetStatus {
    /// GPU-hours used by the proposal's FineTuneJobs (reserved, for those still running), as a
    /// decimal string.
    pub gpu_hours_used: String,
    /// GPU-hours left, as a decimal string.
    pub gpu_hours_left: String,
}

/// Objects working under the proposal.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Children {
    /// Datanets referencing the proposal.
    pub datanets: u32,
    /// FineTuneJobs referencing the proposal.
    pub fine_tune_jobs: u32,
    /// RLHFRounds on the proposal's models.
    pub rlhf_rounds: u32,
    /// ModelDeployments serving the proposal's models.
    pub model_deployments: u32,
}

/// The observed state of a ModelProposal.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelProposalStatus {
    /// Where the proposal stands: Pending, Voting, Approved, Rejected, Expired, Active,
    /// Completed or Withdrawn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ModelProposalPhase>,
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The proposal on chain: id, transactions, snapshot and deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<ProposalChain>,
    /// The vote count, mirrored from the chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tally: Option<Tally>,
    /// GPU-hours used and left of the mandate's budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetStatus>,
    /// How many objects of each kind work under this proposal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub children: Option<Children>,
    /// Standard conditions (`Ready`, `LedgerSynced`, …) with reasons that say what to do.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// Condition: the spec is the one registered on chain (False: it changed after).
pub const SPEC_MATCHES_CHAIN: &str = "SpecMatchesChain";

/// The reasons of a ModelProposal's conditions and events (what users alert on).
pub mod reason {
    /// Pending: the registry may not escrow the stake yet (allowance or balance).
    pub const AWAITING_STAKE: &str = "AwaitingStake";
    /// Pending: `spec.stakeAuthorization` is not set.
    pub const AWAITING_STAKE_AUTHORIZATION: &str = "AwaitingStakeAuthorization";
    /// Voting: the passed vote waits in the timelock.
    pub const AWAITING_TIMELOCK: &str = "AwaitingTimelock";
    /// Stalled: the vote was canceled.
    pub const CANCELED: &str = "Canceled";
    /// Voting: the vote is being decided.
    pub const DECIDING: &str = "Deciding";
    /// Rejected: the vote was lost.
    pub const DEFEATED: &str = "Defeated";
    /// Event: deleted after the vote passed; it can no longer be withdrawn.
    pub const DECISION_PENDING: &str = "DecisionPending";
    /// Event: registered on chain.
    pub const REGISTERED: &str = "Registered";
    /// Event: the passed vote was queued in the timelock.
    pub const VOTE_QUEUED: &str = "VoteQueued";
    /// Event: `spec.governance` voting periods are the Governor's.
    pub const VOTING_SCHEDULE_IS_GLOBAL: &str = "VotingScheduleIsGlobal";
    /// Withdrawn: withdrawn on chain before its decision.
    pub const WITHDRAWN: &str = "Withdrawn";
    /// Stalled: quorum or threshold below the floors governance set.
    pub const GOVERNANCE_BELOW_FLOOR: &str = "GovernanceBelowFloor";
    /// LedgerSynced True: the status mirrors the chain.
    pub const IN_SYNC: &str = "InSync";
    /// Stalled: `spec.mandate.rewardBudget` does not fit in 256 bits.
    pub const INVALID_REWARD_BUDGET: &str = "InvalidRewardBudget";
    /// Stalled: `spec.stake` does not fit in 256 bits.
    pub const INVALID_STAKE: &str = "InvalidStake";
    /// LedgerSynced False: the chain did not answer (retried).
    pub const LEDGER_UNAVAILABLE: &str = "LedgerUnavailable";
    /// Expired: the vote ended without quorum.
    pub const NO_QUORUM: &str = "NoQuorum";
    /// Ready: approved and executed through the timelock.
    pub const RATIFIED: &str = "Ratified";
    /// Ready (Active): approved, and FineTuneJobs work under the mandate.
    pub const MANDATE_IN_USE: &str = "MandateInUse";
    /// Pending: registration was sent; the chain has not shown it yet.
    pub const REGISTERING: &str = "Registering";
    /// SpecMatchesChain False: the spec changed after it was registered.
    pub const SPEC_CHANGED_AFTER_REGISTRATION: &str = "SpecChangedAfterRegistration";
    /// Pending: `spec.stakeAuthorization` expired.
    pub const STAKE_AUTHORIZATION_EXPIRED: &str = "StakeAuthorizationExpired";
    /// Stalled: the authorization's nonce registered another proposal.
    pub const STAKE_AUTHORIZATION_USED: &str = "StakeAuthorizationUsed";
    /// Pending: `spec.stakeAuthorization` is not the proposer's signature of this spec.
    pub const STAKE_NOT_AUTHORIZED: &str = "StakeNotAuthorized";
    /// Voting: the vote is open.
    pub const VOTE_OPEN: &str = "VoteOpen";
    /// Voting: the vote has not started (its snapshot block is ahead).
    pub const VOTING_NOT_STARTED: &str = "VotingNotStarted";
}
