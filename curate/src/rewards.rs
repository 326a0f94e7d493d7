//! Splitting a pool of base units by weights, exactly (largest-remainder rounding).

use alloy::primitives::{Address, U256};

/// One share of a split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Share {
    /// Base units.
    pub amount: U256,
    /// Whether one base unit of it came from distributing the rounding remainder.
    pub rounded_up: bool,
}

/// Splits `pool` in proportion to the weights: each gets `floor(pool * w / W)`, then the
/// units left over (fewer than the number of weights) go one each to the largest remainders,
/// ties to the lower address. The shares sum to `pool` exactly unless every weight is zero
/// (then all are zero). `pool` must fit in 128 bits and weights in 64, so nothing overflows.
pub(crate) fn split(pool: U256, weights: &[(Address, u64)]) -> Vec<Share> {
    let total: U256 = weights.iter().map(|(_, w)| U256::from(*w)).sum();
    if total.is_zero() {
        return vec![
            Share {
                amount: U256::ZERO,
                rounded_up: false,
            };
            weights.len()
        ];
    }
    let mut shares = Vec::with_capacity(weights.len());
    let mut remainders = Vec::with_capacity(weights.len());
    for (i, (account, w)) in weights.iter().enumerate() {
        let (q, r) = (pool * U256::from(*w)).div_rem(total);
        shares.push(Share {
            amount: q,
            rounded_up: false,
        });
        remainders.push((r, *account, i));
    }
    let given: U256 = shares.iter().map(|s| s.amount).sum();
    let left = pool - given; // < weights.len()
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, _, i) in remainders
        .into_iter()
        .take(usize::try_from(left).unwrap_or(usize::MAX))
    {
        shares[i].amount += U256::from(1);
        shares[i].rounded_up = true;
    }
    shares
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn amounts(pool: u128, weights: &[u64]) -> Vec<u128> {
        let w: Vec<_> = weights
            .iter()
            .enumerate()
            .map(|(i, w)| (Address::with_last_byte(i as u8), *w))
            .collect();
        split(U256::from(pool), &w)
            .iter()
            .map(|s| s.amount.to::<u128>())
            .collect()
    }

    #[test]
    fn largest_remainders_get_the_rounding_units() {
        // 100 / 3 = 33.33 each: one unit left, tie → lowest address.
        assert_eq!(amounts(100, &[1, 1, 1]), [34, 33, 33]);
        // 10 by 1:2:4 = 1.43, 2.86, 5.71: remainders .43 .86 .71 → two units to 2nd and 3rd.
        assert_eq!(amounts(10, &[1, 2, 4]), [1, 3, 6]);
        assert_eq!(amounts(1, &[5, 5]), [1, 0]);
        assert_eq!(amounts(7, &[0, 3]), [0, 7]);
        assert_eq!(amounts(7, &[0, 0]), [0, 0], "no weight, nothing allocated");
        assert_eq!(
            amounts(u128::MAX, &[u64::MAX, u64::MAX])
                .iter()
                .sum::<u128>(),
            u128::MAX
        );
    }

    proptest! {
        #[test]
        fn shares_sum_to_the_pool_and_differ_from_exact_by_less_than_one(
            pool in any::<u128>(),
            weights in proptest::collection::vec(0u64..=u64::MAX, 1..20),
        ) {
            let got = amounts(pool, &weights);
            let total: u128 = weights.iter().map(|w| u128::from(*w)).sum();
            if total == 0 {
                prop_assert!(got.iter().all(|a| *a == 0));
            } else {
                let sum = got.iter().fold(U256::ZERO, |s, a| s + U256::from(*a));
                prop_assert_eq!(sum, U256::from(pool));
                for (a, w) in got.iter().zip(&weights) {
                    // |a - pool*w/W| < 1  ⇔  a*W - pool*w in (-W, W)
                    let exact = U256::from(pool) * U256::from(*w);
                    let scaled = U256::from(*a) * U256::from(total);
                    let diff = if scaled > exact { scaled - exact } else { exact - scaled };
                    prop_assert!(diff < U256::from(total));
                }
            }
        }
    }
}
