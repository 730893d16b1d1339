//! The revision's `spec.env` variables, through the host function `env_get`.
//!
//! A backend function also gets them in its WASI environment (`std::env::var`), where the CGI
//! variables overwrite an entry of the same name; `env_get` returns the `spec.env` value.

use crate::sys;

/// Returns the value of the `spec.env` variable `name`.
///
/// Returns `None` when the variable is missing, when its value is not UTF-8, and when the host
/// call fails (always on targets other than wasm32).
pub fn get(name: &str) -> Option<String> {
    let value = sys::read_value(|buffer| sys::env_get(name, buffer)).ok()?;
    String::from_utf8(value).ok()
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(not(target_arch = "wasm32"))]
    fn get_without_host_is_none() {
        assert_eq!(super::get("GREETING"), None);
    }
}
