// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {Strings} from "@openzeppelin/contracts/utils/Strings.sol";
import {IGovernor} from "@openzeppelin/contracts/governance/IGovernor.sol";
import {ModelGovernor} from "./ModelGovernor.sol";

/// @title The model registry: proposals, stakes, mandates and training records.
/// @notice The operator registers a ModelProposal under a deterministic id (derived from the
///         Kubernetes object's uid), escrowing the proposer's OPEN stake and opening a Governor
///         proposal whose only action is `ratify(modelId)`. A successful vote, after the
///         timelock, ratifies the mandate and refunds the stake; a defeated or expired vote
///         lets anyone settle it: `slashBps` of the stake goes to the treasury, the rest back
///         to the proposer. Training results (dataset root -> model digest -> metrics hash ->
///         passed) are recorded once per FineTuneJob run. A proposal withdrawn before its
///         decision (the Kubernetes object was deleted) cancels its vote: before voting opens
///         the whole stake is refunded; once holders are voting, `slashBps` is slashed as for a
///         defeat, so that withdrawing a losing proposal costs what losing it would.
contract ModelRegistry is AccessControl, Pausable, ReentrancyGuard {
    using SafeERC20 for IERC20;

    /// @notice The operator's key: registers proposals and records training results.
    bytes32 public constant OPERATOR_ROLE = keccak256("OPERATOR_ROLE");
    /// @notice The timelock: ratifies mandates and changes parameters, only through votes.
    bytes32 public constant GOVERNANCE_ROLE = keccak256("GOVERNANCE_ROLE");

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
    address public treasury;
    /// @notice The share of a defeated proposal's stake sent to the treasury, in basis points.
    uint16 public slashBps;

    mapping(bytes32 modelId => Model) public models;
    mapping(bytes32 jobId => TrainingRecord) public trainings;

    event ModelRegistered(
        bytes32 indexed modelId, address indexed proposer, uint256 stake, bytes32 specHash, uint256 proposalId
    );
    event ModelRatified(bytes32 indexed modelId, address indexed proposer, uint256 refunded);
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

    constructor(IERC20 open_, ModelGovernor governor_, address treasury_, uint16 slashBps_, address admin) {
        if (address(open_) == address(0) || address(governor_) == address(0) || treasury_ == address(0)) {
            revert ZeroAddress();
        }
        if (slashBps_ > 10_000) revert InvalidBasisPoints(slashBps_);
        open = open_;
        governor = governor_;
        treasury = treasury_;
        slashBps = slashBps_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    /// @notice The description of the Governor proposal that ratifies `modelId`.
    function proposalDescription(bytes32 modelId) public pure returns (string memory) {
        return string.concat("modelcommons: ratify model ", Strings.toHexString(uint256(modelId), 32));
    }

    /// @notice The action of the Governor proposal that ratifies `modelId`.
    function ratificationCall(bytes32 modelId)
        public
        view
        returns (address[] memory targets, uint256[] memory values, bytes[] memory calldatas)
    {
        targets = new address[](1);
        values = new uint256[](1);
        calldatas = new bytes[](1);
        targets[0] = address(this);
        calldatas[0] = abi.encodeCall(this.ratify, (modelId));
    }

    /// @notice Registers a proposal: escrows `stake` OPEN from `proposer` (who approved this
    ///         contract) and opens its vote with its own quorum and threshold.
    function register(
        bytes32 modelId,
        bytes32 specHash,
        address proposer,
        uint256 stake,
        uint16 quorumBps,
        uint16 thresholdBps
    ) external onlyRole(OPERATOR_ROLE) whenNotPaused nonReentrant returns (uint256 proposalId) {
        if (models[modelId].status != Status.None) revert ModelExists(modelId);
        if (stake == 0) revert ZeroStake();
        if (proposer == address(0)) revert ZeroAddress();
        open.safeTransferFrom(proposer, address(this), stake);
        proposalId = _openVote(modelId, quorumBps, thresholdBps);
        models[modelId] = Model(proposer, Status.Voting, stake, specHash, proposalId);
        emit ModelRegistered(modelId, proposer, stake, specHash, proposalId);
    }

    /// @notice Ratifies a mandate and refunds the stake. Only the timelock, i.e. only a vote.
    function ratify(bytes32 modelId) external onlyRole(GOVERNANCE_ROLE) nonReentrant {
        Model storage m = _voting(modelId);
        m.status = Status.Ratified;
        uint256 refund = m.stake;
        open.safeTransfer(m.proposer, refund);
        emit ModelRatified(modelId, m.proposer, refund);
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
