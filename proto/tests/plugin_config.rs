//! The plugin config as a `google.protobuf.Any`, checked with prost here and with Python's
//! protobuf package as an independent decoder.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use edgefn_proto::{
    json_to_value, parse_plugin_config, plugin_config_any, AnyWrapping, EdgeFunctionRevisionSpec,
    FieldError, TypedStruct, STRUCT_TYPE_URL, TYPED_STRUCT_TYPE_URL,
};
use prost::Message;
use prost_types::value::Kind;
use prost_types::{Any, Struct};
use serde_json::{json, Value};

/// A config with every JSON type, nested objects and lists, and keys whose byte order differs
/// from their insertion order.
const NESTED_CONFIG: &str = r#"{
    "zeta": "last",
    "alpha": {"list": [1, -2.5, "x", null, true, [false, {"deep": {"deeper": [[]]}}]]},
    "empty": {},
    "numbers": {"big": 9007199254740992, "small": 1e-300, "huge": 1e300, "negative": -7},
    "null": null,
    "Ünïcode ключ": "значение",
    "Z": {"a": {"b": {"c": {"d": {"e": {"f": "g"}}}}}}
}"#;

fn spec_with_config(config: &str) -> EdgeFunctionRevisionSpec {
    let mut document = go_url_spec();
    document["code"]["goPluginSource"]["pluginConfig"] = json!(config);
    accept_json(&document).spec
}

fn any_of(config: &str, wrapping: AnyWrapping) -> Vec<u8> {
    plugin_config_any(&spec_with_config(config), wrapping).expect("plugin config encodes")
}

fn decode_struct_any(bytes: &[u8]) -> Struct {
    let any = Any::decode(bytes).expect("Any decodes");
    assert_eq!(any.type_url, STRUCT_TYPE_URL);
    Struct::decode(any.value.as_slice()).expect("Struct decodes")
}

#[test]
fn struct_any_carries_the_config() {
    let config = spec_with_config(r#"{"name": "x", "n": 2}"#);

    let decoded = decode_struct_any(&plugin_config_any(&config, AnyWrapping::Struct).unwrap());

    assert_eq!(
        decoded.fields["name"].kind,
        Some(Kind::StringValue("x".to_owned()))
    );
    assert_eq!(decoded.fields["n"].kind, Some(Kind::NumberValue(2.0)));
}

#[test]
fn typed_struct_any_wraps_the_struct() {
    let bytes = any_of(r#"{"name": "x"}"#, AnyWrapping::TypedStruct);

    let any = Any::decode(bytes.as_slice()).expect("Any decodes");
    let typed = TypedStruct::decode(any.value.as_slice()).expect("TypedStruct decodes");

    assert_eq!(any.type_url, TYPED_STRUCT_TYPE_URL);
    assert_eq!(typed.type_url, "");
    let name = typed.value.as_ref().map(|value| &value.fields["name"].kind);
    assert_eq!(name, Some(&Some(Kind::StringValue("x".to_owned()))));
}

#[test]
fn empty_config_is_empty_struct() {
    let decoded = decode_struct_any(&any_of("", AnyWrapping::Struct));

    assert!(decoded.fields.is_empty());
}

#[test]
fn empty_config_in_typed_struct_still_sets_value() {
    let bytes = any_of("", AnyWrapping::TypedStruct);

    let any = Any::decode(bytes.as_slice()).expect("Any decodes");
    let typed = TypedStruct::decode(any.value.as_slice()).expect("TypedStruct decodes");

    assert_eq!(typed.value, Some(Struct::default()));
}

#[test]
fn yaml_and_json_configs_encode_identically() {
    let yaml = "b: [1, two, {c: null}]\na: true\n";
    let json = r#"{"a": true, "b": [1, "two", {"c": null}]}"#;

    assert_eq!(
        any_of(yaml, AnyWrapping::Struct),
        any_of(json, AnyWrapping::Struct)
    );
}

#[test]
fn key_order_does_not_change_bytes() {
    let forward = r#"{"a": 1, "b": {"x": 1, "y": 2}}"#;
    let backward = r#"{"b": {"y": 2, "x": 1}, "a": 1}"#;

    assert_eq!(
        any_of(forward, AnyWrapping::Struct),
        any_of(backward, AnyWrapping::Struct)
    );
}

#[test]
fn integer_beyond_2_pow_53_is_rounded() {
    let value = json_to_value(&json!(9_007_199_254_740_993_u64));

    assert_eq!(value.kind, Some(Kind::NumberValue(9_007_199_254_740_992.0)));
}

#[test]
fn deep_nesting_is_converted() {
    let mut config = json!("leaf");
    for _ in 0..100 {
        config = json!({ "n": [config] });
    }

    let mut value = json_to_value(&config);
    let mut depth = 0;
    while let Some(Kind::StructValue(object)) = value.kind {
        let Some(Kind::ListValue(list)) = object.fields["n"].kind.clone() else {
            panic!("expected a list at depth {depth}");
        };
        value = list.values[0].clone();
        depth += 1;
    }

    assert_eq!(depth, 100);
    assert_eq!(value.kind, Some(Kind::StringValue("leaf".to_owned())));
}

#[test]
fn spec_without_go_plugin_has_no_plugin_config() {
    let spec = accept_json(&js_assets_spec()).spec;

    assert_eq!(
        plugin_config_any(&spec, AnyWrapping::Struct),
        Err(FieldError::new(
            "spec.code.goPluginSource",
            "required: only a Go plugin source has a plugin config"
        ))
    );
}

#[test]
fn invalid_config_error_names_field() {
    let error = parse_plugin_config("[1, 2]").expect_err("a list is not an object");

    assert_eq!(error.path, "spec.code.goPluginSource.pluginConfig");
}

/// Returns the Python interpreter that has the protobuf package: `$EDGEFN_PYTHON`, else the
/// workspace's `.venv`.
fn python() -> PathBuf {
    if let Some(path) = std::env::var_os("EDGEFN_PYTHON") {
        let path = PathBuf::from(path);
        assert!(
            path.exists(),
            "EDGEFN_PYTHON={} does not exist; point it at a Python with the protobuf package, or \
             unset it and run scripts/setup.sh",
            path.display()
        );
        return path;
    }

    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate is inside the workspace");
    let venv_python = workspace.join(".venv/bin/python");
    assert!(
        venv_python.exists(),
        "{} not found: run scripts/setup.sh to create it with the protobuf package, or set \
         EDGEFN_PYTHON to a Python that has protobuf",
        venv_python.display()
    );
    venv_python
}

const PYTHON_TIMEOUT: Duration = Duration::from_secs(120);

/// Whether the Python check also compares bytes with protobuf's deterministic encoding.
#[derive(Clone, Copy, PartialEq)]
enum Check {
    DecodeAndBytes,
    DecodeOnly,
}

/// Runs `decode_any.py` on the Any bytes and the JSON they came from, and fails the test with
/// the script's output when it reports a difference.
fn assert_python_decodes(
    case: &str,
    any_bytes: &[u8],
    config: &Value,
    wrapping: AnyWrapping,
    check: Check,
) {
    let scratch = std::env::temp_dir();
    let prefix = format!("edgefn-proto-{}-{case}", std::process::id());
    let any_path = scratch.join(format!("{prefix}.any"));
    let json_path = scratch.join(format!("{prefix}.json"));
    std::fs::write(&any_path, any_bytes).expect("write Any bytes");
    std::fs::write(&json_path, config.to_string()).expect("write JSON");

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/decode_any.py");
    let mut command = Command::new(python());
    command
        .arg(&script)
        .arg(&any_path)
        .arg(&json_path)
        .arg(wrapping.as_str());
    if check == Check::DecodeOnly {
        command.arg("decode-only");
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start Python");

    let started = Instant::now();
    while child.try_wait().expect("poll Python").is_none() {
        if started.elapsed() > PYTHON_TIMEOUT {
            let _ = child.kill();
            panic!("{} timed out after {PYTHON_TIMEOUT:?}", script.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("collect Python output");
    let _ = std::fs::remove_file(&any_path);
    let _ = std::fs::remove_file(&json_path);

    assert!(
        output.status.success(),
        "{case}: Python's protobuf disagrees with the encoding ({}):\n{}{}\nIf protobuf is \
         missing, run scripts/setup.sh.",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn python_decodes_nested_struct_any() {
    let config: Value = serde_json::from_str(NESTED_CONFIG).expect("test config is JSON");

    let bytes = any_of(NESTED_CONFIG, AnyWrapping::Struct);

    assert_python_decodes(
        "nested-struct",
        &bytes,
        &config,
        AnyWrapping::Struct,
        Check::DecodeAndBytes,
    );
}

#[test]
fn python_decodes_nested_typed_struct_any() {
    let config: Value = serde_json::from_str(NESTED_CONFIG).expect("test config is JSON");

    let bytes = any_of(NESTED_CONFIG, AnyWrapping::TypedStruct);

    assert_python_decodes(
        "nested-typed-struct",
        &bytes,
        &config,
        AnyWrapping::TypedStruct,
        Check::DecodeAndBytes,
    );
}

#[test]
fn python_decodes_empty_config() {
    for wrapping in [AnyWrapping::Struct, AnyWrapping::TypedStruct] {
        let bytes = any_of("", wrapping);
        assert_python_decodes(
            &format!("empty-{}", wrapping.as_str()),
            &bytes,
            &json!({}),
            wrapping,
            Check::DecodeAndBytes,
        );
    }
}

#[test]
fn python_decodes_yaml_config() {
    let yaml = "name: edge\nlimits:\n  rps: 10\n  burst: 2.5\nroutes: [/a, /b]\nenabled: true\n";
    let config = json!({
        "name": "edge",
        "limits": {"rps": 10, "burst": 2.5},
        "routes": ["/a", "/b"],
        "enabled": true
    });

    let bytes = any_of(yaml, AnyWrapping::Struct);

    assert_python_decodes(
        "yaml",
        &bytes,
        &config,
        AnyWrapping::Struct,
        Check::DecodeAndBytes,
    );
}

#[test]
fn python_decodes_30_nested_objects() {
    let mut config = json!("leaf");
    for depth in 0..30 {
        config = json!({ "level": depth, "next": config });
    }

    let bytes = any_of(&config.to_string(), AnyWrapping::Struct);

    assert_python_decodes(
        "deep",
        &bytes,
        &config,
        AnyWrapping::Struct,
        Check::DecodeAndBytes,
    );
}

#[test]
fn python_decodes_prefix_and_empty_keys() {
    let config = json!({"a": 1, "ab": 2, "": 3, "b": {"": null, "x": [""]}});

    for wrapping in [AnyWrapping::Struct, AnyWrapping::TypedStruct] {
        let bytes = any_of(&config.to_string(), wrapping);
        let case = format!("keys-{}", wrapping.as_str());
        assert_python_decodes(&case, &bytes, &config, wrapping, Check::DecodeOnly);
    }
}

#[test]
fn keys_are_encoded_in_byte_order() {
    let bytes = any_of(r#"{"ab": 1, "b": 2, "a": 3, "B": 4}"#, AnyWrapping::Struct);

    let position = |key: &[u8]| {
        let entry_key = [&[0x0a, key.len() as u8][..], key].concat();
        bytes
            .windows(entry_key.len())
            .position(|window| window == entry_key.as_slice())
            .unwrap_or_else(|| panic!("key {key:?} not found"))
    };

    assert!(position(b"B") < position(b"a"));
    assert!(position(b"a") < position(b"ab"));
    assert!(position(b"ab") < position(b"b"));
}
