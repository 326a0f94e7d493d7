// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {Strings} from "@openzeppelin/contracts/utils/Strings.sol";
import {IGovernor} from "@openzeppelin/contracts/governance/IGovernor.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";
import {ModelGovernor} from "./ModelGovernor.sol";
import {RewardDistributor} from "./RewardDistributor.sol";

/// @title The model registry: proposals, stakes, mandates, reward budgets and training records.
/// @notice The operator registers a ModelProposal under a deterministic id (derived from the
///         Kubernetes object's uid), escrowing the proposer's OPEN stake — only with the
///         proposer's own EIP-712 authorization of that spec hash, stake and reward budget —
///         and opening a Governor proposal with the proposal's quorum and threshold (never
///         below the floors governance set). The vote's actions are the ratification and the
///         spend: the timelock (the treasury) approves the reward budget and `ratify` moves it
///         into this contract's escrow, so approving the mandate is approving its spend. Every
///         reward pool of the mandate is published through `fundDistribution`, which draws on
///         that escrow and refuses to exceed it; the operator's own wallet funds nothing.
///         A successful vote, after the timelock, ratifies the mandate and refunds the stake;
///         only the model's own Governor proposal can ratify it. A defeated or expired vote
///         lets anyone settle it: `slashBps` of the stake goes to the treasury, the rest back
///         to the proposer. Training results (dataset root -> model digest -> metrics hash ->
///         passed) are recorded once per FineTuneJob run. A proposal withdrawn before its
///         decision (the Kubernetes object was deleted) cancels its vote: before voting opens
///         the whole stake is refunded; once holders are voting, `slashBps` is slashed as for a
///         defeat, so that withdrawing a losing proposal costs what losing it would.
contract ModelRegistry is AccessControl, Pausable, ReentrancyGuard, EIP712 {
    using SafeERC20 for IERC20;

    /// @notice The operator's key: registers proposals and records training results.
    bytes32 public constant OPERATOR_ROLE = keccak256("OPERATOR_ROLE");
    /// @notice The timelock: ratifies mandates and changes parameters, only through votes.
    bytes32 public constant GOVERNANCE_ROLE = keccak256("GOVERNANCE_ROLE");
    /// @notice What a proposer signs to let this registry escrow their stake for one spec.
    bytes32 public constant STAKE_AUTHORIZATION_TYPEHASH = keccak256(
        "StakeAuthorization(bytes32 specHash,uint256 stake,uint256 rewardBudget,uint256 nonce,uint256 deadline)"
    );

    enum Status {
        None,
        Voting,
        Ratified,
        Rejected,
        Withdrawn
    }

    struct Model {
        address proposer;
        Status status;
        uint256 stake;
        bytes32 specHash;
        uint256 proposalId;
        /// OPEN the ratification moves from the treasury into escrow for the mandate's pools.
        uint256 rewardBudget;
        /// What its pools have drawn so far.
        uint256 rewardSpent;
    }

    /// @notice A registration, as the operator submits it.
    struct Registration {
        bytes32 modelId;
        bytes32 specHash;
        address proposer;
        uint256 stake;
        uint256 rewardBudget;
        uint16 quorumBps;
        uint16 thresholdBps;
        /// The authorization: a nonce the proposer chose (each usable once, in any order, so
        /// several proposals can be authorized at once), its deadline (unix seconds) and the
        /// proposer's signature over StakeAuthorization(specHash, stake, rewardBudget, nonce,
        /// deadline).
        uint256 nonce;
        uint256 deadline;
        bytes signature;
    }

    struct TrainingRecord {
        bytes32 modelId;
        bytes32 datasetRoot;
        bytes32 modelDigest;
        bytes32 metricsHash;
        bool passed;
        uint64 recordedAt;
    }

    IERC20 public immutable open;
    ModelGovernor public immutable governor;
    /// @notice Where the mandates' pools are published.
    RewardDistributor public immutable distributor;
    address public treasury;
    /// @notice The share of a defeated proposal's stake sent to the treasury, in basis points.
    uint16 public slashBps;
    /// @notice The lowest quorum and approval threshold a proposal may ask for (basis points).
    uint16 public minQuorumBps;
    uint16 public minThresholdBps;

    mapping(bytes32 modelId => Model) public models;
    mapping(bytes32 jobId => TrainingRecord) public trainings;
    /// @notice Whether a proposer's authorization nonce has been used.
    mapping(address proposer => mapping(uint256 nonce => bool)) public authorizationUsed;

    event ModelRegistered(
        bytes32 indexed modelId, address indexed proposer, uint256 stake, bytes32 specHash, uint256 proposalId
    );
    event ModelRatified(bytes32 indexed modelId, address indexed proposer, uint256 refunded, uint256 rewardBudget);
    event RewardBudgetSpent(bytes32 indexed modelId, bytes32 indexed distribution, uint256 amount, uint256 spent);
    event GovernanceFloorsChanged(uint16 minQuorumBps, uint16 minThresholdBps);
    event ModelRejected(bytes32 indexed modelId, address indexed proposer, uint256 slashed, uint256 refunded);
    event ModelWithdrawn(bytes32 indexed modelId, address indexed proposer, uint256 slashed, uint256 refunded);
    event TrainingRecorded(
        bytes32 indexed jobId,
        bytes32 indexed modelId,
        bytes32 datasetRoot,
        bytes32 modelDigest,
        bytes32 metricsHash,
        bool passed
    );
    event SlashShareChanged(uint16 slashBps);
    event TreasuryChanged(address treasury);

    error ModelExists(bytes32 modelId);
    error UnknownModel(bytes32 modelId);
    error ZeroStake();
    error WrongStatus(bytes32 modelId, Status status);
    error VoteNotLost(bytes32 modelId, IGovernor.ProposalState state);
    error VoteNotOpen(bytes32 modelId, IGovernor.ProposalState state);
    error TrainingExists(bytes32 jobId);
    error InvalidBasisPoints(uint256 bps);
    error ZeroAddress();
    error QuorumBelowFloor(uint16 quorumBps, uint16 minQuorumBps);
    error ThresholdBelowFloor(uint16 thresholdBps, uint16 minThresholdBps);
    error AuthorizationExpired(uint256 deadline);
    error StakeNotAuthorized(address proposer);
    error AuthorizationUsed(address proposer, uint256 nonce);
    error NotThisModelsVote(bytes32 modelId, IGovernor.ProposalState state);
    error RewardBudgetExceeded(bytes32 modelId, uint256 budget, uint256 spent, uint256 amount);

    constructor(
        IERC20 open_,
        ModelGovernor governor_,
        RewardDistributor distributor_,
        address treasury_,
        uint16 slashBps_,
        uint16 minQuorumBps_,
        uint16 minThresholdBps_,
        address admin
    ) EIP712("modelcommons registry", "1") {
        if (
            address(open_) == address(0) || address(governor_) == address(0)
                || address(distributor_) == address(0) || treasury_ == address(0) || admin == address(0)
        ) {
            revert ZeroAddress();
        }
        if (slashBps_ > 10_000) revert InvalidBasisPoints(slashBps_);
        _setFloors(minQuorumBps_, minThresholdBps_);
        open = open_;
        governor = governor_;
        distributor = distributor_;
        treasury = treasury_;
        slashBps = slashBps_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    /// @notice The EIP-712 digest a proposer signs to authorize a stake (what
    ///         `modelcommons stake authorize` signs).
    function stakeAuthorizationDigest(
        bytes32 specHash,
        uint256 stake,
        uint256 rewardBudget,
        uint256 nonce,
        uint256 deadline
    ) public view returns (bytes32) {
        return _hashTypedDataV4(
            keccak256(abi.encode(STAKE_AUTHORIZATION_TYPEHASH, specHash, stake, rewardBudget, nonce, deadline))
        );
    }

    /// @notice The description of the Governor proposal that ratifies `modelId`.
    function proposalDescription(bytes32 modelId) public pure returns (string memory) {
        return string.concat("modelcommons: ratify model ", Strings.toHexString(uint256(modelId), 32));
    }

    /// @notice The action of the Governor proposal that ratifies `modelId`.
    ///         With a reward budget, the timelock first approves it to this registry, which
    ///         `ratify` then escrows.
    function ratificationCall(bytes32 modelId)
        public
        view
        returns (address[] memory targets, uint256[] memory values, bytes[] memory calldatas)
    {
        uint256 budget = models[modelId].rewardBudget;
        uint256 n = budget > 0 ? 2 : 1;
        targets = new address[](n);
        values = new uint256[](n);
        calldatas = new bytes[](n);
        if (budget > 0) {
            targets[0] = address(open);
            calldatas[0] = abi.encodeCall(IERC20.approve, (address(this), budget));
        }
        targets[n - 1] = address(this);
        calldatas[n - 1] = abi.encodeCall(this.ratify, (modelId));
    }

    /// @notice Registers a proposal: checks the proposer's authorization of this spec hash,
    ///         stake and reward budget (and uses up its nonce, so it registers one model), escrows `stake` OPEN from the
    ///         proposer (who approved this contract) and opens its vote with its own quorum and
    ///         threshold, which may not be below the governance floors.
    function register(Registration calldata r)
        external
        onlyRole(OPERATOR_ROLE)
        whenNotPaused
        nonReentrant
        returns (uint256 proposalId)
    {
        if (models[r.modelId].status != Status.None) revert ModelExists(r.modelId);
        if (r.stake == 0) revert ZeroStake();
        if (r.proposer == address(0)) revert ZeroAddress();
        if (r.quorumBps < minQuorumBps) revert QuorumBelowFloor(r.quorumBps, minQuorumBps);
        if (r.thresholdBps < minThresholdBps) revert ThresholdBelowFloor(r.thresholdBps, minThresholdBps);
        if (block.timestamp > r.deadline) revert AuthorizationExpired(r.deadline);
        if (authorizationUsed[r.proposer][r.nonce]) revert AuthorizationUsed(r.proposer, r.nonce);
        bytes32 digest = stakeAuthorizationDigest(r.specHash, r.stake, r.rewardBudget, r.nonce, r.deadline);
        if (!SignatureChecker.isValidSignatureNow(r.proposer, digest, r.signature)) {
            revert StakeNotAuthorized(r.proposer);
        }
        authorizationUsed[r.proposer][r.nonce] = true;
        Model storage m = models[r.modelId];
        (m.proposer, m.status, m.stake, m.specHash, m.rewardBudget) =
            (r.proposer, Status.Voting, r.stake, r.specHash, r.rewardBudget);
        open.safeTransferFrom(r.proposer, address(this), r.stake);
        proposalId = _openVote(r.modelId, r.quorumBps, r.thresholdBps);
        m.proposalId = proposalId;
        emit ModelRegistered(r.modelId, r.proposer, r.stake, r.specHash, proposalId);
    }

    /// @notice Ratifies a mandate, refunds the stake and escrows the reward budget from the
    ///         timelock (which approved it in the same vote). Only the timelock executing this
    ///         model's own Governor proposal: no other proposal can ratify it.
    function ratify(bytes32 modelId) external onlyRole(GOVERNANCE_ROLE) nonReentrant {
        Model storage m = _voting(modelId);
        IGovernor.ProposalState s = governor.state(m.proposalId);
        if (s != IGovernor.ProposalState.Executed) revert NotThisModelsVote(modelId, s);
        m.status = Status.Ratified;
        uint256 refund = m.stake;
        open.safeTransfer(m.proposer, refund);
        if (m.rewardBudget > 0) open.safeTransferFrom(msg.sender, address(this), m.rewardBudget);
        emit ModelRatified(modelId, m.proposer, refund, m.rewardBudget);
    }

    /// @notice Publishes one reward pool of a ratified mandate (a Datanet version, an RLHF
    ///         round) and funds it from the mandate's escrowed budget; never beyond it.
    function fundDistribution(
        bytes32 modelId,
        bytes32 id,
        RewardDistributor.Kind kind,
        bytes32 root,
        bytes32 contentRoot,
        uint256 total,
        uint64 deadline
    ) external onlyRole(OPERATOR_ROLE) whenNotPaused nonReentrant {
        Model storage m = models[modelId];
        if (m.status != Status.Ratified) revert WrongStatus(modelId, m.status);
        if (m.rewardSpent + total > m.rewardBudget) {
            revert RewardBudgetExceeded(modelId, m.rewardBudget, m.rewardSpent, total);
        }
        m.rewardSpent += total;
        open.forceApprove(address(distributor), total);
        distributor.publish(id, kind, root, contentRoot, total, deadline);
        emit RewardBudgetSpent(modelId, id, total, m.rewardSpent);
    }

    /// @notice Sets the lowest quorum and threshold proposals may ask for; only through
    ///         governance.
    function setGovernanceFloors(uint16 minQuorumBps_, uint16 minThresholdBps_) external onlyRole(GOVERNANCE_ROLE) {
        _setFloors(minQuorumBps_, minThresholdBps_);
    }

    function _setFloors(uint16 q, uint16 t) private {
        if (q == 0 || q > 10_000) revert InvalidBasisPoints(q);
        if (t == 0 || t > 10_000) revert InvalidBasisPoints(t);
        minQuorumBps = q;
        minThresholdBps = t;
        emit GovernanceFloorsChanged(q, t);
    }

    /// @notice Settles a lost vote (Defeated, including no quorum, or Expired): slashes
    ///         `slashBps` of the stake to the treasury and refunds the rest. Anyone may call it.
    function settleDefeat(bytes32 modelId) external whenNotPaused nonReentrant {
        Model storage m = _voting(modelId);
        IGovernor.ProposalState s = governor.state(m.proposalId);
        if (s != IGovernor.ProposalState.Defeated && s != IGovernor.ProposalState.Expired) {
            revert VoteNotLost(modelId, s);
        }
        m.status = Status.Rejected;
        uint256 slashed = m.stake * slashBps / 10_000;
        uint256 refunded = m.stake - slashed;
        if (slashed > 0) open.safeTransfer(treasury, slashed);
        if (refunded > 0) open.safeTransfer(m.proposer, refunded);
        emit ModelRejected(modelId, m.proposer, slashed, refunded);
    }

    /// @notice Withdraws a proposal whose vote has not been decided: cancels the Governor
    ///         proposal and refunds the stake — all of it while the vote is still Pending, less
    ///         `slashBps` once voting is Active. Only the operator (on the object's deletion).
    function withdraw(bytes32 modelId) external onlyRole(OPERATOR_ROLE) whenNotPaused nonReentrant {
        Model storage m = _voting(modelId);
        IGovernor.ProposalState s = governor.state(m.proposalId);
        if (s != IGovernor.ProposalState.Pending && s != IGovernor.ProposalState.Active) {
            revert VoteNotOpen(modelId, s);
        }
        (address[] memory targets, uint256[] memory values, bytes[] memory calldatas) = ratificationCall(modelId);
        governor.cancelFromRegistry(targets, values, calldatas, keccak256(bytes(proposalDescription(modelId))));
        m.status = Status.Withdrawn;
        uint256 slashed = s == IGovernor.ProposalState.Active ? m.stake * slashBps / 10_000 : 0;
        uint256 refunded = m.stake - slashed;
        if (slashed > 0) open.safeTransfer(treasury, slashed);
        if (refunded > 0) open.safeTransfer(m.proposer, refunded);
        emit ModelWithdrawn(modelId, m.proposer, slashed, refunded);
    }

    /// @notice Records one training result for a ratified model, once per job id.
    function recordTraining(
        bytes32 jobId,
        bytes32 modelId,
        bytes32 datasetRoot,
        bytes32 modelDigest,
        bytes32 metricsHash,
        bool passed
    ) external onlyRole(OPERATOR_ROLE) whenNotPaused {
        if (models[modelId].status != Status.Ratified) revert WrongStatus(modelId, models[modelId].status);
        if (trainings[jobId].recordedAt != 0) revert TrainingExists(jobId);
        trainings[jobId] = TrainingRecord(modelId, datasetRoot, modelDigest, metricsHash, passed, uint64(block.timestamp));
        emit TrainingRecorded(jobId, modelId, datasetRoot, modelDigest, metricsHash, passed);
    }

    /// @notice Changes the slash share; only through governance.
    function setSlashBps(uint16 bps) external onlyRole(GOVERNANCE_ROLE) {
        if (bps > 10_000) revert InvalidBasisPoints(bps);
        slashBps = bps;
        emit SlashShareChanged(bps);
    }

    /// @notice Changes the treasury; only through governance.
    function setTreasury(address treasury_) external onlyRole(GOVERNANCE_ROLE) {
        if (treasury_ == address(0)) revert ZeroAddress();
        treasury = treasury_;
        emit TreasuryChanged(treasury_);
    }

    function pause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _pause();
    }

    function unpause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _unpause();
    }

    function _openVote(bytes32 modelId, uint16 quorumBps, uint16 thresholdBps) private returns (uint256) {
        (address[] memory targets, uint256[] memory values, bytes[] memory calldatas) = ratificationCall(modelId);
        return governor.proposeWithParams(
            targets, values, calldatas, proposalDescription(modelId), quorumBps, thresholdBps
        );
    }

    function _voting(bytes32 modelId) private view returns (Model storage m) {
        m = models[modelId];
        if (m.status == Status.None) revert UnknownModel(modelId);
        if (m.status != Status.Voting) revert WrongStatus(modelId, m.status);
    }
}
