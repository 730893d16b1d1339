//! The host side of Envoy's golang filter ABI: the callbacks a Go plugin imports, and the
//! trampoline library that makes them visible to it.
//!
//! A Go plugin built with Envoy's Go SDK is linked with its host callbacks (`envoyGo*`)
//! undefined and expects the process to define them globally. Envoy opens dynamic modules
//! with `RTLD_LOCAL`, so edgefn's symbols stay invisible to libraries it opens later. edgefn
//! therefore embeds a small C library (built from `csrc/gohost.c`) that exports only those
//! names, opens it with `RTLD_GLOBAL` from an in-memory file, and registers the Rust
//! implementations in its function table before the first plugin is opened.

pub mod callbacks;
pub mod types;

use std::ffi::{c_void, CStr};
use std::sync::OnceLock;

use thiserror::Error;

/// The compiled trampoline library.
static TRAMPOLINE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/libedgefn_gohost.so"));

/// A symbol that every Go plugin imports; if it already resolves before edgefn installs its
/// trampoline, another golang filter host (an envoy-contrib build) owns these names.
const PROBE_SYMBOL: &CStr = c"envoyGoFilterHttpContinue";

/// Failure to make the Go host callbacks visible.
#[derive(Debug, Error, Clone)]
pub enum HostSymbolsError {
    #[error(
        "this Envoy binary already defines the golang filter callbacks (it is an envoy-contrib \
         build), so Go plugins would call Envoy's own golang filter instead of edgefn; run \
         edgefn on a stock Envoy build"
    )]
    ContribEnvoy,
    #[error("failed to create the in-memory file for the callback library: {0}")]
    MemoryFile(String),
    #[error("failed to load the callback library with RTLD_GLOBAL: {0}")]
    Dlopen(String),
    #[error("the callback library has no edgefn_gohost_register export")]
    MissingRegister,
}

/// Installs the trampoline once per process; later calls return the first result.
///
/// Must run before any Go plugin is opened, because the plugin's package initialisers call
/// `envoyGoFilterLogLevel` and `envoyGoFilterLog` from inside `dlopen`.
pub fn install_host_symbols() -> Result<(), HostSymbolsError> {
    static INSTALLED: OnceLock<Result<(), HostSymbolsError>> = OnceLock::new();
    INSTALLED.get_or_init(install_once).clone()
}

fn install_once() -> Result<(), HostSymbolsError> {
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name only reads the symbol tables.
    let existing = unsafe { libc::dlsym(libc::RTLD_DEFAULT, PROBE_SYMBOL.as_ptr()) };
    if !existing.is_null() {
        return Err(HostSymbolsError::ContribEnvoy);
    }

    let handle = open_trampoline()?;

    // SAFETY: `handle` is a live library handle and the name is NUL-terminated.
    let register = unsafe { libc::dlsym(handle, c"edgefn_gohost_register".as_ptr()) };
    if register.is_null() {
        return Err(HostSymbolsError::MissingRegister);
    }
    // SAFETY: the C side declares `void edgefn_gohost_register(const edgefn_gohost_table*)`.
    let register: extern "C" fn(*const callbacks::CallbackTable) =
        unsafe { std::mem::transmute::<*mut c_void, _>(register) };
    register(&callbacks::CALLBACK_TABLE);
    tracing::debug!("golang filter callbacks installed");
    Ok(())
}

/// Writes the embedded library to a memfd and opens it from `/proc/self/fd`.
fn open_trampoline() -> Result<*mut c_void, HostSymbolsError> {
    // SAFETY: memfd_create with a NUL-terminated name and valid flags.
    let fd = unsafe { libc::memfd_create(c"edgefn-gohost".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(HostSymbolsError::MemoryFile(
            std::io::Error::last_os_error().to_string(),
        ));
    }

    let mut written = 0;
    while written < TRAMPOLINE.len() {
        let rest = &TRAMPOLINE[written..];
        // SAFETY: `rest` is a valid readable slice; `fd` is open.
        let n = unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) };
        if n <= 0 {
            let error = std::io::Error::last_os_error().to_string();
            // SAFETY: `fd` is open and closed once.
            unsafe { libc::close(fd) };
            return Err(HostSymbolsError::MemoryFile(error));
        }
        written += n as usize;
    }

    let path = std::ffi::CString::new(format!("/proc/self/fd/{fd}"))
        .expect("a formatted path has no NUL byte");
    // SAFETY: `path` names a complete shared object; RTLD_NOW | RTLD_GLOBAL exports its
    // symbols to libraries opened later. The mapping stays valid after `fd` is closed.
    let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
    let error = if handle.is_null() {
        Some(dlerror_text())
    } else {
        None
    };
    // SAFETY: `fd` is open and closed once; dlopen keeps its own mapping.
    unsafe { libc::close(fd) };
    match error {
        Some(message) => Err(HostSymbolsError::Dlopen(message)),
        None => Ok(handle),
    }
}

fn dlerror_text() -> String {
    // SAFETY: dlerror returns NULL or a NUL-terminated string owned by libc.
    let message = unsafe { libc::dlerror() };
    if message.is_null() {
        return "unknown dlopen error".to_owned();
    }
    // SAFETY: non-null result of dlerror, valid until the next dl* call on this thread.
    unsafe { CStr::from_ptr(message) }
        .to_string_lossy()
        .into_owned()
}

/// Names of the 34 callbacks edgefn defines; a plugin importing another `envoyGo*` name needs
/// a newer host.
pub const PROVIDED_CALLBACKS: [&str; 34] = [
    "envoyGoFilterHttpContinue",
    "envoyGoFilterHttpSendLocalReply",
    "envoyGoFilterHttpSendPanicReply",
    "envoyGoFilterHttpGetHeader",
    "envoyGoFilterHttpCopyHeaders",
    "envoyGoFilterHttpSetHeaderHelper",
    "envoyGoFilterHttpRemoveHeader",
    "envoyGoFilterHttpGetBuffer",
    "envoyGoFilterHttpDrainBuffer",
    "envoyGoFilterHttpSetBufferHelper",
    "envoyGoFilterHttpCopyTrailers",
    "envoyGoFilterHttpSetTrailer",
    "envoyGoFilterHttpRemoveTrailer",
    "envoyGoFilterHttpClearRouteCache",
    "envoyGoFilterHttpGetStringValue",
    "envoyGoFilterHttpGetIntegerValue",
    "envoyGoFilterHttpGetDynamicMetadata",
    "envoyGoFilterHttpSetDynamicMetadata",
    "envoyGoFilterHttpSetStringFilterState",
    "envoyGoFilterHttpGetStringFilterState",
    "envoyGoFilterHttpGetStringProperty",
    "envoyGoFilterHttpFinalize",
    "envoyGoConfigHttpFinalize",
    "envoyGoFilterHttpDefineMetric",
    "envoyGoFilterHttpIncrementMetric",
    "envoyGoFilterHttpGetMetric",
    "envoyGoFilterHttpRecordMetric",
    "envoyGoFilterLog",
    "envoyGoFilterLogLevel",
    "envoyGoFilterHttpAddData",
    "envoyGoFilterHttpInjectData",
    "envoyGoFilterHttpSetUpstreamOverrideHost",
    "envoyGoFilterHttpGetStringSecret",
    "envoyGoFilterHttpSetDrainConnectionUponCompletion",
];
