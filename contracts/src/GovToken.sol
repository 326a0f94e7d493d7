// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";
import {ERC20Votes} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Votes.sol";
import {ERC20Wrapper} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Wrapper.sol";
import {Nonces} from "@openzeppelin/contracts/utils/Nonces.sol";

/// @title gOPEN — voting power backed 1:1 by OPEN.
/// @notice Holders wrap OPEN (`depositFor`) to get gOPEN and unwrap (`withdrawTo`) at any time.
///         Voting power follows delegation (ERC20Votes checkpoints, block-number clock), so a
///         vote counts the power held at the proposal's snapshot block, not at voting time.
contract GovToken is ERC20, ERC20Permit, ERC20Votes, ERC20Wrapper {
    constructor(IERC20 open)
        ERC20("modelcommons governance OPEN", "gOPEN")
        ERC20Permit("modelcommons governance OPEN")
        ERC20Wrapper(open)
    {}

    function decimals() public view override(ERC20, ERC20Wrapper) returns (uint8) {
        return super.decimals();
    }

    function _update(address from, address to, uint256 value) internal override(ERC20, ERC20Votes) {
        super._update(from, to, value);
    }

    function nonces(address owner) public view override(ERC20Permit, Nonces) returns (uint256) {
        return super.nonces(owner);
    }
}
