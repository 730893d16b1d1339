//! Streams of a `filter` revision whose module is a proxy-wasm plugin. Each Envoy worker runs
//! its own VM of the revision, as Envoy's wasm filter does; every stream gets an HTTP context
//! in it, and the plugin's callbacks run on the worker inside the matching Envoy hook.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ops::Range;
use std::rc::Rc;
use std::sync::{Arc, Weak};

use edgefn_wasm::proxywasm::{
    BodyKind, CallError, DataAction, HeaderMapKind, HeaderPairs, HeadersAction, HttpHost,
    LocalReply, Outcome, ProxyWasmModule, ProxyWasmVm, TrailersAction, Unavailable,
};

use super::WasmRevision;
use crate::abi::trailers_status;
use crate::abi::{attribute_id, body_status, body_type, header_type, headers_status};
use crate::envoy::EnvoyStream;
use crate::shared::has_line_break;

/// `StopAllIterationAndBuffer` and `StopAllIterationAndWatermark` of the header hooks.
const STOP_ALL_AND_BUFFER: u32 = 3;
const STOP_ALL_AND_WATERMARK: u32 = 4;

/// A worker's VM, shared by the streams that have a context in it.
type SharedVm = Rc<RefCell<ProxyWasmVm>>;

thread_local! {
    /// This worker's VM of each proxy-wasm revision, keyed by [`WasmRevision::id`]. A VM whose
    /// revision is gone is dropped when the next stream starts on this worker.
    static VMS: RefCell<HashMap<u64, (Weak<WasmRevision>, SharedVm)>> =
        RefCell::new(HashMap::new());
}

/// Returns this worker's VM of `revision`, starting one when there is none or the last one
/// failed.
fn worker_vm(revision: &Arc<WasmRevision>, module: &ProxyWasmModule) -> Result<SharedVm, String> {
    VMS.with(|vms| {
        let mut vms = vms.borrow_mut();
        vms.retain(|_, (owner, _)| owner.strong_count() > 0);
        if let Some((_, vm)) = vms.get(&revision.id) {
            if !vm.borrow().is_broken() {
                return Ok(Rc::clone(vm));
            }
        }
        let vm = ProxyWasmVm::start(module).map_err(|error| error.to_string())?;
        let vm = Rc::new(RefCell::new(vm));
        vms.insert(revision.id, (Arc::downgrade(revision), Rc::clone(&vm)));
        Ok(vm)
    })
}

/// The module state of one proxy-wasm stream.
pub struct FilterStream {
    envoy: EnvoyStream,
    revision: Arc<WasmRevision>,
    /// The VM and the stream's HTTP context in it. It is `None` when the VM could not start,
    /// and the stream then fails with a 500 at its first hook.
    context: Option<(SharedVm, u32)>,
    /// A reply was sent, by the plugin or for a failure; later hooks pass everything on.
    done: Cell<bool>,
    /// The response phase has begun, so response headers exist.
    response_started: Cell<bool>,
    /// The plugin kept the body of that direction with `StopIterationAndBuffer`, so Envoy's
    /// buffered body contains the earlier chunks.
    buffering: [Cell<bool>; 2],
}

impl FilterStream {
    pub fn new(envoy: EnvoyStream, revision: Arc<WasmRevision>, module: &ProxyWasmModule) -> Self {
        let context = match worker_vm(&revision, module) {
            Ok(vm) => {
                let created = vm.borrow_mut().new_http_context();
                match created {
                    Ok(id) => Some((vm, id)),
                    Err(error) => {
                        tracing::error!(revision = %revision.name, "proxy-wasm context failed: {error}");
                        None
                    }
                }
            }
            Err(error) => {
                tracing::error!(revision = %revision.name, "cannot start the proxy-wasm VM: {error}");
                None
            }
        };
        Self {
            envoy,
            revision,
            context,
            done: Cell::new(false),
            response_started: Cell::new(false),
            buffering: [Cell::new(false), Cell::new(false)],
        }
    }

    pub fn on_request_headers(&self, end_stream: bool) -> u32 {
        let count = self.header_count(header_type::REQUEST_HEADER);
        let outcome = self.call(|vm, id, host| vm.on_request_headers(id, host, count, end_stream));
        self.headers_status(outcome)
    }

    pub fn on_request_body(&self, end_stream: bool) -> u32 {
        self.body_call(BodyKind::Request, end_stream)
    }

    pub fn on_request_trailers(&self) -> u32 {
        let count = self.header_count(header_type::REQUEST_TRAILER);
        let outcome = self.call(|vm, id, host| vm.on_request_trailers(id, host, count));
        self.trailers_status(outcome)
    }

    pub fn on_response_headers(&self, end_stream: bool) -> u32 {
        self.response_started.set(true);
        let count = self.header_count(header_type::RESPONSE_HEADER);
        let outcome = self.call(|vm, id, host| vm.on_response_headers(id, host, count, end_stream));
        self.headers_status(outcome)
    }

    pub fn on_response_body(&self, end_stream: bool) -> u32 {
        self.body_call(BodyKind::Response, end_stream)
    }

    pub fn on_response_trailers(&self) -> u32 {
        let count = self.header_count(header_type::RESPONSE_TRAILER);
        let outcome = self.call(|vm, id, host| vm.on_response_trailers(id, host, count));
        self.trailers_status(outcome)
    }

    /// Runs `proxy_on_log`, where the plugin reads the finished stream.
    pub fn on_stream_complete(&self) {
        let Some((vm, id)) = &self.context else {
            return;
        };
        let mut host = EnvoyHost::new(self.envoy, true, None, false);
        let result = vm.borrow_mut().on_log(*id, &mut host);
        if let Err(error) = result {
            self.log_failure(&error);
        }
    }

    pub fn fail(&self, details: &str) {
        self.reply_once(500, &[], b"edgefn: internal error\n", details);
    }

    /// Ends the plugin's HTTP context (`proxy_on_done`, `proxy_on_delete`).
    pub fn destroy(self) {
        if let Some((vm, id)) = &self.context {
            let result = vm.borrow_mut().finish(*id);
            if let Err(error) = result {
                if !matches!(error, CallError::Broken | CallError::UnknownContext { .. }) {
                    self.log_failure(&error);
                }
            }
        }
    }

    fn header_count(&self, header_type: u32) -> usize {
        self.envoy
            .headers(header_type)
            .map_or(0, |headers| headers.len())
    }

    fn body_call(&self, kind: BodyKind, end_stream: bool) -> u32 {
        let direction = usize::from(kind == BodyKind::Response);
        let buffering = self.buffering[direction].get();
        let outcome = self.call_with_body(Some(kind), buffering, |vm, id, host| {
            let size = host.body(kind).map_or(0, <[u8]>::len);
            match kind {
                BodyKind::Request => vm.on_request_body(id, host, size, end_stream),
                BodyKind::Response => vm.on_response_body(id, host, size, end_stream),
            }
        });
        let Some(outcome) = outcome else {
            return body_status::CONTINUE;
        };
        let action = outcome.action;
        if self.apply_effects(&outcome) {
            return body_status::STOP_ITERATION_NO_BUFFER;
        }
        self.buffering[direction].set(action == DataAction::StopIterationAndBuffer);
        match action {
            DataAction::Continue => body_status::CONTINUE,
            DataAction::StopIterationAndBuffer => body_status::STOP_ITERATION_AND_BUFFER,
            DataAction::StopIterationAndWatermark => body_status::STOP_ITERATION_AND_WATERMARK,
            DataAction::StopIterationNoBuffer => body_status::STOP_ITERATION_NO_BUFFER,
        }
    }

    fn headers_status(&self, outcome: Option<Outcome<HeadersAction>>) -> u32 {
        let Some(outcome) = outcome else {
            return headers_status::CONTINUE;
        };
        if self.apply_effects(&outcome) {
            return headers_status::STOP_ITERATION;
        }
        match outcome.action {
            // NOTE: ContinueAndEndStream is passed on as Continue; the dynamic-modules ABI has
            // no status that ends the stream here.
            HeadersAction::Continue | HeadersAction::ContinueAndEndStream => {
                headers_status::CONTINUE
            }
            _ if outcome.continue_request || outcome.continue_response => headers_status::CONTINUE,
            HeadersAction::StopAllIterationAndBuffer => STOP_ALL_AND_BUFFER,
            HeadersAction::StopAllIterationAndWatermark => STOP_ALL_AND_WATERMARK,
        }
    }

    fn trailers_status(&self, outcome: Option<Outcome<TrailersAction>>) -> u32 {
        let Some(outcome) = outcome else {
            return trailers_status::CONTINUE;
        };
        if self.apply_effects(&outcome) {
            return trailers_status::STOP_ITERATION;
        }
        match outcome.action {
            TrailersAction::Continue => trailers_status::CONTINUE,
            _ if outcome.continue_request || outcome.continue_response => trailers_status::CONTINUE,
            TrailersAction::StopIteration => trailers_status::STOP_ITERATION,
        }
    }

    /// Sends the local reply the plugin asked for, or a reply for a closed stream; returns
    /// whether one was sent, in which case the hook stops.
    fn apply_effects<A>(&self, outcome: &Outcome<A>) -> bool {
        if let Some(reply) = &outcome.local_reply {
            self.send_plugin_reply(reply);
            return true;
        }
        if outcome.reset_stream {
            // NOTE: the dynamic-modules ABI offers no stream reset, so a plugin's
            // proxy_close_stream ends the stream with a 503 reply instead.
            self.reply_once(503, &[], b"", "edgefn_wasm_stream_closed");
            return true;
        }
        false
    }

    /// Sends the plugin's local reply after passing it through the plugin's own response
    /// callbacks, as Envoy's wasm filter does; Envoy does not call a dynamic module's
    /// response hooks for a reply the module sent.
    fn send_plugin_reply(&self, reply: &LocalReply) {
        let mut headers = vec![(b":status".to_vec(), reply.status.to_string().into_bytes())];
        headers.extend(reply.headers.iter().cloned());
        let has_type = headers.iter().any(|(name, _)| name == b"content-type");
        if !reply.body.is_empty() && !has_type {
            headers.push((b"content-type".to_vec(), b"text/plain".to_vec()));
        }
        let (headers, body) = self.filter_reply(headers, reply.body.clone());

        // Unlike Envoy's wasm filter, edgefn sends no header with CR, LF or NUL in its name
        // or value, and no status outside 200 to 599, as it does for Go plugins.
        let headers: Vec<(&[u8], &[u8])> = headers
            .iter()
            .filter(|(name, _)| !name.starts_with(b":"))
            .filter(|(name, value)| !has_line_break(name) && !has_line_break(value))
            .map(|(name, value)| (name.as_slice(), value.as_slice()))
            .collect();
        let status = if (200..=599).contains(&reply.status) {
            reply.status
        } else {
            tracing::warn!(
                revision = %self.revision.name,
                status = reply.status,
                "proxy-wasm local reply status is outside 200-599; sending 500"
            );
            500
        };
        let details = if reply.details.is_empty() {
            "edgefn_wasm_local_reply"
        } else {
            reply.details.as_str()
        };
        self.reply_once(status, &headers, &body, details);
    }

    /// Runs the plugin's response header and body callbacks on a local reply before it is
    /// sent. A failure or a second local reply in them leaves the reply as it was.
    fn filter_reply(&self, headers: HeaderPairs, body: Vec<u8>) -> (HeaderPairs, Vec<u8>) {
        let Some((vm, id)) = &self.context else {
            return (headers, body);
        };
        let original = (headers.clone(), body.clone());
        let mut host = EnvoyHost::new(self.envoy, true, None, false);
        host.local_reply = Some((headers, body));

        let count = host
            .local_reply
            .as_ref()
            .map_or(0, |(headers, _)| headers.len());
        let end_stream = host
            .local_reply
            .as_ref()
            .is_some_and(|(_, body)| body.is_empty());
        let mut vm = vm.borrow_mut();
        let result = vm.on_response_headers(*id, &mut host, count, end_stream);
        let mut ok = matches!(&result, Ok(outcome) if outcome.local_reply.is_none());
        if ok && !end_stream {
            host.body_kind = Some(BodyKind::Response);
            let size = host.local_reply.as_ref().map_or(0, |(_, body)| body.len());
            let result = vm.on_response_body(*id, &mut host, size, true);
            ok = matches!(&result, Ok(outcome) if outcome.local_reply.is_none());
        }
        drop(vm);

        match (ok, host.local_reply) {
            (true, Some(filtered)) => filtered,
            _ => original,
        }
    }

    fn reply_once(&self, status: u32, headers: &[(&[u8], &[u8])], body: &[u8], details: &str) {
        if self.done.replace(true) {
            return;
        }
        let headers: Vec<(Vec<u8>, Vec<u8>)> = headers
            .iter()
            .map(|(name, value)| (name.to_vec(), value.to_vec()))
            .collect();
        self.envoy
            .send_response(status, &headers, body, details.as_bytes());
    }

    /// Runs one callback with a host for this stream; `None` when the stream is done, or the
    /// call failed, in which case the stream got its error reply.
    fn call<A>(
        &self,
        callback: impl FnOnce(&mut ProxyWasmVm, u32, &mut EnvoyHost) -> Result<Outcome<A>, CallError>,
    ) -> Option<Outcome<A>> {
        self.call_with_body(None, false, callback)
    }

    /// Runs one callback; the plugin may read and change the body of `kind`.
    fn call_with_body<A>(
        &self,
        kind: Option<BodyKind>,
        buffering: bool,
        callback: impl FnOnce(&mut ProxyWasmVm, u32, &mut EnvoyHost) -> Result<Outcome<A>, CallError>,
    ) -> Option<Outcome<A>> {
        if self.done.get() {
            return None;
        }
        let Some((vm, id)) = &self.context else {
            self.reply_once(
                500,
                &[],
                b"edgefn: the wasm filter failed\n",
                "edgefn_wasm_error",
            );
            return None;
        };

        let mut host = EnvoyHost::new(self.envoy, self.response_started.get(), kind, buffering);
        let result = callback(&mut vm.borrow_mut(), *id, &mut host);
        host.write_back_body();
        match result {
            Ok(outcome) => Some(outcome),
            Err(error) => {
                self.log_failure(&error);
                let (status, body, details): (u32, &[u8], _) = match error {
                    CallError::Timeout { .. } => (
                        504,
                        b"edgefn: the wasm filter timed out\n",
                        "edgefn_wasm_timeout",
                    ),
                    _ => (
                        500,
                        b"edgefn: the wasm filter failed\n",
                        "edgefn_wasm_error",
                    ),
                };
                self.reply_once(status, &[], body, details);
                None
            }
        }
    }

    fn log_failure(&self, error: &CallError) {
        tracing::error!(revision = %self.revision.name, "proxy-wasm filter failed: {error}");
    }
}

/// The stream as the plugin reaches it during one callback.
struct EnvoyHost {
    envoy: EnvoyStream,
    response_started: bool,
    /// The body of the current body hook, read on first use and written back after the call
    /// when the plugin changed it.
    body_kind: Option<BodyKind>,
    buffering: bool,
    body: Option<Vec<u8>>,
    body_changed: bool,
    /// Headers and body of a local reply passed through the response callbacks; they stand
    /// in for the response headers and body Envoy does not have for it.
    local_reply: Option<(HeaderPairs, Vec<u8>)>,
}

impl EnvoyHost {
    fn new(
        envoy: EnvoyStream,
        response_started: bool,
        body_kind: Option<BodyKind>,
        buffering: bool,
    ) -> Self {
        Self {
            envoy,
            response_started,
            body_kind,
            buffering,
            body: None,
            body_changed: false,
            local_reply: None,
        }
    }

    /// Returns the local reply's headers when `map` is the response headers of one.
    fn reply_headers(&mut self, map: HeaderMapKind) -> Option<&mut HeaderPairs> {
        match (map, &mut self.local_reply) {
            (HeaderMapKind::ResponseHeaders, Some((headers, _))) => Some(headers),
            _ => None,
        }
    }

    fn header_type(&self, map: HeaderMapKind) -> Result<u32, Unavailable> {
        if self.local_reply.is_some() && map != HeaderMapKind::RequestHeaders {
            return Err(Unavailable);
        }
        match map {
            HeaderMapKind::RequestHeaders => Ok(header_type::REQUEST_HEADER),
            HeaderMapKind::RequestTrailers => Ok(header_type::REQUEST_TRAILER),
            HeaderMapKind::ResponseHeaders if self.response_started => {
                Ok(header_type::RESPONSE_HEADER)
            }
            HeaderMapKind::ResponseTrailers if self.response_started => {
                Ok(header_type::RESPONSE_TRAILER)
            }
            _ => Err(Unavailable),
        }
    }

    fn body_types(kind: BodyKind) -> (u32, u32) {
        match kind {
            BodyKind::Request => (body_type::BUFFERED_REQUEST, body_type::RECEIVED_REQUEST),
            BodyKind::Response => (body_type::BUFFERED_RESPONSE, body_type::RECEIVED_RESPONSE),
        }
    }

    /// Writes the plugin's changes to the body back to Envoy: the whole body goes into the
    /// current chunk, and the earlier buffered chunks are drained.
    fn write_back_body(&mut self) {
        let (Some(kind), Some(body), true) = (self.body_kind, &self.body, self.body_changed) else {
            return;
        };
        let (buffered, received) = Self::body_types(kind);
        if self.buffering {
            self.envoy.replace_body(buffered, &[]);
        }
        self.envoy.replace_body(received, body);
    }

    fn request_header(&self, name: &[u8]) -> Option<Vec<u8>> {
        self.envoy.header(header_type::REQUEST_HEADER, name)
    }
}

impl HttpHost for EnvoyHost {
    fn header_pairs(&self, map: HeaderMapKind) -> Option<HeaderPairs> {
        if let (HeaderMapKind::ResponseHeaders, Some((headers, _))) = (map, &self.local_reply) {
            return Some(headers.clone());
        }
        let header_type = self.header_type(map).ok()?;
        self.envoy.headers(header_type)
    }

    fn header_value(
        &self,
        map: HeaderMapKind,
        name: &[u8],
    ) -> Result<Option<Vec<u8>>, Unavailable> {
        let headers = self
            .envoy
            .headers(self.header_type(map)?)
            .ok_or(Unavailable)?;
        Ok(headers
            .into_iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value))
    }

    fn add_header(
        &mut self,
        map: HeaderMapKind,
        name: &[u8],
        value: &[u8],
    ) -> Result<(), Unavailable> {
        if let Some(headers) = self.reply_headers(map) {
            headers.push((name.to_vec(), value.to_vec()));
            return Ok(());
        }
        let header_type = self.header_type(map)?;
        self.envoy
            .add_header(header_type, name, value)
            .then_some(())
            .ok_or(Unavailable)
    }

    fn replace_header(
        &mut self,
        map: HeaderMapKind,
        name: &[u8],
        value: &[u8],
    ) -> Result<(), Unavailable> {
        if let Some(headers) = self.reply_headers(map) {
            headers.retain(|(key, _)| key.as_slice() != name);
            headers.push((name.to_vec(), value.to_vec()));
            return Ok(());
        }
        let header_type = self.header_type(map)?;
        self.envoy
            .set_header(header_type, name, value)
            .then_some(())
            .ok_or(Unavailable)
    }

    fn remove_header(&mut self, map: HeaderMapKind, name: &[u8]) -> Result<(), Unavailable> {
        if let Some(headers) = self.reply_headers(map) {
            headers.retain(|(key, _)| key.as_slice() != name);
            return Ok(());
        }
        let header_type = self.header_type(map)?;
        self.envoy.remove_header(header_type, name);
        Ok(())
    }

    fn set_header_pairs(
        &mut self,
        map: HeaderMapKind,
        pairs: HeaderPairs,
    ) -> Result<(), Unavailable> {
        if let Some(headers) = self.reply_headers(map) {
            *headers = pairs;
            return Ok(());
        }
        let header_type = self.header_type(map)?;
        let existing = self.envoy.headers(header_type).ok_or(Unavailable)?;
        for (name, _) in &existing {
            self.envoy.remove_header(header_type, name);
        }
        for (name, value) in &pairs {
            self.envoy.add_header(header_type, name, value);
        }
        Ok(())
    }

    fn body(&mut self, kind: BodyKind) -> Option<&[u8]> {
        if self.body_kind != Some(kind) {
            return None;
        }
        if let Some((_, body)) = &self.local_reply {
            return Some(body);
        }
        if self.body.is_none() {
            let (buffered, received) = Self::body_types(kind);
            let mut body = if self.buffering {
                self.envoy.body(buffered)
            } else {
                Vec::new()
            };
            body.extend(self.envoy.body(received));
            self.body = Some(body);
        }
        self.body.as_deref()
    }

    fn replace_body(
        &mut self,
        kind: BodyKind,
        range: Range<usize>,
        bytes: &[u8],
    ) -> Result<(), Unavailable> {
        if self.body(kind).is_none() {
            return Err(Unavailable);
        }
        let body = match &mut self.local_reply {
            Some((_, body)) => body,
            None => self.body.as_mut().ok_or(Unavailable)?,
        };
        if range.start > range.end || range.end > body.len() {
            return Err(Unavailable);
        }
        body.splice(range, bytes.iter().copied());
        self.body_changed = true;
        Ok(())
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        let int = |value: u64| Some(value.to_le_bytes().to_vec());
        match path {
            ["request", "path"] => self.request_header(b":path"),
            ["request", "url_path"] => self.request_header(b":path").map(|path| {
                path.split(|&b| b == b'?')
                    .next()
                    .unwrap_or_default()
                    .to_vec()
            }),
            ["request", "host"] => self.request_header(b":authority"),
            ["request", "scheme"] => self.request_header(b":scheme"),
            ["request", "method"] => self.request_header(b":method"),
            ["request", "id"] => self.request_header(b"x-request-id"),
            ["request", "referer"] => self.request_header(b"referer"),
            ["request", "useragent"] => self.request_header(b"user-agent"),
            ["request", "headers", name] => self.request_header(name.as_bytes()),
            ["request", "protocol"] => self.envoy.attribute_string(attribute_id::REQUEST_PROTOCOL),
            ["response", "code"] => int(self.envoy.attribute_int(attribute_id::RESPONSE_CODE)?),
            ["response", "code_details"] => self
                .envoy
                .attribute_string(attribute_id::RESPONSE_CODE_DETAILS),
            ["source", "address"] => self.envoy.attribute_string(attribute_id::SOURCE_ADDRESS),
            ["destination", "address"] => self
                .envoy
                .attribute_string(attribute_id::DESTINATION_ADDRESS),
            _ => None,
        }
    }
}
