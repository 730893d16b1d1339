//! Per-stream state shared between Envoy's worker thread and Go's threads.
//!
//! Go may call its host callbacks from any goroutine, and keeps the `httpRequest` pointer until
//! its garbage collector runs the request's finalizer, possibly long after Envoy destroyed the
//! stream. So the C structs Go reads live in a heap [`RequestBlock`] that only
//! `envoyGoFilterHttpFinalize` frees (or stream destruction, when Go never saw the stream), and
//! everything Go may read or change sits behind one mutex. Go's reads are served from copies
//! held here, never from Envoy's memory, and its writes are queued as [`Op`]s that the worker
//! applies to Envoy.

use std::ffi::c_void;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::ThreadId;

use crate::config::GoFilterConfig;
use crate::envoy::{self, HeaderList};
use crate::gohost::types::{FilterState, HttpRequest, ProcessState, SendPtr};

/// Index of the request (decoding) direction in [`Inner::dirs`].
pub const DECODE: usize = 0;
/// Index of the response (encoding) direction in [`Inner::dirs`].
pub const ENCODE: usize = 1;

/// The memory behind the `httpRequest*` and `processState*` pointers handed to Go.
///
/// `req` is the first field, so a `*mut HttpRequest` is also a `*mut RequestBlock`.
#[repr(C)]
pub struct RequestBlock {
    pub req: HttpRequest,
    pub decoding: ProcessState,
    pub encoding: ProcessState,
    pub shared: Arc<StreamShared>,
}

impl RequestBlock {
    /// Returns the `processState` of one direction.
    pub fn process_state(&self, dir: usize) -> &ProcessState {
        if dir == DECODE {
            &self.decoding
        } else {
            &self.encoding
        }
    }
}

/// State reachable from both the worker and Go threads.
pub struct StreamShared {
    pub inner: Mutex<Inner>,
    /// The Envoy worker thread that owns the stream.
    pub worker: ThreadId,
    /// Keeps the plugin name (pointed to by `HttpRequest::plugin_name`) and the Go exports
    /// alive until the request is finalized.
    pub config: Arc<GoFilterConfig>,
}

impl StreamShared {
    /// Locks the state; a poisoned lock (a panic while it was held) is still usable because
    /// every panic is caught at the FFI boundary and the stream is failed afterwards.
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Everything behind the stream's mutex.
#[derive(Default)]
pub struct Inner {
    /// Envoy destroyed the stream; Go's calls now get `CAPIFilterIsDestroy`.
    pub destroyed: bool,
    /// Delivers `on_http_filter_scheduled` to the worker; NULL before Go first runs and after
    /// destruction.
    pub scheduler: Option<SendPtr>,
    /// An event is committed and not yet delivered.
    pub event_pending: bool,
    /// Work for the worker, in the order Go asked for it.
    pub ops: Vec<Op>,
    pub dirs: [Direction; 2],
    /// Header values returned by `envoyGoFilterHttpGetHeader`: Go wraps them without copying,
    /// so they must stay valid until the request is finalized.
    pub header_values: Vec<Box<[u8]>>,
    /// The last string returned by the other string getters; Go copies it at once.
    pub string_value: Vec<u8>,
    pub info: StreamInfo,
    pub next_buffer_handle: u64,
    /// A local reply was sent; nothing more goes to Envoy for this stream.
    pub local_reply_sent: bool,
}

impl Inner {
    /// Asks the worker to run `on_http_filter_scheduled`, unless an event is already pending.
    pub fn wake_worker(&mut self) {
        if self.event_pending || self.destroyed {
            return;
        }
        if let Some(scheduler) = self.scheduler {
            self.event_pending = true;
            // SAFETY: the scheduler is deleted only by the worker while it holds this lock
            // and sets `scheduler` to `None`, so it is alive here.
            unsafe { envoy::commit_scheduler(scheduler.0, 0) };
        }
    }
}

/// Stream facts Envoy reported, copied on the worker so Go can read them from any thread.
#[derive(Default, Clone)]
pub struct StreamInfo {
    /// 0 HTTP/1.0, 1 HTTP/1.1, 2 HTTP/2, 3 HTTP/3.
    pub protocol: Option<u64>,
    pub response_code: Option<u64>,
    pub downstream_local_address: Vec<u8>,
    pub downstream_remote_address: Vec<u8>,
}

/// One direction (request or response) of the stream.
#[derive(Default)]
pub struct Direction {
    pub state: FilterState,
    /// The headers arrived from Envoy.
    pub headers_present: bool,
    /// The exact header list whose count and size were passed to Go, for `CopyHeaders`.
    pub header_copy: HeaderList,
    /// The headers as Go changed them; `None` while they equal `header_copy`, which saves a
    /// copy per stream for plugins that only read headers.
    pub changed_headers: Option<HeaderList>,
    /// Go may still change the headers (they have not been released to Envoy's next filter).
    pub headers_writable: bool,
    pub trailers: Option<HeaderList>,
    pub trailer_copy: HeaderList,
    /// Body chunks Go may reach through their buffer handles.
    pub chunks: Vec<BodyChunk>,
    /// Body bytes Go has finished with that are not yet released to Envoy.
    pub released: Vec<u8>,
    /// Body bytes that arrived while Go was busy, not yet shown to Go.
    pub unseen: Vec<u8>,
    /// Envoy keeps raw body bytes for this direction (a body hook returned a buffering stop),
    /// so releasing must replace Envoy's buffered body with `released`.
    pub envoy_buffered: bool,
    /// `released` differs from the chunk Envoy is passing through (Go changed or added data).
    pub body_changed: bool,
    /// The last hook of this direction returned a stop status.
    pub stopped: bool,
    /// Go asked to see more body before the direction continues (a StopAndBuffer* status).
    pub hold: bool,
    /// The headers carried end_stream.
    pub headers_end_stream: bool,
    /// Envoy delivered the end of this direction (end_stream or trailers).
    pub end_stream: bool,
    /// Go has received the end of this direction.
    pub end_stream_delivered: bool,
    /// Trailers arrived and Go has not seen them yet.
    pub trailers_pending: bool,
    /// Go's SDK panicked because the plugin asked to buffer a body after headers that ended
    /// the stream; edgefn continues instead of sending a 500 response.
    pub buffer_without_body: bool,
}

impl Direction {
    /// Returns the header map with Go's changes; `None` before the headers arrived.
    pub fn headers(&self) -> Option<&HeaderList> {
        self.headers_present
            .then(|| self.changed_headers.as_ref().unwrap_or(&self.header_copy))
    }

    /// Returns the header map for a change; `None` before the headers arrived.
    pub fn headers_mut(&mut self) -> Option<&mut HeaderList> {
        if !self.headers_present {
            return None;
        }
        let copy = &self.header_copy;
        Some(self.changed_headers.get_or_insert_with(|| copy.clone()))
    }

    /// Makes `header_copy` the current header map (with Go's changes), for a new call that
    /// reports its counts to Go.
    pub fn refresh_header_copy(&mut self) {
        if let Some(changed) = self.changed_headers.take() {
            self.header_copy = changed;
        }
    }
}

/// A body chunk shown to Go, addressed by the handle passed to `envoyGoFilterOnHttpData`.
pub struct BodyChunk {
    pub handle: u64,
    pub data: Vec<u8>,
}

/// Work queued by Go for the worker thread.
pub enum Op {
    Header {
        dir: usize,
        trailer: bool,
        change: HeaderChange,
    },
    Continue {
        dir: usize,
        status: u64,
    },
    LocalReply(LocalReply),
}

/// One header or trailer change requested by Go.
pub enum HeaderChange {
    Set(Vec<u8>, Vec<u8>),
    Add(Vec<u8>, Vec<u8>),
    Remove(Vec<u8>),
}

/// A local reply requested by Go (`SendLocalReply` or `SendPanicReply`).
pub struct LocalReply {
    pub status: u32,
    pub headers: HeaderList,
    pub body: Vec<u8>,
    pub details: Vec<u8>,
}

/// Finds the block and direction behind a `processState*` from Go.
///
/// # Safety
/// `state` must be NULL or a `processState*` that edgefn handed to Go for a request that has
/// not been finalized.
pub unsafe fn block_from_state<'a>(state: *mut c_void) -> Option<(&'a RequestBlock, usize)> {
    let state = state as *const ProcessState;
    if state.is_null() {
        return None;
    }
    // SAFETY: per the contract, `state` points into a live block whose `req` field is first.
    unsafe {
        let block = &*((*state).req as *const RequestBlock);
        let dir = if (*state).is_encoding != 0 {
            ENCODE
        } else {
            DECODE
        };
        Some((block, dir))
    }
}

/// Finds the block behind an `httpRequest*` from Go.
///
/// # Safety
/// `request` must be NULL or an `httpRequest*` that edgefn handed to Go and that has not been
/// finalized.
pub unsafe fn block_from_request<'a>(request: *mut c_void) -> Option<&'a RequestBlock> {
    let block = request as *const RequestBlock;
    // SAFETY: per the contract, a non-null pointer refers to a live block.
    unsafe { block.as_ref() }
}

/// Lower-cases a header name the way Envoy stores it.
pub fn lower(key: &[u8]) -> Vec<u8> {
    key.to_ascii_lowercase()
}

/// Applies one change to a header list model.
pub fn apply_change(list: &mut HeaderList, change: &HeaderChange) {
    match change {
        HeaderChange::Set(key, value) => {
            list.retain(|(k, _)| k != key);
            list.push((key.clone(), value.clone()));
        }
        HeaderChange::Add(key, value) => list.push((key.clone(), value.clone())),
        HeaderChange::Remove(key) => list.retain(|(k, _)| k != key),
    }
}

/// Returns whether a header value could end the header line or block on the wire.
pub fn has_line_break(bytes: &[u8]) -> bool {
    bytes.iter().any(|b| matches!(b, b'\r' | b'\n' | 0))
}

/// Count and total key+value size of a header list, as Go expects them.
pub fn header_counts(list: &HeaderList) -> (u64, u64) {
    let bytes: usize = list.iter().map(|(k, v)| k.len() + v.len()).sum();
    (list.len() as u64, bytes as u64)
}
