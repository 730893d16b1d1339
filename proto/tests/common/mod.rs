//! Helpers shared by the integration tests.

#![allow(
    dead_code,
    reason = "each test binary uses a different subset of the helpers"
)]

use edgefn_proto::{parse_revision, EdgeFunctionRevision, FieldError};
use serde_json::{json, Value};

/// Returns a valid bare spec of a Go plugin fetched by URL.
pub fn go_url_spec() -> Value {
    json!({
        "mode": "filter",
        "code": {"goPluginSource": {"url": "https://example.com/plugin.so"}}
    })
}

/// Returns a valid bare spec of a Go plugin fetched from an OCI registry.
pub fn go_oci_spec() -> Value {
    json!({
        "mode": "filter",
        "code": {"goPluginSource": {"oci": {"repo": "ghcr.io/example/plugin", "tag": "v1"}}}
    })
}

/// Returns a valid bare spec of a JavaScript backend given as inline assets.
pub fn js_assets_spec() -> Value {
    json!({
        "mode": "backend",
        "code": {"jsSource": {
            "entrypoint": "main.ts",
            "assets": {"files": [
                {"path": "main.ts", "content": "Deno.serve(() => new Response())"}
            ]}
        }}
    })
}

/// Returns a valid bare spec of a WebAssembly module.
pub fn wasm_spec() -> Value {
    json!({"code": {"wasmSource": {"url": "https://example.com/fn.wasm"}}})
}

/// Wraps a bare spec into a whole object named `name`.
pub fn object(spec: Value, name: &str) -> Value {
    json!({
        "apiVersion": "extensions.apoxy.dev/v1alpha2",
        "kind": "EdgeFunctionRevision",
        "metadata": {"name": name},
        "spec": spec
    })
}

/// Parses `text`, panicking with the error when it is rejected.
pub fn accept(text: &str) -> EdgeFunctionRevision {
    match parse_revision(text) {
        Ok(revision) => revision,
        Err(error) => panic!("expected {text} to be accepted, got: {error}"),
    }
}

/// Parses a JSON document, panicking with the error when it is rejected.
pub fn accept_json(document: &Value) -> EdgeFunctionRevision {
    accept(&document.to_string())
}

/// Parses `text` and returns its field errors, panicking when it is accepted.
pub fn reject(text: &str) -> Vec<FieldError> {
    match parse_revision(text) {
        Ok(revision) => panic!("expected {text} to be rejected, got: {revision:?}"),
        Err(error) => error.field_errors().to_vec(),
    }
}

/// Parses a JSON document and returns its field errors, panicking when it is accepted.
pub fn reject_json(document: &Value) -> Vec<FieldError> {
    reject(&document.to_string())
}

/// Builds one expected field error.
pub fn field_error(path: &str, message: &str) -> FieldError {
    FieldError::new(path, message)
}

/// Returns the paths of `errors`, for tests that check only which fields were rejected.
pub fn paths(errors: &[FieldError]) -> Vec<&str> {
    errors.iter().map(|error| error.path.as_str()).collect()
}
