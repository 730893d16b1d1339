//! edgefn's own options, carried as `metadata.annotations` so that the object stays a valid
//! Apoxy EdgeFunctionRevision.

use crate::error::{self, FieldError};
use crate::plugin_config::AnyWrapping;
use crate::types::EdgeFunctionRevision;

/// Expected SHA-256 of the fetched artifact, as 64 lower-case hex characters.
pub const SHA256_ANNOTATION: &str = "edgefn.dev/sha256";

/// Wrapping of the plugin config: `struct` (the default) or `typed-struct`, as in
/// [`AnyWrapping`].
pub const PLUGIN_CONFIG_TYPE_ANNOTATION: &str = "edgefn.dev/plugin-config-type";

/// Behaviour of a filter whose revision is not loaded yet because its plugin source is
/// unavailable: `"true"` passes requests through untouched, `"false"` (the default) replies 503.
pub const FAIL_OPEN_ANNOTATION: &str = "edgefn.dev/fail-open";

/// Maximum linear memory of one instance of a wasm revision, in MiB (1 to 4096).
pub const MAX_MEMORY_ANNOTATION: &str = "edgefn.dev/max-memory-mib";

/// The plugin configuration a proxy-wasm filter reads in `proxy_on_configure`, as text.
pub const PROXY_WASM_CONFIGURATION_ANNOTATION: &str = "edgefn.dev/proxy-wasm-configuration";

/// Prefix of edgefn's annotations. Any other key with this prefix is rejected, so that a
/// misspelt option is not ignored.
pub const ANNOTATION_PREFIX: &str = "edgefn.dev/";

const KNOWN_ANNOTATIONS: &[&str] = &[
    SHA256_ANNOTATION,
    PLUGIN_CONFIG_TYPE_ANNOTATION,
    FAIL_OPEN_ANNOTATION,
    MAX_MEMORY_ANNOTATION,
    PROXY_WASM_CONFIGURATION_ANNOTATION,
];

fn annotation_path(name: &str) -> String {
    error::key("metadata.annotations", name)
}

impl EdgeFunctionRevision {
    /// Returns the `edgefn.dev/sha256` annotation, or `None` when it is absent.
    pub fn expected_sha256(&self) -> Result<Option<&str>, FieldError> {
        let Some(value) = self.metadata.annotations.get(SHA256_ANNOTATION) else {
            return Ok(None);
        };

        let is_lower_hex = |c: char| c.is_ascii_digit() || ('a'..='f').contains(&c);
        if value.len() == 64 && value.chars().all(is_lower_hex) {
            Ok(Some(value))
        } else {
            let found = if value.len() == 64 && value.chars().all(|c| c.is_ascii_hexdigit()) {
                "upper-case letters; write the digest in lower case".to_owned()
            } else if value.starts_with("sha256:") {
                "a sha256: prefix; give only the hex digits".to_owned()
            } else {
                format!("{} characters", value.chars().count())
            };
            Err(FieldError::new(
                annotation_path(SHA256_ANNOTATION),
                format!(
                    "invalid SHA-256 {value:?}: expected exactly 64 lower-case hex characters \
                     (found {found})"
                ),
            ))
        }
    }

    /// Returns the `edgefn.dev/plugin-config-type` annotation, [`AnyWrapping::Struct`] when it
    /// is absent.
    pub fn plugin_config_wrapping(&self) -> Result<AnyWrapping, FieldError> {
        let Some(value) = self.metadata.annotations.get(PLUGIN_CONFIG_TYPE_ANNOTATION) else {
            return Ok(AnyWrapping::default());
        };

        AnyWrapping::parse(value).ok_or_else(|| {
            FieldError::new(
                annotation_path(PLUGIN_CONFIG_TYPE_ANNOTATION),
                format!("unsupported value {value:?}, expected struct or typed-struct"),
            )
        })
    }

    /// Returns the `edgefn.dev/fail-open` annotation as a bool, `false` when it is absent.
    /// Only the exact strings `"true"` and `"false"` are accepted.
    pub fn fail_open(&self) -> Result<bool, FieldError> {
        let Some(value) = self.metadata.annotations.get(FAIL_OPEN_ANNOTATION) else {
            return Ok(false);
        };

        match value.as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(FieldError::new(
                annotation_path(FAIL_OPEN_ANNOTATION),
                format!("invalid value {value:?}, expected \"true\" or \"false\""),
            )),
        }
    }
}

impl EdgeFunctionRevision {
    /// Returns the `edgefn.dev/proxy-wasm-configuration` annotation, or `None` when it is
    /// absent.
    pub fn proxy_wasm_configuration(&self) -> Option<&str> {
        self.metadata
            .annotations
            .get(PROXY_WASM_CONFIGURATION_ANNOTATION)
            .map(String::as_str)
    }

    /// Returns the `edgefn.dev/max-memory-mib` annotation in bytes, or `None` when it is
    /// absent.
    pub fn max_memory(&self) -> Result<Option<usize>, FieldError> {
        let Some(value) = self.metadata.annotations.get(MAX_MEMORY_ANNOTATION) else {
            return Ok(None);
        };

        match value.parse::<usize>() {
            Ok(mib @ 1..=4096) => Ok(Some(mib << 20)),
            _ => Err(FieldError::new(
                annotation_path(MAX_MEMORY_ANNOTATION),
                format!("invalid value {value:?}, expected a whole number of MiB from 1 to 4096"),
            )),
        }
    }
}

/// Validates edgefn's annotations on `revision.metadata.annotations` and returns one error per
/// invalid annotation.
pub(crate) fn validate_annotations(revision: &EdgeFunctionRevision) -> Vec<FieldError> {
    let mut errors = Vec::new();

    for name in revision.metadata.annotations.keys() {
        if name.starts_with(ANNOTATION_PREFIX) && !KNOWN_ANNOTATIONS.contains(&name.as_str()) {
            errors.push(FieldError::new(
                annotation_path(name),
                format!(
                    "unknown edgefn annotation, expected one of {}",
                    KNOWN_ANNOTATIONS.join(", ")
                ),
            ));
        }
    }

    if let Err(error) = revision.expected_sha256() {
        errors.push(error);
    }
    if let Err(error) = revision.plugin_config_wrapping() {
        errors.push(error);
    }
    if let Err(error) = revision.fail_open() {
        errors.push(error);
    }
    if let Err(error) = revision.max_memory() {
        errors.push(error);
    }
    errors
}
