//! The event hooks Envoy calls (`envoy_dynamic_module_on_*`). Each one catches Rust panics, so
//! a bug in edgefn becomes a logged error and a 500 for that request (or a refused config),
//! never an abort of Envoy.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashSet;
use std::ffi::{c_char, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::abi::{headers_status, EnvoyBuffer, HttpHeader};
use crate::config::{self, ModuleConfig};
use crate::envoy::{byte_slice, EnvoyStream};
use crate::shared::{DECODE, ENCODE};
use crate::stream::Stream;
use crate::wasm::WasmStream;

/// Panics caught in edgefn's own code since the module was loaded.
pub static RUST_PANICS: AtomicU64 = AtomicU64::new(0);
/// Panic replies Go plugins asked for since the module was loaded.
pub static GO_PANICS: AtomicU64 = AtomicU64::new(0);

/// Logs a caught panic with the hook name and the running total.
pub fn report_panic(hook: &str, payload: &(dyn Any + Send)) {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned());
    let total = RUST_PANICS.fetch_add(1, Ordering::Relaxed) + 1;
    tracing::error!(hook, total, "edgefn panicked: {message}");
}

/// Test-only fault injection: `EDGEFN_TEST_PANIC_IN=<hook name>` makes that hook panic, so the
/// tests can prove a panic never takes Envoy down.
fn maybe_test_panic(hook: &str) {
    static TARGET: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let target = TARGET.get_or_init(|| std::env::var("EDGEFN_TEST_PANIC_IN").ok());
    if target.as_deref() == Some(hook) {
        panic!("test panic requested in {hook}");
    }
}

thread_local! {
    /// Streams created on this worker and not destroyed yet. Every stream hook runs on the
    /// stream's worker, so a pointer Envoy passes that is not in this set (already destroyed,
    /// or never created) is ignored instead of being used after free.
    static LIVE_STREAMS: RefCell<HashSet<usize>> = RefCell::new(HashSet::new());
    /// Streams created on this worker while their filter's revision was not loaded, which get
    /// a 503, and not destroyed yet: [`NotLoadedStream`] pointers.
    static NOT_LOADED_STREAMS: RefCell<HashSet<usize>> = RefCell::new(HashSet::new());
    /// Streams of wasm revisions created on this worker and not destroyed yet:
    /// [`WasmStream`] pointers.
    static WASM_STREAMS: RefCell<HashSet<usize>> = RefCell::new(HashSet::new());
}

/// Module pointer of a stream that started while no revision was loaded and passes through
/// untouched (`failOpen: true`). It is never dereferenced, and no other hook acts on it.
static PASS_THROUGH_STREAM: u8 = 1;

/// The module state of a stream that started while no revision was loaded and gets a 503.
struct NotLoadedStream {
    /// Envoy's response code details for the 503, which name the revision when it is known.
    details: String,
}

/// Status and body of the reply to a request that arrives while no revision is loaded.
const NO_REVISION_STATUS: u32 = 503;
const NO_REVISION_BODY: &[u8] = b"edgefn: no edge function revision is loaded yet\n";

fn marker(stream: &'static u8) -> *const c_void {
    stream as *const u8 as *const c_void
}

/// Borrows the stream behind a module pointer if it is live on this thread.
fn stream_ref<'a>(module: *const c_void) -> Option<&'a Stream> {
    let live = LIVE_STREAMS.with(|set| set.borrow().contains(&(module as usize)));
    // SAFETY: a live pointer came from `Box::into_raw` in `on_http_filter_new` and is freed
    // only after it leaves the set in `on_http_filter_destroy`.
    live.then(|| unsafe { &*(module as *const Stream) })
}

/// Borrows the wasm stream behind a module pointer if it is live on this thread.
fn wasm_stream_ref<'a>(module: *const c_void) -> Option<&'a WasmStream> {
    let live = WASM_STREAMS.with(|set| set.borrow().contains(&(module as usize)));
    // SAFETY: a pointer in the set came from `Box::into_raw` in `on_http_filter_new` and is
    // freed only after it leaves the set in `on_http_filter_destroy`, on this same thread.
    live.then(|| unsafe { &*(module as *const WasmStream) })
}

/// Runs a hook on whichever stream `module` is, Go or wasm; a panic fails the stream with a
/// 500 and returns `on_panic`.
fn any_stream_hook(
    module: *const c_void,
    hook: &str,
    on_panic: u32,
    go: impl FnOnce(&Stream) -> u32,
    wasm: impl FnOnce(&WasmStream) -> u32,
) -> u32 {
    let Some(stream) = wasm_stream_ref(module) else {
        return stream_hook(module, hook, on_panic, go);
    };
    match catch_unwind(AssertUnwindSafe(|| {
        maybe_test_panic(hook);
        wasm(stream)
    })) {
        Ok(status) => status,
        Err(payload) => {
            report_panic(hook, payload.as_ref());
            let _ = catch_unwind(AssertUnwindSafe(|| stream.fail("edgefn_internal_error")));
            on_panic
        }
    }
}

/// Runs a stream hook; a panic fails the stream with a 500 and returns `on_panic`.
fn stream_hook(
    module: *const c_void,
    hook: &str,
    on_panic: u32,
    body: impl FnOnce(&Stream) -> u32,
) -> u32 {
    let Some(stream) = stream_ref(module) else {
        return 0;
    };
    match catch_unwind(AssertUnwindSafe(|| {
        maybe_test_panic(hook);
        body(stream)
    })) {
        Ok(status) => status,
        Err(payload) => {
            report_panic(hook, payload.as_ref());
            let _ = catch_unwind(AssertUnwindSafe(|| stream.fail("edgefn_internal_error")));
            on_panic
        }
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    crate::logging::install();
    crate::abi::ABI_VERSION.as_ptr()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    _config_envoy: *mut c_void,
    name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> *const c_void {
    let result = catch_unwind(|| {
        maybe_test_panic("config_new");
        // SAFETY: Envoy's buffers are valid for the duration of this call.
        let (name, config) = unsafe {
            (
                byte_slice(name.ptr, name.length),
                byte_slice(config.ptr, config.length),
            )
        };
        // Envoy returns the worker count only on its main thread, where config_new runs. A
        // followed revision, loaded later on another thread, reuses this value.
        let concurrency = crate::envoy::concurrency().max(1);
        config::create_module(config, concurrency)
            .map_err(|error| (String::from_utf8_lossy(name).into_owned(), error))
    });
    match result {
        Ok(Ok(config)) => Box::into_raw(Box::new(config)) as *const c_void,
        Ok(Err((filter, error))) => {
            tracing::error!(filter_name = %filter, "edgefn refused the filter config: {error}");
            std::ptr::null()
        }
        Err(payload) => {
            report_panic("config_new", payload.as_ref());
            std::ptr::null()
        }
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(config: *const c_void) {
    let result = catch_unwind(|| {
        if !config.is_null() {
            // SAFETY: `config` came from `Box::into_raw` in config_new and is destroyed once.
            drop(unsafe { Box::from_raw(config as *mut ModuleConfig) });
        }
    });
    if let Err(payload) = result {
        report_panic("config_destroy", payload.as_ref());
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: *const c_void,
    filter_envoy: *mut c_void,
) -> *const c_void {
    let result = catch_unwind(|| {
        maybe_test_panic("filter_new");
        // SAFETY: `config` is the live pointer from config_new. Envoy destroys it only after
        // every stream of it, and the stream takes its own reference to the plugin config.
        let module_config = unsafe { &*(config as *const ModuleConfig) };
        if let ModuleConfig::Wasm(revision) = module_config {
            let stream = WasmStream::new(EnvoyStream::new(filter_envoy), revision);
            let stream = Box::into_raw(Box::new(stream));
            WASM_STREAMS.with(|set| set.borrow_mut().insert(stream as usize));
            return stream as *const c_void;
        }
        let Some(config) = module_config.current() else {
            if module_config.fail_open() {
                return marker(&PASS_THROUGH_STREAM);
            }
            let stream = Box::into_raw(Box::new(NotLoadedStream {
                details: module_config.not_loaded_details(),
            }));
            NOT_LOADED_STREAMS.with(|set| set.borrow_mut().insert(stream as usize));
            return stream as *const c_void;
        };
        let stream = Stream::new(EnvoyStream::new(filter_envoy), config);
        let stream = Box::into_raw(Box::new(stream));
        LIVE_STREAMS.with(|set| set.borrow_mut().insert(stream as usize));
        stream as *const c_void
    });
    match result {
        Ok(stream) => stream,
        Err(payload) => {
            report_panic("filter_new", payload.as_ref());
            // NULL would still reach the stream hooks, which tolerate it.
            std::ptr::null()
        }
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_destroy(module: *const c_void) {
    if module.is_null() || module == marker(&PASS_THROUGH_STREAM) {
        return;
    }
    let result = catch_unwind(|| {
        let was_not_loaded =
            NOT_LOADED_STREAMS.with(|set| set.borrow_mut().remove(&(module as usize)));
        if was_not_loaded {
            // SAFETY: the pointer was in the set, so it came from `Box::into_raw` in
            // filter_new, and removing it from the set above makes this the only free.
            drop(unsafe { Box::from_raw(module as *mut NotLoadedStream) });
            return;
        }
        let was_wasm = WASM_STREAMS.with(|set| set.borrow_mut().remove(&(module as usize)));
        if was_wasm {
            // SAFETY: the pointer was in the set, so it came from `Box::into_raw` in
            // filter_new, and removing it from the set above makes this the only free.
            let stream = unsafe { Box::from_raw(module as *mut WasmStream) };
            stream.destroy();
            return;
        }
        let was_live = LIVE_STREAMS.with(|set| set.borrow_mut().remove(&(module as usize)));
        if !was_live {
            tracing::warn!("destroy called for a stream that is not live; ignored");
            return;
        }
        // SAFETY: the pointer was live, so it came from `Box::into_raw` in filter_new, and
        // removing it from the set above makes this the only free.
        let stream = unsafe { Box::from_raw(module as *mut Stream) };
        maybe_test_panic("destroy");
        stream.destroy();
    });
    if let Err(payload) = result {
        report_panic("destroy", payload.as_ref());
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    filter: *mut c_void,
    module: *const c_void,
    end_stream: bool,
) -> u32 {
    if let Some(details) = not_loaded_details(module) {
        return reply_no_revision(filter, &details);
    }
    any_stream_hook(
        module,
        "request_headers",
        1,
        |s| s.on_headers(DECODE, end_stream),
        |s| s.on_request_headers(end_stream),
    )
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    _filter: *mut c_void,
    module: *const c_void,
    end_stream: bool,
) -> u32 {
    any_stream_hook(
        module,
        "request_body",
        3,
        |s| s.on_data(DECODE, end_stream),
        |s| s.on_request_body(end_stream),
    )
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    _filter: *mut c_void,
    module: *const c_void,
) -> u32 {
    any_stream_hook(
        module,
        "request_trailers",
        1,
        |s| s.on_trailers(DECODE),
        |s| s.on_request_trailers(),
    )
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    _filter: *mut c_void,
    module: *const c_void,
    end_stream: bool,
) -> u32 {
    any_stream_hook(
        module,
        "response_headers",
        1,
        |s| s.on_headers(ENCODE, end_stream),
        |s| s.on_response_headers(end_stream),
    )
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    _filter: *mut c_void,
    module: *const c_void,
    end_stream: bool,
) -> u32 {
    any_stream_hook(
        module,
        "response_body",
        3,
        |s| s.on_data(ENCODE, end_stream),
        |s| s.on_response_body(end_stream),
    )
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    _filter: *mut c_void,
    module: *const c_void,
) -> u32 {
    any_stream_hook(
        module,
        "response_trailers",
        1,
        |s| s.on_trailers(ENCODE),
        |s| s.on_response_trailers(),
    )
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    _filter: *mut c_void,
    module: *const c_void,
) {
    any_stream_hook(
        module,
        "stream_complete",
        0,
        |s| {
            s.on_stream_complete();
            0
        },
        |s| {
            s.on_stream_complete();
            0
        },
    );
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    _filter: *mut c_void,
    module: *const c_void,
    _event_id: u64,
) {
    any_stream_hook(
        module,
        "scheduled",
        0,
        |s| {
            s.on_scheduled();
            0
        },
        |s| {
            s.on_scheduled();
            0
        },
    );
}

/// Returns the response code details of a stream that gets a 503 because its revision was not
/// loaded when it started, or `None` for any other module pointer.
fn not_loaded_details(module: *const c_void) -> Option<String> {
    let not_loaded = NOT_LOADED_STREAMS.with(|set| set.borrow().contains(&(module as usize)));
    if !not_loaded {
        return None;
    }
    // SAFETY: a pointer in the set came from `Box::into_raw` in `on_http_filter_new` and is
    // freed only after it leaves the set in `on_http_filter_destroy`, on this same thread.
    let stream = unsafe { &*(module as *const NotLoadedStream) };
    Some(stream.details.clone())
}

/// Sends a 503 reply to a request that arrived while no revision was loaded.
fn reply_no_revision(filter: *mut c_void, details: &str) -> u32 {
    let result = catch_unwind(|| {
        let headers = vec![(b"content-type".to_vec(), b"text/plain".to_vec())];
        EnvoyStream::new(filter).send_response(
            NO_REVISION_STATUS,
            &headers,
            NO_REVISION_BODY,
            details.as_bytes(),
        );
    });
    if let Err(payload) = result {
        report_panic("request_headers", payload.as_ref());
    }
    headers_status::STOP_ITERATION
}

// Hooks Envoy requires but edgefn has no use for: HTTP callouts and streams it never starts,
// and downstream watermarks.

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    _filter: *mut c_void,
    _module: *const c_void,
    _callout_id: u64,
    _result: u32,
    _headers: *mut HttpHeader,
    _headers_len: usize,
    _body: *mut EnvoyBuffer,
    _body_len: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _filter: *mut c_void,
    _module: *const c_void,
    _stream_id: u64,
    _headers: *mut HttpHeader,
    _headers_len: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _filter: *mut c_void,
    _module: *const c_void,
    _stream_id: u64,
    _data: *const EnvoyBuffer,
    _data_len: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _filter: *mut c_void,
    _module: *const c_void,
    _stream_id: u64,
    _trailers: *mut HttpHeader,
    _trailers_len: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _filter: *mut c_void,
    _module: *const c_void,
    _stream_id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _filter: *mut c_void,
    _module: *const c_void,
    _stream_id: u64,
    _reason: u32,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _filter: *mut c_void,
    _module: *const c_void,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _filter: *mut c_void,
    _module: *const c_void,
) {
}
