//! The revision's key-value store, through the host functions `kv_get`, `kv_put`,
//! `kv_delete` and `kv_list`.
//!
//! The store is scoped to the revision's `metadata.name`, shared by every worker thread of one
//! Envoy process, and kept in memory, so an Envoy restart empties it. Keys are at most 1 KiB,
//! values at most 1 MiB, and one function stores at most 64 MiB in all. edgefn links these
//! functions only when `spec.runtime.capabilities.kv` is true (the default).
//!
//! No call is atomic with another: two requests that read and then write one key can lose an
//! update.

use crate::error::{check, Error};
use crate::sys;

/// Returns the value stored under `key`, or `None` when there is none.
pub fn get(key: &str) -> Result<Option<Vec<u8>>, Error> {
    match sys::read_value(|buffer| sys::kv_get(key, buffer)) {
        Ok(value) => Ok(Some(value)),
        Err(Error::NotFound) => Ok(None),
        Err(error) => Err(error),
    }
}

/// Stores `value` under `key`, replacing any earlier value. Fails with [`Error::TooLarge`] when
/// the key or value is over its limit or the store is full.
pub fn put(key: &str, value: &[u8]) -> Result<(), Error> {
    check(sys::kv_put(key, value))?;
    Ok(())
}

/// Deletes `key`. Returns whether the key existed.
pub fn delete(key: &str) -> Result<bool, Error> {
    match check(sys::kv_delete(key)) {
        Ok(_) => Ok(true),
        Err(Error::NotFound) => Ok(false),
        Err(error) => Err(error),
    }
}

/// Returns the keys that start with `prefix`, sorted. An empty prefix lists every key.
pub fn list(prefix: &str) -> Result<Vec<String>, Error> {
    let encoded = sys::read_value(|buffer| sys::kv_list(prefix, buffer))?;
    decode_key_list(&encoded)
}

/// Decodes the output of `kv_list`: each key as a little-endian `u32` length followed by the
/// key's bytes.
fn decode_key_list(mut encoded: &[u8]) -> Result<Vec<String>, Error> {
    let mut keys = Vec::new();
    while !encoded.is_empty() {
        let index = keys.len();

        let Some((length, rest)) = encoded.split_first_chunk::<4>() else {
            return Err(Error::Malformed(format!(
                "kv_list output ends inside the length of key {index} ({} of 4 bytes)",
                encoded.len()
            )));
        };
        let length = u32::from_le_bytes(*length) as usize;
        if length > rest.len() {
            return Err(Error::Malformed(format!(
                "kv_list output declares key {index} as {length} bytes, but only {} follow",
                rest.len()
            )));
        }

        let (key, rest) = rest.split_at(length);
        let key = String::from_utf8(key.to_vec()).map_err(|_| {
            Error::Malformed(format!("kv_list output has key {index} that is not UTF-8"))
        })?;
        keys.push(key);
        encoded = rest;
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(keys: &[&str]) -> Vec<u8> {
        let mut encoded = Vec::new();
        for key in keys {
            encoded.extend_from_slice(&(key.len() as u32).to_le_bytes());
            encoded.extend_from_slice(key.as_bytes());
        }
        encoded
    }

    #[test]
    fn decode_empty_list() {
        assert_eq!(decode_key_list(&[]), Ok(Vec::new()));
    }

    #[test]
    fn decode_keys_in_order() {
        let keys = ["a", "", "counter/ü", "b".repeat(300).leak()];
        let decoded = decode_key_list(&encode(&keys)).unwrap();
        assert_eq!(decoded, keys);
    }

    #[test]
    fn decode_rejects_truncated_length() {
        let mut encoded = encode(&["a"]);
        encoded.extend_from_slice(&[1, 0]);
        let error = decode_key_list(&encoded).unwrap_err();
        assert!(error.to_string().contains("key 1"), "{error}");
    }

    #[test]
    fn decode_rejects_truncated_key() {
        let mut encoded = encode(&["abc"]);
        encoded.pop();
        let error = decode_key_list(&encoded).unwrap_err();
        assert!(error.to_string().contains("3 bytes, but only 2"), "{error}");
    }

    #[test]
    fn decode_rejects_non_utf8_key() {
        let encoded = [2, 0, 0, 0, 0xff, 0xfe];
        let error = decode_key_list(&encoded).unwrap_err();
        assert!(error.to_string().contains("not UTF-8"), "{error}");
    }

    #[test]
    #[cfg(not(target_arch = "wasm32"))]
    fn calls_without_host_are_unsupported() {
        assert_eq!(get("key"), Err(Error::Unsupported));
        assert_eq!(put("key", b"1"), Err(Error::Unsupported));
        assert_eq!(delete("key"), Err(Error::Unsupported));
        assert_eq!(list(""), Err(Error::Unsupported));
    }
}
