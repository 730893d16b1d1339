//! Validation of `spec.mode`, `spec.env`, `spec.runtime` and edgefn's annotations.

mod common;

use common::*;
use edgefn_proto::annotations::{
    FAIL_OPEN_ANNOTATION, MAX_MEMORY_ANNOTATION, PLUGIN_CONFIG_TYPE_ANNOTATION, SHA256_ANNOTATION,
};
use edgefn_proto::AnyWrapping;
use serde_json::{json, Value};

#[test]
fn unknown_mode_is_rejected() {
    let mut document = go_url_spec();
    document["mode"] = json!("sidecar");

    assert_eq!(
        reject_json(&document),
        [field_error(
            "spec.mode",
            "unsupported value \"sidecar\", expected filter or backend"
        )]
    );
}

fn with_env(env: Value) -> Value {
    let mut document = go_url_spec();
    document["env"] = env;
    document
}

#[test]
fn valid_env_is_accepted() {
    let revision = accept_json(&with_env(json!([
        {"name": "GREETING", "value": "hello=world"},
        {"name": "EMPTY", "value": ""}
    ])));

    assert_eq!(revision.spec.env.len(), 2);
}

#[test]
fn env_without_name_is_rejected() {
    assert_eq!(
        reject_json(&with_env(json!([{"value": "x"}]))),
        [field_error(
            "spec.env[0].name",
            "required: the variable name"
        )]
    );
}

#[test]
fn env_name_with_equals_sign_is_rejected() {
    assert_eq!(
        reject_json(&with_env(json!([{"name": "A=B", "value": "x"}]))),
        [field_error(
            "spec.env[0].name",
            "invalid name \"A=B\": must not contain '=' or NUL"
        )]
    );
}

#[test]
fn env_name_with_nul_is_rejected() {
    assert_eq!(
        reject_json(&with_env(json!([{"name": "A\u{0}B", "value": "x"}]))),
        [field_error(
            "spec.env[0].name",
            "invalid name \"A\\0B\": must not contain '=' or NUL"
        )]
    );
}

#[test]
fn env_value_with_nul_is_rejected() {
    assert_eq!(
        reject_json(&with_env(json!([{"name": "A", "value": "x\u{0}"}]))),
        [field_error("spec.env[0].value", "must not contain NUL")]
    );
}

#[test]
fn duplicate_env_name_is_rejected() {
    let env = json!([
        {"name": "A", "value": "1"},
        {"name": "B", "value": "2"},
        {"name": "A", "value": "3"}
    ]);

    assert_eq!(
        reject_json(&with_env(env)),
        [field_error(
            "spec.env[2].name",
            "duplicate name \"A\", first set at spec.env[0]"
        )]
    );
}

fn with_runtime(mut document: Value, runtime: Value) -> Value {
    document["runtime"] = runtime;
    document
}

#[test]
fn filter_mode_with_port_is_rejected() {
    let document = with_runtime(go_url_spec(), json!({"port": 8080}));

    assert_eq!(
        reject_json(&document),
        [field_error(
            "spec.runtime.port",
            "must not be set in filter mode: a filter runs inside the proxy and listens on no port"
        )]
    );
}

#[test]
fn backend_port_bounds_are_accepted() {
    for port in [1, 65535] {
        let document = with_runtime(js_assets_spec(), json!({ "port": port }));
        assert_eq!(accept_json(&document).spec.port(), Some(port as u16));
    }
}

#[test]
fn backend_port_out_of_range_is_rejected() {
    for port in [0, -1, 65536] {
        let document = with_runtime(js_assets_spec(), json!({ "port": port }));
        assert_eq!(
            reject_json(&document),
            [field_error(
                "spec.runtime.port",
                &format!("invalid port {port}: expected 1 to 65535")
            )],
            "port {port}"
        );
    }
}

#[test]
fn valid_timeouts_are_accepted() {
    for timeout in ["30s", "1m30s", "1.5h", "300ms", "2h45m", "10\u{b5}s"] {
        let document = with_runtime(js_assets_spec(), json!({ "timeout": timeout }));
        let spec = accept_json(&document).spec;
        assert!(spec.timeout().is_ok(), "timeout {timeout}");
    }
}

#[test]
fn timeout_without_unit_is_rejected() {
    let document = with_runtime(js_assets_spec(), json!({"timeout": "30"}));

    assert_eq!(
        reject_json(&document),
        [field_error(
            "spec.runtime.timeout",
            "invalid duration \"30\": missing unit; expected a Go duration such as 30s, 1m30s, \
             1.5h or 300ms (units ns, us, µs, ms, s, m, h)"
        )]
    );
}

#[test]
fn negative_timeout_is_rejected() {
    let document = with_runtime(js_assets_spec(), json!({"timeout": "-5s"}));

    let errors = reject_json(&document);

    assert_eq!(paths(&errors), ["spec.runtime.timeout"]);
    assert!(errors[0]
        .message
        .contains("negative durations are not allowed"));
}

#[test]
fn zero_timeout_is_rejected() {
    let document = with_runtime(js_assets_spec(), json!({"timeout": "0s"}));

    assert_eq!(
        reject_json(&document),
        [field_error(
            "spec.runtime.timeout",
            "invalid timeout \"0s\": must be greater than zero"
        )]
    );
}

#[test]
fn timeout_accessor_reports_invalid_value() {
    let mut spec = accept_json(&js_assets_spec()).spec;
    if let Some(runtime) = spec.runtime.as_mut() {
        runtime.timeout = Some("soon".to_owned());
    }

    let error = spec.timeout().expect_err("soon is not a duration");

    assert_eq!(error.path, "spec.runtime.timeout");
}

fn with_annotation(name: &str, value: &str) -> Value {
    let mut document = object(go_url_spec(), "fn");
    document["metadata"]["annotations"] = json!({ name: value });
    document
}

const SHA256_PATH: &str = "metadata.annotations[edgefn.dev/sha256]";
const DIGEST: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

#[test]
fn sha256_annotation_is_read() {
    let revision = accept_json(&with_annotation(SHA256_ANNOTATION, DIGEST));

    assert_eq!(revision.expected_sha256(), Ok(Some(DIGEST)));
}

#[test]
fn absent_sha256_annotation_is_none() {
    assert_eq!(accept_json(&go_url_spec()).expected_sha256(), Ok(None));
}

#[test]
fn upper_case_sha256_is_rejected() {
    let digest = DIGEST.to_uppercase();

    assert_eq!(
        reject_json(&with_annotation(SHA256_ANNOTATION, &digest)),
        [field_error(
            SHA256_PATH,
            &format!(
                "invalid SHA-256 {digest:?}: expected exactly 64 lower-case hex characters \
                 (found upper-case letters; write the digest in lower case)"
            )
        )]
    );
}

#[test]
fn prefixed_sha256_is_rejected() {
    let digest = format!("sha256:{DIGEST}");

    assert_eq!(
        reject_json(&with_annotation(SHA256_ANNOTATION, &digest)),
        [field_error(
            SHA256_PATH,
            &format!(
                "invalid SHA-256 {digest:?}: expected exactly 64 lower-case hex characters \
                 (found a sha256: prefix; give only the hex digits)"
            )
        )]
    );
}

#[test]
fn short_sha256_is_rejected() {
    let digest = &DIGEST[..63];

    assert_eq!(
        reject_json(&with_annotation(SHA256_ANNOTATION, digest)),
        [field_error(
            SHA256_PATH,
            &format!(
                "invalid SHA-256 {digest:?}: expected exactly 64 lower-case hex characters \
                 (found 63 characters)"
            )
        )]
    );
}

#[test]
fn long_sha256_is_rejected() {
    let digest = format!("{DIGEST}0");

    assert_eq!(
        paths(&reject_json(&with_annotation(SHA256_ANNOTATION, &digest))),
        [SHA256_PATH]
    );
}

#[test]
fn non_hex_sha256_is_rejected() {
    let digest = format!("{}g", &DIGEST[..63]);

    assert_eq!(
        paths(&reject_json(&with_annotation(SHA256_ANNOTATION, &digest))),
        [SHA256_PATH]
    );
}

#[test]
fn sha256_with_algorithm_prefix_is_rejected() {
    let digest = format!("sha256:{DIGEST}");

    assert_eq!(
        paths(&reject_json(&with_annotation(SHA256_ANNOTATION, &digest))),
        [SHA256_PATH]
    );
}

#[test]
fn plugin_config_type_values_are_read() {
    let typed = accept_json(&with_annotation(
        PLUGIN_CONFIG_TYPE_ANNOTATION,
        "typed-struct",
    ));
    let plain = accept_json(&with_annotation(PLUGIN_CONFIG_TYPE_ANNOTATION, "struct"));
    let absent = accept_json(&go_url_spec());

    assert_eq!(typed.plugin_config_wrapping(), Ok(AnyWrapping::TypedStruct));
    assert_eq!(plain.plugin_config_wrapping(), Ok(AnyWrapping::Struct));
    assert_eq!(absent.plugin_config_wrapping(), Ok(AnyWrapping::Struct));
}

#[test]
fn unknown_plugin_config_type_is_rejected() {
    assert_eq!(
        reject_json(&with_annotation(
            PLUGIN_CONFIG_TYPE_ANNOTATION,
            "TypedStruct"
        )),
        [field_error(
            "metadata.annotations[edgefn.dev/plugin-config-type]",
            "unsupported value \"TypedStruct\", expected struct or typed-struct"
        )]
    );
}

#[test]
fn unknown_edgefn_annotation_is_rejected() {
    assert_eq!(
        reject_json(&with_annotation("edgefn.dev/sha-256", DIGEST)),
        [field_error(
            "metadata.annotations[edgefn.dev/sha-256]",
            "unknown edgefn annotation, expected one of edgefn.dev/sha256, \
             edgefn.dev/plugin-config-type, edgefn.dev/fail-open, edgefn.dev/max-memory-mib, \
             edgefn.dev/proxy-wasm-configuration"
        )]
    );
}

const FAIL_OPEN_PATH: &str = "metadata.annotations[edgefn.dev/fail-open]";

#[test]
fn fail_open_true_is_read() {
    let revision = accept_json(&with_annotation(FAIL_OPEN_ANNOTATION, "true"));

    assert_eq!(revision.fail_open(), Ok(true));
}

#[test]
fn fail_open_false_is_read() {
    let revision = accept_json(&with_annotation(FAIL_OPEN_ANNOTATION, "false"));

    assert_eq!(revision.fail_open(), Ok(false));
}

#[test]
fn absent_fail_open_is_false() {
    assert_eq!(accept_json(&go_url_spec()).fail_open(), Ok(false));
}

#[test]
fn other_fail_open_values_are_rejected() {
    for value in ["True", "yes", "1", "", " true"] {
        assert_eq!(
            reject_json(&with_annotation(FAIL_OPEN_ANNOTATION, value)),
            [field_error(
                FAIL_OPEN_PATH,
                &format!("invalid value {value:?}, expected \"true\" or \"false\"")
            )],
            "value {value:?}"
        );
    }
}

#[test]
fn max_memory_is_read_in_bytes() {
    let revision = accept_json(&with_annotation(MAX_MEMORY_ANNOTATION, "64"));

    assert_eq!(revision.max_memory(), Ok(Some(64 << 20)));
    assert_eq!(accept_json(&go_url_spec()).max_memory(), Ok(None));
}

#[test]
fn bad_max_memory_values_are_rejected() {
    for value in ["0", "4097", "-1", "64Mi", ""] {
        assert_eq!(
            reject_json(&with_annotation(MAX_MEMORY_ANNOTATION, value)),
            [field_error(
                "metadata.annotations[edgefn.dev/max-memory-mib]",
                &format!("invalid value {value:?}, expected a whole number of MiB from 1 to 4096")
            )],
            "value {value:?}"
        );
    }
}

#[test]
fn fail_open_error_is_reported_with_spec_errors() {
    let mut document = with_annotation(FAIL_OPEN_ANNOTATION, "on");
    document["spec"]["mode"] = json!("sidecar");

    assert_eq!(
        paths(&reject_json(&document)),
        [FAIL_OPEN_PATH, "spec.mode"]
    );
}

#[test]
fn other_annotations_are_ignored() {
    let revision = accept_json(&with_annotation("example.com/owner", "team-a"));

    assert_eq!(revision.metadata.annotations["example.com/owner"], "team-a");
}

#[test]
fn annotation_and_spec_errors_are_reported_together() {
    let mut document = with_annotation(SHA256_ANNOTATION, "abc");
    document["spec"]["mode"] = json!("sidecar");

    assert_eq!(paths(&reject_json(&document)), [SHA256_PATH, "spec.mode"]);
}
