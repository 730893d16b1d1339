//! edgefn in the real Envoy: a Go plugin fetched by URL runs on both protocols, and every
//! revision whose plugin cannot be fetched, verified or loaded makes Envoy reject the config
//! with an error that names the revision.
//!
//! Needs `libedgefn.so` (`cargo build --release -p edgefn-filter`) and the Go test plugins
//! (`scripts/setup.sh`); see `edgefn_integration::tools` for the locations.

use std::path::{Path, PathBuf};
use std::process::Command;

use edgefn_integration::tools;
use edgefn_integration::{
    log_tail, Client, EchoUpstream, Envoy, EnvoyBuilder, Fault, FileServer, Protocol, Request,
    Revision,
};
use hyper::StatusCode;
use sha2::{Digest, Sha256};

const PLUGIN_FILE: &str = "addheader.so";
/// Log lines shown when an assertion fails.
const TAIL: usize = 40;
/// The name the add-header Go plugin registers itself under.
const PLUGIN_NAME: &str = "add-header";
/// Makes the add-header plugin add `x-hello: world` to each request and
/// `x-edgefn: add-header` to each response.
const PLUGIN_CONFIG: &str = r#"{"requestHeader": {"name": "x-hello", "value": "world"},
 "responseHeader": {"name": "x-edgefn", "value": "add-header"}}"#;

fn addheader_path() -> PathBuf {
    tools::plugin_path(PLUGIN_FILE).unwrap_or_else(|error| panic!("{error}"))
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn edgefn_envoy(upstream: &EchoUpstream, revision: &Revision) -> EnvoyBuilder {
    Envoy::builder("edgefn.yaml")
        .var("UPSTREAM_PORT", upstream.port())
        .revision(revision)
        .concurrency(2)
}

async fn start(builder: EnvoyBuilder) -> Envoy {
    builder
        .start()
        .await
        .unwrap_or_else(|error| panic!("{error}"))
}

/// Words of which an error line contains at least one, in any case. They keep out debug lines
/// that only echo the config back.
const ERROR_WORDS: [&str; 4] = ["error", "fail", "reject", "invalid"];

/// Returns the log lines that report an error and name `revision_name`.
fn error_lines_naming<'a>(log: &'a str, revision_name: &str) -> Vec<&'a str> {
    log.lines()
        .filter(|line| line.contains(revision_name))
        .filter(|line| {
            let lower = line.to_lowercase();
            ERROR_WORDS.iter().any(|word| lower.contains(word))
        })
        .collect()
}

/// Checks that Envoy rejects the revision both in `--mode validate` and at start, with an error
/// line that names the revision and contains each of `details`.
async fn assert_rejected(upstream: &EchoUpstream, revision: &Revision, details: &[&str]) {
    let outcome = edgefn_envoy(upstream, revision)
        .validate()
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let output = &outcome.output;
    assert!(
        !outcome.status.success(),
        "validate accepted {}:\n{}",
        revision.name,
        tail(output)
    );
    assert_error_names_revision(output, revision, details);

    let failed = edgefn_envoy(upstream, revision)
        .start_expecting_failure()
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let log = &failed.log;
    assert!(
        !failed.status.success(),
        "Envoy exited 0 for {}:\n{}",
        revision.name,
        tail(log)
    );
    assert_error_names_revision(log, revision, details);
}

fn tail(log: &str) -> &str {
    log_tail(log, TAIL)
}

fn assert_error_names_revision(log: &str, revision: &Revision, details: &[&str]) {
    let lines = error_lines_naming(log, &revision.name);
    assert!(
        !lines.is_empty(),
        "no error line names {}:\n{}",
        revision.name,
        tail(log)
    );
    for detail in details {
        let found = lines.iter().any(|line| line.contains(detail));
        let name = &revision.name;
        assert!(
            found,
            "no error line naming {name} mentions {detail:?}:\n{}",
            tail(log)
        );
    }
}

#[tokio::test]
async fn add_header_over_both_protocols() {
    let plugin = addheader_path();
    let files = FileServer::start(plugin.parent().unwrap()).unwrap();
    let upstream = EchoUpstream::start().unwrap();
    let revision = Revision::new("add-header-v1", PLUGIN_NAME, &files.url(PLUGIN_FILE))
        .plugin_config(PLUGIN_CONFIG);
    let envoy = start(edgefn_envoy(&upstream, &revision)).await;

    // Several requests per protocol, so that both workers are likely to serve some.
    for protocol in [Protocol::Http1, Protocol::Http2] {
        let client = Client::new(envoy.listen_addr(), protocol);
        for index in 0..4 {
            let request = Request::post(&format!("/add-header/{index}"), "payload");
            let response = client.send(request).await.unwrap();

            let context = format!("{protocol:?} request {index}");
            assert_eq!(
                response.status,
                200,
                "{context}:\n{}",
                tail(&envoy.log_text())
            );
            assert_eq!(
                response.header_values("x-edgefn"),
                ["add-header"],
                "{context}"
            );
            let echoed = response.echoed().unwrap();
            assert_eq!(echoed.header_values("x-hello"), ["world"], "{context}");
            assert_eq!(echoed.body, "payload", "{context}");
        }
    }

    // One config load in one process with an empty cache fetches the plugin once.
    assert_eq!(files.request_count(&format!("/{PLUGIN_FILE}")), 1);
}

#[tokio::test]
async fn sha256_pin_that_matches_loads() {
    let plugin = addheader_path();
    let digest = sha256_hex(&std::fs::read(&plugin).unwrap());
    let files = FileServer::start(plugin.parent().unwrap()).unwrap();
    let upstream = EchoUpstream::start().unwrap();
    let revision = Revision::new("pinned-v1", PLUGIN_NAME, &files.url(PLUGIN_FILE))
        .plugin_config(PLUGIN_CONFIG)
        .sha256(&digest);
    let envoy = start(edgefn_envoy(&upstream, &revision)).await;

    let response = Client::http1(envoy.listen_addr())
        .send(Request::get("/"))
        .await
        .unwrap();

    assert_eq!(response.status, 200, "{}", tail(&envoy.log_text()));
    assert_eq!(
        response.echoed().unwrap().header_values("x-hello"),
        ["world"]
    );
}

#[tokio::test]
async fn plugin_url_404_rejected() {
    let plugin = addheader_path();
    let files = FileServer::start(plugin.parent().unwrap()).unwrap();
    files.set_fault(
        &format!("/{PLUGIN_FILE}"),
        Fault::Status(StatusCode::NOT_FOUND),
    );
    let upstream = EchoUpstream::start().unwrap();
    let revision = Revision::new("not-found-v1", PLUGIN_NAME, &files.url(PLUGIN_FILE))
        .plugin_config(PLUGIN_CONFIG);

    assert_rejected(&upstream, &revision, &["404", &revision.url]).await;

    assert!(
        files.request_count(&format!("/{PLUGIN_FILE}")) >= 2,
        "both runs fetch the URL"
    );
}

#[tokio::test]
async fn plugin_download_cut_short_rejected() {
    let plugin = addheader_path();
    let files = FileServer::start(plugin.parent().unwrap()).unwrap();
    files.set_fault(&format!("/{PLUGIN_FILE}"), Fault::CloseEarly);
    let upstream = EchoUpstream::start().unwrap();
    let revision = Revision::new("cut-short-v1", PLUGIN_NAME, &files.url(PLUGIN_FILE))
        .plugin_config(PLUGIN_CONFIG);

    assert_rejected(&upstream, &revision, &[&revision.url]).await;
}

#[tokio::test]
async fn truncated_plugin_rejected() {
    let contents = std::fs::read(addheader_path()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("truncated.so"),
        &contents[..contents.len() / 2],
    )
    .unwrap();
    let files = FileServer::start(dir.path()).unwrap();
    let upstream = EchoUpstream::start().unwrap();
    let revision = Revision::new("truncated-v1", PLUGIN_NAME, &files.url("truncated.so"))
        .plugin_config(PLUGIN_CONFIG);

    assert_rejected(&upstream, &revision, &[]).await;
}

#[tokio::test]
async fn empty_plugin_rejected() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty.so"), b"").unwrap();
    let files = FileServer::start(dir.path()).unwrap();
    let upstream = EchoUpstream::start().unwrap();
    let revision =
        Revision::new("empty-v1", PLUGIN_NAME, &files.url("empty.so")).plugin_config(PLUGIN_CONFIG);

    assert_rejected(&upstream, &revision, &[]).await;
}

/// Builds a C shared library that exports none of the Go plugin symbols.
fn build_c_library(dir: &Path) -> PathBuf {
    let source = dir.join("not_go.c");
    let library = dir.join("not-go.so");
    std::fs::write(&source, "int edgefn_test_answer(void) { return 42; }\n").unwrap();
    let output = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&library)
        .arg(&source)
        .output()
        .expect("running cc; install gcc");
    assert!(
        output.status.success(),
        "cc failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    library
}

#[tokio::test]
async fn c_library_rejected() {
    let dir = tempfile::tempdir().unwrap();
    build_c_library(dir.path());
    let files = FileServer::start(dir.path()).unwrap();
    let upstream = EchoUpstream::start().unwrap();
    let revision = Revision::new("not-go-v1", PLUGIN_NAME, &files.url("not-go.so"))
        .plugin_config(PLUGIN_CONFIG);

    assert_rejected(&upstream, &revision, &[]).await;
}

#[tokio::test]
async fn sha256_pin_mismatch_rejected() {
    let plugin = addheader_path();
    let actual = sha256_hex(&std::fs::read(&plugin).unwrap());
    let expected = sha256_hex(b"some other file");
    let files = FileServer::start(plugin.parent().unwrap()).unwrap();
    let upstream = EchoUpstream::start().unwrap();
    let revision = Revision::new("wrong-pin-v1", PLUGIN_NAME, &files.url(PLUGIN_FILE))
        .plugin_config(PLUGIN_CONFIG)
        .sha256(&expected);

    // The error shows both digests, so an operator can tell a stale pin from a changed file.
    assert_rejected(&upstream, &revision, &[&expected, &actual, &revision.url]).await;
}
