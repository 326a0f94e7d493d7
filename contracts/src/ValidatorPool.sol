// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";

/// @title Validator bonds and commit–reveal judgments for RLHF rounds.
/// @notice Validators bond OPEN (withdrawable after `unbondDelay` seconds, and slashable until
///         then). For each round the operator publishes the item set's root and deadlines;
///         bonded validators commit `keccak256(abi.encode(roundId, validator, choices, salt))`
///         before the commit deadline, then reveal `choices` and `salt` before the reveal
///         deadline — nobody can copy a judgment they cannot see. After the reveal deadline the
///         operator settles the round: the listed validators lose the listed amounts to the
///         treasury; rewards are paid from a RewardDistributor distribution (`rewardId`).
contract ValidatorPool is AccessControl, Pausable, ReentrancyGuard {
    using SafeERC20 for IERC20;

    bytes32 public constant OPERATOR_ROLE = keccak256("OPERATOR_ROLE");

    struct Bond {
        uint256 active;
        uint256 unbonding;
        uint64 withdrawableAt;
    }

    struct Round {
        bytes32 itemsRoot;
        uint64 commitDeadline;
        uint64 revealDeadline;
        uint256 minBond;
        bool settled;
        bytes32 rewardId;
    }

    IERC20 public immutable token;
    address public immutable treasury;
    uint64 public immutable unbondDelay;

    mapping(address validator => Bond) public bonds;
    mapping(bytes32 roundId => Round) public rounds;
    mapping(bytes32 roundId => mapping(address validator => bytes32)) public commitments;
    mapping(bytes32 roundId => mapping(address validator => bool)) public revealed;

    event Bonded(address indexed validator, uint256 amount, uint256 active);
    event UnbondRequested(address indexed validator, uint256 amount, uint64 withdrawableAt);
    event Withdrawn(address indexed validator, uint256 amount);
    event RoundOpened(bytes32 indexed roundId, bytes32 itemsRoot, uint64 commitDeadline, uint64 revealDeadline, uint256 minBond);
    event Committed(bytes32 indexed roundId, address indexed validator, bytes32 commitment);
    event Revealed(bytes32 indexed roundId, address indexed validator, bytes choices, bytes32 salt);
    event Slashed(bytes32 indexed roundId, address indexed validator, uint256 amount);
    event RoundSettled(bytes32 indexed roundId, bytes32 rewardId, uint256 slashedTotal);

    error ZeroAmount();
    error InsufficientBond(address validator, uint256 have, uint256 need);
    error StillUnbonding(uint64 withdrawableAt);
    error RoundExists(bytes32 roundId);
    error UnknownRound(bytes32 roundId);
    error BadDeadlines(uint64 commitDeadline, uint64 revealDeadline);
    error CommitClosed(bytes32 roundId, uint64 commitDeadline);
    error AlreadyCommitted(bytes32 roundId, address validator);
    error RevealNotOpen(bytes32 roundId, uint64 commitDeadline);
    error RevealClosed(bytes32 roundId, uint64 revealDeadline);
    error NoCommitment(bytes32 roundId, address validator);
    error AlreadyRevealed(bytes32 roundId, address validator);
    error RevealMismatch(bytes32 roundId, address validator);
    error NotSettleable(bytes32 roundId, uint64 revealDeadline);
    error AlreadySettled(bytes32 roundId);
    error LengthMismatch(uint256 validators, uint256 amounts);
    error ZeroAddress();

    constructor(IERC20 token_, address treasury_, uint64 unbondDelay_, address admin) {
        if (address(token_) == address(0) || treasury_ == address(0)) revert ZeroAddress();
        token = token_;
        treasury = treasury_;
        unbondDelay = unbondDelay_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    /// @notice Adds `amount` OPEN to the caller's active bond (approve first).
    function bond(uint256 amount) external whenNotPaused nonReentrant {
        if (amount == 0) revert ZeroAmount();
        Bond storage b = bonds[msg.sender];
        b.active += amount;
        token.safeTransferFrom(msg.sender, address(this), amount);
        emit Bonded(msg.sender, amount, b.active);
    }

    /// @notice Moves `amount` from the active bond to unbonding; withdrawable after the delay
    ///         and slashable until withdrawn.
    function requestUnbond(uint256 amount) external whenNotPaused {
        Bond storage b = bonds[msg.sender];
        if (amount == 0) revert ZeroAmount();
        if (b.active < amount) revert InsufficientBond(msg.sender, b.active, amount);
        b.active -= amount;
        b.unbonding += amount;
        b.withdrawableAt = uint64(block.timestamp) + unbondDelay;
        emit UnbondRequested(msg.sender, amount, b.withdrawableAt);
    }

    /// @notice Withdraws the unbonded amount once the delay has passed.
    function withdraw() external nonReentrant {
        Bond storage b = bonds[msg.sender];
        if (b.unbonding == 0) revert ZeroAmount();
        if (block.timestamp < b.withdrawableAt) revert StillUnbonding(b.withdrawableAt);
        uint256 amount = b.unbonding;
        b.unbonding = 0;
        token.safeTransfer(msg.sender, amount);
        emit Withdrawn(msg.sender, amount);
    }

    /// @notice Opens a round over a published item set.
    function openRound(bytes32 roundId, bytes32 itemsRoot, uint64 commitDeadline, uint64 revealDeadline, uint256 minBond)
        external
        onlyRole(OPERATOR_ROLE)
        whenNotPaused
    {
        if (rounds[roundId].commitDeadline != 0) revert RoundExists(roundId);
        if (commitDeadline <= block.timestamp || revealDeadline <= commitDeadline) {
            revert BadDeadlines(commitDeadline, revealDeadline);
        }
        rounds[roundId] = Round(itemsRoot, commitDeadline, revealDeadline, minBond, false, bytes32(0));
        emit RoundOpened(roundId, itemsRoot, commitDeadline, revealDeadline, minBond);
    }

    /// @notice The commitment a validator submits for `choices` with a secret `salt`.
    function commitmentOf(bytes32 roundId, address validator, bytes calldata choices, bytes32 salt)
        public
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(roundId, validator, choices, salt));
    }

    function commit(bytes32 roundId, bytes32 commitment) external whenNotPaused {
        Round storage r = _round(roundId);
        if (block.timestamp > r.commitDeadline) revert CommitClosed(roundId, r.commitDeadline);
        if (commitments[roundId][msg.sender] != bytes32(0)) revert AlreadyCommitted(roundId, msg.sender);
        uint256 have = bonds[msg.sender].active;
        if (have < r.minBond || have == 0) revert InsufficientBond(msg.sender, have, r.minBond);
        commitments[roundId][msg.sender] = commitment;
        emit Committed(roundId, msg.sender, commitment);
    }

    function reveal(bytes32 roundId, bytes calldata choices, bytes32 salt) external whenNotPaused {
        Round storage r = _round(roundId);
        if (block.timestamp <= r.commitDeadline) revert RevealNotOpen(roundId, r.commitDeadline);
        if (block.timestamp > r.revealDeadline) revert RevealClosed(roundId, r.revealDeadline);
        bytes32 c = commitments[roundId][msg.sender];
        if (c == bytes32(0)) revert NoCommitment(roundId, msg.sender);
        if (revealed[roundId][msg.sender]) revert AlreadyRevealed(roundId, msg.sender);
        if (c != commitmentOf(roundId, msg.sender, choices, salt)) revert RevealMismatch(roundId, msg.sender);
        revealed[roundId][msg.sender] = true;
        emit Revealed(roundId, msg.sender, choices, salt);
    }

    /// @notice Settles a round after its reveal deadline: slashes the listed bonds (active
    ///         first, then unbonding) to the treasury and records the reward distribution.
    function settle(bytes32 roundId, bytes32 rewardId, address[] calldata validators, uint256[] calldata amounts)
        external
        onlyRole(OPERATOR_ROLE)
        whenNotPaused
        nonReentrant
    {
        Round storage r = _round(roundId);
        if (block.timestamp <= r.revealDeadline) revert NotSettleable(roundId, r.revealDeadline);
        if (r.settled) revert AlreadySettled(roundId);
        if (validators.length != amounts.length) revert LengthMismatch(validators.length, amounts.length);
        r.settled = true;
        r.rewardId = rewardId;
        uint256 total;
        for (uint256 i = 0; i < validators.length; i++) {
            total += _slash(roundId, validators[i], amounts[i]);
        }
        if (total > 0) token.safeTransfer(treasury, total);
        emit RoundSettled(roundId, rewardId, total);
    }

    function pause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _pause();
    }

    function unpause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _unpause();
    }

    function _slash(bytes32 roundId, address validator, uint256 amount) private returns (uint256 taken) {
        Bond storage b = bonds[validator];
        uint256 fromActive = amount < b.active ? amount : b.active;
        b.active -= fromActive;
        uint256 rest = amount - fromActive;
        uint256 fromUnbonding = rest < b.unbonding ? rest : b.unbonding;
        b.unbonding -= fromUnbonding;
        taken = fromActive + fromUnbonding;
        emit Slashed(roundId, validator, taken);
    }

    function _round(bytes32 roundId) private view returns (Round storage r) {
        r = rounds[roundId];
        if (r.commitDeadline == 0) revert UnknownRound(roundId);
    }
}
