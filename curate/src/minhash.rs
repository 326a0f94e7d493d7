//! Near-duplicate detection: MinHash signatures over word shingles, and an LSH index that
//! finds, for a new record, the earlier record most similar to it.
//!
//! Every hash here is a fixed function of the input (FNV-1a for shingles, the SplitMix64
//! finalizer for the MinHash permutations), never `std`'s randomly keyed hasher, so a
//! signature — and with it every dedup decision — is the same on every run and machine.

use std::collections::{BTreeSet, HashMap};

/// Hash functions per signature. The estimate's standard error is `sqrt(J(1-J)/128)`, at
/// most 0.044.
pub(crate) const NUM_HASHES: usize = 128;

/// The words of `text`: maximal runs of alphanumeric characters, lowercased. Punctuation,
/// case and whitespace do not make two texts different.
pub(crate) fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// The hashes of the `k`-word shingles of `words` (a text shorter than `k` words is one
/// shingle; no words, no shingles). Repeated shingles repeat.
pub(crate) fn shingles(words: &[String], k: usize) -> Vec<u64> {
    if words.is_empty() {
        return Vec::new();
    }
    words
        .windows(k.clamp(1, words.len()))
        .map(|w| {
            let mut h = Fnv::new();
            for (i, word) in w.iter().enumerate() {
                if i > 0 {
                    h.write(&[0x1f]); // a byte no word contains
                }
                h.write(word.as_bytes());
            }
            h.0
        })
        .collect()
}

/// The exact Jaccard similarity of two shingle sets (for tests and reports).
#[cfg(test)]
pub(crate) fn jaccard(a: &[u64], b: &[u64]) -> f64 {
    let (a, b): (BTreeSet<_>, BTreeSet<_>) = (a.iter().collect(), b.iter().collect());
    let union = a.union(&b).count();
    if union == 0 {
        return 1.0;
    }
    a.intersection(&b).count() as f64 / union as f64
}

struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// The SplitMix64 finalizer: a bijection of u64 that mixes every input bit into every output
/// bit.
const fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One seed per permutation, from the SplitMix64 sequence.
const SEEDS: [u64; NUM_HASHES] = {
    let mut seeds = [0u64; NUM_HASHES];
    let mut x: u64 = 0x6d6f_6465_6c63_6f6d; // "modelcom"
    let mut i = 0;
    while i < NUM_HASHES {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        seeds[i] = mix(x);
        i += 1;
    }
    seeds
};

/// A MinHash signature: for each of [`NUM_HASHES`] permutations, the smallest permuted
/// shingle hash. Two signatures agree in a position with probability equal to the Jaccard
/// similarity of their shingle sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Signature(Box<[u64; NUM_HASHES]>);

impl Signature {
    /// The signature of a shingle set; `None` for an empty one (nothing to compare).
    pub(crate) fn of(shingles: &[u64]) -> Option<Self> {
        if shingles.is_empty() {
            return None;
        }
        let mut mins = Box::new([u64::MAX; NUM_HASHES]);
        for &s in shingles {
            for (m, seed) in mins.iter_mut().zip(SEEDS) {
                *m = (*m).min(mix(s ^ seed));
            }
        }
        Some(Self(mins))
    }

    /// In how many positions the two signatures agree.
    pub(crate) fn agreements(&self, other: &Self) -> usize {
        self.0
            .iter()
            .zip(other.0.iter())
            .filter(|(a, b)| a == b)
            .count()
    }

    /// The estimated Jaccard similarity.
    #[cfg(test)]
    pub(crate) fn similarity(&self, other: &Self) -> f64 {
        self.agreements(other) as f64 / NUM_HASHES as f64
    }
}

/// Locality-sensitive hashing over signatures: `bands` bands of `rows` positions each; two
/// signatures become candidates when one band is identical, then the full signatures are
/// compared. `rows` is chosen so that a pair exactly at the threshold is a candidate with
/// probability at least 0.99, while dissimilar pairs rarely are.
#[derive(Debug)]
pub(crate) struct Index {
    rows: usize,
    bands: usize,
    buckets: HashMap<(usize, u64), Vec<usize>>,
    signatures: Vec<Option<Signature>>,
}

/// The most similar earlier entry of an [`Index`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Match {
    /// Its position in insertion order.
    pub position: usize,
    /// The estimated Jaccard similarity.
    pub similarity: f64,
}

impl Index {
    /// An empty index tuned for `threshold` (in (0, 1]).
    pub(crate) fn new(threshold: f64) -> Self {
        let rows = (1..=8)
            .rev()
            .find(|&r| {
                let bands = (NUM_HASHES / r) as i32;
                1.0 - (1.0 - threshold.powi(r as i32)).powi(bands) >= 0.99
            })
            .unwrap_or(1);
        Self {
            rows,
            bands: NUM_HASHES / rows,
            buckets: HashMap::new(),
            signatures: Vec::new(),
        }
    }

    fn band_keys(&self, sig: &Signature) -> impl Iterator<Item = (usize, u64)> {
        sig.0
            .chunks_exact(self.rows)
            .take(self.bands)
            .enumerate()
            .map(|(band, rows)| (band, rows.iter().fold(band as u64, |h, v| mix(h ^ v))))
    }

    /// The number of entries (with or without a signature).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.signatures.len()
    }

    /// Adds the next entry; one without a signature is never matched.
    pub(crate) fn push(&mut self, sig: Option<Signature>) {
        let position = self.signatures.len();
        if let Some(sig) = &sig {
            let keys: Vec<_> = self.band_keys(sig).collect();
            for key in keys {
                self.buckets.entry(key).or_default().push(position);
            }
        }
        self.signatures.push(sig);
    }

    /// Removes the entries at positions `len..` (the latest ones), as if never pushed.
    pub(crate) fn truncate(&mut self, len: usize) {
        while self.signatures.len() > len {
            let position = self.signatures.len() - 1;
            if let Some(Some(sig)) = self.signatures.pop() {
                let keys: Vec<_> = self.band_keys(&sig).collect();
                for key in keys {
                    if let Some(bucket) = self.buckets.get_mut(&key) {
                        // Positions are pushed in increasing order, so the latest is last.
                        if bucket.last() == Some(&position) {
                            bucket.pop();
                        }
                        if bucket.is_empty() {
                            self.buckets.remove(&key);
                        }
                    }
                }
            }
        }
    }

    /// The most similar entry whose estimated similarity to `sig` is at least `threshold`
    /// (ties: the earliest), if any.
    pub(crate) fn best_match(&self, sig: &Signature, threshold: f64) -> Option<Match> {
        let candidates: BTreeSet<usize> = self
            .band_keys(sig)
            .filter_map(|key| self.buckets.get(&key))
            .flatten()
            .copied()
            .collect();
        let mut best: Option<(usize, usize)> = None; // (agreements, position)
        for position in candidates {
            let Some(Some(other)) = self.signatures.get(position) else {
                continue;
            };
            let agreements = sig.agreements(other);
            if best.is_none_or(|(a, _)| agreements > a) {
                best = Some((agreements, position));
            }
        }
        best.map(|(agreements, position)| Match {
            position,
            similarity: agreements as f64 / NUM_HASHES as f64,
        })
        .filter(|m| m.similarity >= threshold)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail loudly on purpose

    use super::*;

    const BASE: &str = "Risk: uncapped indemnity. The Supplier's exposure is unlimited and covers \
        any breach, however minor. Suggest: cap the indemnity at the fees paid in the prior \
        twelve months, limit it to third-party claims, and exclude indirect and consequential \
        loss. Confirm which obligations survive termination and whether insurance covers them.";

    fn sh(text: &str) -> Vec<u64> {
        shingles(&words(text), 3)
    }

    fn replace_words(text: &str, pairs: &[(&str, &str)]) -> String {
        pairs
            .iter()
            .fold(text.to_string(), |t, (a, b)| t.replacen(a, b, 1))
    }

    #[test]
    fn words_ignore_case_and_punctuation() {
        assert_eq!(
            words("The Supplier's  fee, (EUR 1,000)!"),
            ["the", "supplier", "s", "fee", "eur", "1", "000"]
        );
        assert_eq!(
            shingles(&words("one two"), 3).len(),
            1,
            "short text: one shingle"
        );
        assert!(shingles(&[], 3).is_empty());
        assert_eq!(sh("A b, c d"), sh("a B c. D"));
    }

    #[test]
    fn minhash_estimates_track_exact_jaccard() {
        let pairs = [
            // identical
            (BASE.to_string(), BASE.to_string()),
            // a few words changed
            (
                BASE.to_string(),
                replace_words(
                    BASE,
                    &[
                        ("uncapped", "unlimited"),
                        ("Suggest", "Recommend"),
                        ("exclude", "carve out"),
                    ],
                ),
            ),
            // many words changed
            (
                BASE.to_string(),
                replace_words(
                    BASE,
                    &[
                        ("uncapped", "broad"),
                        ("exposure", "risk"),
                        ("however", "even if"),
                        ("cap", "limit"),
                        ("prior", "previous"),
                        ("third-party", "external"),
                        ("indirect", "special"),
                        ("Confirm", "Check"),
                        ("insurance", "the policy"),
                    ],
                ),
            ),
            // the same topic, different text
            (
                BASE.to_string(),
                "Neither party shall be liable for any indirect, special or consequential \
                 damages, including loss of profits; carve out confidentiality breaches and \
                 indemnities from the exclusion, and state whether direct loss of profits is \
                 excluded."
                    .to_string(),
            ),
        ];
        let mut seen = Vec::new();
        for (a, b) in &pairs {
            let (sa, sb) = (sh(a), sh(b));
            let exact = jaccard(&sa, &sb);
            let estimate = Signature::of(&sa)
                .unwrap()
                .similarity(&Signature::of(&sb).unwrap());
            assert!(
                (estimate - exact).abs() <= 0.12,
                "estimate {estimate:.3} vs exact {exact:.3}"
            );
            seen.push(exact);
        }
        assert_eq!(seen[0], 1.0);
        assert!(seen[1] > 0.5 && seen[1] < 0.9, "a few words: {}", seen[1]);
        assert!(seen[2] < 0.5, "many words: {}", seen[2]);
        assert!(seen[3] < 0.1, "different text: {}", seen[3]);
    }

    #[test]
    fn signatures_are_fixed_functions_of_the_text() {
        let sig = Signature::of(&sh("a fixed text of several words")).unwrap();
        // Pinned, so a change of the hash functions (which would change dedup decisions of
        // sealed versions) is a visible, deliberate change.
        assert_eq!(
            sig.0[0],
            Signature::of(&sh("A FIXED text of several words!"))
                .unwrap()
                .0[0]
        );
        assert_eq!(
            sig.0.iter().fold(0u64, |h, v| mix(h ^ v)),
            0x2d00_2c4d_bd6f_bdbb
        );
        assert_eq!(Signature::of(&[]), None);
    }

    #[test]
    fn the_index_finds_the_earlier_near_duplicate_and_forgets_truncated_entries() {
        let threshold = 0.5;
        let mut index = Index::new(threshold);
        assert_eq!(
            index.rows, 3,
            "42 bands of 3 rows for the default threshold"
        );
        let other = "Either party may terminate this Agreement for convenience on thirty days \
                     written notice; add a refund of prepaid fees.";
        index.push(Signature::of(&sh(other)));
        index.push(None);
        index.push(Signature::of(&sh(BASE)));
        let near = replace_words(BASE, &[("uncapped", "unlimited"), ("Suggest", "Recommend")]);
        let m = index
            .best_match(&Signature::of(&sh(&near)).unwrap(), threshold)
            .unwrap();
        assert_eq!(m.position, 2);
        assert!(m.similarity >= threshold && m.similarity < 1.0);
        let unrelated = "Any dispute shall be resolved by negotiation between senior \
                         representatives for thirty days, then by arbitration in London.";
        assert_eq!(
            index.best_match(&Signature::of(&sh(unrelated)).unwrap(), threshold),
            None
        );
        index.truncate(2);
        assert_eq!(index.len(), 2);
        assert_eq!(
            index.best_match(&Signature::of(&sh(&near)).unwrap(), threshold),
            None,
            "a truncated entry is not matched"
        );
        assert!(index.buckets.values().all(|b| b == &[0]));
    }
}
