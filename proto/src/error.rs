//! Errors of parsing and validating an EdgeFunctionRevision.

use std::fmt;

/// One rejected field: its path in the object and what was expected there.
///
/// Paths use the Kubernetes field path notation: `spec.env[2].name`, and
/// `metadata.annotations[edgefn.dev/sha256]` for a map key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct FieldError {
    /// Field path, such as `spec.code.goPluginSource.url`.
    pub path: String,
    /// Description of the problem and of the expected value.
    pub message: String,
}

impl FieldError {
    /// Creates a field error from a path and a message.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Error of [`crate::parse_revision`] and [`crate::decode_revision`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RevisionError {
    /// The text is neither valid JSON nor valid YAML.
    #[error("EdgeFunctionRevision is not valid {format}: {message}; fix the syntax and retry")]
    Syntax {
        /// `JSON` or `YAML`: the format the text was read as when it failed.
        format: &'static str,
        /// Parser message, with the line and column where known.
        message: String,
    },

    /// The document parsed, but one or more fields are invalid.
    #[error("invalid EdgeFunctionRevision: {}", FieldErrorList(errors))]
    Invalid {
        /// Every rejected field of the object, one entry per field and cause.
        errors: Vec<FieldError>,
    },
}

impl RevisionError {
    /// Returns the rejected fields, or an empty slice for a syntax error.
    pub fn field_errors(&self) -> &[FieldError] {
        match self {
            RevisionError::Syntax { .. } => &[],
            RevisionError::Invalid { errors } => errors,
        }
    }
}

impl From<Vec<FieldError>> for RevisionError {
    fn from(errors: Vec<FieldError>) -> Self {
        RevisionError::Invalid { errors }
    }
}

impl From<FieldError> for RevisionError {
    fn from(error: FieldError) -> Self {
        RevisionError::Invalid {
            errors: vec![error],
        }
    }
}

/// Formats field errors as `path: message; path: message`.
pub struct FieldErrorList<'a>(pub &'a [FieldError]);

impl fmt::Display for FieldErrorList<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                formatter.write_str("; ")?;
            }
            write!(formatter, "{error}")?;
        }
        Ok(())
    }
}

/// Appends `.field` to a field path.
pub(crate) fn child(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

/// Appends `[index]` to a field path.
pub(crate) fn index(path: &str, index: usize) -> String {
    format!("{path}[{index}]")
}

/// Appends a map key to a field path: `.key` for a plain key, `[key]` for a key that contains
/// other characters than letters, digits, `_` and `-` (such as `edgefn.dev/sha256`).
pub(crate) fn key(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if plain {
        child(path, key)
    } else {
        format!("{path}[{key}]")
    }
}
