// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IVotes} from "@openzeppelin/contracts/governance/utils/IVotes.sol";
import {Governor} from "@openzeppelin/contracts/governance/Governor.sol";
import {GovernorSettings} from "@openzeppelin/contracts/governance/extensions/GovernorSettings.sol";
import {GovernorCountingSimple} from "@openzeppelin/contracts/governance/extensions/GovernorCountingSimple.sol";
import {GovernorVotes} from "@openzeppelin/contracts/governance/extensions/GovernorVotes.sol";
import {GovernorVotesQuorumFraction} from "@openzeppelin/contracts/governance/extensions/GovernorVotesQuorumFraction.sol";
import {GovernorTimelockControl} from "@openzeppelin/contracts/governance/extensions/GovernorTimelockControl.sol";
import {TimelockController} from "@openzeppelin/contracts/governance/TimelockController.sol";

/// @title The modelcommons Governor.
/// @notice An OpenZeppelin Governor (settings, simple counting, ERC20Votes, quorum fraction,
///         timelock control) whose successful proposals ratify model mandates in the
///         ModelRegistry. Proposals made by the registry carry their own quorum and approval
///         threshold in basis points (a ModelProposal's `spec.governance`); all others use the
///         global quorum fraction and "for > against". `castVoteBySig` (EIP-712) lets anyone
///         relay a holder's signed ballot.
contract ModelGovernor is
    Governor,
    GovernorSettings,
    GovernorCountingSimple,
    GovernorVotes,
    GovernorVotesQuorumFraction,
    GovernorTimelockControl
{
    struct ProposalParams {
        uint16 quorumBps;
        uint16 thresholdBps;
    }

    /// @notice Per-proposal quorum and threshold, for proposals made through the registry.
    mapping(uint256 proposalId => ProposalParams) public proposalParams;
    /// @notice The ModelRegistry allowed to make proposals with their own parameters.
    address public registry;
    address private immutable _deployer;

    event RegistrySet(address registry);
    event ProposalParamsSet(uint256 indexed proposalId, uint16 quorumBps, uint16 thresholdBps);

    error RegistryAlreadySet(address registry);
    error NotDeployer(address caller);
    error OnlyRegistry(address caller);
    error InvalidBasisPoints(uint256 quorumBps, uint256 thresholdBps);

    constructor(
        IVotes token,
        TimelockController timelock,
        uint48 initialVotingDelay,
        uint32 initialVotingPeriod,
        uint256 quorumPercent
    )
        Governor("modelcommons governor")
        GovernorSettings(initialVotingDelay, initialVotingPeriod, 0)
        GovernorVotes(token)
        GovernorVotesQuorumFraction(quorumPercent)
        GovernorTimelockControl(timelock)
    {
        _deployer = msg.sender;
    }

    /// @notice Wires the registry once, right after both are deployed.
    function setRegistry(address registry_) external {
        if (msg.sender != _deployer) revert NotDeployer(msg.sender);
        if (registry != address(0)) revert RegistryAlreadySet(registry);
        registry = registry_;
        emit RegistrySet(registry_);
    }

    /// @notice A proposal with its own quorum and approval threshold (basis points, (0, 10000]).
    function proposeWithParams(
        address[] memory targets,
        uint256[] memory values,
        bytes[] memory calldatas,
        string memory description,
        uint16 quorumBps,
        uint16 thresholdBps
    ) external returns (uint256 proposalId) {
        if (msg.sender != registry) revert OnlyRegistry(msg.sender);
        if (quorumBps == 0 || quorumBps > 10_000 || thresholdBps == 0 || thresholdBps > 10_000) {
            revert InvalidBasisPoints(quorumBps, thresholdBps);
        }
        proposalId = propose(targets, values, calldatas, description);
        proposalParams[proposalId] = ProposalParams(quorumBps, thresholdBps);
        emit ProposalParamsSet(proposalId, quorumBps, thresholdBps);
    }

    /// @notice Cancels a proposal the registry made (a withdrawn ModelProposal), in any state
    ///         but Canceled, Expired or Executed. Only the registry.
    function cancelFromRegistry(
        address[] memory targets,
        uint256[] memory values,
        bytes[] memory calldatas,
        bytes32 descriptionHash
    ) external returns (uint256) {
        if (msg.sender != registry) revert OnlyRegistry(msg.sender);
        return _cancel(targets, values, calldatas, descriptionHash);
    }

    function _quorumReached(uint256 proposalId)
        internal
        view
        override(Governor, GovernorCountingSimple)
        returns (bool)
    {
        ProposalParams memory p = proposalParams[proposalId];
        if (p.quorumBps == 0) return super._quorumReached(proposalId);
        (, uint256 forVotes, uint256 abstainVotes) = proposalVotes(proposalId);
        uint256 supply = token().getPastTotalSupply(proposalSnapshot(proposalId));
        return (forVotes + abstainVotes) * 10_000 >= supply * p.quorumBps;
    }

    function _voteSucceeded(uint256 proposalId)
        internal
        view
        override(Governor, GovernorCountingSimple)
        returns (bool)
    {
        ProposalParams memory p = proposalParams[proposalId];
        if (p.thresholdBps == 0) return super._voteSucceeded(proposalId);
        (uint256 againstVotes, uint256 forVotes,) = proposalVotes(proposalId);
        return forVotes > 0 && forVotes * 10_000 >= (forVotes + againstVotes) * p.thresholdBps;
    }

    // The overrides Solidity requires for the combined extensions.

    function votingDelay() public view override(Governor, GovernorSettings) returns (uint256) {
        return super.votingDelay();
    }

    function votingPeriod() public view override(Governor, GovernorSettings) returns (uint256) {
        return super.votingPeriod();
    }

    function quorum(uint256 timepoint) public view override(Governor, GovernorVotesQuorumFraction) returns (uint256) {
        return super.quorum(timepoint);
    }

    function state(uint256 proposalId) public view override(Governor, GovernorTimelockControl) returns (ProposalState) {
        return super.state(proposalId);
    }

    function proposalNeedsQueuing(uint256 proposalId)
        public
        view
        override(Governor, GovernorTimelockControl)
        returns (bool)
    {
        return super.proposalNeedsQueuing(proposalId);
    }

    function proposalThreshold() public view override(Governor, GovernorSettings) returns (uint256) {
        return super.proposalThreshold();
    }

    function _queueOperations(
        uint256 proposalId,
        address[] memory targets,
        uint256[] memory values,
        bytes[] memory calldatas,
        bytes32 descriptionHash
    ) internal override(Governor, GovernorTimelockControl) returns (uint48) {
        return super._queueOperations(proposalId, targets, values, calldatas, descriptionHash);
    }

    function _executeOperations(
        uint256 proposalId,
        address[] memory targets,
        uint256[] memory values,
        bytes[] memory calldatas,
        bytes32 descriptionHash
    ) internal override(Governor, GovernorTimelockControl) {
        super._executeOperations(proposalId, targets, values, calldatas, descriptionHash);
    }

    function _cancel(
        address[] memory targets,
        uint256[] memory values,
        bytes[] memory calldatas,
        bytes32 descriptionHash
    ) internal override(Governor, GovernorTimelockControl) returns (uint256) {
        return super._cancel(targets, values, calldatas, descriptionHash);
    }

    function _executor() internal view override(Governor, GovernorTimelockControl) returns (address) {
        return super._executor();
    }
}
