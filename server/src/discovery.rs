//! Discovery endpoints, so that unmodified Kubernetes clients find the resource: `/api`,
//! `/apis`, the group and version documents, `/version` and the OpenAPI v3 documents.
//!
//! Clients that ask for aggregated discovery (`Accept: application/json;g=apidiscovery.k8s.io…`)
//! get the plain documents with `Content-Type: application/json`, which makes them fall
//! back to the plain form.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value as Json};

use crate::openapi;
use crate::resource::{json_response, GROUP, GROUP_VERSION, KIND, RESOURCE, SINGULAR, VERSION};

/// Kubernetes minor version whose API conventions the server follows, reported by `/version`.
const KUBERNETES_MINOR: &str = "34";

fn ok(body: &Json) -> Response {
    json_response(StatusCode::OK, body)
}

fn group_version() -> Json {
    json!({"groupVersion": GROUP_VERSION, "version": VERSION})
}

fn group() -> Json {
    json!({
        "name": GROUP,
        "versions": [group_version()],
        "preferredVersion": group_version(),
    })
}

/// `GET /api`: the core group's versions. The server has no core resources, so it lists
/// none: kubectl reports an error for a listed version whose resource list is empty.
pub async fn core_versions() -> Response {
    ok(&json!({
        "kind": "APIVersions",
        "versions": [],
        "serverAddressByClientCIDRs": [],
    }))
}

/// `GET /api/v1`: an empty resource list.
pub async fn core_resources() -> Response {
    ok(&json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": "v1",
        "resources": [],
    }))
}

/// `GET /apis`: the API groups.
pub async fn groups() -> Response {
    ok(&json!({
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [group()],
    }))
}

/// `GET /apis/extensions.apoxy.dev`: the group.
pub async fn api_group() -> Response {
    let mut body = group();
    body["kind"] = json!("APIGroup");
    body["apiVersion"] = json!("v1");
    ok(&body)
}

/// `GET /apis/extensions.apoxy.dev/v1alpha2`: the resources of the version.
pub async fn resources() -> Response {
    ok(&json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": GROUP_VERSION,
        "resources": [
            {
                "name": RESOURCE,
                "singularName": SINGULAR,
                "namespaced": false,
                "kind": KIND,
                "verbs": [
                    "create", "delete", "deletecollection", "get", "list", "patch", "update",
                    "watch"
                ],
            },
            {
                "name": format!("{RESOURCE}/status"),
                "singularName": "",
                "namespaced": false,
                "kind": KIND,
                "verbs": ["get", "patch", "update"],
            },
        ],
    }))
}

/// `GET /version`.
pub async fn version() -> Response {
    let git_version = format!(
        "v1.{KUBERNETES_MINOR}.0+edgefn-{}",
        env!("CARGO_PKG_VERSION")
    );
    ok(&json!({
        "major": "1",
        "minor": KUBERNETES_MINOR,
        "gitVersion": git_version,
        "gitCommit": "",
        "gitTreeState": "",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
    }))
}

/// `GET /openapi/v3`: the index of the OpenAPI v3 documents.
pub async fn openapi_index() -> Response {
    let url = format!(
        "/openapi/v3/apis/{GROUP}/{VERSION}?hash={}",
        openapi::document_hash()
    );
    ok(&json!({
        "paths": {
            format!("apis/{GROUP}/{VERSION}"): {"serverRelativeURL": url},
        }
    }))
}

/// `GET /openapi/v3/apis/extensions.apoxy.dev/v1alpha2`: the document of the group version.
pub async fn openapi_document() -> Response {
    ok(&openapi::document())
}
