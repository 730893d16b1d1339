//! Validation of an EdgeFunctionRevision.
//!
//! Every check adds to one list, so a caller can report every invalid field of an object at
//! once. Paths use Kubernetes field path notation (`spec.env[1].name`).

use std::collections::HashMap;

use crate::annotations::validate_annotations;
use crate::duration::parse_go_duration;
use crate::error::{child, index, key, FieldError};
use crate::meta::{ObjectMeta, OTHER_OBJECT_META_FIELDS, TYPED_OBJECT_META_FIELDS};
use crate::plugin_config::parse_plugin_config;
use crate::types::{
    EdgeFunctionMode, EdgeFunctionRevision, EdgeFunctionRevisionSpec, EdgeFunctionRuntime, EnvVar,
    GoPluginSource, JavaScriptSource, OciImageRef,
};

/// Validates a whole revision: its spec (see [`validate_spec`]) and edgefn's annotations.
pub fn validate_revision(revision: &EdgeFunctionRevision) -> Result<(), Vec<FieldError>> {
    let mut errors = validate_annotations(revision);
    let names = [
        ("metadata.name", &revision.metadata.name),
        ("spec.code.metadata.name", &revision.spec.code.metadata.name),
    ];
    for (path, name) in names {
        if let Some(message) = invalid_name(name) {
            errors.push(FieldError::new(path, message));
        }
    }
    if let Err(spec_errors) = validate_spec(&revision.spec) {
        errors.extend(spec_errors);
    }
    into_result(errors)
}

/// Maximum object name length in bytes, as for Kubernetes object names.
const MAX_NAME_LEN: usize = 253;

/// Checks a revision or plugin name that ends up in logs and in the C string handed to Go:
/// no control characters (they could forge log lines) and at most 253 bytes.
fn invalid_name(name: &str) -> Option<String> {
    if name.chars().any(char::is_control) {
        return Some("must not contain control characters (such as newline or NUL)".to_owned());
    }
    if name.len() > MAX_NAME_LEN {
        return Some(format!(
            "must be at most {MAX_NAME_LEN} bytes, found {}",
            name.len()
        ));
    }
    None
}

/// Validates a spec, defaulted or not, and returns every invalid field.
///
/// An empty mode is judged as the mode that [`crate::apply_defaults`] would choose, and an
/// absent backend port or OCI tag is accepted because defaulting fills it.
pub fn validate_spec(spec: &EdgeFunctionRevisionSpec) -> Result<(), Vec<FieldError>> {
    let mut errors = Errors::default();

    let mode = validate_mode(spec, &mut errors);
    validate_sources(spec, mode, &mut errors);
    validate_object_meta_keys(&spec.code.metadata, "spec.code.metadata", &mut errors);
    validate_env(&spec.env, &mut errors);
    if let Some(runtime) = &spec.runtime {
        validate_runtime(runtime, mode, &mut errors);
    }

    into_result(errors.0)
}

#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(path, message));
    }
}

fn into_result(errors: Vec<FieldError>) -> Result<(), Vec<FieldError>> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Checks `mode` and returns the mode the spec runs in, or `None` when it is invalid.
fn validate_mode(spec: &EdgeFunctionRevisionSpec, errors: &mut Errors) -> Option<EdgeFunctionMode> {
    if spec.mode.is_empty() {
        return Some(if spec.code.go_plugin_source.is_some() {
            EdgeFunctionMode::Filter
        } else {
            EdgeFunctionMode::Backend
        });
    }

    let mode = EdgeFunctionMode::parse(&spec.mode);
    if mode.is_none() {
        errors.push(
            "spec.mode",
            format!(
                "unsupported value {:?}, expected filter or backend",
                spec.mode
            ),
        );
    }
    mode
}

fn validate_sources(
    spec: &EdgeFunctionRevisionSpec,
    mode: Option<EdgeFunctionMode>,
    errors: &mut Errors,
) {
    let code = &spec.code;
    let set: Vec<&str> = [
        ("goPluginSource", code.go_plugin_source.is_some()),
        ("wasmSource", code.wasm_source.is_some()),
        ("jsSource", code.js_source.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, is_set)| is_set.then_some(name))
    .collect();
    if set.len() != 1 {
        errors.push(
            "spec.code",
            format!(
                "exactly one of goPluginSource, wasmSource or jsSource must be set, found {}",
                describe_set(&set)
            ),
        );
    }

    if let Some(source) = &code.go_plugin_source {
        if mode == Some(EdgeFunctionMode::Backend) {
            errors.push(
                "spec.code.goPluginSource",
                "only allowed in filter mode, but spec.mode is backend; set spec.mode to filter",
            );
        }
        validate_go_plugin_source(source, errors);
    }
    if let Some(source) = &code.wasm_source {
        validate_location(&source.url, "spec.code.wasmSource.url", errors);
    }
    if let Some(source) = &code.js_source {
        validate_js_source(source, errors);
    }
}

fn describe_set(names: &[&str]) -> String {
    match names {
        [] => "none".to_owned(),
        [only] => (*only).to_owned(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

fn validate_go_plugin_source(source: &GoPluginSource, errors: &mut Errors) {
    const PATH: &str = "spec.code.goPluginSource";

    match (&source.url, &source.oci) {
        (Some(_), Some(_)) => {
            errors.push(PATH, "exactly one of url or oci must be set, found both")
        }
        (None, None) => errors.push(PATH, "exactly one of url or oci must be set, found neither"),
        _ => {}
    }
    if let Some(url) = &source.url {
        validate_location(url, &child(PATH, "url"), errors);
    }
    if let Some(oci) = &source.oci {
        validate_oci(oci, &child(PATH, "oci"), errors);
    }

    if let Err(error) = parse_plugin_config(&source.plugin_config) {
        errors.0.push(error);
    }
}

fn validate_oci(oci: &OciImageRef, path: &str, errors: &mut Errors) {
    if oci.repo.is_empty() {
        errors.push(
            child(path, "repo"),
            "required: the image repository, such as ghcr.io/example/plugin",
        );
    }

    if oci.credentials.is_some() && oci.credentials_ref.is_some() {
        errors.push(
            path,
            "credentials and credentialsRef are mutually exclusive; set only one of them",
        );
    }

    let password_data = oci
        .credentials
        .as_ref()
        .and_then(|credentials| credentials.password_data.as_ref());
    if let Some(password_data) = password_data {
        // The message leaves out the decoder's detail because it quotes the secret's bytes.
        if password_data.decode().is_err() {
            errors.push(
                child(path, "credentials.passwordData"),
                "invalid base64: expected standard base64 with padding (RFC 4648 section 4)",
            );
        }
    }
}

/// Checks a URL of an artifact: an http, https or file URL, or an absolute path.
fn validate_location(location: &str, path: &str, errors: &mut Errors) {
    const EXPECTED: &str = "expected an http, https or file URL, or an absolute path";

    if location.is_empty() {
        errors.push(path, format!("required: {EXPECTED}"));
        return;
    }
    if location.starts_with('/') {
        return;
    }

    match url::Url::parse(location) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https" | "file") => {}
        Ok(parsed) => errors.push(
            path,
            format!("unsupported URL scheme {:?}: {EXPECTED}", parsed.scheme()),
        ),
        Err(error) => errors.push(
            path,
            format!("invalid URL {location:?} ({error}): {EXPECTED}"),
        ),
    }
}

fn validate_js_source(source: &JavaScriptSource, errors: &mut Errors) {
    const PATH: &str = "spec.code.jsSource";

    if source.entrypoint.is_empty() {
        errors.push(
            child(PATH, "entrypoint"),
            "required: the path of the entry module, such as index.ts",
        );
    } else if let Err(problem) = check_relative_path(&source.entrypoint) {
        errors.push(child(PATH, "entrypoint"), problem);
    }

    let set: Vec<&str> = [
        ("assets", source.assets.is_some()),
        ("git", source.git.is_some()),
        ("npm", source.npm.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, is_set)| is_set.then_some(name))
    .collect();
    if set.len() != 1 {
        errors.push(
            PATH,
            format!(
                "exactly one of assets, git or npm must be set, found {}",
                describe_set(&set)
            ),
        );
    }

    if let Some(assets) = &source.assets {
        let files_path = child(PATH, "assets.files");
        if assets.files.is_empty() {
            errors.push(&files_path, "must contain at least one file");
        }
        for (position, file) in assets.files.iter().enumerate() {
            let file_path = index(&files_path, position);
            if file.path.is_empty() {
                errors.push(child(&file_path, "path"), "required: a relative file path");
            } else if let Err(problem) = check_relative_path(&file.path) {
                errors.push(child(&file_path, "path"), problem);
            }
            if file.content.is_empty() {
                errors.push(child(&file_path, "content"), "required: the file content");
            }
        }
    }
    if let Some(git) = &source.git {
        if git.repository.is_empty() {
            errors.push(
                child(PATH, "git.repository"),
                "required: the git repository URL",
            );
        }
    }
    if let Some(npm) = &source.npm {
        if npm.package.is_empty() {
            errors.push(child(PATH, "npm.package"), "required: the npm package name");
        }
    }
}

/// Accepts a relative path without any `..` component. This is stricter than Apoxy, which
/// accepts an already clean `../x`.
fn check_relative_path(file_path: &str) -> Result<(), String> {
    if file_path.starts_with('/') {
        return Err(format!(
            "absolute path {file_path:?}: expected a path relative to the source root"
        ));
    }
    if file_path.split('/').any(|component| component == "..") {
        return Err(format!(
            "path {file_path:?} contains a \"..\" component: expected a path inside the source \
             root"
        ));
    }
    Ok(())
}

fn validate_env(env: &[EnvVar], errors: &mut Errors) {
    let mut first_position: HashMap<&str, usize> = HashMap::new();

    for (position, variable) in env.iter().enumerate() {
        let path = index("spec.env", position);
        let name = variable.name.as_str();

        if name.is_empty() {
            errors.push(child(&path, "name"), "required: the variable name");
        } else if name.contains(['=', '\0']) {
            errors.push(
                child(&path, "name"),
                format!("invalid name {name:?}: must not contain '=' or NUL"),
            );
        } else if let Some(first) = first_position.get(name) {
            errors.push(
                child(&path, "name"),
                format!("duplicate name {name:?}, first set at spec.env[{first}]"),
            );
        } else {
            first_position.insert(name, position);
        }

        if variable.value.contains('\0') {
            errors.push(child(&path, "value"), "must not contain NUL");
        }
    }
}

fn validate_runtime(
    runtime: &EdgeFunctionRuntime,
    mode: Option<EdgeFunctionMode>,
    errors: &mut Errors,
) {
    if let Some(port) = runtime.port {
        if mode == Some(EdgeFunctionMode::Filter) {
            errors.push(
                "spec.runtime.port",
                "must not be set in filter mode: a filter runs inside the proxy and listens on \
                 no port",
            );
        } else if !(1..=65535).contains(&port) {
            errors.push(
                "spec.runtime.port",
                format!("invalid port {port}: expected 1 to 65535"),
            );
        }
    }

    if let Some(timeout) = &runtime.timeout {
        match parse_go_duration(timeout) {
            Ok(duration) if duration.is_zero() => errors.push(
                "spec.runtime.timeout",
                format!("invalid timeout {timeout:?}: must be greater than zero"),
            ),
            Ok(_) => {}
            Err(error) => errors.push("spec.runtime.timeout", error.to_string()),
        }
    }
}

/// Rejects keys of an ObjectMeta inside `spec` that are not `metav1.ObjectMeta` fields.
fn validate_object_meta_keys(metadata: &ObjectMeta, path: &str, errors: &mut Errors) {
    for name in metadata.other.keys() {
        if !OTHER_OBJECT_META_FIELDS.contains(&name.as_str()) {
            let expected: Vec<&str> = TYPED_OBJECT_META_FIELDS
                .iter()
                .chain(OTHER_OBJECT_META_FIELDS)
                .copied()
                .collect();
            errors.push(
                key(path, name),
                format!("unknown field, expected one of {}", expected.join(", ")),
            );
        }
    }
}
