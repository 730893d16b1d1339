//! Parsing: JSON and YAML, whole objects and bare specs, type checks and unknown fields.

mod common;

use common::*;
use edgefn_proto::{decode_revision, parse_revision, RevisionError, API_VERSION, KIND};
use serde_json::json;

const WHOLE_OBJECT_YAML: &str = "\
apiVersion: extensions.apoxy.dev/v1alpha2
kind: EdgeFunctionRevision
metadata:
  name: myfn-5d8f7c9b4
  labels:
    extensions.apoxy.dev/edgefunction: myfn
spec:
  mode: filter
  code:
    goPluginSource:
      oci:
        repo: ghcr.io/example/plugin
        tag: v1
      pluginConfig: |
        greeting: hello
status:
  ref: myfn-5d8f7c9b4
  conditions:
    - type: Ready
      status: \"True\"
      reason: Ready
      message: Ready
      lastTransitionTime: \"2026-01-02T03:04:05Z\"
";

#[test]
fn whole_object_yaml_is_accepted() {
    let revision = accept(WHOLE_OBJECT_YAML);

    assert_eq!(revision.name(), "myfn-5d8f7c9b4");
    assert_eq!(
        revision.metadata.labels["extensions.apoxy.dev/edgefunction"],
        "myfn"
    );
    let oci = revision
        .spec
        .code
        .go_plugin_source
        .as_ref()
        .and_then(|s| s.oci.as_ref());
    assert_eq!(
        oci.map(|oci| oci.repo.as_str()),
        Some("ghcr.io/example/plugin")
    );
    assert_eq!(revision.status.artifact_ref, "myfn-5d8f7c9b4");
    assert_eq!(revision.status.conditions.len(), 1);
    assert_eq!(revision.status.conditions[0].condition_type, "Ready");
}

#[test]
fn whole_object_json_is_accepted() {
    let revision = accept_json(&object(go_url_spec(), "fn-1"));

    assert_eq!(revision.name(), "fn-1");
    let url = revision
        .spec
        .code
        .go_plugin_source
        .and_then(|source| source.url);
    assert_eq!(url.as_deref(), Some("https://example.com/plugin.so"));
}

#[test]
fn bare_spec_json_is_accepted() {
    let revision = accept_json(&go_oci_spec());

    assert_eq!(revision.spec.mode, "filter");
    assert_eq!(revision.name(), "");
}

#[test]
fn bare_spec_yaml_is_accepted() {
    let revision = accept("mode: backend\ncode:\n  wasmSource:\n    url: /srv/fn.wasm\n");

    let url = revision.spec.code.wasm_source.map(|source| source.url);
    assert_eq!(url.as_deref(), Some("/srv/fn.wasm"));
}

#[test]
fn missing_type_meta_is_filled_in() {
    let revision = accept_json(&go_url_spec());

    assert_eq!(revision.api_version, API_VERSION);
    assert_eq!(revision.kind, KIND);
}

#[test]
fn wrong_api_version_is_rejected() {
    let mut document = object(go_url_spec(), "fn");
    document["apiVersion"] = json!("extensions.apoxy.dev/v1alpha1");

    assert_eq!(
        reject_json(&document),
        [field_error(
            "apiVersion",
            "unsupported value \"extensions.apoxy.dev/v1alpha1\", expected \
             extensions.apoxy.dev/v1alpha2"
        )]
    );
}

#[test]
fn wrong_kind_is_rejected() {
    let mut document = object(go_url_spec(), "fn");
    document["kind"] = json!("EdgeFunction");

    assert_eq!(
        reject_json(&document),
        [field_error(
            "kind",
            "unsupported value \"EdgeFunction\", expected EdgeFunctionRevision"
        )]
    );
}

#[test]
fn non_string_kind_is_rejected() {
    let mut document = object(go_url_spec(), "fn");
    document["kind"] = json!(3);

    assert_eq!(
        reject_json(&document),
        [field_error(
            "kind",
            "expected the string EdgeFunctionRevision, found a number"
        )]
    );
}

#[test]
fn non_mapping_document_is_rejected() {
    assert_eq!(
        reject("- mode: filter\n"),
        [field_error(
            "revision",
            "expected a mapping (an EdgeFunctionRevision object or its spec), found a list"
        )]
    );
}

#[test]
fn unknown_spec_field_names_path_and_expected_fields() {
    let mut document = go_url_spec();
    document["code"]["goPluginSource"]["pluginConfg"] = json!("a: 1");

    assert_eq!(
        reject_json(&document),
        [field_error(
            "spec.code.goPluginSource.pluginConfg",
            "unknown field, expected one of url, oci, pluginConfig"
        )]
    );
}

#[test]
fn unknown_field_in_yaml_names_path() {
    let text =
        "mode: filter\ncode:\n  goPluginSource:\n    url: /p.so\n    oci:\n      repo: r\n      \
                credentials:\n        user: a\n";

    assert_eq!(
        paths(&reject(text)),
        ["spec.code.goPluginSource.oci.credentials.user"]
    );
}

#[test]
fn unknown_top_level_spec_key_is_rejected() {
    let mut document = go_url_spec();
    document["moed"] = json!("filter");

    assert_eq!(
        reject_json(&document),
        [field_error(
            "spec.moed",
            "unknown field, expected one of mode, code, env, runtime"
        )]
    );
}

#[test]
fn unknown_field_in_list_item_names_index() {
    let mut document = go_url_spec();
    document["env"] = json!([{"name": "A", "value": "1"}, {"name": "B", "valeu": "2"}]);

    assert_eq!(
        reject_json(&document),
        [field_error(
            "spec.env[1].valeu",
            "unknown field, expected name or value"
        )]
    );
}

#[test]
fn unknown_runtime_capability_is_rejected() {
    let mut document = js_assets_spec();
    document["runtime"] = json!({"capabilities": {"fetchApi": true}});

    assert_eq!(
        reject_json(&document),
        [field_error(
            "spec.runtime.capabilities.fetchApi",
            "unknown field, expected fetchAPI or kv"
        )]
    );
}

#[test]
fn unknown_top_level_field_is_rejected() {
    let mut document = object(go_url_spec(), "fn");
    document["items"] = json!([]);

    assert_eq!(paths(&reject_json(&document)), ["items"]);
}

#[test]
fn unknown_code_metadata_field_is_rejected() {
    let mut document = go_url_spec();
    document["code"]["metadata"] = json!({"nmae": "plugin"});

    let errors = reject_json(&document);
    assert_eq!(paths(&errors), ["spec.code.metadata.nmae"]);
    assert!(errors[0]
        .message
        .starts_with("unknown field, expected one of name, generateName"));
}

#[test]
fn wrong_field_type_names_path() {
    let mut document = js_assets_spec();
    document["runtime"] = json!({"port": "8080"});

    assert_eq!(
        reject_json(&document),
        [field_error(
            "spec.runtime.port",
            "invalid type: string \"8080\", expected i32"
        )]
    );
}

#[test]
fn port_beyond_int32_is_rejected() {
    let mut document = js_assets_spec();
    document["runtime"] = json!({"port": 4_294_967_296_u64});

    assert_eq!(paths(&reject_json(&document)), ["spec.runtime.port"]);
}

#[test]
fn unknown_top_level_metadata_fields_are_kept() {
    let mut document = object(go_url_spec(), "fn");
    document["metadata"]["ownerReferences"] = json!([{"kind": "EdgeFunction", "name": "fn"}]);
    document["metadata"]["someFutureField"] = json!({"x": 1});

    let revision = accept_json(&document);

    let written = serde_json::to_value(&revision).expect("revision serializes");
    assert_eq!(
        written["metadata"]["ownerReferences"],
        document["metadata"]["ownerReferences"]
    );
    assert_eq!(written["metadata"]["someFutureField"], json!({"x": 1}));
}

#[test]
fn null_collections_read_as_empty() {
    let mut document = object(go_url_spec(), "fn");
    document["metadata"]["labels"] = json!(null);
    document["metadata"]["creationTimestamp"] = json!(null);
    document["spec"]["env"] = json!(null);

    let revision = accept_json(&document);

    assert!(revision.metadata.labels.is_empty());
    assert_eq!(revision.metadata.creation_timestamp, None);
    assert!(revision.spec.env.is_empty());
}

#[test]
fn legacy_url_key_is_read_as_url() {
    let document = json!({
        "mode": "filter",
        "code": {"goPluginSource": {"url.omitempty": "https://example.com/p.so"}}
    });

    let revision = accept_json(&document);

    let url = revision
        .spec
        .code
        .go_plugin_source
        .and_then(|source| source.url);
    assert_eq!(url.as_deref(), Some("https://example.com/p.so"));
}

#[test]
fn legacy_null_url_key_is_dropped() {
    let mut document = go_oci_spec();
    document["code"]["goPluginSource"]["url.omitempty"] = json!(null);

    let revision = accept_json(&document);

    let url = revision
        .spec
        .code
        .go_plugin_source
        .and_then(|source| source.url);
    assert_eq!(url, None);
}

#[test]
fn legacy_url_key_beside_url_is_rejected() {
    let mut document = go_url_spec();
    document["code"]["goPluginSource"]["url.omitempty"] = json!("https://example.com/old.so");

    assert_eq!(
        reject_json(&document),
        [field_error(
            "spec.code.goPluginSource[url.omitempty]",
            "old spelling of url, and url is set too; keep only url"
        )]
    );
}

#[test]
fn invalid_json_is_a_syntax_error() {
    let error = parse_revision("{\"mode\": ").expect_err("truncated JSON");

    assert!(
        matches!(error, RevisionError::Syntax { format: "JSON", .. }),
        "got {error:?}"
    );
}

#[test]
fn invalid_yaml_is_a_syntax_error() {
    let error = parse_revision("mode: [filter\n").expect_err("unclosed YAML list");

    assert!(
        matches!(error, RevisionError::Syntax { format: "YAML", .. }),
        "got {error:?}"
    );
}

#[test]
fn multiple_yaml_documents_are_rejected() {
    let error = parse_revision("mode: filter\n---\nmode: backend\n").expect_err("two documents");

    assert!(
        matches!(error, RevisionError::Syntax { .. }),
        "got {error:?}"
    );
}

#[test]
fn all_field_errors_are_collected() {
    let document = json!({
        "mode": "sidecar",
        "code": {"goPluginSource": {"url": "ftp://example.com/p.so"}},
        "env": [{"name": ""}]
    });

    assert_eq!(
        paths(&reject_json(&document)),
        [
            "spec.mode",
            "spec.code.goPluginSource.url",
            "spec.env[0].name"
        ]
    );
}

#[test]
fn display_joins_field_errors() {
    let document = json!({"mode": "sidecar", "code": {}});

    let error = parse_revision(&document.to_string()).expect_err("invalid mode and no source");

    assert_eq!(
        error.to_string(),
        "invalid EdgeFunctionRevision: spec.mode: unsupported value \"sidecar\", expected filter \
         or backend; spec.code: exactly one of goPluginSource, wasmSource or jsSource must be \
         set, found none"
    );
}

#[test]
fn decode_skips_defaults_and_validation() {
    let revision = decode_revision(r#"{"mode": "Sidecar", "code": {}}"#).expect("decodes");

    assert_eq!(revision.spec.mode, "Sidecar");
    assert_eq!(revision.spec.runtime, None);
}

#[test]
fn name_hint_survives_invalid_spec() {
    let text = "metadata: {name: hinted}\nspec: {code: {goPlugnSource: {}}}\n";
    assert!(edgefn_proto::parse_revision(text).is_err());
    assert_eq!(
        edgefn_proto::revision_name_hint(text).as_deref(),
        Some("hinted")
    );
}

#[test]
fn name_hint_absent_for_bare_spec() {
    assert_eq!(edgefn_proto::revision_name_hint("mode: filter\n"), None);
}

#[test]
fn deep_yaml_nesting_rejected() {
    let depth = 100_000;
    let text = format!(
        "metadata: {{name: deep}}\nspec: {}{}\n",
        "[".repeat(depth),
        "]".repeat(depth)
    );

    let error = edgefn_proto::parse_revision(&text).unwrap_err();

    assert!(
        error.to_string().contains("nesting deeper than 128"),
        "{error}"
    );
}

#[test]
fn quoted_brackets_do_not_count_as_nesting() {
    let brackets = "[".repeat(200);
    let text = format!(
        "metadata: {{name: quoted}}\nspec:\n  code:\n    goPluginSource:\n      url: \
         http://127.0.0.1/p.so\n      pluginConfig: '{{\"note\": \"{brackets}\"}}'\n"
    );

    let error = edgefn_proto::parse_revision(&text)
        .err()
        .map(|e| e.to_string());

    assert!(
        !error.as_deref().unwrap_or("").contains("nesting"),
        "{error:?}"
    );
}

#[test]
fn control_characters_in_names_rejected() {
    let text = "{\"metadata\": {\"name\": \"a\\nb\"}, \"spec\": {\"code\": {\"metadata\": \
                {\"name\": \"p\\u0000\"}, \"goPluginSource\": {\"url\": \"http://127.0.0.1/p.so\"}}}}";

    let error = edgefn_proto::parse_revision(text).unwrap_err();
    let paths: Vec<&str> = error
        .field_errors()
        .iter()
        .map(|e| e.path.as_str())
        .collect();

    assert!(paths.contains(&"metadata.name"), "{error}");
    assert!(paths.contains(&"spec.code.metadata.name"), "{error}");
}
