//! The key-value store of the `kv` capability: in memory, one namespace per revision name,
//! shared by every thread of the process (so by every Envoy worker).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

/// Maximum key length, in bytes.
pub const MAX_KEY: usize = 1024;
/// Maximum value length, in bytes.
pub const MAX_VALUE: usize = 1 << 20;
/// Maximum bytes one revision stores in all: keys, values and [`ENTRY_OVERHEAD`] per entry.
pub const MAX_TOTAL: usize = 64 << 20;
/// Bytes counted for each entry besides its key and value, about what the map spends on it,
/// so that many tiny entries cannot exceed the total by much.
pub const ENTRY_OVERHEAD: usize = 64;

/// Error of a `put` that was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutError {
    /// The key, the value or the namespace's total would be over its limit.
    TooLarge,
}

/// One revision's namespace.
#[derive(Clone)]
pub struct KvScope {
    store: Arc<Mutex<Namespace>>,
}

#[derive(Default)]
struct Namespace {
    entries: BTreeMap<Vec<u8>, Vec<u8>>,
    bytes: usize,
}

impl KvScope {
    /// Returns the namespace of `revision`, created empty on first use.
    pub fn open(revision: &str) -> Self {
        static NAMESPACES: OnceLock<Mutex<HashMap<String, Arc<Mutex<Namespace>>>>> =
            OnceLock::new();
        let mut namespaces = lock(NAMESPACES.get_or_init(Default::default));
        let store = namespaces.entry(revision.to_owned()).or_default().clone();
        Self { store }
    }

    /// Returns the value stored under `key`.
    pub fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        lock(&self.store).entries.get(key).cloned()
    }

    /// Stores `value` under `key`, replacing what was there.
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<(), PutError> {
        if key.len() > MAX_KEY || value.len() > MAX_VALUE {
            return Err(PutError::TooLarge);
        }
        let mut namespace = lock(&self.store);
        let replaced = namespace
            .entries
            .get(key)
            .map_or(0, |old| key.len() + old.len() + ENTRY_OVERHEAD);
        let total = namespace.bytes - replaced + key.len() + value.len() + ENTRY_OVERHEAD;
        if total > MAX_TOTAL {
            return Err(PutError::TooLarge);
        }
        namespace.entries.insert(key.to_vec(), value.to_vec());
        namespace.bytes = total;
        Ok(())
    }

    /// Removes `key`; returns whether it was there.
    pub fn delete(&self, key: &[u8]) -> bool {
        let mut namespace = lock(&self.store);
        match namespace.entries.remove(key) {
            Some(old) => {
                namespace.bytes -= key.len() + old.len() + ENTRY_OVERHEAD;
                true
            }
            None => false,
        }
    }

    /// Returns the keys that start with `prefix`, in byte order.
    pub fn list(&self, prefix: &[u8]) -> Vec<Vec<u8>> {
        let namespace = lock(&self.store);
        namespace
            .entries
            .range(prefix.to_vec()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, _)| key.clone())
            .collect()
    }
}

/// Locks `mutex`, going on with the data when a panicking thread poisoned it: every update
/// above leaves the map and its byte count consistent before anything can panic.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_delete() {
        let kv = KvScope::open("kv-test-put-get");
        assert_eq!(kv.get(b"a"), None);
        kv.put(b"a", b"1").unwrap();
        assert_eq!(kv.get(b"a").as_deref(), Some(&b"1"[..]));
        assert!(kv.delete(b"a"));
        assert!(!kv.delete(b"a"));
    }

    #[test]
    fn namespaces_are_separate() {
        KvScope::open("kv-test-one").put(b"k", b"one").unwrap();
        assert_eq!(KvScope::open("kv-test-two").get(b"k"), None);
        assert_eq!(
            KvScope::open("kv-test-one").get(b"k").as_deref(),
            Some(&b"one"[..])
        );
    }

    #[test]
    fn list_by_prefix() {
        let kv = KvScope::open("kv-test-list");
        for key in ["user/b", "user/a", "other", "user"] {
            kv.put(key.as_bytes(), b"").unwrap();
        }
        let keys = kv.list(b"user/");
        assert_eq!(keys, vec![b"user/a".to_vec(), b"user/b".to_vec()]);
    }

    #[test]
    fn limits_reject_large_entries() {
        let kv = KvScope::open("kv-test-limits");
        assert_eq!(
            kv.put(&vec![b'k'; MAX_KEY + 1], b"v"),
            Err(PutError::TooLarge)
        );
        assert_eq!(
            kv.put(b"k", &vec![0; MAX_VALUE + 1]),
            Err(PutError::TooLarge)
        );
    }

    #[test]
    fn tiny_entries_count_their_overhead() {
        let kv = KvScope::open("kv-test-overhead");
        let mut stored = 0usize;
        while kv.put(format!("{stored:08}").as_bytes(), b"").is_ok() {
            stored += 1;
            assert!(
                stored <= MAX_TOTAL / ENTRY_OVERHEAD,
                "the total limit never applied"
            );
        }
        assert_eq!(stored, MAX_TOTAL / (8 + ENTRY_OVERHEAD));
    }

    #[test]
    fn total_limit_counts_replacements_once() {
        let kv = KvScope::open("kv-test-total");
        let value = vec![0u8; MAX_VALUE];
        for round in 0..3 {
            kv.put(b"same", &value)
                .unwrap_or_else(|_| panic!("round {round} rejected"));
        }
        let mut stored = 0;
        while kv.put(format!("k{stored}").as_bytes(), &value).is_ok() {
            stored += 1;
            assert!(stored < 100, "the total limit never applied");
        }
        // "same" and each key take a little over 1 MiB, so 62 more fit under 64 MiB.
        assert_eq!(stored, MAX_TOTAL / MAX_VALUE - 2);
    }
}
