//! Panics inside edgefn's own hooks, injected with `EDGEFN_TEST_PANIC_IN=<hook>`: each one is
//! caught at the hook, logged, and turns into a 500 for that request or a rejected config,
//! and Envoy keeps serving.
//!
//! Needs `libedgefn.so` (`cargo build --release -p edgefn-filter`) and the Go test plugins
//! (`scripts/setup.sh`).

mod support;

use edgefn_integration::{
    Client, EchoUpstream, Envoy, EnvoyBuilder, FileServer, Request, Revision,
};
use support::{assert_admin_ready, crash_lines, lines_with, plugin_path, tail, wait_until};

/// The environment variable that makes the named hook of edgefn panic.
const PANIC_SWITCH: &str = "EDGEFN_TEST_PANIC_IN";
const PLUGIN_FILE: &str = "testplugins.so";
/// async-continue continues each request from a goroutine, so every stream also runs edgefn's
/// `scheduled` hook. With delay 0 the goroutine continues at once.
const PLUGIN_NAME: &str = "async-continue";
const PLUGIN_CONFIG: &str = r#"{"phase": "decodeHeaders", "delayMs": 0}"#;
/// The body edgefn sends with the 500 for a caught panic, as Envoy's golang filter words it.
const PANIC_REPLY_BODY: &str = "error happened in filter\r\n";

fn panic_envoy(hook: &str, files: &FileServer, upstream: &EchoUpstream) -> EnvoyBuilder {
    let revision = Revision::new(
        &format!("panic-in-{hook}"),
        PLUGIN_NAME,
        &files.url(PLUGIN_FILE),
    )
    .plugin_config(PLUGIN_CONFIG);
    Envoy::builder("edgefn.yaml")
        .var("UPSTREAM_PORT", upstream.port())
        .revision(&revision)
        .env(PANIC_SWITCH, hook)
        .concurrency(2)
}

fn testplugins_server() -> FileServer {
    let plugin = plugin_path(PLUGIN_FILE);
    FileServer::start(plugin.parent().unwrap()).unwrap()
}

/// Returns the texts of the log line edgefn writes for a panic caught in `hook`: the message
/// and the `hook` field.
fn panic_line_needles(hook: &str) -> [String; 2] {
    [
        format!("edgefn panicked: test panic requested in {hook}"),
        format!("hook=\"{hook}\""),
    ]
}

fn panic_lines<'a>(log: &'a str, hook: &str) -> Vec<&'a str> {
    let needles = panic_line_needles(hook);
    lines_with(log, &[&needles[0], &needles[1]])
}

#[tokio::test]
async fn panic_in_config_new_rejects_config() {
    let files = testplugins_server();
    let upstream = EchoUpstream::start().unwrap();

    let failed = panic_envoy("config_new", &files, &upstream)
        .start_expecting_failure()
        .await
        .unwrap_or_else(|error| panic!("{error}"));

    let log = &failed.log;
    assert!(!failed.status.success(), "{}", tail(log));
    assert_eq!(panic_lines(log, "config_new").len(), 1, "{}", tail(log));
    assert_eq!(crash_lines(log), Vec::<&str>::new());
}

/// A request and the status each send of it must get.
struct Case {
    request: fn() -> Request,
    status: u16,
    /// Whether the request runs the hook, so that each send adds one caught panic.
    runs_hook: bool,
}

/// Sends every case's request twice to an Envoy whose `hook` panics, and checks each status,
/// the panics logged, and that Envoy stays ready with no crash.
async fn assert_panics_contained(hook: &str, cases: &[Case]) {
    let files = testplugins_server();
    let upstream = EchoUpstream::start().unwrap();
    let envoy = panic_envoy(hook, &files, &upstream)
        .start()
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let client = Client::http1(envoy.listen_addr());

    let mut expected_panics = 0;
    for case in cases {
        for send in 1..=2 {
            let request = (case.request)();
            let context = format!("{hook}: {} {} (send {send})", request.method, request.path);
            let response = client
                .send(request)
                .await
                .unwrap_or_else(|error| panic!("{context}: {error}"));

            assert_eq!(
                response.status,
                case.status,
                "{context}:\n{}",
                tail(&envoy.log_text())
            );
            if case.status == 500 {
                assert_eq!(response.body_text(), PANIC_REPLY_BODY, "{context}");
            }
            expected_panics += usize::from(case.runs_hook);
        }
    }

    // `destroy` runs after the response was sent, so its panics may be logged a moment later.
    let logged_all = wait_until(50, async || {
        panic_lines(&envoy.log_text(), hook).len() >= expected_panics
    })
    .await;
    let log = envoy.log_text();
    assert!(
        logged_all,
        "{hook}: fewer than {expected_panics} panics logged:\n{}",
        tail(&log)
    );
    assert_eq!(
        panic_lines(&log, hook).len(),
        expected_panics,
        "{hook}: panics logged"
    );
    assert_admin_ready(&envoy).await;
    assert_eq!(crash_lines(&log), Vec::<&str>::new(), "{hook}");
}

fn get() -> Request {
    Request::get("/panic")
}

fn post() -> Request {
    Request::post("/panic", "request body")
}

#[tokio::test]
async fn panic_in_request_headers_gives_500() {
    let cases = [Case {
        request: get,
        status: 500,
        runs_hook: true,
    }];
    assert_panics_contained("request_headers", &cases).await;
}

#[tokio::test]
async fn panic_in_request_body_gives_500() {
    // A GET has no body, so it never runs the hook and passes.
    let cases = [
        Case {
            request: post,
            status: 500,
            runs_hook: true,
        },
        Case {
            request: get,
            status: 200,
            runs_hook: false,
        },
    ];
    assert_panics_contained("request_body", &cases).await;
}

#[tokio::test]
async fn panic_in_response_headers_gives_500() {
    let cases = [Case {
        request: get,
        status: 500,
        runs_hook: true,
    }];
    assert_panics_contained("response_headers", &cases).await;
}

#[tokio::test]
async fn panic_in_scheduled_gives_500() {
    let cases = [Case {
        request: get,
        status: 500,
        runs_hook: true,
    }];
    assert_panics_contained("scheduled", &cases).await;
}

#[tokio::test]
async fn panic_in_destroy_after_response() {
    // Envoy destroys a stream after its response is complete, so the client already has the
    // 200 when the hook panics.
    let cases = [Case {
        request: get,
        status: 200,
        runs_hook: true,
    }];
    assert_panics_contained("destroy", &cases).await;
}
