//! Reading an EdgeFunctionRevision from JSON or YAML text.

use serde_json::{Map, Value as Json};
use serde_path_to_error::Segment;

use crate::defaults::apply_defaults;
use crate::document::{json_type_name, parse_json_or_yaml};
use crate::error::{self, FieldError, RevisionError};
use crate::types::{EdgeFunctionRevision, API_VERSION, KIND};
use crate::validate::validate_revision;

/// Top-level keys of a whole object. A mapping with none of them is read as a bare spec.
const OBJECT_KEYS: &[&str] = &["apiVersion", "kind", "metadata", "spec", "status"];

/// Parses, defaults and validates an EdgeFunctionRevision.
///
/// `text` is JSON, or YAML when it is not valid JSON. It is either a whole object (with any of
/// `apiVersion`, `kind`, `metadata`, `spec`, `status`) or a bare spec (`mode`, `code`, …).
/// `apiVersion` and `kind` must be `extensions.apoxy.dev/v1alpha2` and `EdgeFunctionRevision`
/// when present, and are set to those values when absent. The error lists every invalid field.
pub fn parse_revision(text: &str) -> Result<EdgeFunctionRevision, RevisionError> {
    let mut revision = decode_revision(text)?;
    apply_defaults(&mut revision.spec);
    validate_revision(&revision)?;
    Ok(revision)
}

/// Parses an EdgeFunctionRevision like [`parse_revision`], but neither defaults nor validates
/// it. Wrong types and unknown fields inside `spec` are still rejected, except unknown keys of
/// `spec.code.metadata`, which [`crate::validate_revision`] rejects.
pub fn decode_revision(text: &str) -> Result<EdgeFunctionRevision, RevisionError> {
    let document = parse_json_or_yaml(text).map_err(|error| RevisionError::Syntax {
        format: error.format,
        message: error.message,
    })?;
    let mut object = into_object(document)?;
    check_type_meta(&object)?;
    rename_legacy_url_key(&mut object)?;

    let mut revision: EdgeFunctionRevision =
        serde_path_to_error::deserialize(Json::Object(object)).map_err(to_field_error)?;
    if revision.api_version.is_empty() {
        revision.api_version = API_VERSION.to_owned();
    }
    if revision.kind.is_empty() {
        revision.kind = KIND.to_owned();
    }
    Ok(revision)
}

/// Returns `metadata.name` of a document that may be invalid in other ways, so that an error
/// about it can name it; `None` when the text is not JSON or YAML or has no such name.
pub fn revision_name_hint(text: &str) -> Option<String> {
    let document = parse_json_or_yaml(text).ok()?;
    let name = document.get("metadata")?.get("name")?.as_str()?;
    (!name.is_empty()).then(|| name.to_owned())
}

/// Returns the document as a whole object, wrapping a bare spec in `{"spec": …}`.
fn into_object(document: Json) -> Result<Map<String, Json>, FieldError> {
    let Json::Object(object) = document else {
        return Err(FieldError::new(
            "revision",
            format!(
                "expected a mapping (an EdgeFunctionRevision object or its spec), found {}",
                json_type_name(&document)
            ),
        ));
    };

    let is_whole_object = object.keys().any(|key| OBJECT_KEYS.contains(&key.as_str()));
    if is_whole_object {
        return Ok(object);
    }
    let mut wrapped = Map::new();
    wrapped.insert("spec".to_owned(), Json::Object(object));
    Ok(wrapped)
}

/// Checks `apiVersion` and `kind` before the rest, because another version's fields would only
/// produce confusing unknown-field errors.
fn check_type_meta(object: &Map<String, Json>) -> Result<(), Vec<FieldError>> {
    let mut errors = Vec::new();

    for (field, expected) in [("apiVersion", API_VERSION), ("kind", KIND)] {
        match object.get(field) {
            None => {}
            Some(Json::String(value)) if value == expected => {}
            Some(Json::String(value)) => errors.push(FieldError::new(
                field,
                format!("unsupported value {value:?}, expected {expected}"),
            )),
            Some(other) => errors.push(FieldError::new(
                field,
                format!(
                    "expected the string {expected}, found {}",
                    json_type_name(other)
                ),
            )),
        }
    }

    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Key under which Apoxy releases from January to October 2025 wrote `goPluginSource.url`, a
/// typo in the Go struct tag. Stored objects from then may still carry it, as `null` when the
/// source was OCI.
const LEGACY_URL_KEY: &str = "url.omitempty";

/// Moves `spec.code.goPluginSource["url.omitempty"]` to `url`.
fn rename_legacy_url_key(object: &mut Map<String, Json>) -> Result<(), FieldError> {
    let source = object
        .get_mut("spec")
        .and_then(|spec| spec.get_mut("code"))
        .and_then(|code| code.get_mut("goPluginSource"))
        .and_then(Json::as_object_mut);
    let Some(source) = source else {
        return Ok(());
    };
    let Some(legacy_url) = source.remove(LEGACY_URL_KEY) else {
        return Ok(());
    };

    if legacy_url.is_null() {
        return Ok(());
    }
    if source.get("url").is_some_and(|url| !url.is_null()) {
        return Err(FieldError::new(
            error::key("spec.code.goPluginSource", LEGACY_URL_KEY),
            "old spelling of url, and url is set too; keep only url",
        ));
    }
    source.insert("url".to_owned(), legacy_url);
    Ok(())
}

/// Turns a serde error into a field error. For an unknown field the path ends with that field,
/// and serde's message is rewritten as a plain list of the expected fields.
fn to_field_error(error: serde_path_to_error::Error<serde_json::Error>) -> FieldError {
    let mut path = String::new();
    for segment in error.path() {
        path = match segment {
            Segment::Seq { index } => error::index(&path, *index),
            Segment::Map { key } | Segment::Enum { variant: key } => error::key(&path, key),
            Segment::Unknown => path,
        };
    }
    let message = error.into_inner().to_string();

    if path.is_empty() {
        path = "revision".to_owned();
    }
    match expected_fields(&message) {
        Some(expected) => FieldError::new(path, format!("unknown field, {expected}")),
        None => FieldError::new(path, message),
    }
}

/// Returns the "expected …" part of serde's "unknown field `name`, expected …" message, without
/// backticks.
fn expected_fields(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (_, expected) = rest.split_once("`, ")?;
    Some(expected.replace('`', ""))
}
