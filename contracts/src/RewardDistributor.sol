// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";

/// @title Merkle reward distributions: Datanet versions, RLHF rounds and usage epochs.
/// @notice Each distribution is one funded pool with one Merkle root over
///         `(index, account, amount)` leaves, hashed as OpenZeppelin's StandardMerkleTree does
///         (`keccak256(bytes.concat(keccak256(abi.encode(index, account, amount))))`). The
///         operator publishes a distribution and funds it in the same call; every listed
///         account claims its leaf once, with a proof, before the deadline; what is left after
///         the deadline can be swept to the treasury. `contentRoot` records what was paid for
///         (a Datanet version's dataset root, an RLHF round's item root, a usage epoch's
///         metering root), so the payment and its reason share one auditable event.
contract RewardDistributor is AccessControl, Pausable, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    bytes32 public constant OPERATOR_ROLE = keccak256("OPERATOR_ROLE");
    bytes32 public constant GOVERNANCE_ROLE = keccak256("GOVERNANCE_ROLE");

    enum Kind {
        DatanetVersion,
        RlhfRound,
        UsageEpoch
    }

    /// Packed so a claim reads three slots and writes one: root | total, claimed |
    /// deadline, swept, kind | contentRoot (never read on chain, kept for audits).
    struct Distribution {
        bytes32 root;
        uint128 total;
        uint128 claimed;
        uint64 deadline;
        bool swept;
        Kind kind;
        bytes32 contentRoot;
    }

    IERC20 public immutable token;
    address public treasury;
    mapping(bytes32 id => Distribution) public distributions;
    mapping(bytes32 id => mapping(uint256 word => uint256 bits)) private _claimedBitmap;

    event Published(
        bytes32 indexed id, Kind kind, bytes32 root, bytes32 contentRoot, uint256 total, uint64 deadline
    );
    event Claimed(bytes32 indexed id, uint256 index, address indexed account, uint256 amount);
    event Swept(bytes32 indexed id, uint256 amount);

    error DistributionExists(bytes32 id);
    error UnknownDistribution(bytes32 id);
    error EmptyDistribution();
    error DeadlineInPast(uint64 deadline);
    error AlreadyClaimed(bytes32 id, uint256 index);
    error InvalidProof(bytes32 id, uint256 index);
    error ClaimWindowClosed(bytes32 id, uint64 deadline);
    error ClaimWindowOpen(bytes32 id, uint64 deadline);
    error AlreadySwept(bytes32 id);
    error Overdrawn(bytes32 id, uint256 claimed, uint256 total);
    error ZeroAddress();

    constructor(IERC20 token_, address treasury_, address admin) {
        if (address(token_) == address(0) || treasury_ == address(0)) revert ZeroAddress();
        token = token_;
        treasury = treasury_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    /// @notice Publishes and funds a distribution; the caller pays `total` (approve first).
    function publish(bytes32 id, Kind kind, bytes32 root, bytes32 contentRoot, uint256 total, uint64 deadline)
        external
        onlyRole(OPERATOR_ROLE)
        whenNotPaused
        nonReentrant
    {
        if (distributions[id].root != bytes32(0)) revert DistributionExists(id);
        if (root == bytes32(0) || total == 0) revert EmptyDistribution();
        if (deadline <= block.timestamp) revert DeadlineInPast(deadline);
        if (total > type(uint128).max) revert Overdrawn(id, total, type(uint128).max);
        distributions[id] = Distribution(root, uint128(total), 0, deadline, false, kind, contentRoot);
        token.safeTransferFrom(msg.sender, address(this), total);
        emit Published(id, kind, root, contentRoot, total, deadline);
    }

    function isClaimed(bytes32 id, uint256 index) public view returns (bool) {
        return _claimedBitmap[id][index / 256] & (1 << (index % 256)) != 0;
    }

    /// @notice Pays `amount` to `account` for leaf `index`. Anyone may submit; the tokens go
    ///         to `account`.
    function claim(bytes32 id, uint256 index, address account, uint256 amount, bytes32[] calldata proof)
        external
        whenNotPaused
        nonReentrant
    {
        Distribution storage d = distributions[id];
        if (d.root == bytes32(0)) revert UnknownDistribution(id);
        if (block.timestamp > d.deadline) revert ClaimWindowClosed(id, d.deadline);
        if (isClaimed(id, index)) revert AlreadyClaimed(id, index);
        bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(index, account, amount))));
        if (!MerkleProof.verifyCalldata(proof, d.root, leaf)) revert InvalidProof(id, index);
        _claimedBitmap[id][index / 256] |= 1 << (index % 256);
        uint256 claimed = uint256(d.claimed) + amount;
        if (claimed > d.total) revert Overdrawn(id, claimed, d.total);
        d.claimed = uint128(claimed);
        token.safeTransfer(account, amount);
        emit Claimed(id, index, account, amount);
    }

    /// @notice Sends what was not claimed by the deadline to the treasury. Anyone may call it.
    function sweep(bytes32 id) external nonReentrant {
        Distribution storage d = distributions[id];
        if (d.root == bytes32(0)) revert UnknownDistribution(id);
        if (block.timestamp <= d.deadline) revert ClaimWindowOpen(id, d.deadline);
        if (d.swept) revert AlreadySwept(id);
        d.swept = true;
        uint256 rest = uint256(d.total) - d.claimed;
        if (rest > 0) token.safeTransfer(treasury, rest);
        emit Swept(id, rest);
    }

    function setTreasury(address treasury_) external onlyRole(GOVERNANCE_ROLE) {
        if (treasury_ == address(0)) revert ZeroAddress();
        treasury = treasury_;
    }

    function pause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _pause();
    }

    function unpause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _unpause();
    }
}
