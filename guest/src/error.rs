//! The error codes of the `edgefn` host functions.

use std::fmt;

/// A code that no edgefn host returns. The stand-ins for the host functions on targets other
/// than wasm32 return it, and [`Error::from_code`] maps it to [`Error::Unsupported`].
pub(crate) const UNSUPPORTED_CODE: i32 = i32::MIN;

/// An error from an `edgefn` host function, or from this crate's use of one.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// Code -1 (`NOT_FOUND`): no such variable, key or response handle.
    NotFound,
    /// Code -2 (`INVALID`): a pointer or length outside memory, text that is not UTF-8, or a
    /// bad URL, method or header. This crate also returns it for a header that would break
    /// the line encoding: a line break in it, or a name that is empty or has `:` or whitespace.
    Invalid,
    /// Code -3 (`TOO_LARGE`): a key, value, request or response over its limit.
    TooLarge,
    /// Code -4 (`FAILED`): the outbound request failed (connection refused, TLS, protocol).
    Failed,
    /// Code -5 (`TIMED_OUT`): the outbound request did not finish before the function's
    /// deadline.
    TimedOut,
    /// Code -6 (`DENIED`): a URL scheme other than `http` or `https`.
    Denied,
    /// A negative code this crate does not know, from a newer host.
    Unknown(i32),
    /// The host functions are missing because the code does not run as a wasm32 module.
    Unsupported,
    /// The host returned bytes that do not follow the documented encoding. The text names
    /// the part.
    Malformed(String),
}

impl Error {
    /// Maps a negative host result to its error.
    pub fn from_code(code: i32) -> Error {
        match code {
            -1 => Error::NotFound,
            -2 => Error::Invalid,
            -3 => Error::TooLarge,
            -4 => Error::Failed,
            -5 => Error::TimedOut,
            -6 => Error::Denied,
            UNSUPPORTED_CODE => Error::Unsupported,
            other => Error::Unknown(other),
        }
    }

    /// Returns the host's code for this error, or `None` for the errors this crate raises
    /// itself.
    pub fn code(&self) -> Option<i32> {
        match self {
            Error::NotFound => Some(-1),
            Error::Invalid => Some(-2),
            Error::TooLarge => Some(-3),
            Error::Failed => Some(-4),
            Error::TimedOut => Some(-5),
            Error::Denied => Some(-6),
            Error::Unknown(code) => Some(*code),
            Error::Unsupported | Error::Malformed(_) => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotFound => f.write_str("not found: no such variable, key or response handle"),
            Error::Invalid => f.write_str(
                "invalid argument: a pointer or length outside memory, text that is not UTF-8, \
                 or a bad URL, method or header; check the values passed to the call",
            ),
            Error::TooLarge => f.write_str(
                "too large: a key (max 1 KiB), value (max 1 MiB), request or response is over \
                 its edgefn limit, or the store is full",
            ),
            Error::Failed => f.write_str(
                "outbound request failed (connection refused, TLS or protocol error); check \
                 that the URL's server is reachable from Envoy",
            ),
            Error::TimedOut => f.write_str(
                "outbound request timed out: it did not finish before the function's deadline \
                 (spec.runtime.timeout)",
            ),
            Error::Denied => {
                f.write_str("denied: edgefn fetches only http and https URLs; change the scheme")
            }
            Error::Unknown(code) => write!(
                f,
                "edgefn returned the unknown error code {code}; use an edgefn-guest that \
                 matches the host's version"
            ),
            Error::Unsupported => f.write_str(
                "edgefn host functions are missing: they exist only in a wasm32 module that \
                 edgefn runs",
            ),
            Error::Malformed(what) => write!(f, "edgefn returned malformed data: {what}"),
        }
    }
}

impl std::error::Error for Error {}

/// Converts a host result to `Ok(length or handle)` when it is 0 or more, else to its error.
pub(crate) fn check(result: i32) -> Result<usize, Error> {
    match usize::try_from(result) {
        Ok(value) => Ok(value),
        Err(_) => Err(Error::from_code(result)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_code_maps_documented_codes() {
        let cases = [
            (-1, Error::NotFound),
            (-2, Error::Invalid),
            (-3, Error::TooLarge),
            (-4, Error::Failed),
            (-5, Error::TimedOut),
            (-6, Error::Denied),
        ];
        for (code, expected) in cases {
            assert_eq!(Error::from_code(code), expected, "code {code}");
        }
    }

    #[test]
    fn from_code_keeps_unknown_code() {
        assert_eq!(Error::from_code(-7), Error::Unknown(-7));
    }

    #[test]
    fn from_code_maps_stand_in_code() {
        assert_eq!(Error::from_code(UNSUPPORTED_CODE), Error::Unsupported);
    }

    #[test]
    fn code_round_trips() {
        for code in -7..=-1 {
            assert_eq!(Error::from_code(code).code(), Some(code), "code {code}");
        }
    }

    #[test]
    fn check_passes_zero_and_positive() {
        assert_eq!(check(0), Ok(0));
        assert_eq!(check(17), Ok(17));
    }

    #[test]
    fn check_maps_negative() {
        assert_eq!(check(-5), Err(Error::TimedOut));
    }

    #[test]
    fn display_names_condition() {
        assert!(Error::Denied.to_string().contains("http and https"));
        assert!(Error::Unknown(-9).to_string().contains("-9"));
        assert!(Error::Malformed("key 2".into())
            .to_string()
            .contains("key 2"));
    }
}
