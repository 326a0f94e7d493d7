//! OPEN amounts: 18 decimals, as the token (and every amount on chain) counts them.

use alloy::primitives::U256;

/// OPEN's decimals.
pub const OPEN_DECIMALS: u8 = 18;

/// One OPEN in base units (10^18).
pub fn one_open() -> U256 {
    U256::from(10u64).pow(U256::from(OPEN_DECIMALS))
}

/// `n` OPEN in base units.
pub fn open(n: u64) -> U256 {
    U256::from(n) * one_open()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_open_is_ten_to_the_eighteen_base_units() {
        assert_eq!(one_open(), U256::from(1_000_000_000_000_000_000u64));
        assert_eq!(open(3), U256::from(3_000_000_000_000_000_000u64));
    }
}
