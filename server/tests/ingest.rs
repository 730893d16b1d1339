//! Ingest with `ArtifactIngest`: Go plugins and wasm modules fetched from a local file server,
//! checked, stored and served by digest, and the conditions each outcome records.
//!
//! Needs the Go test plugins: `addheader.so` in `$EDGEFN_PLUGINS_DIR`, else in
//! `<repo>/.work/plugins` (`scripts/setup.sh` builds them).

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::extract::Path as UrlPath;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common::{condition, item, TestApi, COLLECTION};
use http_body_util::BodyExt as _;
use serde_json::{json, Value as Json};

/// Time one ingest may take before a test gives up.
const INGEST_TIMEOUT: Duration = Duration::from_secs(60);
const POLL_INTERVAL: Duration = Duration::from_millis(20);

const MERGE: &str = "application/merge-patch+json";

/// Returns the path of a Go test plugin, failing with a hint when it is missing.
fn plugin_path(file_name: &str) -> PathBuf {
    let dir = std::env::var_os("EDGEFN_PLUGINS_DIR")
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.work/plugins"));
    let path = dir.join(file_name);
    assert!(
        path.is_file(),
        "Go test plugin {} not found; run scripts/setup.sh or set EDGEFN_PLUGINS_DIR",
        path.display()
    );
    path
}

fn sha256_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;

    let digest = <sha2::Sha256 as sha2::Digest>::digest(bytes);
    digest.iter().fold(String::new(), |mut text, byte| {
        let _ = write!(text, "{byte:02x}");
        text
    })
}

/// A file server on 127.0.0.1 for the files of one folder, stopped when dropped.
struct FileServer {
    address: SocketAddr,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl FileServer {
    /// Serves `files` (name and contents) at `/<name>`; other paths get 404.
    async fn start(files: &[(&str, Vec<u8>)]) -> FileServer {
        let dir = tempfile::tempdir().expect("temporary folder");
        for (name, contents) in files {
            std::fs::write(dir.path().join(name), contents).expect("write a served file");
        }
        let root = dir.path().to_owned();
        let app = axum::Router::new().route(
            "/{file}",
            get(move |UrlPath(file): UrlPath<String>| serve_file(root.clone(), file)),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the file server");
        let address = listener.local_addr().expect("file server address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FileServer {
            address,
            task,
            _dir: dir,
        }
    }

    fn url(&self, name: &str) -> String {
        format!("http://{}/{name}", self.address)
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_file(root: PathBuf, file: String) -> Response {
    if file.contains("..") {
        return StatusCode::NOT_FOUND.into_response();
    }
    match tokio::fs::read(root.join(file)).await {
        Ok(bytes) => bytes.into_response(),
        Err(_) => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

fn go_revision(name: &str, url: &str) -> Json {
    json!({
        "apiVersion": "extensions.apoxy.dev/v1alpha2",
        "kind": "EdgeFunctionRevision",
        "metadata": {"name": name},
        "spec": {
            "mode": "filter",
            "code": {
                "metadata": {"name": "add-header"},
                "goPluginSource": {"url": url, "pluginConfig": "{}"}
            }
        }
    })
}

fn wasm_revision(name: &str, url: &str) -> Json {
    json!({
        "metadata": {"name": name},
        "spec": {"code": {"wasmSource": {"url": url}}}
    })
}

/// Returns the conditions of `type` in order.
fn conditions_of<'a>(object: &'a Json, condition_type: &str) -> Vec<&'a Json> {
    object["status"]["conditions"]
        .as_array()
        .map(|conditions| {
            conditions
                .iter()
                .filter(|condition| condition["type"] == condition_type)
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until `name` has `count` Ready conditions and returns the object.
async fn wait_ready_count(api: &TestApi, name: &str, count: usize) -> Json {
    let deadline = tokio::time::Instant::now() + INGEST_TIMEOUT;
    loop {
        let (status, body) = api.get(&item(name)).await;
        assert_eq!(status, StatusCode::OK, "get {name}: {body}");
        if conditions_of(&body, "Ready").len() >= count {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} got no Ready condition number {count} within {INGEST_TIMEOUT:?}: {body}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

async fn create_and_wait(api: &TestApi, object: &Json) -> Json {
    let created = api.create(object).await;
    let name = created["metadata"]["name"].as_str().expect("a name");
    wait_ready_count(api, name, 1).await
}

/// Sends `GET path` and returns the status, the content type and the body bytes.
async fn download(api: &TestApi, path: &str) -> (StatusCode, String, Vec<u8>) {
    let response = api.send(axum::http::Method::GET, path, None, None).await;
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("read the body")
        .to_bytes()
        .to_vec();
    (status, content_type, bytes)
}

fn ready_message(object: &Json) -> String {
    condition(object, "Ready").expect("a Ready condition")["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

// === Go plugins ===

#[tokio::test]
async fn go_plugin_ingested_and_served() {
    let plugin = std::fs::read(plugin_path("addheader.so")).expect("read addheader.so");
    let hex = sha256_hex(&plugin);
    let files = FileServer::start(&[("addheader.so", plugin.clone())]).await;
    let api = TestApi::with_artifact_ingest();

    let body = create_and_wait(&api, &go_revision("good", &files.url("addheader.so"))).await;

    let ready = condition(&body, "Ready").expect("Ready condition");
    assert_eq!(ready["status"], "True", "{body}");
    assert_eq!(ready["reason"], "Ready");
    assert_eq!(body["status"]["ref"], format!("sha256:{hex}"));
    let types: Vec<&Json> = body["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .map(|condition| &condition["type"])
        .collect();
    assert_eq!(types, [&json!("Ingest"), &json!("Ready")]);

    let (status, content_type, bytes) = download(&api, &format!("/artifacts/sha256/{hex}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "application/octet-stream");
    assert_eq!(bytes.len(), plugin.len(), "artifact size");
    assert!(
        bytes == plugin,
        "the served artifact differs from the plugin"
    );
}

#[tokio::test]
async fn bad_plugin_marked_failed() {
    let files = FileServer::start(&[("bad.so", b"#!/bin/sh\necho not a plugin\n".to_vec())]).await;
    let api = TestApi::with_artifact_ingest();
    let url = files.url("bad.so");

    let body = create_and_wait(&api, &go_revision("bad", &url)).await;

    let ready = condition(&body, "Ready").expect("Ready condition");
    assert_eq!(ready["status"], "False", "{body}");
    assert_eq!(ready["reason"], "Failed");
    let message = ready_message(&body);
    assert!(
        message.contains(&url),
        "the message names the URL: {message}"
    );
    assert!(message.contains("not an ELF file"), "{message}");
    assert!(message.contains("-buildmode=c-shared"), "{message}");
    assert_eq!(body["status"]["ref"], "");

    let hex = sha256_hex(b"#!/bin/sh\necho not a plugin\n");
    let (status, _, _) = download(&api, &format!("/artifacts/sha256/{hex}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a rejected file is served");
}

#[tokio::test]
async fn missing_plugin_marked_failed() {
    let files = FileServer::start(&[]).await;
    let api = TestApi::with_artifact_ingest();
    let url = files.url("missing.so");

    let body = create_and_wait(&api, &go_revision("missing", &url)).await;

    let ready = condition(&body, "Ready").expect("Ready condition");
    assert_eq!(ready["status"], "False", "{body}");
    let message = ready_message(&body);
    assert!(message.contains("404"), "{message}");
    assert!(message.contains(&url), "{message}");
}

#[tokio::test]
async fn pin_mismatch_marked_failed() {
    let plugin = std::fs::read(plugin_path("addheader.so")).expect("read addheader.so");
    let files = FileServer::start(&[("addheader.so", plugin)]).await;
    let api = TestApi::with_artifact_ingest();
    let wrong = "0".repeat(64);
    let mut object = go_revision("pinned", &files.url("addheader.so"));
    object["metadata"]["annotations"] = json!({"edgefn.dev/sha256": wrong});

    let body = create_and_wait(&api, &object).await;

    let ready = condition(&body, "Ready").expect("Ready condition");
    assert_eq!(ready["status"], "False", "{body}");
    assert!(ready_message(&body).contains(&wrong), "{body}");
}

#[tokio::test]
async fn local_path_source_refused() {
    let plugin = plugin_path("addheader.so");
    let api = TestApi::with_artifact_ingest();
    let path = plugin.to_str().expect("UTF-8 path");

    let body = create_and_wait(&api, &go_revision("local", path)).await;

    let ready = condition(&body, "Ready").expect("Ready condition");
    assert_eq!(ready["status"], "False", "{body}");
    assert!(
        ready_message(&body).contains("not an http:// or https:// URL"),
        "{body}"
    );
}

#[tokio::test]
async fn spec_change_ingests_again() {
    let plugin = std::fs::read(plugin_path("addheader.so")).expect("read addheader.so");
    let files = FileServer::start(&[
        ("addheader.so", plugin.clone()),
        ("bad.so", b"not a plugin".to_vec()),
    ])
    .await;
    let api = TestApi::with_artifact_ingest();
    create_and_wait(&api, &go_revision("change", &files.url("addheader.so"))).await;

    let patch = json!({"spec": {"code": {"goPluginSource": {"url": files.url("bad.so")}}}});
    let (status, patched) = api.patch(&item("change"), MERGE, &patch).await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    let last = patched["status"]["conditions"]
        .as_array()
        .and_then(|conditions| conditions.last())
        .cloned()
        .unwrap_or_default();
    assert_eq!(last["type"], "Ingest", "{patched}");
    let body = wait_ready_count(&api, "change", 2).await;

    let types: Vec<&Json> = body["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .map(|condition| &condition["type"])
        .collect();
    assert_eq!(
        types,
        [
            &json!("Ingest"),
            &json!("Ready"),
            &json!("Ingest"),
            &json!("Ready")
        ]
    );
    let ready = condition(&body, "Ready").expect("Ready condition");
    assert_eq!(ready["status"], "False", "{body}");
    assert_eq!(body["status"]["ref"], "", "the old artifact is still named");
}

#[tokio::test]
async fn label_change_does_not_ingest() {
    let plugin = std::fs::read(plugin_path("addheader.so")).expect("read addheader.so");
    let files = FileServer::start(&[("addheader.so", plugin)]).await;
    let api = TestApi::with_artifact_ingest();
    create_and_wait(&api, &go_revision("labels", &files.url("addheader.so"))).await;

    let patch = json!({"metadata": {"labels": {"stage": "two"}}});
    let (status, body) = api.patch(&item("labels"), MERGE, &patch).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(conditions_of(&body, "Ingest").len(), 1, "{body}");
}

// === WebAssembly and other sources ===

#[tokio::test]
async fn wasm_module_ingested_and_served() {
    let module = b"\0asm\x01\0\0\0".to_vec();
    let hex = sha256_hex(&module);
    let files = FileServer::start(&[("f.wasm", module.clone())]).await;
    let api = TestApi::with_artifact_ingest();

    let body = create_and_wait(&api, &wasm_revision("wasm", &files.url("f.wasm"))).await;

    let ready = condition(&body, "Ready").expect("Ready condition");
    assert_eq!(ready["status"], "True", "{body}");
    assert_eq!(body["status"]["ref"], format!("sha256:{hex}"));
    let (status, _, bytes) = download(&api, &format!("/artifacts/sha256/{hex}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bytes, module);
}

#[tokio::test]
async fn non_wasm_bytes_marked_failed() {
    let files = FileServer::start(&[("f.wasm", b"<html>not wasm</html>".to_vec())]).await;
    let api = TestApi::with_artifact_ingest();

    let body = create_and_wait(&api, &wasm_revision("html", &files.url("f.wasm"))).await;

    let ready = condition(&body, "Ready").expect("Ready condition");
    assert_eq!(ready["status"], "False", "{body}");
    assert!(
        ready_message(&body).contains("not a WebAssembly binary"),
        "{body}"
    );
}

#[tokio::test]
async fn javascript_source_marked_failed() {
    let api = TestApi::with_artifact_ingest();
    let object = json!({
        "metadata": {"name": "js"},
        "spec": {"code": {"jsSource": {"entrypoint": "index.js", "assets": {"files": [
            {"path": "index.js", "content": "export default {}"}
        ]}}}}
    });

    let body = create_and_wait(&api, &object).await;

    let ready = condition(&body, "Ready").expect("Ready condition");
    assert_eq!(ready["status"], "False", "{body}");
    assert!(ready_message(&body).contains("jsSource"), "{body}");
}

// === Artifact endpoint ===

#[tokio::test]
async fn unknown_artifact_not_found() {
    let api = TestApi::with_artifact_ingest();
    let (status, body) = api
        .get(&format!("/artifacts/sha256/{}", "a".repeat(64)))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["kind"], "Status");
    assert_eq!(body["reason"], "NotFound");
}

#[tokio::test]
async fn invalid_artifact_digest_rejected() {
    let api = TestApi::with_artifact_ingest();
    let (status, body) = api.get("/artifacts/sha256/ABC").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("64 lower-case hex digits"),
        "{body}"
    );
}

#[tokio::test]
async fn router_without_artifacts_serves_none() {
    let api = TestApi::new();
    let (status, _) = api
        .get(&format!("/artifacts/sha256/{}", "b".repeat(64)))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn list_shows_ingest_outcomes() {
    let plugin = std::fs::read(plugin_path("addheader.so")).expect("read addheader.so");
    let files = FileServer::start(&[("addheader.so", plugin)]).await;
    let api = TestApi::with_artifact_ingest();
    create_and_wait(&api, &go_revision("one", &files.url("addheader.so"))).await;
    create_and_wait(&api, &go_revision("two", &files.url("nothing.so"))).await;

    let (status, list) = api.get(COLLECTION).await;

    assert_eq!(status, StatusCode::OK);
    let ready: Vec<(String, String)> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|object| {
            let name = object["metadata"]["name"].as_str().unwrap_or_default();
            let ready = condition(object, "Ready").expect("Ready condition");
            (
                name.to_owned(),
                ready["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        ready,
        [
            ("one".to_owned(), "True".to_owned()),
            ("two".to_owned(), "False".to_owned())
        ]
    );
}
