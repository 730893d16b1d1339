//! SHA-256 helpers: hex encoding and validation of the digests that callers pin.

use sha2::{Digest, Sha256};

use crate::error::FetchError;

/// Length of a SHA-256 digest in hex digits.
pub(crate) const SHA256_HEX_LEN: usize = 64;

/// Returns the lower-case hex SHA-256 digest of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    finish_hex(Sha256::new().chain_update(bytes))
}

/// Finishes `hasher` and returns the digest as lower-case hex.
pub(crate) fn finish_hex(hasher: Sha256) -> String {
    let digest = hasher.finalize();
    let mut hex = String::with_capacity(SHA256_HEX_LEN);
    for byte in digest {
        hex.push(char::from(HEX_DIGITS[usize::from(byte >> 4)]));
        hex.push(char::from(HEX_DIGITS[usize::from(byte & 0x0f)]));
    }
    hex
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Reports whether `value` is a digest in the form the cache uses: 64 lower-case hex digits.
pub(crate) fn is_sha256_hex(value: &str) -> bool {
    value.len() == SHA256_HEX_LEN
        && value
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Validates a pinned digest and returns its 64 hex digits without the optional `sha256:`
/// prefix.
///
/// Upper-case digits are rejected rather than folded, as the OCI digest grammar does, so that
/// one artifact has exactly one spelling in configuration and in the cache.
pub(crate) fn parse_expected_sha256(value: &str) -> Result<String, FetchError> {
    let hex = value.strip_prefix("sha256:").unwrap_or(value);

    let reason = if hex.len() != SHA256_HEX_LEN {
        Some(format!(
            "it has {} hex digits, expected {SHA256_HEX_LEN}",
            hex.len()
        ))
    } else if hex.bytes().any(|b| b.is_ascii_uppercase()) {
        Some("it contains upper-case letters".to_owned())
    } else if !is_sha256_hex(hex) {
        Some("it contains characters other than 0-9 and a-f".to_owned())
    } else {
        None
    };

    match reason {
        Some(reason) => Err(FetchError::InvalidSha256 {
            value: value.to_owned(),
            reason,
        }),
        None => Ok(hex.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn sha256_of_empty_input() {
        assert_eq!(sha256_hex(b""), EMPTY_SHA256);
    }

    #[test]
    fn expected_sha256_accepts_prefix() {
        let parsed = parse_expected_sha256(&format!("sha256:{EMPTY_SHA256}"));
        assert_eq!(parsed.ok().as_deref(), Some(EMPTY_SHA256));
    }

    #[test]
    fn expected_sha256_rejects_malformed() {
        let cases = [
            EMPTY_SHA256.to_uppercase(),
            EMPTY_SHA256[..63].to_owned(),
            format!("{}g", &EMPTY_SHA256[..63]),
            format!("sha512:{EMPTY_SHA256}"),
            String::new(),
        ];
        for case in cases {
            let result = parse_expected_sha256(&case);
            assert!(
                matches!(result, Err(FetchError::InvalidSha256 { .. })),
                "{case:?} gave {result:?}"
            );
        }
    }
}
