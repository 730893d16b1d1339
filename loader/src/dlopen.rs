//! Opening Go filter plugin libraries with `dlopen`, and the process-wide registry of them.
//!
//! This is the crate's only module with `unsafe` code.

#![allow(
    unsafe_code,
    reason = "dlopen, dlsym and the host-callback contract need unsafe"
)]

use std::ffi::c_void;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};

use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
use tracing::info;

use crate::digest::sha256_hex;
use crate::elf::{check_go_plugin_bytes, ElfInfo};
use crate::error::{ElfError, LoadError, OpenError};

/// Environment variable that selects the `SecondRuntimePolicy`: `single` or `multiple`.
pub const GO_LIBRARIES_ENV: &str = "EDGEFN_GO_LIBRARIES";

/// `GoUint64 envoyGoFilterNewHttpPluginConfig(httpConfig* c)`. `c` points to the filter
/// crate's `httpConfig`, which must stay valid until Go calls `envoyGoConfigHttpFinalize(c)`.
pub type NewHttpPluginConfigFn = unsafe extern "C" fn(config: *mut c_void) -> u64;

/// `GoUint64 envoyGoFilterMergeHttpPluginConfig(name_ptr, name_len, parent_id, child_id)`.
pub type MergeHttpPluginConfigFn =
    unsafe extern "C" fn(name_ptr: u64, name_len: u64, parent_id: u64, child_id: u64) -> u64;

/// `void envoyGoFilterDestroyHttpPluginConfig(GoUint64 id, GoInt need_delay)`.
pub type DestroyHttpPluginConfigFn = unsafe extern "C" fn(id: u64, need_delay: i64);

/// `GoUint64 envoyGoFilterOnHttpHeader(processState* s, end_stream, header_num,
/// header_bytes)`.
pub type OnHttpHeaderFn = unsafe extern "C" fn(
    state: *mut c_void,
    end_stream: u64,
    header_num: u64,
    header_bytes: u64,
) -> u64;

/// `GoUint64 envoyGoFilterOnHttpData(processState* s, end_stream, buffer, length)`.
pub type OnHttpDataFn =
    unsafe extern "C" fn(state: *mut c_void, end_stream: u64, buffer: u64, length: u64) -> u64;

/// `void envoyGoFilterOnHttpLog(httpRequest* r, log_type, processState* dec,
/// processState* enc, then the count and byte size of request headers, request trailers,
/// response headers and response trailers)`.
pub type OnHttpLogFn = unsafe extern "C" fn(
    request: *mut c_void,
    log_type: u64,
    decoding_state: *mut c_void,
    encoding_state: *mut c_void,
    request_header_num: u64,
    request_header_bytes: u64,
    request_trailer_num: u64,
    request_trailer_bytes: u64,
    response_header_num: u64,
    response_header_bytes: u64,
    response_trailer_num: u64,
    response_trailer_bytes: u64,
);

/// `void envoyGoFilterOnHttpStreamComplete(httpRequest* r)`.
pub type OnHttpStreamCompleteFn = unsafe extern "C" fn(request: *mut c_void);

/// `void envoyGoFilterOnHttpDestroy(httpRequest* r, GoUint64 reason)`.
pub type OnHttpDestroyFn = unsafe extern "C" fn(request: *mut c_void, reason: u64);

/// `void envoyGoRequestSemaDec(httpRequest* r)`.
pub type RequestSemaDecFn = unsafe extern "C" fn(request: *mut c_void);

/// `void envoyGoFilterCleanUp(void)`.
pub type CleanUpFn = unsafe extern "C" fn();

/// The ten functions a Go filter plugin exports, resolved from a loaded library.
///
/// The pointers stay valid for the life of the process, because the library is never
/// unloaded. Calling them is still unsafe: each one's contract is the golang filter ABI.
#[derive(Clone, Copy, Debug)]
pub struct GoExports {
    /// `envoyGoFilterNewHttpPluginConfig`.
    pub new_http_plugin_config: NewHttpPluginConfigFn,
    /// `envoyGoFilterMergeHttpPluginConfig`.
    pub merge_http_plugin_config: MergeHttpPluginConfigFn,
    /// `envoyGoFilterDestroyHttpPluginConfig`.
    pub destroy_http_plugin_config: DestroyHttpPluginConfigFn,
    /// `envoyGoFilterOnHttpHeader`.
    pub on_http_header: OnHttpHeaderFn,
    /// `envoyGoFilterOnHttpData`.
    pub on_http_data: OnHttpDataFn,
    /// `envoyGoFilterOnHttpLog`.
    pub on_http_log: OnHttpLogFn,
    /// `envoyGoFilterOnHttpStreamComplete`.
    pub on_http_stream_complete: OnHttpStreamCompleteFn,
    /// `envoyGoFilterOnHttpDestroy`.
    pub on_http_destroy: OnHttpDestroyFn,
    /// `envoyGoRequestSemaDec`.
    pub request_sema_dec: RequestSemaDecFn,
    /// `envoyGoFilterCleanUp`.
    pub clean_up: CleanUpFn,
}

/// Policy for opening a second, distinct Go plugin library in one process.
///
/// Each Go c-shared library carries its own Go runtime. The Go project does not support two
/// Go runtimes in one process, and crashes have been reported on some platforms and Go
/// versions. `Allow` is therefore outside what Go promises. Enable it only where a stress test
/// with the Go version and platform in use has passed. Libraries with identical bytes are opened
/// once and shared under either policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecondRuntimePolicy {
    /// Reject any library whose digest differs from one already open.
    Refuse,
    /// Open every distinct library.
    Allow,
}

impl SecondRuntimePolicy {
    /// Reads `EDGEFN_GO_LIBRARIES` (`single` for `Refuse`, `multiple` for `Allow`), returning
    /// `default` when it is unset or empty.
    pub fn from_env(default: Self) -> Result<Self, OpenError> {
        match std::env::var(GO_LIBRARIES_ENV) {
            Ok(value) if !value.is_empty() => value.parse(),
            Ok(_) | Err(std::env::VarError::NotPresent) => Ok(default),
            Err(std::env::VarError::NotUnicode(value)) => Err(OpenError::InvalidPolicy {
                value: value.to_string_lossy().into_owned(),
            }),
        }
    }
}

impl FromStr for SecondRuntimePolicy {
    type Err = OpenError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "single" => Ok(Self::Refuse),
            "multiple" => Ok(Self::Allow),
            other => Err(OpenError::InvalidPolicy {
                value: other.to_owned(),
            }),
        }
    }
}

/// The host's statement that the `envoyGo*` callbacks a plugin may import are in place.
///
/// `dlopen` with `RTLD_NOW` needs every imported callback resolved. A Go library's constructor
/// also starts the Go runtime on a new thread during `dlopen`, and the plugin's package
/// initialisers call `envoyGoFilterLogLevel` and `envoyGoFilterLog` there, possibly before
/// `dlopen` returns. So `GoPluginLibrary::open` requires this value, which only the unsafe
/// `assume_installed` makes.
#[derive(Clone, Copy, Debug)]
pub struct HostCallbacks {
    names: &'static [&'static str],
}

impl HostCallbacks {
    /// Declares that the host defines the callbacks in `names`.
    ///
    /// `open` rejects, before `dlopen`, a library that imports an `envoyGo*` symbol missing
    /// from `names`, naming each missing one.
    ///
    /// # Safety
    ///
    /// For as long as the returned value or a copy of it is used:
    /// - each name in `names` is an `extern "C"` function of the host with the signature that
    ///   Envoy's golang filter gives it. It is visible in the process's global symbol scope
    ///   (the executable's dynamic symbol table, or a library opened with `RTLD_GLOBAL`), so a
    ///   library opened with `RTLD_LOCAL` binds to it;
    /// - no other definition of those names comes first in that scope (an Envoy build that
    ///   contains the golang filter defines the same names);
    /// - `envoyGoFilterLog` and `envoyGoFilterLogLevel` may be called from any thread from
    ///   the moment `open` calls `dlopen`, since the Go runtime calls them while it starts and
    ///   then from a goroutine every second;
    /// - the caller trusts every library it passes to `open`, because `dlopen` runs the
    ///   library's initialisers, foreign code that Rust cannot check.
    pub unsafe fn assume_installed(names: &'static [&'static str]) -> Self {
        Self { names }
    }

    /// Returns the declared callback names.
    pub fn names(&self) -> &'static [&'static str] {
        self.names
    }
}

/// An open Go filter plugin library. It is never unloaded.
#[derive(Debug)]
pub struct GoPluginLibrary {
    path: PathBuf,
    sha256: String,
    info: ElfInfo,
    exports: GoExports,
}

/// Libraries opened in this process, in the order they were opened. Entries are never
/// removed, because a Go library can never be unloaded.
static OPEN_LIBRARIES: Mutex<Vec<Arc<GoPluginLibrary>>> = Mutex::new(Vec::new());

impl GoPluginLibrary {
    /// Checks and opens the plugin library at `path`, or returns the already open library
    /// with the same SHA-256.
    ///
    /// The file is read and hashed, checked with `check_go_plugin`, checked against the
    /// callbacks in `callbacks`, and only then opened with `RTLD_NOW | RTLD_LOCAL`, so a
    /// missing symbol fails here with the dynamic linker's message rather than later at a
    /// call. `policy` decides whether a library with a new digest may join one already open.
    ///
    /// The file must not change while it is opened. Cache paths from `fetch` never do.
    pub fn open(
        path: &Path,
        callbacks: &HostCallbacks,
        policy: SecondRuntimePolicy,
    ) -> Result<Arc<Self>, LoadError> {
        let bytes = std::fs::read(path).map_err(|error| ElfError::Read {
            path: path.to_owned(),
            error,
        })?;
        let sha256 = sha256_hex(&bytes);

        // The lock is held across dlopen so that two threads opening the same bytes cannot
        // both start a Go runtime.
        let mut open_libraries = lock_open_libraries();
        if let Some(library) = open_libraries
            .iter()
            .find(|library| library.sha256 == sha256)
        {
            return Ok(Arc::clone(library));
        }

        let info = check_go_plugin_bytes(path, &bytes)?;
        drop(bytes);
        check_host_callbacks(path, &info, callbacks)?;

        if policy == SecondRuntimePolicy::Refuse && !open_libraries.is_empty() {
            return Err(OpenError::SecondRuntimeRefused {
                loaded: open_libraries
                    .iter()
                    .map(|library| library.sha256.clone())
                    .collect(),
                requested: sha256,
                path: path.to_owned(),
            }
            .into());
        }

        let exports = open_and_resolve(path)?;
        let library = Arc::new(Self {
            path: path.to_owned(),
            sha256,
            info,
            exports,
        });
        info!(
            path = %library.path.display(),
            sha256 = %library.sha256,
            open_libraries = open_libraries.len() + 1,
            "opened Go plugin library"
        );
        open_libraries.push(Arc::clone(&library));
        Ok(library)
    }

    /// Returns the resolved exports.
    pub fn exports(&self) -> &GoExports {
        &self.exports
    }

    /// Returns the SHA-256 of the library's bytes, the registry key.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Returns the path the library was first opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Returns what the ELF check found, including the host callbacks the library imports.
    pub fn elf_info(&self) -> &ElfInfo {
        &self.info
    }
}

/// Returns the registry. A panic while it was held cannot leave it inconsistent, because each
/// change is a single push, so a poisoned lock is used as it is.
fn lock_open_libraries() -> MutexGuard<'static, Vec<Arc<GoPluginLibrary>>> {
    OPEN_LIBRARIES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn check_host_callbacks(
    path: &Path,
    info: &ElfInfo,
    callbacks: &HostCallbacks,
) -> Result<(), OpenError> {
    let missing: Vec<String> = info
        .host_imports
        .iter()
        .filter(|import| !callbacks.names.contains(&import.as_str()))
        .cloned()
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(OpenError::MissingHostCallbacks {
            path: path.to_owned(),
            missing,
        })
    }
}

/// Opens the library and resolves its exports. The library handle is leaked on success.
fn open_and_resolve(path: &Path) -> Result<GoExports, OpenError> {
    // SAFETY: the caller of `open` has a `HostCallbacks`, whose contract states that the
    // callbacks the initialisers call are defined and thread-safe, and that the library is
    // trusted. `check_host_callbacks` confirmed that every envoyGo* import is among them.
    let library = unsafe { Library::open(Some(path), RTLD_NOW | RTLD_LOCAL) }.map_err(|error| {
        OpenError::DlOpen {
            path: path.to_owned(),
            message: error.to_string(),
        }
    })?;

    let resolve_error = |symbol: &'static str, error: libloading::Error| OpenError::MissingSymbol {
        path: path.to_owned(),
        symbol,
        message: error.to_string(),
    };
    macro_rules! resolve {
        ($name:literal, $type:ty) => {{
            // SAFETY: the ELF check found this name as a defined function symbol, and `$type`
            // is its C signature in the golang filter ABI. The copied pointer outlives the
            // `Symbol` borrow safely, because the library is never unloaded.
            let symbol = unsafe { library.get::<$type>(concat!($name, "\0").as_bytes()) };
            *symbol.map_err(|error| resolve_error($name, error))?
        }};
    }

    let exports = GoExports {
        new_http_plugin_config: resolve!("envoyGoFilterNewHttpPluginConfig", NewHttpPluginConfigFn),
        merge_http_plugin_config: resolve!(
            "envoyGoFilterMergeHttpPluginConfig",
            MergeHttpPluginConfigFn
        ),
        destroy_http_plugin_config: resolve!(
            "envoyGoFilterDestroyHttpPluginConfig",
            DestroyHttpPluginConfigFn
        ),
        on_http_header: resolve!("envoyGoFilterOnHttpHeader", OnHttpHeaderFn),
        on_http_data: resolve!("envoyGoFilterOnHttpData", OnHttpDataFn),
        on_http_log: resolve!("envoyGoFilterOnHttpLog", OnHttpLogFn),
        on_http_stream_complete: resolve!(
            "envoyGoFilterOnHttpStreamComplete",
            OnHttpStreamCompleteFn
        ),
        on_http_destroy: resolve!("envoyGoFilterOnHttpDestroy", OnHttpDestroyFn),
        request_sema_dec: resolve!("envoyGoRequestSemaDec", RequestSemaDecFn),
        clean_up: resolve!("envoyGoFilterCleanUp", CleanUpFn),
    };

    // A Go c-shared library can never be unloaded: its runtime keeps threads, signal handlers
    // and timers that point into its code, and Go marks the library NODELETE. Dropping
    // `Library` would call dlclose, which at best does nothing, so the handle is leaked and
    // the function pointers above stay valid for the life of the process.
    std::mem::forget(library);
    Ok(exports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_parses_setting_values() {
        assert_eq!(
            "single".parse::<SecondRuntimePolicy>().ok(),
            Some(SecondRuntimePolicy::Refuse)
        );
        assert_eq!(
            "multiple".parse::<SecondRuntimePolicy>().ok(),
            Some(SecondRuntimePolicy::Allow)
        );
    }

    #[test]
    fn policy_rejects_unknown_value() {
        let result = "Multiple".parse::<SecondRuntimePolicy>();
        assert!(
            matches!(result, Err(OpenError::InvalidPolicy { .. })),
            "{result:?}"
        );
    }
}
