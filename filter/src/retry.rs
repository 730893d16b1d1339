//! Inline revisions whose plugin source was unavailable when Envoy created the filter config.
//!
//! A connection failure, a timeout, or an HTTP 5xx or 429 from the plugin's URL or OCI
//! registry, with no cached artifact to fall back on, does not reject the filter config.
//! `config_new` accepts it and starts a [`RetryLoader`], a background thread that calls the
//! same loading path as [`crate::config::create`]. It retries with exponential backoff (250 ms,
//! doubling up to 30 s) until the plugin loads, a permanent fault appears, or Envoy destroys
//! the filter config. Until the plugin loads, streams get a 503 with the response code details
//! `edgefn_revision_not_loaded{<revision>}`, or pass through untouched when the revision has
//! the annotation `edgefn.dev/fail-open: "true"`.
//!
//! Every other failure (an invalid revision, 404, 401 or 403, a digest mismatch, a file that is
//! not a Go plugin, a plugin that rejects its config) still rejects the filter config, because
//! retrying would fail the same way. So does a transfer cut off before the whole body arrived.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use edgefn_loader::{FetchError, LoadError, OciError, Source};

use crate::config::{ConfigError, GoFilterConfig, InlineRevision};

/// Pause before the first retry. It doubles after each failed attempt, up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// Minimum time between two warn lines about the retries of one revision. Failed attempts in
/// between are logged at debug level and counted in the next warn line.
const WARN_INTERVAL: Duration = Duration::from_secs(30);

/// HTTP status "Too Many Requests": the server is up but overloaded, so a later request may
/// succeed.
const TOO_MANY_REQUESTS: u16 = 429;

/// Prefix of the response code details of the 503 sent while the revision is not loaded.
pub const NOT_LOADED_DETAILS: &str = "edgefn_revision_not_loaded";

/// Decides whether a failed load of an inline revision is retried in the background (true) or
/// rejects the filter config (false). Only fetch failures that mean the plugin's server or
/// registry was unavailable are retried: connection failures, timeouts, and HTTP 5xx and 429.
///
/// NOTE: a transfer cut off mid-body counts as unavailable for the loader's fallback to a cached
/// artifact, but here it rejects the config, as it did before retries existed. A proxy that
/// truncates large bodies fails the same way on every attempt.
pub fn is_retryable(error: &ConfigError) -> bool {
    let ConfigError::Fetch { source, .. } = error else {
        return false;
    };
    let LoadError::Fetch(fetch) = source.as_ref() else {
        return false;
    };
    match fetch {
        FetchError::IncompleteBody { .. } => false,
        FetchError::Oci(oci) if matches!(oci.as_ref(), OciError::Truncated { .. }) => false,
        FetchError::HttpStatus { status, .. } if *status == TOO_MANY_REQUESTS => true,
        _ => fetch.is_server_unavailable(),
    }
}

/// Returns the response code details for a stream refused while `revision` is not loaded:
/// [`NOT_LOADED_DETAILS`] followed by the revision name in braces, as Envoy formats its own
/// details. Characters other than ASCII letters, digits, `-`, `.` and `_` become `_`, because
/// Envoy expects details without whitespace.
pub fn not_loaded_details(revision: &str) -> String {
    let name: String = revision
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{NOT_LOADED_DETAILS}{{{name}}}")
}

/// State shared by Envoy's workers, the retry thread and the Envoy-side handle.
struct Shared {
    current: RwLock<Option<Arc<GoFilterConfig>>>,
    stopped: Mutex<bool>,
    wake: Condvar,
}

impl Shared {
    /// Sleeps for `delay` unless the handle is dropped first; returns whether it was dropped.
    fn wait_or_stopped(&self, delay: Duration) -> bool {
        let stopped = self
            .stopped
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (stopped, _timeout) = self
            .wake
            .wait_timeout_while(stopped, delay, |stopped| !*stopped)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *stopped
    }

    fn is_stopped(&self) -> bool {
        *self
            .stopped
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The Envoy-side handle of an inline revision that loads in the background. Dropping it stops
/// the retries: the thread ends at its next wake-up, or after the fetch in progress.
pub struct RetryLoader {
    shared: Arc<Shared>,
    revision: String,
    fail_open: bool,
}

impl RetryLoader {
    /// Logs `first_error` (the failure of the load in `config_new`) and starts the retry thread.
    /// `concurrency` is Envoy's worker count, read on the main thread.
    pub fn start(
        revision: InlineRevision,
        concurrency: u32,
        first_error: &ConfigError,
    ) -> Result<Self, ConfigError> {
        tracing::warn!(
            revision = %revision.name,
            source = %revision.source,
            fail_open = revision.fail_open,
            error = %first_error,
            "plugin source unavailable; the filter config is accepted and edgefn retries in the \
             background; until the plugin loads, {}",
            while_not_loaded(revision.fail_open)
        );
        let shared = Arc::new(Shared {
            current: RwLock::new(None),
            stopped: Mutex::new(false),
            wake: Condvar::new(),
        });
        let loader = Self {
            shared: Arc::clone(&shared),
            revision: revision.name.clone(),
            fail_open: revision.fail_open,
        };

        let name = revision.name.clone();
        std::thread::Builder::new()
            .name("edgefn-retry".to_owned())
            .spawn(move || run_thread(revision, concurrency, &shared))
            .map_err(|error| ConfigError::RetryStart {
                revision: name,
                error,
            })?;
        Ok(loader)
    }

    /// Returns the plugin config once the plugin has loaded, `None` before.
    pub fn current(&self) -> Option<Arc<GoFilterConfig>> {
        let current = self
            .shared
            .current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        current.clone()
    }

    /// Returns whether streams pass through untouched while the plugin is not loaded.
    pub fn fail_open(&self) -> bool {
        self.fail_open
    }

    /// Returns the response code details of the 503 sent while the plugin is not loaded.
    pub fn not_loaded_details(&self) -> String {
        not_loaded_details(&self.revision)
    }
}

impl Drop for RetryLoader {
    fn drop(&mut self) {
        *self
            .shared
            .stopped
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = true;
        self.shared.wake.notify_all();
    }
}

fn while_not_loaded(fail_open: bool) -> &'static str {
    if fail_open {
        "requests pass through this filter untouched"
    } else {
        "requests get 503"
    }
}

fn run_thread(revision: InlineRevision, concurrency: u32, shared: &Shared) {
    let result = catch_unwind(AssertUnwindSafe(|| retry(&revision, concurrency, shared)));
    if let Err(payload) = result {
        crate::hooks::report_panic("retry", payload.as_ref());
    }
}

/// Loads `revision` until it loads, fails permanently, or the handle is dropped.
fn retry(revision: &InlineRevision, concurrency: u32, shared: &Shared) {
    let mut delay = RETRY_MIN;
    let mut log = RetryLog::new(&revision.name, &revision.source);
    // Attempt 1 was the load in config_new.
    let mut attempt: u64 = 1;
    loop {
        if shared.wait_or_stopped(delay) {
            tracing::info!(
                revision = %revision.name,
                attempts = attempt,
                "the filter config was destroyed before its plugin loaded; stopped retrying"
            );
            return;
        }
        attempt += 1;

        match revision.load(concurrency) {
            Ok(config) => {
                install(revision, shared, config, attempt);
                return;
            }
            Err(error) if is_retryable(&error) => {
                delay = (delay * 2).min(RETRY_MAX);
                log.unavailable(&error, attempt, delay);
            }
            Err(error) => {
                tracing::error!(
                    revision = %revision.name,
                    source = %revision.source,
                    attempts = attempt,
                    %error,
                    "loading the plugin failed for a reason that retrying cannot fix; stopped \
                     retrying, and {}",
                    while_not_loaded(revision.fail_open)
                );
                return;
            }
        }
    }
}

/// Makes `config` the plugin config of new streams, unless the handle was dropped meanwhile.
fn install(revision: &InlineRevision, shared: &Shared, config: Arc<GoFilterConfig>, attempt: u64) {
    if shared.is_stopped() {
        tracing::info!(
            revision = %revision.name,
            "the plugin loaded after its filter config was destroyed; it is not used"
        );
        return;
    }
    *shared
        .current
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(config);
    tracing::info!(
        revision = %revision.name,
        source = %revision.source,
        attempts = attempt,
        "plugin loaded after its source was unavailable; new streams run it"
    );
}

/// Rate limit of the warn lines about one revision's failed retries.
struct RetryLog<'a> {
    revision: &'a str,
    source: &'a Source,
    last_warn: Option<Instant>,
    /// Failed attempts logged at debug level since the last warn line.
    suppressed: u64,
}

impl<'a> RetryLog<'a> {
    fn new(revision: &'a str, source: &'a Source) -> Self {
        Self {
            revision,
            source,
            last_warn: None,
            suppressed: 0,
        }
    }

    fn unavailable(&mut self, error: &ConfigError, attempt: u64, retry_in: Duration) {
        let due = self
            .last_warn
            .is_none_or(|last| last.elapsed() >= WARN_INTERVAL);
        if !due {
            self.suppressed += 1;
            tracing::debug!(
                revision = %self.revision,
                source = %self.source,
                attempts = attempt,
                ?retry_in,
                %error,
                "plugin source still unavailable; retrying"
            );
            return;
        }
        tracing::warn!(
            revision = %self.revision,
            source = %self.source,
            attempts = attempt,
            not_logged = self.suppressed,
            ?retry_in,
            %error,
            "plugin source still unavailable; retrying"
        );
        self.last_warn = Some(Instant::now());
        self.suppressed = 0;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use edgefn_loader::ElfError;

    use super::*;

    const URL: &str = "http://127.0.0.1:9/plugin.so";
    const REGISTRY: &str = "127.0.0.1:5000";
    const REFERENCE: &str = "127.0.0.1:5000/plugins/addheader:v1";

    fn fetch_error(error: FetchError) -> ConfigError {
        ConfigError::Fetch {
            revision: "add-header-v1".to_owned(),
            source: Box::new(LoadError::Fetch(error)),
        }
    }

    fn http_status(status: u16) -> ConfigError {
        fetch_error(FetchError::HttpStatus {
            url: URL.to_owned(),
            status,
            body: String::new(),
        })
    }

    fn oci_error(error: OciError) -> ConfigError {
        fetch_error(FetchError::from(error))
    }

    #[test]
    fn connection_failure_is_retried() {
        let error = fetch_error(FetchError::Connection {
            url: URL.to_owned(),
            detail: "connection refused".to_owned(),
        });

        assert!(is_retryable(&error));
    }

    #[test]
    fn timeout_is_retried() {
        let error = fetch_error(FetchError::Timeout {
            url: URL.to_owned(),
            timeout: Duration::from_secs(60),
        });

        assert!(is_retryable(&error));
    }

    #[test]
    fn incomplete_body_rejects() {
        let error = fetch_error(FetchError::IncompleteBody {
            url: URL.to_owned(),
            received: 10,
            detail: "connection reset".to_owned(),
        });

        assert!(!is_retryable(&error));
    }

    #[test]
    fn truncated_registry_transfer_rejects() {
        let error = oci_error(OciError::Truncated {
            reference: REFERENCE.to_owned(),
            what: "layer".to_owned(),
            progress: "after 10 of 64 bytes".to_owned(),
            detail: "connection reset".to_owned(),
        });

        assert!(!is_retryable(&error));
    }

    #[test]
    fn server_errors_are_retried() {
        for status in [500, 502, 503, 504] {
            assert!(is_retryable(&http_status(status)), "HTTP {status}");
        }
    }

    #[test]
    fn too_many_requests_is_retried() {
        assert!(is_retryable(&http_status(429)));
    }

    #[test]
    fn client_errors_reject() {
        for status in [400, 401, 403, 410] {
            assert!(!is_retryable(&http_status(status)), "HTTP {status}");
        }
    }

    #[test]
    fn not_found_rejects() {
        let error = fetch_error(FetchError::NotFound {
            location: URL.to_owned(),
            detail: "HTTP 404".to_owned(),
        });

        assert!(!is_retryable(&error));
    }

    #[test]
    fn digest_mismatch_rejects() {
        let error = fetch_error(FetchError::DigestMismatch {
            location: URL.to_owned(),
            expected: "a".repeat(64),
            actual: "b".repeat(64),
        });

        assert!(!is_retryable(&error));
    }

    #[test]
    fn unreachable_registry_is_retried() {
        let error = oci_error(OciError::Unreachable {
            reference: REFERENCE.to_owned(),
            registry: REGISTRY.to_owned(),
            detail: "connection refused".to_owned(),
        });

        assert!(is_retryable(&error));
    }

    #[test]
    fn registry_server_status_is_retried() {
        for status in [429, 503] {
            let error = oci_error(OciError::ServerStatus {
                reference: REFERENCE.to_owned(),
                registry: REGISTRY.to_owned(),
                status,
                detail: "unavailable".to_owned(),
            });

            assert!(is_retryable(&error), "HTTP {status}");
        }
    }

    #[test]
    fn registry_timeout_is_retried() {
        let error = oci_error(OciError::Timeout {
            reference: REFERENCE.to_owned(),
            registry: REGISTRY.to_owned(),
            timeout: Duration::from_secs(60),
        });

        assert!(is_retryable(&error));
    }

    #[test]
    fn registry_not_found_rejects() {
        let error = oci_error(OciError::NotFound {
            reference: REFERENCE.to_owned(),
            registry: REGISTRY.to_owned(),
            what: "manifest".to_owned(),
            detail: "MANIFEST_UNKNOWN".to_owned(),
        });

        assert!(!is_retryable(&error));
    }

    #[test]
    fn registry_unauthorized_rejects() {
        let error = oci_error(OciError::Unauthorized {
            reference: REFERENCE.to_owned(),
            registry: REGISTRY.to_owned(),
            repository: "plugins/addheader".to_owned(),
            detail: "HTTP 401".to_owned(),
        });

        assert!(!is_retryable(&error));
    }

    #[test]
    fn registry_forbidden_rejects() {
        let error = oci_error(OciError::Forbidden {
            reference: REFERENCE.to_owned(),
            registry: REGISTRY.to_owned(),
            repository: "plugins/addheader".to_owned(),
            detail: "HTTP 403".to_owned(),
        });

        assert!(!is_retryable(&error));
    }

    #[test]
    fn not_a_go_plugin_rejects() {
        let error = ConfigError::Load {
            revision: "add-header-v1".to_owned(),
            url: URL.to_owned(),
            source: Box::new(LoadError::Elf(ElfError::NotGoPlugin {
                path: "/cache/sha256/abc".into(),
                missing: vec!["envoyGoFilterNewHttpPluginConfig".to_owned()],
            })),
        };

        assert!(!is_retryable(&error));
    }

    #[test]
    fn rejected_plugin_config_rejects() {
        let error = ConfigError::ParseRejected {
            revision: "add-header-v1".to_owned(),
            plugin: "add-header".to_owned(),
        };

        assert!(!is_retryable(&error));
    }

    #[test]
    fn details_name_the_revision() {
        assert_eq!(
            not_loaded_details("add-header-v1"),
            "edgefn_revision_not_loaded{add-header-v1}"
        );
    }

    #[test]
    fn details_replace_whitespace() {
        assert_eq!(
            not_loaded_details("a b\tc"),
            "edgefn_revision_not_loaded{a_b_c}"
        );
    }
}
