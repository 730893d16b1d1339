//! Filter configuration: turns the filter config Envoy hands to `config_new` into a loaded Go
//! plugin with a parsed plugin config. The config is either a revision given inline, loaded
//! once here, or an `apiServer` section naming a revision on an API server, which
//! [`crate::follow`] loads and replaces in the background.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use edgefn_loader::{Artifact, Source};
use edgefn_loader::{FetchOptions, GoExports, GoPluginLibrary, HostCallbacks, SecondRuntimePolicy};
use edgefn_proto::EdgeFunctionRevision;
use thiserror::Error;

use crate::follow::{self, Follower};
use crate::gohost::types::{capi, HttpConfig};
use crate::gohost::{self, PROVIDED_CALLBACKS};
use crate::retry::{self, RetryLoader};

/// Environment variable naming the artifact cache directory inside Envoy's process.
pub const CACHE_DIR_ENV: &str = "EDGEFN_CACHE_DIR";

/// Error that rejects a filter config. Each message names the revision and what to fix.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("filter_config is not UTF-8 text: {0}; give the revision as JSON or YAML")]
    NotText(std::str::Utf8Error),
    #[error("revision {revision:?}: {source}")]
    Revision {
        revision: String,
        source: edgefn_proto::RevisionError,
    },
    #[error("revision {revision:?}: {message}")]
    Unsupported { revision: String, message: String },
    #[error("revision {revision:?}: invalid {0}", .field)]
    Field {
        revision: String,
        field: edgefn_proto::FieldError,
    },
    #[error("revision {revision:?}: cannot fetch the Go plugin: {source}")]
    Fetch {
        revision: String,
        source: Box<edgefn_loader::LoadError>,
    },
    #[error("revision {revision:?}: cannot load the Go plugin fetched from {url}: {source}")]
    Load {
        revision: String,
        url: String,
        source: Box<edgefn_loader::LoadError>,
    },
    #[error("revision {revision:?}: {source}")]
    HostSymbols {
        revision: String,
        source: gohost::HostSymbolsError,
    },
    #[error(
        "revision {revision:?}: Go plugin {plugin:?} rejected its pluginConfig (its own log \
         line above says why); fix spec.code.goPluginSource.pluginConfig"
    )]
    ParseRejected { revision: String, plugin: String },
    #[error("revision {revision:?}: cannot fetch the wasm module: {source}")]
    WasmFetch {
        revision: String,
        source: Box<edgefn_loader::LoadError>,
    },
    #[error("revision {revision:?}: cannot compile the wasm module fetched from {url}: {source}")]
    WasmCompile {
        revision: String,
        url: String,
        source: edgefn_wasm::CompileError,
    },
    #[error("{0}")]
    WasmLink(String),
    #[error("apiServer filter config: {0}")]
    ApiServer(#[from] follow::SettingsError),
    #[error("revision {revision:?}: cannot start the thread that retries loading it: {error}")]
    RetryStart {
        revision: String,
        error: std::io::Error,
    },
}

/// The module config `config_new` returns to Envoy, shared by every stream of one filter config.
pub enum ModuleConfig {
    /// A revision given inline, loaded once for the filter config's whole life.
    Inline(Arc<GoFilterConfig>),
    /// A revision on an API server, loaded and replaced by a background thread.
    Follow(Follower),
    /// A revision given inline whose plugin source was unavailable, loaded by a background
    /// thread that retries.
    Retry(RetryLoader),
    /// A revision given inline whose code is a wasm module.
    Wasm(Arc<crate::wasm::WasmRevision>),
}

impl ModuleConfig {
    /// Returns the plugin config a new stream runs with, or `None` while a followed revision is
    /// not loaded yet.
    pub fn current(&self) -> Option<Arc<GoFilterConfig>> {
        match self {
            Self::Inline(config) => Some(Arc::clone(config)),
            Self::Follow(follower) => follower.current(),
            Self::Retry(loader) => loader.current(),
            Self::Wasm(_) => None,
        }
    }

    /// Returns whether a stream that has no plugin config passes through untouched, rather than
    /// getting a 503.
    pub fn fail_open(&self) -> bool {
        match self {
            Self::Inline(_) | Self::Wasm(_) => false,
            Self::Follow(follower) => follower.fail_open(),
            Self::Retry(loader) => loader.fail_open(),
        }
    }

    /// Returns the response code details of the 503 sent while no plugin config is loaded.
    pub fn not_loaded_details(&self) -> String {
        match self {
            Self::Inline(_) | Self::Follow(_) | Self::Wasm(_) => NO_REVISION_DETAILS.to_owned(),
            Self::Retry(loader) => loader.not_loaded_details(),
        }
    }
}

/// Response code details of the 503 sent while a followed revision is not loaded yet.
const NO_REVISION_DETAILS: &str = "edgefn_no_revision_loaded";

/// Builds the module config for one `config_new` call: an `apiServer` section starts a
/// [`Follower`], and anything else is read as an inline revision and loaded now. An inline
/// revision whose plugin source is unavailable (see [`retry::is_retryable`]) is accepted, and
/// a [`RetryLoader`] loads it in the background. Every other failure rejects the config.
pub fn create_module(config_bytes: &[u8], concurrency: u32) -> Result<ModuleConfig, ConfigError> {
    if let Ok(text) = std::str::from_utf8(config_bytes) {
        if follow::is_api_server_config(text) {
            let settings = follow::FollowSettings::parse(text)?;
            let follower = Follower::start(settings, concurrency, cache_dir())?;
            return Ok(ModuleConfig::Follow(follower));
        }
    }

    if let Some(revision) = wasm_revision(config_bytes)? {
        let loaded = crate::wasm::load(&revision, cache_dir())?;
        return Ok(ModuleConfig::Wasm(loaded));
    }

    let revision = InlineRevision::parse(config_bytes)?;
    match revision.load(concurrency) {
        Ok(config) => Ok(ModuleConfig::Inline(config)),
        Err(error) if retry::is_retryable(&error) => {
            let loader = RetryLoader::start(revision, concurrency, &error)?;
            Ok(ModuleConfig::Retry(loader))
        }
        Err(error) => Err(error),
    }
}

/// Parses the revision in a filter config and returns it when its code is a wasm module.
fn wasm_revision(config_bytes: &[u8]) -> Result<Option<EdgeFunctionRevision>, ConfigError> {
    let text = std::str::from_utf8(config_bytes).map_err(ConfigError::NotText)?;
    let revision = edgefn_proto::parse_revision(text).map_err(|source| ConfigError::Revision {
        revision: revision_name_hint(text),
        source,
    })?;
    Ok(crate::wasm::is_wasm_revision(&revision).then_some(revision))
}

/// The loaded plugin and its parsed config, shared by every stream of one filter config.
pub struct GoFilterConfig {
    pub revision: String,
    /// The plugin name Go looks up its factory by; the address must stay stable.
    pub plugin_name: Box<[u8]>,
    pub exports: GoExports,
    /// The id Go's `NewHttpPluginConfig` returned.
    pub config_id: u64,
    /// Envoy's worker count, the size of Go's per-worker request maps.
    pub concurrency: u32,
    /// The library has no plugin registered under `plugin_name`. Go's SDK only finds out at
    /// the first request, where it would pass requests through; edgefn returns 500 instead.
    pub plugin_missing: std::sync::atomic::AtomicBool,
}

impl GoFilterConfig {
    pub fn plugin_name_str(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.plugin_name)
    }
}

impl Drop for GoFilterConfig {
    fn drop(&mut self) {
        // SAFETY: the id came from this library's NewHttpPluginConfig and is destroyed once;
        // no stream uses the config any more (each keeps an Arc to it).
        unsafe { (self.exports.destroy_http_plugin_config)(self.config_id, 0) };
    }
}

/// The `httpConfig` handed to Go plus the memory it points to. Go owns it until
/// `envoyGoConfigHttpFinalize`, which may run long after the filter config is gone.
#[repr(C)]
pub struct ConfigAllocation {
    /// Must stay the first field: Go's `httpConfig*` is the allocation's address.
    pub raw: HttpConfig,
    plugin_name: Box<[u8]>,
    any: Vec<u8>,
    pub metrics: Metrics,
}

/// An inline revision that passed parsing and validation, with everything needed to fetch and
/// load its plugin. [`create`] loads it once; a [`RetryLoader`] loads it again after its
/// plugin source was unavailable.
pub struct InlineRevision {
    /// `metadata.name`, which logs and errors name.
    pub name: String,
    plugin_name: Box<[u8]>,
    /// The plugin's URL or OCI image.
    pub source: Source,
    options: FetchOptions,
    /// The plugin config, encoded as the `google.protobuf.Any` Go receives.
    any: Vec<u8>,
    /// The `edgefn.dev/fail-open` annotation: pass streams through while the plugin is not
    /// loaded, instead of replying 503.
    pub fail_open: bool,
}

impl InlineRevision {
    /// Parses and validates the revision in a filter config, without fetching anything.
    pub fn parse(config_bytes: &[u8]) -> Result<Self, ConfigError> {
        let text = std::str::from_utf8(config_bytes).map_err(ConfigError::NotText)?;
        let revision =
            edgefn_proto::parse_revision(text).map_err(|source| ConfigError::Revision {
                revision: revision_name_hint(text),
                source,
            })?;
        let name = revision.name().to_owned();
        let field = |field| ConfigError::Field {
            revision: name.clone(),
            field,
        };

        let source = revision
            .spec
            .code
            .go_plugin_source
            .as_ref()
            .ok_or_else(|| ConfigError::Unsupported {
                revision: name.clone(),
                message: "spec.code.jsSource is not supported by this edgefn build; build the \
                          JavaScript into a wasm module and give it as spec.code.wasmSource"
                    .to_owned(),
            })?;
        let plugin_source = match (&source.url, &source.oci) {
            (Some(url), _) => Source::Url(url.clone()),
            (None, Some(oci)) => Source::Oci(edgefn_loader::OciSource::from(oci)),
            (None, None) => {
                return Err(ConfigError::Unsupported {
                    revision: name.clone(),
                    message: "spec.code.goPluginSource has neither url nor oci; set one".to_owned(),
                })
            }
        };
        let plugin_name = plugin_name(&revision)?;
        let expected_sha256 = revision
            .expected_sha256()
            .map_err(field)?
            .map(str::to_owned);
        let wrapping = revision.plugin_config_wrapping().map_err(field)?;
        let any = edgefn_proto::plugin_config_any(&revision.spec, wrapping).map_err(field)?;
        let fail_open = revision.fail_open().map_err(field)?;

        Ok(Self {
            name,
            plugin_name,
            source: plugin_source,
            options: FetchOptions {
                cache_dir: cache_dir(),
                expected_sha256,
                ..Default::default()
            },
            any,
            fail_open,
        })
    }

    /// Fetches the plugin (blocking the calling thread), opens it and creates its Go plugin
    /// config.
    pub fn load(&self, concurrency: u32) -> Result<Arc<GoFilterConfig>, ConfigError> {
        let artifact =
            edgefn_loader::fetch_blocking(&self.source, &self.options).map_err(|source| {
                ConfigError::Fetch {
                    revision: self.name.clone(),
                    source: Box::new(source),
                }
            })?;
        open_plugin(
            self.name.clone(),
            self.plugin_name.clone(),
            self.any.clone(),
            &artifact,
            &self.source,
            concurrency,
        )
    }
}

/// Builds the filter config of an inline revision, fetching and loading its plugin now.
pub fn create(config_bytes: &[u8], concurrency: u32) -> Result<Arc<GoFilterConfig>, ConfigError> {
    InlineRevision::parse(config_bytes)?.load(concurrency)
}

/// Loads the Go plugin of a revision whose artifact is already in the cache: `artifact` came
/// from `source`, which error messages name. Used for revisions followed on an API server.
pub fn load_revision(
    revision: &EdgeFunctionRevision,
    artifact: &Artifact,
    source: &Source,
    concurrency: u32,
) -> Result<Arc<GoFilterConfig>, ConfigError> {
    let name = revision.name().to_owned();
    let field = |field| ConfigError::Field {
        revision: name.clone(),
        field,
    };
    let plugin_name = plugin_name(revision)?;
    let wrapping = revision.plugin_config_wrapping().map_err(field)?;
    let any = edgefn_proto::plugin_config_any(&revision.spec, wrapping).map_err(field)?;
    open_plugin(name, plugin_name, any, artifact, source, concurrency)
}

/// Opens the fetched library, hands `any` to Go's `NewHttpPluginConfig`, and returns the
/// plugin config streams use.
fn open_plugin(
    name: String,
    plugin_name: Box<[u8]>,
    any: Vec<u8>,
    artifact: &Artifact,
    plugin_source: &Source,
    concurrency: u32,
) -> Result<Arc<GoFilterConfig>, ConfigError> {
    gohost::install_host_symbols().map_err(|source| ConfigError::HostSymbols {
        revision: name.clone(),
        source,
    })?;
    let policy = SecondRuntimePolicy::from_env(SecondRuntimePolicy::Refuse)
        .map_err(|error| load_error(&name, plugin_source, error.into()))?;
    // SAFETY: `install_host_symbols` succeeded, so the trampoline library defines every name
    // in PROVIDED_CALLBACKS globally (and no contrib Envoy defines them first), each
    // forwarding to a thread-safe implementation in `gohost::callbacks`.
    let callbacks = unsafe { HostCallbacks::assume_installed(&PROVIDED_CALLBACKS) };
    let library = GoPluginLibrary::open(&artifact.path, &callbacks, policy)
        .map_err(|error| load_error(&name, plugin_source, error))?;

    let exports = *library.exports();
    let config_id = new_plugin_config(&exports, &plugin_name, any, concurrency);
    if config_id == 0 {
        return Err(ConfigError::ParseRejected {
            revision: name,
            plugin: String::from_utf8_lossy(&plugin_name).into_owned(),
        });
    }
    tracing::info!(
        revision = %name,
        plugin = %String::from_utf8_lossy(&plugin_name),
        sha256 = %artifact.sha256,
        config_id,
        "Go plugin loaded"
    );

    Ok(Arc::new(GoFilterConfig {
        revision: name,
        plugin_name,
        exports,
        config_id,
        concurrency,
        plugin_missing: Default::default(),
    }))
}

fn load_error(revision: &str, source: &Source, error: edgefn_loader::LoadError) -> ConfigError {
    ConfigError::Load {
        revision: revision.to_owned(),
        url: source.to_string(),
        source: Box::new(error),
    }
}

/// Returns the `metadata.name` of a revision that failed validation, so the error can name
/// it, or `<unnamed>` when the text has none.
fn revision_name_hint(text: &str) -> String {
    edgefn_proto::revision_name_hint(text).unwrap_or_else(|| "<unnamed>".to_owned())
}

fn plugin_name(revision: &EdgeFunctionRevision) -> Result<Box<[u8]>, ConfigError> {
    match revision.plugin_name() {
        Some(name) => Ok(name.as_bytes().into()),
        None => Err(ConfigError::Unsupported {
            revision: "<unnamed>".to_owned(),
            message: "no plugin name: set metadata.name or spec.code.metadata.name".to_owned(),
        }),
    }
}

/// Hands the plugin config to Go and returns its config id (0 when the plugin rejected it).
fn new_plugin_config(
    exports: &GoExports,
    plugin_name: &[u8],
    any: Vec<u8>,
    concurrency: u32,
) -> u64 {
    let name: Box<[u8]> = plugin_name.into();
    let mut allocation = Box::new(ConfigAllocation {
        raw: HttpConfig {
            plugin_name_ptr: name.as_ptr() as u64,
            plugin_name_len: name.len() as u64,
            config_ptr: any.as_ptr() as u64,
            config_len: any.len() as u64,
            is_route_config: 0,
            concurrency,
        },
        plugin_name: name,
        any,
        metrics: Metrics::default(),
    });
    let raw = &mut allocation.raw as *mut HttpConfig;

    // Go keeps the pointer and frees it through envoyGoConfigHttpFinalize.
    Box::leak(allocation);
    // SAFETY: `raw` points to a leaked, fully initialised httpConfig whose name and config
    // bytes live in the same allocation.
    unsafe { (exports.new_http_plugin_config)(raw.cast()) }
}

/// Returns the cache directory: `$EDGEFN_CACHE_DIR`, else `$XDG_CACHE_HOME/edgefn`, else
/// `$HOME/.cache/edgefn`, else `/var/cache/edgefn`. Never a shared temporary directory, where
/// another user could plant the code Envoy loads.
fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(CACHE_DIR_ENV).filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir).join("edgefn");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home).join(".cache").join("edgefn");
    }
    PathBuf::from("/var/cache/edgefn")
}

/// Metrics a Go plugin defines through `envoyGoFilterHttpDefineMetric`.
///
/// NOTE: they live in edgefn's memory and are not exported as Envoy stats, because the
/// dynamic-modules ABI only allows defining stats while `config_new` runs, before Go parses.
#[derive(Default)]
pub struct Metrics {
    values: Mutex<Vec<(u32, String, i64)>>,
}

const METRIC_COUNTER: u32 = 0;
const METRIC_GAUGE: u32 = 1;
const METRIC_HISTOGRAM: u32 = 2;

impl Metrics {
    /// Registers a metric; ids carry the type in their low two bits, as in Envoy's golang
    /// filter (counters 4, 8, ...; gauges 5, 9, ...; histograms 6, 10, ...).
    pub fn define(&self, metric_type: u32, name: String) -> Option<u32> {
        if metric_type > METRIC_HISTOGRAM {
            return None;
        }
        let mut values = self.values.lock().unwrap_or_else(|p| p.into_inner());
        values.push((metric_type, name, 0));
        u32::try_from(values.len())
            .ok()
            .map(|index| (index << 2) | metric_type)
    }

    fn slot<T>(&self, id: u32, body: impl FnOnce(u32, &mut i64) -> T) -> Option<T> {
        let mut values = self.values.lock().unwrap_or_else(|p| p.into_inner());
        let index = usize::try_from(id >> 2).ok()?.checked_sub(1)?;
        let (metric_type, _, value) = values.get_mut(index)?;
        (*metric_type == id & 3).then(|| body(*metric_type, value))
    }

    pub fn increment(&self, id: u32, offset: i64) -> i32 {
        let result = self.slot(id, |metric_type, value| match metric_type {
            METRIC_COUNTER if offset > 0 => *value = value.saturating_add(offset),
            METRIC_GAUGE => *value = value.saturating_add(offset),
            _ => {}
        });
        result.map_or(capi::VALUE_NOT_FOUND, |()| capi::OK)
    }

    pub fn get(&self, id: u32) -> Option<u64> {
        self.slot(id, |metric_type, value| {
            (metric_type != METRIC_HISTOGRAM).then_some(*value as u64)
        })
        .flatten()
    }

    pub fn record(&self, id: u32, recorded: u64) -> i32 {
        let recorded = i64::try_from(recorded).unwrap_or(i64::MAX);
        let result = self.slot(id, |metric_type, value| match metric_type {
            METRIC_COUNTER => *value = value.saturating_add(recorded),
            _ => *value = recorded,
        });
        result.map_or(capi::VALUE_NOT_FOUND, |()| capi::OK)
    }
}
