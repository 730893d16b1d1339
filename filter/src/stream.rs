//! The worker-thread side of one HTTP stream: Envoy's hooks feed Go, and the statuses Go
//! returns decide whether Envoy continues, buffers or stops.
//!
//! This follows the per-direction state machine of Envoy's golang filter (states
//! `WaitingHeader` .. `Done`), mapped onto the dynamic-modules ABI. The ABI has no way to
//! inject body data, so a direction that Go stopped is held in Envoy's buffer (a buffering
//! stop from the body hook) and, when Go continues, Envoy's buffered body is replaced with
//! the bytes Go released before the direction resumes.

use std::cell::Cell;
use std::ffi::c_void;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::abi::trailers_status;
use crate::abi::{attribute_id, body_status, body_type, header_type, headers_status};
use crate::config::GoFilterConfig;
use crate::envoy::{EnvoyStream, HeaderList};
use crate::gohost::types::{destroy_reason, go_status, FilterState, HttpRequest, ProcessState};
use crate::gohost::types::{CString, SendPtr, ACCESS_LOG_DOWNSTREAM_END};
use crate::shared::{header_counts, BodyChunk, Inner, LocalReply, Op, RequestBlock};
use crate::shared::{StreamShared, DECODE, ENCODE};

/// Body of the 500 reply sent when a plugin panics, as Envoy's golang filter words it.
pub const PANIC_REPLY_BODY: &[u8] = b"error happened in filter\r\n";

/// Which hook is running, which decides how an outcome is handed back to Envoy.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Context {
    HeadersHook,
    DataHook,
    TrailersHook,
    Scheduled,
}

/// The next step of a direction.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Outcome {
    /// Release everything held and let the stream go on.
    Release,
    /// Keep the direction stopped; Go or more data will move it later.
    Stop,
    /// Keep it stopped and let Envoy collect the whole body (413 above its buffer limit).
    StopAndBufferAll,
}

/// The next input for Go.
enum GoInput {
    Headers { end_stream: bool },
    Data { bytes: Vec<u8>, end_stream: bool },
    Trailers,
}

/// The module-side object of one stream (`filter_module_ptr`).
pub struct Stream {
    envoy: EnvoyStream,
    block: *mut RequestBlock,
    shared: Arc<StreamShared>,
    entered_go: Cell<bool>,
}

impl Stream {
    /// Creates the stream object and the C block Go will see.
    pub fn new(envoy: EnvoyStream, config: Arc<GoFilterConfig>) -> Self {
        let shared = Arc::new(StreamShared {
            inner: Default::default(),
            worker: std::thread::current().id(),
            config: Arc::clone(&config),
        });
        let block = Box::new(RequestBlock {
            req: HttpRequest {
                plugin_name: CString {
                    data: config.plugin_name.as_ptr(),
                    len: config.plugin_name.len() as u64,
                },
                config_id: 0,
                worker_id: 0,
                is_golang_processing_log: Default::default(),
            },
            decoding: new_process_state(false),
            encoding: new_process_state(true),
            shared: Arc::clone(&shared),
        });
        let block = Box::into_raw(block);

        // SAFETY: `block` was just allocated; the `req` back pointers make a `processState*`
        // lead to the request, as Go expects.
        unsafe {
            (*block).decoding.req = &mut (*block).req;
            (*block).encoding.req = &mut (*block).req;
        }
        Self {
            envoy,
            block,
            shared,
            entered_go: Cell::new(false),
        }
    }

    fn config(&self) -> &GoFilterConfig {
        &self.shared.config
    }

    fn block(&self) -> &RequestBlock {
        // SAFETY: the block is freed only after `destroy`, by Go's finalizer or by `destroy`
        // itself, and `destroy` consumes `self`.
        unsafe { &*self.block }
    }

    fn state_ptr(&self, dir: usize) -> *mut c_void {
        self.block().process_state(dir) as *const ProcessState as *mut c_void
    }

    fn set_state(&self, inner: &mut Inner, dir: usize, state: FilterState) {
        inner.dirs[dir].state = state;
        self.block()
            .process_state(dir)
            .state
            .store(state as i32, Ordering::Release);
    }

    // === Hooks ===

    /// Request or response headers arrived.
    pub fn on_headers(&self, dir: usize, end_stream: bool) -> u32 {
        // The first request already logged why; later ones fail without entering Go.
        if dir == DECODE && self.config().plugin_missing.load(Ordering::Relaxed) {
            self.fail("edgefn_plugin_not_registered");
            return headers_status::STOP_ITERATION;
        }
        let kind = if dir == DECODE {
            header_type::REQUEST_HEADER
        } else {
            header_type::RESPONSE_HEADER
        };
        let headers = self.envoy.headers(kind).unwrap_or_default();
        {
            let mut inner = self.shared.lock();
            if inner.local_reply_sent {
                return headers_status::CONTINUE;
            }
            if dir == ENCODE {
                inner.info.response_code = status_code(&headers);
            }
            let d = &mut inner.dirs[dir];
            d.header_copy = headers;
            d.changed_headers = None;
            d.headers_present = true;
            d.headers_writable = true;
            d.headers_end_stream = end_stream;
            d.end_stream = end_stream;
        }

        self.enter_go();
        let status = self.call_go(dir, GoInput::Headers { end_stream });
        let outcome = self.drive(dir, Some(status), Context::HeadersHook);
        self.finish_hook(dir, outcome, Context::HeadersHook)
    }

    /// Handles a body chunk (`Received*Body`).
    pub fn on_data(&self, dir: usize, end_stream: bool) -> u32 {
        let kind = if dir == DECODE {
            body_type::RECEIVED_REQUEST
        } else {
            body_type::RECEIVED_RESPONSE
        };
        let chunk = self.envoy.body(kind);
        let state = {
            let mut inner = self.shared.lock();
            if inner.local_reply_sent {
                return body_status::CONTINUE;
            }
            let d = &mut inner.dirs[dir];
            d.end_stream |= end_stream;
            d.unseen.extend_from_slice(&chunk);
            d.state
        };

        let outcome = match state {
            FilterState::WaitingHeader | FilterState::Done => {
                // Go is not interested any more: pass the chunk through untouched.
                self.shared.lock().dirs[dir].unseen.clear();
                return body_status::CONTINUE;
            }
            s if s.is_processing() => Outcome::Stop,
            _ => self.drive(dir, None, Context::DataHook),
        };
        self.finish_hook(dir, outcome, Context::DataHook)
    }

    /// Request or response trailers arrived (which also ends the direction).
    pub fn on_trailers(&self, dir: usize) -> u32 {
        let kind = if dir == DECODE {
            header_type::REQUEST_TRAILER
        } else {
            header_type::RESPONSE_TRAILER
        };
        let trailers = self.envoy.headers(kind).unwrap_or_default();
        let state = {
            let mut inner = self.shared.lock();
            if inner.local_reply_sent {
                return trailers_status::CONTINUE;
            }
            let d = &mut inner.dirs[dir];
            d.trailers = Some(trailers);
            d.end_stream = true;
            if matches!(d.state, FilterState::WaitingHeader | FilterState::Done) {
                return trailers_status::CONTINUE;
            }
            d.trailers_pending = true;
            d.state
        };

        let outcome = if state.is_processing() {
            Outcome::Stop
        } else {
            self.drive(dir, None, Context::TrailersHook)
        };
        self.finish_hook(dir, outcome, Context::TrailersHook)
    }

    /// Runs the work Go queued from its own threads (`on_http_filter_scheduled`).
    pub fn on_scheduled(&self) {
        let ops = {
            let mut inner = self.shared.lock();
            inner.event_pending = false;
            std::mem::take(&mut inner.ops)
        };
        for op in ops {
            match op {
                Op::Header {
                    dir,
                    trailer,
                    change,
                } => self.apply_header_change(dir, trailer, &change),
                Op::LocalReply(reply) => self.send_local_reply(reply),
                Op::Continue { dir, status } => {
                    let processing = {
                        let inner = self.shared.lock();
                        !inner.local_reply_sent && inner.dirs[dir].state.is_processing()
                    };
                    // A Continue that arrives after the direction moved on is stale: Envoy's
                    // golang filter would apply it twice, edgefn ignores it.
                    if processing {
                        let outcome = self.drive(dir, Some(status), Context::Scheduled);
                        self.finish_scheduled(dir, outcome);
                    }
                }
            }
        }
    }

    /// Tells Go the stream is complete and gives it the access-log call for the stream end.
    pub fn on_stream_complete(&self) {
        if !self.entered_go.get() {
            return;
        }
        let counts = {
            let mut inner = self.shared.lock();
            let mut counts = [0u64; 8];
            for (dir, slot) in [(DECODE, 0), (ENCODE, 4)] {
                let d = &mut inner.dirs[dir];
                d.refresh_header_copy();
                d.trailer_copy = d.trailers.take().unwrap_or_default();
                (counts[slot], counts[slot + 1]) = header_counts(&d.header_copy);
                (counts[slot + 2], counts[slot + 3]) = header_counts(&d.trailer_copy);
            }
            counts
        };

        let request = self.block as *mut c_void;
        let exports = &self.config().exports;
        let flag = &self.block().req.is_golang_processing_log;
        flag.store(1, Ordering::Release);
        // SAFETY: the request is live (Go created it) and the block outlives these calls.
        unsafe {
            (exports.on_http_stream_complete)(request);
            (exports.on_http_log)(
                request,
                ACCESS_LOG_DOWNSTREAM_END,
                self.state_ptr(DECODE),
                self.state_ptr(ENCODE),
                counts[0],
                counts[1],
                counts[2],
                counts[3],
                counts[4],
                counts[5],
                counts[6],
                counts[7],
            );
        }
        flag.store(0, Ordering::Release);
    }

    /// Ends the stream on Envoy's side. Go keeps the block until its finalizer runs.
    pub fn destroy(self) {
        let reason = {
            let mut inner = self.shared.lock();
            inner.destroyed = true;
            if let Some(scheduler) = inner.scheduler.take() {
                // SAFETY: created by `new_scheduler` for this stream and deleted once, under
                // the lock that every commit takes.
                unsafe { crate::envoy::delete_scheduler(scheduler.0) };
            }
            let busy = inner.dirs.iter().any(|d| d.state.is_processing());
            // Go's later calls all get CAPIFilterIsDestroy, so the copies can go now instead of
            // when Go's garbage collector finalizes the request. Header values Go may still
            // hold (header_values) stay until then.
            inner.dirs = Default::default();
            inner.ops.clear();
            if busy {
                destroy_reason::TERMINATE
            } else {
                destroy_reason::NORMAL
            }
        };

        if self.entered_go.get() {
            // SAFETY: Go created the request; after this call the block belongs to Go's
            // finalizer and this thread no longer touches it.
            unsafe { (self.config().exports.on_http_destroy)(self.block as *mut c_void, reason) };
        } else {
            // SAFETY: Go never saw the block, so nothing else refers to it.
            drop(unsafe { Box::from_raw(self.block) });
        }
    }

    /// Sends a 500 reply for an internal failure of this stream (a caught panic or an
    /// unexpected status from Go).
    pub fn fail(&self, details: &str) {
        self.send_local_reply(LocalReply {
            status: 500,
            headers: Vec::new(),
            body: PANIC_REPLY_BODY.to_vec(),
            details: details.as_bytes().to_vec(),
        });
    }

    // === Driving Go ===

    /// Prepares the C request on the first call into Go.
    fn enter_go(&self) {
        if self.entered_go.replace(true) {
            return;
        }
        let config = self.config();
        let worker = self
            .envoy
            .worker_index()
            .min(config.concurrency.saturating_sub(1));
        // SAFETY: Go has not seen the block yet, so the worker thread is its only user.
        unsafe {
            (*self.block).req.config_id = config.config_id;
            (*self.block).req.worker_id = worker;
        }

        let info = self.read_stream_info();
        let scheduler = self.envoy.new_scheduler();
        let mut inner = self.shared.lock();
        inner.info = info;
        inner.scheduler = (!scheduler.is_null()).then_some(SendPtr(scheduler));
    }

    fn read_stream_info(&self) -> crate::shared::StreamInfo {
        let protocol = self.envoy.attribute_string(attribute_id::REQUEST_PROTOCOL);
        crate::shared::StreamInfo {
            protocol: protocol.as_deref().and_then(protocol_number),
            response_code: None,
            downstream_local_address: self
                .envoy
                .attribute_string(attribute_id::DESTINATION_ADDRESS)
                .unwrap_or_default(),
            downstream_remote_address: self
                .envoy
                .attribute_string(attribute_id::SOURCE_ADDRESS)
                .unwrap_or_default(),
        }
    }

    /// Hands one input to Go and returns the status Go returned.
    fn call_go(&self, dir: usize, input: GoInput) -> u64 {
        let _calling = CallingConfig::enter(self.config());
        let exports = &self.config().exports;
        let state = self.state_ptr(dir);
        let mut inner = self.shared.lock();
        match input {
            GoInput::Headers { end_stream } => {
                let (count, bytes) = header_counts(&inner.dirs[dir].header_copy);
                inner.dirs[dir].end_stream_delivered |= end_stream;
                self.set_state(&mut inner, dir, FilterState::ProcessingHeader);
                drop(inner);
                // SAFETY: `state` points into the live block; Go reads the header copy
                // through CopyHeaders with exactly these counts.
                unsafe { (exports.on_http_header)(state, end_stream as u64, count, bytes) }
            }
            GoInput::Data { bytes, end_stream } => {
                inner.next_buffer_handle += 1;
                let handle = inner.next_buffer_handle;
                let length = bytes.len() as u64;
                let d = &mut inner.dirs[dir];
                d.chunks = vec![BodyChunk {
                    handle,
                    data: bytes,
                }];
                d.end_stream_delivered |= end_stream;
                self.set_state(&mut inner, dir, FilterState::ProcessingData);
                drop(inner);
                // SAFETY: `state` points into the live block; `handle` names the chunk kept
                // in the shared state for Go's buffer calls.
                unsafe { (exports.on_http_data)(state, end_stream as u64, handle, length) }
            }
            GoInput::Trailers => {
                let d = &mut inner.dirs[dir];
                d.trailer_copy = d.trailers.clone().unwrap_or_default();
                d.trailers_pending = false;
                d.end_stream_delivered = true;
                let (count, bytes) = header_counts(&d.trailer_copy);
                self.set_state(&mut inner, dir, FilterState::ProcessingTrailer);
                drop(inner);
                // SAFETY: as for headers; trailers always carry end_stream.
                unsafe { (exports.on_http_header)(state, 1, count, bytes) }
            }
        }
    }

    /// Applies Go's `status` (when given) and keeps feeding Go until the direction either
    /// waits for Go or more data, or can be released.
    fn drive(&self, dir: usize, mut status: Option<u64>, context: Context) -> Outcome {
        loop {
            self.apply_queued_header_changes();

            let step = {
                let mut inner = self.shared.lock();
                if inner.local_reply_sent || has_reply_queued(&inner) {
                    return Outcome::Stop;
                }
                match status.take() {
                    Some(status) => self.apply_status(&mut inner, dir, status, context),
                    None => Ok(()),
                }
                .map(|()| self.next_input(&mut inner, dir))
            };

            let step = if self.config().plugin_missing.load(Ordering::Relaxed) {
                Err(format!(
                    "the Go library has no plugin named {:?}; set spec.code.metadata.name (or \
                     metadata.name) to a name the library registers",
                    self.config().plugin_name_str()
                ))
            } else {
                step
            };
            match step {
                Err(message) => {
                    tracing::error!(
                        revision = %self.config().revision,
                        plugin = %self.config().plugin_name_str(),
                        "{message}"
                    );
                    self.fail("edgefn_unexpected_go_status");
                    return Outcome::Stop;
                }
                Ok(Next::Input(input)) => status = Some(self.call_go(dir, input)),
                Ok(Next::Outcome(outcome)) => return outcome,
            }
        }
    }

    /// Moves the direction's state according to Go's status for the phase it processed.
    fn apply_status(
        &self,
        inner: &mut Inner,
        dir: usize,
        status: u64,
        context: Context,
    ) -> Result<(), String> {
        let state = inner.dirs[dir].state;
        let mut status = status;
        if std::mem::take(&mut inner.dirs[dir].buffer_without_body) {
            status = go_status::CONTINUE;
        }
        if status == go_status::RUNNING || status == go_status::LOCAL_REPLY {
            return Ok(());
        }
        match state {
            FilterState::ProcessingHeader => {
                let end = inner.dirs[dir].headers_end_stream;
                let next = match status {
                    go_status::CONTINUE => {
                        if context == Context::HeadersHook {
                            inner.dirs[dir].headers_writable = false;
                        }
                        inner.dirs[dir].hold = false;
                        FilterState::WaitingData
                    }
                    // Buffering a stream that already ended is treated as Continue.
                    go_status::STOP_AND_BUFFER | go_status::STOP_AND_BUFFER_WATERMARK if end => {
                        FilterState::WaitingData
                    }
                    go_status::STOP_AND_BUFFER => {
                        inner.dirs[dir].hold = true;
                        FilterState::WaitingAllData
                    }
                    go_status::STOP_AND_BUFFER_WATERMARK => {
                        inner.dirs[dir].hold = true;
                        FilterState::WaitingData
                    }
                    other => {
                        return Err(format!("Go returned status {other} from a header callback"))
                    }
                };
                self.set_state(inner, dir, if end { FilterState::Done } else { next });
            }
            FilterState::ProcessingData => {
                let d = &mut inner.dirs[dir];
                let ended = d.end_stream_delivered;
                let chunks = std::mem::take(&mut d.chunks);
                let keep = |d: &mut crate::shared::Direction| {
                    for chunk in chunks {
                        d.released.extend_from_slice(&chunk.data);
                    }
                };
                let next = match status {
                    go_status::CONTINUE => {
                        keep(d);
                        d.hold = false;
                        FilterState::WaitingData
                    }
                    go_status::STOP_AND_BUFFER | go_status::STOP_AND_BUFFER_WATERMARK if ended => {
                        static CONTINUED: std::sync::atomic::AtomicU64 =
                            std::sync::atomic::AtomicU64::new(0);
                        if let Some(occurrences) = crate::logging::sampled(&CONTINUED) {
                            tracing::warn!(
                                plugin = %self.config().plugin_name_str(),
                                occurrences,
                                "plugin asked for more body after the end of the stream; \
                                 continuing"
                            );
                        }
                        keep(d);
                        d.hold = false;
                        FilterState::WaitingData
                    }
                    go_status::STOP_AND_BUFFER => {
                        keep(d);
                        d.hold = true;
                        FilterState::WaitingAllData
                    }
                    go_status::STOP_AND_BUFFER_WATERMARK => {
                        keep(d);
                        d.hold = true;
                        FilterState::WaitingData
                    }
                    go_status::STOP_NO_BUFFER => {
                        // The chunk is dropped, as Envoy's golang filter drops it.
                        d.body_changed = true;
                        d.hold = true;
                        FilterState::WaitingData
                    }
                    other => {
                        return Err(format!("Go returned status {other} from a data callback"))
                    }
                };
                self.set_state(inner, dir, next);
            }
            FilterState::ProcessingTrailer => match status {
                go_status::CONTINUE => {
                    inner.dirs[dir].hold = false;
                    self.set_state(inner, dir, FilterState::Done);
                }
                other => {
                    return Err(format!(
                        "Go returned status {other} from a trailer callback"
                    ))
                }
            },
            _ => {}
        }
        Ok(())
    }

    /// Decides what the direction needs after the last status Go returned.
    fn next_input(&self, inner: &mut Inner, dir: usize) -> Next {
        let d = &mut inner.dirs[dir];
        let state = d.state;
        if state.is_processing() {
            return Next::Outcome(Outcome::Stop);
        }
        if !matches!(
            state,
            FilterState::WaitingData | FilterState::WaitingAllData
        ) {
            return Next::Outcome(Outcome::Release);
        }

        let wait_all = state == FilterState::WaitingAllData;
        if !wait_all || d.end_stream {
            let final_data = d.end_stream && !d.end_stream_delivered && !d.trailers_pending;
            if !d.unseen.is_empty() || final_data {
                let end_stream = d.end_stream && !d.trailers_pending;
                let bytes = std::mem::take(&mut d.unseen);
                return Next::Input(GoInput::Data { bytes, end_stream });
            }
            if d.trailers_pending {
                return Next::Input(GoInput::Trailers);
            }
        }
        if wait_all {
            return Next::Outcome(Outcome::StopAndBufferAll);
        }
        if d.hold {
            return Next::Outcome(Outcome::Stop);
        }
        if d.end_stream {
            self.set_state(inner, dir, FilterState::Done);
        }
        Next::Outcome(Outcome::Release)
    }

    // === Handing outcomes back to Envoy ===

    fn finish_hook(&self, dir: usize, outcome: Outcome, context: Context) -> u32 {
        if outcome == Outcome::Release {
            self.release_body(dir, context);
            self.shared.lock().dirs[dir].stopped = false;
            return 0; // Continue, in every hook's status enum.
        }

        let mut inner = self.shared.lock();
        let d = &mut inner.dirs[dir];
        d.stopped = true;
        match context {
            Context::DataHook => {
                d.envoy_buffered = true;
                if outcome == Outcome::StopAndBufferAll {
                    body_status::STOP_ITERATION_AND_BUFFER
                } else {
                    body_status::STOP_ITERATION_AND_WATERMARK
                }
            }
            Context::HeadersHook => headers_status::STOP_ITERATION,
            _ => trailers_status::STOP_ITERATION,
        }
    }

    fn finish_scheduled(&self, dir: usize, outcome: Outcome) {
        if outcome != Outcome::Release {
            return;
        }
        self.release_body(dir, Context::Scheduled);
        let was_stopped = std::mem::replace(&mut self.shared.lock().dirs[dir].stopped, false);
        if was_stopped {
            self.envoy.continue_stream(dir == ENCODE);
        }
    }

    /// Puts the body bytes Go released into Envoy's buffers.
    fn release_body(&self, dir: usize, context: Context) {
        let (released, envoy_buffered, changed) = {
            let mut inner = self.shared.lock();
            let d = &mut inner.dirs[dir];
            let released = std::mem::take(&mut d.released);
            let flags = (
                std::mem::take(&mut d.envoy_buffered),
                std::mem::take(&mut d.body_changed),
            );
            (released, flags.0, flags.1)
        };
        let (received, buffered) = if dir == DECODE {
            (body_type::RECEIVED_REQUEST, body_type::BUFFERED_REQUEST)
        } else {
            (body_type::RECEIVED_RESPONSE, body_type::BUFFERED_RESPONSE)
        };

        if envoy_buffered {
            self.envoy.replace_body(buffered, &released);
            if context == Context::DataHook {
                self.envoy.replace_body(received, &[]);
            }
        } else if changed && context == Context::DataHook {
            self.envoy.replace_body(received, &released);
        } else if changed || (!released.is_empty() && context != Context::DataHook) {
            self.envoy.replace_body(buffered, &released);
        }
    }

    fn apply_queued_header_changes(&self) {
        let changes: Vec<Op> = {
            let mut inner = self.shared.lock();
            if !inner.ops.iter().any(|op| matches!(op, Op::Header { .. })) {
                return;
            }
            let (changes, rest) = std::mem::take(&mut inner.ops)
                .into_iter()
                .partition(|op| matches!(op, Op::Header { .. }));
            inner.ops = rest;
            changes
        };
        for op in changes {
            if let Op::Header {
                dir,
                trailer,
                change,
            } = op
            {
                self.apply_header_change(dir, trailer, &change);
            }
        }
    }

    fn apply_header_change(&self, dir: usize, trailer: bool, change: &crate::shared::HeaderChange) {
        use crate::shared::HeaderChange;
        let kind = match (dir == ENCODE, trailer) {
            (false, false) => header_type::REQUEST_HEADER,
            (false, true) => header_type::REQUEST_TRAILER,
            (true, false) => header_type::RESPONSE_HEADER,
            (true, true) => header_type::RESPONSE_TRAILER,
        };
        let applied = match change {
            HeaderChange::Set(key, value) => self.envoy.set_header(kind, key, value),
            HeaderChange::Add(key, value) => self.envoy.add_header(kind, key, value),
            HeaderChange::Remove(key) => self.envoy.remove_header(kind, key),
        };
        if !applied {
            tracing::debug!(plugin = %self.config().plugin_name_str(), "Envoy did not apply a header change");
        }
    }

    fn send_local_reply(&self, reply: LocalReply) {
        {
            let mut inner = self.shared.lock();
            if inner.local_reply_sent || inner.destroyed {
                return;
            }
            inner.local_reply_sent = true;
            for dir in [DECODE, ENCODE] {
                let d = &mut inner.dirs[dir];
                d.chunks.clear();
                d.unseen.clear();
                d.released.clear();
                self.set_state(&mut inner, dir, FilterState::Done);
            }
        }
        self.envoy
            .send_response(reply.status, &reply.headers, &reply.body, &reply.details);
    }
}

thread_local! {
    /// The config whose plugin this thread is calling into Go for, so that a log line Go
    /// writes during the call can be tied to it.
    static CALLING_CONFIG: std::cell::Cell<*const GoFilterConfig> =
        const { std::cell::Cell::new(std::ptr::null()) };
}

/// Marks this thread as calling into Go for one config until dropped.
struct CallingConfig(*const GoFilterConfig);

impl CallingConfig {
    fn enter(config: &GoFilterConfig) -> Self {
        Self(CALLING_CONFIG.with(|current| current.replace(config)))
    }
}

impl Drop for CallingConfig {
    fn drop(&mut self) {
        CALLING_CONFIG.with(|current| current.set(self.0));
    }
}

/// Runs `body` with the config this thread is calling into Go for, if any.
pub fn with_calling_config(body: impl FnOnce(&GoFilterConfig)) {
    let config = CALLING_CONFIG.with(|current| current.get());
    // SAFETY: the pointer is set only while `call_go` runs on this thread, during which the
    // stream keeps an Arc to the config.
    if let Some(config) = unsafe { config.as_ref() } {
        body(config);
    }
}

enum Next {
    Input(GoInput),
    Outcome(Outcome),
}

fn new_process_state(encoding: bool) -> ProcessState {
    ProcessState {
        req: std::ptr::null_mut(),
        is_encoding: encoding as i32,
        state: Default::default(),
    }
}

fn has_reply_queued(inner: &Inner) -> bool {
    inner.ops.iter().any(|op| matches!(op, Op::LocalReply(_)))
}

fn status_code(headers: &HeaderList) -> Option<u64> {
    let (_, value) = headers.iter().find(|(k, _)| k == b":status")?;
    std::str::from_utf8(value).ok()?.parse().ok()
}

fn protocol_number(protocol: &[u8]) -> Option<u64> {
    match protocol {
        b"HTTP/1.0" => Some(0),
        b"HTTP/1.1" => Some(1),
        b"HTTP/2" => Some(2),
        b"HTTP/3" => Some(3),
        _ => None,
    }
}
