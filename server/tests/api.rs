//! The resource's operations and their errors, driven in process through `oneshot`.

mod common;

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use common::{cause_fields, condition, item, status_path, url_revision, TestApi, COLLECTION};
use edgefn_server::ingest::FailingIngest;
use edgefn_server::store::FileStoreOptions;
use serde_json::{json, Value as Json};

const MERGE: &str = "application/merge-patch+json";
const JSON_PATCH: &str = "application/json-patch+json";
const STRATEGIC: &str = "application/strategic-merge-patch+json";

fn version(object: &Json) -> String {
    object["metadata"]["resourceVersion"]
        .as_str()
        .expect("resourceVersion is a string")
        .to_owned()
}

fn names(list: &Json) -> Vec<String> {
    list["items"]
        .as_array()
        .expect("items is a list")
        .iter()
        .map(|object| {
            object["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn create_returns_object_with_server_fields() {
    let api = TestApi::new();
    let (status, body) = api.post(&url_revision("one")).await;

    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body["kind"], "EdgeFunctionRevision");
    assert_eq!(body["apiVersion"], "extensions.apoxy.dev/v1alpha2");
    assert_eq!(body["metadata"]["name"], "one");
    assert_eq!(body["metadata"]["labels"]["app"], "demo");
    assert!(body["metadata"]["uid"]
        .as_str()
        .is_some_and(|uid| uid.len() == 36));
    assert!(version(&body).parse::<u64>().is_ok());
    let created = body["metadata"]["creationTimestamp"]
        .as_str()
        .unwrap_or_default();
    assert_eq!(created.len(), "2026-01-01T00:00:00Z".len(), "{created}");
    assert!(created.ends_with('Z'), "{created}");
    assert_eq!(created.as_bytes()[10], b'T', "{created}");
}

#[tokio::test]
async fn create_appends_ingest_condition() {
    let api = TestApi::new();
    let body = api.create(&url_revision("one")).await;

    let ingest = condition(&body, "Ingest").expect("Ingest condition");
    assert_eq!(ingest["status"], "True");
    assert_eq!(ingest["reason"], "InProgress");
    assert_eq!(body["status"]["ref"], "");
}

#[tokio::test]
async fn create_ignores_status_in_body() {
    let api = TestApi::new();
    let mut object = url_revision("one");
    object["status"] = json!({"ref": "forged", "conditions": []});
    let body = api.create(&object).await;
    assert_eq!(body["status"]["ref"], "");
}

#[tokio::test]
async fn noop_ingest_marks_ready_with_ref() {
    let api = TestApi::new();
    api.create(&url_revision("one")).await;

    let body = api.wait_ready("one").await;
    let ready = condition(&body, "Ready").expect("Ready condition");
    assert_eq!(ready["status"], "True");
    assert_eq!(ready["reason"], "Ready");
    assert_eq!(body["status"]["ref"], "one");
    assert!(
        condition(&body, "Ingest").is_some(),
        "Ingest condition is kept"
    );
}

#[tokio::test]
async fn failing_ingest_marks_ready_false() {
    let api = TestApi::with(
        Arc::new(FailingIngest("pulling the image failed: 401".to_owned())),
        FileStoreOptions::default(),
    );
    api.create(&url_revision("one")).await;

    let body = api.wait_ready("one").await;
    let ready = condition(&body, "Ready").expect("Ready condition");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "Failed");
    assert_eq!(ready["message"], "pulling the image failed: 401");
    assert_eq!(body["status"]["ref"], "");
}

#[tokio::test]
async fn create_applies_defaults() {
    let api = TestApi::new();
    let filter = json!({
        "metadata": {"name": "filter"},
        "spec": {"code": {"goPluginSource": {"oci": {"repo": "ghcr.io/example/plugin"}}}}
    });
    let body = api.create(&filter).await;
    assert_eq!(body["spec"]["mode"], "filter");
    assert_eq!(body["spec"]["runtime"], json!({}));
    assert_eq!(
        body["spec"]["code"]["goPluginSource"]["oci"]["tag"],
        "latest"
    );

    let backend = json!({
        "metadata": {"name": "backend"},
        "spec": {"code": {"wasmSource": {"url": "https://example.com/f.wasm"}}}
    });
    let body = api.create(&backend).await;
    assert_eq!(body["spec"]["mode"], "backend");
    assert_eq!(body["spec"]["runtime"]["port"], 8080);
}

#[tokio::test]
async fn create_existing_name_is_already_exists() {
    let api = TestApi::new();
    api.create(&url_revision("one")).await;
    let (status, body) = api.post(&url_revision("one")).await;

    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["kind"], "Status");
    assert_eq!(body["apiVersion"], "v1");
    assert_eq!(body["status"], "Failure");
    assert_eq!(body["reason"], "AlreadyExists");
    assert_eq!(body["code"], 409);
    assert_eq!(body["details"]["name"], "one");
    assert_eq!(body["details"]["group"], "extensions.apoxy.dev");
}

#[tokio::test]
async fn create_with_generate_name() {
    let api = TestApi::new();
    let mut object = url_revision("");
    object["metadata"] = json!({"generateName": "fn-"});
    let body = api.create(&object).await;

    let name = body["metadata"]["name"].as_str().unwrap_or_default();
    assert!(name.starts_with("fn-"), "{name}");
    assert_eq!(name.len(), "fn-".len() + 5, "{name}");
    assert_eq!(body["metadata"]["generateName"], "fn-");
}

#[tokio::test]
async fn create_without_name_is_invalid() {
    let api = TestApi::new();
    let mut object = url_revision("");
    object["metadata"] = json!({});
    let (status, body) = api.post(&object).await;

    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["reason"], "Invalid");
    assert_eq!(cause_fields(&body), ["metadata.name"]);
}

#[tokio::test]
async fn create_with_bad_name_is_invalid() {
    let api = TestApi::new();
    let (status, body) = api.post(&url_revision("Not_A_Name")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(cause_fields(&body), ["metadata.name"]);
}

#[tokio::test]
async fn create_undecodable_body_is_bad_request() {
    let api = TestApi::new();
    let (status, body) = api
        .call(
            Method::POST,
            COLLECTION,
            Some("application/json"),
            Some("{\"metadata\": ".to_owned()),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["reason"], "BadRequest");
    assert_eq!(body["code"], 400);
}

#[tokio::test]
async fn create_unknown_field_is_bad_request() {
    let api = TestApi::new();
    let mut object = url_revision("one");
    object["spec"]["moed"] = json!("filter");
    let (status, body) = api.post(&object).await;

    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(cause_fields(&body), ["spec.moed"]);
}

#[tokio::test]
async fn create_accepts_yaml() {
    let api = TestApi::new();
    let yaml = "metadata:\n  name: yaml\nspec:\n  code:\n    goPluginSource:\n      url: \
                https://example.com/p.so\n";
    let (status, body) = api
        .call(
            Method::POST,
            COLLECTION,
            Some("application/yaml"),
            Some(yaml.to_owned()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["spec"]["mode"], "filter");
}

#[tokio::test]
async fn create_with_resource_version_is_bad_request() {
    let api = TestApi::new();
    let mut object = url_revision("one");
    object["metadata"]["resourceVersion"] = json!("5");
    let (status, _) = api.post(&object).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn create_other_media_type_is_415() {
    let api = TestApi::new();
    let (status, body) = api
        .call(
            Method::POST,
            COLLECTION,
            Some("text/plain"),
            Some(url_revision("one").to_string()),
        )
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(body["reason"], "UnsupportedMediaType");
}

#[tokio::test]
async fn create_dry_run_stores_nothing() {
    let api = TestApi::new();
    let (status, _) = api
        .call(
            Method::POST,
            &format!("{COLLECTION}?dryRun=All"),
            Some("application/json"),
            Some(url_revision("one").to_string()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = api.get(&item("one")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn get_missing_is_not_found() {
    let api = TestApi::new();
    let (status, body) = api.get(&item("missing")).await;

    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["reason"], "NotFound");
    assert_eq!(body["details"]["name"], "missing");
    assert_eq!(body["details"]["kind"], "edgefunctionrevisions");
}

#[tokio::test]
async fn list_returns_sorted_list() {
    let api = TestApi::new();
    for name in ["b", "c", "a"] {
        api.create(&url_revision(name)).await;
    }
    let (status, body) = api.get(COLLECTION).await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["kind"], "EdgeFunctionRevisionList");
    assert_eq!(body["apiVersion"], "extensions.apoxy.dev/v1alpha2");
    assert!(body["metadata"]["resourceVersion"].as_str().is_some());
    assert_eq!(names(&body), ["a", "b", "c"]);
}

#[tokio::test]
async fn list_label_selectors() {
    let api = TestApi::new();
    for (name, labels) in [
        ("web", json!({"app": "web", "tier": "edge"})),
        ("api", json!({"app": "api"})),
        ("bare", json!({})),
    ] {
        let mut object = url_revision(name);
        object["metadata"]["labels"] = labels;
        api.create(&object).await;
    }

    let cases = [
        ("app%3Dweb", vec!["web"]),
        ("app%3D%3Dapi", vec!["api"]),
        ("app%21%3Dweb", vec!["api", "bare"]),
        ("tier", vec!["web"]),
        ("%21app", vec!["bare"]),
        ("app%2Ctier%3Dedge", vec!["web"]),
    ];
    for (selector, expected) in cases {
        let (status, body) = api
            .get(&format!("{COLLECTION}?labelSelector={selector}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{selector}");
        assert_eq!(names(&body), expected, "labelSelector={selector}");
    }
}

#[tokio::test]
async fn list_field_selector_by_name() {
    let api = TestApi::new();
    api.create(&url_revision("one")).await;
    api.create(&url_revision("two")).await;

    let (_, body) = api
        .get(&format!("{COLLECTION}?fieldSelector=metadata.name%3Dtwo"))
        .await;
    assert_eq!(names(&body), ["two"]);

    let (status, body) = api
        .get(&format!("{COLLECTION}?fieldSelector=spec.mode%3Dfilter"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["reason"], "BadRequest");
}

#[tokio::test]
async fn list_limit_and_continue_page_through_all() {
    let api = TestApi::new();
    for name in ["a", "b", "c", "d", "e"] {
        api.create(&url_revision(name)).await;
    }

    let mut seen = Vec::new();
    let mut path = format!("{COLLECTION}?limit=2");
    for _ in 0..5 {
        let (status, body) = api.get(&path).await;
        assert_eq!(status, StatusCode::OK);
        let page = names(&body);
        assert!(page.len() <= 2, "{page:?}");
        seen.extend(page);
        match body["metadata"]["continue"].as_str() {
            Some(token) => path = format!("{COLLECTION}?limit=2&continue={token}"),
            None => break,
        }
    }
    assert_eq!(seen, ["a", "b", "c", "d", "e"]);
}

#[tokio::test]
async fn list_bad_continue_is_bad_request() {
    let api = TestApi::new();
    let (status, _) = api.get(&format!("{COLLECTION}?continue=%21%21")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn replace_with_current_version_updates() {
    let api = TestApi::new();
    let mut object = api.create_ready(&url_revision("one")).await;
    object["metadata"]["labels"]["app"] = json!("changed");
    let (status, body) = api.put(&item("one"), &object).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["metadata"]["labels"]["app"], "changed");
    assert_ne!(version(&body), version(&object));
    assert_eq!(body["metadata"]["uid"], object["metadata"]["uid"]);
    assert_eq!(
        body["metadata"]["creationTimestamp"],
        object["metadata"]["creationTimestamp"]
    );
}

#[tokio::test]
async fn replace_with_stale_version_is_conflict() {
    let api = TestApi::new();
    let object = api.create_ready(&url_revision("one")).await;
    let mut first = object.clone();
    first["metadata"]["labels"]["app"] = json!("first");
    let (status, _) = api.put(&item("one"), &first).await;
    assert_eq!(status, StatusCode::OK);

    let (status, body) = api.put(&item("one"), &object).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["reason"], "Conflict");
    assert_eq!(body["details"]["name"], "one");
}

#[tokio::test]
async fn replace_without_version_is_invalid() {
    let api = TestApi::new();
    api.create(&url_revision("one")).await;
    let (status, body) = api.put(&item("one"), &url_revision("one")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(cause_fields(&body), ["metadata.resourceVersion"]);
}

#[tokio::test]
async fn replace_with_other_name_is_bad_request() {
    let api = TestApi::new();
    let mut object = api.create_ready(&url_revision("one")).await;
    object["metadata"]["name"] = json!("two");
    let (status, _) = api.put(&item("one"), &object).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn replace_missing_is_not_found() {
    let api = TestApi::new();
    let mut object = url_revision("one");
    object["metadata"]["resourceVersion"] = json!("1");
    let (status, _) = api.put(&item("one"), &object).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn replace_is_validated_and_defaulted() {
    let api = TestApi::new();
    let object = api.create_ready(&url_revision("one")).await;

    let mut invalid = object.clone();
    invalid["spec"]["runtime"] = json!({"port": 9000});
    let (status, body) = api.put(&item("one"), &invalid).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(cause_fields(&body), ["spec.runtime.port"]);

    let mut upper = object.clone();
    upper["spec"]["mode"] = json!("Filter");
    upper["spec"]
        .as_object_mut()
        .map(|spec| spec.remove("runtime"));
    let (status, body) = api.put(&item("one"), &upper).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["spec"]["mode"], "filter");
    assert_eq!(body["spec"]["runtime"], json!({}));
}

#[tokio::test]
async fn merge_patch_adds_label() {
    let api = TestApi::new();
    api.create(&url_revision("one")).await;
    let patch = json!({"metadata": {"labels": {"team": "edge"}}});
    let (status, body) = api.patch(&item("one"), MERGE, &patch).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["metadata"]["labels"]["team"], "edge");
    assert_eq!(body["metadata"]["labels"]["app"], "demo");
}

#[tokio::test]
async fn json_patch_adds_env() {
    let api = TestApi::new();
    api.create(&url_revision("one")).await;
    let patch = json!([{"op": "add", "path": "/spec/env", "value": [{"name": "A", "value": "1"}]}]);
    let (status, body) = api.patch(&item("one"), JSON_PATCH, &patch).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["spec"]["env"], json!([{"name": "A", "value": "1"}]));
}

#[tokio::test]
async fn strategic_patch_replaces_lists() {
    let api = TestApi::new();
    let mut object = url_revision("one");
    object["spec"]["env"] = json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]);
    api.create(&object).await;
    let patch = json!({"spec": {"env": [{"name": "C", "value": "3"}]}});
    let (status, body) = api.patch(&item("one"), STRATEGIC, &patch).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["spec"]["env"], json!([{"name": "C", "value": "3"}]));
}

#[tokio::test]
async fn patch_other_media_type_is_415() {
    let api = TestApi::new();
    api.create(&url_revision("one")).await;
    for content_type in ["application/apply-patch+yaml", "application/json"] {
        let (status, body) = api.patch(&item("one"), content_type, &json!({})).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{content_type}");
        assert_eq!(body["reason"], "UnsupportedMediaType", "{content_type}");
    }
}

#[tokio::test]
async fn patch_failed_json_test_is_invalid() {
    let api = TestApi::new();
    api.create(&url_revision("one")).await;
    let patch = json!([{"op": "test", "path": "/spec/mode", "value": "backend"}]);
    let (status, _) = api.patch(&item("one"), JSON_PATCH, &patch).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn patch_undecodable_is_bad_request() {
    let api = TestApi::new();
    api.create(&url_revision("one")).await;
    let (status, _) = api
        .call(
            Method::PATCH,
            &item("one"),
            Some(MERGE),
            Some("{not json".to_owned()),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn patch_with_stale_version_is_conflict() {
    let api = TestApi::new();
    let object = api.create(&url_revision("one")).await;
    api.patch(
        &item("one"),
        MERGE,
        &json!({"metadata": {"labels": {"x": "1"}}}),
    )
    .await;
    let stale = json!({"metadata": {"resourceVersion": version(&object), "labels": {"x": "2"}}});
    let (status, body) = api.patch(&item("one"), MERGE, &stale).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["reason"], "Conflict");
}

#[tokio::test]
async fn patch_missing_is_not_found() {
    let api = TestApi::new();
    let (status, _) = api.patch(&item("missing"), MERGE, &json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn delete_returns_object_then_gone() {
    let api = TestApi::new();
    api.create(&url_revision("one")).await;
    let (status, body) = api.delete(&item("one")).await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["kind"], "EdgeFunctionRevision");
    assert_eq!(body["metadata"]["name"], "one");
    let (status, _) = api.get(&item("one")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn delete_missing_is_not_found() {
    let api = TestApi::new();
    let (status, body) = api.delete(&item("missing")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["reason"], "NotFound");
}

#[tokio::test]
async fn delete_with_stale_precondition_is_conflict() {
    let api = TestApi::new();
    api.create(&url_revision("one")).await;
    let options = json!({"preconditions": {"resourceVersion": "999"}});
    let (status, body) = api
        .call(
            Method::DELETE,
            &item("one"),
            Some("application/json"),
            Some(options.to_string()),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["reason"], "Conflict");
}

#[tokio::test]
async fn delete_collection_deletes_selected() {
    let api = TestApi::new();
    for name in ["keep", "drop-1", "drop-2"] {
        let mut object = url_revision(name);
        if name.starts_with("drop") {
            object["metadata"]["labels"]["gone"] = json!("yes");
        }
        api.create(&object).await;
    }
    let (status, body) = api
        .delete(&format!("{COLLECTION}?labelSelector=gone%3Dyes"))
        .await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["kind"], "EdgeFunctionRevisionList");
    assert_eq!(names(&body), ["drop-1", "drop-2"]);
    let (_, list) = api.get(COLLECTION).await;
    assert_eq!(names(&list), ["keep"]);
}

#[tokio::test]
async fn status_put_changes_only_status() {
    let api = TestApi::new();
    let mut object = api.create_ready(&url_revision("one")).await;
    object["status"]["ref"] = json!("artifact-7");
    object["spec"]["mode"] = json!("backend");
    let (status, body) = api.put(&status_path("one"), &object).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"]["ref"], "artifact-7");
    assert_eq!(body["spec"]["mode"], "filter");
}

#[tokio::test]
async fn main_put_keeps_status() {
    let api = TestApi::new();
    let mut object = api.create_ready(&url_revision("one")).await;
    object["status"]["ref"] = json!("forged");
    object["metadata"]["labels"]["x"] = json!("y");
    let (status, body) = api.put(&item("one"), &object).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"]["ref"], "one");
    assert_eq!(body["metadata"]["labels"]["x"], "y");
}

#[tokio::test]
async fn status_patch_and_get() {
    let api = TestApi::new();
    api.create_ready(&url_revision("one")).await;
    let patch = json!({"status": {"ref": "patched"}, "spec": {"mode": "backend"}});
    let (status, body) = api.patch(&status_path("one"), MERGE, &patch).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"]["ref"], "patched");
    assert_eq!(body["spec"]["mode"], "filter");

    let (status, body) = api.get(&status_path("one")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"]["ref"], "patched");
}

#[tokio::test]
async fn main_patch_ignores_status() {
    let api = TestApi::new();
    api.create_ready(&url_revision("one")).await;
    let patch = json!({"status": {"ref": "forged"}, "metadata": {"labels": {"x": "y"}}});
    let (status, body) = api.patch(&item("one"), MERGE, &patch).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"]["ref"], "one");
    assert_eq!(body["metadata"]["labels"]["x"], "y");
}

#[tokio::test]
async fn unknown_path_and_method_are_status_objects() {
    let api = TestApi::new();
    let (status, body) = api.get("/apis/other.example/v1/things").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["kind"], "Status");

    let (status, body) = api.call(Method::POST, &item("one"), None, None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["reason"], "MethodNotAllowed");
}
