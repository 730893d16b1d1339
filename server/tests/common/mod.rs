//! Helpers shared by the server's tests: an in-process application over a temporary file
//! store, requests through `tower::ServiceExt::oneshot`, and object fixtures.
#![allow(
    dead_code,
    reason = "each test binary uses a different part of the helpers"
)]

pub mod process;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use edgefn_loader::FetchOptions;
use edgefn_server::artifact_ingest::ArtifactIngest;
use edgefn_server::artifacts::ArtifactStore;
use edgefn_server::ingest::{Ingest, NoopIngest};
use edgefn_server::store::{FileStore, FileStoreOptions, Store};
use http_body_util::BodyExt as _;
use serde_json::{json, Value as Json};
use tower::ServiceExt as _;

/// Path of the collection.
pub const COLLECTION: &str = "/apis/extensions.apoxy.dev/v1alpha2/edgefunctionrevisions";

/// Returns the path of one object.
pub fn item(name: &str) -> String {
    format!("{COLLECTION}/{name}")
}

/// Returns the path of one object's status.
pub fn status_path(name: &str) -> String {
    format!("{COLLECTION}/{name}/status")
}

/// The application over a file store in a temporary folder.
pub struct TestApi {
    pub app: Router,
    pub store: Arc<FileStore>,
    pub dir: tempfile::TempDir,
}

impl TestApi {
    /// Returns an application whose ingest marks every revision Ready.
    pub fn new() -> Self {
        Self::with(Arc::new(NoopIngest), FileStoreOptions::default())
    }

    /// Returns an application with the given ingest and store options.
    pub fn with(ingest: Arc<dyn Ingest>, options: FileStoreOptions) -> Self {
        let dir = tempfile::tempdir().expect("create a temporary folder");
        let store = Arc::new(
            FileStore::open_with(dir.path().join("revisions.jsonl"), options).expect("open store"),
        );
        let app = edgefn_server::router(store.clone() as Arc<dyn Store>, ingest);
        TestApi { app, store, dir }
    }

    /// Returns an application whose ingest fetches artifacts into an [`ArtifactStore`] in the
    /// temporary folder (`artifacts/`), which the application serves by digest.
    pub fn with_artifact_ingest() -> Self {
        let dir = tempfile::tempdir().expect("create a temporary folder");
        let store = Arc::new(
            FileStore::open_with(
                dir.path().join("revisions.jsonl"),
                FileStoreOptions::default(),
            )
            .expect("open store"),
        );
        let artifacts =
            Arc::new(ArtifactStore::open(dir.path().join("artifacts")).expect("artifact store"));
        let ingest = Arc::new(ArtifactIngest::new(
            Arc::clone(&artifacts),
            FetchOptions::default(),
        ));
        let app = edgefn_server::router_with_artifacts(
            store.clone() as Arc<dyn Store>,
            ingest,
            Some(artifacts),
        );
        TestApi { app, store, dir }
    }

    /// Sends a request and returns the status and the JSON body (`Null` when empty).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Option<String>,
    ) -> (StatusCode, Json) {
        let response = self.send(method, path, content_type, body).await;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("read the response body")
            .to_bytes();
        let json = if bytes.is_empty() {
            Json::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|error| {
                panic!(
                    "response to {path} is not JSON ({error}): {}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        (status, json)
    }

    /// Sends a request and returns the raw response.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Option<String>,
    ) -> axum::response::Response {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        let request = request
            .body(body.map_or_else(Body::empty, Body::from))
            .expect("build the request");
        self.app
            .clone()
            .oneshot(request)
            .await
            .expect("the router never fails")
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Json) {
        self.call(Method::GET, path, None, None).await
    }

    pub async fn post(&self, object: &Json) -> (StatusCode, Json) {
        self.call(
            Method::POST,
            COLLECTION,
            Some("application/json"),
            Some(object.to_string()),
        )
        .await
    }

    pub async fn put(&self, path: &str, object: &Json) -> (StatusCode, Json) {
        self.call(
            Method::PUT,
            path,
            Some("application/json"),
            Some(object.to_string()),
        )
        .await
    }

    pub async fn patch(&self, path: &str, content_type: &str, patch: &Json) -> (StatusCode, Json) {
        self.call(
            Method::PATCH,
            path,
            Some(content_type),
            Some(patch.to_string()),
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Json) {
        self.call(Method::DELETE, path, None, None).await
    }

    /// Creates an object and returns the response body, failing the test on any other status
    /// than 201.
    pub async fn create(&self, object: &Json) -> Json {
        let (status, body) = self.post(object).await;
        assert_eq!(status, StatusCode::CREATED, "create failed: {body}");
        body
    }

    /// Creates an object and waits until its ingest outcome is stored, so that later writes
    /// with the returned `resourceVersion` do not race the ingest task.
    pub async fn create_ready(&self, object: &Json) -> Json {
        let created = self.create(object).await;
        let name = created["metadata"]["name"]
            .as_str()
            .expect("created object has a name");
        self.wait_ready(name).await
    }

    /// Waits until the object has a `Ready` condition and returns it.
    pub async fn wait_ready(&self, name: &str) -> Json {
        for _ in 0..200 {
            let (status, body) = self.get(&item(name)).await;
            assert_eq!(status, StatusCode::OK, "get {name}: {body}");
            if condition(&body, "Ready").is_some() {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{name} got no Ready condition within 2 s");
    }
}

/// Returns the last condition of a type from an object's status.
pub fn condition<'a>(object: &'a Json, condition_type: &str) -> Option<&'a Json> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .rev()
        .find(|condition| condition["type"] == condition_type)
}

/// Returns a valid filter-mode revision with a URL source.
pub fn url_revision(name: &str) -> Json {
    json!({
        "apiVersion": "extensions.apoxy.dev/v1alpha2",
        "kind": "EdgeFunctionRevision",
        "metadata": {"name": name, "labels": {"app": "demo"}},
        "spec": {
            "mode": "filter",
            "code": {"goPluginSource": {"url": "https://example.com/plugin.so"}}
        }
    })
}

/// Returns a valid filter-mode revision with an OCI source and inline credentials.
pub fn oci_revision_with_password(name: &str, password: &str) -> Json {
    json!({
        "apiVersion": "extensions.apoxy.dev/v1alpha2",
        "kind": "EdgeFunctionRevision",
        "metadata": {"name": name},
        "spec": {
            "code": {"goPluginSource": {"oci": {
                "repo": "registry.example.com/team/plugin",
                "credentials": {"username": "robot", "password": password}
            }}}
        }
    })
}

/// Returns the field paths of the causes of a `Status`.
pub fn cause_fields(status: &Json) -> Vec<String> {
    status["details"]["causes"]
        .as_array()
        .map(|causes| {
            causes
                .iter()
                .map(|cause| cause["field"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}
