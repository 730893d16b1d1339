//! The fake plugin's calls into the host: a view of `CALLBACK_TABLE`, one wrapper per
//! callback the scripts use, and the buffer handling of the Go SDK that the host must
//! respect.

use std::ffi::c_void;
use std::sync::Mutex;

use super::{lock, Act, ActResult, CallContext, GoLog};
use crate::envoy::{byte_slice, HeaderList};
use crate::gohost::callbacks::{CallbackTable, CALLBACK_TABLE};
use crate::gohost::types::{buffer_action, capi, GoString, HEADER_ACTION_ADD};

/// Bytes and GoString entries past the end of Go's buffers that must stay untouched.
const GUARD_BYTES: usize = 256;
const GUARD_SLOTS: usize = 16;
const CANARY: u8 = 0xA5;

/// The leading fields of `CallbackTable`, in the order of `edgefn_gohost_table` in
/// `csrc/gohost.c` (that struct's fields are private to `gohost::callbacks`). Fields the fake
/// never calls keep their slot under a leading underscore.
#[repr(C)]
pub struct HostCallbacks {
    pub http_continue: unsafe extern "C" fn(*mut c_void, i32) -> i32,
    pub http_send_local_reply: unsafe extern "C" fn(
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
    pub http_send_panic_reply: unsafe extern "C" fn(*mut c_void, *mut c_void, i32) -> i32,
    pub http_get_header:
        unsafe extern "C" fn(*mut c_void, *mut c_void, i32, *mut u64, *mut i32) -> i32,
    pub http_copy_headers: unsafe extern "C" fn(*mut c_void, *mut c_void, *mut c_void) -> i32,
    pub http_set_header_helper:
        unsafe extern "C" fn(*mut c_void, *mut c_void, i32, *mut c_void, i32, i32) -> i32,
    pub http_remove_header: unsafe extern "C" fn(*mut c_void, *mut c_void, i32) -> i32,
    pub http_get_buffer: unsafe extern "C" fn(*mut c_void, u64, *mut c_void) -> i32,
    _http_drain_buffer: unsafe extern "C" fn(*mut c_void, u64, u64) -> i32,
    pub http_set_buffer_helper:
        unsafe extern "C" fn(*mut c_void, u64, *mut c_void, i32, i32) -> i32,
    pub http_copy_trailers: unsafe extern "C" fn(*mut c_void, *mut c_void, *mut c_void) -> i32,
    pub http_set_trailer:
        unsafe extern "C" fn(*mut c_void, *mut c_void, i32, *mut c_void, i32, i32) -> i32,
    _http_remove_trailer: unsafe extern "C" fn(*mut c_void, *mut c_void, i32) -> i32,
    _http_clear_route_cache: unsafe extern "C" fn(*mut c_void, bool) -> i32,
    _http_get_string_value: unsafe extern "C" fn(*mut c_void, i32, *mut u64, *mut i32) -> i32,
    _http_get_integer_value: unsafe extern "C" fn(*mut c_void, i32, *mut u64) -> i32,
    _http_get_dynamic_metadata:
        unsafe extern "C" fn(*mut c_void, *mut c_void, i32, *mut u64, *mut i32) -> i32,
    _http_set_dynamic_metadata: unsafe extern "C" fn(
        *mut c_void,
        *mut c_void,
        i32,
        *mut c_void,
        i32,
        *mut c_void,
        i32,
    ) -> i32,
    _http_set_string_filter_state:
        unsafe extern "C" fn(*mut c_void, *mut c_void, i32, *mut c_void, i32, i32, i32, i32) -> i32,
    _http_get_string_filter_state:
        unsafe extern "C" fn(*mut c_void, *mut c_void, i32, *mut u64, *mut i32) -> i32,
    _http_get_string_property:
        unsafe extern "C" fn(*mut c_void, *mut c_void, i32, *mut u64, *mut i32, *mut i32) -> i32,
    pub http_finalize: unsafe extern "C" fn(*mut c_void, i32),
}

// The table has 34 function pointers, and the view must not be larger.
const _: () = assert!(std::mem::size_of::<HostCallbacks>() == 22 * 8);
const _: () = assert!(std::mem::size_of::<CallbackTable>() == 34 * 8);

/// Returns the host callbacks, read through `CALLBACK_TABLE`.
pub fn callbacks() -> &'static HostCallbacks {
    let table: *const CallbackTable = &CALLBACK_TABLE;
    // SAFETY: both structs are `#[repr(C)]` sequences of function pointers, and
    // `HostCallbacks` declares the first 22 of the table's 34 with the same signatures in the
    // same order, so it reads a prefix of a static.
    unsafe { &*table.cast::<HostCallbacks>() }
}

/// Reads a header or trailer list the way the Go SDK does: `strs` holds max(32, 2N)
/// GoStrings and `buf` exactly `header_bytes` bytes, both followed by guard space that must
/// stay untouched.
pub(super) fn copy_like_sdk(
    copy: unsafe extern "C" fn(*mut c_void, *mut c_void, *mut c_void) -> i32,
    context: &CallContext,
) -> Result<(i32, HeaderList), String> {
    let num = usize::try_from(context.header_num).map_err(|e| e.to_string())?;
    let bytes = usize::try_from(context.header_bytes).map_err(|e| e.to_string())?;
    let slots = (2 * num).max(32);
    let sentinel = GoString {
        p: std::ptr::dangling(),
        n: -1,
    };
    let mut strs = vec![
        GoString {
            p: std::ptr::null(),
            n: 0
        };
        slots + GUARD_SLOTS
    ];
    strs[slots..].fill(sentinel);
    let mut buf = vec![CANARY; bytes + GUARD_BYTES];

    // SAFETY: `state` is the processState of the call being scripted, and both buffers are
    // larger than the sizes Go promises the host.
    let status = unsafe {
        copy(
            context.state as *mut c_void,
            strs.as_mut_ptr().cast(),
            buf.as_mut_ptr().cast(),
        )
    };
    if status != capi::OK {
        return Ok((status, Vec::new()));
    }

    if buf[bytes..].iter().any(|b| *b != CANARY) {
        return Err(format!("host wrote past the {bytes}-byte header buffer"));
    }
    let untouched = |s: &GoString| s.p == sentinel.p && s.n == sentinel.n;
    if !strs[slots..].iter().all(untouched) {
        return Err(format!("host wrote past the {slots} GoString entries"));
    }
    if strs[2 * num..slots]
        .iter()
        .any(|s| !s.p.is_null() || s.n != 0)
    {
        return Err(format!(
            "host wrote more than the {} reported entries",
            2 * num
        ));
    }

    let range = buf.as_ptr_range();
    let mut list = Vec::with_capacity(num);
    let mut copied = 0;
    for pair in strs[..2 * num].chunks_exact(2) {
        let mut strings = [Vec::new(), Vec::new()];
        for (slot, entry) in strings.iter_mut().zip(pair) {
            let length = usize::try_from(entry.n).map_err(|_| "negative GoString length")?;
            if length == 0 {
                continue;
            }
            let end = entry.p.wrapping_add(length);
            if entry.p < range.start || end > range.start.wrapping_add(bytes) {
                return Err("host pointed a GoString outside the header buffer".to_owned());
            }
            // SAFETY: the entry lies inside `buf`, checked just above.
            *slot = unsafe { byte_slice(entry.p, length) }.to_vec();
            copied += length;
        }
        let [key, value] = strings;
        list.push((key, value));
    }
    if copied != bytes {
        return Err(format!("host copied {copied} bytes, but reported {bytes}"));
    }
    Ok((status, list))
}

/// Reads the current chunk through GetBuffer into a buffer of the tracked length.
pub(super) fn read_body(context: &CallContext) -> Result<(i32, Vec<u8>), String> {
    let length = usize::try_from(context.length).map_err(|e| e.to_string())?;
    let mut out = vec![CANARY; length + GUARD_BYTES];
    // SAFETY: `state` and `buffer` come from the data call being scripted; `out` has room for
    // the tracked length.
    let status = unsafe {
        (callbacks().http_get_buffer)(
            context.state as *mut c_void,
            context.buffer,
            out.as_mut_ptr().cast(),
        )
    };
    if out[length..].iter().any(|b| *b != CANARY) {
        return Err(format!("host wrote past the {length}-byte body buffer"));
    }
    if status != capi::OK {
        return Ok((status, Vec::new()));
    }
    out.truncate(length);
    Ok((status, out))
}

fn ptr(text: &str) -> *mut c_void {
    text.as_ptr() as *mut c_void
}

fn len<T>(items: &[T]) -> i32 {
    i32::try_from(items.len()).unwrap_or(i32::MAX)
}

fn status_only(status: i32) -> ActResult {
    ActResult {
        status,
        headers: None,
        bytes: None,
    }
}

/// Makes the scripted callbacks in order and records each result.
pub(super) fn run_acts(context: &mut CallContext, acts: &[Act], log: &Mutex<GoLog>) {
    for act in acts {
        let result = run_act(context, act);
        let mut log = lock(log);
        match result {
            Ok(result) => log.results.push(result),
            Err(violation) => log.violations.push(violation),
        }
    }
}

/// Makes one callback; an error names a contract the host broke.
fn run_act(context: &mut CallContext, act: &Act) -> Result<ActResult, String> {
    let cb = callbacks();
    let state = context.state as *mut c_void;
    let result = match act {
        Act::CopyHeaders => copy_like_sdk(cb.http_copy_headers, context).map(copied)?,
        Act::CopyTrailers => copy_like_sdk(cb.http_copy_trailers, context).map(copied)?,
        Act::GetHeader(key) => get_header(state, key),
        Act::SetHeader(key, value) => status_only(set_header(state, key, value, 0)),
        Act::AddHeader(key, value) => status_only(set_header(state, key, value, HEADER_ACTION_ADD)),
        Act::RemoveHeader(key) => status_only(remove_header(state, key)),
        Act::SetTrailer(key, value) => status_only(set_trailer(state, key, value)),
        Act::ReadBody => {
            let (status, bytes) = read_body(context)?;
            ActResult {
                status,
                headers: None,
                bytes: Some(bytes),
            }
        }
        Act::SetBody(bytes) => {
            let status = set_body(state, context.buffer, bytes);
            if status == capi::OK {
                context.length = bytes.len() as u64;
            }
            status_only(status)
        }
        Act::Continue(status) => status_only(http_continue(state, *status)),
        Act::LocalReply {
            status,
            body,
            headers,
        } => status_only(send_local_reply(state, *status, body, headers)),
        Act::PanicReply(details) => status_only(send_panic_reply(state, details)),
    };
    Ok(result)
}

fn copied((status, list): (i32, HeaderList)) -> ActResult {
    ActResult {
        status,
        headers: Some(list),
        bytes: None,
    }
}

// Each wrapper below passes a processState the host handed to Go and has not finalized, and
// pointers to bytes that stay alive for the call.

fn get_header(state: *mut c_void, key: &str) -> ActResult {
    let mut value = 0u64;
    let mut value_len = 0i32;
    // SAFETY: see above; the outputs are valid locals.
    let status = unsafe {
        (callbacks().http_get_header)(
            state,
            ptr(key),
            len(key.as_bytes()),
            &mut value,
            &mut value_len,
        )
    };
    let length = usize::try_from(value_len).unwrap_or(0);
    // SAFETY: the host keeps GetHeader results alive until Finalize.
    let bytes = unsafe { byte_slice(value as *const u8, length) }.to_vec();
    ActResult {
        status,
        headers: None,
        bytes: Some(bytes),
    }
}

fn set_header(state: *mut c_void, key: &str, value: &str, action: i32) -> i32 {
    let (key_len, value_len) = (len(key.as_bytes()), len(value.as_bytes()));
    let set = callbacks().http_set_header_helper;
    // SAFETY: see above.
    unsafe { set(state, ptr(key), key_len, ptr(value), value_len, action) }
}

fn remove_header(state: *mut c_void, key: &str) -> i32 {
    // SAFETY: see above.
    unsafe { (callbacks().http_remove_header)(state, ptr(key), len(key.as_bytes())) }
}

fn set_trailer(state: *mut c_void, key: &str, value: &str) -> i32 {
    let (key_len, value_len) = (len(key.as_bytes()), len(value.as_bytes()));
    let set = callbacks().http_set_trailer;
    // SAFETY: see above.
    unsafe { set(state, ptr(key), key_len, ptr(value), value_len, 0) }
}

fn set_body(state: *mut c_void, buffer: u64, bytes: &[u8]) -> i32 {
    let data = bytes.as_ptr() as *mut c_void;
    let set = callbacks().http_set_buffer_helper;
    // SAFETY: see above; `buffer` is the handle of the scripted data call.
    unsafe { set(state, buffer, data, len(bytes), buffer_action::SET) }
}

fn http_continue(state: *mut c_void, status: u64) -> i32 {
    // `api.StatusType` values are small, so the conversion is exact.
    // SAFETY: see above.
    unsafe { (callbacks().http_continue)(state, status as i32) }
}

fn send_local_reply(
    state: *mut c_void,
    status: i32,
    body: &str,
    headers: &[(&'static str, &'static str)],
) -> i32 {
    let mut strings: Vec<GoString> = Vec::with_capacity(headers.len() * 2);
    for (key, value) in headers {
        for text in [key, value] {
            strings.push(GoString {
                p: text.as_ptr(),
                n: text.len() as isize,
            });
        }
    }
    let details = "fake local reply";
    // SAFETY: see above; `strings` contains the `2 * headers.len()` entries passed as the count.
    unsafe {
        (callbacks().http_send_local_reply)(
            state,
            status,
            ptr(body),
            len(body.as_bytes()),
            strings.as_mut_ptr().cast(),
            len(&strings),
            -1,
            ptr(details),
            len(details.as_bytes()),
        )
    }
}

pub(super) fn send_panic_reply(state: *mut c_void, details: &str) -> i32 {
    // SAFETY: `state` is a live processState; `details` is alive for the call.
    unsafe { (callbacks().http_send_panic_reply)(state, ptr(details), len(details.as_bytes())) }
}
