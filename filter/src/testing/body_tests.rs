//! Body and trailer handling: the buffering statuses, data and trailers that arrive while Go
//! is busy, and what Envoy forwards in the end.

use crate::abi::{body_status, headers_status, trailers_status};
use crate::gohost::types::{capi, go_status};
use crate::shared::{DECODE, ENCODE};
use crate::testing::envoy;
use crate::testing::go::{self, Act, Phase, Reply};
use crate::testing::harness::{header_list, Harness};

const REQUEST: &[(&str, &str)] = &[
    (":method", "POST"),
    (":path", "/upload"),
    (":authority", "example.test"),
    (":scheme", "http"),
];

const GET: &[(&str, &str)] = &[
    (":method", "GET"),
    (":path", "/"),
    (":authority", "example.test"),
    (":scheme", "http"),
];

const TRAILERS: &[(&str, &str)] = &[("x-checksum", "abc123")];

fn forwarded_body(dir: usize) -> Vec<u8> {
    envoy::with(|fake| fake.dirs[dir].forwarded_body.clone())
}

fn headers_forwarded(dir: usize) -> bool {
    envoy::with(|fake| fake.dirs[dir].headers_forwarded)
}

fn trailers_forwarded(dir: usize) -> bool {
    envoy::with(|fake| fake.dirs[dir].trailers_forwarded)
}

fn continues() -> Vec<(bool, Option<&'static str>)> {
    envoy::with(|fake| fake.continues())
}

/// (bytes, end_stream) of every data call, in order.
fn data_seen() -> Vec<(Vec<u8>, bool)> {
    let calls = go::calls_in(Phase::Data);
    calls.into_iter().map(|c| (c.data, c.end_stream)).collect()
}

#[test]
fn buffer_all_rewrite() {
    let h = Harness::new();
    go::script([
        Reply::status(go_status::STOP_AND_BUFFER),
        Reply::status(go_status::CONTINUE).now([Act::SetBody(b"rewritten")]),
    ]);

    let statuses = [
        h.request_headers(REQUEST, false),
        h.request_body(b"aa", false),
        h.request_body(b"bb", false),
        h.request_body(b"cc", true),
    ];

    let expected = [
        headers_status::STOP_ITERATION,
        body_status::STOP_ITERATION_AND_BUFFER,
        body_status::STOP_ITERATION_AND_BUFFER,
        body_status::CONTINUE,
    ];
    assert_eq!(statuses, expected);
    assert_eq!(data_seen(), [(b"aabbcc".to_vec(), true)]);
    assert_eq!(go::statuses(&go::results()), [capi::OK]);
    assert_eq!(forwarded_body(DECODE), b"rewritten");
    assert!(headers_forwarded(DECODE));
    assert_eq!(continues(), []);
    assert_eq!(h.violations(), Vec::<String>::new());
}

#[test]
fn buffer_all_async_rewrite() {
    let h = Harness::new();
    let rewrite = [
        Act::ReadBody,
        Act::SetBody(b"from a goroutine"),
        Act::Continue(go_status::CONTINUE),
    ];
    go::script([
        Reply::status(go_status::STOP_AND_BUFFER),
        Reply::status(go_status::RUNNING).later(rewrite),
    ]);
    h.request_headers(REQUEST, false);
    h.request_body(b"aa", false);

    let status = h.request_body(b"bb", true);
    assert_eq!(status, body_status::STOP_ITERATION_AND_WATERMARK);
    let results = go::run_goroutine();
    assert_eq!(go::statuses(&results), [capi::OK, capi::OK, capi::OK]);
    assert_eq!(results[0].bytes.as_deref(), Some(&b"aabb"[..]));
    assert_eq!(forwarded_body(DECODE), b"");

    h.run_scheduled();
    assert_eq!(forwarded_body(DECODE), b"from a goroutine");
    assert_eq!(continues(), [(false, Some("scheduled"))]);
    assert_eq!(h.violations(), Vec::<String>::new());
}

#[test]
fn watermark_each_chunk() {
    let h = Harness::new();
    go::script([
        Reply::status(go_status::STOP_AND_BUFFER_WATERMARK),
        Reply::status(go_status::STOP_AND_BUFFER_WATERMARK),
        Reply::status(go_status::CONTINUE),
    ]);

    let statuses = [
        h.request_headers(REQUEST, false),
        h.request_body(b"aa", false),
        h.request_body(b"bb", true),
    ];

    let expected = [
        headers_status::STOP_ITERATION,
        body_status::STOP_ITERATION_AND_WATERMARK,
        body_status::CONTINUE,
    ];
    assert_eq!(statuses, expected);
    assert_eq!(
        data_seen(),
        [(b"aa".to_vec(), false), (b"bb".to_vec(), true)]
    );
    assert_eq!(forwarded_body(DECODE), b"aabb");
    assert_eq!(h.violations(), Vec::<String>::new());
}

#[test]
fn watermark_keeps_rewrite() {
    let h = Harness::new();
    go::script([
        Reply::status(go_status::CONTINUE),
        Reply::status(go_status::STOP_AND_BUFFER_WATERMARK).now([Act::SetBody(b"AA")]),
        Reply::status(go_status::CONTINUE),
    ]);
    h.request_headers(REQUEST, false);

    h.request_body(b"aa", false);
    h.request_body(b"bb", true);

    assert_eq!(forwarded_body(DECODE), b"AAbb");
    assert_eq!(h.violations(), Vec::<String>::new());
}

#[test]
fn stop_no_buffer_drops_chunk() {
    let h = Harness::new();
    go::script([
        Reply::status(go_status::CONTINUE),
        Reply::status(go_status::STOP_NO_BUFFER),
        Reply::status(go_status::CONTINUE),
    ]);

    let statuses = [
        h.request_headers(REQUEST, false),
        h.request_body(b"aa", false),
        h.request_body(b"bb", true),
    ];

    assert_eq!(statuses[0], headers_status::CONTINUE);
    assert_ne!(statuses[1], body_status::CONTINUE);
    assert_eq!(statuses[2], body_status::CONTINUE);
    assert_eq!(
        data_seen(),
        [(b"aa".to_vec(), false), (b"bb".to_vec(), true)]
    );
    assert_eq!(forwarded_body(DECODE), b"bb");
    assert_eq!(h.violations(), Vec::<String>::new());
}

#[test]
fn sync_data_rewrite() {
    let h = Harness::new();
    go::script([
        Reply::status(go_status::CONTINUE),
        Reply::status(go_status::CONTINUE).now([Act::SetBody(b"xyz")]),
    ]);
    h.request_headers(REQUEST, false);

    let status = h.request_body(b"abc", true);

    assert_eq!(status, body_status::CONTINUE);
    assert_eq!(forwarded_body(DECODE), b"xyz");
    assert_eq!(h.violations(), Vec::<String>::new());
}

#[test]
fn data_during_async_headers() {
    let h = Harness::new();
    go::script([Reply::status(go_status::RUNNING).later([Act::Continue(go_status::CONTINUE)])]);
    h.request_headers(REQUEST, false);

    let first = h.request_body(b"aa", false);
    let last = h.request_body(b"bb", true);
    assert_ne!(first, body_status::CONTINUE);
    assert_ne!(last, body_status::CONTINUE);
    assert_eq!(data_seen(), []);
    assert_eq!(
        envoy::with(|fake| fake.dirs[DECODE].buffered_bytes()),
        b"aabb"
    );

    go::run_goroutine();
    h.run_scheduled();
    assert_eq!(data_seen(), [(b"aabb".to_vec(), true)]);
    assert_eq!(forwarded_body(DECODE), b"aabb");
    assert!(headers_forwarded(DECODE));
    assert_eq!(continues(), [(false, Some("scheduled"))]);
    assert_eq!(h.violations(), Vec::<String>::new());
}

#[test]
fn data_during_async_headers_open() {
    let h = Harness::new();
    go::script([Reply::status(go_status::RUNNING).later([Act::Continue(go_status::CONTINUE)])]);
    h.request_headers(REQUEST, false);
    h.request_body(b"aa", false);

    go::run_goroutine();
    h.run_scheduled();
    assert_eq!(data_seen(), [(b"aa".to_vec(), false)]);

    let status = h.request_body(b"cc", true);
    assert_eq!(status, body_status::CONTINUE);
    assert_eq!(
        data_seen(),
        [(b"aa".to_vec(), false), (b"cc".to_vec(), true)]
    );
    assert_eq!(forwarded_body(DECODE), b"aacc");
    assert_eq!(h.violations(), Vec::<String>::new());
}

#[test]
fn data_during_async_data() {
    let h = Harness::new();
    let rewrite = [Act::SetBody(b"AA"), Act::Continue(go_status::CONTINUE)];
    go::script([
        Reply::status(go_status::CONTINUE),
        Reply::status(go_status::RUNNING).later(rewrite),
    ]);
    h.request_headers(REQUEST, false);
    h.request_body(b"aa", false);

    let status = h.request_body(b"bb", true);
    assert_ne!(status, body_status::CONTINUE);
    go::run_goroutine();
    h.run_scheduled();

    assert_eq!(
        data_seen(),
        [(b"aa".to_vec(), false), (b"bb".to_vec(), true)]
    );
    assert_eq!(forwarded_body(DECODE), b"AAbb");
    assert_eq!(h.violations(), Vec::<String>::new());
}

#[test]
fn trailers_during_async_headers() {
    let h = Harness::new();
    go::script([
        Reply::status(go_status::RUNNING).later([Act::Continue(go_status::CONTINUE)]),
        Reply::status(go_status::CONTINUE).now([Act::CopyTrailers]),
    ]);
    h.request_headers(REQUEST, false);

    let status = h.request_trailers(TRAILERS);
    assert_eq!(status, trailers_status::STOP_ITERATION);
    assert_eq!(go::calls_in(Phase::Trailers), []);

    go::run_goroutine();
    h.run_scheduled();
    let trailers = go::calls_in(Phase::Trailers);
    assert_eq!(trailers.len(), 1);
    assert!(trailers[0].end_stream);
    assert_eq!(go::results()[1].headers, Some(header_list(TRAILERS)));
    assert_eq!(data_seen(), []);
    assert!(trailers_forwarded(DECODE));
    assert_eq!(continues(), [(false, Some("scheduled"))]);
    assert_eq!(h.violations(), Vec::<String>::new());
}

#[test]
fn trailers_after_buffered_body() {
    let h = Harness::new();
    go::script([
        Reply::status(go_status::STOP_AND_BUFFER),
        Reply::status(go_status::CONTINUE),
        Reply::status(go_status::CONTINUE),
    ]);
    h.request_headers(REQUEST, false);
    h.request_body(b"aa", false);

    let status = h.request_trailers(TRAILERS);

    assert_eq!(status, trailers_status::CONTINUE);
    assert_eq!(data_seen(), [(b"aa".to_vec(), false)]);
    assert_eq!(go::calls_in(Phase::Trailers).len(), 1);
    assert_eq!(forwarded_body(DECODE), b"aa");
    assert!(trailers_forwarded(DECODE));
    assert_eq!(h.violations(), Vec::<String>::new());
}

#[test]
fn trailers_during_async_data() {
    let h = Harness::new();
    go::script([
        Reply::status(go_status::CONTINUE),
        Reply::status(go_status::RUNNING).later([Act::Continue(go_status::CONTINUE)]),
        Reply::status(go_status::CONTINUE),
    ]);
    h.request_headers(REQUEST, false);
    h.request_body(b"aa", false);

    let status = h.request_trailers(TRAILERS);
    assert_eq!(status, trailers_status::STOP_ITERATION);
    go::run_goroutine();
    h.run_scheduled();

    assert_eq!(go::calls_in(Phase::Trailers).len(), 1);
    assert_eq!(forwarded_body(DECODE), b"aa");
    assert!(trailers_forwarded(DECODE));
    assert_eq!(h.violations(), Vec::<String>::new());
}

#[test]
fn buffer_on_end_stream_headers() {
    let h = Harness::new();
    go::script([Reply::status(go_status::STOP_AND_BUFFER)]);

    let status = h.request_headers(GET, true);

    assert_eq!(status, headers_status::CONTINUE);
    // The fake raised the SDK's panic reply, which the host accepted without a reply.
    assert_eq!(go::statuses(&go::results()), [capi::OK]);
    assert_eq!(envoy::with(|fake| fake.responses()), []);
    assert!(headers_forwarded(DECODE));
    assert_eq!(h.run_scheduled(), 0);
    assert_eq!(h.violations(), Vec::<String>::new());
}

#[test]
fn watermark_on_end_stream_response() {
    let h = Harness::new();
    go::script([
        Reply::status(go_status::CONTINUE),
        Reply::status(go_status::STOP_AND_BUFFER_WATERMARK),
    ]);
    h.request_headers(GET, true);

    let status = h.response_headers(&[(":status", "204")], true);

    assert_eq!(status, headers_status::CONTINUE);
    assert_eq!(envoy::with(|fake| fake.responses()), []);
    assert!(headers_forwarded(ENCODE));
    assert_eq!(h.violations(), Vec::<String>::new());
}

#[test]
fn buffer_on_trailers_fails() {
    let h = Harness::new();
    go::script([
        Reply::status(go_status::CONTINUE),
        Reply::status(go_status::STOP_AND_BUFFER),
    ]);
    h.request_headers(REQUEST, false);

    // The SDK panics for a buffering status from trailers too, and that is a plugin bug.
    h.request_trailers(TRAILERS);
    h.run_scheduled();

    let responses = envoy::with(|fake| fake.responses());
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].status, 500);
    assert_eq!(h.violations(), Vec::<String>::new());
}

#[test]
fn response_buffer_all_rewrite() {
    let h = Harness::new();
    go::script([
        Reply::status(go_status::CONTINUE),
        Reply::status(go_status::STOP_AND_BUFFER),
        Reply::status(go_status::CONTINUE).now([Act::SetBody(b"<html>rewritten</html>")]),
    ]);
    h.request_headers(GET, true);
    h.response_headers(&[(":status", "200")], false);

    h.response_body(b"<html>", false);
    let status = h.response_body(b"</html>", true);

    assert_eq!(status, body_status::CONTINUE);
    assert_eq!(forwarded_body(ENCODE), b"<html>rewritten</html>");
    assert_eq!(h.violations(), Vec::<String>::new());
}

#[test]
fn trailers_after_buffer_no_body() {
    let h = Harness::new();
    go::script([
        Reply::status(go_status::STOP_AND_BUFFER),
        Reply::status(go_status::CONTINUE),
    ]);
    h.request_headers(REQUEST, false);

    let status = h.request_trailers(TRAILERS);

    assert_eq!(status, trailers_status::CONTINUE);
    assert_eq!(data_seen(), []);
    assert_eq!(go::calls_in(Phase::Trailers).len(), 1);
    assert!(headers_forwarded(DECODE));
    assert!(trailers_forwarded(DECODE));
    assert_eq!(h.violations(), Vec::<String>::new());
}

#[test]
fn data_and_trailers_during_async_headers() {
    let h = Harness::new();
    go::script([Reply::status(go_status::RUNNING).later([Act::Continue(go_status::CONTINUE)])]);
    h.request_headers(REQUEST, false);
    h.request_body(b"aa", false);
    h.request_trailers(TRAILERS);

    go::run_goroutine();
    h.run_scheduled();

    // The body goes to Go before the trailers, without end_stream because trailers follow.
    assert_eq!(data_seen(), [(b"aa".to_vec(), false)]);
    assert_eq!(go::calls_in(Phase::Trailers).len(), 1);
    assert_eq!(forwarded_body(DECODE), b"aa");
    assert!(trailers_forwarded(DECODE));
    assert_eq!(continues(), [(false, Some("scheduled"))]);
    assert_eq!(h.violations(), Vec::<String>::new());
}

#[test]
fn async_buffer_all() {
    let h = Harness::new();
    go::script([
        Reply::status(go_status::RUNNING).later([Act::Continue(go_status::STOP_AND_BUFFER)]),
        Reply::status(go_status::CONTINUE),
    ]);
    h.request_headers(REQUEST, false);
    h.request_body(b"aa", false);
    go::run_goroutine();
    h.run_scheduled();
    assert_eq!(data_seen(), []);
    assert_eq!(continues(), []);

    let status = h.request_body(b"bb", true);

    assert_eq!(status, body_status::CONTINUE);
    assert_eq!(data_seen(), [(b"aabb".to_vec(), true)]);
    assert_eq!(forwarded_body(DECODE), b"aabb");
    assert_eq!(h.violations(), Vec::<String>::new());
}

#[test]
fn buffer_all_empty_last_chunk() {
    let h = Harness::new();
    go::script([
        Reply::status(go_status::STOP_AND_BUFFER),
        Reply::status(go_status::CONTINUE),
    ]);
    h.request_headers(REQUEST, false);
    h.request_body(b"aa", false);

    let status = h.request_body(b"", true);

    assert_eq!(status, body_status::CONTINUE);
    assert_eq!(data_seen(), [(b"aa".to_vec(), true)]);
    assert_eq!(forwarded_body(DECODE), b"aa");
    assert_eq!(h.violations(), Vec::<String>::new());
}

#[test]
fn empty_end_stream_chunk() {
    let h = Harness::new();
    h.request_headers(REQUEST, false);
    h.request_body(b"aa", false);

    let status = h.request_body(b"", true);

    assert_eq!(status, body_status::CONTINUE);
    assert_eq!(data_seen(), [(b"aa".to_vec(), false), (Vec::new(), true)]);
    assert_eq!(forwarded_body(DECODE), b"aa");
    assert_eq!(h.violations(), Vec::<String>::new());
}
