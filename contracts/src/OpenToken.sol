// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";

/// @title OPEN — the modelcommons utility token.
/// @notice Stakes behind model proposals, Datanet reward pools, validator bonds and usage
///         revenue are all denominated in OPEN. The whole supply is minted once to `treasury`;
///         there is no mint function afterwards, so supply is fixed and auditable.
contract OpenToken is ERC20, ERC20Permit {
    constructor(address treasury, uint256 supply) ERC20("modelcommons OPEN", "OPEN") ERC20Permit("modelcommons OPEN") {
        _mint(treasury, supply);
    }
}
