//! Local replies, stream destruction, Finalize, stream completion, and panics inside edgefn.

use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::abi::{body_status, headers_status};
use crate::gohost::types::{capi, destroy_reason, go_status, ACCESS_LOG_DOWNSTREAM_END};
use crate::hooks::RUST_PANICS;
use crate::stream::PANIC_REPLY_BODY;
use crate::testing::envoy::{self, SentResponse};
use crate::testing::go::{self, Act, Reply};
use crate::testing::harness::{header_bytes, header_list, Harness};

const REQUEST: &[(&str, &str)] = &[
    (":method", "GET"),
    (":path", "/"),
    (":authority", "example.test"),
    (":scheme", "http"),
];

const RESPONSE: &[(&str, &str)] = &[(":status", "200"), ("content-length", "0")];

/// The environment variable `hooks.rs` reads to panic inside one hook.
const PANIC_ENV: &str = "EDGEFN_TEST_PANIC_IN";

/// Upper bound on a child test process's run time; it normally takes well under a second.
const CHILD_TIMEOUT: Duration = Duration::from_secs(120);

fn responses() -> Vec<SentResponse> {
    envoy::with(|fake| fake.responses())
}

fn local_reply(status: i32, headers: Vec<(&'static str, &'static str)>) -> Act {
    Act::LocalReply {
        status,
        body: "denied",
        headers,
    }
}

// === Local replies ===

#[test]
fn local_reply_from_goroutine() {
    let h = Harness::new();
    let reply = local_reply(403, vec![("x-reason", "policy")]);
    go::script([Reply::status(go_status::RUNNING).later([reply])]);
    h.request_headers(REQUEST, false);

    let results = go::run_goroutine();
    assert_eq!(go::statuses(&results), [capi::OK]);
    assert_eq!(responses(), []);

    h.run_scheduled();
    let expected = SentResponse {
        status: 403,
        headers: header_list(&[("x-reason", "policy")]),
        body: b"denied".to_vec(),
        details: b"fake local reply".to_vec(),
    };
    assert_eq!(responses(), [expected]);
    assert_eq!(envoy::with(|fake| fake.continues()), []);
    assert!(!envoy::with(|fake| fake.dirs[0].headers_forwarded));
    assert_eq!(h.violations(), Vec::<String>::new());
}

#[test]
fn second_local_reply_ignored() {
    let h = Harness::new();
    let replies = [local_reply(403, Vec::new()), local_reply(503, Vec::new())];
    go::script([Reply::status(go_status::RUNNING).later(replies)]);
    h.request_headers(REQUEST, false);

    go::run_goroutine();
    h.run_scheduled();

    let sent = responses();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].status, 403);
    assert_eq!(h.violations(), Vec::<String>::new());
}

#[test]
fn body_after_local_reply() {
    let h = Harness::new();
    go::script([Reply::status(go_status::RUNNING).later([local_reply(403, Vec::new())])]);
    h.request_headers(REQUEST, false);
    go::run_goroutine();
    h.run_scheduled();

    let body = h.request_body(b"late", true);

    assert_eq!(body, body_status::CONTINUE);
    assert_eq!(go::calls().len(), 1);
    assert_eq!(responses().len(), 1);
    assert_eq!(h.violations(), Vec::<String>::new());
}

#[test]
fn local_reply_headers_filtered() {
    let h = Harness::new();
    let headers = vec![
        (":status", "200"),
        (":path", "/elsewhere"),
        ("x-ok", "1"),
        ("x-cr", "a\rb"),
        ("x-lf", "a\nset-cookie: injected=1"),
        ("X-Upper", "v"),
        ("set-cookie", "a=1"),
        ("set-cookie", "b=2"),
    ];
    go::script([Reply::status(go_status::LOCAL_REPLY).now([local_reply(403, headers)])]);

    let status = h.request_headers(REQUEST, false);
    h.run_scheduled();

    assert_eq!(status, headers_status::STOP_ITERATION);
    let sent = responses();
    assert_eq!(sent.len(), 1);
    let expected = [
        ("x-ok", "1"),
        ("x-upper", "v"),
        ("set-cookie", "a=1"),
        ("set-cookie", "b=2"),
    ];
    assert_eq!(sent[0].headers, header_list(&expected));
    assert_eq!(h.violations(), Vec::<String>::new());
}

#[test]
fn panic_reply_from_goroutine() {
    let h = Harness::new();
    let panic = Act::PanicReply("plugin panicked: index out of range");
    go::script([Reply::status(go_status::RUNNING).later([panic])]);
    h.request_headers(REQUEST, false);

    go::run_goroutine();
    h.run_scheduled();

    let sent = responses();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].status, 500);
    assert_eq!(sent[0].body, PANIC_REPLY_BODY);
    assert_eq!(h.violations(), Vec::<String>::new());
}

// === Destruction and Finalize ===

#[test]
fn continue_after_destroy() {
    let h = Harness::new();
    go::script([Reply::status(go_status::RUNNING).later([Act::Continue(go_status::CONTINUE)])]);
    h.request_headers(REQUEST, false);
    h.destroy();
    let calls_before = envoy::with(|fake| fake.calls.len());
    let commits_before = envoy::with(|fake| fake.scheduler_commits());

    let results = go::run_goroutine();

    assert_eq!(go::statuses(&results), [capi::FILTER_IS_DESTROY]);
    assert_eq!(envoy::with(|fake| fake.calls.len()), calls_before);
    assert_eq!(envoy::with(|fake| fake.scheduler_commits()), commits_before);
    assert_eq!(h.run_scheduled(), 0);
    assert_eq!(h.violations(), Vec::<String>::new());
}

#[test]
fn callbacks_after_destroy() {
    let h = Harness::new();
    let acts = [
        Act::GetHeader(":path"),
        Act::SetHeader("x-late", "1"),
        local_reply(403, Vec::new()),
    ];
    go::script([Reply::status(go_status::RUNNING).later(acts)]);
    h.request_headers(REQUEST, false);
    h.destroy();

    let results = go::run_goroutine();

    let destroyed = capi::FILTER_IS_DESTROY;
    assert_eq!(go::statuses(&results), [destroyed, destroyed, destroyed]);
    assert_eq!(responses(), []);
    assert_eq!(h.violations(), Vec::<String>::new());
}

#[test]
fn destroy_while_running() {
    let h = Harness::new();
    go::script([Reply::status(go_status::RUNNING)]);
    h.request_headers(REQUEST, false);

    h.destroy();

    let destroys = go::destroys();
    assert_eq!(destroys.len(), 1);
    assert_eq!(destroys[0].1, destroy_reason::TERMINATE);
    assert!(envoy::with(|fake| fake
        .schedulers
        .iter()
        .all(|s| s.deleted.load(Ordering::Acquire))));
    assert_eq!(h.violations(), Vec::<String>::new());
}

#[test]
fn destroy_after_continue() {
    let h = Harness::new();
    go::script([Reply::status(go_status::CONTINUE)]);
    h.request_headers(REQUEST, false);

    h.destroy();

    let destroys = go::destroys();
    assert_eq!(destroys.len(), 1);
    assert_eq!(destroys[0].1, destroy_reason::NORMAL);
    assert_eq!(h.violations(), Vec::<String>::new());
}

#[test]
fn destroy_twice_harmless() {
    let h = Harness::new();
    h.request_headers(REQUEST, true);

    h.destroy();
    h.destroy();

    assert_eq!(go::destroys().len(), 1);
    assert_eq!(h.violations(), Vec::<String>::new());
}

#[test]
fn never_entered_go() {
    let h = Harness::new();
    // The test, Envoy's config reference and the stream each hold the config.
    assert_eq!(Arc::strong_count(h.config()), 3);

    h.destroy();

    assert_eq!(go::calls(), []);
    assert_eq!(go::destroys(), []);
    // The block Go never saw is freed at once, with its reference to the config.
    assert_eq!(Arc::strong_count(h.config()), 2);
    assert_eq!(h.violations(), Vec::<String>::new());
}

#[test]
fn finalize_frees_block() {
    let h = Harness::new();
    go::script([Reply::status(go_status::RUNNING)]);
    h.request_headers(REQUEST, false);

    h.destroy();
    // Go still holds the request, so the block and its config reference stay.
    assert_eq!(Arc::strong_count(h.config()), 3);

    assert_eq!(go::finalize_destroyed(), 1);
    assert_eq!(Arc::strong_count(h.config()), 2);
    assert_eq!(h.violations(), Vec::<String>::new());
}

#[test]
fn config_outlives_block() {
    let mut h = Harness::new();
    let config_id = h.config().config_id;
    h.request_headers(REQUEST, true);
    h.destroy();
    h.destroy_config();
    h.release_config();

    // The block Go has not finalized still refers to the config.
    assert_eq!(go::config_destroy_count(config_id), 0);

    go::finalize_destroyed();
    assert_eq!(go::config_destroy_count(config_id), 1);
    assert_eq!(h.violations(), Vec::<String>::new());
}

// === Stream completion ===

#[test]
fn stream_complete_logs() {
    let h = Harness::new();
    h.request_headers(REQUEST, true);
    h.response_headers(RESPONSE, true);

    h.stream_complete();

    let log = go::log();
    let log = log.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    assert_eq!(log.stream_completes, 1);
    assert_eq!(log.access_logs.len(), 1);
    assert_eq!(log.access_logs[0].log_type, ACCESS_LOG_DOWNSTREAM_END);
    let expected = [
        REQUEST.len() as u64,
        header_bytes(REQUEST),
        0,
        0,
        RESPONSE.len() as u64,
        header_bytes(RESPONSE),
        0,
        0,
    ];
    assert_eq!(log.access_logs[0].counts, expected);
    drop(log);
    assert_eq!(h.violations(), Vec::<String>::new());
}

#[test]
fn stream_complete_without_go() {
    let h = Harness::new();

    h.stream_complete();

    let log = go::log();
    let log = log.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    assert_eq!(log.stream_completes, 0);
    assert_eq!(log.access_logs.len(), 0);
}

// === Panics inside edgefn ===

/// Runs `panic_child` in a child process of this test binary with the panic switch set to
/// `hook`, and returns its exit status and standard output.
fn run_panic_child(hook: &str) -> (ExitStatus, String) {
    let exe = std::env::current_exe().expect("the test binary has a path");
    let output: PathBuf = std::env::temp_dir().join(format!(
        "edgefn-panic-child-{}-{hook}.out",
        std::process::id()
    ));
    let file = std::fs::File::create(&output).expect("the temporary directory is writable");
    let mut child = Command::new(exe)
        .args([
            "--ignored",
            "--exact",
            "testing::lifecycle_tests::panic_child",
        ])
        .args(["--test-threads", "1"])
        .env(PANIC_ENV, hook)
        .stdout(file)
        .stderr(Stdio::null())
        .spawn()
        .expect("the test binary can run itself");

    let deadline = Instant::now() + CHILD_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the child works") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the child test for {hook} did not finish in {CHILD_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = std::fs::read_to_string(&output).unwrap_or_default();
    let _ = std::fs::remove_file(&output);
    (status, text)
}

fn assert_child_passes(hook: &str) {
    let (status, output) = run_panic_child(hook);
    assert!(
        status.success(),
        "child for {hook} failed ({status}):\n{output}"
    );
    assert!(
        output.contains("1 passed"),
        "child for {hook} ran no test:\n{output}"
    );
}

#[test]
fn panic_in_request_headers() {
    assert_child_passes("request_headers");
}

#[test]
fn panic_in_request_body() {
    assert_child_passes("request_body");
}

#[test]
fn panic_in_scheduled() {
    assert_child_passes("scheduled");
}

#[test]
fn panic_in_destroy() {
    assert_child_passes("destroy");
}

#[test]
fn panic_in_filter_new() {
    assert_child_passes("filter_new");
}

/// The 500 reply a caught panic must produce.
fn internal_error() -> SentResponse {
    SentResponse {
        status: 500,
        headers: Vec::new(),
        body: PANIC_REPLY_BODY.to_vec(),
        details: b"edgefn_internal_error".to_vec(),
    }
}

/// Breaks the hook named by `EDGEFN_TEST_PANIC_IN` and checks that the panic is caught. The
/// switch is read once per process, so this runs only in a child process of the tests above.
#[test]
#[ignore = "run by the panic_in_* tests in a child process with EDGEFN_TEST_PANIC_IN set"]
fn panic_child() {
    let hook = std::env::var(PANIC_ENV).expect("EDGEFN_TEST_PANIC_IN names the hook to break");
    let h = Harness::new();
    match hook.as_str() {
        "request_headers" => {
            let status = h.request_headers(REQUEST, false);
            assert_eq!(status, headers_status::STOP_ITERATION);
            assert_eq!(responses(), [internal_error()]);
            assert_eq!(go::calls(), []);
        }
        "request_body" => {
            h.request_headers(REQUEST, false);
            let status = h.request_body(b"body", true);
            assert_eq!(status, body_status::STOP_ITERATION_NO_BUFFER);
            assert_eq!(responses(), [internal_error()]);
        }
        "scheduled" => {
            let continue_later = Act::Continue(go_status::CONTINUE);
            go::script([Reply::status(go_status::RUNNING).later([continue_later])]);
            h.request_headers(REQUEST, false);
            go::run_goroutine();
            h.run_scheduled();
            assert_eq!(responses(), [internal_error()]);
            assert_eq!(envoy::with(|fake| fake.continues()), []);
        }
        "destroy" => {
            h.request_headers(REQUEST, false);
            h.destroy();
            // NOTE: the switch fires after the stream left the live set and before
            // `Stream::destroy`, so Go never gets OnHttpDestroy and its request leaks.
            assert_eq!(go::destroys(), []);
        }
        "filter_new" => {
            assert!(h.module().is_null());
            let status = h.request_headers(REQUEST, false);
            assert_eq!(status, headers_status::CONTINUE);
            assert_eq!(go::calls(), []);
        }
        other => panic!("no panic scenario for hook {other:?}"),
    }
    assert_eq!(RUST_PANICS.load(Ordering::Relaxed), 1);
    assert_eq!(h.violations(), Vec::<String>::new());
}
