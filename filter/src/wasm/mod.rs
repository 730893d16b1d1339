//! Revisions whose code is `spec.code.wasmSource`: loading them, and the streams that run
//! them. `backend` mode replies to requests with a CGI function on edgefn's own threads;
//! `filter` mode runs a proxy-wasm filter on the worker thread.

mod backend;
mod pool;
mod proxy;

use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use edgefn_loader::{FetchOptions, Source};
use edgefn_proto::{EdgeFunctionMode, EdgeFunctionRevision};
use edgefn_wasm::proxywasm::ProxyWasmModule;
use edgefn_wasm::{BackendFunction, FunctionSettings};

pub use backend::BackendStream;
pub use proxy::FilterStream;

use crate::config::ConfigError;
use crate::envoy::EnvoyStream;

/// A loaded wasm revision, shared by every stream of one filter config.
pub struct WasmRevision {
    /// `metadata.name`, which logs name.
    pub name: String,
    /// Unique in the process, so each worker can keep its VM of this revision.
    id: u64,
    kind: WasmKind,
}

enum WasmKind {
    Backend(BackendFunction),
    Filter(ProxyWasmModule),
}

/// The module state of one stream of a wasm revision.
pub enum WasmStream {
    Backend(BackendStream),
    Filter(FilterStream),
}

impl WasmStream {
    /// Creates the state of a new stream of `revision`.
    pub fn new(envoy: EnvoyStream, revision: &Arc<WasmRevision>) -> Self {
        match &revision.kind {
            WasmKind::Backend(_) => Self::Backend(BackendStream::new(envoy, Arc::clone(revision))),
            WasmKind::Filter(module) => {
                Self::Filter(FilterStream::new(envoy, Arc::clone(revision), module))
            }
        }
    }

    pub fn on_request_headers(&self, end_stream: bool) -> u32 {
        match self {
            Self::Backend(stream) => stream.on_request_headers(end_stream),
            Self::Filter(stream) => stream.on_request_headers(end_stream),
        }
    }

    pub fn on_request_body(&self, end_stream: bool) -> u32 {
        match self {
            Self::Backend(stream) => stream.on_request_body(end_stream),
            Self::Filter(stream) => stream.on_request_body(end_stream),
        }
    }

    pub fn on_request_trailers(&self) -> u32 {
        match self {
            Self::Backend(stream) => stream.on_request_trailers(),
            Self::Filter(stream) => stream.on_request_trailers(),
        }
    }

    pub fn on_response_headers(&self, end_stream: bool) -> u32 {
        match self {
            Self::Backend(_) => crate::abi::headers_status::CONTINUE,
            Self::Filter(stream) => stream.on_response_headers(end_stream),
        }
    }

    pub fn on_response_body(&self, end_stream: bool) -> u32 {
        match self {
            Self::Backend(_) => crate::abi::body_status::CONTINUE,
            Self::Filter(stream) => stream.on_response_body(end_stream),
        }
    }

    pub fn on_response_trailers(&self) -> u32 {
        match self {
            Self::Backend(_) => crate::abi::trailers_status::CONTINUE,
            Self::Filter(stream) => stream.on_response_trailers(),
        }
    }

    pub fn on_stream_complete(&self) {
        match self {
            Self::Backend(_) => {}
            Self::Filter(stream) => stream.on_stream_complete(),
        }
    }

    pub fn on_scheduled(&self) {
        match self {
            Self::Backend(stream) => stream.on_scheduled(),
            Self::Filter(_) => {}
        }
    }

    /// Sends a 500 for an internal failure of this stream (a caught panic).
    pub fn fail(&self, details: &str) {
        match self {
            Self::Backend(stream) => stream.fail(details),
            Self::Filter(stream) => stream.fail(details),
        }
    }

    /// Ends the stream on Envoy's side.
    pub fn destroy(self) {
        match self {
            Self::Backend(stream) => stream.destroy(),
            Self::Filter(stream) => stream.destroy(),
        }
    }
}

/// Returns whether the revision in a filter config names a wasm module, without validating it.
pub fn is_wasm_revision(revision: &EdgeFunctionRevision) -> bool {
    revision.spec.code.wasm_source.is_some()
}

/// Fetches, compiles and links the wasm module of `revision`, which must have passed
/// validation and have `spec.code.wasmSource`.
pub fn load(
    revision: &EdgeFunctionRevision,
    cache_dir: PathBuf,
) -> Result<Arc<WasmRevision>, ConfigError> {
    let name = revision.name().to_owned();
    let field = |field| ConfigError::Field {
        revision: name.clone(),
        field,
    };
    let Some(wasm_source) = &revision.spec.code.wasm_source else {
        return Err(ConfigError::Unsupported {
            revision: name.clone(),
            message: "spec.code.wasmSource is missing".to_owned(),
        });
    };

    let settings = FunctionSettings::from_revision(revision).map_err(field)?;
    let source = Source::Url(wasm_source.url.clone());
    let options = FetchOptions {
        cache_dir: cache_dir.clone(),
        expected_sha256: revision
            .expected_sha256()
            .map_err(field)?
            .map(str::to_owned),
        ..Default::default()
    };
    let artifact = edgefn_loader::fetch_blocking(&source, &options).map_err(|source| {
        ConfigError::WasmFetch {
            revision: name.clone(),
            source: Box::new(source),
        }
    })?;
    let module = edgefn_wasm::compile(
        &artifact.path,
        &artifact.sha256,
        Some(&cache_dir.join("compiled")),
        compiler().as_deref(),
    )
    .map_err(|source| ConfigError::WasmCompile {
        revision: name.clone(),
        url: wasm_source.url.clone(),
        source,
    })?;

    let backend = revision.spec.mode() == Some(EdgeFunctionMode::Backend);
    edgefn_wasm::settings::check_module(&module, &settings, backend)
        .map_err(ConfigError::WasmLink)?;
    let kind = match revision.spec.mode() {
        Some(EdgeFunctionMode::Backend) => {
            let function = BackendFunction::load(&module, settings)
                .map_err(|source| ConfigError::WasmLink(source.to_string()))?;
            WasmKind::Backend(function)
        }
        _ => {
            let configuration = plugin_configuration(revision);
            let module = ProxyWasmModule::load(&module, settings, configuration)
                .map_err(|source| ConfigError::WasmLink(source.to_string()))?;
            WasmKind::Filter(module)
        }
    };
    tracing::info!(revision = %name, sha256 = %artifact.sha256, "loaded wasm revision");
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    Ok(Arc::new(WasmRevision { name, id, kind }))
}

/// Environment variable naming the `edgefn` command that compiles wasm modules in a child
/// process; by default the `edgefn` file beside `libedgefn.so` is used when it exists.
pub const COMPILER_ENV: &str = "EDGEFN_COMPILER";

/// Returns the `edgefn` command to compile modules with, or `None` to compile in Envoy.
fn compiler() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(COMPILER_ENV).filter(|value| !value.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let beside = module_path()?.with_file_name("edgefn");
    beside.is_file().then_some(beside)
}

/// Returns the path `libedgefn.so` was loaded from.
fn module_path() -> Option<PathBuf> {
    let mut info = libc::Dl_info {
        dli_fname: std::ptr::null(),
        dli_fbase: std::ptr::null_mut(),
        dli_sname: std::ptr::null(),
        dli_saddr: std::ptr::null_mut(),
    };
    let address = module_path as *const libc::c_void;
    // SAFETY: `address` is a function in this library and `info` a valid destination.
    let found = unsafe { libc::dladdr(address, &mut info) };
    if found == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: on success dladdr sets `dli_fname` to a NUL-terminated path that stays valid
    // while the library is loaded; it is copied at once.
    let name = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) };
    let path = PathBuf::from(std::ffi::OsStr::from_bytes(name.to_bytes()));
    path.is_absolute().then_some(path)
}

/// Returns the proxy-wasm plugin configuration of `revision`: the
/// `edgefn.dev/proxy-wasm-configuration` annotation, empty when absent.
fn plugin_configuration(revision: &EdgeFunctionRevision) -> Vec<u8> {
    revision
        .proxy_wasm_configuration()
        .map(|text| text.as_bytes().to_vec())
        .unwrap_or_default()
}
