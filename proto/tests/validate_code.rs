//! Validation of `spec.code`: the choice of source and each source's fields.

mod common;

use common::*;
use edgefn_proto::{validate_spec, EdgeFunctionRevisionSpec};
use serde_json::{json, Value};

const SOURCES_MESSAGE: &str = "exactly one of goPluginSource, wasmSource or jsSource must be set";
const LOCATION_EXPECTED: &str = "expected an http, https or file URL, or an absolute path";

fn with_go_url(url: &str) -> Value {
    let mut document = go_url_spec();
    document["code"]["goPluginSource"]["url"] = json!(url);
    document
}

#[test]
fn no_source_is_rejected() {
    let document = json!({"mode": "backend", "code": {}});

    assert_eq!(
        reject_json(&document),
        [field_error(
            "spec.code",
            &format!("{SOURCES_MESSAGE}, found none")
        )]
    );
}

#[test]
fn go_and_wasm_sources_are_rejected() {
    let mut document = go_url_spec();
    document["code"]["wasmSource"] = wasm_spec()["code"]["wasmSource"].clone();

    assert_eq!(
        reject_json(&document),
        [field_error(
            "spec.code",
            &format!("{SOURCES_MESSAGE}, found goPluginSource and wasmSource")
        )]
    );
}

#[test]
fn go_and_js_sources_are_rejected() {
    let mut document = go_url_spec();
    document["code"]["jsSource"] = js_assets_spec()["code"]["jsSource"].clone();

    assert_eq!(
        reject_json(&document),
        [field_error(
            "spec.code",
            &format!("{SOURCES_MESSAGE}, found goPluginSource and jsSource")
        )]
    );
}

#[test]
fn wasm_and_js_sources_are_rejected() {
    let mut document = js_assets_spec();
    document["code"]["wasmSource"] = wasm_spec()["code"]["wasmSource"].clone();

    assert_eq!(
        reject_json(&document),
        [field_error(
            "spec.code",
            &format!("{SOURCES_MESSAGE}, found wasmSource and jsSource")
        )]
    );
}

#[test]
fn three_sources_are_rejected() {
    let mut document = go_url_spec();
    document["code"]["wasmSource"] = wasm_spec()["code"]["wasmSource"].clone();
    document["code"]["jsSource"] = js_assets_spec()["code"]["jsSource"].clone();

    assert_eq!(
        reject_json(&document),
        [field_error(
            "spec.code",
            &format!("{SOURCES_MESSAGE}, found goPluginSource, wasmSource and jsSource")
        )]
    );
}

#[test]
fn go_plugin_in_backend_mode_is_rejected() {
    let mut document = go_url_spec();
    document["mode"] = json!("backend");

    assert_eq!(
        reject_json(&document),
        [field_error(
            "spec.code.goPluginSource",
            "only allowed in filter mode, but spec.mode is backend; set spec.mode to filter"
        )]
    );
}

#[test]
fn go_plugin_with_oci_and_url_is_rejected() {
    let mut document = go_oci_spec();
    document["code"]["goPluginSource"]["url"] = json!("https://example.com/plugin.so");

    assert_eq!(
        reject_json(&document),
        [field_error(
            "spec.code.goPluginSource",
            "exactly one of url or oci must be set, found both"
        )]
    );
}

#[test]
fn go_plugin_without_url_or_oci_is_rejected() {
    let document = json!({"mode": "filter", "code": {"goPluginSource": {"pluginConfig": "{}"}}});

    assert_eq!(
        reject_json(&document),
        [field_error(
            "spec.code.goPluginSource",
            "exactly one of url or oci must be set, found neither"
        )]
    );
}

#[test]
fn supported_url_forms_are_accepted() {
    for url in [
        "http://example.com/plugin.so",
        "https://example.com:8443/a/plugin.so?x=1",
        "file:///var/lib/edgefn/plugin.so",
        "/var/lib/edgefn/plugin.so",
    ] {
        let revision = accept_json(&with_go_url(url));
        let accepted = revision
            .spec
            .code
            .go_plugin_source
            .and_then(|source| source.url);
        assert_eq!(accepted.as_deref(), Some(url));
    }
}

#[test]
fn unsupported_url_scheme_is_rejected() {
    assert_eq!(
        reject_json(&with_go_url("ftp://example.com/plugin.so")),
        [field_error(
            "spec.code.goPluginSource.url",
            &format!("unsupported URL scheme \"ftp\": {LOCATION_EXPECTED}")
        )]
    );
}

#[test]
fn relative_path_url_is_rejected() {
    assert_eq!(
        reject_json(&with_go_url("plugins/plugin.so")),
        [field_error(
            "spec.code.goPluginSource.url",
            &format!(
                "invalid URL \"plugins/plugin.so\" (relative URL without a base): \
                 {LOCATION_EXPECTED}"
            )
        )]
    );
}

#[test]
fn url_without_host_is_rejected() {
    assert_eq!(
        paths(&reject_json(&with_go_url("https://"))),
        ["spec.code.goPluginSource.url"]
    );
}

#[test]
fn empty_url_is_rejected() {
    assert_eq!(
        reject_json(&with_go_url("")),
        [field_error(
            "spec.code.goPluginSource.url",
            &format!("required: {LOCATION_EXPECTED}")
        )]
    );
}

#[test]
fn oci_without_repo_is_rejected() {
    let mut document = go_oci_spec();
    document["code"]["goPluginSource"]["oci"] = json!({"tag": "v1"});

    assert_eq!(
        reject_json(&document),
        [field_error(
            "spec.code.goPluginSource.oci.repo",
            "required: the image repository, such as ghcr.io/example/plugin"
        )]
    );
}

fn with_oci_field(field: &str, value: Value) -> Value {
    let mut document = go_oci_spec();
    document["code"]["goPluginSource"]["oci"][field] = value;
    document
}

fn credentials_ref() -> Value {
    json!({"group": "", "kind": "Secret", "name": "registry", "namespace": "default"})
}

#[test]
fn credentials_with_credentials_ref_are_rejected() {
    let mut document = with_oci_field("credentials", json!({"username": "robot"}));
    document["code"]["goPluginSource"]["oci"]["credentialsRef"] = credentials_ref();

    assert_eq!(
        reject_json(&document),
        [field_error(
            "spec.code.goPluginSource.oci",
            "credentials and credentialsRef are mutually exclusive; set only one of them"
        )]
    );
}

#[test]
fn credentials_ref_alone_is_accepted() {
    let revision = accept_json(&with_oci_field("credentialsRef", credentials_ref()));

    let oci = revision
        .spec
        .code
        .go_plugin_source
        .and_then(|source| source.oci);
    let name = oci
        .and_then(|oci| oci.credentials_ref)
        .map(|reference| reference.name);
    assert_eq!(name.as_deref(), Some("registry"));
}

#[test]
fn valid_password_data_is_accepted() {
    let document = with_oci_field(
        "credentials",
        json!({"username": "robot", "passwordData": "czNjcmV0"}),
    );

    let revision = accept_json(&document);

    let credentials = revision
        .spec
        .code
        .go_plugin_source
        .and_then(|source| source.oci)
        .and_then(|oci| oci.credentials)
        .expect("credentials are kept");
    let decoded = credentials.password_data.map(|data| data.decode());
    assert_eq!(decoded, Some(Ok(b"s3cret".to_vec())));
}

#[test]
fn invalid_password_data_is_rejected() {
    let document = with_oci_field("credentials", json!({"passwordData": "not base64!"}));

    assert_eq!(
        reject_json(&document),
        [field_error(
            "spec.code.goPluginSource.oci.credentials.passwordData",
            "invalid base64: expected standard base64 with padding (RFC 4648 section 4)"
        )]
    );
}

#[test]
fn unpadded_password_data_is_rejected() {
    let document = with_oci_field("credentials", json!({"passwordData": "czNjcmV0YQ"}));

    assert_eq!(
        paths(&reject_json(&document)),
        ["spec.code.goPluginSource.oci.credentials.passwordData"]
    );
}

fn with_plugin_config(config: &str) -> Value {
    let mut document = go_url_spec();
    document["code"]["goPluginSource"]["pluginConfig"] = json!(config);
    document
}

#[test]
fn plugin_config_objects_are_accepted() {
    for config in [
        "",
        "  \n",
        "{}",
        r#"{"a": [1, {"b": null}]}"#,
        "a: 1\nb:\n  - x\n",
    ] {
        let revision = accept_json(&with_plugin_config(config));
        let stored_config = revision
            .spec
            .code
            .go_plugin_source
            .map(|source| source.plugin_config);
        assert_eq!(stored_config.as_deref(), Some(config));
    }
}

const PLUGIN_CONFIG: &str = "spec.code.goPluginSource.pluginConfig";

#[test]
fn plugin_config_scalar_is_rejected() {
    assert_eq!(
        reject_json(&with_plugin_config("42")),
        [field_error(
            PLUGIN_CONFIG,
            "expected a JSON or YAML object, found a number"
        )]
    );
}

#[test]
fn plugin_config_string_is_rejected() {
    assert_eq!(
        reject_json(&with_plugin_config("just text")),
        [field_error(
            PLUGIN_CONFIG,
            "expected a JSON or YAML object, found a string"
        )]
    );
}

#[test]
fn plugin_config_list_is_rejected() {
    assert_eq!(
        reject_json(&with_plugin_config("- a\n- b\n")),
        [field_error(
            PLUGIN_CONFIG,
            "expected a JSON or YAML object, found a list"
        )]
    );
}

#[test]
fn plugin_config_null_is_rejected() {
    assert_eq!(
        reject_json(&with_plugin_config("null")),
        [field_error(
            PLUGIN_CONFIG,
            "expected a JSON or YAML object, found null"
        )]
    );
}

#[test]
fn plugin_config_bad_yaml_is_rejected() {
    let errors = reject_json(&with_plugin_config("a: [1\n"));

    assert_eq!(paths(&errors), [PLUGIN_CONFIG]);
    assert!(
        errors[0].message.starts_with("invalid YAML: "),
        "{}",
        errors[0].message
    );
}

#[test]
fn plugin_config_bad_json_is_rejected() {
    let errors = reject_json(&with_plugin_config(r#"{"a": [1}"#));

    assert_eq!(paths(&errors), [PLUGIN_CONFIG]);
    assert!(
        errors[0].message.starts_with("invalid JSON: "),
        "{}",
        errors[0].message
    );
}

#[test]
fn wasm_without_url_is_rejected() {
    let document = json!({"code": {"wasmSource": {}}});

    assert_eq!(
        reject_json(&document),
        [field_error(
            "spec.code.wasmSource.url",
            &format!("required: {LOCATION_EXPECTED}")
        )]
    );
}

#[test]
fn wasm_url_scheme_is_checked() {
    let document = json!({"code": {"wasmSource": {"url": "s3://bucket/fn.wasm"}}});

    assert_eq!(
        reject_json(&document),
        [field_error(
            "spec.code.wasmSource.url",
            &format!("unsupported URL scheme \"s3\": {LOCATION_EXPECTED}")
        )]
    );
}

fn with_js(js_source: Value) -> Value {
    json!({"mode": "backend", "code": {"jsSource": js_source}})
}

fn assets(files: Value) -> Value {
    with_js(json!({"entrypoint": "main.ts", "assets": {"files": files}}))
}

#[test]
fn js_without_entrypoint_is_rejected() {
    let mut document = js_assets_spec();
    document["code"]["jsSource"]["entrypoint"] = json!("");

    assert_eq!(
        reject_json(&document),
        [field_error(
            "spec.code.jsSource.entrypoint",
            "required: the path of the entry module, such as index.ts"
        )]
    );
}

#[test]
fn js_entrypoint_outside_root_is_rejected() {
    let mut document = js_assets_spec();
    document["code"]["jsSource"]["entrypoint"] = json!("../main.ts");

    assert_eq!(
        paths(&reject_json(&document)),
        ["spec.code.jsSource.entrypoint"]
    );
}

#[test]
fn js_without_assets_git_or_npm_is_rejected() {
    assert_eq!(
        reject_json(&with_js(json!({"entrypoint": "main.ts"}))),
        [field_error(
            "spec.code.jsSource",
            "exactly one of assets, git or npm must be set, found none"
        )]
    );
}

#[test]
fn js_with_git_and_npm_is_rejected() {
    let document = with_js(json!({
        "entrypoint": "main.ts",
        "git": {"repository": "https://example.com/fn.git"},
        "npm": {"package": "fn"}
    }));

    assert_eq!(
        reject_json(&document),
        [field_error(
            "spec.code.jsSource",
            "exactly one of assets, git or npm must be set, found git and npm"
        )]
    );
}

#[test]
fn js_git_and_npm_sources_are_accepted() {
    let git = with_js(json!({
        "entrypoint": "src/main.ts",
        "git": {"repository": "https://example.com/fn.git", "branch": "main"}
    }));
    let npm = with_js(json!({"entrypoint": "index.js", "npm": {"package": "fn", "version": "1"}}));

    assert!(accept_json(&git)
        .spec
        .code
        .js_source
        .is_some_and(|js| js.git.is_some()));
    assert!(accept_json(&npm)
        .spec
        .code
        .js_source
        .is_some_and(|js| js.npm.is_some()));
}

#[test]
fn js_git_without_repository_is_rejected() {
    let document = with_js(json!({"entrypoint": "main.ts", "git": {"branch": "main"}}));

    assert_eq!(
        reject_json(&document),
        [field_error(
            "spec.code.jsSource.git.repository",
            "required: the git repository URL"
        )]
    );
}

#[test]
fn js_npm_without_package_is_rejected() {
    let document = with_js(json!({"entrypoint": "main.ts", "npm": {"version": "1.0.0"}}));

    assert_eq!(
        reject_json(&document),
        [field_error(
            "spec.code.jsSource.npm.package",
            "required: the npm package name"
        )]
    );
}

#[test]
fn js_assets_without_files_are_rejected() {
    assert_eq!(
        reject_json(&assets(json!([]))),
        [field_error(
            "spec.code.jsSource.assets.files",
            "must contain at least one file"
        )]
    );
}

#[test]
fn js_asset_without_path_is_rejected() {
    let files = json!([{"path": "main.ts", "content": "x"}, {"content": "y"}]);

    assert_eq!(
        reject_json(&assets(files)),
        [field_error(
            "spec.code.jsSource.assets.files[1].path",
            "required: a relative file path"
        )]
    );
}

#[test]
fn js_asset_without_content_is_rejected() {
    let files = json!([{"path": "main.ts", "content": ""}]);

    assert_eq!(
        reject_json(&assets(files)),
        [field_error(
            "spec.code.jsSource.assets.files[0].content",
            "required: the file content"
        )]
    );
}

#[test]
fn js_asset_absolute_path_is_rejected() {
    let files = json!([{"path": "/etc/passwd", "content": "x"}]);

    assert_eq!(
        reject_json(&assets(files)),
        [field_error(
            "spec.code.jsSource.assets.files[0].path",
            "absolute path \"/etc/passwd\": expected a path relative to the source root"
        )]
    );
}

#[test]
fn js_asset_parent_components_are_rejected() {
    for path in [
        "..",
        "../x.ts",
        "a/../b.ts",
        "a/../../x.ts",
        "a/..",
        "./../x.ts",
    ] {
        let files = json!([{"path": path, "content": "x"}]);
        assert_eq!(
            reject_json(&assets(files)),
            [field_error(
                "spec.code.jsSource.assets.files[0].path",
                &format!(
                    "path {path:?} contains a \"..\" component: expected a path inside the \
                     source root"
                )
            )],
            "path {path:?}"
        );
    }
}

#[test]
fn js_asset_dots_inside_names_are_accepted() {
    let files =
        json!([{"path": "a/..b/c...ts", "content": "x"}, {"path": "./lib/x.ts", "content": "y"}]);

    accept_json(&assets(files));
}

#[test]
fn validate_spec_judges_empty_mode_as_defaulted() {
    let mut document = go_url_spec();
    document["mode"] = json!("");
    document["runtime"] = json!({"port": 8080});
    let spec: EdgeFunctionRevisionSpec = serde_json::from_value(document).expect("decodes");

    let errors = validate_spec(&spec).expect_err("an empty mode with a Go plugin is filter mode");

    assert_eq!(paths(&errors), ["spec.runtime.port"]);
}
