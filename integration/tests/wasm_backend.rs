//! Backend wasm functions in the real Envoy: the CGI contract, env, the timeout, traps beside
//! a Go plugin in the same process, fetch, kv, disabled capabilities, and modules that must be
//! rejected at load.
//!
//! Needs `libedgefn.so`, the Go test plugins and the wasm test modules (`scripts/setup.sh`);
//! see `edgefn_integration::tools` for the locations.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use edgefn_integration::tools;
use edgefn_integration::wasm_module as wasm;
use edgefn_integration::{
    free_port, log_tail, Client, EchoUpstream, Envoy, EnvoyBuilder, Protocol, Request, Revision,
    WasmRevision,
};

const PROTOCOLS: [Protocol; 2] = [Protocol::Http1, Protocol::Http2];
const TAIL: usize = 40;

fn builder(upstream: &EchoUpstream, revision: &WasmRevision) -> EnvoyBuilder {
    Envoy::builder("edgefn.yaml")
        .var("UPSTREAM_PORT", upstream.port())
        .var("REVISION", revision.to_template_value())
        .concurrency(2)
}

async fn start(upstream: &EchoUpstream, revision: &WasmRevision) -> Envoy {
    builder(upstream, revision)
        .start()
        .await
        .unwrap_or_else(|error| panic!("{error}"))
}

fn tail(envoy: &Envoy) -> String {
    log_tail(&envoy.log_text(), TAIL).to_owned()
}

#[tokio::test]
async fn echo_function_answers_both_protocols() {
    let upstream = EchoUpstream::start().unwrap();
    let revision =
        WasmRevision::new("wasm-echo", "backend", wasm("echo.wasm")).env("GREETING", "hi there");
    let envoy = start(&upstream, &revision).await;

    for protocol in PROTOCOLS {
        let client = Client::new(envoy.listen_addr(), protocol);
        let response = client
            .send(Request::get("/hello/world?a=1&b=2").header("x-echo", "ping"))
            .await
            .unwrap();
        assert_eq!(response.status, 200, "{protocol:?}:\n{}", tail(&envoy));
        assert_eq!(response.header("x-function"), Some("echo"), "{protocol:?}");
        let body = response.body_text();
        for line in [
            "method=GET",
            "path=/hello/world",
            "query=a=1&b=2",
            "x-echo=ping",
            "greeting=hi there",
            "greeting-host=hi there",
            "body-length=0",
        ] {
            assert!(
                body.lines().any(|l| l == line),
                "{protocol:?}: no {line:?} in:\n{body}"
            );
        }
        assert!(
            response.header("x-echo-upstream").is_none(),
            "{protocol:?}: went upstream"
        );

        let posted = client
            .send(Request::post("/submit", "payload bytes"))
            .await
            .unwrap();
        assert_eq!(posted.status, 200, "{protocol:?}");
        let body = posted.body_text();
        assert!(
            body.lines().any(|l| l == "method=POST"),
            "{protocol:?}:\n{body}"
        );
        assert!(
            body.lines().any(|l| l == "body-length=13"),
            "{protocol:?}:\n{body}"
        );
        assert!(
            body.lines().any(|l| l == "body=payload bytes"),
            "{protocol:?}:\n{body}"
        );
    }
}

#[tokio::test]
async fn function_sets_status() {
    let upstream = EchoUpstream::start().unwrap();
    let revision = WasmRevision::new("wasm-status", "backend", wasm("echo.wasm"));
    let envoy = start(&upstream, &revision).await;

    let response = Client::http1(envoy.listen_addr())
        .send(Request::get("/?status=404"))
        .await
        .unwrap();
    assert_eq!(response.status, 404, "{}", tail(&envoy));
}

#[tokio::test]
async fn stderr_reaches_envoy_log() {
    let upstream = EchoUpstream::start().unwrap();
    let revision = WasmRevision::new("wasm-stderr", "backend", wasm("echo.wasm"));
    let envoy = start(&upstream, &revision).await;

    let response = Client::http1(envoy.listen_addr())
        .send(Request::get("/?stderr=1"))
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    let log = envoy.log_text();
    let logged = log
        .lines()
        .any(|line| line.contains("function stderr") && line.contains("wasm-stderr"));
    assert!(
        logged,
        "no stderr line naming the revision:\n{}",
        log_tail(&log, TAIL)
    );
}

/// Starts one Envoy with `first` on the main listener and `second` on another, in that order,
/// and returns it with the second listener's address.
async fn start_two(upstream: &EchoUpstream, first: String, second: String) -> (Envoy, SocketAddr) {
    let second_port = free_port().unwrap();
    let template = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("configs")
        .join("edgefn-two-listeners.yaml");
    let template = template.to_str().expect("the repository path is UTF-8");
    let envoy = Envoy::builder(template)
        .var("UPSTREAM_PORT", upstream.port())
        .var("REVISION", first)
        .var("SECOND_LISTEN_PORT", second_port)
        .var("SECOND_REVISION", second)
        .concurrency(2)
        .start()
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    (envoy, SocketAddr::from(([127, 0, 0, 1], second_port)))
}

#[tokio::test]
async fn endless_loop_times_out_and_worker_stays_healthy() {
    let upstream = EchoUpstream::start().unwrap();
    let spin = WasmRevision::new("wasm-spin", "backend", wasm("spin.wasm")).timeout("300ms");
    let echo = WasmRevision::new("wasm-after-spin", "backend", wasm("echo.wasm"));
    let (envoy, echo_addr) = start_two(
        &upstream,
        spin.to_template_value(),
        echo.to_template_value(),
    )
    .await;

    for protocol in PROTOCOLS {
        let response = Client::new(envoy.listen_addr(), protocol)
            .send(Request::get("/"))
            .await
            .unwrap();
        assert_eq!(response.status, 504, "{protocol:?}:\n{}", tail(&envoy));

        let next = Client::new(echo_addr, protocol)
            .send(Request::get("/after"))
            .await
            .unwrap();
        assert_eq!(next.status, 200, "{protocol:?}:\n{}", tail(&envoy));
    }
    let log = envoy.log_text();
    let named = log
        .lines()
        .any(|line| line.contains("wasm-spin") && line.contains("timeout"));
    assert!(
        named,
        "no timeout line naming the revision:\n{}",
        log_tail(&log, TAIL)
    );
}

/// Sends every trap kind to the trap function at `trap_addr` and checks each gets a 500, that
/// the same function then answers 200, and that the Go plugin at `go_addr` still serves.
async fn assert_traps_contained(envoy: &Envoy, trap_addr: SocketAddr, go_addr: SocketAddr) {
    for kind in ["oob", "unreachable", "stack", "exit"] {
        for protocol in PROTOCOLS {
            let response = Client::new(trap_addr, protocol)
                .send(Request::get(&format!("/?kind={kind}")))
                .await
                .unwrap_or_else(|error| panic!("{kind} {protocol:?}: {error}\n{}", tail(envoy)));
            assert_eq!(
                response.status,
                500,
                "{kind} {protocol:?}:\n{}",
                tail(envoy)
            );

            let fine = Client::new(trap_addr, protocol)
                .send(Request::get("/?kind=none"))
                .await
                .unwrap();
            assert_eq!(fine.status, 200, "{kind} {protocol:?}");
            assert_eq!(fine.body_text().trim(), "ok", "{kind} {protocol:?}");

            let go = Client::new(go_addr, protocol)
                .send(Request::get("/go"))
                .await
                .unwrap();
            assert_eq!(go.status, 200, "{kind} {protocol:?}:\n{}", tail(envoy));
            assert_eq!(
                go.header("x-edgefn"),
                Some("add-header"),
                "{kind} {protocol:?}"
            );
        }
    }
}

fn go_revision() -> String {
    let plugin = tools::plugin_path("addheader.so").unwrap_or_else(|error| panic!("{error}"));
    Revision::new("go-beside-wasm", "add-header", plugin.to_str().unwrap())
        .plugin_config(r#"{"responseHeader": {"name": "x-edgefn", "value": "add-header"}}"#)
        .to_template_value()
}

#[tokio::test]
async fn traps_beside_go_plugin_loaded_first() {
    let upstream = EchoUpstream::start().unwrap();
    let trap = WasmRevision::new("wasm-trap-second", "backend", wasm("trap.wasm"));
    let (envoy, trap_addr) = start_two(&upstream, go_revision(), trap.to_template_value()).await;
    assert_traps_contained(&envoy, trap_addr, envoy.listen_addr()).await;
}

#[tokio::test]
async fn traps_beside_go_plugin_loaded_second() {
    let upstream = EchoUpstream::start().unwrap();
    let trap = WasmRevision::new("wasm-trap-first", "backend", wasm("trap.wasm"));
    let (envoy, go_addr) = start_two(&upstream, trap.to_template_value(), go_revision()).await;
    assert_traps_contained(&envoy, envoy.listen_addr(), go_addr).await;
}

#[tokio::test]
async fn fetch_reaches_local_upstream() {
    let upstream = EchoUpstream::start().unwrap();
    let url = format!("http://127.0.0.1:{}", upstream.port());
    let revision =
        WasmRevision::new("wasm-fetch", "backend", wasm("fetch.wasm")).env("UPSTREAM_URL", &url);
    let envoy = start(&upstream, &revision).await;

    let response = Client::http1(envoy.listen_addr())
        .send(Request::get("/through/fetch").header("x-echo", "forwarded"))
        .await
        .unwrap();
    assert_eq!(response.status, 200, "{}", tail(&envoy));
    let body = response.body_text();
    assert!(body.lines().any(|l| l == "fetched-status=200"), "{body}");
    // The echo upstream returns the request it got as JSON: the path and the forwarded header.
    assert!(body.contains("/through/fetch"), "{body}");
    assert!(body.contains("forwarded"), "{body}");
}

#[tokio::test]
async fn kv_keeps_values_across_requests() {
    let upstream = EchoUpstream::start().unwrap();
    let revision = WasmRevision::new("wasm-kv", "backend", wasm("kv.wasm"));
    let envoy = start(&upstream, &revision).await;

    let mut values = Vec::new();
    for protocol in PROTOCOLS {
        let response = Client::new(envoy.listen_addr(), protocol)
            .send(Request::get("/incr/visits"))
            .await
            .unwrap();
        assert_eq!(response.status, 200, "{protocol:?}:\n{}", tail(&envoy));
        values.push(response.body_text().trim().to_owned());
    }
    assert_eq!(values, ["1", "2"]);

    let listed = Client::http1(envoy.listen_addr())
        .send(Request::get("/list/vis"))
        .await
        .unwrap();
    assert_eq!(listed.body_text().trim(), "visits");
}

/// Checks that Envoy rejects `revision` at start, with an error line naming the revision and
/// containing each of `details`.
async fn assert_rejected(revision: &WasmRevision, details: &[&str]) {
    let upstream = EchoUpstream::start().unwrap();
    let failed = builder(&upstream, revision)
        .start_expecting_failure()
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let log = &failed.log;
    let line = log
        .lines()
        .find(|line| {
            line.contains("edgefn refused the filter config") && line.contains(&revision.name)
        })
        .unwrap_or_else(|| {
            panic!(
                "no rejection naming {}:\n{}",
                revision.name,
                log_tail(log, TAIL)
            )
        });
    for detail in details {
        assert!(line.contains(detail), "{detail:?} missing from: {line}");
    }
}

#[tokio::test]
async fn disabled_kv_rejects_module_importing_it() {
    let revision =
        WasmRevision::new("wasm-kv-off", "backend", wasm("kv.wasm")).capabilities(true, false);
    assert_rejected(&revision, &["edgefn.kv_", "spec.runtime.capabilities.kv"]).await;
}

#[tokio::test]
async fn disabled_fetch_rejects_module_importing_it() {
    let revision = WasmRevision::new("wasm-fetch-off", "backend", wasm("fetch.wasm"))
        .capabilities(false, true);
    assert_rejected(
        &revision,
        &["edgefn.", "spec.runtime.capabilities.fetchAPI"],
    )
    .await;
}

fn scratch_file(name: &str, bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    (dir, path)
}

#[tokio::test]
async fn corrupt_module_is_rejected() {
    let (_dir, path) = scratch_file("corrupt.wasm", b"\0asm\x01\0\0\0this is not a module");
    let revision = WasmRevision::new("wasm-corrupt", "backend", path.to_str().unwrap());
    assert_rejected(&revision, &["invalid", "corrupt.wasm"]).await;

    let (_dir, path) = scratch_file("text.wasm", b"console.log('not wasm')");
    let revision = WasmRevision::new("wasm-not-binary", "backend", path.to_str().unwrap());
    assert_rejected(&revision, &["not a WebAssembly binary"]).await;
}

#[tokio::test]
async fn module_without_start_is_rejected() {
    let module = wat::parse_str(r#"(module (memory (export "memory") 1))"#).unwrap();
    let (_dir, path) = scratch_file("no-start.wasm", &module);
    let revision = WasmRevision::new("wasm-no-start", "backend", path.to_str().unwrap());
    assert_rejected(&revision, &["`_start`"]).await;
}

/// Kills the child process when dropped, so a failed assert leaves no server behind.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running `edgefn run` with its scratch directory; the process is killed on drop.
struct RunCommand {
    addr: SocketAddr,
    _child: KillOnDrop,
    _dir: tempfile::TempDir,
}

/// Starts `edgefn run` for `revision` with `extra` arguments, on a free port.
fn start_run_command(mut revision: WasmRevision, extra: &[&str]) -> RunCommand {
    let port = free_port().unwrap();
    revision.port = Some(port);
    let (dir, file) = scratch_file("revision.json", revision.to_template_value().as_bytes());
    let cli = tools::cli_binary().unwrap_or_else(|error| panic!("{error}"));
    let child = std::process::Command::new(cli)
        .arg("run")
        .arg(&file)
        .arg("--cache-dir")
        .arg(dir.path().join("cache"))
        .args(extra)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    RunCommand {
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        _child: KillOnDrop(child),
        _dir: dir,
    }
}

/// Sends `request` until the server accepts a connection, for at most 10 s.
async fn send_when_listening(addr: SocketAddr, request: Request) -> edgefn_integration::Response {
    for _attempt in 0..100 {
        match Client::http1(addr).send(request.clone()).await {
            Ok(answer) => return answer,
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    panic!("edgefn run did not accept a connection within 10 s");
}

#[tokio::test]
async fn run_command_serves_function() {
    let revision =
        WasmRevision::new("cli-run-echo", "backend", wasm("echo.wasm")).env("GREETING", "cli");
    let server = start_run_command(revision, &[]);

    let response = send_when_listening(server.addr, Request::get("/via/cli?x=1")).await;
    assert_eq!(response.status, 200);
    let body = response.body_text();
    assert!(body.lines().any(|l| l == "path=/via/cli"), "{body}");
    assert!(body.lines().any(|l| l == "greeting=cli"), "{body}");
}

#[tokio::test]
async fn run_command_limits_concurrent_requests() {
    let revision = WasmRevision::new("cli-run-spin", "backend", wasm("spin.wasm")).timeout("3s");
    let server = start_run_command(revision, &["--max-concurrent", "1"]);

    // Wait until it listens, without sending a request.
    let addr = server.addr;
    let mut listening = false;
    for _attempt in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            listening = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(listening, "edgefn run did not listen within 10 s");

    // The first request holds the only slot while the function loops until its timeout.
    let first = tokio::spawn(async move { Client::http1(addr).send(Request::get("/a")).await });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let second = Client::http1(addr).send(Request::get("/b")).await.unwrap();
    assert_eq!(second.status, 503);

    let first = first.await.unwrap().unwrap();
    assert_eq!(first.status, 504);
}

#[tokio::test]
async fn filter_module_in_backend_mode_is_rejected() {
    let revision = WasmRevision::new("wasm-wrong-mode", "backend", wasm("pw_headers.wasm"));
    assert_rejected(&revision, &["proxy-wasm filter", "set spec.mode to filter"]).await;
}
