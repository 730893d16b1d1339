//! Go plugin libraries in one Envoy: the policy for a second distinct library, one library
//! shared by two filters, and the host symbols a plugin needs under Envoy's default symbol
//! scope and with `load_globally: true`.
//!
//! Needs `libedgefn.so` (`cargo build --release -p edgefn-filter`), the Go test plugins
//! (`scripts/setup.sh`) and `nm` from binutils.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use edgefn_integration::{tools, Client, EchoUpstream, Envoy, FileServer, Protocol, Request};
use edgefn_integration::{EnvoyBuilder, Revision};
use support::{assert_admin_ready, crash_lines, lines_with, plugin_path, sha256_hex, tail};

const PLUGIN_NAME: &str = "add-header";
/// The first filter's add-header config: `x-from-first: 1` on requests, `x-first: one` on
/// responses.
const FIRST_CONFIG: &str = r#"{"requestHeader": {"name": "x-from-first", "value": "1"},
 "responseHeader": {"name": "x-first", "value": "one"}}"#;
/// The second filter's add-header config: `x-from-second: 2` and `x-second: two`.
const SECOND_CONFIG: &str = r#"{"requestHeader": {"name": "x-from-second", "value": "2"},
 "responseHeader": {"name": "x-second", "value": "two"}}"#;

/// What the loader logs each time it opens a Go library with `dlopen`.
const OPENED_LIBRARY: &str = "opened Go plugin library";
/// What edgefn logs for each filter config whose plugin is ready.
const PLUGIN_LOADED: &str = "Go plugin loaded";

fn two_filter_envoy(upstream: &EchoUpstream, first: &Revision, second: &Revision) -> EnvoyBuilder {
    Envoy::builder("edgefn-two-filters.yaml")
        .var("UPSTREAM_PORT", upstream.port())
        .var("FIRST_REVISION", first.to_template_value())
        .var("SECOND_REVISION", second.to_template_value())
        .concurrency(2)
}

/// Serves `addheader.so` and `addheader2.so` from the plugins directory.
fn plugins_server() -> FileServer {
    let plugin = plugin_path("addheader.so");
    FileServer::start(plugin.parent().unwrap()).unwrap()
}

fn revisions_for(files: &FileServer, first_file: &str, second_file: &str) -> [Revision; 2] {
    [
        Revision::new("first-v1", PLUGIN_NAME, &files.url(first_file)).plugin_config(FIRST_CONFIG),
        Revision::new("second-v1", PLUGIN_NAME, &files.url(second_file))
            .plugin_config(SECOND_CONFIG),
    ]
}

/// Sends one request through both filters and returns what was wrong with the response, if
/// anything. `library` is the `x-edgefn-library` value of the first filter's library, which
/// sets it last because responses pass the filters in reverse order.
async fn check_both_filters(
    addr: SocketAddr,
    protocol: Protocol,
    path: &str,
    library: &str,
) -> Option<String> {
    let response = match Client::new(addr, protocol).send(Request::get(path)).await {
        Ok(response) => response,
        Err(error) => return Some(format!("{path}: {error}")),
    };
    let echoed = response.echoed().ok();
    let request_header = |name: &str| {
        echoed
            .as_ref()
            .and_then(|echoed| echoed.header(name).map(str::to_owned))
    };
    let observed = (
        response.status.as_u16(),
        response.header("x-first"),
        response.header("x-second"),
        response.header("x-edgefn-library"),
        request_header("x-from-first"),
        request_header("x-from-second"),
    );
    let expected = (
        200,
        Some("one"),
        Some("two"),
        Some(library),
        Some("1".to_owned()),
        Some("2".to_owned()),
    );
    (observed != expected).then(|| format!("{protocol:?} {path}: {observed:?}"))
}

// === Two Go libraries ===

#[tokio::test]
async fn second_distinct_library_rejected_by_default() {
    let files = plugins_server();
    let upstream = EchoUpstream::start().unwrap();
    let [first, second] = revisions_for(&files, "addheader.so", "addheader2.so");
    let first_digest = sha256_hex(&std::fs::read(plugin_path("addheader.so")).unwrap());
    let second_digest = sha256_hex(&std::fs::read(plugin_path("addheader2.so")).unwrap());

    let failed = two_filter_envoy(&upstream, &first, &second)
        .start_expecting_failure()
        .await
        .unwrap_or_else(|error| panic!("{error}"));

    let log = &failed.log;
    assert!(!failed.status.success(), "{}", tail(log));
    let error_lines = lines_with(
        log,
        &["refused the filter config", &second.name, &second.url],
    );
    assert!(
        !error_lines.is_empty(),
        "no rejection names {}:\n{}",
        second.name,
        tail(log)
    );
    for detail in [
        first_digest.as_str(),
        second_digest.as_str(),
        "EDGEFN_GO_LIBRARIES=multiple",
    ] {
        let found = error_lines.iter().any(|line| line.contains(detail));
        assert!(
            found,
            "the rejection does not mention {detail}: {error_lines:#?}"
        );
    }
    assert_eq!(
        lines_with(log, &[OPENED_LIBRARY]).len(),
        1,
        "Go libraries opened"
    );
}

#[tokio::test]
async fn same_bytes_under_two_urls_load_once() {
    let plugin = std::fs::read(plugin_path("addheader.so")).unwrap();
    let digest = sha256_hex(&plugin);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("one.so"), &plugin).unwrap();
    std::fs::write(dir.path().join("two.so"), &plugin).unwrap();
    let files = FileServer::start(dir.path()).unwrap();
    let upstream = EchoUpstream::start().unwrap();
    let [first, second] = revisions_for(&files, "one.so", "two.so");

    let envoy = two_filter_envoy(&upstream, &first, &second)
        .start()
        .await
        .unwrap_or_else(|error| panic!("{error}"));

    let log = envoy.log_text();
    let opened = lines_with(&log, &[OPENED_LIBRARY, &digest]);
    assert_eq!(
        opened.len(),
        1,
        "{:#?}",
        lines_with(&log, &[OPENED_LIBRARY])
    );
    for revision in [&first, &second] {
        let loaded = lines_with(&log, &[PLUGIN_LOADED, &revision.name, &digest]);
        assert_eq!(loaded.len(), 1, "{} loaded:\n{}", revision.name, tail(&log));
    }
    for protocol in [Protocol::Http1, Protocol::Http2] {
        let wrong =
            check_both_filters(envoy.listen_addr(), protocol, "/same-bytes", "addheader").await;
        assert_eq!(wrong, None);
    }
    assert_eq!(files.request_count("/one.so"), 1, "fetches of one.so");
    assert_eq!(files.request_count("/two.so"), 1, "fetches of two.so");
}

/// Requests of the two-library stress run, sent by `STRESS_TASKS` tasks at once.
const STRESS_REQUESTS: usize = 3000;
const STRESS_TASKS: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_libraries_allowed_under_stress() {
    let files = plugins_server();
    let upstream = EchoUpstream::start().unwrap();
    // The first filter runs addheader2.so, so x-edgefn-library comes from the library opened
    // first, and the second filter runs addheader.so.
    let [first, second] = revisions_for(&files, "addheader2.so", "addheader.so");

    let envoy = two_filter_envoy(&upstream, &first, &second)
        .env("EDGEFN_GO_LIBRARIES", "multiple")
        .start()
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let log = envoy.log_text();
    let opened = lines_with(&log, &[OPENED_LIBRARY]);
    assert_eq!(opened.len(), 2, "{opened:#?}");

    let addr = envoy.listen_addr();
    let mut tasks = Vec::new();
    for task in 0..STRESS_TASKS {
        tasks.push(tokio::spawn(async move {
            let mut wrong = Vec::new();
            for number in (task..STRESS_REQUESTS).step_by(STRESS_TASKS) {
                let protocol = if number % 2 == 0 {
                    Protocol::Http1
                } else {
                    Protocol::Http2
                };
                let path = format!("/stress/{number}");
                wrong.extend(check_both_filters(addr, protocol, &path, "addheader2").await);
            }
            wrong
        }));
    }
    let mut wrong = Vec::new();
    for task in tasks {
        wrong.extend(task.await.unwrap());
    }

    let first_wrong: Vec<&String> = wrong.iter().take(10).collect();
    assert_eq!(
        wrong.len(),
        0,
        "wrong responses, the first ones: {first_wrong:#?}\n{}",
        tail(&envoy.log_text())
    );
    assert_admin_ready(&envoy).await;
    let crashes = crash_lines(&envoy.log_text()).len();
    assert_eq!(crashes, 0, "crash lines in the log");
}

// === Host symbols ===

/// Reads the names in `PROVIDED_CALLBACKS` from `filter/src/gohost/mod.rs`, and checks that
/// their number matches the array's declared length.
fn provided_callbacks() -> Vec<String> {
    let path = tools::repo_root().join("filter/src/gohost/mod.rs");
    let source = std::fs::read_to_string(&path).unwrap();
    let declaration = "pub const PROVIDED_CALLBACKS: [&str; ";
    let start = source
        .find(declaration)
        .unwrap_or_else(|| panic!("{} has no `{declaration}`", path.display()));
    let rest = &source[start + declaration.len()..];
    let (length, rest) = rest.split_once(']').unwrap();
    let length: usize = length.trim().parse().unwrap();
    let (list, _) = rest.split_once("];").unwrap();

    let names: Vec<String> = list
        .split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    assert_eq!(names.len(), length, "names in PROVIDED_CALLBACKS");
    names
}

/// Returns the dynamic symbols of `library` that start with `envoyGo`, sorted; `filter` is
/// `--undefined-only` or `--defined-only`.
fn envoy_go_symbols(library: &Path, filter: &str) -> Vec<String> {
    let output = Command::new("nm")
        .args(["-D", filter])
        .arg(library)
        .output()
        .expect("running nm; install binutils");
    assert!(
        output.status.success(),
        "nm -D {filter} {}: {}",
        library.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let mut names: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().last())
        .filter(|name| name.starts_with("envoyGo"))
        .map(str::to_owned)
        .collect();
    names.sort();
    names
}

#[test]
fn plugins_import_exactly_provided_callbacks() {
    let mut provided = provided_callbacks();
    provided.sort();

    for file in ["addheader.so", "addheader2.so", "testplugins.so"] {
        let imported = envoy_go_symbols(&plugin_path(file), "--undefined-only");
        assert_eq!(imported, provided, "host callbacks {file} imports");
    }
}

#[test]
fn edgefn_exports_no_go_callbacks() {
    // The callbacks live in a separate library that edgefn opens with RTLD_GLOBAL. If
    // libedgefn.so exported them too, `load_globally: true` would put a second definition in
    // the global scope, and edgefn would take Envoy for a build with its own golang filter.
    let module_dir = tools::module_dir().unwrap_or_else(|error| panic!("{error}"));
    let exported = envoy_go_symbols(&module_dir.join(tools::MODULE_FILE_NAME), "--defined-only");
    assert_eq!(exported, Vec::<String>::new());
}

/// Starts `template` with add-header and checks that the plugin changed a request and its
/// response.
async fn assert_plugin_works(template: &str) {
    let files = plugins_server();
    let upstream = EchoUpstream::start().unwrap();
    let revision = Revision::new("symbols-v1", PLUGIN_NAME, &files.url("addheader.so"))
        .plugin_config(FIRST_CONFIG);
    let envoy = Envoy::builder(template)
        .var("UPSTREAM_PORT", upstream.port())
        .revision(&revision)
        .start()
        .await
        .unwrap_or_else(|error| panic!("{template}: {error}"));

    let response = Client::http1(envoy.listen_addr())
        .send(Request::get("/symbols"))
        .await
        .unwrap();

    assert_eq!(
        response.status,
        200,
        "{template}:\n{}",
        tail(&envoy.log_text())
    );
    assert_eq!(response.header_values("x-first"), ["one"], "{template}");
    let echoed = response.echoed().unwrap();
    assert_eq!(echoed.header_values("x-from-first"), ["1"], "{template}");
}

#[tokio::test]
async fn plugin_works_in_default_symbol_scope() {
    assert_plugin_works("edgefn.yaml").await;
}

#[tokio::test]
async fn plugin_works_with_load_globally() {
    assert_plugin_works("edgefn-load-globally.yaml").await;
}
