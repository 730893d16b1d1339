//! edgefn in the real Envoy while the OCI registry of a plugin is down. A revision whose
//! registry cannot be reached, with nothing in the cache, does not stop Envoy from starting:
//! edgefn accepts the filter config, replies 503 (or passes requests through with the
//! annotation `edgefn.dev/fail-open: "true"`), retries in the background, and runs the plugin
//! once the registry is back, with no operator action.
//!
//! The registry is the CNCF distribution registry (Debian's `docker-registry`) on 127.0.0.1,
//! without authentication; `edgefn push --insecure` publishes to it.
//!
//! Needs `libedgefn.so` (`cargo build --release -p edgefn-filter`), the Go test plugins
//! (`scripts/setup.sh`), the `edgefn` binary (`cargo build -p edgefn-cli`, or any
//! `cargo test --workspace`), and the Debian package `docker-registry`.

mod support;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use edgefn_integration::{tools, Client, EchoUpstream, Envoy, PluginServers, Request, Response};
use edgefn_integration::{EnvoyBuilder, TEST_PLUGINS_FILE};
use serde_json::json;
use support::{lines_with, plugin_path, tail};

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
/// Overrides the `edgefn` binary (default `<target dir>/debug/edgefn`).
const REGISTRY_START_TIMEOUT: Duration = Duration::from_secs(20);
/// Time allowed for a plugin to load once its registry is back: the longest pause between two
/// retries (30 s) plus one pull, because the pause may have grown while the registry was down.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(35);
const POLL_INTERVAL: Duration = Duration::from_millis(250);

const REPOSITORY: &str = "plugins/testplugins";
const TAG: &str = "v1";
/// The add-header config of the header plugin: `x-added: yes` on every response.
const ADD_HEADER_CONFIG: &str = r#"{"responseHeader": {"name": "x-added", "value": "yes"}}"#;
/// The require-header config of the auth plugin: requests without `x-api-key` get 403.
const REQUIRE_HEADER_CONFIG: &str = r#"{"header": "x-api-key", "body": "missing api key"}"#;
/// What edgefn logs when it accepts a filter config whose plugin source is unavailable.
const ACCEPTED_UNAVAILABLE: &str = "plugin source unavailable";
/// What edgefn logs when a plugin loads after its source was unavailable.
const LOADED_AFTER_RETRY: &str = "plugin loaded after its source was unavailable";
/// Start of the body of edgefn's 503 while a revision is not loaded.
const NOT_LOADED_BODY: &str = "edgefn: no edge function revision is loaded yet";

/// A `docker-registry` storage directory, served on a fixed port by [`Registry::resume`].
struct Registry {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl Registry {
    /// Prepares the registry without starting it, so that its port is closed.
    fn new() -> Self {
        assert!(
            Path::new(REGISTRY_BIN).is_file(),
            "{REGISTRY_BIN} not found; install the Debian package `docker-registry` \
             (scripts/setup.sh does)"
        );
        let dir = tempfile::Builder::new()
            .prefix("edgefn-outage-registry-")
            .tempdir()
            .expect("create the registry directory");
        Self {
            dir,
            port: free_port(),
            child: None,
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts a registry process on `port` over this storage and waits until it accepts
    /// connections.
    fn spawn(&self, port: u16) -> Child {
        let config_path = self.dir.path().join(format!("config-{port}.yml"));
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: edgefn-outage\n",
            self.dir.path().join("storage").display()
        );
        std::fs::write(&config_path, config).expect("write the registry config");

        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < REGISTRY_START_TIMEOUT,
                "docker-registry did not listen on 127.0.0.1:{port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        child
    }

    /// Pushes `file` under [`REPOSITORY`]:[`TAG`] through a second registry process on another
    /// port, so that the port Envoy pulls from stays closed. A registry that is up but lacks the
    /// tag returns 404, which edgefn treats as permanent and stops retrying.
    fn push_while_down(&self, file: &Path) {
        let staging_port = free_port();
        let mut staging = self.spawn(staging_port);
        push(&format!("127.0.0.1:{staging_port}"), file);
        let _ = staging.kill();
        let _ = staging.wait();
    }

    fn resume(&mut self) {
        self.child = Some(self.spawn(self.port));
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("pick a free port")
        .port()
}

fn cli_binary() -> PathBuf {
    tools::cli_binary().unwrap_or_else(|error| panic!("{error}"))
}

/// Pushes `file` to `host` with `edgefn push --insecure`.
fn push(host: &str, file: &Path) {
    let reference = format!("{host}/{REPOSITORY}:{TAG}");
    let output = Command::new(cli_binary())
        .args(["push", "--insecure"])
        .arg(&reference)
        .arg(file)
        .output()
        .expect("run edgefn push");
    assert!(
        output.status.success(),
        "edgefn push {reference} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Returns the revision of the header plugin: add-header from `testplugins.so` in the
/// registry, with the annotation `edgefn.dev/fail-open` when `fail_open` is set.
fn header_revision(registry: &Registry, fail_open: Option<&str>) -> serde_json::Value {
    let mut metadata = json!({ "name": "oci-header-v1" });
    if let Some(value) = fail_open {
        metadata["annotations"] = json!({ "edgefn.dev/fail-open": value });
    }
    json!({
        "apiVersion": "extensions.apoxy.dev/v1alpha2",
        "kind": "EdgeFunctionRevision",
        "metadata": metadata,
        "spec": {
            "mode": "filter",
            "code": {
                "metadata": { "name": "add-header" },
                "goPluginSource": {
                    "oci": { "repo": format!("{}/{REPOSITORY}", registry.host()), "tag": TAG },
                    "pluginConfig": ADD_HEADER_CONFIG,
                },
            },
        },
    })
}

fn pretty(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).expect("a JSON value always serializes")
}

async fn get(addr: SocketAddr, request: Request) -> Response {
    Client::http1(addr)
        .send(request)
        .await
        .unwrap_or_else(|error| panic!("{error}"))
}

fn with_key(path: &str) -> Request {
    Request::get(path).header("x-api-key", "k")
}

/// Sends `request()` until a response has `x-added: yes`, for at most [`RECOVERY_TIMEOUT`].
/// Returns the last response.
async fn wait_for_header_plugin(addr: SocketAddr, request: impl Fn() -> Request) -> Response {
    let started = Instant::now();
    loop {
        let response = get(addr, request()).await;
        if response.header("x-added") == Some("yes") || started.elapsed() > RECOVERY_TIMEOUT {
            return response;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

fn single_filter_envoy(upstream: &EchoUpstream, revision: &serde_json::Value) -> EnvoyBuilder {
    Envoy::builder("edgefn.yaml")
        .var("UPSTREAM_PORT", upstream.port())
        .var("REVISION", pretty(revision))
        .concurrency(2)
}

#[tokio::test]
async fn registry_down_at_start_then_recovers() {
    let mut registry = Registry::new();
    let upstream = EchoUpstream::start().unwrap_or_else(|error| panic!("{error}"));

    // 1. The registry is down and the cache is empty (each Envoy run gets a new cache), yet
    //    Envoy becomes ready and replies 503.
    let envoy = single_filter_envoy(&upstream, &header_revision(&registry, None))
        .env("EDGEFN_INSECURE_REGISTRIES", &registry.host())
        .start()
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let response = get(envoy.listen_addr(), Request::get("/outage")).await;
    let log = envoy.log_text();
    assert_eq!(response.status, 503, "{}", tail(&log));
    assert!(
        response.body_text().starts_with(NOT_LOADED_BODY),
        "body: {:?}",
        response.body_text()
    );
    assert_eq!(response.header("x-added"), None);
    assert!(
        !lines_with(&log, &[ACCEPTED_UNAVAILABLE, "oci-header-v1"]).is_empty(),
        "{}",
        tail(&log)
    );

    // 2. The plugin is published and the registry comes back on the same port: the plugin
    //    loads in the background.
    registry.push_while_down(&plugin_path(TEST_PLUGINS_FILE));
    registry.resume();
    let response = wait_for_header_plugin(envoy.listen_addr(), || Request::get("/outage")).await;
    let log = envoy.log_text();
    assert_eq!(response.status, 200, "{}", tail(&log));
    assert_eq!(response.header("x-added"), Some("yes"), "{}", tail(&log));
    assert!(
        !lines_with(&log, &[LOADED_AFTER_RETRY, "oci-header-v1"]).is_empty(),
        "{}",
        tail(&log)
    );
}

/// Starts `edgefn-two-filters.yaml` with the auth plugin (require-header from
/// `testplugins.so` by URL) first and the header plugin from the registry second.
async fn two_filter_envoy(
    servers: &PluginServers,
    registry: &Registry,
    header: &serde_json::Value,
) -> Envoy {
    let auth = servers
        .revision("require-header")
        .plugin_config(REQUIRE_HEADER_CONFIG);
    Envoy::builder("edgefn-two-filters.yaml")
        .var("UPSTREAM_PORT", servers.upstream.port())
        .var("FIRST_REVISION", auth.to_template_value())
        .var("SECOND_REVISION", pretty(header))
        .env("EDGEFN_INSECURE_REGISTRIES", &registry.host())
        .concurrency(2)
        .start()
        .await
        .unwrap_or_else(|error| panic!("{error}"))
}

#[tokio::test]
async fn fail_open_skips_only_the_failing_plugin() {
    let servers = PluginServers::start().unwrap_or_else(|error| panic!("{error}"));
    let mut registry = Registry::new();
    registry.push_while_down(&plugin_path(TEST_PLUGINS_FILE));

    let header = header_revision(&registry, Some("true"));
    let envoy = two_filter_envoy(&servers, &registry, &header).await;

    let without_key = get(envoy.listen_addr(), Request::get("/open")).await;
    let log = envoy.log_text();
    assert_eq!(without_key.status, 403, "{}", tail(&log));
    assert_eq!(without_key.body_text(), "missing api key");

    let with_key_response = get(envoy.listen_addr(), with_key("/open")).await;
    assert_eq!(with_key_response.status, 200, "{}", tail(&log));
    assert_eq!(with_key_response.header("x-added"), None);
    assert!(
        !lines_with(&log, &[ACCEPTED_UNAVAILABLE, "oci-header-v1"]).is_empty(),
        "{}",
        tail(&log)
    );

    // The header plugin loads once the registry is back. Under EDGEFN_GO_LIBRARIES=single this
    // works only because both filters use the same library, testplugins.so.
    registry.resume();
    let recovered = wait_for_header_plugin(envoy.listen_addr(), || with_key("/open")).await;
    let log = envoy.log_text();
    assert_eq!(recovered.status, 200, "{}", tail(&log));
    assert_eq!(recovered.header("x-added"), Some("yes"), "{}", tail(&log));
}

#[tokio::test]
async fn fail_closed_replies_503_after_auth() {
    let servers = PluginServers::start().unwrap_or_else(|error| panic!("{error}"));
    let registry = Registry::new();
    registry.push_while_down(&plugin_path(TEST_PLUGINS_FILE));

    let envoy = two_filter_envoy(&servers, &registry, &header_revision(&registry, None)).await;

    let without_key = get(envoy.listen_addr(), Request::get("/closed")).await;
    let log = envoy.log_text();
    assert_eq!(without_key.status, 403, "{}", tail(&log));

    let with_key_response = get(envoy.listen_addr(), with_key("/closed")).await;
    assert_eq!(with_key_response.status, 503, "{}", tail(&log));
    assert!(
        with_key_response.body_text().starts_with(NOT_LOADED_BODY),
        "body: {:?}",
        with_key_response.body_text()
    );
    let accepted = lines_with(&log, &[ACCEPTED_UNAVAILABLE, "oci-header-v1"]);
    assert!(
        accepted
            .iter()
            .any(|line| line.contains("requests get 503")),
        "{}",
        tail(&log)
    );
}

#[tokio::test]
async fn invalid_fail_open_value_rejects_config() {
    let upstream = EchoUpstream::start().unwrap_or_else(|error| panic!("{error}"));
    let registry = Registry::new();

    let failed = single_filter_envoy(&upstream, &header_revision(&registry, Some("yes")))
        .env("EDGEFN_INSECURE_REGISTRIES", &registry.host())
        .start_expecting_failure()
        .await
        .unwrap_or_else(|error| panic!("{error}"));

    assert!(
        failed
            .log
            .contains("metadata.annotations[edgefn.dev/fail-open]"),
        "{}",
        tail(&failed.log)
    );
}
