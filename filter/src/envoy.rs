//! Safe wrappers over the Envoy host callbacks for one HTTP stream.
//!
//! Every method must be called on the stream's worker thread while Envoy runs one of the
//! module's hooks for that stream (a filter hook or `on_http_filter_scheduled`), which is the
//! condition under which Envoy allows these callbacks.

use std::ffi::c_void;

use crate::abi::{self, EnvoyBuffer, HttpHeader, ModuleBuffer};

/// A header list copied out of Envoy: (name, value) pairs in Envoy's iteration order.
pub type HeaderList = Vec<(Vec<u8>, Vec<u8>)>;

/// The `filter_envoy_ptr` of one stream.
#[derive(Clone, Copy, Debug)]
pub struct EnvoyStream {
    raw: *mut c_void,
}

impl EnvoyStream {
    /// Wraps the pointer Envoy passed to `on_http_filter_new`.
    pub fn new(raw: *mut c_void) -> Self {
        Self { raw }
    }

    /// Copies every entry of one header or trailer map; `None` when Envoy has no such map.
    pub fn headers(&self, header_type: u32) -> Option<HeaderList> {
        // SAFETY: `raw` is the live stream pointer and this runs inside one of its hooks.
        let count = unsafe {
            abi::envoy_dynamic_module_callback_http_get_headers_size(self.raw, header_type)
        };
        let empty = HttpHeader {
            key_ptr: std::ptr::null(),
            key_length: 0,
            value_ptr: std::ptr::null(),
            value_length: 0,
        };
        let mut raw_headers = vec![empty; count];
        // SAFETY: `raw_headers` has room for the `count` entries Envoy reported just before.
        let found = unsafe {
            abi::envoy_dynamic_module_callback_http_get_headers(
                self.raw,
                header_type,
                raw_headers.as_mut_ptr(),
            )
        };
        if !found {
            return None;
        }

        let list = raw_headers
            .iter()
            // SAFETY: Envoy filled each entry with pointers into its header map, valid until
            // this hook returns; both are copied before then.
            .map(|h| unsafe {
                (
                    copy_bytes(h.key_ptr, h.key_length),
                    copy_bytes(h.value_ptr, h.value_length),
                )
            })
            .collect();
        Some(list)
    }

    /// Replaces every value of `key`; an empty `value` removes the header, as Envoy's
    /// dynamic-modules ABI cannot store an empty value.
    /// Copies the first value of header `key` in one header or trailer map; `None` when the
    /// key or the map is absent.
    pub fn header(&self, header_type: u32, key: &[u8]) -> Option<Vec<u8>> {
        let mut out = EnvoyBuffer::empty();
        // SAFETY: `raw` is the live stream pointer and this runs inside one of its hooks; `key`
        // outlives the call, `out` is a valid destination, and a NULL count is allowed.
        let found = unsafe {
            abi::envoy_dynamic_module_callback_http_get_header(
                self.raw,
                header_type,
                ModuleBuffer::new(key),
                &mut out,
                0,
                std::ptr::null_mut(),
            )
        };
        // SAFETY: on success Envoy points `out` into its header map, valid until this hook
        // returns; the bytes are copied now.
        found.then(|| unsafe { copy_bytes(out.ptr, out.length) })
    }

    /// Returns the number of entries in one header or trailer map; 0 when it is absent.
    pub fn header_count(&self, header_type: u32) -> usize {
        // SAFETY: `raw` is the live stream pointer and this runs inside one of its hooks.
        unsafe { abi::envoy_dynamic_module_callback_http_get_headers_size(self.raw, header_type) }
    }

    pub fn set_header(&self, header_type: u32, key: &[u8], value: &[u8]) -> bool {
        let value = if value.is_empty() {
            ModuleBuffer::null()
        } else {
            ModuleBuffer::new(value)
        };
        // SAFETY: the buffers outlive the call, which copies them.
        unsafe {
            abi::envoy_dynamic_module_callback_http_set_header(
                self.raw,
                header_type,
                ModuleBuffer::new(key),
                value,
            )
        }
    }

    /// Appends one value of `key`.
    pub fn add_header(&self, header_type: u32, key: &[u8], value: &[u8]) -> bool {
        // SAFETY: the buffers outlive the call, which copies them.
        unsafe {
            abi::envoy_dynamic_module_callback_http_add_header(
                self.raw,
                header_type,
                ModuleBuffer::new(key),
                ModuleBuffer::new(value),
            )
        }
    }

    /// Removes every value of `key`.
    pub fn remove_header(&self, header_type: u32, key: &[u8]) -> bool {
        // SAFETY: a NULL value buffer makes Envoy remove the key; `key` outlives the call.
        unsafe {
            abi::envoy_dynamic_module_callback_http_set_header(
                self.raw,
                header_type,
                ModuleBuffer::new(key),
                ModuleBuffer::null(),
            )
        }
    }

    /// Copies a whole body (received or buffered, per `body_type`); empty when absent.
    pub fn body(&self, body_type: u32) -> Vec<u8> {
        // SAFETY: `raw` is the live stream pointer and this runs inside one of its hooks.
        let count = unsafe {
            abi::envoy_dynamic_module_callback_http_get_body_chunks_size(self.raw, body_type)
        };
        if count == 0 {
            return Vec::new();
        }
        let mut chunks = vec![EnvoyBuffer::empty(); count];
        // SAFETY: `chunks` has room for the `count` slices Envoy reported just before.
        let found = unsafe {
            abi::envoy_dynamic_module_callback_http_get_body_chunks(
                self.raw,
                body_type,
                chunks.as_mut_ptr(),
            )
        };
        if !found {
            return Vec::new();
        }

        let total = chunks.iter().map(|c| c.length).sum();
        let mut body = Vec::with_capacity(total);
        for chunk in &chunks {
            // SAFETY: each slice points into Envoy's buffer, valid until this hook returns.
            body.extend_from_slice(unsafe { byte_slice(chunk.ptr, chunk.length) });
        }
        body
    }

    /// Returns the size of a body in bytes; 0 when absent.
    pub fn body_size(&self, body_type: u32) -> usize {
        // SAFETY: `raw` is the live stream pointer and this runs inside one of its hooks.
        unsafe { abi::envoy_dynamic_module_callback_http_get_body_size(self.raw, body_type) }
    }

    /// Replaces a body with `data`: drains it, then appends.
    pub fn replace_body(&self, body_type: u32, data: &[u8]) {
        let size = self.body_size(body_type);
        // SAFETY: `raw` is the live stream pointer; `data` outlives the call, which copies it.
        unsafe {
            if size > 0 {
                abi::envoy_dynamic_module_callback_http_drain_body(self.raw, body_type, size);
            }
            if !data.is_empty() {
                abi::envoy_dynamic_module_callback_http_append_body(
                    self.raw,
                    body_type,
                    ModuleBuffer::new(data),
                );
            }
        }
    }

    /// Sends a local reply. Envoy copies every argument before it returns.
    pub fn send_response(&self, status: u32, headers: &HeaderList, body: &[u8], details: &[u8]) {
        let mut raw_headers: Vec<HttpHeader> = headers
            .iter()
            .map(|(k, v)| HttpHeader {
                key_ptr: k.as_ptr(),
                key_length: k.len(),
                value_ptr: v.as_ptr(),
                value_length: v.len(),
            })
            .collect();
        // SAFETY: every pointer refers to `headers`, `body` or `details`, alive for the call.
        unsafe {
            abi::envoy_dynamic_module_callback_http_send_response(
                self.raw,
                status,
                raw_headers.as_mut_ptr(),
                raw_headers.len(),
                ModuleBuffer::new(body),
                ModuleBuffer::new(details),
            );
        }
    }

    /// Resumes a stopped direction. Must not be called inside the hook that returns Stop.
    pub fn continue_stream(&self, encoding: bool) {
        // SAFETY: `raw` is the live stream pointer; this runs inside `on_scheduled`.
        unsafe {
            if encoding {
                abi::envoy_dynamic_module_callback_http_filter_continue_encoding(self.raw);
            } else {
                abi::envoy_dynamic_module_callback_http_filter_continue_decoding(self.raw);
            }
        }
    }

    /// Returns the index of the worker that owns this stream (0-based, from `worker_N`).
    pub fn worker_index(&self) -> u32 {
        // SAFETY: `raw` is the live stream pointer and this runs on its worker.
        unsafe { abi::envoy_dynamic_module_callback_http_filter_get_worker_index(self.raw) }
    }

    /// Creates the scheduler that lets other threads run `on_http_filter_scheduled` on this
    /// stream's worker. The caller owns it and must pass it to [`delete_scheduler`].
    pub fn new_scheduler(&self) -> *mut c_void {
        // SAFETY: `raw` is the live stream pointer and this runs on its worker.
        unsafe { abi::envoy_dynamic_module_callback_http_filter_scheduler_new(self.raw) }
    }

    /// Returns a string attribute such as `request.protocol`; `None` when Envoy has none.
    pub fn attribute_string(&self, id: u32) -> Option<Vec<u8>> {
        let mut out = EnvoyBuffer::empty();
        // SAFETY: `out` is a valid destination; the bytes are copied before the hook returns.
        let found = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_get_attribute_string(
                self.raw, id, &mut out,
            )
        };
        // SAFETY: on success Envoy points `out` at bytes valid until this hook returns.
        found.then(|| unsafe { copy_bytes(out.ptr, out.length) })
    }

    /// Returns an integer attribute such as `response.code`; `None` when Envoy has none.
    pub fn attribute_int(&self, id: u32) -> Option<u64> {
        let mut out = 0u64;
        // SAFETY: `out` is a valid destination for the result.
        let found = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_get_attribute_int(self.raw, id, &mut out)
        };
        found.then_some(out)
    }
}

/// Commits an event to a scheduler from any thread.
///
/// # Safety
/// `scheduler` must come from [`EnvoyStream::new_scheduler`] and not be deleted yet.
pub unsafe fn commit_scheduler(scheduler: *mut c_void, event_id: u64) {
    // SAFETY: the caller guarantees the scheduler is alive; commit is thread-safe in Envoy.
    unsafe { abi::envoy_dynamic_module_callback_http_filter_scheduler_commit(scheduler, event_id) }
}

/// Deletes a scheduler; events committed to it afterwards are never delivered.
///
/// # Safety
/// `scheduler` must come from [`EnvoyStream::new_scheduler`] and be deleted once.
pub unsafe fn delete_scheduler(scheduler: *mut c_void) {
    // SAFETY: the caller guarantees the scheduler is alive and deleted once.
    unsafe { abi::envoy_dynamic_module_callback_http_filter_scheduler_delete(scheduler) }
}

/// Writes one message to Envoy's `dynamic_modules` logger. Safe from any thread.
pub fn log(level: u32, message: &[u8]) {
    // SAFETY: Envoy copies the message; logging is thread-safe in Envoy.
    unsafe { abi::envoy_dynamic_module_callback_log(level, ModuleBuffer::new(message)) }
}

/// Returns the level of Envoy's `dynamic_modules` logger (0 trace .. 6 off), from any thread.
pub fn log_level() -> u32 {
    // SAFETY: reads a logger level; no arguments.
    unsafe { abi::envoy_dynamic_module_callback_get_log_level() }
}

/// Envoy's `--concurrency`; valid only on the main thread (0 elsewhere).
pub fn concurrency() -> u32 {
    // SAFETY: no arguments; callers use it on the main thread only.
    unsafe { abi::envoy_dynamic_module_callback_get_concurrency() }
}

/// Copies `len` bytes at `ptr`; an empty vector for a NULL pointer.
///
/// # Safety
/// `ptr` must be NULL or point to `len` readable bytes.
pub unsafe fn copy_bytes(ptr: *const u8, len: usize) -> Vec<u8> {
    // SAFETY: forwarded from the caller.
    unsafe { byte_slice(ptr, len) }.to_vec()
}

/// Borrows `len` bytes at `ptr`; empty for a NULL pointer or zero length.
///
/// # Safety
/// `ptr` must be NULL or point to `len` readable bytes that outlive the returned slice.
pub unsafe fn byte_slice<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
    if ptr.is_null() || len == 0 {
        return &[];
    }
    // SAFETY: forwarded from the caller; the pointer is non-null.
    unsafe { std::slice::from_raw_parts(ptr, len) }
}
