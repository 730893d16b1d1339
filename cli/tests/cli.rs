//! `edgefn push` and `edgefn pull` against the real CNCF distribution registry (Debian's
//! `docker-registry`) on 127.0.0.1, with htpasswd basic auth.

use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const EDGEFN: &str = env!("CARGO_BIN_EXE_edgefn");
const USERNAME: &str = "pusher";
const PASSWORD: &str = "cli-Pa55word";
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(label: &str) -> Self {
        let path = std::env::temp_dir().join(format!("edgefn-cli-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create the scratch directory");
        Self(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn require(path: &str, package: &str) {
    assert!(
        Path::new(path).is_file(),
        "{path} not found; install the Debian package `{package}` (scripts/setup.sh does)"
    );
}

/// A registry with basic auth, killed on drop.
struct Registry {
    child: Child,
    host: String,
}

impl Registry {
    fn start(dir: &Path) -> Self {
        require("/usr/bin/docker-registry", "docker-registry");
        require("/usr/bin/htpasswd", "apache2-utils");
        let htpasswd = Command::new("/usr/bin/htpasswd")
            .args(["-Bbn", USERNAME, PASSWORD])
            .output()
            .expect("run htpasswd");
        assert!(htpasswd.status.success(), "htpasswd failed: {htpasswd:?}");
        std::fs::write(dir.join("htpasswd"), &htpasswd.stdout).expect("write htpasswd");

        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("pick a free port")
            .port();
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: edgefn-cli-test\n\
             auth:\n  htpasswd:\n    realm: edgefn-cli\n    path: {}\n",
            dir.join("storage").display(),
            dir.join("htpasswd").display()
        );
        std::fs::write(dir.join("config.yml"), config).expect("write the registry config");
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");

        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < START_TIMEOUT,
                "docker-registry did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            host: format!("127.0.0.1:{port}"),
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Returns a 64-bit little-endian ELF shared object header for x86-64 (machine 62) or AArch64
/// (machine 183), followed by `label`.
fn fake_library(machine: u16, label: &str) -> Vec<u8> {
    let mut bytes = vec![0_u8; 64];
    bytes[..4].copy_from_slice(b"\x7fELF");
    bytes[4] = 2;
    bytes[5] = 1;
    bytes[6] = 1;
    bytes[16..18].copy_from_slice(&3_u16.to_le_bytes());
    bytes[18..20].copy_from_slice(&machine.to_le_bytes());
    bytes.extend_from_slice(label.as_bytes());
    bytes
}

fn host_machine() -> u16 {
    if cfg!(target_arch = "aarch64") {
        183
    } else {
        62
    }
}

fn run(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(EDGEFN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start edgefn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait for edgefn")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn push_then_pull_round_trip() {
    let scratch = Scratch::new("roundtrip");
    let registry = Registry::start(&scratch.0);
    let library = fake_library(host_machine(), "cli");
    let file = scratch.0.join("plugin.so");
    std::fs::write(&file, &library).expect("write the library");
    let reference = format!("{}/plugins/cli:v1", registry.host);
    let cache = scratch.0.join("cache");
    let credentials = ["--insecure", "--username", USERNAME, "--password-stdin"];

    let mut push_args = vec!["push", &reference, file.to_str().expect("UTF-8 path")];
    push_args.extend(credentials);
    let pushed = run(&push_args, &format!("{PASSWORD}\n"));
    let mut pull_args = vec![
        "pull",
        &reference,
        "--cache-dir",
        cache.to_str().expect("UTF-8"),
    ];
    pull_args.extend(credentials);
    let pulled = run(&pull_args, PASSWORD);

    assert!(
        pushed.status.success(),
        "push failed: {}",
        text(&pushed.stderr)
    );
    let digest = text(&pushed.stdout);
    assert!(
        digest.trim().starts_with("sha256:"),
        "push printed {digest:?}"
    );
    assert!(
        pushed.stderr.is_empty(),
        "push wrote to a non-terminal: {}",
        text(&pushed.stderr)
    );
    assert!(
        pulled.status.success(),
        "pull failed: {}",
        text(&pulled.stderr)
    );
    let pulled_line = text(&pulled.stdout);
    let path = pulled_line
        .trim()
        .split('\t')
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    assert_eq!(std::fs::read(&path).ok(), Some(library));
}

#[test]
fn push_without_credentials_is_unauthorized() {
    let scratch = Scratch::new("anonymous");
    let registry = Registry::start(&scratch.0);
    let file = scratch.0.join("plugin.so");
    std::fs::write(&file, fake_library(host_machine(), "anon")).expect("write the library");
    let reference = format!("{}/plugins/anon:v1", registry.host);

    let output = run(
        &[
            "push",
            "--insecure",
            &reference,
            file.to_str().expect("UTF-8"),
        ],
        "",
    );

    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("unauthorized"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn push_rejects_non_elf_file() {
    let scratch = Scratch::new("not-elf");
    let file = scratch.0.join("plugin.so");
    std::fs::write(&file, b"#!/bin/sh\necho not a library\n").expect("write the file");

    let output = run(
        &[
            "push",
            "127.0.0.1:1/plugins/x:v1",
            file.to_str().expect("UTF-8"),
        ],
        "",
    );

    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("not an ELF file"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn push_needs_a_file() {
    let output = run(&["push", "127.0.0.1:1/plugins/x:v1"], "");
    assert_eq!(output.status.code(), Some(2));
}
