//! API keys from mounted files.
//!
//! `--api-keys DIR` holds one file per consumer: the file name is the consumer, the content
//! (surrounding whitespace trimmed) is the key — exactly the layout of a Kubernetes Secret
//! mounted as a volume (or a projected volume of several Secrets). Names starting with `.`
//! (the kubelet's `..data` and timestamped directories) and anything that is not a file are
//! skipped. Only the sha256 of each key is kept in memory; a presented key is hashed and
//! compared with every stored hash in constant time (`subtle`), so neither the comparison nor
//! the scan order tells how close a guess was.
//!
//! The directory is re-read periodically ([`KeyStore::reload`]); a rotated Secret applies
//! without a restart once the kubelet has updated the volume. A key shared by two consumers
//! is ambiguous for metering and is refused for both.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Keys shorter than this are accepted but logged as weak.
pub const WEAK_KEY_BYTES: usize = 16;

/// The sha256 of a key.
pub type KeyHash = [u8; 32];

/// Hashes a key.
pub fn hash_key(key: &[u8]) -> KeyHash {
    Sha256::digest(key).into()
}

/// The consumers and their key hashes, sorted by consumer.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    entries: Vec<(String, KeyHash)>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("consumers", &self.consumers().collect::<Vec<_>>())
            .finish()
    }
}

/// Something worth logging about a key directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// A file that is not valid UTF-8 as a name, or is empty after trimming.
    Skipped {
        /// The file.
        name: String,
        /// Why.
        why: &'static str,
    },
    /// A key shorter than [`WEAK_KEY_BYTES`].
    Weak {
        /// The consumer.
        consumer: String,
    },
    /// Consumers with the same key: all of them are refused.
    Shared {
        /// The consumers.
        consumers: Vec<String>,
    },
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Warning::Skipped { name, why } => write!(f, "api key file {name:?} skipped: {why}"),
            Warning::Weak { consumer } => write!(
                f,
                "the api key of consumer {consumer:?} is shorter than {WEAK_KEY_BYTES} bytes"
            ),
            Warning::Shared { consumers } => write!(
                f,
                "consumers {consumers:?} have the same api key; it is refused for all of them until each has its own"
            ),
        }
    }
}

impl KeySet {
    /// Builds a set from `(consumer, key)` pairs; returns what is worth a warning.
    pub fn from_keys<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> (Self, Vec<Warning>) {
        let mut warnings = Vec::new();
        let mut by_hash: BTreeMap<KeyHash, Vec<String>> = BTreeMap::new();
        for (consumer, key) in pairs {
            if key.len() < WEAK_KEY_BYTES {
                warnings.push(Warning::Weak {
                    consumer: consumer.to_string(),
                });
            }
            by_hash
                .entry(hash_key(key))
                .or_default()
                .push(consumer.to_string());
        }
        let mut entries = Vec::new();
        for (hash, mut consumers) in by_hash {
            if consumers.len() == 1 {
                entries.extend(consumers.pop().map(|c| (c, hash)));
            } else {
                consumers.sort();
                warnings.push(Warning::Shared { consumers });
            }
        }
        entries.sort();
        (Self { entries }, warnings)
    }

    /// Reads a key directory (see the module docs).
    pub fn read_dir(dir: &Path) -> std::io::Result<(Self, Vec<Warning>)> {
        let mut keys = Vec::new();
        let mut warnings = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                warnings.push(Warning::Skipped {
                    name: entry.file_name().to_string_lossy().into_owned(),
                    why: "the name is not UTF-8",
                });
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            // Follows symlinks: a mounted Secret's files are links into `..data/`.
            let path = entry.path();
            if !std::fs::metadata(&path)
                .map(|m| m.is_file())
                .unwrap_or(false)
            {
                continue;
            }
            let content = std::fs::read(&path)?;
            let key = content.trim_ascii().to_vec();
            if key.is_empty() {
                warnings.push(Warning::Skipped {
                    name,
                    why: "the file is empty",
                });
                continue;
            }
            keys.push((name, key));
        }
        let (set, more) = Self::from_keys(keys.iter().map(|(n, k)| (n.as_str(), k.as_slice())));
        warnings.extend(more);
        Ok((set, warnings))
    }

    /// The consumer whose key is `presented`, comparing against every stored hash in constant
    /// time.
    pub fn lookup(&self, presented: &[u8]) -> Option<&str> {
        let h = hash_key(presented);
        let mut found = None;
        for (consumer, stored) in &self.entries {
            let eq: bool = stored.ct_eq(&h).into();
            if eq && found.is_none() {
                found = Some(consumer.as_str());
            }
        }
        found
    }

    /// The consumers, sorted.
    pub fn consumers(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(c, _)| c.as_str())
    }

    /// How many consumers.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no consumer has a key.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A [`KeySet`] read from a directory and re-read on demand.
#[derive(Debug)]
pub struct KeyStore {
    dir: PathBuf,
    current: RwLock<Arc<KeySet>>,
}

/// What a reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reloaded {
    /// Consumers that now have a key and had none.
    pub added: Vec<String>,
    /// Consumers that had a key and have none now.
    pub removed: Vec<String>,
    /// Consumers whose key changed.
    pub rotated: Vec<String>,
    /// Warnings of this read.
    pub warnings: Vec<Warning>,
}

impl Reloaded {
    /// Whether anything changed.
    pub fn changed(&self) -> bool {
        !(self.added.is_empty() && self.removed.is_empty() && self.rotated.is_empty())
    }
}

impl KeyStore {
    /// Reads `dir` once; fails if it cannot be read.
    pub fn open(dir: &Path) -> std::io::Result<(Self, Vec<Warning>)> {
        let (set, warnings) = KeySet::read_dir(dir)?;
        Ok((
            Self {
                dir: dir.to_path_buf(),
                current: RwLock::new(Arc::new(set)),
            },
            warnings,
        ))
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The current set.
    pub fn get(&self) -> Arc<KeySet> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Re-reads the directory and swaps the set in when it differs. On a read error the
    /// current set stays (a Secret volume being updated is briefly inconsistent).
    pub fn reload(&self) -> std::io::Result<Reloaded> {
        let (new, warnings) = KeySet::read_dir(&self.dir)?;
        let old = self.get();
        let mut r = diff(&old, &new);
        r.warnings = warnings;
        if r.changed() {
            *self
                .current
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(new);
        }
        Ok(r)
    }
}

fn diff(old: &KeySet, new: &KeySet) -> Reloaded {
    let old: BTreeMap<&str, &KeyHash> = old.entries.iter().map(|(c, h)| (c.as_str(), h)).collect();
    let new: BTreeMap<&str, &KeyHash> = new.entries.iter().map(|(c, h)| (c.as_str(), h)).collect();
    let mut r = Reloaded::default();
    for (c, h) in &new {
        match old.get(c) {
            None => r.added.push(c.to_string()),
            Some(o) if o != h => r.rotated.push(c.to_string()),
            Some(_) => {}
        }
    }
    r.removed = old
        .keys()
        .filter(|c| !new.contains_key(*c))
        .map(|c| c.to_string())
        .collect();
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(pairs: &[(&str, &str)]) -> (KeySet, Vec<Warning>) {
        KeySet::from_keys(pairs.iter().map(|(c, k)| (*c, k.as_bytes())))
    }

    #[test]
    fn lookup_finds_the_consumer_and_nothing_else() {
        let (s, w) = set(&[
            ("alice", "sk-alice-0123456789abcdef"),
            ("bob", "sk-bob-0123456789abcdef"),
        ]);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(s.lookup(b"sk-alice-0123456789abcdef"), Some("alice"));
        assert_eq!(s.lookup(b"sk-bob-0123456789abcdef"), Some("bob"));
        assert_eq!(s.lookup(b"sk-bob-0123456789abcdeF"), None);
        assert_eq!(s.lookup(b""), None);
        assert_eq!(s.consumers().collect::<Vec<_>>(), ["alice", "bob"]);
        // Only hashes are kept.
        assert!(!format!("{s:?}").contains("sk-"));
    }

    #[test]
    fn shared_keys_are_refused_for_everyone_and_weak_ones_flagged() {
        let (s, w) = set(&[
            ("a", "same-key-0123456789"),
            ("b", "same-key-0123456789"),
            ("c", "short"),
        ]);
        assert_eq!(s.lookup(b"same-key-0123456789"), None);
        assert_eq!(s.lookup(b"short"), Some("c"));
        assert!(w.contains(&Warning::Shared {
            consumers: vec!["a".into(), "b".into()]
        }));
        assert!(w.contains(&Warning::Weak {
            consumer: "c".into()
        }));
    }

    #[test]
    fn reads_a_secret_volume_and_follows_rotation() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let d = dir.path();
        // The kubelet's layout: ..<timestamp>/<key>, ..data -> ..<timestamp>, <key> -> ..data/<key>.
        let write_version = |v: &str, keys: &[(&str, &str)]| {
            let ts = d.join(format!("..{v}"));
            std::fs::create_dir(&ts).unwrap_or_else(|e| panic!("{e}"));
            for (c, k) in keys {
                std::fs::write(ts.join(c), format!("{k}\n")).unwrap_or_else(|e| panic!("{e}"));
            }
            let tmp = d.join("..data_tmp");
            std::os::unix::fs::symlink(format!("..{v}"), &tmp).unwrap_or_else(|e| panic!("{e}"));
            std::fs::rename(&tmp, d.join("..data")).unwrap_or_else(|e| panic!("{e}"));
            for (c, _) in keys {
                let _ = std::os::unix::fs::symlink(format!("..data/{c}"), d.join(c));
            }
        };
        write_version(
            "v1",
            &[
                ("alice", "key-alice-v1-xxxxxxxx"),
                ("bob", "key-bob-v1-xxxxxxxxxx"),
            ],
        );
        std::fs::write(d.join("empty"), "\n").unwrap_or_else(|e| panic!("{e}"));
        let (store, w) = KeyStore::open(d).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            w,
            vec![Warning::Skipped {
                name: "empty".into(),
                why: "the file is empty"
            }]
        );
        assert_eq!(store.get().lookup(b"key-alice-v1-xxxxxxxx"), Some("alice"));
        assert_eq!(store.get().len(), 2);

        // Nothing changed: no swap.
        let before = store.get();
        let r = store.reload().unwrap_or_else(|e| panic!("{e}"));
        assert!(!r.changed());
        assert!(Arc::ptr_eq(&before, &store.get()));

        // Rotate alice, drop bob, add carol (bob's link now dangles, as after a real update).
        write_version(
            "v2",
            &[
                ("alice", "key-alice-v2-xxxxxxxx"),
                ("carol", "key-carol-v2-xxxxxxxx"),
            ],
        );
        let r = store.reload().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.added, ["carol"]);
        assert_eq!(r.removed, ["bob"]);
        assert_eq!(r.rotated, ["alice"]);
        let s = store.get();
        assert_eq!(s.lookup(b"key-alice-v1-xxxxxxxx"), None);
        assert_eq!(s.lookup(b"key-alice-v2-xxxxxxxx"), Some("alice"));
        assert_eq!(s.lookup(b"key-bob-v1-xxxxxxxxxx"), None);
        assert_eq!(s.lookup(b"key-carol-v2-xxxxxxxx"), Some("carol"));

        // An unreadable directory keeps the current set.
        std::fs::remove_dir_all(d).unwrap_or_else(|e| panic!("{e}"));
        assert!(store.reload().is_err());
        assert_eq!(store.get().len(), 2);
    }
}
