//! The registry password is write-only: stored for ingest, and absent from every response,
//! list, watch event and error. `secret_logs.rs` checks the logs.

mod common;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use common::{item, oci_revision_with_password, status_path, TestApi, COLLECTION};
use edgefn_server::store::Store;
use http_body_util::BodyExt as _;
use serde_json::{json, Value as Json};

const PASSWORD: &str = "s3cr3t-Pa55word-9d1c";
/// Base64 of `data-secret-77ab`.
const PASSWORD_DATA: &str = "ZGF0YS1zZWNyZXQtNzdhYg==";
/// Base64 of [`PASSWORD`], the form Apoxy stores it in.
const PASSWORD_BASE64: &str = "czNjcjN0LVBhNTV3b3JkLTlkMWM=";

/// JSON pointer of the stored password.
const PASSWORD_POINTER: &str = "/spec/code/goPluginSource/oci/credentials/password";

/// Returns a merge patch that merges `oci` into `spec.code.goPluginSource.oci`.
fn oci_patch(oci: Json) -> Json {
    json!({"spec": {"code": {"goPluginSource": {"oci": oci}}}})
}

/// Collects every response body of a test.
struct Recorder {
    api: TestApi,
    bodies: Vec<String>,
}

impl Recorder {
    async fn send(
        &mut self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Option<Json>,
    ) -> (StatusCode, Json) {
        let response = self
            .api
            .send(
                method,
                path,
                content_type,
                body.map(|body| body.to_string()),
            )
            .await;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let json = serde_json::from_str(&text).unwrap_or(Json::Null);
        self.bodies.push(format!("{path}: {text}"));
        (status, json)
    }

    fn assert_no_secret(&self) {
        for body in &self.bodies {
            for secret in [PASSWORD, PASSWORD_DATA, PASSWORD_BASE64] {
                assert!(!body.contains(secret), "secret {secret} in response {body}");
            }
        }
    }
}

fn with_password_data(name: &str) -> Json {
    let mut object = oci_revision_with_password(name, "");
    object["spec"]["code"]["goPluginSource"]["oci"]["credentials"] =
        json!({"username": "robot", "passwordData": PASSWORD_DATA});
    object
}

#[tokio::test]
async fn password_never_leaves_the_server() {
    let mut recorder = Recorder {
        api: TestApi::new(),
        bodies: Vec::new(),
    };
    let watch = recorder
        .api
        .send(
            Method::GET,
            &format!("{COLLECTION}?watch=true&resourceVersion=0"),
            None,
            None,
        )
        .await;
    let json = Some("application/json");

    // Create (and a dry run), with password and with passwordData.
    let (status, _) = recorder
        .send(
            Method::POST,
            COLLECTION,
            json,
            Some(oci_revision_with_password("pw", PASSWORD)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = recorder
        .send(
            Method::POST,
            COLLECTION,
            json,
            Some(with_password_data("data")),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = recorder
        .send(
            Method::POST,
            &format!("{COLLECTION}?dryRun=All"),
            json,
            Some(oci_revision_with_password("dry", PASSWORD)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    recorder.api.wait_ready("pw").await;
    recorder.api.wait_ready("data").await;

    // Reads.
    let (_, object) = recorder.send(Method::GET, &item("pw"), None, None).await;
    assert_eq!(
        object["metadata"]["annotations"]["server.edgefn.dev/credentials"],
        "stored"
    );
    assert_eq!(
        object["spec"]["code"]["goPluginSource"]["oci"]["credentials"],
        json!({"username": "robot"})
    );
    recorder
        .send(Method::GET, &status_path("data"), None, None)
        .await;
    recorder.send(Method::GET, COLLECTION, None, None).await;

    // Writes: PUT, the three patches, status writes.
    let (status, _) = recorder
        .send(Method::PUT, &item("pw"), json, Some(object.clone()))
        .await;
    assert_eq!(status, StatusCode::OK);
    let label = |value: &str| json!({"metadata": {"labels": {"step": value}}});
    let (status, _) = recorder
        .send(
            Method::PATCH,
            &item("pw"),
            Some("application/merge-patch+json"),
            Some(label("merge")),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = recorder
        .send(
            Method::PATCH,
            &item("pw"),
            Some("application/strategic-merge-patch+json"),
            Some(label("smp")),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let json_patch = json!([{"op": "add", "path": "/metadata/labels", "value": {"step": "json"}}]);
    let (status, _) = recorder
        .send(
            Method::PATCH,
            &item("data"),
            Some("application/json-patch+json"),
            Some(json_patch),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, current) = recorder.send(Method::GET, &item("data"), None, None).await;
    let (status, _) = recorder
        .send(Method::PUT, &status_path("data"), json, Some(current))
        .await;
    assert_eq!(status, StatusCode::OK);
    let status_patch = json!({"status": {"ref": "x"}});
    let (status, _) = recorder
        .send(
            Method::PATCH,
            &status_path("pw"),
            Some("application/merge-patch+json"),
            Some(status_patch),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // Errors: a JSON patch test that probes the password, a wrongly typed password, a
    // duplicate create.
    let probe = json!([{"op": "test", "path": PASSWORD_POINTER, "value": PASSWORD}]);
    let (status, _) = recorder
        .send(
            Method::PATCH,
            &item("pw"),
            Some("application/json-patch+json"),
            Some(probe),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let mut typed = oci_revision_with_password("typed", "");
    typed["spec"]["code"]["goPluginSource"]["oci"]["credentials"]["password"] = json!(987_654_321);
    let (status, body) = recorder
        .send(Method::POST, COLLECTION, json, Some(typed))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(!body.to_string().contains("987654321"), "{body}");
    let (status, _) = recorder
        .send(
            Method::POST,
            COLLECTION,
            json,
            Some(oci_revision_with_password("pw", PASSWORD)),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // The password is still stored, for ingest.
    let stored = recorder
        .api
        .store
        .get("pw")
        .await
        .expect("read")
        .expect("stored");
    let credentials = stored
        .spec
        .code
        .go_plugin_source
        .and_then(|s| s.oci)
        .and_then(|o| o.credentials);
    assert_eq!(credentials.map(|c| c.password), Some(PASSWORD.to_owned()));

    // Deletes.
    let (status, _) = recorder.send(Method::DELETE, &item("pw"), None, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = recorder.send(Method::DELETE, COLLECTION, None, None).await;
    assert_eq!(status, StatusCode::OK);

    // Every watch event up to the deletion of "data".
    let mut body = watch.into_body();
    let mut stream = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while stream.matches("\"DELETED\"").count() < 2 {
        let Ok(Some(Ok(frame))) = tokio::time::timeout_at(deadline, body.frame()).await else {
            break;
        };
        if let Ok(data) = frame.into_data() {
            stream.push_str(&String::from_utf8_lossy(&data));
        }
    }
    assert_eq!(
        stream.matches("\"DELETED\"").count(),
        2,
        "watch saw both deletions: {stream}"
    );
    recorder.bodies.push(format!("watch: {stream}"));

    recorder.assert_no_secret();
}

fn stored_password(stored: &edgefn_proto::EdgeFunctionRevision) -> Option<String> {
    let credentials = stored
        .spec
        .code
        .go_plugin_source
        .as_ref()?
        .oci
        .as_ref()?
        .credentials
        .as_ref()?;
    Some(credentials.password.clone())
}

#[tokio::test]
async fn update_without_password_keeps_stored_one() {
    let api = TestApi::new();
    let object = api
        .create_ready(&oci_revision_with_password("pw", PASSWORD))
        .await;
    let (status, _) = api.put(&item("pw"), &object).await;
    assert_eq!(status, StatusCode::OK);

    let stored = api.store.get("pw").await.expect("read").expect("stored");
    assert_eq!(stored_password(&stored).as_deref(), Some(PASSWORD));
}

#[tokio::test]
async fn update_with_new_password_replaces_it() {
    let api = TestApi::new();
    api.create_ready(&oci_revision_with_password("pw", PASSWORD))
        .await;
    let patch = oci_patch(json!({"credentials": {"password": "new-one"}}));
    let (status, body) = api
        .patch(&item("pw"), "application/merge-patch+json", &patch)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(!body.to_string().contains("new-one"), "{body}");

    let stored = api.store.get("pw").await.expect("read").expect("stored");
    assert_eq!(stored_password(&stored).as_deref(), Some("new-one"));
}

#[tokio::test]
async fn moving_to_another_registry_drops_password() {
    let api = TestApi::new();
    api.create_ready(&oci_revision_with_password("pw", PASSWORD))
        .await;
    let patch =
        json!({"spec": {"code": {"goPluginSource": {"oci": {"repo": "attacker.example/x"}}}}});
    let (status, body) = api
        .patch(&item("pw"), "application/merge-patch+json", &patch)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["metadata"]["annotations"]
        .get("server.edgefn.dev/credentials")
        .is_none());

    let stored = api.store.get("pw").await.expect("read").expect("stored");
    assert_eq!(stored_password(&stored).as_deref(), Some(""));
}

#[tokio::test]
async fn changing_username_drops_password() {
    let api = TestApi::new();
    api.create_ready(&oci_revision_with_password("pw", PASSWORD))
        .await;
    let patch = oci_patch(json!({"credentials": {"username": "other"}}));
    let (status, _) = api
        .patch(&item("pw"), "application/merge-patch+json", &patch)
        .await;
    assert_eq!(status, StatusCode::OK);

    let stored = api.store.get("pw").await.expect("read").expect("stored");
    assert_eq!(stored_password(&stored).as_deref(), Some(""));
}

#[tokio::test]
async fn last_applied_annotation_loses_password() {
    let api = TestApi::new();
    let mut object = oci_revision_with_password("pw", PASSWORD);
    let applied = object.to_string();
    object["metadata"]["annotations"] =
        json!({"kubectl.kubernetes.io/last-applied-configuration": applied});
    let body = api.create(&object).await;

    let annotation = body["metadata"]["annotations"]
        ["kubectl.kubernetes.io/last-applied-configuration"]
        .as_str()
        .expect("annotation kept");
    assert!(!annotation.contains(PASSWORD), "{annotation}");
    assert!(
        annotation.contains("robot"),
        "the rest is kept: {annotation}"
    );
    let stored = api.store.get("pw").await.expect("read").expect("stored");
    assert!(!serde_json::to_string(&stored.metadata)
        .expect("json")
        .contains(PASSWORD));
}

#[tokio::test]
async fn client_cannot_set_credentials_annotation() {
    let api = TestApi::new();
    let mut object = common::url_revision("plain");
    object["metadata"]["annotations"] = json!({"server.edgefn.dev/credentials": "stored"});
    let body = api.create(&object).await;
    assert!(body["metadata"].get("annotations").is_none(), "{body}");
}

#[tokio::test]
async fn request_body_in_a_test_cannot_reveal_password() {
    let api = TestApi::new();
    api.create_ready(&oci_revision_with_password("pw", PASSWORD))
        .await;
    // With the password hidden from the patched document, a test of it fails whatever the
    // guess, so a right guess and a wrong one get the same response.
    for guess in [PASSWORD, "wrong"] {
        let probe = json!([{"op": "test", "path": PASSWORD_POINTER, "value": guess}]);
        let (status, body) = api
            .patch(&item("pw"), "application/json-patch+json", &probe)
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "guess {guess}: {body}"
        );
    }
}
