//! State that every VM of a revision shares across worker threads: the shared key-value data
//! (`proxy_get_shared_data`, `proxy_set_shared_data`) and the metrics. Both are scoped by VM
//! id, which is the revision name, and live in memory until the process exits.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

/// Maximum bytes of keys and values one VM id stores in shared data. Envoy has no such limit;
/// a plugin that stores more gets `INTERNAL_FAILURE`, which the Rust SDK turns into a panic.
pub(crate) const MAX_SHARED_DATA_BYTES: usize = 64 << 20;

/// Maximum metric names one VM id defines.
pub(crate) const MAX_METRIC_NAMES: usize = 10_000;
/// Maximum length of a metric name a plugin may define, in bytes.
const MAX_METRIC_NAME_BYTES: usize = 1024;

/// Error of [`SharedDataScope::set`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SetError {
    /// The compare-and-swap value did not match the stored one.
    CasMismatch,
    /// The store would grow past [`MAX_SHARED_DATA_BYTES`].
    Full,
}

#[derive(Default)]
struct SharedEntries {
    entries: HashMap<Vec<u8>, (Vec<u8>, u32)>,
    bytes: usize,
}

/// The shared data of one VM id.
#[derive(Clone)]
pub(crate) struct SharedDataScope {
    entries: Arc<Mutex<SharedEntries>>,
}

/// The compare-and-swap counter, process-wide like in proxy-wasm-cpp-host. It starts at 1 and
/// skips 0, because a `cas` of 0 in `proxy_set_shared_data` means "no check".
static NEXT_CAS: AtomicU32 = AtomicU32::new(1);

fn next_cas() -> u32 {
    loop {
        let cas = NEXT_CAS.fetch_add(1, Ordering::Relaxed);
        if cas != 0 {
            return cas;
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave these maps half-updated: every update is
    // a single insert or counter change, so the data is still consistent.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl SharedDataScope {
    /// Returns the shared data of `vm_id`, created empty on first use.
    pub(crate) fn open(vm_id: &str) -> Self {
        static SCOPES: OnceLock<Mutex<HashMap<String, Arc<Mutex<SharedEntries>>>>> =
            OnceLock::new();
        let mut scopes = lock(SCOPES.get_or_init(Default::default));
        let entries = scopes.entry(vm_id.to_owned()).or_default().clone();
        Self { entries }
    }

    /// Returns the value under `key` and its compare-and-swap value.
    pub(crate) fn get(&self, key: &[u8]) -> Option<(Vec<u8>, u32)> {
        lock(&self.entries).entries.get(key).cloned()
    }

    /// Stores `value` under `key`. A non-zero `cas` must match the stored entry's value; a
    /// `cas` for a key that does not exist yet is ignored, as proxy-wasm-cpp-host does.
    pub(crate) fn set(&self, key: &[u8], value: &[u8], cas: u32) -> Result<(), SetError> {
        let mut shared = lock(&self.entries);
        let old_size = match shared.entries.get(key) {
            Some((_, stored_cas)) if cas != 0 && cas != *stored_cas => {
                return Err(SetError::CasMismatch)
            }
            Some((old, _)) => key.len() + old.len(),
            None => 0,
        };

        let new_bytes = shared.bytes - old_size + key.len() + value.len();
        if new_bytes > MAX_SHARED_DATA_BYTES {
            return Err(SetError::Full);
        }
        shared.bytes = new_bytes;
        shared
            .entries
            .insert(key.to_vec(), (value.to_vec(), next_cas()));
        Ok(())
    }
}

/// One metric's value, shared by every VM that defined its name. What an update means
/// (add, set) comes from the metric id the guest passes, as in Envoy.
#[derive(Default)]
pub(crate) struct MetricCell {
    value: AtomicU64,
}

impl MetricCell {
    pub(crate) fn value(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }

    /// Adds `delta` (a gauge may go down, not below zero).
    pub(crate) fn add(&self, delta: i64) {
        let magnitude = delta.unsigned_abs();
        let _ = self
            .value
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |value| {
                Some(if delta >= 0 {
                    value.saturating_add(magnitude)
                } else {
                    value.saturating_sub(magnitude)
                })
            });
    }

    pub(crate) fn set(&self, value: u64) {
        self.value.store(value, Ordering::Relaxed);
    }
}

type MetricNames = HashMap<String, Arc<MetricCell>>;

/// The metrics of one VM id, by name.
#[derive(Clone)]
pub(crate) struct MetricScope {
    metrics: Arc<Mutex<MetricNames>>,
}

impl MetricScope {
    /// Returns the metrics of `vm_id`, created empty on first use.
    pub(crate) fn open(vm_id: &str) -> Self {
        static SCOPES: OnceLock<Mutex<HashMap<String, Arc<Mutex<MetricNames>>>>> = OnceLock::new();
        let mut scopes = lock(SCOPES.get_or_init(Default::default));
        let metrics = scopes.entry(vm_id.to_owned()).or_default().clone();
        Self { metrics }
    }

    /// Returns the metric `name`, creating it at zero. One name is one value, whichever
    /// metric type each definition gives. `None` when the scope already has
    /// [`MAX_METRIC_NAMES`] names.
    pub(crate) fn define(&self, name: &str) -> Option<Arc<MetricCell>> {
        let mut metrics = lock(&self.metrics);
        if let Some(cell) = metrics.get(name) {
            return Some(cell.clone());
        }
        if metrics.len() >= MAX_METRIC_NAMES || name.len() > MAX_METRIC_NAME_BYTES {
            return None;
        }
        let cell = Arc::new(MetricCell::default());
        metrics.insert(name.to_owned(), cell.clone());
        Some(cell)
    }

    /// Returns the current value of the metric `name`.
    pub(crate) fn value(&self, name: &str) -> Option<u64> {
        lock(&self.metrics).get(name).map(|cell| cell.value())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_data_cas_rejects_stale_value() {
        let scope = SharedDataScope::open("shared-data-cas-test");
        scope.set(b"key", b"one", 0).expect("first set");
        let (_, cas) = scope.get(b"key").expect("stored value");

        scope
            .set(b"key", b"two", cas)
            .expect("set with current cas");
        assert_eq!(scope.set(b"key", b"three", cas), Err(SetError::CasMismatch));
        assert_eq!(
            scope.get(b"key").map(|(value, _)| value),
            Some(b"two".to_vec())
        );
    }

    #[test]
    fn shared_data_is_scoped_by_vm_id() {
        SharedDataScope::open("scope-a-test")
            .set(b"key", b"a", 0)
            .expect("set");
        assert_eq!(SharedDataScope::open("scope-b-test").get(b"key"), None);
        assert!(SharedDataScope::open("scope-a-test").get(b"key").is_some());
    }

    #[test]
    fn shared_data_rejects_growth_past_limit() {
        let scope = SharedDataScope::open("shared-data-limit-test");
        let big = vec![0u8; MAX_SHARED_DATA_BYTES];
        assert_eq!(scope.set(b"k", &big, 0), Err(SetError::Full));
        assert_eq!(scope.get(b"k"), None);
    }

    #[test]
    fn gauge_does_not_go_below_zero() {
        let scope = MetricScope::open("gauge-test");
        let gauge = scope.define("g").expect("defined");
        gauge.add(5);
        gauge.add(-7);
        assert_eq!(gauge.value(), 0);
    }
}
