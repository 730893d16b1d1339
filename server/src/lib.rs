//! A Kubernetes-style API server for EdgeFunctionRevision objects
//! (`extensions.apoxy.dev/v1alpha2`, cluster-scoped, with a `status` subresource).
//!
//! [`router`] returns the axum application: the resource's seven operations, watch, the
//! discovery and OpenAPI documents that kubectl needs, and Kubernetes `Status` errors. Objects
//! are kept by a [`store::Store`]: [`store::FileStore`] in one local file, or
//! `store::EtcdStore` (cargo feature `etcd`) in etcd, shared by several servers. After each
//! create and spec change, an [`ingest::Ingest`] fetches the revision's artifact and the outcome
//! is recorded in the status conditions. [`artifact_ingest::ArtifactIngest`] keeps the checked
//! artifacts in an [`artifacts::ArtifactStore`], which the router serves by digest.
#![forbid(unsafe_code)]

mod api;
pub mod artifact_ingest;
pub mod artifacts;
mod discovery;
pub mod ingest;
mod openapi;
mod patch;
mod query;
pub mod resource;
pub mod secrets;
mod status;
pub mod store;
mod watch;

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{Method, Uri};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum::Router;

pub use api::AppState;
pub use openapi::{document as openapi_document, SCHEMA_PREFIX};
pub use status::ApiError;

use crate::resource::COLLECTION_PATH;

/// Returns the application: every endpoint of the server, backed by `store`, with `ingest`
/// run after each create and spec change. It serves no artifacts.
pub fn router(store: Arc<dyn store::Store>, ingest: Arc<dyn ingest::Ingest>) -> Router {
    router_with_artifacts(store, ingest, None)
}

/// Returns the application like [`router`], and also serves the files of `artifacts` at
/// `/artifacts/sha256/{hex}`.
pub fn router_with_artifacts(
    store: Arc<dyn store::Store>,
    ingest: Arc<dyn ingest::Ingest>,
    artifacts: Option<Arc<artifacts::ArtifactStore>>,
) -> Router {
    let state = AppState {
        store,
        ingest,
        artifacts,
    };
    let item = format!("{COLLECTION_PATH}/{{name}}");
    let item_status = format!("{item}/status");

    Router::new()
        .route("/api", get(discovery::core_versions))
        .route("/api/v1", get(discovery::core_resources))
        .route("/apis", get(discovery::groups))
        .route("/apis/extensions.apoxy.dev", get(discovery::api_group))
        .route(
            "/apis/extensions.apoxy.dev/v1alpha2",
            get(discovery::resources),
        )
        .route("/version", get(discovery::version))
        .route("/openapi/v3", get(discovery::openapi_index))
        .route(
            "/openapi/v3/apis/extensions.apoxy.dev/v1alpha2",
            get(discovery::openapi_document),
        )
        .route(artifacts::ARTIFACT_ROUTE, get(artifacts::serve))
        .route("/healthz", get(healthy))
        .route("/livez", get(healthy))
        .route("/readyz", get(healthy))
        .route(
            COLLECTION_PATH,
            get(api::list)
                .post(api::create)
                .delete(api::delete_collection),
        )
        .route(
            &item,
            get(api::get)
                .put(api::replace)
                .patch(api::patch)
                .delete(api::delete),
        )
        .route(
            &item_status,
            get(api::get)
                .put(api::replace_status)
                .patch(api::patch_status),
        )
        .fallback(unknown_path)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

async fn healthy() -> &'static str {
    "ok"
}

async fn unknown_path(method: Method, uri: Uri) -> ApiError {
    ApiError::UnknownPath {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}

/// Logs each request's method, path (without the query, which carries nothing secret but may
/// be long) and status.
async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let status = response.status();
    if status.is_server_error() {
        tracing::warn!(%method, %path, status = status.as_u16(), "request failed");
    } else {
        tracing::debug!(%method, %path, status = status.as_u16(), "request");
    }
    response
}
