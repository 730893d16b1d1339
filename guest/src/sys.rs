//! The `edgefn` imports, safe wrappers that pass Rust slices to them, and the buffer protocol
//! of the functions that return bytes.
//!
//! Every pointer is an offset in the module's memory and every length is in bytes. On wasm32
//! `usize` and pointers are 32-bit, so they match the `i32` parameters of the imports.

use crate::error::{check, Error};

#[cfg(target_arch = "wasm32")]
mod imports {
    #[link(wasm_import_module = "edgefn")]
    extern "C" {
        pub fn env_get(
            name_ptr: *const u8,
            name_len: usize,
            buf_ptr: *mut u8,
            buf_cap: usize,
        ) -> i32;
    }

    #[link(wasm_import_module = "edgefn")]
    extern "C" {
        pub fn kv_get(key_ptr: *const u8, key_len: usize, buf_ptr: *mut u8, buf_cap: usize) -> i32;
        pub fn kv_put(
            key_ptr: *const u8,
            key_len: usize,
            value_ptr: *const u8,
            value_len: usize,
        ) -> i32;
        pub fn kv_delete(key_ptr: *const u8, key_len: usize) -> i32;
        pub fn kv_list(
            prefix_ptr: *const u8,
            prefix_len: usize,
            buf_ptr: *mut u8,
            buf_cap: usize,
        ) -> i32;
    }

    #[link(wasm_import_module = "edgefn")]
    extern "C" {
        #[allow(clippy::too_many_arguments, reason = "the signature is the host's")]
        pub fn fetch(
            method_ptr: *const u8,
            method_len: usize,
            url_ptr: *const u8,
            url_len: usize,
            headers_ptr: *const u8,
            headers_len: usize,
            body_ptr: *const u8,
            body_len: usize,
        ) -> i32;
        pub fn response_status(handle: i32) -> i32;
        pub fn response_headers(handle: i32, buf_ptr: *mut u8, buf_cap: usize) -> i32;
        pub fn response_body(handle: i32, buf_ptr: *mut u8, buf_cap: usize) -> i32;
        pub fn response_close(handle: i32) -> i32;
    }
}

/// Stand-ins with the signatures of the imports, so that the crate builds and its pure parts
/// run in tests on the build machine. Each returns [`UNSUPPORTED_CODE`].
#[cfg(not(target_arch = "wasm32"))]
mod imports {
    use crate::error::UNSUPPORTED_CODE;

    pub unsafe fn env_get(_: *const u8, _: usize, _: *mut u8, _: usize) -> i32 {
        UNSUPPORTED_CODE
    }

    pub unsafe fn kv_get(_: *const u8, _: usize, _: *mut u8, _: usize) -> i32 {
        UNSUPPORTED_CODE
    }

    pub unsafe fn kv_put(_: *const u8, _: usize, _: *const u8, _: usize) -> i32 {
        UNSUPPORTED_CODE
    }

    pub unsafe fn kv_delete(_: *const u8, _: usize) -> i32 {
        UNSUPPORTED_CODE
    }

    pub unsafe fn kv_list(_: *const u8, _: usize, _: *mut u8, _: usize) -> i32 {
        UNSUPPORTED_CODE
    }

    #[allow(clippy::too_many_arguments, reason = "the signature is the host's")]
    pub unsafe fn fetch(
        _: *const u8,
        _: usize,
        _: *const u8,
        _: usize,
        _: *const u8,
        _: usize,
        _: *const u8,
        _: usize,
    ) -> i32 {
        UNSUPPORTED_CODE
    }

    pub unsafe fn response_status(_: i32) -> i32 {
        UNSUPPORTED_CODE
    }

    pub unsafe fn response_headers(_: i32, _: *mut u8, _: usize) -> i32 {
        UNSUPPORTED_CODE
    }

    pub unsafe fn response_body(_: i32, _: *mut u8, _: usize) -> i32 {
        UNSUPPORTED_CODE
    }

    pub unsafe fn response_close(_: i32) -> i32 {
        UNSUPPORTED_CODE
    }
}

/// The first buffer size for a value of unknown length. A longer value costs one more call.
const INITIAL_CAPACITY: usize = 1024;

/// The maximum number of calls [`read_value`] makes. A second call suffices unless the value
/// grows between the calls, which another request can cause for a key-value entry.
const MAX_READ_ATTEMPTS: usize = 4;

/// Reads a value from a host function that takes a buffer and returns the value's full
/// length. The host copies the value only when it fits, so when the length exceeds the
/// buffer, this calls again with a buffer of that length.
pub(crate) fn read_value(mut call: impl FnMut(&mut [u8]) -> i32) -> Result<Vec<u8>, Error> {
    let mut buffer = vec![0; INITIAL_CAPACITY];
    for _ in 0..MAX_READ_ATTEMPTS {
        let length = check(call(&mut buffer))?;
        if length <= buffer.len() {
            buffer.truncate(length);
            return Ok(buffer);
        }
        buffer.resize(length, 0);
    }
    Err(Error::Malformed(format!(
        "the value's length was still larger than the buffer after {MAX_READ_ATTEMPTS} calls; \
         it kept growing between calls"
    )))
}

pub(crate) fn env_get(name: &str, buffer: &mut [u8]) -> i32 {
    // SAFETY: `name` is readable and `buffer` writable for their lengths during the call, and
    // the host writes at most `buffer.len()` bytes, into `buffer` only.
    unsafe { imports::env_get(name.as_ptr(), name.len(), buffer.as_mut_ptr(), buffer.len()) }
}

pub(crate) fn kv_get(key: &str, buffer: &mut [u8]) -> i32 {
    // SAFETY: `key` is readable and `buffer` writable for their lengths during the call, and
    // the host writes at most `buffer.len()` bytes, into `buffer` only.
    unsafe { imports::kv_get(key.as_ptr(), key.len(), buffer.as_mut_ptr(), buffer.len()) }
}

pub(crate) fn kv_put(key: &str, value: &[u8]) -> i32 {
    // SAFETY: `key` and `value` are readable for their lengths during the call, and the host
    // only reads them.
    unsafe { imports::kv_put(key.as_ptr(), key.len(), value.as_ptr(), value.len()) }
}

pub(crate) fn kv_delete(key: &str) -> i32 {
    // SAFETY: `key` is readable for its length during the call, and the host only reads it.
    unsafe { imports::kv_delete(key.as_ptr(), key.len()) }
}

pub(crate) fn kv_list(prefix: &str, buffer: &mut [u8]) -> i32 {
    // SAFETY: `prefix` is readable and `buffer` writable for their lengths during the call,
    // and the host writes at most `buffer.len()` bytes, into `buffer` only.
    unsafe {
        imports::kv_list(
            prefix.as_ptr(),
            prefix.len(),
            buffer.as_mut_ptr(),
            buffer.len(),
        )
    }
}

pub(crate) fn fetch(method: &str, url: &str, headers: &str, body: &[u8]) -> i32 {
    // SAFETY: the four slices are readable for their lengths during the call, and the host
    // only reads them.
    unsafe {
        imports::fetch(
            method.as_ptr(),
            method.len(),
            url.as_ptr(),
            url.len(),
            headers.as_ptr(),
            headers.len(),
            body.as_ptr(),
            body.len(),
        )
    }
}

pub(crate) fn response_status(handle: i32) -> i32 {
    // SAFETY: the call takes no pointers; an unknown handle gets -1.
    unsafe { imports::response_status(handle) }
}

pub(crate) fn response_headers(handle: i32, buffer: &mut [u8]) -> i32 {
    // SAFETY: `buffer` is writable for its length during the call, and the host writes at
    // most `buffer.len()` bytes, into `buffer` only.
    unsafe { imports::response_headers(handle, buffer.as_mut_ptr(), buffer.len()) }
}

pub(crate) fn response_body(handle: i32, buffer: &mut [u8]) -> i32 {
    // SAFETY: `buffer` is writable for its length during the call, and the host writes at
    // most `buffer.len()` bytes, into `buffer` only.
    unsafe { imports::response_body(handle, buffer.as_mut_ptr(), buffer.len()) }
}

pub(crate) fn response_close(handle: i32) -> i32 {
    // SAFETY: the call takes no pointers; an unknown handle gets -1.
    unsafe { imports::response_close(handle) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host function that returns `value` by the buffer protocol and counts its calls.
    fn fake_host<'a>(value: &'a [u8], calls: &'a mut usize) -> impl FnMut(&mut [u8]) -> i32 + 'a {
        move |buffer: &mut [u8]| {
            *calls += 1;
            if value.len() <= buffer.len() {
                buffer[..value.len()].copy_from_slice(value);
            }
            i32::try_from(value.len()).unwrap()
        }
    }

    #[test]
    fn read_value_short_takes_one_call() {
        let mut calls = 0;
        let value = read_value(fake_host(b"hello", &mut calls));
        assert_eq!(value, Ok(b"hello".to_vec()));
        assert_eq!(calls, 1);
    }

    #[test]
    fn read_value_empty() {
        let mut calls = 0;
        assert_eq!(read_value(fake_host(b"", &mut calls)), Ok(Vec::new()));
    }

    #[test]
    fn read_value_long_calls_again() {
        let long: Vec<u8> = (0..INITIAL_CAPACITY * 3).map(|i| (i % 251) as u8).collect();
        let mut calls = 0;
        let value = read_value(fake_host(&long, &mut calls));
        assert_eq!(value, Ok(long.clone()));
        assert_eq!(calls, 2);
    }

    #[test]
    fn read_value_exact_capacity_takes_one_call() {
        let exact = vec![7; INITIAL_CAPACITY];
        let mut calls = 0;
        let value = read_value(fake_host(&exact, &mut calls));
        assert_eq!(value, Ok(exact.clone()));
        assert_eq!(calls, 1);
    }

    #[test]
    fn read_value_passes_error() {
        assert_eq!(read_value(|_| -1), Err(Error::NotFound));
    }

    #[test]
    fn read_value_gives_up_on_growing_value() {
        let mut calls = 0;
        let result = read_value(|buffer| {
            calls += 1;
            i32::try_from(buffer.len() + 1).unwrap()
        });
        assert!(matches!(result, Err(Error::Malformed(_))), "{result:?}");
        assert_eq!(calls, MAX_READ_ATTEMPTS);
    }

    #[test]
    #[cfg(not(target_arch = "wasm32"))]
    fn stand_ins_report_unsupported() {
        let mut buffer = [0; 8];
        assert_eq!(
            read_value(|buffer| env_get("NAME", buffer)),
            Err(Error::Unsupported)
        );
        assert_eq!(check(kv_put("key", b"value")), Err(Error::Unsupported));
        assert_eq!(
            check(response_body(0, &mut buffer)),
            Err(Error::Unsupported)
        );
    }
}
