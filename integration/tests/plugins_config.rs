//! Go test plugins about configuration and logging, in the real Envoy with `--concurrency 2`:
//! struct-config and typed-struct-config (how `pluginConfig` is wrapped, and which configs
//! Envoy rejects at load), and logger (plugin log lines in Envoy's log).
//!
//! Needs `libedgefn.so` (`cargo build --release -p edgefn-filter`) and the Go test plugins
//! (`scripts/setup.sh`); see `edgefn_integration::tools` for the locations.

use edgefn_integration::{
    log_tail, Client, Envoy, FlaggedEnvoy, PluginServers, Protocol, Request, Revision,
};
use serde_json::json;

const PROTOCOLS: [Protocol; 2] = [Protocol::Http1, Protocol::Http2];
/// Log lines shown when an assertion fails.
const TAIL: usize = 40;
/// The annotation that selects how `pluginConfig` is wrapped in the plugin's `Any`.
const CONFIG_TYPE_ANNOTATION: &str = "edgefn.dev/plugin-config-type";
const STRUCT_TYPE_URL: &str = "type.googleapis.com/google.protobuf.Struct";
const TYPED_STRUCT_TYPE_URL: &str = "type.googleapis.com/xds.type.v3.TypedStruct";

async fn start(servers: &PluginServers, revision: &serde_json::Value) -> Envoy {
    servers
        .envoy(revision)
        .concurrency(2)
        .start()
        .await
        .unwrap_or_else(|error| panic!("{error}"))
}

fn tail(log: &str) -> &str {
    log_tail(log, TAIL)
}

/// Returns `revision` as JSON with the `edgefn.dev/plugin-config-type` annotation set.
fn with_config_type(revision: &Revision, config_type: &str) -> serde_json::Value {
    let mut json = revision.to_json();
    json["metadata"]["annotations"] = json!({ CONFIG_TYPE_ANNOTATION: config_type });
    json
}

/// Returns a JSON object with "greeting" and a chain of `depth` objects under "nested".
fn nested_config(greeting: &str, depth: usize) -> String {
    let mut nested = json!({ "leaf": true });
    for level in 1..depth {
        nested = json!({ format!("level{level}"): nested });
    }
    json!({ "greeting": greeting, "nested": nested }).to_string()
}

/// Sends a request over both protocols and checks the greeting plugin's response headers.
async fn assert_greeting(envoy: &Envoy, greeting: &str, keys: &str) {
    for protocol in PROTOCOLS {
        let response = Client::new(envoy.listen_addr(), protocol)
            .send(Request::get("/greeting"))
            .await
            .unwrap();

        let log = envoy.log_text();
        assert_eq!(response.status, 200, "{protocol:?}:\n{}", tail(&log));
        assert_eq!(
            response.header_values("x-greeting"),
            [greeting],
            "{protocol:?}"
        );
        assert_eq!(
            response.header_values("x-config-keys"),
            [keys],
            "{protocol:?}"
        );
        // edgefn leaves the TypedStruct's own type_url empty, so the plugin sends none.
        assert!(
            response.header("x-typed-struct-type-url").is_none(),
            "{protocol:?}"
        );
    }
}

/// Starts Envoy on `revision`, expecting it to exit at config load, and checks the log: the
/// plugin's own `message` at error level, and edgefn's error naming the revision.
async fn assert_rejected_at_load(
    servers: &PluginServers,
    revision: &serde_json::Value,
    message: &str,
) {
    let name = revision["metadata"]["name"].as_str().unwrap().to_owned();
    let failed = servers
        .envoy(revision)
        .start_expecting_failure()
        .await
        .unwrap_or_else(|error| panic!("{name}: {error}"));
    let log = &failed.log;

    assert!(!failed.status.success(), "{name}: exited 0:\n{}", tail(log));
    let plugin_lines: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("[error][dynamic_modules]") && line.contains(message))
        .collect();
    assert_eq!(
        plugin_lines.len(),
        1,
        "{name}: error lines with {message:?}:\n{}",
        tail(log)
    );
    let revision_tag = format!("revision \"{name}\"");
    let edgefn_lines: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("[error][dynamic_modules]"))
        .filter(|line| line.contains(&revision_tag) && line.contains("rejected its pluginConfig"))
        .collect();
    assert_eq!(
        edgefn_lines.len(),
        1,
        "{name}: edgefn error lines naming the revision:\n{}",
        tail(log)
    );
}

// === struct-config and typed-struct-config: valid configs ===

#[tokio::test]
async fn struct_config_valid() {
    let servers = PluginServers::start().unwrap();
    let revision = servers
        .revision("struct-config")
        .plugin_config(r#"{"greeting": "hello", "extra": [1, "two", null]}"#);
    let envoy = start(&servers, &revision.to_json()).await;

    assert_greeting(&envoy, "hello", "extra,greeting").await;
}

#[tokio::test]
async fn struct_config_from_yaml() {
    let servers = PluginServers::start().unwrap();
    let revision = servers
        .revision("struct-config")
        .plugin_config("greeting: from yaml\nother: {a: 1}\n");
    let envoy = start(&servers, &revision.to_json()).await;

    assert_greeting(&envoy, "from yaml", "greeting,other").await;
}

#[tokio::test]
async fn typed_struct_config_valid() {
    let servers = PluginServers::start().unwrap();
    let revision = servers
        .revision("typed-struct-config")
        .plugin_config(r#"{"greeting": "typed hello", "more": {"x": 1}}"#);
    let envoy = start(&servers, &with_config_type(&revision, "typed-struct")).await;

    assert_greeting(&envoy, "typed hello", "greeting,more").await;
}

#[tokio::test]
async fn struct_config_nested_30_levels() {
    let servers = PluginServers::start().unwrap();
    let revision = servers
        .revision("struct-config")
        .plugin_config(&nested_config("deep", 30));
    let envoy = start(&servers, &revision.to_json()).await;

    assert_greeting(&envoy, "deep", "greeting,nested").await;
}

#[tokio::test]
async fn typed_struct_config_nested_30_levels() {
    let servers = PluginServers::start().unwrap();
    let revision = servers
        .revision("typed-struct-config")
        .plugin_config(&nested_config("typed deep", 30));
    let envoy = start(&servers, &with_config_type(&revision, "typed-struct")).await;

    assert_greeting(&envoy, "typed deep", "greeting,nested").await;
}

/// A plugin whose settings are all optional loads with an empty `pluginConfig` and with none.
#[tokio::test]
async fn empty_plugin_config_loads() {
    let servers = PluginServers::start().unwrap();

    let empty = servers.revision("add-header").plugin_config("");
    let absent = servers.revision("add-header");
    for (case, revision) in [("empty", empty), ("absent", absent)] {
        let envoy = start(&servers, &revision.to_json()).await;
        for protocol in PROTOCOLS {
            let response = Client::new(envoy.listen_addr(), protocol)
                .send(Request::get("/"))
                .await
                .unwrap();

            let log = envoy.log_text();
            assert_eq!(response.status, 200, "{case} {protocol:?}:\n{}", tail(&log));
            assert_eq!(
                response.header_values("x-edgefn-plugin"),
                ["add-header"],
                "{case} {protocol:?}"
            );
        }
    }
}

// === configs the plugin rejects at load ===

#[tokio::test]
async fn struct_config_wrong_field_type() {
    let servers = PluginServers::start().unwrap();
    let revision = servers
        .revision("struct-config")
        .plugin_config(r#"{"greeting": 5}"#);

    let message = r#"struct-config: config field "greeting" must be a string, got a number"#;
    assert_rejected_at_load(&servers, &revision.to_json(), message).await;
}

#[tokio::test]
async fn typed_struct_config_wrong_field_type() {
    let servers = PluginServers::start().unwrap();
    let revision = servers
        .revision("typed-struct-config")
        .plugin_config(r#"{"greeting": {"nested": true}}"#);
    let revision = with_config_type(&revision, "typed-struct");

    let message = r#"typed-struct-config: config field "greeting" must be a string, got an object"#;
    assert_rejected_at_load(&servers, &revision, message).await;
}

/// An empty or absent `pluginConfig` reaches the plugin as an empty Struct, not as an empty
/// `Any`: struct-config reports the missing field rather than a wrong type URL.
#[tokio::test]
async fn struct_config_empty_rejected() {
    let servers = PluginServers::start().unwrap();
    let message = r#"struct-config: config field "greeting" is required and must be a string"#;

    for config in [Some(""), Some("{}"), None] {
        let mut revision = servers.revision("struct-config");
        if let Some(config) = config {
            revision = revision.plugin_config(config);
        }
        assert_rejected_at_load(&servers, &revision.to_json(), message).await;
    }
}

#[tokio::test]
async fn typed_struct_plugin_given_struct() {
    let servers = PluginServers::start().unwrap();
    let revision = servers
        .revision("typed-struct-config")
        .plugin_config(r#"{"greeting": "hello"}"#);

    let message = format!(
        "typed-struct-config: plugin_config must be an Any with type URL \
         \"{TYPED_STRUCT_TYPE_URL}\", got type URL \"{STRUCT_TYPE_URL}\""
    );
    assert_rejected_at_load(&servers, &revision.to_json(), &message).await;
}

#[tokio::test]
async fn struct_plugin_given_typed_struct() {
    let servers = PluginServers::start().unwrap();
    let revision = servers
        .revision("struct-config")
        .plugin_config(r#"{"greeting": "hello"}"#);
    let revision = with_config_type(&revision, "typed-struct");

    let message = format!(
        "struct-config: plugin_config must be an Any with type URL \"{STRUCT_TYPE_URL}\", \
         got type URL \"{TYPED_STRUCT_TYPE_URL}\""
    );
    assert_rejected_at_load(&servers, &revision, &message).await;
}

// === logger ===

/// Go's log levels and the names Envoy prints for them.
const LOG_LEVELS: [(&str, &str); 6] = [
    ("trace", "trace"),
    ("debug", "debug"),
    ("info", "info"),
    ("warn", "warning"),
    ("error", "error"),
    ("critical", "critical"),
];
/// The places the logger plugin logs from, once each per request.
const LOG_PLACES: [&str; 2] = ["decodeHeaders", "goroutine"];
/// Exact size of the logger plugin's long message.
const BIG_MESSAGE_SIZE: usize = 10 * 1024;

/// Returns the lines Envoy's `dynamic_modules` logger wrote at `envoy_level` that end with
/// `message`.
fn lines_ending_with<'a>(log: &'a str, envoy_level: &str, message: &str) -> Vec<&'a str> {
    let tag = format!("[{envoy_level}][dynamic_modules]");
    log.lines()
        .filter(|line| line.contains(&tag) && line.ends_with(message))
        .collect()
}

#[tokio::test]
async fn logger_lines_at_matching_levels() {
    let servers = PluginServers::start().unwrap();
    let builder = servers.envoy(&servers.revision("logger").to_json());
    let flags = [
        "--concurrency",
        "2",
        "--log-level",
        "info",
        "--component-log-level",
        "dynamic_modules:trace",
    ];
    let envoy = FlaggedEnvoy::start(&builder, &flags, &[])
        .await
        .unwrap_or_else(|error| panic!("{error}"));

    for protocol in PROTOCOLS {
        let response = Client::new(envoy.listen_addr(), protocol)
            .send(Request::get("/logged"))
            .await
            .unwrap();
        assert_eq!(
            response.status,
            200,
            "{protocol:?}:\n{}",
            tail(&envoy.log_text())
        );
        assert_eq!(response.echoed().unwrap().path, "/logged", "{protocol:?}");
    }

    let log = envoy.log_text();
    let requests = PROTOCOLS.len();
    for place in LOG_PLACES {
        for (go_level, envoy_level) in LOG_LEVELS {
            let message = format!("edgefn-logger level={go_level} where={place}");
            let lines = lines_ending_with(&log, envoy_level, &message);
            assert_eq!(
                lines.len(),
                requests,
                "{message:?} at {envoy_level}:\n{}",
                tail(&log)
            );
        }

        let prefix = format!("edgefn-logger level=info where={place} size={BIG_MESSAGE_SIZE} ");
        let big = format!("{prefix}{}", "x".repeat(BIG_MESSAGE_SIZE - prefix.len()));
        let lines = lines_ending_with(&log, "info", &big);
        assert_eq!(lines.len(), requests, "10 KiB message from {place}");
    }

    // The bytes that are not UTF-8 reach the log file as the plugin sent them.
    let bytes = envoy.log_bytes().unwrap();
    for place in LOG_PLACES {
        let mut message =
            format!("edgefn-logger level=warn where={place} invalid-utf8=").into_bytes();
        message.extend_from_slice(b"\xff\xfe\xc3(");
        let tag: &[u8] = b"[warning][dynamic_modules]";
        let count = bytes
            .split(|byte| *byte == b'\n')
            .filter(|line| line.windows(tag.len()).any(|window| window == tag))
            .filter(|line| line.ends_with(&message))
            .count();
        assert_eq!(count, requests, "message with invalid UTF-8 from {place}");
    }
}
