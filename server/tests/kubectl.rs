//! The real kubectl against `edgefn-server` on 127.0.0.1: apply, get, patch, watch and delete.
//!
//! kubectl is `$EDGEFN_KUBECTL`, or `kubectl` on PATH; the test fails when neither exists.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::process::Server;

const PASSWORD: &str = "kubectl-secret-42";

/// Time one kubectl command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

fn find_kubectl() -> PathBuf {
    if let Some(path) = std::env::var_os("EDGEFN_KUBECTL") {
        return PathBuf::from(path);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|folder| folder.join("kubectl"))
            .find(|candidate| candidate.is_file())
    });
    on_path.unwrap_or_else(|| {
        panic!(
            "kubectl is missing: install it (Debian package kubernetes-client, or kubectl) or set \
             EDGEFN_KUBECTL to its path"
        )
    })
}

struct Kubectl {
    binary: PathBuf,
    home: tempfile::TempDir,
}

impl Kubectl {
    /// Writes a kubeconfig for the server: plain HTTP, a dummy token.
    fn new(server_url: &str) -> Kubectl {
        let home = tempfile::tempdir().expect("temporary folder");
        let config = kubeconfig(server_url);
        std::fs::write(home.path().join("config"), config).expect("write kubeconfig");
        Kubectl {
            binary: find_kubectl(),
            home,
        }
    }

    fn command(&self, arguments: &[&str]) -> Command {
        let home = self.home.path();
        let mut command = Command::new(&self.binary);
        command
            .arg("--kubeconfig")
            .arg(home.join("config"))
            .arg("--cache-dir")
            .arg(home.join("cache"))
            .args(arguments)
            .env("HOME", home)
            .env_remove("KUBECONFIG")
            .current_dir(home)
            .stdin(Stdio::null());
        command
    }

    /// Runs kubectl to completion, killing it after [`COMMAND_TIMEOUT`].
    fn run(&self, arguments: &[&str]) -> Output {
        let mut child = self
            .command(arguments)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("running {} failed: {error}", self.binary.display()));
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        while child.try_wait().expect("poll kubectl").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("kubectl {arguments:?} did not finish within {COMMAND_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().expect("kubectl output")
    }

    /// Runs kubectl and returns its stdout, failing the test when it fails.
    fn ok(&self, arguments: &[&str]) -> String {
        let output = self.run(arguments);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "kubectl {arguments:?} failed: {}\n{stdout}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    fn write(&self, name: &str, text: &str) -> String {
        let path = self.home.path().join(name);
        std::fs::write(&path, text).expect("write manifest");
        path_text(&path)
    }
}

fn path_text(path: &Path) -> String {
    path.to_str().expect("UTF-8 path").to_owned()
}

fn manifest(name: &str, label: &str) -> String {
    [
        "apiVersion: extensions.apoxy.dev/v1alpha2",
        "kind: EdgeFunctionRevision",
        "metadata:",
        &format!("  name: {name}"),
        "  labels:",
        &format!("    app: {label}"),
        "spec:",
        "  mode: Filter",
        "  code:",
        "    goPluginSource:",
        "      oci:",
        "        repo: registry.example.com/team/plugin",
        "        credentials:",
        "          username: robot",
        &format!("          password: {PASSWORD}"),
        "",
    ]
    .join("\n")
}

fn kubeconfig(server_url: &str) -> String {
    [
        "apiVersion: v1",
        "kind: Config",
        "clusters:",
        "- name: edgefn",
        "  cluster:",
        &format!("    server: {server_url}"),
        "    insecure-skip-tls-verify: true",
        "users:",
        "- name: edgefn",
        "  user:",
        "    token: dummy-token",
        "contexts:",
        "- name: edgefn",
        "  context:",
        "    cluster: edgefn",
        "    user: edgefn",
        "current-context: edgefn",
        "",
    ]
    .join("\n")
}

/// A `kubectl get --watch` running in the background, killed when dropped.
struct Watch {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Watch {
    fn next_line(&self) -> Option<String> {
        self.lines.recv_timeout(Duration::from_secs(30)).ok()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_watch(kubectl: &Kubectl) -> Watch {
    let mut child = kubectl
        .command(&["get", "edgefunctionrevisions", "--watch", "-o", "name"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start kubectl get --watch");
    let stdout = child.stdout.take().expect("piped stdout");
    let (sender, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                return;
            }
        }
    });
    Watch { child, lines }
}

#[test]
fn kubectl_manages_revisions() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let data = path_text(&dir.path().join("revisions.jsonl"));
    let server = Server::start(&["--data", &data, "--ingest", "none"]);
    let kubectl = Kubectl::new(&server.url());
    let file = kubectl.write("revision.yaml", &manifest("demo", "first"));

    // Discovery lists the resource without errors.
    let resources = kubectl.ok(&["api-resources"]);
    assert!(resources.contains("edgefunctionrevisions"), "{resources}");

    // apply creates, then configures.
    let applied = kubectl.ok(&["apply", "-f", &file]);
    assert!(
        applied.contains("edgefunctionrevision.extensions.apoxy.dev/demo created"),
        "{applied}"
    );
    let file = kubectl.write("revision.yaml", &manifest("demo", "second"));
    let applied = kubectl.ok(&["apply", "-f", &file]);
    assert!(applied.contains("demo configured"), "{applied}");

    // get, as a table and as YAML.
    let table = kubectl.ok(&["get", "edgefunctionrevisions"]);
    assert!(
        table.lines().any(|line| line.starts_with("demo ")),
        "{table}"
    );
    let yaml = kubectl.ok(&["get", "edgefunctionrevision", "demo", "-o", "yaml"]);
    assert!(yaml.contains("mode: filter"), "{yaml}");
    assert!(yaml.contains("tag: latest"), "{yaml}");
    assert!(yaml.contains("app: second"), "{yaml}");
    assert!(
        yaml.contains("server.edgefn.dev/credentials: stored"),
        "{yaml}"
    );
    assert!(!yaml.contains(PASSWORD), "the password is returned: {yaml}");

    // patch, as a merge patch and as a JSON patch.
    let merge = r#"{"metadata":{"labels":{"stage":"merge"}}}"#;
    kubectl.ok(&[
        "patch",
        "edgefunctionrevision",
        "demo",
        "--type",
        "merge",
        "-p",
        merge,
    ]);
    let stage = kubectl.ok(&[
        "get",
        "edgefunctionrevision",
        "demo",
        "-o",
        "jsonpath={.metadata.labels.stage}",
    ]);
    assert_eq!(stage, "merge");
    let json = r#"[{"op":"add","path":"/spec/env","value":[{"name":"A","value":"1"}]}]"#;
    kubectl.ok(&[
        "patch",
        "edgefunctionrevision",
        "demo",
        "--type",
        "json",
        "-p",
        json,
    ]);
    let env = kubectl.ok(&[
        "get",
        "edgefunctionrevision",
        "demo",
        "-o",
        "jsonpath={.spec.env[0].name}",
    ]);
    assert_eq!(env, "A");
    let status = r#"{"status":{"ref":"artifact-1"}}"#;
    kubectl.ok(&[
        "patch",
        "edgefunctionrevision",
        "demo",
        "--subresource",
        "status",
        "--type",
        "merge",
        "-p",
        status,
    ]);
    let reference = kubectl.ok(&[
        "get",
        "edgefunctionrevision",
        "demo",
        "-o",
        "jsonpath={.status.ref}",
    ]);
    assert_eq!(reference, "artifact-1");

    // get --watch prints the existing object, then a new one.
    let watch = start_watch(&kubectl);
    let first = watch.next_line().expect("watch prints the existing object");
    assert_eq!(first, "edgefunctionrevision.extensions.apoxy.dev/demo");
    let other = kubectl.write("other.yaml", &manifest("other", "watch"));
    kubectl.ok(&["apply", "-f", &other]);
    let seen = (0..5)
        .map_while(|_| watch.next_line())
        .find(|line| line.ends_with("/other"));
    assert_eq!(
        seen.as_deref(),
        Some("edgefunctionrevision.extensions.apoxy.dev/other")
    );
    drop(watch);

    // delete, after which get reports NotFound.
    let deleted = kubectl.ok(&["delete", "edgefunctionrevision", "demo"]);
    assert!(deleted.contains("\"demo\" deleted"), "{deleted}");
    let output = kubectl.run(&["get", "edgefunctionrevision", "demo"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("NotFound"), "{stderr}");
}

#[test]
fn kubectl_shows_validation_errors() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let data = path_text(&dir.path().join("revisions.jsonl"));
    let server = Server::start(&["--data", &data, "--ingest", "none"]);
    let kubectl = Kubectl::new(&server.url());
    let broken = manifest("broken", "x").replace(
        "  mode: Filter\n",
        "  mode: filter\n  runtime:\n    port: 8080\n",
    );
    let file = kubectl.write("broken.yaml", &broken);

    let output = kubectl.run(&["apply", "-f", &file]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("\"broken\" is invalid"), "{stderr}");
    assert!(stderr.contains("spec.runtime.port"), "{stderr}");
}
