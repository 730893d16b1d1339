//! edgefn in the real Envoy with a plugin from an OCI registry. `edgefn push` publishes
//! `addheader.so` to the CNCF distribution registry (Debian's `docker-registry`) on 127.0.0.1
//! with basic auth, and a revision names it by tag. The plugin's response headers prove that it
//! ran. Envoy then starts again with the registry stopped and loads the plugin from the cache.
//! Finally `addheader2.so` is pushed under the same tag, and the next load uses the new digest.
//!
//! Needs `libedgefn.so` (`cargo build --release -p edgefn-filter`), the Go test plugins
//! (`scripts/setup.sh`), the `edgefn` binary (`cargo build -p edgefn-cli`, or any
//! `cargo test --workspace`), and the Debian packages `docker-registry` and `apache2-utils`.

use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use edgefn_integration::tools;
use edgefn_integration::{log_tail, Client, EchoUpstream, Envoy, Request};
use serde_json::json;

const USERNAME: &str = "edgefn";
const PASSWORD: &str = "e2e-Pa55word";
/// `PASSWORD` in standard base64, as `credentials.passwordData` carries it.
const PASSWORD_DATA: &str = "ZTJlLVBhNTV3b3Jk";
const REPOSITORY: &str = "plugins/addheader";
const TAG: &str = "v1";
const PLUGIN_NAME: &str = "add-header";
const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
const HTPASSWD_BIN: &str = "/usr/bin/htpasswd";
/// Overrides the `edgefn` binary (default `<target dir>/debug/edgefn`).
const START_TIMEOUT: Duration = Duration::from_secs(20);
const TAIL: usize = 40;

fn require(path: &str, package: &str) {
    assert!(
        Path::new(path).is_file(),
        "{path} not found; install the Debian package `{package}` (scripts/setup.sh does)"
    );
}

/// The registry process with its storage; it can be stopped and started on the same port.
struct Registry {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl Registry {
    fn start() -> Self {
        require(REGISTRY_BIN, "docker-registry");
        require(HTPASSWD_BIN, "apache2-utils");
        let dir = tempfile::Builder::new()
            .prefix("edgefn-registry-")
            .tempdir()
            .expect("create the registry directory");

        let htpasswd = Command::new(HTPASSWD_BIN)
            .args(["-Bbn", USERNAME, PASSWORD])
            .output()
            .expect("run htpasswd");
        assert!(htpasswd.status.success(), "htpasswd failed: {htpasswd:?}");
        std::fs::write(dir.path().join("htpasswd"), &htpasswd.stdout).expect("write htpasswd");

        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("pick a free port")
            .port();
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: edgefn-e2e\n\
             auth:\n  htpasswd:\n    realm: edgefn-e2e\n    path: {}\n",
            dir.path().join("storage").display(),
            dir.path().join("htpasswd").display()
        );
        std::fs::write(dir.path().join("config.yml"), config).expect("write the config");

        let mut registry = Self {
            dir,
            port,
            child: None,
        };
        registry.resume();
        registry
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn resume(&mut self) {
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        self.child = Some(child);
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < START_TIMEOUT,
                "docker-registry did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

fn cli_binary() -> PathBuf {
    tools::cli_binary().unwrap_or_else(|error| panic!("{error}"))
}

/// Pushes `file` with `edgefn push` and returns the digest it printed.
fn push(registry: &Registry, file: &Path) -> String {
    let reference = format!("{}/{REPOSITORY}:{TAG}", registry.host());
    let mut child = Command::new(cli_binary())
        .args([
            "push",
            "--insecure",
            "--username",
            USERNAME,
            "--password-stdin",
        ])
        .arg(&reference)
        .arg(file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start edgefn push");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(PASSWORD.as_bytes())
        .expect("write the password");
    drop(stdin);
    let output = child.wait_with_output().expect("wait for edgefn push");
    assert!(
        output.status.success(),
        "edgefn push failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Returns the revision that names the plugin by tag, with the password as `passwordData`, as Apoxy
/// stores it.
fn revision(registry: &Registry) -> String {
    let object = json!({
        "apiVersion": "extensions.apoxy.dev/v1alpha2",
        "kind": "EdgeFunctionRevision",
        "metadata": { "name": "oci-add-header-v1" },
        "spec": {
            "mode": "filter",
            "code": {
                "metadata": { "name": PLUGIN_NAME },
                "goPluginSource": {
                    "oci": {
                        "repo": format!("{}/{REPOSITORY}", registry.host()),
                        "tag": TAG,
                        "credentials": { "username": USERNAME, "passwordData": PASSWORD_DATA },
                    },
                },
            },
        },
    });
    serde_json::to_string_pretty(&object).expect("serialize the revision")
}

/// Starts Envoy with the revision and a cache shared across runs, sends one request, and
/// returns the `x-edgefn-plugin` and `x-edgefn-library` response headers and Envoy's log.
async fn serve_once(
    registry: &Registry,
    upstream: &EchoUpstream,
    cache: &Path,
) -> (Vec<String>, Vec<String>, String) {
    let envoy = Envoy::builder("edgefn.yaml")
        .var("UPSTREAM_PORT", upstream.port())
        .var("REVISION", revision(registry))
        .env(
            "EDGEFN_CACHE_DIR",
            cache.to_str().expect("UTF-8 cache path"),
        )
        .env("EDGEFN_INSECURE_REGISTRIES", &registry.host())
        .start()
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let response = Client::http1(envoy.listen_addr())
        .send(Request::get("/oci"))
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let log = envoy.log_text();
    assert_eq!(response.status, 200, "{}", log_tail(&log, TAIL));
    let plugin = response.header_values("x-edgefn-plugin");
    let library = response.header_values("x-edgefn-library");
    (to_strings(&plugin), to_strings(&library), log)
}

fn to_strings(values: &[impl AsRef<str>]) -> Vec<String> {
    values
        .iter()
        .map(|value| value.as_ref().to_owned())
        .collect()
}

#[tokio::test]
async fn oci_plugin_loads_caches_and_follows_tag() {
    let addheader = tools::plugin_path("addheader.so").unwrap_or_else(|error| panic!("{error}"));
    let addheader2 = tools::plugin_path("addheader2.so").unwrap_or_else(|error| panic!("{error}"));
    let mut registry = Registry::start();
    let upstream = EchoUpstream::start().unwrap_or_else(|error| panic!("{error}"));
    let cache = tempfile::Builder::new()
        .prefix("edgefn-oci-cache-")
        .tempdir()
        .expect("create the cache directory");

    // 1. Pushed with the CLI and pulled by Envoy through edgefn.
    let first_digest = push(&registry, &addheader);
    let (plugin, library, _) = serve_once(&registry, &upstream, cache.path()).await;
    assert_eq!(plugin, ["add-header"]);
    assert_eq!(library, ["addheader"]);

    // 2. Registry down: a restarted Envoy loads the plugin from the cache.
    registry.stop();
    let (plugin, library, log) = serve_once(&registry, &upstream, cache.path()).await;
    assert_eq!(plugin, ["add-header"], "{}", log_tail(&log, TAIL));
    assert_eq!(library, ["addheader"]);
    assert!(
        log.contains("registry unavailable"),
        "{}",
        log_tail(&log, TAIL)
    );

    // 3. A new push under the same tag is used on the next load.
    registry.resume();
    let second_digest = push(&registry, &addheader2);
    let (plugin, library, log) = serve_once(&registry, &upstream, cache.path()).await;
    assert_ne!(second_digest, first_digest);
    assert_eq!(plugin, ["add-header"], "{}", log_tail(&log, TAIL));
    assert_eq!(library, ["addheader2"], "{}", log_tail(&log, TAIL));
}
