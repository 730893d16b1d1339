//! A fake of Envoy's side of the dynamic-modules ABI: definitions of every
//! `envoy_dynamic_module_callback_*` function that `crate::abi` declares, so the test binary
//! links without Envoy.
//!
//! The state behind the callbacks is one [`FakeEnvoy`] per test thread, which plays the worker
//! thread. It records the calls the module makes and models what Envoy's filter manager does
//! with the statuses the hooks return, so a test can check which headers and body bytes the
//! next filter would receive. Each `FakeDirection` method names the Envoy behaviour it copies.

use std::cell::RefCell;
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::ThreadId;

use crate::abi::{attribute_id, body_status, headers_status, log_level, trailers_status};
use crate::abi::{EnvoyBuffer, HttpHeader, ModuleBuffer};
use crate::envoy::{byte_slice, HeaderList};
use crate::shared::{DECODE, ENCODE};

thread_local! {
    static ENVOY: RefCell<Option<FakeEnvoy>> = const { RefCell::new(None) };
}

/// Values returned for the string attributes edgefn reads when a stream first enters Go.
pub const PROTOCOL: &[u8] = b"HTTP/1.1";
pub const SOURCE_ADDRESS: &[u8] = b"10.0.0.1:50000";
pub const DESTINATION_ADDRESS: &[u8] = b"10.0.0.2:8080";

/// The `filter_envoy_ptr` handed to the module. Callbacks reach the fake state through the
/// thread-local, so the token only detects calls made on a thread other than the worker's.
pub struct FilterToken {
    worker: ThreadId,
    /// Stream callbacks made on another thread, which Envoy does not allow.
    pub off_thread_calls: AtomicUsize,
    /// Callbacks the fake could not serve (no fake installed, or a re-entrant call).
    pub failed_calls: AtomicUsize,
}

impl FilterToken {
    /// Creates a token for streams whose worker is the current thread.
    pub fn for_current_thread() -> Box<Self> {
        Box::new(Self {
            worker: std::thread::current().id(),
            off_thread_calls: AtomicUsize::new(0),
            failed_calls: AtomicUsize::new(0),
        })
    }
}

/// One scheduler created by the module. Commits may come from any thread.
#[derive(Default, Debug)]
pub struct FakeScheduler {
    /// Events committed and not yet delivered to `on_http_filter_scheduled`.
    pub pending: AtomicU64,
    /// Every commit made before the scheduler was deleted.
    pub commits: AtomicU64,
    pub deleted: AtomicBool,
    /// Commits after deletion: the module used a scheduler it no longer owns.
    pub commits_after_delete: AtomicU64,
}

/// A local reply sent through `send_response`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentResponse {
    pub status: u32,
    pub headers: HeaderList,
    pub body: Vec<u8>,
    pub details: Vec<u8>,
}

/// A callback the module made, in call order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnvoyCall {
    /// A read-only callback (headers, body, attributes, worker index).
    Read(&'static str),
    /// `set_header`; `value` is `None` when the module asked for removal.
    SetHeader {
        header_type: u32,
        key: Vec<u8>,
        value: Option<Vec<u8>>,
    },
    AddHeader {
        header_type: u32,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    AppendBody {
        body_type: u32,
        data: Vec<u8>,
    },
    DrainBody {
        body_type: u32,
        length: usize,
    },
    SendResponse(SentResponse),
    /// `continue_decoding` or `continue_encoding`, with the hook that was running.
    Continue {
        encoding: bool,
        hook: Option<&'static str>,
    },
    SchedulerNew,
    SchedulerDelete,
}

/// Envoy's view of one direction of the stream at this filter.
#[derive(Default, Debug)]
pub struct FakeDirection {
    /// The chunk passed to the running body hook (`Received*Body`); `None` outside it.
    pub received: Option<Vec<u8>>,
    /// The filter manager's buffered body (`Buffered*Body`), one entry per appended chunk.
    pub buffered: Option<Vec<Vec<u8>>>,
    /// Iteration is stopped at this filter: the last hook returned a stop status and no
    /// continue has run since.
    pub stopped: bool,
    /// Trailers arrived while stopped and wait for a continue.
    pub trailers_held: bool,
    /// The headers went on to the next filter.
    pub headers_forwarded: bool,
    /// Body bytes the next filter received.
    pub forwarded_body: Vec<u8>,
    /// The trailers went on to the next filter.
    pub trailers_forwarded: bool,
}

impl FakeDirection {
    /// Applies a header hook's status: Continue passes the headers on, StopIteration keeps
    /// them at this filter.
    pub fn after_headers(&mut self, status: u32) {
        if status == headers_status::CONTINUE {
            self.headers_forwarded = true;
        } else {
            self.stopped = true;
        }
    }

    /// Applies a body hook's status the way Envoy's filter manager does: a buffering stop
    /// moves the received chunk into the buffered body, StopIterationNoBuffer drops it, and
    /// Continue after a stop appends the chunk to the buffered body and resumes iteration.
    pub fn after_body(&mut self, status: u32) {
        let chunk = self.received.take().unwrap_or_default();
        match status {
            body_status::CONTINUE if self.stopped => {
                self.buffer(chunk);
                self.resume();
            }
            body_status::CONTINUE => self.forwarded_body.extend_from_slice(&chunk),
            body_status::STOP_ITERATION_AND_BUFFER | body_status::STOP_ITERATION_AND_WATERMARK => {
                self.buffer(chunk);
                self.stopped = true;
            }
            _ => self.stopped = true,
        }
    }

    /// Applies a trailer hook's status: Continue resumes a stopped direction and passes the
    /// trailers on, StopIteration keeps them at this filter until a continue.
    pub fn after_trailers(&mut self, status: u32) {
        if status == trailers_status::CONTINUE {
            if self.stopped {
                self.resume();
            }
            self.trailers_forwarded = true;
        } else {
            self.stopped = true;
            self.trailers_held = true;
        }
    }

    /// Appends a chunk to the buffered body; an empty chunk changes nothing.
    fn buffer(&mut self, chunk: Vec<u8>) {
        if !chunk.is_empty() {
            self.buffered.get_or_insert_with(Vec::new).push(chunk);
        }
    }

    /// Resumes iteration: headers, then the buffered body, then held trailers move on.
    fn resume(&mut self) {
        self.headers_forwarded = true;
        for chunk in self.buffered.take().unwrap_or_default() {
            self.forwarded_body.extend_from_slice(&chunk);
        }
        if std::mem::take(&mut self.trailers_held) {
            self.trailers_forwarded = true;
        }
        self.stopped = false;
    }

    /// Concatenates the buffered body chunks.
    pub fn buffered_bytes(&self) -> Vec<u8> {
        self.buffered.iter().flatten().flatten().copied().collect()
    }
}

/// The fake Envoy state of the current test thread.
#[derive(Default, Debug)]
pub struct FakeEnvoy {
    /// Header maps indexed by `abi::header_type`; `None` until they arrive.
    pub maps: [Option<HeaderList>; 4],
    pub dirs: [FakeDirection; 2],
    pub calls: Vec<EnvoyCall>,
    /// The hook Envoy is running, if any (`"scheduled"` for `on_http_filter_scheduled`).
    pub hook: Option<&'static str>,
    pub schedulers: Vec<Arc<FakeScheduler>>,
}

impl FakeEnvoy {
    /// Returns the local replies sent so far.
    pub fn responses(&self) -> Vec<SentResponse> {
        self.calls
            .iter()
            .filter_map(|call| match call {
                EnvoyCall::SendResponse(response) => Some(response.clone()),
                _ => None,
            })
            .collect()
    }

    /// Returns the `continue_decoding` / `continue_encoding` calls as (encoding, running hook).
    pub fn continues(&self) -> Vec<(bool, Option<&'static str>)> {
        self.calls
            .iter()
            .filter_map(|call| match call {
                EnvoyCall::Continue { encoding, hook } => Some((*encoding, *hook)),
                _ => None,
            })
            .collect()
    }

    /// Returns every value of `key` in one header map, in order.
    pub fn header_values(&self, header_type: u32, key: &str) -> Vec<String> {
        let map = self.maps[header_type as usize]
            .as_deref()
            .unwrap_or_default();
        map.iter()
            .filter(|(k, _)| k == key.as_bytes())
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    /// Counts the commits over all schedulers, before and after deletion.
    pub fn scheduler_commits(&self) -> (u64, u64) {
        self.schedulers.iter().fold((0, 0), |(before, after), s| {
            (
                before + s.commits.load(Ordering::Acquire),
                after + s.commits_after_delete.load(Ordering::Acquire),
            )
        })
    }

    /// Takes one pending event from a live scheduler, as Envoy's dispatcher would deliver it.
    pub fn take_event(&mut self) -> bool {
        let live = self
            .schedulers
            .iter()
            .find(|s| !s.deleted.load(Ordering::Acquire) && s.pending.load(Ordering::Acquire) > 0);
        match live {
            Some(scheduler) => {
                scheduler.pending.fetch_sub(1, Ordering::AcqRel);
                true
            }
            None => false,
        }
    }

    fn body_mut(&mut self, body_type: u32) -> Option<BodyRef<'_>> {
        let dir = &mut self.dirs[direction_of(body_type)];
        if body_type.is_multiple_of(2) {
            dir.received.as_mut().map(BodyRef::Received)
        } else {
            Some(BodyRef::Buffered(&mut dir.buffered))
        }
    }

    fn body_chunks(&self, body_type: u32) -> Vec<&[u8]> {
        let dir = &self.dirs[direction_of(body_type)];
        if body_type.is_multiple_of(2) {
            dir.received.iter().map(Vec::as_slice).collect()
        } else {
            dir.buffered.iter().flatten().map(Vec::as_slice).collect()
        }
    }
}

enum BodyRef<'a> {
    Received(&'a mut Vec<u8>),
    Buffered(&'a mut Option<Vec<Vec<u8>>>),
}

/// Installs a fresh fake for the current thread, replacing any earlier one.
pub fn install() {
    ENVOY.with(|cell| *cell.borrow_mut() = Some(FakeEnvoy::default()));
}

/// Runs `body` on the current thread's fake. Panics if none is installed, which is a bug in
/// the test, not in the module.
pub fn with<T>(body: impl FnOnce(&mut FakeEnvoy) -> T) -> T {
    ENVOY.with(|cell| {
        let mut guard = cell.borrow_mut();
        let fake = guard
            .as_mut()
            .expect("no fake Envoy on this thread: create a Harness first");
        body(fake)
    })
}

/// Maps an `abi::header_type` or `abi::body_type` value to `DECODE` or `ENCODE`. Both enums
/// list the request kinds (0, 1) before the response kinds (2, 3).
fn direction_of(kind: u32) -> usize {
    if kind < 2 {
        DECODE
    } else {
        ENCODE
    }
}

/// Serves a stream callback from the worker's fake. A call from another thread, or one the
/// fake cannot serve, is counted on the token and returns `fallback`.
fn on_worker<T>(filter: *mut c_void, fallback: T, body: impl FnOnce(&mut FakeEnvoy) -> T) -> T {
    // SAFETY: the module passes back the pointer the harness gave `on_http_filter_new`, a
    // `FilterToken` the harness keeps alive for the whole test.
    let Some(token) = (unsafe { (filter as *const FilterToken).as_ref() }) else {
        return fallback;
    };
    if std::thread::current().id() != token.worker {
        token.off_thread_calls.fetch_add(1, Ordering::Relaxed);
        return fallback;
    }

    // A panic must not unwind out of an `extern "C"` function, which would abort the tests.
    let served = catch_unwind(AssertUnwindSafe(|| {
        ENVOY.with(|cell| match cell.try_borrow_mut() {
            Ok(mut guard) => guard.as_mut().map(body),
            Err(_) => None,
        })
    }));
    match served {
        Ok(Some(value)) => value,
        _ => {
            token.failed_calls.fetch_add(1, Ordering::Relaxed);
            fallback
        }
    }
}

/// Borrows a module buffer; Envoy treats a NULL pointer as absent.
///
/// # Safety
/// The buffer must be NULL or point to `length` readable bytes for the duration of the call.
unsafe fn module_bytes(buffer: ModuleBuffer) -> Option<Vec<u8>> {
    if buffer.ptr.is_null() {
        return None;
    }
    // SAFETY: forwarded from the caller.
    Some(unsafe { byte_slice(buffer.ptr, buffer.length) }.to_vec())
}

// === Process-wide callbacks ===

#[no_mangle]
unsafe extern "C" fn envoy_dynamic_module_callback_log(level: u32, message: ModuleBuffer) {
    // SAFETY: the module passes a buffer valid for the call.
    let text = unsafe { module_bytes(message) }.unwrap_or_default();
    eprintln!("[envoy log {level}] {}", String::from_utf8_lossy(&text));
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_get_log_level() -> u32 {
    log_level::INFO
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_get_concurrency() -> u32 {
    1
}

// === Headers ===

#[no_mangle]
unsafe extern "C" fn envoy_dynamic_module_callback_http_get_headers_size(
    filter: *mut c_void,
    header_type: u32,
) -> usize {
    on_worker(filter, 0, |fake| {
        fake.calls.push(EnvoyCall::Read("get_headers_size"));
        fake.maps[header_type as usize].as_ref().map_or(0, Vec::len)
    })
}

#[no_mangle]
unsafe extern "C" fn envoy_dynamic_module_callback_http_get_header(
    filter: *mut c_void,
    header_type: u32,
    key: ModuleBuffer,
    out: *mut EnvoyBuffer,
    index: usize,
    opt_count: *mut usize,
) -> bool {
    // SAFETY: the module passes a key buffer valid for the call.
    let key = unsafe { module_bytes(key) }.unwrap_or_default();
    on_worker(filter, false, |fake| {
        fake.calls.push(EnvoyCall::Read("get_header"));
        let Some(map) = fake.maps[header_type as usize].as_ref() else {
            return false;
        };
        let values: Vec<&Vec<u8>> = map
            .iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v)
            .collect();
        if !opt_count.is_null() {
            // SAFETY: a non-NULL count pointer is a valid destination.
            unsafe { *opt_count = values.len() };
        }
        let Some(value) = values.get(index) else {
            return false;
        };
        // SAFETY: `out` is a valid destination; the value stays valid until the map changes.
        unsafe {
            *out = EnvoyBuffer {
                ptr: value.as_ptr(),
                length: value.len(),
            }
        };
        true
    })
}

#[no_mangle]
unsafe extern "C" fn envoy_dynamic_module_callback_http_get_headers(
    filter: *mut c_void,
    header_type: u32,
    out: *mut HttpHeader,
) -> bool {
    on_worker(filter, false, |fake| {
        fake.calls.push(EnvoyCall::Read("get_headers"));
        let Some(map) = fake.maps[header_type as usize].as_ref() else {
            return false;
        };
        for (index, (key, value)) in map.iter().enumerate() {
            // SAFETY: the module sized `out` with the count `get_headers_size` returned for
            // this map, which has not changed since. The pointers stay valid until the map
            // changes, and the module copies them before it calls back.
            unsafe {
                *out.add(index) = HttpHeader {
                    key_ptr: key.as_ptr(),
                    key_length: key.len(),
                    value_ptr: value.as_ptr(),
                    value_length: value.len(),
                };
            }
        }
        true
    })
}

#[no_mangle]
unsafe extern "C" fn envoy_dynamic_module_callback_http_set_header(
    filter: *mut c_void,
    header_type: u32,
    key: ModuleBuffer,
    value: ModuleBuffer,
) -> bool {
    // SAFETY: the module passes buffers valid for the call.
    let (key, value) = unsafe { (module_bytes(key).unwrap_or_default(), module_bytes(value)) };
    // Envoy removes the header when the value is NULL or empty.
    let value = value.filter(|v| !v.is_empty());
    on_worker(filter, false, |fake| {
        fake.calls.push(EnvoyCall::SetHeader {
            header_type,
            key: key.clone(),
            value: value.clone(),
        });
        let Some(map) = fake.maps[header_type as usize].as_mut() else {
            return false;
        };
        let first = map.iter().position(|(k, _)| *k == key);
        map.retain(|(k, _)| *k != key);
        if let Some(value) = value {
            let at = first.unwrap_or(map.len()).min(map.len());
            map.insert(at, (key, value));
        }
        true
    })
}

#[no_mangle]
unsafe extern "C" fn envoy_dynamic_module_callback_http_add_header(
    filter: *mut c_void,
    header_type: u32,
    key: ModuleBuffer,
    value: ModuleBuffer,
) -> bool {
    // SAFETY: the module passes buffers valid for the call.
    let (key, value) = unsafe { (module_bytes(key).unwrap_or_default(), module_bytes(value)) };
    on_worker(filter, false, |fake| {
        // Envoy adds nothing and returns false for a NULL or empty value.
        let Some(value) = value.filter(|v| !v.is_empty()) else {
            return false;
        };
        fake.calls.push(EnvoyCall::AddHeader {
            header_type,
            key: key.clone(),
            value: value.clone(),
        });
        match fake.maps[header_type as usize].as_mut() {
            Some(map) => {
                map.push((key, value));
                true
            }
            None => false,
        }
    })
}

// === Body ===

#[no_mangle]
unsafe extern "C" fn envoy_dynamic_module_callback_http_get_body_size(
    filter: *mut c_void,
    body_type: u32,
) -> usize {
    on_worker(filter, 0, |fake| {
        fake.calls.push(EnvoyCall::Read("get_body_size"));
        fake.body_chunks(body_type).iter().map(|c| c.len()).sum()
    })
}

#[no_mangle]
unsafe extern "C" fn envoy_dynamic_module_callback_http_get_body_chunks_size(
    filter: *mut c_void,
    body_type: u32,
) -> usize {
    on_worker(filter, 0, |fake| {
        fake.calls.push(EnvoyCall::Read("get_body_chunks_size"));
        fake.body_chunks(body_type).len()
    })
}

#[no_mangle]
unsafe extern "C" fn envoy_dynamic_module_callback_http_get_body_chunks(
    filter: *mut c_void,
    body_type: u32,
    out: *mut EnvoyBuffer,
) -> bool {
    on_worker(filter, false, |fake| {
        fake.calls.push(EnvoyCall::Read("get_body_chunks"));
        let chunks = fake.body_chunks(body_type);
        if chunks.is_empty() {
            return false;
        }
        for (index, chunk) in chunks.iter().enumerate() {
            // SAFETY: the module sized `out` with the count `get_body_chunks_size` returned
            // for this body, which has not changed since.
            unsafe {
                *out.add(index) = EnvoyBuffer {
                    ptr: chunk.as_ptr(),
                    length: chunk.len(),
                };
            }
        }
        true
    })
}

#[no_mangle]
unsafe extern "C" fn envoy_dynamic_module_callback_http_append_body(
    filter: *mut c_void,
    body_type: u32,
    data: ModuleBuffer,
) -> bool {
    // SAFETY: the module passes a buffer valid for the call.
    let data = unsafe { module_bytes(data) }.unwrap_or_default();
    on_worker(filter, false, |fake| {
        fake.calls.push(EnvoyCall::AppendBody {
            body_type,
            data: data.clone(),
        });
        match fake.body_mut(body_type) {
            Some(BodyRef::Received(body)) => body.extend_from_slice(&data),
            // Envoy creates the buffered body when the module appends to a missing one.
            Some(BodyRef::Buffered(body)) => body.get_or_insert_with(Vec::new).push(data),
            None => return false,
        }
        true
    })
}

#[no_mangle]
unsafe extern "C" fn envoy_dynamic_module_callback_http_drain_body(
    filter: *mut c_void,
    body_type: u32,
    length: usize,
) -> bool {
    on_worker(filter, false, |fake| {
        fake.calls.push(EnvoyCall::DrainBody { body_type, length });
        match fake.body_mut(body_type) {
            Some(BodyRef::Received(body)) => {
                body.drain(..length.min(body.len()));
            }
            Some(BodyRef::Buffered(Some(chunks))) => {
                let mut rest = length;
                while rest > 0 && !chunks.is_empty() {
                    let take = rest.min(chunks[0].len());
                    chunks[0].drain(..take);
                    rest -= take;
                    if chunks[0].is_empty() {
                        chunks.remove(0);
                    }
                }
            }
            Some(BodyRef::Buffered(None)) | None => return false,
        }
        true
    })
}

// === Stream control ===

#[no_mangle]
unsafe extern "C" fn envoy_dynamic_module_callback_http_send_response(
    filter: *mut c_void,
    status: u32,
    headers: *mut HttpHeader,
    headers_len: usize,
    body: ModuleBuffer,
    details: ModuleBuffer,
) {
    let raw: &[HttpHeader] = if headers.is_null() || headers_len == 0 {
        &[]
    } else {
        // SAFETY: the module passes an array of `headers_len` entries valid for the call.
        unsafe { std::slice::from_raw_parts(headers, headers_len) }
    };
    let headers = raw
        .iter()
        // SAFETY: each entry points at bytes the module keeps alive for the call.
        .map(|h| unsafe {
            (
                byte_slice(h.key_ptr, h.key_length).to_vec(),
                byte_slice(h.value_ptr, h.value_length).to_vec(),
            )
        })
        .collect();
    // SAFETY: the module passes buffers valid for the call.
    let (body, details) = unsafe { (module_bytes(body), module_bytes(details)) };
    let response = SentResponse {
        status,
        headers,
        body: body.unwrap_or_default(),
        details: details.unwrap_or_default(),
    };
    on_worker(filter, (), |fake| {
        fake.calls.push(EnvoyCall::SendResponse(response))
    });
}

/// Records a continue. Envoy resumes only a stopped direction, and only outside the hook that
/// stopped it; a continue from inside a hook stays recorded for the test to reject.
fn continue_direction(filter: *mut c_void, encoding: bool) {
    on_worker(filter, (), |fake| {
        let hook = fake.hook;
        fake.calls.push(EnvoyCall::Continue { encoding, hook });
        let dir = &mut fake.dirs[if encoding { ENCODE } else { DECODE }];
        if hook.is_none_or(|name| name == "scheduled") && dir.stopped {
            dir.resume();
        }
    });
}

#[no_mangle]
unsafe extern "C" fn envoy_dynamic_module_callback_http_filter_continue_decoding(
    filter: *mut c_void,
) {
    continue_direction(filter, false);
}

#[no_mangle]
unsafe extern "C" fn envoy_dynamic_module_callback_http_filter_continue_encoding(
    filter: *mut c_void,
) {
    continue_direction(filter, true);
}

#[no_mangle]
unsafe extern "C" fn envoy_dynamic_module_callback_http_filter_get_worker_index(
    filter: *mut c_void,
) -> u32 {
    on_worker(filter, 0, |fake| {
        fake.calls.push(EnvoyCall::Read("get_worker_index"));
        0
    })
}

// === Scheduler ===

#[no_mangle]
unsafe extern "C" fn envoy_dynamic_module_callback_http_filter_scheduler_new(
    filter: *mut c_void,
) -> *mut c_void {
    on_worker(filter, std::ptr::null_mut(), |fake| {
        fake.calls.push(EnvoyCall::SchedulerNew);
        let scheduler = Arc::new(FakeScheduler::default());
        let raw = Arc::as_ptr(&scheduler) as *mut c_void;
        // The fake keeps the scheduler alive after deletion, so a late commit is counted
        // instead of touching freed memory.
        fake.schedulers.push(scheduler);
        raw
    })
}

#[no_mangle]
unsafe extern "C" fn envoy_dynamic_module_callback_http_filter_scheduler_commit(
    scheduler: *mut c_void,
    _event_id: u64,
) {
    // SAFETY: the module passes a pointer from `scheduler_new`; the fake Envoy of the worker
    // thread keeps every scheduler alive until the test ends, and tests join their threads.
    let Some(scheduler) = (unsafe { (scheduler as *const FakeScheduler).as_ref() }) else {
        return;
    };
    if scheduler.deleted.load(Ordering::Acquire) {
        scheduler
            .commits_after_delete
            .fetch_add(1, Ordering::AcqRel);
        return;
    }
    scheduler.commits.fetch_add(1, Ordering::AcqRel);
    scheduler.pending.fetch_add(1, Ordering::AcqRel);
}

#[no_mangle]
unsafe extern "C" fn envoy_dynamic_module_callback_http_filter_scheduler_delete(
    scheduler: *mut c_void,
) {
    // SAFETY: as for commit: the pointer came from `scheduler_new` and is still allocated.
    if let Some(scheduler) = unsafe { (scheduler as *const FakeScheduler).as_ref() } {
        scheduler.deleted.store(true, Ordering::Release);
    }
    ENVOY.with(|cell| {
        if let Ok(mut guard) = cell.try_borrow_mut() {
            if let Some(fake) = guard.as_mut() {
                fake.calls.push(EnvoyCall::SchedulerDelete);
            }
        }
    });
}

// === Attributes ===

#[no_mangle]
unsafe extern "C" fn envoy_dynamic_module_callback_http_filter_get_attribute_string(
    filter: *mut c_void,
    attribute: u32,
    out: *mut EnvoyBuffer,
) -> bool {
    on_worker(filter, false, |fake| {
        fake.calls.push(EnvoyCall::Read("get_attribute_string"));
        let value: &'static [u8] = match attribute {
            attribute_id::REQUEST_PROTOCOL => PROTOCOL,
            attribute_id::SOURCE_ADDRESS => SOURCE_ADDRESS,
            attribute_id::DESTINATION_ADDRESS => DESTINATION_ADDRESS,
            _ => return false,
        };
        // SAFETY: the module passes a valid output pointer; the bytes are static.
        unsafe {
            *out = EnvoyBuffer {
                ptr: value.as_ptr(),
                length: value.len(),
            };
        }
        true
    })
}

#[no_mangle]
unsafe extern "C" fn envoy_dynamic_module_callback_http_filter_get_attribute_int(
    filter: *mut c_void,
    _attribute: u32,
    _out: *mut u64,
) -> bool {
    on_worker(filter, false, |fake| {
        fake.calls.push(EnvoyCall::Read("get_attribute_int"));
        false
    })
}
