//! [`ProxyWasmModule`]: one revision's plugin, checked and linked once, from which every
//! worker thread starts its own [`ProxyWasmVm`].

use std::sync::Arc;

use wasmtime::{ExternType, InstancePre, Linker, Module, ValType};

use super::imports_general::{self, HOST_FUNCTIONS};
use super::imports_http;
use super::shared::{MetricScope, SharedDataScope};
use super::state::{PluginInfo, VmData};
use super::vm::{ProxyWasmVm, StartError};
use crate::engine::engine;
use crate::host::{self, Capabilities};
use crate::kv::KvScope;
use crate::settings::FunctionSettings;
use crate::wasi;

/// Error that rejects a proxy-wasm module when its revision loads.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "revision {revision}: the wasm module does not export `{export}`, so it is not a \
         proxy-wasm 0.2 filter; {hint}"
    )]
    MissingExport {
        revision: String,
        export: &'static str,
        hint: &'static str,
    },
    #[error(
        "revision {revision}: the export `{export}` has type {found}, but proxy-wasm 0.2.1 \
         defines it as {expected}; rebuild the module with a proxy-wasm 0.2 SDK"
    )]
    ExportType {
        revision: String,
        export: String,
        expected: String,
        found: String,
    },
    #[error(
        "revision {revision}: the wasm module imports `{module}.{name}`, which edgefn does not \
         provide: it offers the proxy-wasm 0.2.1 functions in `env`, WASI preview 1 in \
         `wasi_snapshot_preview1` and the `edgefn` module; remove the import"
    )]
    UnknownImport {
        revision: String,
        module: String,
        name: String,
    },
    #[error(
        "revision {revision}: the wasm module imports `edgefn.{import}`, but {capability} is \
         false; set it to true or remove the import"
    )]
    CapabilityDisabled {
        revision: String,
        import: String,
        capability: &'static str,
    },
    #[error(
        "revision {revision}: the wasm module imports `edgefn.{import}`, but outbound HTTP is \
         available in `spec.mode: backend` only; a filter cannot block its stream on a fetch"
    )]
    FetchInFilter { revision: String, import: String },
    #[error("revision {revision}: cannot link the wasm module: {message}")]
    Link { revision: String, message: String },
    #[error("revision {revision}: the plugin failed to start: {source}")]
    Start {
        revision: String,
        #[source]
        source: StartError,
    },
}

/// A proxy-wasm filter of one revision, ready to start VMs on any thread.
pub struct ProxyWasmModule {
    pub(crate) settings: Arc<FunctionSettings>,
    pub(crate) plugin: Arc<PluginInfo>,
    pub(crate) pre: InstancePre<VmData>,
    pub(crate) kv: Option<KvScope>,
}

/// Exports a module must have, with what to do when one is missing.
const REQUIRED_EXPORTS: &[(&str, &str)] = &[
    (
        "memory",
        "host functions exchange data through the exported linear memory",
    ),
    (
        "proxy_on_context_create",
        "build it with a proxy-wasm SDK, which defines the context callbacks",
    ),
];

/// The function exports edgefn calls, as (name, parameter count, result count); every
/// parameter and result is `i32`.
const CALLBACK_SIGNATURES: &[(&str, usize, usize)] = &[
    ("proxy_on_memory_allocate", 1, 1),
    ("malloc", 1, 1),
    ("_initialize", 0, 0),
    ("_start", 0, 0),
    ("proxy_on_context_create", 2, 0),
    ("proxy_on_vm_start", 2, 1),
    ("proxy_on_configure", 2, 1),
    ("proxy_on_request_headers", 3, 1),
    ("proxy_on_request_body", 3, 1),
    ("proxy_on_request_trailers", 2, 1),
    ("proxy_on_response_headers", 3, 1),
    ("proxy_on_response_body", 3, 1),
    ("proxy_on_response_trailers", 2, 1),
    ("proxy_on_log", 1, 0),
    ("proxy_on_done", 1, 1),
    ("proxy_on_delete", 1, 0),
    ("proxy_on_tick", 1, 0),
];

impl ProxyWasmModule {
    /// Checks `module` against the proxy-wasm ABI, links it, and starts one VM as a trial, so
    /// that a plugin whose `proxy_on_vm_start` or `proxy_on_configure` fails is rejected
    /// here rather than on the first request. `plugin_configuration` is what the plugin reads
    /// as `PLUGIN_CONFIGURATION`.
    pub fn load(
        module: &Module,
        settings: FunctionSettings,
        plugin_configuration: Vec<u8>,
    ) -> Result<Self, LoadError> {
        let revision = settings.revision.clone();
        check_exports(module, &revision)?;
        check_imports(module, &settings)?;

        let link_error = |error: wasmtime::Error| LoadError::Link {
            revision: revision.clone(),
            message: format!("{error:#}"),
        };
        let linker = linker(module, &settings).map_err(link_error)?;
        let pre = linker.instantiate_pre(module).map_err(link_error)?;

        let plugin = PluginInfo {
            revision: revision.clone(),
            root_id: String::new(),
            plugin_configuration,
            vm_configuration: Vec::new(),
            shared_data: SharedDataScope::open(&revision),
            metrics: MetricScope::open(&revision),
        };
        let loaded = Self {
            kv: settings.kv.then(|| KvScope::open(&settings.revision)),
            settings: Arc::new(settings),
            plugin: Arc::new(plugin),
            pre,
        };

        ProxyWasmVm::start(&loaded).map_err(|source| LoadError::Start { revision, source })?;
        Ok(loaded)
    }

    /// Returns the revision's settings.
    pub fn settings(&self) -> &FunctionSettings {
        &self.settings
    }

    /// Returns the value of the metric `name` the plugin defined, summed over every VM of
    /// this revision in the process.
    pub fn metric(&self, name: &str) -> Option<u64> {
        self.plugin.metrics.value(name)
    }
}

fn linker(module: &Module, settings: &FunctionSettings) -> wasmtime::Result<Linker<VmData>> {
    let mut linker = Linker::new(engine());
    imports_http::add_to_linker(&mut linker)?;
    imports_general::add_to_linker(&mut linker)?;
    wasi::add_to_linker(&mut linker, module, |data| &mut data.wasi)?;
    let capabilities = Capabilities {
        kv: settings.kv,
        fetch: false,
    };
    host::add_to_linker(&mut linker, capabilities, |data| &mut data.host)?;
    Ok(linker)
}

fn missing(revision: &str, export: &'static str, hint: &'static str) -> LoadError {
    LoadError::MissingExport {
        revision: revision.to_owned(),
        export,
        hint,
    }
}

fn check_exports(module: &Module, revision: &str) -> Result<(), LoadError> {
    for &(export, hint) in REQUIRED_EXPORTS {
        if module.get_export(export).is_none() {
            return Err(missing(revision, export, hint));
        }
    }
    if !matches!(module.get_export("memory"), Some(ExternType::Memory(_))) {
        return Err(missing(
            revision,
            "memory",
            "`memory` must be a linear memory",
        ));
    }

    let abi_versions = ["proxy_abi_version_0_2_1", "proxy_abi_version_0_2_0"];
    if !abi_versions
        .iter()
        .any(|name| module.get_export(name).is_some())
    {
        return Err(missing(
            revision,
            "proxy_abi_version_0_2_1",
            "edgefn runs ABI 0.2.1 and 0.2.0; build it with a proxy-wasm 0.2 SDK",
        ));
    }
    let allocators = ["proxy_on_memory_allocate", "malloc"];
    if !allocators
        .iter()
        .any(|name| module.get_export(name).is_some())
    {
        return Err(missing(
            revision,
            "proxy_on_memory_allocate",
            "the host needs it (or `malloc`) to return data to the plugin",
        ));
    }

    for &(name, params_expected, results_expected) in CALLBACK_SIGNATURES {
        let Some(found) = module.get_export(name) else {
            continue;
        };
        let matches = found.func().is_some_and(|ty| {
            let params: Vec<ValType> = ty.params().collect();
            let results: Vec<ValType> = ty.results().collect();
            all_i32(&params, params_expected) && all_i32(&results, results_expected)
        });
        if !matches {
            return Err(LoadError::ExportType {
                revision: revision.to_owned(),
                export: name.to_owned(),
                expected: format!(
                    "a function of {params_expected} i32 parameters and {results_expected} i32 \
                     results"
                ),
                found: match found.func() {
                    Some(ty) => ty.to_string(),
                    None => "not a function".to_owned(),
                },
            });
        }
    }
    Ok(())
}

fn all_i32(types: &[ValType], count: usize) -> bool {
    types.len() == count && types.iter().all(|ty| matches!(ty, ValType::I32))
}

fn check_imports(module: &Module, settings: &FunctionSettings) -> Result<(), LoadError> {
    let revision = &settings.revision;
    for import in module.imports() {
        let (module_name, name) = (import.module(), import.name());
        let is_function = import.ty().func().is_some();
        let provided = match module_name {
            imports_http::MODULE => is_function && HOST_FUNCTIONS.contains(&name),
            // Every WASI preview 1 function is linked, the unsupported ones to ENOSYS.
            wasi::MODULE => is_function,
            host::MODULE if host::FETCH_FUNCTIONS.contains(&name) => {
                return Err(LoadError::FetchInFilter {
                    revision: revision.clone(),
                    import: name.to_owned(),
                });
            }
            host::MODULE if host::KV_FUNCTIONS.contains(&name) && !settings.kv => {
                return Err(LoadError::CapabilityDisabled {
                    revision: revision.clone(),
                    import: name.to_owned(),
                    capability: "spec.runtime.capabilities.kv",
                });
            }
            host::MODULE => {
                is_function && (name == "env_get" || host::KV_FUNCTIONS.contains(&name))
            }
            _ => false,
        };
        if !provided {
            return Err(LoadError::UnknownImport {
                revision: revision.clone(),
                module: module_name.to_owned(),
                name: name.to_owned(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use wasmtime::{Store, StoreLimits};

    use super::*;
    use crate::host::HostCtx;
    use crate::proxywasm::state::AbiState;
    use crate::wasi::WasiCtx;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn module_is_send_and_sync() {
        assert_send_sync::<ProxyWasmModule>();
    }

    #[test]
    fn host_function_list_matches_linker() {
        let settings = Arc::new(FunctionSettings::new("pw-linker-list"));
        let plugin = PluginInfo {
            revision: settings.revision.clone(),
            root_id: String::new(),
            plugin_configuration: Vec::new(),
            vm_configuration: Vec::new(),
            shared_data: SharedDataScope::open(&settings.revision),
            metrics: MetricScope::open(&settings.revision),
        };
        let data = VmData {
            wasi: WasiCtx::new(&settings.revision, Vec::new(), &[], Vec::new(), 0),
            host: HostCtx::new(settings.clone(), None, Instant::now()),
            limits: StoreLimits::default(),
            abi: AbiState::new(Arc::new(plugin)),
            memory: None,
        };
        let mut store = Store::new(engine(), data);
        let mut linker = Linker::new(engine());
        imports_http::add_to_linker(&mut linker).expect("HTTP functions link");
        imports_general::add_to_linker(&mut linker).expect("general functions link");

        for name in HOST_FUNCTIONS {
            assert!(
                linker.get(&mut store, imports_http::MODULE, name).is_ok(),
                "{name} is listed but not linked"
            );
        }
        let linked: Vec<String> = linker
            .iter(&mut store)
            .map(|(_, name, _)| name.to_owned())
            .collect();
        for name in &linked {
            assert!(
                HOST_FUNCTIONS.contains(&name.as_str()),
                "{name} is linked but not listed"
            );
        }
        assert_eq!(linked.len(), HOST_FUNCTIONS.len());
    }
}
