//! Validation and defaulting as Apoxy defines them, through POST, PUT and PATCH: each body
//! breaks one rule, and the result is Apoxy's accept or reject decision, with a 422 `Status`
//! naming the field path. Also: the password is never returned, and spec and status writes
//! leave each other alone.

mod common;

use axum::http::StatusCode;
use common::{cause_fields, item, oci_revision_with_password, status_path, url_revision, TestApi};
use serde_json::{json, Value as Json};

const REPO: &str = "ghcr.io/example/p";

/// A rule breaker: how to change a valid filter-mode URL revision, and the field path of the
/// rejection.
struct Breaker {
    name: &'static str,
    spec_patch: fn() -> Json,
    field: &'static str,
}

fn breakers() -> Vec<Breaker> {
    vec![
        Breaker {
            name: "oci and url",
            spec_patch: || json!({"code": {"goPluginSource": {"oci": {"repo": REPO}}}}),
            field: "spec.code.goPluginSource",
        },
        Breaker {
            name: "port in filter mode",
            spec_patch: || json!({"runtime": {"port": 8080}}),
            field: "spec.runtime.port",
        },
        Breaker {
            name: "credentials and credentialsRef",
            spec_patch: || {
                json!({"code": {"goPluginSource": {"url": null, "oci": {
                    "repo": REPO,
                    "credentials": {"username": "u", "password": "p"},
                    "credentialsRef": {"group": "", "kind": "Secret", "name": "s", "namespace": "n"}
                }}}})
            },
            field: "spec.code.goPluginSource.oci",
        },
    ]
}

/// Applies a JSON merge patch, to build the broken objects.
fn merged(mut target: Json, patch: &Json) -> Json {
    if let (Some(target), Some(patch)) = (target.as_object_mut(), patch.as_object()) {
        for (key, value) in patch {
            if value.is_null() {
                target.remove(key);
            } else {
                let current = target.remove(key).unwrap_or(Json::Null);
                target.insert(key.clone(), merged(current, value));
            }
        }
        return Json::Object(target.clone());
    }
    patch.clone()
}

fn assert_rejected(status: StatusCode, body: &Json, breaker: &Breaker, verb: &str) {
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{verb} {}: {body}",
        breaker.name
    );
    assert_eq!(body["kind"], "Status", "{verb} {}", breaker.name);
    assert_eq!(body["reason"], "Invalid", "{verb} {}", breaker.name);
    assert_eq!(
        cause_fields(body),
        [breaker.field],
        "{verb} {}",
        breaker.name
    );
}

#[tokio::test]
async fn post_rejects_each_broken_rule() {
    let api = TestApi::new();
    for breaker in breakers() {
        let mut object = url_revision("broken");
        object["spec"] = merged(object["spec"].clone(), &(breaker.spec_patch)());
        let (status, body) = api.post(&object).await;
        assert_rejected(status, &body, &breaker, "POST");
    }
}

#[tokio::test]
async fn put_rejects_each_broken_rule() {
    let api = TestApi::new();
    let valid = api.create_ready(&url_revision("target")).await;
    for breaker in breakers() {
        let mut object = valid.clone();
        object["spec"] = merged(object["spec"].clone(), &(breaker.spec_patch)());
        let (status, body) = api.put(&item("target"), &object).await;
        assert_rejected(status, &body, &breaker, "PUT");
    }
}

#[tokio::test]
async fn patch_rejects_each_broken_rule() {
    let api = TestApi::new();
    api.create_ready(&url_revision("target")).await;
    for breaker in breakers() {
        let patch = json!({"spec": (breaker.spec_patch)()});
        let (status, body) = api
            .patch(&item("target"), "application/merge-patch+json", &patch)
            .await;
        assert_rejected(status, &body, &breaker, "PATCH");
    }
}

#[tokio::test]
async fn upper_case_mode_is_accepted_and_lower_cased() {
    let api = TestApi::new();
    let mut object = url_revision("upper");
    object["spec"]["mode"] = json!("Filter");
    let body = api.create(&object).await;
    assert_eq!(body["spec"]["mode"], "filter");

    let patch = json!({"spec": {"mode": "FILTER"}});
    let (status, body) = api
        .patch(&item("upper"), "application/merge-patch+json", &patch)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["spec"]["mode"], "filter");
}

#[tokio::test]
async fn every_rule_broken_gives_one_cause_each() {
    let api = TestApi::new();
    let object = json!({
        "metadata": {"name": "all"},
        "spec": {
            "mode": "filter",
            "runtime": {"port": 8080},
            "code": {"goPluginSource": {
                "url": "https://example.com/p.so",
                "oci": {
                    "repo": REPO,
                    "credentials": {"username": "u"},
                    "credentialsRef": {"group": "", "kind": "Secret", "name": "s", "namespace": "n"}
                }
            }}
        }
    });
    let (status, body) = api.post(&object).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let mut fields = cause_fields(&body);
    fields.sort();
    assert_eq!(
        fields,
        [
            "spec.code.goPluginSource",
            "spec.code.goPluginSource.oci",
            "spec.runtime.port"
        ]
    );
}

#[tokio::test]
async fn inline_password_is_not_returned_by_get() {
    let api = TestApi::new();
    api.create(&oci_revision_with_password("pw", "hunter2-secret"))
        .await;
    let (status, body) = api.get(&item("pw")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!body.to_string().contains("hunter2-secret"), "{body}");
    let credentials = &body["spec"]["code"]["goPluginSource"]["oci"]["credentials"];
    assert!(credentials.get("password").is_none(), "{credentials}");
    assert!(credentials.get("passwordData").is_none(), "{credentials}");
}

#[tokio::test]
async fn spec_and_status_writes_separate() {
    let api = TestApi::new();
    let before = api.create_ready(&url_revision("one")).await;

    let status_patch =
        json!({"spec": {"env": [{"name": "A", "value": "1"}]}, "status": {"ref": "new-ref"}});
    let (status, body) = api
        .patch(
            &status_path("one"),
            "application/merge-patch+json",
            &status_patch,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"]["ref"], "new-ref");
    assert_eq!(body["spec"], before["spec"]);

    let spec_patch =
        json!({"spec": {"env": [{"name": "B", "value": "2"}]}, "status": {"ref": "forged"}});
    let (status, body) = api
        .patch(&item("one"), "application/merge-patch+json", &spec_patch)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["spec"]["env"], json!([{"name": "B", "value": "2"}]));
    assert_eq!(body["status"]["ref"], "new-ref");
}
