//! Discovery and OpenAPI documents, as Kubernetes clients read them.

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::TestApi;
use http_body_util::BodyExt as _;
use serde_json::Value as Json;
use tower::ServiceExt as _;

/// The Accept header of kubectl 1.32's discovery requests.
const AGGREGATED_ACCEPT: &str = "application/json;g=apidiscovery.k8s.io;v=v2;\
                                 as=APIGroupDiscoveryList,application/json;\
                                 g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,\
                                 application/json";

#[tokio::test]
async fn core_versions() {
    let api = TestApi::new();
    let (status, body) = api.get("/api").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["kind"], "APIVersions");
    // No core version is listed: kubectl api-resources fails on a listed, empty version.
    assert_eq!(body["versions"], serde_json::json!([]));
    let (status, body) = api.get("/api/v1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["kind"], "APIResourceList");
}

#[tokio::test]
async fn group_list_names_the_group() {
    let api = TestApi::new();
    let (status, body) = api.get("/apis").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["kind"], "APIGroupList");
    let group = &body["groups"][0];
    assert_eq!(group["name"], "extensions.apoxy.dev");
    assert_eq!(
        group["preferredVersion"]["groupVersion"],
        "extensions.apoxy.dev/v1alpha2"
    );
    assert_eq!(group["versions"][0]["version"], "v1alpha2");
}

#[tokio::test]
async fn group_document() {
    let api = TestApi::new();
    let (status, body) = api.get("/apis/extensions.apoxy.dev").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["kind"], "APIGroup");
    assert_eq!(body["name"], "extensions.apoxy.dev");
}

#[tokio::test]
async fn resource_list_describes_both_resources() {
    let api = TestApi::new();
    let (status, body) = api.get("/apis/extensions.apoxy.dev/v1alpha2").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["kind"], "APIResourceList");
    assert_eq!(body["groupVersion"], "extensions.apoxy.dev/v1alpha2");

    let main = &body["resources"][0];
    assert_eq!(main["name"], "edgefunctionrevisions");
    assert_eq!(main["singularName"], "edgefunctionrevision");
    assert_eq!(main["namespaced"], false);
    assert_eq!(main["kind"], "EdgeFunctionRevision");
    let verbs: Vec<&str> = main["verbs"]
        .as_array()
        .expect("verbs")
        .iter()
        .filter_map(Json::as_str)
        .collect();
    for verb in [
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    ] {
        assert!(verbs.contains(&verb), "verb {verb} in {verbs:?}");
    }

    let status_resource = &body["resources"][1];
    assert_eq!(status_resource["name"], "edgefunctionrevisions/status");
    assert_eq!(status_resource["namespaced"], false);
    assert_eq!(
        status_resource["verbs"],
        serde_json::json!(["get", "patch", "update"])
    );
}

#[tokio::test]
async fn aggregated_accept_gets_plain_json() {
    let api = TestApi::new();
    let request = Request::builder()
        .uri("/apis")
        .header(header::ACCEPT, AGGREGATED_ACCEPT)
        .body(Body::empty())
        .expect("request");
    let response = api.app.clone().oneshot(request).await.expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.as_bytes()),
        Some(&b"application/json"[..])
    );
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let body: Json = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(body["kind"], "APIGroupList");
}

#[tokio::test]
async fn version_document() {
    let api = TestApi::new();
    let (status, body) = api.get("/version").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["major"], "1");
    assert!(body["gitVersion"]
        .as_str()
        .is_some_and(|v| v.starts_with("v1.")));
}

#[tokio::test]
async fn openapi_index_points_to_document() {
    let api = TestApi::new();
    let (status, index) = api.get("/openapi/v3").await;
    assert_eq!(status, StatusCode::OK);
    let url = index["paths"]["apis/extensions.apoxy.dev/v1alpha2"]["serverRelativeURL"]
        .as_str()
        .expect("serverRelativeURL");
    assert!(url.contains("?hash="), "{url}");

    let (status, document) = api.get(url).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(document["openapi"], "3.0.0");
}

/// kubectl sends `fieldValidation=Strict` and strategic merge patches only when every PATCH
/// operation of the kind lists both.
#[tokio::test]
async fn openapi_patch_operations_declare_what_kubectl_checks() {
    let api = TestApi::new();
    let (_, document) = api
        .get("/openapi/v3/apis/extensions.apoxy.dev/v1alpha2")
        .await;
    let paths = document["paths"].as_object().expect("paths");

    let mut patch_operations = 0;
    for (path, operations) in paths {
        let Some(patch) = operations.get("patch") else {
            continue;
        };
        patch_operations += 1;
        assert_eq!(
            patch["x-kubernetes-group-version-kind"]["kind"], "EdgeFunctionRevision",
            "{path}"
        );
        let parameters = patch["parameters"].as_array().expect("parameters");
        assert!(
            parameters
                .iter()
                .any(|p| p["name"] == "fieldValidation" && p["in"] == "query"),
            "{path} lists fieldValidation"
        );
        assert!(
            patch["requestBody"]["content"]
                .get("application/strategic-merge-patch+json")
                .is_some(),
            "{path} accepts strategic merge patches"
        );
    }
    assert_eq!(patch_operations, 2);
}

#[tokio::test]
async fn openapi_references_resolve() {
    let api = TestApi::new();
    let (_, document) = api
        .get("/openapi/v3/apis/extensions.apoxy.dev/v1alpha2")
        .await;
    let schemas = document["components"]["schemas"]
        .as_object()
        .expect("schemas");

    let mut pending = vec![&document];
    let mut references = 0;
    while let Some(value) = pending.pop() {
        match value {
            Json::Object(map) => {
                if let Some(reference) = map.get("$ref").and_then(Json::as_str) {
                    references += 1;
                    let name = reference
                        .strip_prefix("#/components/schemas/")
                        .expect("local reference");
                    assert!(schemas.contains_key(name), "{reference} resolves");
                }
                pending.extend(map.values());
            }
            Json::Array(items) => pending.extend(items),
            _ => {}
        }
    }
    assert!(references > 20, "{references} references");
}

#[tokio::test]
async fn openapi_v2_is_not_served() {
    let api = TestApi::new();
    let (status, body) = api.get("/openapi/v2").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["kind"], "Status");
}
