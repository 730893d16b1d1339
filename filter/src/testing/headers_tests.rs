//! Header and trailer phases: synchronous and asynchronous Continue, header changes, and the
//! CopyHeaders contract.

use crate::abi::{header_type, headers_status, trailers_status};
use crate::gohost::types::{capi, go_status};
use crate::shared::{DECODE, ENCODE};
use crate::testing::envoy;
use crate::testing::go::{self, Act, Phase, Reply};
use crate::testing::harness::{header_bytes, header_list, Harness};

const REQUEST: &[(&str, &str)] = &[
    (":method", "POST"),
    (":path", "/upload"),
    (":authority", "example.test"),
    (":scheme", "http"),
    ("content-type", "text/plain"),
];

const RESPONSE: &[(&str, &str)] = &[(":status", "200"), ("content-type", "text/plain")];

const TRAILERS: &[(&str, &str)] = &[("grpc-status", "0"), ("x-checksum", "abc123")];

/// More than 16 entries, so Go sizes `strs` at exactly 2N, with repeated names and an empty
/// value.
const MANY: &[(&str, &str)] = &[
    (":method", "GET"),
    (":path", "/many"),
    (":authority", "example.test"),
    (":scheme", "https"),
    ("accept", "*/*"),
    ("x-dup", "1"),
    ("x-dup", "22"),
    ("x-dup", "333"),
    ("x-empty", ""),
    ("cookie", "a=1"),
    ("cookie", "b=2"),
    ("x-h1", "one"),
    ("x-h2", "two"),
    ("x-h3", "three"),
    ("x-h4", "four"),
    ("x-h5", "five"),
    ("x-h6", "six"),
    ("x-h7", "seven"),
    ("x-h8", "eight"),
    (
        "user-agent",
        "edgefn-test/1.0 (a longer value to vary the sizes)",
    ),
];

fn request_header(key: &str) -> Vec<String> {
    envoy::with(|fake| fake.header_values(header_type::REQUEST_HEADER, key))
}

fn headers_forwarded(dir: usize) -> bool {
    envoy::with(|fake| fake.dirs[dir].headers_forwarded)
}

fn continues() -> Vec<(bool, Option<&'static str>)> {
    envoy::with(|fake| fake.continues())
}

#[test]
fn headers_continue_sync() {
    let h = Harness::new();
    go::script([Reply::status(go_status::CONTINUE)]);

    let status = h.request_headers(REQUEST, false);

    assert_eq!(status, headers_status::CONTINUE);
    let calls = go::calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].phase, Phase::Headers);
    assert!(!calls[0].encoding);
    assert!(!calls[0].end_stream);
    assert!(headers_forwarded(DECODE));
    assert_eq!(continues(), []);
    assert_eq!(envoy::with(|fake| fake.scheduler_commits()), (0, 0));
    assert_eq!(h.violations(), Vec::<String>::new());
}

#[test]
fn headers_async_continue() {
    let h = Harness::new();
    go::script([Reply::status(go_status::RUNNING).later([Act::Continue(go_status::CONTINUE)])]);

    let status = h.request_headers(REQUEST, false);
    assert_eq!(status, headers_status::STOP_ITERATION);
    assert!(!headers_forwarded(DECODE));

    let results = go::run_goroutine();
    assert_eq!(go::statuses(&results), [capi::OK]);
    assert_eq!(envoy::with(|fake| fake.scheduler_commits()), (1, 0));
    assert_eq!(continues(), []);
    assert!(!headers_forwarded(DECODE));

    assert_eq!(h.run_scheduled(), 1);
    assert_eq!(continues(), [(false, Some("scheduled"))]);
    assert!(headers_forwarded(DECODE));
    assert_eq!(h.violations(), Vec::<String>::new());
}

#[test]
fn headers_end_stream_continue() {
    let h = Harness::new();
    go::script([Reply::status(go_status::CONTINUE)]);

    let status = h.request_headers(&REQUEST[..4], true);

    assert_eq!(status, headers_status::CONTINUE);
    let calls = go::calls();
    assert_eq!(calls.len(), 1);
    assert!(calls[0].end_stream);
    assert!(headers_forwarded(DECODE));
    assert_eq!(h.violations(), Vec::<String>::new());
}

#[test]
fn stale_continue_ignored() {
    let h = Harness::new();
    let twice = [
        Act::Continue(go_status::CONTINUE),
        Act::Continue(go_status::CONTINUE),
    ];
    go::script([Reply::status(go_status::RUNNING).later(twice)]);
    h.request_headers(REQUEST, false);

    // Both are accepted: the direction is still in Go until the worker applies the first.
    let results = go::run_goroutine();
    assert_eq!(go::statuses(&results), [capi::OK, capi::OK]);

    h.run_scheduled();
    assert_eq!(continues(), [(false, Some("scheduled"))]);
    let status = h.request_body(b"body", true);
    assert_eq!(status, crate::abi::body_status::CONTINUE);
    assert_eq!(go::calls_in(Phase::Data).len(), 1);
    assert_eq!(h.violations(), Vec::<String>::new());
}

#[test]
fn header_changes_sync() {
    let h = Harness::new();
    let headers = [
        (":method", "GET"),
        (":path", "/"),
        ("x-keep", "1"),
        ("x-remove", "gone"),
        ("x-set", "old"),
        ("x-add", "a"),
    ];
    let changes = [
        Act::SetHeader("X-Set", "new"),
        Act::AddHeader("x-add", "b"),
        Act::RemoveHeader("X-Remove"),
    ];
    go::script([Reply::status(go_status::CONTINUE).now(changes)]);

    let status = h.request_headers(&headers, false);

    assert_eq!(status, headers_status::CONTINUE);
    assert_eq!(go::statuses(&go::results()), [capi::OK, capi::OK, capi::OK]);
    assert_eq!(request_header("x-set"), ["new"]);
    assert_eq!(request_header("x-add"), ["a", "b"]);
    assert_eq!(request_header("x-remove"), Vec::<String>::new());
    assert_eq!(request_header("x-keep"), ["1"]);
    assert_eq!(h.violations(), Vec::<String>::new());
}

#[test]
fn header_changes_from_goroutine() {
    let h = Harness::new();
    let acts = [
        Act::SetHeader("x-go", "1"),
        Act::RemoveHeader("content-type"),
        Act::Continue(go_status::CONTINUE),
    ];
    go::script([Reply::status(go_status::RUNNING).later(acts)]);
    h.request_headers(REQUEST, false);

    let results = go::run_goroutine();
    assert_eq!(go::statuses(&results), [capi::OK, capi::OK, capi::OK]);
    // Envoy's map is only changed on the worker thread.
    assert_eq!(request_header("x-go"), Vec::<String>::new());
    assert_eq!(request_header("content-type"), ["text/plain"]);

    h.run_scheduled();
    assert_eq!(request_header("x-go"), ["1"]);
    assert_eq!(request_header("content-type"), Vec::<String>::new());
    assert!(headers_forwarded(DECODE));
    assert_eq!(h.violations(), Vec::<String>::new());
}

#[test]
fn header_line_break_rejected() {
    let h = Harness::new();
    let act = Act::SetHeader("x-bad", "a\r\nx-injected: 1");
    go::script([Reply::status(go_status::CONTINUE).now([act])]);

    h.request_headers(REQUEST, false);

    assert_eq!(go::statuses(&go::results()), [capi::INTERNAL_FAILURE]);
    assert_eq!(request_header("x-bad"), Vec::<String>::new());
    assert_eq!(request_header("x-injected"), Vec::<String>::new());
    assert_eq!(h.violations(), Vec::<String>::new());
}

#[test]
fn header_change_after_sync_continue() {
    let h = Harness::new();
    go::script([
        Reply::status(go_status::CONTINUE),
        Reply::status(go_status::CONTINUE).now([Act::SetHeader("x-late", "1")]),
    ]);
    h.request_headers(REQUEST, false);

    h.request_body(b"data", true);

    // Envoy's golang filter drops the header map once the headers continued synchronously.
    assert_eq!(go::statuses(&go::results()), [capi::INVALID_PHASE]);
    assert_eq!(request_header("x-late"), Vec::<String>::new());
    assert_eq!(h.violations(), Vec::<String>::new());
}

#[test]
fn get_header_value() {
    let h = Harness::new();
    let reads = [Act::GetHeader("Content-Type"), Act::GetHeader("x-missing")];
    go::script([Reply::status(go_status::CONTINUE).now(reads)]);

    h.request_headers(REQUEST, false);

    let results = go::results();
    assert_eq!(go::statuses(&results), [capi::OK, capi::OK]);
    assert_eq!(results[0].bytes.as_deref(), Some(&b"text/plain"[..]));
    assert_eq!(results[1].bytes.as_deref(), Some(&b""[..]));
    assert_eq!(h.violations(), Vec::<String>::new());
}

#[test]
fn copy_headers_exact_counts() {
    let h = Harness::new();
    go::script([Reply::status(go_status::CONTINUE).now([Act::CopyHeaders])]);

    h.request_headers(MANY, false);

    let calls = go::calls();
    assert_eq!(calls[0].header_num, MANY.len() as u64);
    assert_eq!(calls[0].header_bytes, header_bytes(MANY));
    let results = go::results();
    assert_eq!(results[0].status, capi::OK);
    assert_eq!(results[0].headers, Some(header_list(MANY)));
    assert_eq!(h.violations(), Vec::<String>::new());
}

#[test]
fn copy_headers_after_set() {
    let h = Harness::new();
    let grow = Act::SetHeader(
        "x-added-by-go",
        "a value that makes the map larger than reported",
    );
    let reply = Reply::status(go_status::RUNNING)
        .now([grow])
        .later([Act::CopyHeaders, Act::Continue(go_status::CONTINUE)]);
    go::script([reply]);
    h.request_headers(REQUEST, false);

    // Go copies with the counts of its header call, so the host must copy that same list.
    let results = go::run_goroutine();

    assert_eq!(go::statuses(&results), [capi::OK, capi::OK]);
    assert_eq!(results[0].headers, Some(header_list(REQUEST)));
    assert_eq!(h.violations(), Vec::<String>::new());
}

#[test]
fn copy_trailers_counts() {
    let h = Harness::new();
    go::script([
        Reply::status(go_status::CONTINUE),
        Reply::status(go_status::CONTINUE).now([Act::CopyTrailers]),
    ]);
    h.request_headers(REQUEST, false);

    let status = h.request_trailers(TRAILERS);

    assert_eq!(status, trailers_status::CONTINUE);
    let trailers = go::calls_in(Phase::Trailers);
    assert_eq!(trailers.len(), 1);
    assert!(trailers[0].end_stream);
    assert_eq!(trailers[0].header_num, TRAILERS.len() as u64);
    assert_eq!(trailers[0].header_bytes, header_bytes(TRAILERS));
    assert_eq!(go::results()[0].headers, Some(header_list(TRAILERS)));
    assert!(envoy::with(|fake| fake.dirs[DECODE].trailers_forwarded));
    assert_eq!(h.violations(), Vec::<String>::new());
}

#[test]
fn trailer_change_applied() {
    let h = Harness::new();
    go::script([
        Reply::status(go_status::CONTINUE),
        Reply::status(go_status::CONTINUE).now([Act::SetTrailer("x-checksum", "def456")]),
    ]);
    h.request_headers(REQUEST, false);

    h.request_trailers(TRAILERS);

    assert_eq!(go::statuses(&go::results()), [capi::OK]);
    let values = envoy::with(|fake| fake.header_values(header_type::REQUEST_TRAILER, "x-checksum"));
    assert_eq!(values, ["def456"]);
    assert_eq!(h.violations(), Vec::<String>::new());
}

#[test]
fn response_async_continue() {
    let h = Harness::new();
    go::script([
        Reply::status(go_status::CONTINUE),
        Reply::status(go_status::RUNNING).later([Act::Continue(go_status::CONTINUE)]),
    ]);
    h.request_headers(&REQUEST[..4], true);

    let status = h.response_headers(RESPONSE, false);
    assert_eq!(status, headers_status::STOP_ITERATION);
    go::run_goroutine();
    h.run_scheduled();

    let calls = go::calls();
    assert_eq!(calls.len(), 2);
    assert!(calls[1].encoding);
    assert_eq!(continues(), [(true, Some("scheduled"))]);
    assert!(headers_forwarded(ENCODE));
    assert_eq!(h.violations(), Vec::<String>::new());
}

#[test]
fn continue_inside_header_call() {
    let h = Harness::new();
    let now = [Act::Continue(go_status::CONTINUE)];
    go::script([Reply::status(go_status::RUNNING).now(now)]);

    let status = h.request_headers(REQUEST, false);

    // Envoy forbids continuing inside the hook that stops, so the Continue waits for the
    // scheduler event.
    assert_eq!(status, headers_status::STOP_ITERATION);
    assert_eq!(continues(), []);
    assert_eq!(h.run_scheduled(), 1);
    assert_eq!(continues(), [(false, Some("scheduled"))]);
    assert!(headers_forwarded(DECODE));
    assert_eq!(h.violations(), Vec::<String>::new());
}

#[test]
fn headers_end_stream_async() {
    let h = Harness::new();
    go::script([Reply::status(go_status::RUNNING).later([Act::Continue(go_status::CONTINUE)])]);
    h.request_headers(&REQUEST[..4], true);

    go::run_goroutine();
    h.run_scheduled();

    assert_eq!(continues(), [(false, Some("scheduled"))]);
    assert!(headers_forwarded(DECODE));
    assert_eq!(go::calls().len(), 1);
    assert_eq!(h.violations(), Vec::<String>::new());
}

#[test]
fn unknown_status_fails() {
    let h = Harness::new();
    // StopNoBuffer is valid only for data; Envoy's golang filter stalls on it.
    go::script([Reply::status(go_status::STOP_NO_BUFFER)]);

    let status = h.request_headers(REQUEST, false);

    assert_eq!(status, headers_status::STOP_ITERATION);
    let responses = envoy::with(|fake| fake.responses());
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].status, 500);
    assert_eq!(responses[0].details, b"edgefn_unexpected_go_status");
    assert_eq!(h.violations(), Vec::<String>::new());
}
