//! Errors of the API, returned as Kubernetes `Status` objects (`kind: Status`, `apiVersion: v1`).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use edgefn_proto::FieldError;
use serde_json::{json, Value as Json};

use crate::resource::{GROUP, KIND, RESOURCE};

/// A failed request: its HTTP status, Kubernetes reason and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The request or its body could not be read. The causes name the fields, when known.
    #[error("{message}")]
    BadRequest {
        /// Description of the problem and of what to send instead.
        message: String,
        /// The rejected fields, empty when the body did not parse at all.
        causes: Vec<FieldError>,
    },

    /// No object has this name.
    #[error("{RESOURCE}.{GROUP} {name:?} not found")]
    NotFound {
        /// Name from the request.
        name: String,
    },

    /// No stored artifact has this digest.
    #[error(
        "artifact {digest} not found: no revision ingested by this server produced it; check \
         the revision's status.ref and its Ready condition"
    )]
    ArtifactNotFound {
        /// `sha256:<hex>` from the request.
        digest: String,
    },

    /// The request path or verb does not exist.
    #[error("the server could not find the requested resource ({method} {path})")]
    UnknownPath {
        /// HTTP method of the request.
        method: String,
        /// Path of the request.
        path: String,
    },

    /// A create named an object that exists.
    #[error("{RESOURCE}.{GROUP} {name:?} already exists")]
    AlreadyExists {
        /// Name of the existing object.
        name: String,
    },

    /// A write lost a race or carried a stale precondition.
    #[error("Operation cannot be fulfilled on {RESOURCE}.{GROUP} {name:?}: {message}")]
    Conflict {
        /// Name of the object.
        name: String,
        /// Description of the mismatch and of what to do.
        message: String,
    },

    /// The object decoded, but fields are invalid: one cause per field.
    #[error(
        "{KIND}.{GROUP} {name:?} is invalid: {}",
        edgefn_proto::FieldErrorList(causes)
    )]
    Invalid {
        /// Name of the object, empty when it has none yet.
        name: String,
        /// The invalid fields.
        causes: Vec<FieldError>,
    },

    /// A patch or body in a media type the endpoint does not take.
    #[error(
        "the body of the request was in an unknown format ({content_type:?}) - accepted media \
         types include: {accepted}"
    )]
    UnsupportedMediaType {
        /// The request's Content-Type.
        content_type: String,
        /// The media types the endpoint accepts, comma-separated.
        accepted: &'static str,
    },

    /// A patch decoded but could not be applied to the object.
    #[error("{message}")]
    UnprocessablePatch {
        /// Reason the patch does not apply.
        message: String,
    },

    /// A watch or list started from a resourceVersion older than the retained history.
    #[error("{message}")]
    Expired {
        /// The requested and the oldest available resourceVersion.
        message: String,
    },

    /// The endpoint exists but not with this HTTP method.
    #[error("the server does not allow this method on the requested resource ({method} {path})")]
    MethodNotAllowed {
        /// HTTP method of the request.
        method: String,
        /// Path of the request.
        path: String,
    },

    /// Storage failed. The message returned to the client leaves out the detail, which is
    /// logged instead.
    #[error("internal error: {message}")]
    Internal {
        /// Description of the failure, for the server log.
        message: String,
    },
}

impl ApiError {
    /// Returns a [`ApiError::BadRequest`] with no causes.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            message: message.into(),
            causes: Vec::new(),
        }
    }

    /// Returns the HTTP status code of the error.
    pub fn code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::NotFound { .. }
            | ApiError::ArtifactNotFound { .. }
            | ApiError::UnknownPath { .. } => StatusCode::NOT_FOUND,
            ApiError::AlreadyExists { .. } | ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Invalid { .. } | ApiError::UnprocessablePatch { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Expired { .. } => StatusCode::GONE,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Returns the Kubernetes `StatusReason`.
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::BadRequest { .. } => "BadRequest",
            ApiError::NotFound { .. }
            | ApiError::ArtifactNotFound { .. }
            | ApiError::UnknownPath { .. } => "NotFound",
            ApiError::AlreadyExists { .. } => "AlreadyExists",
            ApiError::Conflict { .. } => "Conflict",
            ApiError::Invalid { .. } | ApiError::UnprocessablePatch { .. } => "Invalid",
            ApiError::UnsupportedMediaType { .. } => "UnsupportedMediaType",
            ApiError::Expired { .. } => "Expired",
            ApiError::MethodNotAllowed { .. } => "MethodNotAllowed",
            ApiError::Internal { .. } => "InternalError",
        }
    }

    /// Returns the `Status` object of the error.
    pub fn to_status(&self) -> Json {
        let message = match self {
            ApiError::Internal { .. } => {
                "internal error: storage failed; the server log has the detail".to_owned()
            }
            other => other.to_string(),
        };
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": self.reason(),
            "code": self.code().as_u16(),
        });
        if let Some(details) = self.details() {
            status["details"] = details;
        }
        status
    }

    fn details(&self) -> Option<Json> {
        let resource_details = |name: &str| json!({"name": name, "group": GROUP, "kind": RESOURCE});
        match self {
            ApiError::NotFound { name }
            | ApiError::AlreadyExists { name }
            | ApiError::Conflict { name, .. } => Some(resource_details(name)),
            ApiError::Invalid { name, causes } => {
                let mut details =
                    json!({"group": GROUP, "kind": KIND, "causes": causes_json(causes)});
                if !name.is_empty() {
                    details["name"] = json!(name);
                }
                Some(details)
            }
            ApiError::BadRequest { causes, .. } if !causes.is_empty() => {
                Some(json!({"group": GROUP, "kind": KIND, "causes": causes_json(causes)}))
            }
            _ => None,
        }
    }
}

fn causes_json(causes: &[FieldError]) -> Json {
    let causes: Vec<Json> = causes
        .iter()
        .map(|cause| {
            let reason = if cause.message.starts_with("required") {
                "FieldValueRequired"
            } else {
                "FieldValueInvalid"
            };
            json!({"reason": reason, "message": cause.message, "field": cause.path})
        })
        .collect();
    Json::Array(causes)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal { message } = &self {
            tracing::error!(error = %message, "request failed");
        }
        crate::resource::json_response(self.code(), &self.to_status())
    }
}
