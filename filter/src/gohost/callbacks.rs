//! The 34 host callbacks a Go plugin built with Envoy's Go SDK imports, implemented over the
//! shared per-stream state (see `crate::shared`). Go calls them from any thread.
//!
//! Each callback catches Rust panics and returns `CAPIInternalFailure` (which Go ignores)
//! instead of unwinding into Go. Statuses that make Go panic (`CAPIFilterIsDestroy`,
//! `CAPINotInGo`, `CAPIInvalidPhase`, `CAPIInvalidScene`) are returned only where Envoy's
//! golang filter returns them. Callbacks edgefn does not support yet answer
//! `CAPIValueNotFound`, which Go treats as "no value".

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::ConfigAllocation;
use crate::envoy::{self, byte_slice, copy_bytes};
use crate::gohost::types::{buffer_action, capi, GoString, HEADER_ACTION_ADD};
use crate::logging::sampled;
use crate::shared::{self, apply_change, block_from_request, block_from_state, has_line_break};
use crate::shared::{HeaderChange, Inner, LocalReply, Op, RequestBlock};
use crate::stream::PANIC_REPLY_BODY;

/// The function table registered with the C trampoline; field order matches
/// `edgefn_gohost_table` in `csrc/gohost.c`.
#[repr(C)]
pub struct CallbackTable {
    http_continue: unsafe extern "C" fn(*mut c_void, i32) -> i32,
    http_send_local_reply: unsafe extern "C" fn(
        *mut c_void,
        i32,
        *mut c_void,
        i32,
        *mut c_void,
        i32,
        i64,
        *mut c_void,
        i32,
    ) -> i32,
    http_send_panic_reply: unsafe extern "C" fn(*mut c_void, *mut c_void, i32) -> i32,
    http_get_header: unsafe extern "C" fn(*mut c_void, *mut c_void, i32, *mut u64, *mut i32) -> i32,
    http_copy_headers: unsafe extern "C" fn(*mut c_void, *mut c_void, *mut c_void) -> i32,
    http_set_header_helper:
        unsafe extern "C" fn(*mut c_void, *mut c_void, i32, *mut c_void, i32, i32) -> i32,
    http_remove_header: unsafe extern "C" fn(*mut c_void, *mut c_void, i32) -> i32,
    http_get_buffer: unsafe extern "C" fn(*mut c_void, u64, *mut c_void) -> i32,
    http_drain_buffer: unsafe extern "C" fn(*mut c_void, u64, u64) -> i32,
    http_set_buffer_helper: unsafe extern "C" fn(*mut c_void, u64, *mut c_void, i32, i32) -> i32,
    http_copy_trailers: unsafe extern "C" fn(*mut c_void, *mut c_void, *mut c_void) -> i32,
    http_set_trailer:
        unsafe extern "C" fn(*mut c_void, *mut c_void, i32, *mut c_void, i32, i32) -> i32,
    http_remove_trailer: unsafe extern "C" fn(*mut c_void, *mut c_void, i32) -> i32,
    http_clear_route_cache: unsafe extern "C" fn(*mut c_void, bool) -> i32,
    http_get_string_value: unsafe extern "C" fn(*mut c_void, i32, *mut u64, *mut i32) -> i32,
    http_get_integer_value: unsafe extern "C" fn(*mut c_void, i32, *mut u64) -> i32,
    http_get_dynamic_metadata:
        unsafe extern "C" fn(*mut c_void, *mut c_void, i32, *mut u64, *mut i32) -> i32,
    http_set_dynamic_metadata: unsafe extern "C" fn(
        *mut c_void,
        *mut c_void,
        i32,
        *mut c_void,
        i32,
        *mut c_void,
        i32,
    ) -> i32,
    http_set_string_filter_state:
        unsafe extern "C" fn(*mut c_void, *mut c_void, i32, *mut c_void, i32, i32, i32, i32) -> i32,
    http_get_string_filter_state:
        unsafe extern "C" fn(*mut c_void, *mut c_void, i32, *mut u64, *mut i32) -> i32,
    http_get_string_property:
        unsafe extern "C" fn(*mut c_void, *mut c_void, i32, *mut u64, *mut i32, *mut i32) -> i32,
    http_finalize: unsafe extern "C" fn(*mut c_void, i32),
    config_http_finalize: unsafe extern "C" fn(*mut c_void),
    http_define_metric: unsafe extern "C" fn(*mut c_void, u32, *mut c_void, i32, *mut u32) -> i32,
    http_increment_metric: unsafe extern "C" fn(*mut c_void, u32, i64) -> i32,
    http_get_metric: unsafe extern "C" fn(*mut c_void, u32, *mut u64) -> i32,
    http_record_metric: unsafe extern "C" fn(*mut c_void, u32, u64) -> i32,
    log: unsafe extern "C" fn(u32, *mut c_void, i32),
    log_level: unsafe extern "C" fn() -> u32,
    http_add_data: unsafe extern "C" fn(*mut c_void, *mut c_void, i32, bool) -> i32,
    http_inject_data: unsafe extern "C" fn(*mut c_void, *mut c_void, i32) -> i32,
    http_set_upstream_override_host:
        unsafe extern "C" fn(*mut c_void, *mut c_void, i32, bool) -> i32,
    http_get_string_secret:
        unsafe extern "C" fn(*mut c_void, *mut c_void, i32, *mut u64, *mut i32) -> i32,
    http_set_drain_connection_upon_completion: unsafe extern "C" fn(*mut c_void) -> i32,
}

pub static CALLBACK_TABLE: CallbackTable = CallbackTable {
    http_continue,
    http_send_local_reply,
    http_send_panic_reply,
    http_get_header,
    http_copy_headers,
    http_set_header_helper,
    http_remove_header,
    http_get_buffer,
    http_drain_buffer,
    http_set_buffer_helper,
    http_copy_trailers,
    http_set_trailer,
    http_remove_trailer,
    http_clear_route_cache,
    http_get_string_value,
    http_get_integer_value,
    http_get_dynamic_metadata,
    http_set_dynamic_metadata,
    http_set_string_filter_state,
    http_get_string_filter_state,
    http_get_string_property,
    http_finalize,
    config_http_finalize,
    http_define_metric,
    http_increment_metric,
    http_get_metric,
    http_record_metric,
    log,
    log_level,
    http_add_data,
    http_inject_data,
    http_set_upstream_override_host,
    http_get_string_secret,
    http_set_drain_connection_upon_completion,
};

// === Shared checks ===

/// Runs `body` for a `processState*` call after Envoy's checks: the stream must be alive and
/// this direction must be in Go (or Go must be in its access-log call).
fn with_direction(
    state: *mut c_void,
    name: &'static str,
    body: impl FnOnce(&RequestBlock, &mut Inner, usize) -> i32,
) -> i32 {
    guarded(name, capi::INTERNAL_FAILURE, || {
        // SAFETY: Go passes back a `processState*` that edgefn gave it; the block stays alive
        // until Go finalizes the request.
        let Some((block, dir)) = (unsafe { block_from_state(state) }) else {
            return capi::INTERNAL_FAILURE;
        };
        let mut inner = block.shared.lock();
        if inner.destroyed {
            return capi::FILTER_IS_DESTROY;
        }
        let logging = block.req.is_golang_processing_log.load(Ordering::Acquire) != 0;
        if !logging && !inner.dirs[dir].state.is_processing() {
            return capi::NOT_IN_GO;
        }
        body(block, &mut inner, dir)
    })
}

/// Like [`with_direction`] for `httpRequest*` calls: either direction may be in Go.
fn with_request(
    request: *mut c_void,
    name: &'static str,
    body: impl FnOnce(&RequestBlock, &mut Inner) -> i32,
) -> i32 {
    guarded(name, capi::INTERNAL_FAILURE, || {
        // SAFETY: Go passes back an `httpRequest*` that edgefn gave it and has not finalized.
        let Some(block) = (unsafe { block_from_request(request) }) else {
            return capi::INTERNAL_FAILURE;
        };
        let mut inner = block.shared.lock();
        if inner.destroyed {
            return capi::FILTER_IS_DESTROY;
        }
        let logging = block.req.is_golang_processing_log.load(Ordering::Acquire) != 0;
        if !logging && !inner.dirs.iter().any(|d| d.state.is_processing()) {
            return capi::NOT_IN_GO;
        }
        body(block, &mut inner)
    })
}

/// Catches a Rust panic so it never unwinds into Go.
fn guarded<T>(name: &'static str, on_panic: T, body: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(value) => value,
        Err(payload) => {
            crate::hooks::report_panic(name, payload.as_ref());
            on_panic
        }
    }
}

/// Borrows bytes Go passed in; Go keeps them alive for the duration of the call.
fn go_bytes<'a>(ptr: *mut c_void, len: i32) -> &'a [u8] {
    // SAFETY: Go passes a pointer to `len` bytes it owns for the duration of the call.
    unsafe { byte_slice(ptr as *const u8, usize::try_from(len).unwrap_or(0)) }
}

fn is_worker(block: &RequestBlock) -> bool {
    std::thread::current().id() == block.shared.worker
}

// === Stream control ===

unsafe extern "C" fn http_continue(state: *mut c_void, status: i32) -> i32 {
    with_direction(state, "envoyGoFilterHttpContinue", |_, inner, dir| {
        inner.ops.push(Op::Continue {
            dir,
            status: status as u64,
        });
        inner.wake_worker();
        capi::OK
    })
}

unsafe extern "C" fn http_send_local_reply(
    state: *mut c_void,
    code: i32,
    body: *mut c_void,
    body_len: i32,
    headers: *mut c_void,
    headers_num: i32,
    _grpc_status: i64,
    details: *mut c_void,
    details_len: i32,
) -> i32 {
    with_direction(
        state,
        "envoyGoFilterHttpSendLocalReply",
        |block, inner, _| {
            let count = usize::try_from(headers_num).unwrap_or(0);
            let strings: &[GoString] = if headers.is_null() || count == 0 {
                &[]
            } else {
                // SAFETY: Go passes an array of `headers_num` GoStrings alive during the call.
                unsafe { std::slice::from_raw_parts(headers as *const GoString, count) }
            };

            let mut reply_headers = Vec::with_capacity(count / 2);
            for pair in strings.chunks_exact(2) {
                // SAFETY: each GoString points at `n` bytes owned by Go for the call.
                let key = unsafe { copy_bytes(pair[0].p, pair[0].n.max(0) as usize) };
                // SAFETY: as above.
                let value = unsafe { copy_bytes(pair[1].p, pair[1].n.max(0) as usize) };
                if key.is_empty() || key.starts_with(b":") {
                    continue; // Envoy sets the reply's pseudo-headers itself.
                }
                if has_line_break(&key) || has_line_break(&value) {
                    static DROPPED: AtomicU64 = AtomicU64::new(0);
                    if let Some(occurrences) = sampled(&DROPPED) {
                        tracing::warn!(
                            plugin = %block.shared.config.plugin_name_str(),
                            header = %String::from_utf8_lossy(&key),
                            occurrences,
                            "local reply header dropped: it contains CR, LF or NUL"
                        );
                    }
                    continue;
                }
                reply_headers.push((shared::lower(&key), value));
            }

            let (status, body) = reply_status_and_body(block, code, go_bytes(body, body_len));
            inner.ops.push(Op::LocalReply(LocalReply {
                status,
                headers: reply_headers,
                body,
                details: go_bytes(details, details_len).to_vec(),
            }));
            inner.wake_worker();
            capi::OK
        },
    )
}

/// Checks a plugin's local reply status: anything outside 200..=599 becomes 500 (a 1xx or an
/// out-of-range code would break the client's framing), and a 204 or 304 carries no body.
fn reply_status_and_body(block: &RequestBlock, code: i32, body: &[u8]) -> (u32, Vec<u8>) {
    let (status, body) = checked_reply(code, body);
    static REPLACED: AtomicU64 = AtomicU64::new(0);
    if i64::from(status) != i64::from(code) {
        if let Some(occurrences) = sampled(&REPLACED) {
            tracing::warn!(
                plugin = %block.shared.config.plugin_name_str(),
                code,
                occurrences,
                "local reply status outside 200..=599; sending 500"
            );
        }
    }
    (status, body)
}

fn checked_reply(code: i32, body: &[u8]) -> (u32, Vec<u8>) {
    let status = u32::try_from(code)
        .ok()
        .filter(|status| (200..=599).contains(status))
        .unwrap_or(500);
    let body = if matches!(status, 204 | 304) {
        Vec::new()
    } else {
        body.to_vec()
    };
    (status, body)
}

unsafe extern "C" fn http_send_panic_reply(
    state: *mut c_void,
    details: *mut c_void,
    details_len: i32,
) -> i32 {
    guarded(
        "envoyGoFilterHttpSendPanicReply",
        capi::INTERNAL_FAILURE,
        || {
            // SAFETY: see `with_direction`.
            let Some((block, _)) = (unsafe { block_from_state(state) }) else {
                return capi::INTERNAL_FAILURE;
            };
            let details = go_bytes(details, details_len).to_vec();
            if is_buffer_without_body(block, &details) {
                return capi::OK;
            }
            let total = crate::hooks::GO_PANICS.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::error!(
                revision = %block.shared.config.revision,
                plugin = %block.shared.config.plugin_name_str(),
                details = %String::from_utf8_lossy(&details),
                total,
                "Go plugin panicked; answering 500"
            );
            let mut inner = block.shared.lock();
            if inner.destroyed {
                return capi::FILTER_IS_DESTROY;
            }
            inner.ops.push(Op::LocalReply(LocalReply {
                status: 500,
                headers: Vec::new(),
                body: PANIC_REPLY_BODY.to_vec(),
                details,
            }));
            inner.wake_worker();
            capi::OK
        },
    )
}

/// The panic Envoy's Go SDK raises inside `OnHttpHeader` when a plugin returns StopAndBuffer
/// or StopAndBufferWatermark for headers that end the stream (a GET, a 204 response).
const BUFFER_WITHOUT_BODY_PANIC: &[u8] = b"received wait data status when there is no data";

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|window| window == needle)
}

/// Recognises the SDK's panic for buffering a stream that has no body, raised on the worker
/// inside a header call with end_stream. There is no body to wait for, so edgefn treats the
/// status as Continue (the request goes on) rather than sending a 500 response.
fn is_buffer_without_body(block: &RequestBlock, details: &[u8]) -> bool {
    let pattern = BUFFER_WITHOUT_BODY_PANIC;
    if !is_worker(block)
        || !details
            .windows(pattern.len())
            .any(|window| window == pattern)
    {
        return false;
    }
    let mut inner = block.shared.lock();
    let processing_final_headers = |d: &crate::shared::Direction| {
        d.state == crate::gohost::types::FilterState::ProcessingHeader && d.headers_end_stream
    };
    let Some(d) = inner.dirs.iter_mut().find(|d| processing_final_headers(d)) else {
        return false;
    };
    d.buffer_without_body = true;
    static CONTINUED: AtomicU64 = AtomicU64::new(0);
    if let Some(occurrences) = sampled(&CONTINUED) {
        tracing::warn!(
            plugin = %block.shared.config.plugin_name_str(),
            occurrences,
            "plugin asked to buffer the body of a stream that has none; continuing"
        );
    }
    true
}

// === Headers and trailers ===

unsafe extern "C" fn http_get_header(
    state: *mut c_void,
    key: *mut c_void,
    key_len: i32,
    value: *mut u64,
    value_len: *mut i32,
) -> i32 {
    with_direction(state, "envoyGoFilterHttpGetHeader", |_, inner, dir| {
        let key = shared::lower(go_bytes(key, key_len));
        let Some(headers) = inner.dirs[dir].headers() else {
            return capi::INVALID_PHASE;
        };
        let Some((_, found)) = headers.iter().find(|(k, _)| *k == key) else {
            return capi::OK; // Go reads an untouched output as "".
        };

        // Go wraps the bytes without copying, so they live until the request is finalized.
        let stored: Box<[u8]> = found.clone().into_boxed_slice();
        // SAFETY: Go passes valid output pointers.
        unsafe {
            *value = stored.as_ptr() as u64;
            *value_len = stored.len() as i32;
        }
        inner.header_values.push(stored);
        capi::OK
    })
}

/// Copies a header list into Go's `strs` (2×N GoStrings) and `buf` (the byte total).
fn copy_list_to_go(list: &[(Vec<u8>, Vec<u8>)], strs: *mut c_void, buf: *mut c_void) {
    let strs = strs as *mut GoString;
    let mut cursor = buf as *mut u8;
    for (index, (key, value)) in list.iter().enumerate() {
        for (slot, bytes) in [(2 * index, key), (2 * index + 1, value)] {
            // SAFETY: Go sized `strs` for at least 2×N entries and `buf` for the byte total
            // of exactly this list (the counts edgefn passed with the header call).
            unsafe {
                let entry = &mut *strs.add(slot);
                entry.n = bytes.len() as isize;
                if !bytes.is_empty() {
                    std::ptr::copy_nonoverlapping(bytes.as_ptr(), cursor, bytes.len());
                    entry.p = cursor;
                    cursor = cursor.add(bytes.len());
                }
            }
        }
    }
}

unsafe extern "C" fn http_copy_headers(
    state: *mut c_void,
    strs: *mut c_void,
    buf: *mut c_void,
) -> i32 {
    with_direction(state, "envoyGoFilterHttpCopyHeaders", |_, inner, dir| {
        copy_list_to_go(&inner.dirs[dir].header_copy, strs, buf);
        capi::OK
    })
}

unsafe extern "C" fn http_copy_trailers(
    state: *mut c_void,
    strs: *mut c_void,
    buf: *mut c_void,
) -> i32 {
    with_direction(state, "envoyGoFilterHttpCopyTrailers", |_, inner, dir| {
        copy_list_to_go(&inner.dirs[dir].trailer_copy, strs, buf);
        capi::OK
    })
}

/// Records a header or trailer change in the model and queues it for Envoy.
fn change_headers(
    inner: &mut Inner,
    block: &RequestBlock,
    dir: usize,
    trailer: bool,
    change: HeaderChange,
) -> i32 {
    let (key, value) = match &change {
        HeaderChange::Set(k, v) | HeaderChange::Add(k, v) => (k.as_slice(), v.as_slice()),
        HeaderChange::Remove(k) => (k.as_slice(), &[][..]),
    };
    if key.is_empty() || has_line_break(key) || has_line_break(value) {
        static REJECTED: AtomicU64 = AtomicU64::new(0);
        if let Some(occurrences) = sampled(&REJECTED) {
            tracing::warn!(
                plugin = %block.shared.config.plugin_name_str(),
                header = %String::from_utf8_lossy(key),
                occurrences,
                "header change rejected: empty name, or CR, LF or NUL in the name or value"
            );
        }
        return capi::INTERNAL_FAILURE;
    }

    let d = &mut inner.dirs[dir];
    let list = if trailer {
        d.trailers.as_mut()
    } else if d.headers_writable || d.state == crate::gohost::types::FilterState::ProcessingHeader {
        d.headers_mut()
    } else {
        None
    };
    let Some(list) = list else {
        return capi::INVALID_PHASE;
    };
    apply_change(list, &change);
    inner.ops.push(Op::Header {
        dir,
        trailer,
        change,
    });
    if !is_worker(block) {
        inner.wake_worker();
    }
    capi::OK
}

fn header_change(
    key: *mut c_void,
    key_len: i32,
    value: *mut c_void,
    value_len: i32,
    action: i32,
) -> HeaderChange {
    let key = shared::lower(go_bytes(key, key_len));
    let value = go_bytes(value, value_len).to_vec();
    if action == HEADER_ACTION_ADD {
        HeaderChange::Add(key, value)
    } else {
        HeaderChange::Set(key, value)
    }
}

unsafe extern "C" fn http_set_header_helper(
    state: *mut c_void,
    key: *mut c_void,
    key_len: i32,
    value: *mut c_void,
    value_len: i32,
    action: i32,
) -> i32 {
    with_direction(
        state,
        "envoyGoFilterHttpSetHeaderHelper",
        |block, inner, dir| {
            let change = header_change(key, key_len, value, value_len, action);
            change_headers(inner, block, dir, false, change)
        },
    )
}

unsafe extern "C" fn http_remove_header(state: *mut c_void, key: *mut c_void, key_len: i32) -> i32 {
    with_direction(
        state,
        "envoyGoFilterHttpRemoveHeader",
        |block, inner, dir| {
            let change = HeaderChange::Remove(shared::lower(go_bytes(key, key_len)));
            change_headers(inner, block, dir, false, change)
        },
    )
}

unsafe extern "C" fn http_set_trailer(
    state: *mut c_void,
    key: *mut c_void,
    key_len: i32,
    value: *mut c_void,
    value_len: i32,
    action: i32,
) -> i32 {
    with_direction(state, "envoyGoFilterHttpSetTrailer", |block, inner, dir| {
        let change = header_change(key, key_len, value, value_len, action);
        change_headers(inner, block, dir, true, change)
    })
}

unsafe extern "C" fn http_remove_trailer(
    state: *mut c_void,
    key: *mut c_void,
    key_len: i32,
) -> i32 {
    with_direction(
        state,
        "envoyGoFilterHttpRemoveTrailer",
        |block, inner, dir| {
            let change = HeaderChange::Remove(shared::lower(go_bytes(key, key_len)));
            change_headers(inner, block, dir, true, change)
        },
    )
}

// === Body ===

fn find_chunk(inner: &mut Inner, dir: usize, handle: u64) -> Option<&mut Vec<u8>> {
    inner.dirs[dir]
        .chunks
        .iter_mut()
        .find(|c| c.handle == handle)
        .map(|c| &mut c.data)
}

unsafe extern "C" fn http_get_buffer(state: *mut c_void, handle: u64, out: *mut c_void) -> i32 {
    with_direction(state, "envoyGoFilterHttpGetBuffer", |_, inner, dir| {
        let Some(data) = find_chunk(inner, dir, handle) else {
            return capi::INVALID_PHASE;
        };
        // SAFETY: Go allocated `out` with the chunk length it tracks, which equals this
        // length because every change to the chunk goes through these callbacks.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), out as *mut u8, data.len()) };
        capi::OK
    })
}

unsafe extern "C" fn http_drain_buffer(state: *mut c_void, handle: u64, length: u64) -> i32 {
    with_direction(state, "envoyGoFilterHttpDrainBuffer", |_, inner, dir| {
        let Some(data) = find_chunk(inner, dir, handle) else {
            return capi::INVALID_PHASE;
        };
        let length = usize::try_from(length)
            .unwrap_or(usize::MAX)
            .min(data.len());
        data.drain(..length);
        inner.dirs[dir].body_changed = true;
        capi::OK
    })
}

unsafe extern "C" fn http_set_buffer_helper(
    state: *mut c_void,
    handle: u64,
    data: *mut c_void,
    length: i32,
    action: i32,
) -> i32 {
    with_direction(
        state,
        "envoyGoFilterHttpSetBufferHelper",
        |_, inner, dir| {
            let bytes = go_bytes(data, length);
            let Some(chunk) = find_chunk(inner, dir, handle) else {
                return capi::INVALID_PHASE;
            };
            match action {
                buffer_action::APPEND => chunk.extend_from_slice(bytes),
                buffer_action::PREPEND => {
                    chunk.splice(0..0, bytes.iter().copied());
                }
                buffer_action::SET => {
                    chunk.clear();
                    chunk.extend_from_slice(bytes);
                }
                _ => return capi::INTERNAL_FAILURE,
            }
            inner.dirs[dir].body_changed = true;
            capi::OK
        },
    )
}

unsafe extern "C" fn http_add_data(
    state: *mut c_void,
    data: *mut c_void,
    length: i32,
    _is_streaming: bool,
) -> i32 {
    with_direction(state, "envoyGoFilterHttpAddData", |block, inner, dir| {
        let d = &mut inner.dirs[dir];
        if d.state == crate::gohost::types::FilterState::ProcessingData {
            return capi::INVALID_PHASE;
        }
        d.released.extend_from_slice(go_bytes(data, length));
        d.body_changed = true;
        // Off the worker, Envoy's golang filter posts the data and returns CAPIYield, which
        // Go does not wait on.
        if is_worker(block) {
            capi::OK
        } else {
            -6
        }
    })
}

unsafe extern "C" fn http_inject_data(state: *mut c_void, data: *mut c_void, length: i32) -> i32 {
    with_direction(state, "envoyGoFilterHttpInjectData", |block, inner, dir| {
        if is_worker(block) {
            return capi::INVALID_SCENE;
        }
        let d = &mut inner.dirs[dir];
        if d.state != crate::gohost::types::FilterState::ProcessingData {
            return capi::INVALID_PHASE;
        }
        // NOTE: the dynamic-modules ABI cannot inject body data into a stopped stream, so the
        // bytes are released together with the chunk Go is still holding.
        d.released.extend_from_slice(go_bytes(data, length));
        d.body_changed = true;
        capi::OK
    })
}

// === Stream information ===

unsafe extern "C" fn http_get_string_value(
    request: *mut c_void,
    id: i32,
    value: *mut u64,
    value_len: *mut i32,
) -> i32 {
    with_request(request, "envoyGoFilterHttpGetStringValue", |_, inner| {
        let text = match id {
            // NOTE: route and filter chain names are not exposed by the dynamic-modules ABI
            // used here; Envoy's golang filter never reports them missing, so "" is answered.
            1 | 2 => Vec::new(),
            7 => inner.info.downstream_local_address.clone(),
            8 => inner.info.downstream_remote_address.clone(),
            _ => return capi::VALUE_NOT_FOUND,
        };
        inner.string_value = text;
        // SAFETY: Go passes valid output pointers and copies the bytes before its next call
        // on this request.
        unsafe {
            *value = inner.string_value.as_ptr() as u64;
            *value_len = inner.string_value.len() as i32;
        }
        capi::OK
    })
}

unsafe extern "C" fn http_get_integer_value(request: *mut c_void, id: i32, value: *mut u64) -> i32 {
    with_request(request, "envoyGoFilterHttpGetIntegerValue", |_, inner| {
        let found = match id {
            3 => inner.info.protocol,
            4 => inner.info.response_code,
            _ => None,
        };
        let Some(found) = found else {
            return capi::VALUE_NOT_FOUND;
        };
        // SAFETY: Go passes a valid output pointer.
        unsafe { *value = found };
        capi::OK
    })
}

// === Not supported yet: answered as "not found" ===

unsafe extern "C" fn http_clear_route_cache(_request: *mut c_void, _refresh: bool) -> i32 {
    capi::VALUE_NOT_FOUND
}

unsafe extern "C" fn http_get_dynamic_metadata(
    _request: *mut c_void,
    _name: *mut c_void,
    _name_len: i32,
    _value: *mut u64,
    _value_len: *mut i32,
) -> i32 {
    // Untouched outputs read as an empty namespace in Go, as for a namespace Envoy lacks.
    capi::OK
}

unsafe extern "C" fn http_set_dynamic_metadata(
    _request: *mut c_void,
    _name: *mut c_void,
    _name_len: i32,
    _key: *mut c_void,
    _key_len: i32,
    _buf: *mut c_void,
    _buf_len: i32,
) -> i32 {
    capi::VALUE_NOT_FOUND
}

unsafe extern "C" fn http_set_string_filter_state(
    _request: *mut c_void,
    _key: *mut c_void,
    _key_len: i32,
    _value: *mut c_void,
    _value_len: i32,
    _state_type: i32,
    _life_span: i32,
    _stream_sharing: i32,
) -> i32 {
    capi::VALUE_NOT_FOUND
}

unsafe extern "C" fn http_get_string_filter_state(
    _request: *mut c_void,
    _key: *mut c_void,
    _key_len: i32,
    _value: *mut u64,
    _value_len: *mut i32,
) -> i32 {
    capi::VALUE_NOT_FOUND
}

unsafe extern "C" fn http_get_string_property(
    _request: *mut c_void,
    _key: *mut c_void,
    _key_len: i32,
    _value: *mut u64,
    _value_len: *mut i32,
    _rc: *mut i32,
) -> i32 {
    capi::VALUE_NOT_FOUND
}

unsafe extern "C" fn http_set_upstream_override_host(
    _state: *mut c_void,
    _host: *mut c_void,
    _host_len: i32,
    _strict: bool,
) -> i32 {
    capi::VALUE_NOT_FOUND
}

unsafe extern "C" fn http_get_string_secret(
    _request: *mut c_void,
    _key: *mut c_void,
    _key_len: i32,
    _value: *mut u64,
    value_len: *mut i32,
) -> i32 {
    // Go reads a length of -1 as "no such secret".
    if !value_len.is_null() {
        // SAFETY: Go passes a valid output pointer.
        unsafe { *value_len = -1 };
    }
    capi::OK
}

unsafe extern "C" fn http_set_drain_connection_upon_completion(_request: *mut c_void) -> i32 {
    capi::VALUE_NOT_FOUND
}

// === Memory owned by Go's finalizers ===

unsafe extern "C" fn http_finalize(request: *mut c_void, _reason: i32) {
    guarded("envoyGoFilterHttpFinalize", (), || {
        if request.is_null() {
            return;
        }
        // SAFETY: Go's finalizer runs once per request, after Go dropped its last reference
        // and after edgefn's destroy hook stopped using the block.
        drop(unsafe { Box::from_raw(request as *mut RequestBlock) });
    })
}

unsafe extern "C" fn config_http_finalize(config: *mut c_void) {
    guarded("envoyGoConfigHttpFinalize", (), || {
        if config.is_null() {
            return;
        }
        // SAFETY: `config` is the `httpConfig*` at the start of a leaked `ConfigAllocation`;
        // Go finalizes it once.
        drop(unsafe { Box::from_raw(config as *mut ConfigAllocation) });
    })
}

// === Metrics (kept in edgefn's memory) ===

fn with_config(config: *mut c_void, body: impl FnOnce(&ConfigAllocation) -> i32) -> i32 {
    guarded("metric callback", capi::INTERNAL_FAILURE, || {
        // SAFETY: Go passes the `httpConfig*` it got from Parse, alive until its finalizer.
        match unsafe { (config as *const ConfigAllocation).as_ref() } {
            Some(allocation) => body(allocation),
            None => capi::INTERNAL_FAILURE,
        }
    })
}

unsafe extern "C" fn http_define_metric(
    config: *mut c_void,
    metric_type: u32,
    name: *mut c_void,
    name_len: i32,
    metric_id: *mut u32,
) -> i32 {
    with_config(config, |allocation| {
        let name = String::from_utf8_lossy(go_bytes(name, name_len)).into_owned();
        match allocation.metrics.define(metric_type, name) {
            Some(id) => {
                // SAFETY: Go passes a valid output pointer.
                unsafe { *metric_id = id };
                capi::OK
            }
            None => capi::VALUE_NOT_FOUND,
        }
    })
}

unsafe extern "C" fn http_increment_metric(
    config: *mut c_void,
    metric_id: u32,
    offset: i64,
) -> i32 {
    with_config(config, |allocation| {
        allocation.metrics.increment(metric_id, offset)
    })
}

unsafe extern "C" fn http_get_metric(config: *mut c_void, metric_id: u32, value: *mut u64) -> i32 {
    with_config(config, |allocation| {
        match allocation.metrics.get(metric_id) {
            Some(current) => {
                // SAFETY: Go passes a valid output pointer.
                unsafe { *value = current };
                capi::OK
            }
            None => capi::VALUE_NOT_FOUND,
        }
    })
}

unsafe extern "C" fn http_record_metric(config: *mut c_void, metric_id: u32, value: u64) -> i32 {
    with_config(config, |allocation| {
        allocation.metrics.record(metric_id, value)
    })
}

// === Logging ===

/// Log text of Envoy's Go SDK for a request that reaches a plugin name the library never
/// registered; the SDK then passes the request through.
const PLUGIN_NOT_FOUND_LOG: &[u8] = b" not found, pass through by default";

unsafe extern "C" fn log(level: u32, message: *mut c_void, message_len: i32) {
    guarded("envoyGoFilterLog", (), || {
        let bytes = go_bytes(message, message_len);
        if contains(bytes, PLUGIN_NOT_FOUND_LOG) {
            crate::stream::with_calling_config(|config| {
                if contains(bytes, &config.plugin_name) {
                    config.plugin_missing.store(true, Ordering::Relaxed);
                }
            });
        }
        match level {
            0..=5 => envoy::log(level, bytes),
            6 => {}
            other => {
                let text = format!(
                    "[invalid Go log level {other}] {}",
                    String::from_utf8_lossy(bytes)
                );
                envoy::log(crate::abi::log_level::ERROR, text.as_bytes());
            }
        }
    })
}

unsafe extern "C" fn log_level() -> u32 {
    guarded(
        "envoyGoFilterLogLevel",
        crate::abi::log_level::INFO,
        envoy::log_level,
    )
}

#[cfg(test)]
mod tests {
    use super::checked_reply;

    #[test]
    fn reply_status_in_range_kept() {
        assert_eq!(checked_reply(403, b"no"), (403, b"no".to_vec()));
    }

    #[test]
    fn reply_status_out_of_range_becomes_500() {
        for code in [-1, 0, 100, 199, 600, 1000, i32::MAX] {
            assert_eq!(checked_reply(code, b"x").0, 500, "code {code}");
        }
    }

    #[test]
    fn reply_without_body_statuses_drop_body() {
        assert_eq!(checked_reply(204, b"body"), (204, Vec::new()));
        assert_eq!(checked_reply(304, b"body"), (304, Vec::new()));
    }
}
