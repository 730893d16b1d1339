//! The edgefunctionrevisions resource: its names, how request bodies become stored objects, and
//! how stored objects become response bodies.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use edgefn_proto::{EdgeFunctionRevision, FieldError, RevisionError};
use serde_json::{json, Value as Json};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::secrets;
use crate::status::ApiError;

/// API group of the resource.
pub const GROUP: &str = "extensions.apoxy.dev";
/// API version of the resource within [`GROUP`].
pub const VERSION: &str = "v1alpha2";
/// `apiVersion` of the objects.
pub const GROUP_VERSION: &str = edgefn_proto::API_VERSION;
/// Kind of one object.
pub const KIND: &str = edgefn_proto::KIND;
/// Kind of a list of objects.
pub const LIST_KIND: &str = "EdgeFunctionRevisionList";
/// Plural resource name, as in the URL.
pub const RESOURCE: &str = "edgefunctionrevisions";
/// Singular resource name.
pub const SINGULAR: &str = "edgefunctionrevision";
/// Path of the collection.
pub const COLLECTION_PATH: &str = "/apis/extensions.apoxy.dev/v1alpha2/edgefunctionrevisions";

/// Maximum length of `metadata.name`, as for a DNS subdomain.
const MAX_NAME_LENGTH: usize = 253;

/// Characters of the suffix that `generateName` gets, as Kubernetes uses: no vowels, so that
/// no words form, and no look-alike characters.
const NAME_SUFFIX_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
const NAME_SUFFIX_LENGTH: usize = 5;

/// Returns a JSON response.
pub fn json_response(code: StatusCode, body: &Json) -> Response {
    let mut response = (code, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Returns the response form of a stored object: the same object without its password.
pub fn present(object: &EdgeFunctionRevision) -> Json {
    let mut object = object.clone();
    secrets::redact(&mut object);
    serde_json::to_value(&object).unwrap_or_else(|error| {
        // serde_json fails only on maps with non-string keys, and these types have none.
        tracing::error!(%error, name = %object.metadata.name, "serializing an object failed");
        Json::Null
    })
}

/// Returns an `EdgeFunctionRevisionList` of `items`, without passwords.
pub fn present_list(items: &[EdgeFunctionRevision], revision: u64, next: Option<String>) -> Json {
    let mut metadata = json!({ "resourceVersion": revision.to_string() });
    if let Some(next) = next {
        metadata["continue"] = json!(next);
    }
    json!({
        "apiVersion": GROUP_VERSION,
        "kind": LIST_KIND,
        "metadata": metadata,
        "items": items.iter().map(present).collect::<Vec<_>>(),
    })
}

/// Returns the current time as RFC 3339 in UTC with whole seconds, as Kubernetes writes it.
pub fn now_rfc3339() -> String {
    let now = OffsetDateTime::now_utc();
    let now = now.replace_nanosecond(0).unwrap_or(now);
    now.format(&Rfc3339).unwrap_or_default()
}

/// Returns `prefix` followed by five random characters.
pub fn generate_name(prefix: &str) -> String {
    let random = uuid::Uuid::new_v4();
    let suffix: String = random.as_bytes()[..NAME_SUFFIX_LENGTH]
        .iter()
        .map(|byte| {
            let index = usize::from(*byte) % NAME_SUFFIX_ALPHABET.len();
            char::from(NAME_SUFFIX_ALPHABET[index])
        })
        .collect();
    format!("{prefix}{suffix}")
}

/// Media types that POST and PUT accept.
const OBJECT_MEDIA_TYPES: &str = "application/json, application/yaml";

/// Checks that a POST or PUT body is JSON or YAML. A request without Content-Type is read as
/// either.
pub fn check_object_media_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(content_type) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let content_type = content_type.to_str().unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    match essence.to_ascii_lowercase().as_str() {
        "application/json" | "application/yaml" | "application/x-yaml" | "text/yaml" => Ok(()),
        _ => Err(ApiError::UnsupportedMediaType {
            content_type: content_type.to_owned(),
            accepted: OBJECT_MEDIA_TYPES,
        }),
    }
}

/// Decodes a request body (JSON or YAML) into an object, without defaulting or validating it.
pub fn decode_body(body: &[u8]) -> Result<EdgeFunctionRevision, ApiError> {
    let text = std::str::from_utf8(body).map_err(|error| {
        ApiError::bad_request(format!("the request body is not UTF-8 text: {error}"))
    })?;
    if text.trim().is_empty() {
        return Err(ApiError::bad_request(
            "the request body is empty; send an EdgeFunctionRevision as JSON or YAML",
        ));
    }
    edgefn_proto::decode_revision(text).map_err(|error| match error {
        RevisionError::Invalid { errors } => {
            let causes: Vec<FieldError> = errors.into_iter().map(hide_secret_values).collect();
            let message = format!(
                "the request body is not a valid {KIND}: {}",
                edgefn_proto::FieldErrorList(&causes)
            );
            ApiError::BadRequest { message, causes }
        }
        other => ApiError::bad_request(other.to_string()),
    })
}

/// Replaces the decoder's message for a credentials field, because serde quotes the rejected
/// value, which may be the password.
fn hide_secret_values(error: FieldError) -> FieldError {
    if error.path.contains("credentials") {
        FieldError::new(
            error.path,
            "invalid value (not shown, because it may be a secret): expected a string",
        )
    } else {
        error
    }
}

/// Turns a decoded request object into the object to store: drops what only the server sets,
/// and applies the defaults.
pub fn prepare_input(object: &mut EdgeFunctionRevision) {
    secrets::clean_input(object);
    // The resource is cluster-scoped.
    object.metadata.other.remove("namespace");
    // Deletion is immediate, so no stored object has a deletion time.
    object.metadata.deletion_timestamp = None;
    edgefn_proto::apply_defaults(&mut object.spec);
}

/// Validates an object to store: its name, edgefn's annotations and its spec.
pub fn validate(object: &EdgeFunctionRevision) -> Result<(), ApiError> {
    let mut causes = Vec::new();
    if let Err(cause) = validate_name(&object.metadata.name) {
        causes.push(cause);
    }
    if let Err(errors) = edgefn_proto::validate_revision(object) {
        causes.extend(errors);
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Invalid {
            name: object.metadata.name.clone(),
            causes,
        })
    }
}

/// Checks that a name is a lower-case RFC 1123 subdomain, as Kubernetes requires of names.
pub fn validate_name(name: &str) -> Result<(), FieldError> {
    const PATH: &str = "metadata.name";
    if name.is_empty() {
        return Err(FieldError::new(
            PATH,
            "required: name or generateName is required",
        ));
    }
    if name.len() > MAX_NAME_LENGTH {
        return Err(FieldError::new(
            PATH,
            format!("must be no more than {MAX_NAME_LENGTH} characters"),
        ));
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if !name.split('.').all(label_ok) {
        return Err(FieldError::new(
            PATH,
            format!(
                "invalid value {name:?}: a lowercase RFC 1123 subdomain must consist of lower case \
                 alphanumeric characters, '-' or '.', and must start and end with an alphanumeric \
                 character"
            ),
        ));
    }
    Ok(())
}
