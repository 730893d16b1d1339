//! Checks and opens a real Go filter plugin, built with `go build -buildmode=c-shared`, whose
//! path is in `EDGEFN_TEST_PLUGIN`.
//!
//! This binary defines every host callback that a plugin built with Envoy's Go SDK imports, so
//! `dlopen` with `RTLD_NOW` can resolve them. Only the two log callbacks do anything: the
//! plugin's package initialisers call them during `dlopen`. The others are never called here.

use std::ffi::{c_int, c_void};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use edgefn_loader::{
    check_go_plugin, GoPluginLibrary, HostCallbacks, SecondRuntimePolicy, REQUIRED_EXPORTS,
};

/// `CAPIInternalFailure`: a status the Go SDK turns into an error, never into a panic.
const CAPI_INTERNAL_FAILURE: c_int = -7;

/// Polls of the callback counter, `INIT_POLL_INTERVAL` apart, before giving up (10 s).
const MAX_INIT_POLLS: u32 = 200;
const INIT_POLL_INTERVAL: Duration = Duration::from_millis(50);

static LOG_LEVEL_CALLS: AtomicUsize = AtomicUsize::new(0);
static LOG_CALLS: AtomicUsize = AtomicUsize::new(0);

/// Host callback: returns the log level (2, info).
#[no_mangle]
#[allow(non_snake_case, reason = "the golang filter ABI fixes this name")]
pub extern "C" fn envoyGoFilterLogLevel() -> u32 {
    LOG_LEVEL_CALLS.fetch_add(1, Ordering::SeqCst);
    2
}

/// Host callback: counts log messages without reading them.
#[no_mangle]
#[allow(non_snake_case, reason = "the golang filter ABI fixes this name")]
pub extern "C" fn envoyGoFilterLog(_level: u32, _message: *const c_void, _length: c_int) {
    LOG_CALLS.fetch_add(1, Ordering::SeqCst);
}

/// Host callback: Go's finalizer of a request. Nothing to free here.
#[no_mangle]
#[allow(non_snake_case, reason = "the golang filter ABI fixes this name")]
pub extern "C" fn envoyGoFilterHttpFinalize(_request: *mut c_void, _reason: c_int) {}

/// Host callback: Go's finalizer of a configuration. Nothing to free here.
#[no_mangle]
#[allow(non_snake_case, reason = "the golang filter ABI fixes this name")]
pub extern "C" fn envoyGoConfigHttpFinalize(_config: *mut c_void) {}

/// Defines host callbacks that return `CAPI_INTERNAL_FAILURE` and lists every callback this
/// binary defines in `HOST_CALLBACK_NAMES`.
macro_rules! failing_callbacks {
    ($($name:ident($($argument:ident: $type:ty),*);)*) => {
        $(
            #[no_mangle]
            #[allow(non_snake_case, reason = "the golang filter ABI fixes this name")]
            pub extern "C" fn $name($($argument: $type),*) -> c_int {
                CAPI_INTERNAL_FAILURE
            }
        )*

        const HOST_CALLBACK_NAMES: &[&str] = &[
            "envoyGoFilterLogLevel",
            "envoyGoFilterLog",
            "envoyGoFilterHttpFinalize",
            "envoyGoConfigHttpFinalize",
            $(stringify!($name)),*
        ];
    };
}

failing_callbacks! {
    envoyGoFilterHttpContinue(_s: *mut c_void, _status: c_int);
    envoyGoFilterHttpSendLocalReply(
        _s: *mut c_void, _code: c_int, _body: *mut c_void, _body_len: c_int,
        _headers: *mut c_void, _headers_num: c_int, _grpc_status: i64,
        _details: *mut c_void, _details_len: c_int
    );
    envoyGoFilterHttpSendPanicReply(_s: *mut c_void, _details: *mut c_void, _len: c_int);
    envoyGoFilterHttpGetHeader(
        _s: *mut c_void, _key: *mut c_void, _key_len: c_int, _value: *mut u64,
        _value_len: *mut c_int
    );
    envoyGoFilterHttpCopyHeaders(_s: *mut c_void, _strs: *mut c_void, _buf: *mut c_void);
    envoyGoFilterHttpSetHeaderHelper(
        _s: *mut c_void, _key: *mut c_void, _key_len: c_int, _value: *mut c_void,
        _value_len: c_int, _action: c_int
    );
    envoyGoFilterHttpRemoveHeader(_s: *mut c_void, _key: *mut c_void, _key_len: c_int);
    envoyGoFilterHttpGetBuffer(_s: *mut c_void, _buffer: u64, _out: *mut c_void);
    envoyGoFilterHttpDrainBuffer(_s: *mut c_void, _buffer: u64, _length: u64);
    envoyGoFilterHttpSetBufferHelper(
        _s: *mut c_void, _buffer: u64, _data: *mut c_void, _len: c_int, _action: c_int
    );
    envoyGoFilterHttpCopyTrailers(_s: *mut c_void, _strs: *mut c_void, _buf: *mut c_void);
    envoyGoFilterHttpSetTrailer(
        _s: *mut c_void, _key: *mut c_void, _key_len: c_int, _value: *mut c_void,
        _value_len: c_int, _action: c_int
    );
    envoyGoFilterHttpRemoveTrailer(_s: *mut c_void, _key: *mut c_void, _key_len: c_int);
    envoyGoFilterHttpClearRouteCache(_r: *mut c_void, _refresh: bool);
    envoyGoFilterHttpGetStringValue(
        _r: *mut c_void, _id: c_int, _data: *mut u64, _len: *mut c_int
    );
    envoyGoFilterHttpGetIntegerValue(_r: *mut c_void, _id: c_int, _value: *mut u64);
    envoyGoFilterHttpGetDynamicMetadata(
        _r: *mut c_void, _name: *mut c_void, _name_len: c_int, _data: *mut u64,
        _len: *mut c_int
    );
    envoyGoFilterHttpSetDynamicMetadata(
        _r: *mut c_void, _name: *mut c_void, _name_len: c_int, _key: *mut c_void,
        _key_len: c_int, _buf: *mut c_void, _buf_len: c_int
    );
    envoyGoFilterHttpSetStringFilterState(
        _r: *mut c_void, _key: *mut c_void, _key_len: c_int, _value: *mut c_void,
        _value_len: c_int, _state_type: c_int, _life_span: c_int, _stream_sharing: c_int
    );
    envoyGoFilterHttpGetStringFilterState(
        _r: *mut c_void, _key: *mut c_void, _key_len: c_int, _data: *mut u64,
        _len: *mut c_int
    );
    envoyGoFilterHttpGetStringProperty(
        _r: *mut c_void, _key: *mut c_void, _key_len: c_int, _data: *mut u64,
        _len: *mut c_int, _rc: *mut c_int
    );
    envoyGoFilterHttpDefineMetric(
        _c: *mut c_void, _metric_type: u32, _name: *mut c_void, _name_len: c_int,
        _id: *mut u32
    );
    envoyGoFilterHttpIncrementMetric(_c: *mut c_void, _id: u32, _offset: i64);
    envoyGoFilterHttpGetMetric(_c: *mut c_void, _id: u32, _value: *mut u64);
    envoyGoFilterHttpRecordMetric(_c: *mut c_void, _id: u32, _value: u64);
    envoyGoFilterHttpAddData(
        _s: *mut c_void, _data: *mut c_void, _len: c_int, _is_streaming: bool
    );
    envoyGoFilterHttpInjectData(_s: *mut c_void, _data: *mut c_void, _len: c_int);
    envoyGoFilterHttpSetUpstreamOverrideHost(
        _s: *mut c_void, _host: *mut c_void, _host_len: c_int, _strict: bool
    );
    envoyGoFilterHttpGetStringSecret(
        _r: *mut c_void, _key: *mut c_void, _key_len: c_int, _out: *mut u64,
        _out_len: *mut c_int
    );
    envoyGoFilterHttpSetDrainConnectionUponCompletion(_r: *mut c_void);
}

fn host_callbacks() -> HostCallbacks {
    // SAFETY: this binary defines every name in HOST_CALLBACK_NAMES with the golang filter's
    // signature, and build.rs links it with --export-dynamic so they are in the global scope.
    // The log callbacks only touch atomics, so any thread may call them. The plugin is the
    // project's own test plugin.
    unsafe { HostCallbacks::assume_installed(HOST_CALLBACK_NAMES) }
}

fn plugin_path() -> PathBuf {
    match std::env::var_os("EDGEFN_TEST_PLUGIN") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => panic!(
            "EDGEFN_TEST_PLUGIN is not set: set it to the path of a Go filter plugin built with \
             `go build -buildmode=c-shared` against Envoy's Go SDK"
        ),
    }
}

/// Waits until the plugin's package initialisers have called `envoyGoFilterLogLevel`.
///
/// A Go c-shared library's constructor starts the Go runtime on a new thread and returns, so
/// the initialisers may still be running when `dlopen` returns.
fn wait_for_log_level_call() -> bool {
    for _ in 0..MAX_INIT_POLLS {
        if LOG_LEVEL_CALLS.load(Ordering::SeqCst) > 0 {
            return true;
        }
        std::thread::sleep(INIT_POLL_INTERVAL);
    }
    false
}

#[test]
fn go_plugin_passes_checks() {
    let path = plugin_path();

    let info = check_go_plugin(&path).expect("the Go plugin passes the ELF checks");

    for export in REQUIRED_EXPORTS {
        assert!(
            info.go_exports.iter().any(|name| name == export),
            "{export} is not exported"
        );
    }
    let undefined: Vec<&String> = info
        .host_imports
        .iter()
        .filter(|import| !HOST_CALLBACK_NAMES.contains(&import.as_str()))
        .collect();
    assert!(
        undefined.is_empty(),
        "the plugin imports callbacks this test lacks: {undefined:?}"
    );
    assert!(info
        .host_imports
        .iter()
        .any(|import| import == "envoyGoFilterLogLevel"));
}

#[test]
fn go_plugin_opens_once_and_starts_runtime() {
    let path = plugin_path();
    let copy_dir = std::env::temp_dir().join(format!("edgefn-go-plugin-{}", std::process::id()));
    std::fs::create_dir_all(&copy_dir).expect("create the copy directory");
    let copy = copy_dir.join("copy-of-plugin.so");
    std::fs::copy(&path, &copy).expect("copy the plugin");

    let library = GoPluginLibrary::open(&path, &host_callbacks(), SecondRuntimePolicy::Refuse)
        .expect("the Go plugin opens");
    let level_called = wait_for_log_level_call();
    let again = GoPluginLibrary::open(&copy, &host_callbacks(), SecondRuntimePolicy::Refuse)
        .expect("a copy of the same bytes gives the open library");
    let _ = std::fs::remove_dir_all(&copy_dir);

    assert!(
        level_called,
        "the Go runtime never called envoyGoFilterLogLevel"
    );
    assert!(Arc::ptr_eq(&library, &again));
    assert_eq!(library.path(), path);
}
