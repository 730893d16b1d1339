//! Streams of a `backend` revision: the request is collected on the worker, the function runs
//! on a function thread, and its response comes back to the worker through Envoy's scheduler
//! as a local reply. Nothing goes upstream.

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use edgefn_wasm::backend::MAX_REQUEST_BODY;
use edgefn_wasm::{CgiRequest, CgiResponse, RunError};

use super::{pool, WasmKind, WasmRevision};
use crate::abi::trailers_status;
use crate::abi::{attribute_id, body_status, body_type, header_type, headers_status};
use crate::envoy::{self, EnvoyStream, HeaderList};
use crate::gohost::types::SendPtr;

/// Body of the reply when edgefn itself fails.
const INTERNAL_ERROR_BODY: &[u8] = b"edgefn: internal error\n";

/// The module state of one backend stream.
pub struct BackendStream {
    envoy: EnvoyStream,
    revision: Arc<WasmRevision>,
    /// The request, from its headers on; taken when the function is started.
    request: RefCell<Option<CgiRequest>>,
    job: Arc<Mutex<Job>>,
}

/// State shared by the worker and the function thread.
#[derive(Default)]
struct Job {
    /// Delivers `on_http_filter_scheduled`; deleted by the worker, under this lock, when the
    /// result has arrived or the stream is destroyed.
    scheduler: Option<SendPtr>,
    result: Option<Result<CgiResponse, RunError>>,
    /// A reply was sent; later hooks do nothing.
    replied: bool,
    /// Envoy destroyed the stream, so a function not started yet is skipped.
    destroyed: bool,
}

impl BackendStream {
    pub fn new(envoy: EnvoyStream, revision: Arc<WasmRevision>) -> Self {
        Self {
            envoy,
            revision,
            request: RefCell::new(None),
            job: Arc::new(Mutex::new(Job::default())),
        }
    }

    pub fn on_request_headers(&self, end_stream: bool) -> u32 {
        let headers = self
            .envoy
            .headers(header_type::REQUEST_HEADER)
            .unwrap_or_default();
        *self.request.borrow_mut() = Some(self.cgi_request(headers));
        if end_stream {
            self.start(Vec::new());
        }
        headers_status::STOP_ITERATION
    }

    pub fn on_request_body(&self, end_stream: bool) -> u32 {
        if self.lock().replied {
            return body_status::STOP_ITERATION_NO_BUFFER;
        }
        let buffered = self.envoy.body_size(body_type::BUFFERED_REQUEST);
        let received = self.envoy.body_size(body_type::RECEIVED_REQUEST);
        if buffered + received > MAX_REQUEST_BODY {
            self.reply(
                413,
                &[],
                b"edgefn: the request body is larger than a function accepts (16 MiB)\n",
                "edgefn_wasm_request_too_large",
            );
            return body_status::STOP_ITERATION_NO_BUFFER;
        }
        if !end_stream {
            return body_status::STOP_ITERATION_AND_BUFFER;
        }
        let mut body = self.envoy.body(body_type::BUFFERED_REQUEST);
        body.extend(self.envoy.body(body_type::RECEIVED_REQUEST));
        self.start(body);
        body_status::STOP_ITERATION_NO_BUFFER
    }

    pub fn on_request_trailers(&self) -> u32 {
        if !self.lock().replied {
            let body = self.envoy.body(body_type::BUFFERED_REQUEST);
            self.start(body);
        }
        trailers_status::STOP_ITERATION
    }

    /// Sends the function's response, delivered by the scheduler.
    pub fn on_scheduled(&self) {
        let result = {
            let mut job = self.lock();
            if let Some(scheduler) = job.scheduler.take() {
                // SAFETY: created by `new_scheduler` for this stream; the function thread
                // commits only under this lock while it is `Some`, and it is now `None`.
                unsafe { envoy::delete_scheduler(scheduler.0) };
            }
            job.result.take()
        };
        let Some(result) = result else {
            return;
        };

        match result {
            Ok(response) => {
                let headers: Vec<(&[u8], &[u8])> = response
                    .headers
                    .iter()
                    .map(|(name, value)| (name.as_bytes(), value.as_bytes()))
                    .collect();
                self.reply(
                    u32::from(response.status),
                    &headers,
                    &response.body,
                    "edgefn_wasm_backend",
                );
            }
            Err(error) => {
                let status = error.status();
                tracing::error!(revision = %self.revision.name, status, "wasm function failed: {error}");
                let (body, details): (&[u8], _) = match error {
                    RunError::TimedOut(_) => {
                        (b"edgefn: the function timed out\n", "edgefn_wasm_timeout")
                    }
                    _ => (b"edgefn: the function failed\n", "edgefn_wasm_error"),
                };
                self.reply(u32::from(status), &[], body, details);
            }
        }
    }

    pub fn fail(&self, details: &str) {
        self.reply(500, &[], INTERNAL_ERROR_BODY, details);
    }

    /// Ends the stream. A function still running finishes on its thread; its result is
    /// dropped because the scheduler is gone.
    pub fn destroy(self) {
        let mut job = self.lock();
        job.destroyed = true;
        if let Some(scheduler) = job.scheduler.take() {
            // SAFETY: created by `new_scheduler` for this stream and deleted once, under the
            // lock that the function thread's commit takes.
            unsafe { envoy::delete_scheduler(scheduler.0) };
        }
    }

    fn lock(&self) -> MutexGuard<'_, Job> {
        self.job
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sends a local reply once.
    fn reply(&self, status: u32, headers: &[(&[u8], &[u8])], body: &[u8], details: &str) {
        {
            let mut job = self.lock();
            if job.replied {
                return;
            }
            job.replied = true;
        }
        let headers: HeaderList = headers
            .iter()
            .map(|(name, value)| (name.to_vec(), value.to_vec()))
            .collect();
        self.envoy
            .send_response(status, &headers, body, details.as_bytes());
    }

    /// Starts the function on a function thread with the collected request and `body`.
    fn start(&self, body: Vec<u8>) {
        let Some(mut request) = self.request.borrow_mut().take() else {
            return;
        };
        request.body = body;
        let scheduler = self.envoy.new_scheduler();
        if scheduler.is_null() {
            self.fail("edgefn_no_scheduler");
            return;
        }
        self.lock().scheduler = Some(SendPtr(scheduler));

        let revision = Arc::clone(&self.revision);
        let job = Arc::clone(&self.job);
        let queued_at = Instant::now();
        let spawned = pool::spawn(move || {
            let destroyed = job.lock().map_or(true, |job| job.destroyed);
            if destroyed {
                tracing::debug!(revision = %revision.name, "client left; function not run");
                return;
            }
            let result = catch_unwind(AssertUnwindSafe(|| match &revision.kind {
                WasmKind::Backend(function) => {
                    let deadline = queued_at + function.settings().timeout;
                    function.run_until(&request, deadline)
                }
                WasmKind::Filter(_) => Err(RunError::Instantiate(
                    "the revision is a proxy-wasm filter, not a backend function".to_owned(),
                )),
            }))
            .unwrap_or_else(|payload| {
                crate::hooks::report_panic("wasm function", payload.as_ref());
                Err(RunError::Trap(
                    "edgefn panicked while running the function".to_owned(),
                ))
            });
            let mut job = job.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            job.result = Some(result);
            if let Some(scheduler) = job.scheduler {
                // SAFETY: the worker deletes the scheduler only under this lock and sets it to
                // `None` first, so it is alive here.
                unsafe { envoy::commit_scheduler(scheduler.0, 0) };
            }
        });
        if spawned.is_err() {
            tracing::warn!(
                revision = %self.revision.name,
                "every wasm function thread is busy and {} requests wait; replying 503",
                pool::MAX_QUEUED
            );
            self.reply(
                503,
                &[],
                b"edgefn: too many requests wait for a function thread\n",
                "edgefn_wasm_busy",
            );
        }
    }

    /// Builds the CGI request from Envoy's request headers and stream attributes.
    fn cgi_request(&self, headers: HeaderList) -> CgiRequest {
        let mut request = CgiRequest::default();
        for (name, value) in headers {
            let name = String::from_utf8_lossy(&name).to_ascii_lowercase();
            let text = || String::from_utf8_lossy(&value).into_owned();
            match name.as_str() {
                ":method" => request.method = text(),
                ":path" => request.path = text(),
                ":scheme" => request.scheme = text(),
                ":authority" => request.headers.insert(0, ("host".to_owned(), value)),
                _ if name.starts_with(':') => {}
                _ => request.headers.push((name, value)),
            }
        }
        if request.scheme.is_empty() {
            request.scheme = "http".to_owned();
        }
        request.protocol = self
            .envoy
            .attribute_string(attribute_id::REQUEST_PROTOCOL)
            .map(|protocol| String::from_utf8_lossy(&protocol).into_owned())
            .unwrap_or_else(|| "HTTP/1.1".to_owned());
        request.remote_addr = self
            .envoy
            .attribute_string(attribute_id::SOURCE_ADDRESS)
            .map(|address| String::from_utf8_lossy(&address).into_owned());
        request
    }
}
