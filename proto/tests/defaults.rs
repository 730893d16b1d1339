//! Defaulting, and the accessors that apply defaults.

mod common;

use std::time::Duration;

use common::*;
use edgefn_proto::{apply_defaults, EdgeFunctionMode, EdgeFunctionRevisionSpec};
use serde_json::json;

fn defaulted(document: serde_json::Value) -> EdgeFunctionRevisionSpec {
    let mut spec: EdgeFunctionRevisionSpec =
        serde_json::from_value(document).expect("test spec decodes");
    apply_defaults(&mut spec);
    spec
}

#[test]
fn empty_mode_with_go_plugin_becomes_filter() {
    let mut document = go_url_spec();
    document["mode"] = json!("");

    assert_eq!(defaulted(document).mode, "filter");
}

#[test]
fn absent_mode_with_go_plugin_becomes_filter() {
    let mut document = go_url_spec();
    document.as_object_mut().expect("object").remove("mode");

    assert_eq!(defaulted(document).mode, "filter");
}

#[test]
fn empty_mode_with_js_source_becomes_backend() {
    let mut document = js_assets_spec();
    document.as_object_mut().expect("object").remove("mode");

    assert_eq!(defaulted(document).mode, "backend");
}

#[test]
fn empty_mode_with_wasm_source_becomes_backend() {
    assert_eq!(defaulted(wasm_spec()).mode, "backend");
}

#[test]
fn capitalised_filter_mode_is_accepted_as_filter() {
    let mut document = go_url_spec();
    document["mode"] = json!("Filter");

    let revision = accept_json(&document);

    assert_eq!(revision.spec.mode, "filter");
}

#[test]
fn upper_case_backend_mode_is_lower_cased() {
    let mut document = js_assets_spec();
    document["mode"] = json!("BACKEND");

    let revision = accept_json(&document);

    assert_eq!(revision.spec.mode(), Some(EdgeFunctionMode::Backend));
}

#[test]
fn absent_runtime_becomes_empty() {
    let spec = defaulted(go_url_spec());

    assert_eq!(spec.runtime, Some(Default::default()));
}

#[test]
fn backend_port_defaults_to_8080() {
    let spec = defaulted(js_assets_spec());

    assert_eq!(spec.runtime.and_then(|runtime| runtime.port), Some(8080));
}

#[test]
fn backend_port_default_follows_lower_casing() {
    let mut document = js_assets_spec();
    document["mode"] = json!("Backend");

    let spec = defaulted(document);

    assert_eq!(spec.runtime.and_then(|runtime| runtime.port), Some(8080));
}

#[test]
fn explicit_backend_port_is_kept() {
    let mut document = js_assets_spec();
    document["runtime"] = json!({"port": 9000});

    assert_eq!(defaulted(document).port(), Some(9000));
}

#[test]
fn filter_mode_gets_no_port() {
    let spec = defaulted(go_url_spec());

    assert_eq!(spec.runtime.and_then(|runtime| runtime.port), None);
}

fn oci_tag(spec: &EdgeFunctionRevisionSpec) -> Option<&str> {
    let source = spec.code.go_plugin_source.as_ref()?;
    Some(source.oci.as_ref()?.tag.as_str())
}

#[test]
fn empty_oci_tag_becomes_latest() {
    let mut document = go_oci_spec();
    document["code"]["goPluginSource"]["oci"]["tag"] = json!("");

    assert_eq!(oci_tag(&defaulted(document)), Some("latest"));
}

#[test]
fn absent_oci_tag_becomes_latest() {
    let mut document = go_oci_spec();
    document["code"]["goPluginSource"]["oci"] = json!({"repo": "ghcr.io/example/plugin"});

    assert_eq!(oci_tag(&defaulted(document)), Some("latest"));
}

#[test]
fn digest_repo_gets_no_default_tag() {
    let mut document = go_oci_spec();
    let repo = format!("ghcr.io/example/plugin@sha256:{}", "a".repeat(64));
    document["code"]["goPluginSource"]["oci"] = json!({"repo": repo});

    assert_eq!(oci_tag(&defaulted(document)), Some(""));
}

#[test]
fn explicit_oci_tag_is_kept() {
    assert_eq!(oci_tag(&defaulted(go_oci_spec())), Some("v1"));
}

#[test]
fn timeout_and_capabilities_stay_unset() {
    let spec = defaulted(go_url_spec());
    let runtime = spec.runtime.expect("runtime is defaulted");

    assert_eq!(runtime.timeout, None);
    assert_eq!(runtime.capabilities, None);
}

#[test]
fn accessors_apply_runtime_defaults() {
    let spec = defaulted(go_url_spec());

    assert_eq!(spec.timeout(), Ok(Duration::from_secs(30)));
    assert!(spec.fetch_api_enabled());
    assert!(spec.kv_enabled());
}

#[test]
fn accessors_read_explicit_runtime_values() {
    let mut document = js_assets_spec();
    document["runtime"] =
        json!({"timeout": "1m30s", "capabilities": {"fetchAPI": false, "kv": false}});

    let spec = accept_json(&document).spec;

    assert_eq!(spec.timeout(), Ok(Duration::from_secs(90)));
    assert!(!spec.fetch_api_enabled());
    assert!(!spec.kv_enabled());
}

#[test]
fn one_capability_leaves_the_other_enabled() {
    let mut document = js_assets_spec();
    document["runtime"] = json!({"capabilities": {"kv": false}});

    let spec = accept_json(&document).spec;

    assert!(spec.fetch_api_enabled());
    assert!(!spec.kv_enabled());
}

#[test]
fn inline_password_is_not_moved() {
    let mut document = go_oci_spec();
    document["code"]["goPluginSource"]["oci"]["credentials"] =
        json!({"username": "robot", "password": "s3cret"});

    let spec = accept_json(&document).spec;

    let credentials = spec
        .code
        .go_plugin_source
        .and_then(|source| source.oci)
        .and_then(|oci| oci.credentials)
        .expect("credentials are kept");
    assert_eq!(credentials.password, "s3cret");
    assert_eq!(credentials.password_data, None);
}

#[test]
fn defaulting_twice_changes_nothing() {
    let mut document = js_assets_spec();
    document["mode"] = json!("");
    let once = defaulted(document);

    let mut twice = once.clone();
    apply_defaults(&mut twice);

    assert_eq!(twice, once);
}

#[test]
fn plugin_name_prefers_code_metadata_name() {
    let mut document = object(go_url_spec(), "fn-abc");
    document["spec"]["code"]["metadata"] = json!({"name": "my-plugin"});

    assert_eq!(accept_json(&document).plugin_name(), Some("my-plugin"));
}

#[test]
fn plugin_name_falls_back_to_object_name() {
    let mut document = object(go_url_spec(), "fn-abc");
    document["spec"]["code"]["metadata"] = json!({"name": ""});

    assert_eq!(accept_json(&document).plugin_name(), Some("fn-abc"));
}

#[test]
fn plugin_name_is_none_without_names() {
    assert_eq!(accept_json(&go_url_spec()).plugin_name(), None);
}
