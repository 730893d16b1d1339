//! What a revision sets for its wasm module: name, environment, time and memory limits, and
//! which host capabilities are linked.

use std::time::Duration;

use edgefn_proto::{EdgeFunctionRevision, FieldError};

/// Linear memory cap per instance when the revision does not set one.
pub const DEFAULT_MAX_MEMORY: usize = 128 << 20;

/// Settings of one wasm revision, shared by every instance of its module.
#[derive(Clone, Debug)]
pub struct FunctionSettings {
    /// `metadata.name`, which log lines and errors name, and which scopes the key-value store.
    pub revision: String,
    /// `spec.env`, in order.
    pub env: Vec<(String, String)>,
    /// `spec.runtime.timeout`: how long one call into the module may run.
    pub timeout: Duration,
    /// `spec.runtime.capabilities.fetchAPI`: link the outbound HTTP functions.
    pub fetch: bool,
    /// `spec.runtime.capabilities.kv`: link the key-value store functions.
    pub kv: bool,
    /// Maximum linear memory of one instance, in bytes.
    pub max_memory: usize,
}

impl FunctionSettings {
    /// Returns settings with the API's defaults: no env, 30 s, both capabilities, 128 MiB.
    pub fn new(revision: impl Into<String>) -> Self {
        Self {
            revision: revision.into(),
            env: Vec::new(),
            timeout: Duration::from_secs(30),
            fetch: true,
            kv: true,
            max_memory: DEFAULT_MAX_MEMORY,
        }
    }

    /// Reads the settings of a validated revision: `spec.env`, `spec.runtime` and the
    /// `edgefn.dev/max-memory-mib` annotation.
    pub fn from_revision(revision: &EdgeFunctionRevision) -> Result<Self, FieldError> {
        let spec = &revision.spec;
        Ok(Self {
            revision: revision.name().to_owned(),
            env: spec
                .env
                .iter()
                .map(|var| (var.name.clone(), var.value.clone()))
                .collect(),
            timeout: spec.timeout()?,
            fetch: spec.fetch_api_enabled(),
            kv: spec.kv_enabled(),
            max_memory: revision.max_memory()?.unwrap_or(DEFAULT_MAX_MEMORY),
        })
    }

    /// Returns the value of a `spec.env` variable; the last entry wins when a name repeats.
    pub fn env_value(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}
