//! edgefn following an `edgefn-server`: the filter config names a revision on the API server
//! (`apiServer`), and the running Envoy switches to new revisions without a restart.
//!
//! Needs `libedgefn.so` (`cargo build --release -p edgefn-filter`), the `edgefn-server` binary
//! (`cargo build --release -p edgefn-server`; the newer of `target/release` and
//! `target/debug` is used, or `$EDGEFN_SERVER_BIN`) and the Go test plugins
//! (`scripts/setup.sh`).

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use edgefn_integration::{tools, Client, EchoUpstream, Envoy, FileServer, Protocol, Request};
use edgefn_integration::{Response, DELAY_HEADER};
use hyper::{Method, StatusCode};
use serde_json::{json, Value as Json};
use support::{lines_with, plugin_path, tail};

/// Overrides the `edgefn-server` binary.
const SERVER_BIN_ENV: &str = "EDGEFN_SERVER_BIN";
const COLLECTION: &str = "/apis/extensions.apoxy.dev/v1alpha2/edgefunctionrevisions";
/// The label Apoxy puts on the revisions of one EdgeFunction.
const FUNCTION_LABEL: &str = "extensions.apoxy.dev/edgefunction";
/// Response header that add-header sets to the value each revision configures.
const REVISION_HEADER: &str = "x-follow";

/// Time the server gets to ingest a revision, and Envoy to switch to one.
const SWITCH_TIMEOUT: Duration = Duration::from_secs(60);
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Pause before a create, so that the new revision's creationTimestamp (whole seconds) is
/// newer than the previous one's.
const NEXT_SECOND: Duration = Duration::from_millis(1100);
/// Upper bounds on the client loop that runs during switches.
const LOOP_MAX_REQUESTS: usize = 20_000;
const LOOP_MAX_TIME: Duration = Duration::from_secs(240);
/// Delay of the upstream's reply to the request in flight during a switch, below Envoy's
/// default route timeout of 15 s.
const SLOW_REQUEST_MS: u64 = 12_000;

// === The edgefn-server process ===

/// Returns the `edgefn-server` binary: `$EDGEFN_SERVER_BIN`, else the newer of the release and
/// debug builds.
fn server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os(SERVER_BIN_ENV).filter(|value| !value.is_empty()) {
        return PathBuf::from(path);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| tools::repo_root().join("target"));
    let built = |profile: &str| {
        let path = target.join(profile).join("edgefn-server");
        let modified = std::fs::metadata(&path)
            .and_then(|meta| meta.modified())
            .ok()?;
        Some((modified, path))
    };
    [built("release"), built("debug")]
        .into_iter()
        .flatten()
        .max()
        .map(|(_, path)| path)
        .unwrap_or_else(|| {
            panic!(
                "edgefn-server not found in {}/release or /debug; run `cargo build --release -p \
                 edgefn-server` or set {SERVER_BIN_ENV}",
                target.display()
            )
        })
}

/// A running `edgefn-server` on 127.0.0.1 with a file store in a temporary folder. Killed when
/// dropped.
struct ApiServer {
    child: Child,
    address: SocketAddr,
    dir: tempfile::TempDir,
}

impl ApiServer {
    fn start() -> ApiServer {
        let dir = tempfile::tempdir().expect("temporary folder");
        let log = std::fs::File::create(dir.path().join("server.log")).expect("server log");
        let mut child = Command::new(server_binary())
            .arg("--data")
            .arg(dir.path().join("revisions.jsonl"))
            .args(["--listen", "127.0.0.1:0"])
            .env("EDGEFN_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start edgefn-server");

        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            let mut lines = std::io::BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = sender.send(line);
            }
            // Keep reading so that the server never blocks on a full pipe.
            for _ in lines {}
        });
        let Ok(line) = receiver.recv_timeout(Duration::from_secs(30)) else {
            let _ = child.kill();
            panic!("edgefn-server printed no 'listening on' line within 30 s");
        };
        let address = line
            .strip_prefix("listening on http://")
            .and_then(|address| address.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line of edgefn-server: {line:?}"));
        ApiServer {
            child,
            address,
            dir,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    async fn call(&self, method: Method, path: &str, content_type: &str, body: &Json) -> Json {
        let mut request = Request::new(method.clone(), path);
        if !body.is_null() {
            request = request.header("content-type", content_type);
            request.body = body.to_string().into();
        }
        let response = Client::http1(self.address)
            .send(request)
            .await
            .unwrap_or_else(|error| panic!("{method} {path}: {error}"));
        assert!(
            response.status.is_success(),
            "{method} {path} returned {}: {}",
            response.status,
            response.body_text()
        );
        serde_json::from_slice(&response.body).expect("a JSON response")
    }

    async fn create(&self, object: &Json) {
        self.call(Method::POST, COLLECTION, "application/json", object)
            .await;
    }

    async fn merge_patch(&self, name: &str, patch: &Json) {
        let path = format!("{COLLECTION}/{name}");
        self.call(Method::PATCH, &path, "application/merge-patch+json", patch)
            .await;
    }

    /// Waits until `name` has `count` Ready conditions and returns the last one's status.
    async fn wait_ingested(&self, name: &str, count: usize) -> String {
        let path = format!("{COLLECTION}/{name}");
        let deadline = Instant::now() + SWITCH_TIMEOUT;
        loop {
            let object = self.call(Method::GET, &path, "", &Json::Null).await;
            let ready: Vec<&Json> = object["status"]["conditions"]
                .as_array()
                .map(|all| all.iter().filter(|c| c["type"] == "Ready").collect())
                .unwrap_or_default();
            if ready.len() >= count {
                let last = ready[ready.len() - 1];
                return last["status"].as_str().unwrap_or_default().to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "{name} was not ingested within {SWITCH_TIMEOUT:?}: {object}\n{}",
                self.log_text()
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.stop();
    }
}

// === Revisions and Envoy ===

/// An add-header revision of function `follow` whose responses carry `x-follow: <value>`.
fn revision(name: &str, url: &str, value: &str) -> Json {
    let config = json!({"responseHeader": {"name": REVISION_HEADER, "value": value}});
    json!({
        "apiVersion": "extensions.apoxy.dev/v1alpha2",
        "kind": "EdgeFunctionRevision",
        "metadata": {"name": name, "labels": {FUNCTION_LABEL: "follow"}},
        "spec": {
            "mode": "filter",
            "code": {
                "metadata": {"name": "add-header"},
                "goPluginSource": {"url": url, "pluginConfig": config.to_string()}
            }
        }
    })
}

/// The `apiServer` filter config, as JSON for the `{{REVISION}}` placeholder.
fn api_server_config(url: &str, selection: (&str, &str), fail_open: bool) -> String {
    let mut section = json!({"url": url, "failOpen": fail_open});
    section[selection.0] = json!(selection.1);
    serde_json::to_string_pretty(&json!({ "apiServer": section })).expect("JSON")
}

fn by_label() -> (&'static str, &'static str) {
    ("labelSelector", "extensions.apoxy.dev/edgefunction=follow")
}

/// Serves the Go test plugins, plus `bad.so` (a text file) from a second folder.
struct Plugins {
    files: FileServer,
    bad: FileServer,
    _bad_dir: tempfile::TempDir,
}

impl Plugins {
    fn start() -> Plugins {
        let plugins_dir = plugin_path("addheader.so")
            .parent()
            .expect("a folder")
            .to_owned();
        let bad_dir = tempfile::tempdir().expect("temporary folder");
        std::fs::write(bad_dir.path().join("bad.so"), "not a Go plugin\n").expect("bad.so");
        Plugins {
            files: FileServer::start(plugins_dir).expect("plugin file server"),
            bad: FileServer::start(bad_dir.path()).expect("bad file server"),
            _bad_dir: bad_dir,
        }
    }

    fn url(&self, file: &str) -> String {
        if file == "bad.so" {
            self.bad.url(file)
        } else {
            self.files.url(file)
        }
    }
}

async fn start_envoy(
    upstream: &EchoUpstream,
    config: &str,
    cache_dir: Option<&Path>,
    go_libraries: &str,
) -> Envoy {
    let mut builder = Envoy::builder("edgefn.yaml")
        .var("UPSTREAM_PORT", upstream.port())
        .var("REVISION", config)
        .concurrency(2)
        .env("EDGEFN_GO_LIBRARIES", go_libraries);
    if let Some(dir) = cache_dir {
        builder = builder.env("EDGEFN_CACHE_DIR", dir.to_str().expect("UTF-8 path"));
    }
    builder
        .start()
        .await
        .unwrap_or_else(|error| panic!("{error}"))
}

async fn get(addr: SocketAddr, protocol: Protocol, path: &str) -> Response {
    Client::new(addr, protocol)
        .send(Request::get(path))
        .await
        .unwrap_or_else(|error| panic!("GET {path}: {error}"))
}

/// Polls until a response carries `x-follow: <value>` and returns it.
async fn wait_for_revision(envoy: &Envoy, value: &str) -> Response {
    let deadline = Instant::now() + SWITCH_TIMEOUT;
    loop {
        let response = get(envoy.listen_addr(), Protocol::Http1, "/wait").await;
        if response.header(REVISION_HEADER) == Some(value) {
            return response;
        }
        assert!(
            Instant::now() < deadline,
            "no response with {REVISION_HEADER}: {value} within {SWITCH_TIMEOUT:?}; last: {} \
             {:?}\n{}",
            response.status,
            response.header(REVISION_HEADER),
            tail(&envoy.log_text())
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Sends `count` requests and returns the `x-follow` values that differ from `value`.
async fn other_values(envoy: &Envoy, value: &str, count: usize) -> Vec<String> {
    let mut others = Vec::new();
    for number in 0..count {
        let protocol = if number % 2 == 0 {
            Protocol::Http1
        } else {
            Protocol::Http2
        };
        let response = get(envoy.listen_addr(), protocol, "/steady").await;
        let seen = format!("{} {:?}", response.status, response.header(REVISION_HEADER));
        if response.status != StatusCode::OK || response.header(REVISION_HEADER) != Some(value) {
            others.push(seen);
        }
    }
    others
}

/// A request loop that runs until stopped: it records each failed request and the order of
/// the `x-follow` values it saw.
struct ClientLoop {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(Vec<String>, Vec<String>, usize)>,
}

impl ClientLoop {
    fn start(addr: SocketAddr) -> ClientLoop {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let (mut failures, mut values) = (Vec::new(), Vec::<String>::new());
            let mut sent = 0;
            while !stopped.load(Ordering::Relaxed)
                && sent < LOOP_MAX_REQUESTS
                && started.elapsed() < LOOP_MAX_TIME
            {
                let protocol = if sent % 2 == 0 {
                    Protocol::Http1
                } else {
                    Protocol::Http2
                };
                sent += 1;
                match Client::new(addr, protocol)
                    .send(Request::get("/loop"))
                    .await
                {
                    Ok(response) if response.status == StatusCode::OK => {
                        let value = response.header(REVISION_HEADER).unwrap_or("-").to_owned();
                        if values.last() != Some(&value) {
                            values.push(value);
                        }
                    }
                    Ok(response) => failures.push(format!("{protocol:?}: {}", response.status)),
                    Err(error) => failures.push(format!("{protocol:?}: {error}")),
                }
            }
            (failures, values, sent)
        });
        ClientLoop { stop, task }
    }

    /// Stops the loop and returns the failures, the values in the order seen, and the count.
    async fn finish(self) -> (Vec<String>, Vec<String>, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the client loop panicked")
    }
}

// === Switching revisions ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_revisions_switch_running_envoy() {
    let plugins = Plugins::start();
    let upstream = EchoUpstream::start().unwrap();
    let server = ApiServer::start();
    server
        .create(&revision("follow-1", &plugins.url("addheader.so"), "one"))
        .await;
    assert_eq!(server.wait_ingested("follow-1", 1).await, "True");

    let config = api_server_config(&server.url(), by_label(), false);
    let envoy = start_envoy(&upstream, &config, None, "multiple").await;
    let first = wait_for_revision(&envoy, "one").await;
    assert_eq!(first.header("x-edgefn-library"), Some("addheader"));

    let loops = [
        ClientLoop::start(envoy.listen_addr()),
        ClientLoop::start(envoy.listen_addr()),
    ];
    let slow = tokio::spawn({
        let addr = envoy.listen_addr();
        async move {
            let request = Request::get("/slow").header(DELAY_HEADER, &SLOW_REQUEST_MS.to_string());
            Client::http1(addr).send(request).await
        }
    });
    // Let the slow request reach the upstream before the switch.
    tokio::time::sleep(NEXT_SECOND).await;

    // A new config of the same library.
    server
        .create(&revision("follow-2", &plugins.url("addheader.so"), "two"))
        .await;
    wait_for_revision(&envoy, "two").await;
    let slow_finished_before_switch = slow.is_finished();

    // A second Go library.
    tokio::time::sleep(NEXT_SECOND).await;
    server
        .create(&revision(
            "follow-3",
            &plugins.url("addheader2.so"),
            "three",
        ))
        .await;
    let third = wait_for_revision(&envoy, "three").await;

    let slow = slow
        .await
        .expect("slow request task")
        .expect("slow request");
    let mut results = Vec::new();
    for client_loop in loops {
        results.push(client_loop.finish().await);
    }

    assert_eq!(third.header("x-edgefn-library"), Some("addheader2"));
    assert!(
        !slow_finished_before_switch,
        "the slow request ended before the switch; raise SLOW_REQUEST_MS"
    );
    assert_eq!(slow.status, StatusCode::OK);
    assert_eq!(
        slow.header(REVISION_HEADER),
        Some("one"),
        "a stream in flight changed revision"
    );
    for (failures, values, sent) in &results {
        assert_eq!(
            failures.len(),
            0,
            "failed requests of {sent}: {failures:#?}"
        );
        assert_eq!(values, &["one", "two", "three"], "values in the order seen");
    }
    let log = envoy.log_text();
    for name in ["follow-1", "follow-2", "follow-3"] {
        let switched = lines_with(&log, &[&format!("new streams run revision {name} ")]);
        assert_eq!(switched.len(), 1, "{name}:\n{}", tail(&log));
    }
    assert_eq!(lines_with(&log, &["opened Go plugin library"]).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_revision_follows_spec_change() {
    let plugins = Plugins::start();
    let upstream = EchoUpstream::start().unwrap();
    let server = ApiServer::start();
    server
        .create(&revision("named", &plugins.url("addheader.so"), "one"))
        .await;
    assert_eq!(server.wait_ingested("named", 1).await, "True");
    let config = api_server_config(&server.url(), ("revision", "named"), false);
    let envoy = start_envoy(&upstream, &config, None, "single").await;
    wait_for_revision(&envoy, "one").await;

    let value = json!({"responseHeader": {"name": REVISION_HEADER, "value": "changed"}});
    let patch = json!({"spec": {"code": {"goPluginSource": {"pluginConfig": value.to_string()}}}});
    server.merge_patch("named", &patch).await;
    assert_eq!(server.wait_ingested("named", 2).await, "True");

    let response = wait_for_revision(&envoy, "changed").await;
    assert_eq!(response.status, StatusCode::OK);
    let others = other_values(&envoy, "changed", 20).await;
    assert_eq!(others, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_revisions_keep_old_serving() {
    let plugins = Plugins::start();
    let upstream = EchoUpstream::start().unwrap();
    let server = ApiServer::start();
    server
        .create(&revision("good-1", &plugins.url("addheader.so"), "good"))
        .await;
    assert_eq!(server.wait_ingested("good-1", 1).await, "True");
    let config = api_server_config(&server.url(), by_label(), false);
    let envoy = start_envoy(&upstream, &config, None, "single").await;
    wait_for_revision(&envoy, "good").await;

    // The server rejects a file that is not a Go plugin: Ready=False, never loaded.
    tokio::time::sleep(NEXT_SECOND).await;
    server
        .create(&revision("bad-file", &plugins.url("bad.so"), "bad"))
        .await;
    assert_eq!(server.wait_ingested("bad-file", 1).await, "False");
    // The plugin rejects this pluginConfig, which only the filter finds out.
    tokio::time::sleep(NEXT_SECOND).await;
    let mut rejected = revision("bad-config", &plugins.url("addheader.so"), "bad");
    rejected["spec"]["code"]["goPluginSource"]["pluginConfig"] = json!(r#"{"unknown": 1}"#);
    server.create(&rejected).await;
    assert_eq!(server.wait_ingested("bad-config", 1).await, "True");
    // A second Go library, refused under EDGEFN_GO_LIBRARIES=single.
    tokio::time::sleep(NEXT_SECOND).await;
    server
        .create(&revision(
            "other-library",
            &plugins.url("addheader2.so"),
            "bad",
        ))
        .await;
    assert_eq!(server.wait_ingested("other-library", 1).await, "True");

    let log_has = |needles: &[&str]| !lines_with(&envoy.log_text(), needles).is_empty();
    let deadline = Instant::now() + SWITCH_TIMEOUT;
    while !log_has(&["failed to load", "other-library"]) && Instant::now() < deadline {
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    let log = envoy.log_text();
    let config_error = lines_with(&log, &["failed to load", "bad-config", "pluginConfig"]);
    assert_eq!(config_error.len(), 1, "{}", tail(&log));
    let library_error = lines_with(
        &log,
        &[
            "failed to load",
            "other-library",
            "EDGEFN_GO_LIBRARIES=multiple",
        ],
    );
    assert_eq!(library_error.len(), 1, "{}", tail(&log));
    assert_eq!(lines_with(&log, &["bad-file"]).len(), 0, "{}", tail(&log));
    let others = other_values(&envoy, "good", 20).await;
    assert_eq!(others, Vec::<String>::new(), "{}", tail(&log));
}

/// Publishes listener `main` of `edgefn-lds.yaml` with `config` as edgefn's filter config, as
/// LDS version `version`. The file is renamed into place, the event Envoy's watch reacts to.
fn publish_listener(dir: &Path, listen_port: u16, version: u32, config: &str) {
    let listener = Envoy::builder("edgefn-lds-listener.yaml")
        .var("VERSION", version)
        .var("REVISION", config)
        .render(listen_port, 0)
        .unwrap_or_else(|error| panic!("{error}"));
    let staging = dir.join(format!(".lds.yaml.{version}"));
    std::fs::write(&staging, listener).expect("write the LDS file");
    std::fs::rename(&staging, dir.join("lds.yaml")).expect("rename the LDS file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_update_keeps_revision_serving() {
    const SUCCESS_STAT: &str = "listener_manager.lds.update_success";
    let plugins = Plugins::start();
    let upstream = EchoUpstream::start().unwrap();
    let server = ApiServer::start();
    server
        .create(&revision("lds-1", &plugins.url("addheader.so"), "lds"))
        .await;
    assert_eq!(server.wait_ingested("lds-1", 1).await, "True");

    let lds_dir = tempfile::tempdir().expect("LDS folder");
    let listen_port = edgefn_integration::free_port().expect("a free port");
    let first = api_server_config(&server.url(), by_label(), false);
    publish_listener(lds_dir.path(), listen_port, 1, &first);
    let module_dir = tools::module_dir().unwrap_or_else(|error| panic!("{error}"));
    let envoy = Envoy::builder("edgefn-lds.yaml")
        .var("UPSTREAM_PORT", upstream.port())
        .var("LDS_PATH", lds_dir.path().join("lds.yaml").display())
        .var("LDS_DIR", lds_dir.path().display())
        .env(
            "ENVOY_DYNAMIC_MODULES_SEARCH_PATH",
            &module_dir.display().to_string(),
        )
        .concurrency(2)
        .start()
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let addr = SocketAddr::from(([127, 0, 0, 1], listen_port));
    let deadline = Instant::now() + SWITCH_TIMEOUT;
    while get(addr, Protocol::Http1, "/lds")
        .await
        .header(REVISION_HEADER)
        != Some("lds")
    {
        assert!(Instant::now() < deadline, "{}", tail(&envoy.log_text()));
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    let successes = envoy.stat(SUCCESS_STAT).await.expect("stats").unwrap_or(0);

    // The same server and selection in a changed filter config: Envoy builds a new filter
    // config and destroys the old one.
    let client_loop = ClientLoop::start(addr);
    let second = api_server_config(&server.url(), by_label(), true);
    publish_listener(lds_dir.path(), listen_port, 2, &second);
    let deadline = Instant::now() + SWITCH_TIMEOUT;
    while envoy.stat(SUCCESS_STAT).await.expect("stats").unwrap_or(0) <= successes {
        assert!(Instant::now() < deadline, "{}", tail(&envoy.log_text()));
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    // Requests keep arriving on the new filter config for a while.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (failures, values, sent) = client_loop.finish().await;

    assert_eq!(
        failures.len(),
        0,
        "failed requests of {sent}: {failures:#?}"
    );
    assert_eq!(values, ["lds"], "values in the order seen");
    let log = envoy.log_text();
    let inherited = lines_with(&log, &["starts with the revision another one", "lds-1"]);
    assert_eq!(inherited.len(), 1, "{}", tail(&log));
}

// === Envoy starting without the server ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_down_warm_cache_serves() {
    let plugins = Plugins::start();
    let upstream = EchoUpstream::start().unwrap();
    let cache = tempfile::tempdir().expect("cache folder");
    let mut server = ApiServer::start();
    server
        .create(&revision("cached", &plugins.url("addheader.so"), "cached"))
        .await;
    assert_eq!(server.wait_ingested("cached", 1).await, "True");
    let config = api_server_config(&server.url(), ("revision", "cached"), false);
    {
        let envoy = start_envoy(&upstream, &config, Some(cache.path()), "single").await;
        wait_for_revision(&envoy, "cached").await;
    }
    server.stop();

    let envoy = start_envoy(&upstream, &config, Some(cache.path()), "single").await;
    let response = wait_for_revision(&envoy, "cached").await;

    assert_eq!(response.status, StatusCode::OK);
    let log = envoy.log_text();
    let remembered = lines_with(&log, &["remembered in the cache", "cached"]);
    assert_eq!(remembered.len(), 1, "{}", tail(&log));
    let unreachable = lines_with(&log, &["cannot sync with the API server"]);
    assert!(!unreachable.is_empty(), "{}", tail(&log));
}

/// Returns a URL on 127.0.0.1 where nothing listens.
fn dead_server_url() -> String {
    let port = edgefn_integration::free_port().expect("a free port");
    format!("http://127.0.0.1:{port}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_down_cold_cache_answers_503() {
    let upstream = EchoUpstream::start().unwrap();
    let config = api_server_config(&dead_server_url(), by_label(), false);
    let envoy = start_envoy(&upstream, &config, None, "single").await;

    for protocol in [Protocol::Http1, Protocol::Http2] {
        let response = get(envoy.listen_addr(), protocol, "/cold").await;
        assert_eq!(
            response.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{protocol:?}"
        );
        assert!(
            response
                .body_text()
                .contains("no edge function revision is loaded"),
            "{protocol:?}: {}",
            response.body_text()
        );
        assert_eq!(response.header(REVISION_HEADER), None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_down_fail_open_passes_through() {
    let upstream = EchoUpstream::start().unwrap();
    let config = api_server_config(&dead_server_url(), by_label(), true);
    let envoy = start_envoy(&upstream, &config, None, "single").await;

    for protocol in [Protocol::Http1, Protocol::Http2] {
        let response = get(envoy.listen_addr(), protocol, "/open").await;
        assert_eq!(response.status, StatusCode::OK, "{protocol:?}");
        let echoed = response.echoed().expect("the upstream's echo");
        assert_eq!(echoed.path, "/open");
        assert_eq!(response.header("x-edgefn-plugin"), None, "{protocol:?}");
    }
}

#[tokio::test]
async fn invalid_api_server_config_rejected() {
    let upstream = EchoUpstream::start().unwrap();
    let config = json!({"apiServer": {
        "url": "http://127.0.0.1:1", "revision": "a", "labelSelector": "b"
    }})
    .to_string();
    let failed = Envoy::builder("edgefn.yaml")
        .var("UPSTREAM_PORT", upstream.port())
        .var("REVISION", config)
        .start_expecting_failure()
        .await
        .unwrap_or_else(|error| panic!("{error}"));

    let lines = lines_with(
        &failed.log,
        &[
            "refused the filter config",
            "exactly one of revision and labelSelector",
        ],
    );
    assert_eq!(lines.len(), 1, "{}", tail(&failed.log));
}

// === Memory ===

/// Prints the resident set size that each loaded revision adds: a new plugin config of the
/// library already open, and a second Go library. The numbers go to the test output; run with
/// `--nocapture` to see them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rss_per_loaded_revision() {
    const SAME_LIBRARY_REVISIONS: usize = 4;
    let plugins = Plugins::start();
    let upstream = EchoUpstream::start().unwrap();
    let server = ApiServer::start();
    let config = api_server_config(&server.url(), by_label(), false);
    let envoy = start_envoy(&upstream, &config, None, "multiple").await;
    let settle = |value: &'static str| {
        let envoy = &envoy;
        async move {
            wait_for_revision(envoy, value).await;
            let others = other_values(envoy, value, 50).await;
            assert_eq!(others, Vec::<String>::new());
            tokio::time::sleep(Duration::from_secs(1)).await;
            envoy.rss_bytes().expect("RSS")
        }
    };
    let empty = get(envoy.listen_addr(), Protocol::Http1, "/").await;
    assert_eq!(empty.status, StatusCode::SERVICE_UNAVAILABLE);
    let before = envoy.rss_bytes().expect("RSS");

    let values = ["v0", "v1", "v2", "v3", "v4"];
    let mut rss = Vec::new();
    for (index, value) in values.iter().enumerate().take(SAME_LIBRARY_REVISIONS + 1) {
        tokio::time::sleep(NEXT_SECOND).await;
        let name = format!("rss-{index}");
        server
            .create(&revision(&name, &plugins.url("addheader.so"), value))
            .await;
        rss.push(settle(value).await);
    }
    tokio::time::sleep(NEXT_SECOND).await;
    server
        .create(&revision(
            "rss-library",
            &plugins.url("addheader2.so"),
            "lib2",
        ))
        .await;
    let second_library = settle("lib2").await;

    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let first_library = rss[0].saturating_sub(before);
    let same_library = rss[SAME_LIBRARY_REVISIONS].saturating_sub(rss[0]);
    eprintln!(
        "RSS: before any revision {:.1} MiB; first revision (first Go library) +{:.1} MiB; {} \
         more revisions of the same library +{:.2} MiB in total; a second Go library +{:.1} MiB",
        mib(before),
        mib(first_library),
        SAME_LIBRARY_REVISIONS,
        mib(same_library),
        mib(second_library.saturating_sub(rss[SAME_LIBRARY_REVISIONS])),
    );
    let log = envoy.log_text();
    let switched = lines_with(&log, &["new streams run revision rss-library "]);
    assert_eq!(switched.len(), 1, "{}", tail(&log));
}
