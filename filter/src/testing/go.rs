//! A fake Go plugin: Rust functions with the signatures of the ten exports a Go filter plugin
//! provides (`edgefn_loader::GoExports`), driven by a script of replies per test thread.
//!
//! A reply sets what the export returns and which host callbacks it makes first, on the
//! calling thread ([`Reply::now`]) or later from a spawned thread that imitates a goroutine
//! ([`Reply::later`], started by [`run_goroutine`]). Callbacks go through
//! `crate::gohost::callbacks::CALLBACK_TABLE`, the table the C trampoline forwards to (see
//! `host`).
//!
//! The fake copies the Go SDK where the host depends on it: headers are read through
//! CopyHeaders into buffers sized from the counts passed to OnHttpHeader, a body chunk through
//! GetBuffer into a buffer of the length Go tracks, and a StopAndBuffer status for headers
//! that end the stream becomes the SDK's panic reply. A host write past those buffers, a call
//! for a request after its OnHttpDestroy, or a changed `processState` pointer is recorded as a
//! violation.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use edgefn_loader::GoExports;

use crate::config::GoFilterConfig;
use crate::envoy::{byte_slice, HeaderList};
use crate::gohost::types::{capi, go_status, FilterState, HttpRequest, ProcessState};

mod host;

use host::{callbacks, copy_like_sdk, read_body, run_acts, send_panic_reply};

/// Plugin name of every fake config.
pub const PLUGIN_NAME: &[u8] = b"fake-plugin";

/// The panic message of Envoy's Go SDK (`envoyGoFilterOnHttpHeader`) when a plugin returns
/// StopAndBuffer or StopAndBufferWatermark from a header call with end_stream. The SDK's
/// RecoverPanic passes it to SendPanicReply.
pub const SDK_BUFFER_PANIC: &str =
    "received wait data status when there is no data, please fix the returned status";

static NEXT_CONFIG_ID: AtomicU64 = AtomicU64::new(1000);
/// Config ids passed to `envoyGoFilterDestroyHttpPluginConfig`, from every test thread.
static DESTROYED_CONFIGS: Mutex<Vec<u64>> = Mutex::new(Vec::new());

thread_local! {
    static GO: RefCell<Option<GoState>> = const { RefCell::new(None) };
}

// === Script ===

/// A host callback the fake makes, with constant arguments.
#[derive(Clone, Debug)]
pub enum Act {
    /// `envoyGoFilterHttpCopyHeaders` with the counts of the current header call.
    CopyHeaders,
    /// `envoyGoFilterHttpCopyTrailers` with the counts of the current trailer call.
    CopyTrailers,
    GetHeader(&'static str),
    SetHeader(&'static str, &'static str),
    AddHeader(&'static str, &'static str),
    RemoveHeader(&'static str),
    SetTrailer(&'static str, &'static str),
    /// `envoyGoFilterHttpGetBuffer` on the current chunk, into a buffer of the tracked length.
    ReadBody,
    /// `envoyGoFilterHttpSetBufferHelper` with the Set action on the current chunk.
    SetBody(&'static [u8]),
    Continue(u64),
    LocalReply {
        status: i32,
        body: &'static str,
        headers: Vec<(&'static str, &'static str)>,
    },
    PanicReply(&'static str),
}

/// The scripted behaviour of one OnHttpHeader or OnHttpData call.
#[derive(Clone, Debug)]
pub struct Reply {
    status: u64,
    now: Vec<Act>,
    later: Vec<Act>,
}

impl Reply {
    /// A reply that returns `status` (a `go_status` value) and makes no callbacks.
    pub fn status(status: u64) -> Self {
        Self {
            status,
            now: Vec::new(),
            later: Vec::new(),
        }
    }

    /// Callbacks made on the calling thread before the export returns.
    pub fn now(mut self, acts: impl IntoIterator<Item = Act>) -> Self {
        self.now.extend(acts);
        self
    }

    /// Callbacks made from a spawned thread once the test calls [`run_goroutine`].
    pub fn later(mut self, acts: impl IntoIterator<Item = Act>) -> Self {
        self.later.extend(acts);
        self
    }
}

/// The phase a header or data export was called for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Headers,
    Data,
    Trailers,
}

/// One OnHttpHeader or OnHttpData call the host made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoCall {
    pub phase: Phase,
    pub encoding: bool,
    pub end_stream: bool,
    pub header_num: u64,
    pub header_bytes: u64,
    /// The chunk read through GetBuffer (data calls only).
    pub data: Vec<u8>,
}

/// The result of one scripted callback.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActResult {
    /// The `CAPIStatus` the host returned.
    pub status: i32,
    /// Headers or trailers read by a copy act.
    pub headers: Option<HeaderList>,
    /// Bytes read by `GetHeader` or `ReadBody`.
    pub bytes: Option<Vec<u8>>,
}

/// An access-log call: the log type and the eight header and trailer counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogCall {
    pub log_type: u64,
    pub counts: [u64; 8],
}

/// Everything the fake observed; shared with goroutine threads.
#[derive(Default, Debug)]
pub struct GoLog {
    pub calls: Vec<GoCall>,
    pub results: Vec<ActResult>,
    /// `(httpRequest address, reason)` per OnHttpDestroy.
    pub destroys: Vec<(usize, u64)>,
    pub stream_completes: usize,
    pub access_logs: Vec<LogCall>,
    pub finalized: Vec<usize>,
    pub violations: Vec<String>,
    /// The first `processState` address seen per (request, encoding); Go caches it.
    states: HashMap<(usize, bool), usize>,
}

/// The call a goroutine continues from: what Go remembers of an export call.
#[derive(Clone, Copy, Debug)]
struct CallContext {
    state: usize,
    header_num: u64,
    header_bytes: u64,
    buffer: u64,
    /// The chunk length Go tracks, updated by SetBody.
    length: u64,
}

struct Goroutine {
    context: CallContext,
    acts: Vec<Act>,
}

#[derive(Default)]
struct GoState {
    replies: VecDeque<Reply>,
    /// Chooses the reply once `replies` is empty. Calls return Continue when it is unset.
    reply_fn: Option<ReplyFn>,
    goroutines: VecDeque<Goroutine>,
    log: Arc<Mutex<GoLog>>,
}

/// Chooses a reply from the phase and end_stream of a call.
pub type ReplyFn = Box<dyn FnMut(Phase, bool) -> Reply>;

/// Installs a fresh fake plugin for the current thread.
pub fn install() {
    GO.with(|cell| *cell.borrow_mut() = Some(GoState::default()));
}

/// Queues replies for the next header and data calls, in call order. A call with no queued
/// reply returns Continue.
pub fn script(replies: impl IntoIterator<Item = Reply>) {
    with_state(|state| state.replies.extend(replies));
}

/// Sets the function that chooses the reply of every call that finds no queued reply.
pub fn script_fn(reply_fn: ReplyFn) {
    with_state(|state| state.reply_fn = Some(reply_fn));
}

/// Counts the goroutines queued and not run yet.
pub fn pending_goroutines() -> usize {
    with_state(|state| state.goroutines.len())
}

/// Returns the log of the current thread's fake.
pub fn log() -> Arc<Mutex<GoLog>> {
    with_state(|state| Arc::clone(&state.log))
}

/// Returns the header and data calls the host made so far.
pub fn calls() -> Vec<GoCall> {
    lock(&log()).calls.clone()
}

/// Returns the calls of one phase the host made so far.
pub fn calls_in(phase: Phase) -> Vec<GoCall> {
    let calls = calls();
    calls
        .into_iter()
        .filter(|call| call.phase == phase)
        .collect()
}

/// Returns every scripted callback result so far, from any thread.
pub fn results() -> Vec<ActResult> {
    lock(&log()).results.clone()
}

/// Returns `(httpRequest address, reason)` of each OnHttpDestroy so far.
pub fn destroys() -> Vec<(usize, u64)> {
    lock(&log()).destroys.clone()
}

/// Extracts the `CAPIStatus` values of some results.
pub fn statuses(results: &[ActResult]) -> Vec<i32> {
    results.iter().map(|result| result.status).collect()
}

/// Runs the oldest queued goroutine on a new thread, waits for it, and returns its results.
pub fn run_goroutine() -> Vec<ActResult> {
    let goroutine = with_state(|state| state.goroutines.pop_front())
        .expect("no goroutine queued: script a Reply with later(...) first");
    let log = log();
    let thread_log = Arc::clone(&log);
    let first = lock(&log).results.len();
    std::thread::spawn(move || {
        let mut context = goroutine.context;
        run_acts(&mut context, &goroutine.acts, &thread_log);
    })
    .join()
    .expect("the goroutine thread panicked");
    let results = lock(&log).results[first..].to_vec();
    results
}

/// Calls `envoyGoFilterHttpFinalize` from a spawned thread for every destroyed request not
/// finalized yet, as Go's garbage collector would; returns how many it finalized.
pub fn finalize_destroyed() -> usize {
    let log = log();
    let pending: Vec<usize> = {
        let log = lock(&log);
        let destroyed = log.destroys.iter().map(|(request, _)| *request);
        destroyed
            .filter(|request| !log.finalized.contains(request))
            .collect()
    };
    let requests = pending.clone();
    std::thread::spawn(move || {
        for request in requests {
            // SAFETY: the request was destroyed and is finalized once, after which the host
            // no longer uses it.
            unsafe { (callbacks().http_finalize)(request as *mut c_void, 0) };
        }
    })
    .join()
    .expect("the finalizer thread panicked");
    lock(&log).finalized.extend(&pending);
    pending.len()
}

/// Counts the `envoyGoFilterDestroyHttpPluginConfig` calls for `config_id`.
pub fn config_destroy_count(config_id: u64) -> usize {
    let destroyed = DESTROYED_CONFIGS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    destroyed.iter().filter(|id| **id == config_id).count()
}

/// Builds a filter config backed by the fake exports, as `config::create` would after Go's
/// NewHttpPluginConfig returned a fresh id.
pub fn fake_config() -> Arc<GoFilterConfig> {
    Arc::new(GoFilterConfig {
        revision: "fake-revision".to_owned(),
        plugin_name: PLUGIN_NAME.into(),
        exports: exports(),
        config_id: NEXT_CONFIG_ID.fetch_add(1, Ordering::Relaxed),
        concurrency: 1,
        plugin_missing: Default::default(),
    })
}

/// Returns the fake's exports.
pub fn exports() -> GoExports {
    GoExports {
        new_http_plugin_config,
        merge_http_plugin_config,
        destroy_http_plugin_config,
        on_http_header,
        on_http_data,
        on_http_log,
        on_http_stream_complete,
        on_http_destroy,
        request_sema_dec,
        clean_up,
    }
}

fn with_state<T>(body: impl FnOnce(&mut GoState) -> T) -> T {
    GO.with(|cell| {
        let mut guard = cell.borrow_mut();
        let state = guard
            .as_mut()
            .expect("no fake Go plugin on this thread: create a Harness first");
        body(state)
    })
}

fn lock(log: &Mutex<GoLog>) -> MutexGuard<'_, GoLog> {
    log.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs an export body. A panic (a bug in the fake) becomes a violation and `fallback`,
/// because unwinding out of an `extern "C"` function aborts the test binary.
fn guarded<T>(fallback: T, body: impl FnOnce(&Mutex<GoLog>) -> T) -> T {
    let log = GO.with(|cell| {
        let guard = cell.try_borrow().ok()?;
        guard.as_ref().map(|state| Arc::clone(&state.log))
    });
    let Some(log) = log else {
        return fallback;
    };
    match catch_unwind(AssertUnwindSafe(|| body(&log))) {
        Ok(value) => value,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            lock(&log)
                .violations
                .push(format!("fake Go panicked: {message}"));
            fallback
        }
    }
}

// === Exports ===

/// The fields Go reads from a `processState` when an export starts.
struct StateView {
    request: usize,
    encoding: bool,
    state: i32,
}

/// Reads a `processState` and checks it against what Go cached for the request.
///
/// # Safety
/// `state` must be NULL or a `processState*` the host handed to Go.
unsafe fn enter(state: *mut c_void, log: &mut GoLog, export: &str) -> Option<StateView> {
    // SAFETY: forwarded from the caller.
    let process = unsafe { (state as *const ProcessState).as_ref() }?;
    let view = StateView {
        request: process.req as usize,
        encoding: process.is_encoding != 0,
        state: process.state.load(Ordering::Acquire),
    };
    if log
        .destroys
        .iter()
        .any(|(request, _)| *request == view.request)
    {
        log.violations
            .push(format!("{export} called for a request after OnHttpDestroy"));
    }
    let cached = *log
        .states
        .entry((view.request, view.encoding))
        .or_insert(state as usize);
    if cached != state as usize {
        log.violations.push(format!(
            "{export} got a different processState for the same direction"
        ));
    }

    // SAFETY: a processState's `req` points at the request the host created with it.
    let request = unsafe { &*(process.req as *const HttpRequest) };
    // SAFETY: the plugin name points at the config's name, alive while the stream is.
    let name = unsafe { byte_slice(request.plugin_name.data, request.plugin_name.len as usize) };
    if name != PLUGIN_NAME || request.config_id == 0 {
        log.violations.push(format!(
            "{export} got a request without the plugin name or config id"
        ));
    }
    Some(view)
}

/// Pops the next reply, runs its `now` acts, applies the SDK's end-of-stream rule, and
/// queues its `later` acts.
fn answer(mut context: CallContext, end_stream: bool, phase: Phase, log: &Mutex<GoLog>) -> u64 {
    let queued = with_state(|state| state.replies.pop_front());
    // The function runs outside the state borrow, so it may use the other functions here.
    let reply = queued.unwrap_or_else(|| {
        let reply_fn = with_state(|state| state.reply_fn.take());
        let Some(mut reply_fn) = reply_fn else {
            return Reply::status(go_status::CONTINUE);
        };
        let reply = reply_fn(phase, end_stream);
        with_state(|state| state.reply_fn = Some(reply_fn));
        reply
    });
    run_acts(&mut context, &reply.now, log);

    let mut status = reply.status;
    let buffering = matches!(
        status,
        go_status::STOP_AND_BUFFER | go_status::STOP_AND_BUFFER_WATERMARK
    );
    if phase != Phase::Data && end_stream && buffering {
        // The SDK panics here, its RecoverPanic sends the panic reply, and the export then
        // returns its zero value, Running.
        let result = send_panic_reply(context.state as *mut c_void, SDK_BUFFER_PANIC);
        lock(log).results.push(ActResult {
            status: result,
            headers: None,
            bytes: None,
        });
        status = go_status::RUNNING;
    }

    if !reply.later.is_empty() {
        with_state(|state| {
            state.goroutines.push_back(Goroutine {
                context,
                acts: reply.later,
            })
        });
    }
    status
}

unsafe extern "C" fn new_http_plugin_config(_config: *mut c_void) -> u64 {
    NEXT_CONFIG_ID.fetch_add(1, Ordering::Relaxed)
}

unsafe extern "C" fn merge_http_plugin_config(_: u64, _: u64, _: u64, _: u64) -> u64 {
    guarded(0, |log| {
        lock(log)
            .violations
            .push("unexpected MergeHttpPluginConfig".to_owned());
        0
    })
}

unsafe extern "C" fn destroy_http_plugin_config(config_id: u64, _need_delay: i64) {
    let mut destroyed = DESTROYED_CONFIGS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    destroyed.push(config_id);
}

unsafe extern "C" fn on_http_header(
    state: *mut c_void,
    end_stream: u64,
    header_num: u64,
    header_bytes: u64,
) -> u64 {
    guarded(go_status::RUNNING, |log| {
        // SAFETY: the host passes a processState it created.
        let view = unsafe { enter(state, &mut lock(log), "OnHttpHeader") };
        let Some(view) = view else {
            lock(log)
                .violations
                .push("OnHttpHeader with a NULL state".to_owned());
            return go_status::RUNNING;
        };
        let phase = match view.state {
            s if s == FilterState::ProcessingTrailer as i32 => Phase::Trailers,
            s if s == FilterState::ProcessingHeader as i32 => Phase::Headers,
            other => {
                let message = format!("OnHttpHeader in state {other}");
                lock(log).violations.push(message);
                return go_status::RUNNING;
            }
        };
        lock(log).calls.push(GoCall {
            phase,
            encoding: view.encoding,
            end_stream: end_stream != 0,
            header_num,
            header_bytes,
            data: Vec::new(),
        });
        let context = CallContext {
            state: state as usize,
            header_num,
            header_bytes,
            buffer: 0,
            length: 0,
        };
        answer(context, end_stream != 0, phase, log)
    })
}

unsafe extern "C" fn on_http_data(
    state: *mut c_void,
    end_stream: u64,
    buffer: u64,
    length: u64,
) -> u64 {
    guarded(go_status::RUNNING, |log| {
        // SAFETY: the host passes a processState it created.
        let view = unsafe { enter(state, &mut lock(log), "OnHttpData") };
        let Some(view) = view else {
            lock(log)
                .violations
                .push("OnHttpData with a NULL state".to_owned());
            return go_status::RUNNING;
        };
        if view.state != FilterState::ProcessingData as i32 {
            let message = format!("OnHttpData in state {}", view.state);
            lock(log).violations.push(message);
        }
        let context = CallContext {
            state: state as usize,
            header_num: 0,
            header_bytes: 0,
            buffer,
            length,
        };
        let data = match read_body(&context) {
            Ok((_, data)) => data,
            Err(violation) => {
                lock(log).violations.push(violation);
                Vec::new()
            }
        };
        lock(log).calls.push(GoCall {
            phase: Phase::Data,
            encoding: view.encoding,
            end_stream: end_stream != 0,
            header_num: 0,
            header_bytes: 0,
            data,
        });
        answer(context, end_stream != 0, Phase::Data, log)
    })
}

unsafe extern "C" fn on_http_log(
    _request: *mut c_void,
    log_type: u64,
    decoding_state: *mut c_void,
    _encoding_state: *mut c_void,
    request_header_num: u64,
    request_header_bytes: u64,
    request_trailer_num: u64,
    request_trailer_bytes: u64,
    response_header_num: u64,
    response_header_bytes: u64,
    response_trailer_num: u64,
    response_trailer_bytes: u64,
) {
    guarded((), |log| {
        let counts = [
            request_header_num,
            request_header_bytes,
            request_trailer_num,
            request_trailer_bytes,
            response_header_num,
            response_header_bytes,
            response_trailer_num,
            response_trailer_bytes,
        ];
        lock(log).access_logs.push(LogCall { log_type, counts });

        // An access logger reads the request headers with the counts of this call.
        let context = CallContext {
            state: decoding_state as usize,
            header_num: request_header_num,
            header_bytes: request_header_bytes,
            buffer: 0,
            length: 0,
        };
        match copy_like_sdk(callbacks().http_copy_headers, &context) {
            Ok((capi::OK, _)) => {}
            Ok((status, _)) => {
                let message = format!("CopyHeaders returned {status} inside OnHttpLog");
                lock(log).violations.push(message);
            }
            Err(violation) => lock(log).violations.push(violation),
        }
    });
}

unsafe extern "C" fn on_http_stream_complete(_request: *mut c_void) {
    guarded((), |log| lock(log).stream_completes += 1);
}

unsafe extern "C" fn on_http_destroy(request: *mut c_void, reason: u64) {
    guarded((), |log| {
        let mut log = lock(log);
        let request = request as usize;
        if log.destroys.iter().any(|(seen, _)| *seen == request) {
            log.violations
                .push("second OnHttpDestroy for a request".to_owned());
        }
        if !log.states.keys().any(|(seen, _)| *seen == request) {
            log.violations
                .push("OnHttpDestroy for a request Go never saw".to_owned());
        }
        log.destroys.push((request, reason));
    });
}

unsafe extern "C" fn request_sema_dec(_request: *mut c_void) {
    guarded((), |log| {
        lock(log)
            .violations
            .push("unexpected envoyGoRequestSemaDec".to_owned())
    });
}

unsafe extern "C" fn clean_up() {
    guarded((), |log| {
        lock(log)
            .violations
            .push("unexpected envoyGoFilterCleanUp".to_owned())
    });
}
