//! The settings a revision gives its wasm module: name, environment, time and memory limits,
//! and which host capabilities are linked.

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

/// Exports that mark a module as a proxy-wasm filter.
const PROXY_WASM_ABI_EXPORTS: &[&str] = &["proxy_abi_version_0_2_1", "proxy_abi_version_0_2_0"];

/// Checks what a module is against the revision before linking it: a proxy-wasm filter in
/// `backend` mode, a WASI command in `filter` mode, or a module whose memory starts larger
/// than the revision's memory cap. The message says which field to change.
pub fn check_module(
    module: &wasmtime::Module,
    settings: &FunctionSettings,
    backend: bool,
) -> Result<(), String> {
    let revision = &settings.revision;
    let is_filter = PROXY_WASM_ABI_EXPORTS
        .iter()
        .any(|name| module.get_export(name).is_some());
    if backend && is_filter {
        return Err(format!(
            "revision {revision:?}: the wasm module is a proxy-wasm filter (it exports a \
             proxy_abi_version function), but spec.mode is backend; set spec.mode to filter"
        ));
    }
    if !backend && !is_filter && module.get_export("_start").is_some() {
        return Err(format!(
            "revision {revision:?}: the wasm module is a WASI command (it exports _start and no \
             proxy_abi_version function), but spec.mode is filter; set spec.mode to backend"
        ));
    }

    for export in module.exports() {
        let Some(memory) = export.ty().memory().cloned() else {
            continue;
        };
        let initial = memory.minimum().saturating_mul(memory.page_size());
        if initial > settings.max_memory as u64 {
            return Err(format!(
                "revision {revision:?}: the wasm module's memory starts at {initial} bytes, more \
                 than the cap of {} bytes; raise the edgefn.dev/max-memory-mib annotation",
                settings.max_memory
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::engine;

    fn module(text: &str) -> wasmtime::Module {
        wasmtime::Module::new(engine(), wat::parse_str(text).unwrap()).unwrap()
    }

    const FILTER: &str = r#"(module (memory (export "memory") 1)
        (func (export "proxy_abi_version_0_2_1")))"#;
    const COMMAND: &str = r#"(module (memory (export "memory") 1) (func (export "_start")))"#;

    #[test]
    fn filter_module_in_backend_mode() {
        let error = check_module(&module(FILTER), &FunctionSettings::new("r"), true).unwrap_err();
        assert!(error.contains("set spec.mode to filter"), "{error}");
        assert!(check_module(&module(FILTER), &FunctionSettings::new("r"), false).is_ok());
    }

    #[test]
    fn command_module_in_filter_mode() {
        let error = check_module(&module(COMMAND), &FunctionSettings::new("r"), false).unwrap_err();
        assert!(error.contains("set spec.mode to backend"), "{error}");
        assert!(check_module(&module(COMMAND), &FunctionSettings::new("r"), true).is_ok());
    }

    #[test]
    fn initial_memory_over_cap() {
        let mut settings = FunctionSettings::new("r");
        settings.max_memory = 65536;
        let big = r#"(module (memory (export "memory") 2) (func (export "_start")))"#;
        let error = check_module(&module(big), &settings, true).unwrap_err();
        assert!(error.contains("edgefn.dev/max-memory-mib"), "{error}");
        assert!(check_module(&module(COMMAND), &settings, true).is_ok());
    }
}
