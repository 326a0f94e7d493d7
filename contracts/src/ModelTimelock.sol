// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {TimelockController} from "@openzeppelin/contracts/governance/TimelockController.sol";

/// @title The timelock between a successful vote and its execution.
/// @notice The Governor is its only proposer; anyone may execute a queued operation once
///         `minDelay` seconds have passed. It holds the registry's GOVERNANCE_ROLE, so
///         ratifications happen only through a vote that survived the delay.
contract ModelTimelock is TimelockController {
    constructor(uint256 minDelay, address[] memory proposers, address[] memory executors, address admin)
        TimelockController(minDelay, proposers, executors, admin)
    {}
}
