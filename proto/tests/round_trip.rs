//! Writing a parsed revision back to JSON and YAML, and reading it again.

mod common;

use common::*;
use edgefn_proto::{parse_revision, EdgeFunctionRevision, OciCredentials, PasswordData};
use serde_json::{json, Value};

const DIGEST: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

/// Returns a revision that sets every field of the API except the other code sources.
fn full_object() -> Value {
    json!({
        "apiVersion": "extensions.apoxy.dev/v1alpha2",
        "kind": "EdgeFunctionRevision",
        "metadata": {
            "name": "myfn-5d8f7c9b4",
            "generateName": "myfn-",
            "uid": "5f0c2a4e-0000-4000-8000-000000000001",
            "resourceVersion": "1234",
            "creationTimestamp": "2026-01-02T03:04:05Z",
            "deletionTimestamp": "2026-01-03T03:04:05Z",
            "labels": {"extensions.apoxy.dev/edgefunction": "myfn"},
            "annotations": {
                "edgefn.dev/sha256": DIGEST,
                "edgefn.dev/plugin-config-type": "typed-struct"
            },
            "ownerReferences": [{
                "apiVersion": "extensions.apoxy.dev/v1alpha2",
                "kind": "EdgeFunction",
                "name": "myfn",
                "uid": "5f0c2a4e-0000-4000-8000-000000000002",
                "controller": true,
                "blockOwnerDeletion": true
            }],
            "finalizers": ["example.com/cleanup"]
        },
        "spec": {
            "mode": "filter",
            "code": {
                "metadata": {"name": "my-plugin", "labels": {"team": "edge"}},
                "goPluginSource": {
                    "oci": {
                        "repo": "ghcr.io/example/plugin",
                        "tag": "v1",
                        "credentials": {
                            "username": "robot",
                            "password": "s3cret",
                            "passwordData": "czNjcmV0"
                        }
                    },
                    "pluginConfig": "greeting: hello\nlimits: {rps: 10}\n"
                }
            },
            "env": [{"name": "GREETING", "value": "hello"}],
            "runtime": {
                "timeout": "1m30s",
                "capabilities": {"fetchAPI": false, "kv": true}
            }
        },
        "status": {
            "ref": "myfn-5d8f7c9b4",
            "conditions": [
                {
                    "type": "Ingest",
                    "status": "True",
                    "reason": "InProgress",
                    "message": "Edge Function code is being ingested",
                    "lastTransitionTime": "2026-01-02T03:04:06Z"
                },
                {
                    "type": "Ready",
                    "status": "True",
                    "observedGeneration": 3,
                    "reason": "Ready",
                    "message": "Ready",
                    "lastTransitionTime": "2026-01-02T03:04:07Z"
                }
            ]
        }
    })
}

fn to_json(revision: &EdgeFunctionRevision) -> Value {
    serde_json::to_value(revision).expect("revision serializes to JSON")
}

#[test]
fn full_object_json_is_written_back_unchanged() {
    let document = full_object();

    let revision = accept_json(&document);

    assert_eq!(to_json(&revision), document);
}

#[test]
fn written_json_parses_to_equal_revision() {
    let revision = accept_json(&full_object());

    let text = serde_json::to_string(&revision).expect("serializes");
    let again = parse_revision(&text).expect("written JSON parses");

    assert_eq!(again, revision);
}

#[test]
fn written_yaml_parses_to_equal_revision() {
    let revision = accept_json(&full_object());

    let text = serde_yaml_ng::to_string(&revision).expect("serializes to YAML");
    let again = parse_revision(&text).expect("written YAML parses");

    assert_eq!(again, revision);
}

#[test]
fn other_sources_are_written_back_unchanged() {
    let documents = [
        object(js_assets_spec(), "js"),
        object(
            json!({
                "mode": "backend",
                "code": {"metadata": {}, "jsSource": {
                    "entrypoint": "src/main.ts",
                    "git": {
                        "repository": "https://example.com/fn.git",
                        "branch": "main",
                        "commit": "abc"
                    }
                }},
                "runtime": {"port": 8801}
            }),
            "git",
        ),
        object(
            json!({
                "mode": "backend",
                "code": {"metadata": {}, "jsSource": {
                    "entrypoint": "index.js",
                    "npm": {"package": "fn", "version": "1.2.3"}
                }},
                "runtime": {"port": 8080}
            }),
            "npm",
        ),
        object(
            json!({
                "mode": "backend",
                "code": {"metadata": {}, "wasmSource": {"url": "https://example.com/fn.wasm"}},
                "runtime": {"port": 8080}
            }),
            "wasm",
        ),
    ];

    for document in documents {
        let mut expected = document.clone();
        expected["status"] = json!({"ref": ""});
        expected["spec"]["code"]["metadata"] = json!({});
        if expected["spec"]["runtime"].is_null() {
            expected["spec"]["runtime"] = json!({"port": 8080});
        }
        assert_eq!(to_json(&accept_json(&document)), expected);
    }
}

#[test]
fn fields_without_omitempty_are_always_written() {
    let mut document = go_oci_spec();
    document["code"]["goPluginSource"]["oci"]["credentialsRef"] = json!({"name": "registry"});

    let written = to_json(&accept_json(&document));

    assert_eq!(written["spec"]["code"]["metadata"], json!({}));
    assert_eq!(written["status"], json!({"ref": ""}));
    assert_eq!(written["metadata"], json!({}));
    assert_eq!(
        written["spec"]["code"]["goPluginSource"]["oci"]["credentialsRef"],
        json!({"group": "", "kind": "", "name": "registry", "namespace": ""})
    );
}

#[test]
fn defaults_are_written() {
    let mut document = go_oci_spec();
    document["mode"] = json!("Filter");
    document["code"]["goPluginSource"]["oci"]["tag"] = json!("");

    let written = to_json(&accept_json(&document));

    assert_eq!(
        written["spec"],
        json!({
            "mode": "filter",
            "code": {
                "metadata": {},
                "goPluginSource": {"oci": {"repo": "ghcr.io/example/plugin", "tag": "latest"}}
            },
            "runtime": {}
        })
    );
}

#[test]
fn credentials_debug_hides_secrets() {
    let credentials = OciCredentials {
        username: "robot".to_owned(),
        password: "s3cret-password".to_owned(),
        password_data: Some(PasswordData("czNjcmV0LXBhc3N3b3Jk".to_owned())),
    };

    let printed = format!("{credentials:?}");

    assert!(printed.contains("robot"), "{printed}");
    assert!(!printed.contains("s3cret"), "{printed}");
    assert!(!printed.contains("czNjcmV0"), "{printed}");
    assert_eq!(printed.matches("<redacted>").count(), 2, "{printed}");
}

#[test]
fn revision_debug_hides_secrets() {
    let revision = accept_json(&full_object());

    let printed = format!("{revision:?} {revision:#?}");

    assert!(!printed.contains("s3cret"), "{printed}");
    assert!(!printed.contains("czNjcmV0"), "{printed}");
}
