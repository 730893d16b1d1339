//! Streams that end early or in bulk: client resets before and while a Go plugin works on the
//! request, and thousands of requests whose per-request Go state must be released exactly once.
//!
//! Needs `libedgefn.so` (`cargo build --release -p edgefn-filter`) and the Go test plugins
//! (`scripts/setup.sh`).

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use edgefn_integration::{Client, EchoUpstream, Envoy, FileServer, Protocol, Request, Revision};
use support::{
    assert_admin_ready, crash_lines, h2_reset_after, lines_with, plugin_path, tail, wait_until,
    write_and_close, write_and_read_status_line, EDGEFN_PANIC_MARKER,
};

const PLUGIN_FILE: &str = "testplugins.so";

async fn start_envoy(upstream: &EchoUpstream, revision: &Revision) -> Envoy {
    Envoy::builder("edgefn.yaml")
        .var("UPSTREAM_PORT", upstream.port())
        .revision(revision)
        .concurrency(2)
        .start()
        .await
        .unwrap_or_else(|error| panic!("{error}"))
}

fn testplugins_server() -> FileServer {
    let plugin = plugin_path(PLUGIN_FILE);
    FileServer::start(plugin.parent().unwrap()).unwrap()
}

/// Checks that the log shows no crash of Envoy or Go and no panic caught inside edgefn.
fn assert_no_crash(envoy: &Envoy) {
    let log = envoy.log_text();
    let crashes = crash_lines(&log);
    assert!(crashes.is_empty(), "crash in the log: {crashes:#?}");
    let panics = lines_with(&log, &[EDGEFN_PANIC_MARKER]);
    assert!(panics.is_empty(), "edgefn caught panics: {panics:#?}");
}

// === Resets before and while the plugin works ===

/// Aborted requests of each kind sent to one Envoy.
const RESETS_PER_KIND: usize = 10;
/// How long async-continue keeps each request before its goroutine calls Continue.
const PLUGIN_DELAY: Duration = Duration::from_millis(200);
/// What the Go SDK logs when a host call returns the status for a destroyed stream.
const LATE_CALL_ERROR: &str = "the filter is already destroyed (host returned CAPIFilterIsDestroy)";
/// How long a leaving client waits before it gives up, well within [`PLUGIN_DELAY`].
const CLIENT_PATIENCE: Duration = Duration::from_millis(50);

fn http1_request_head(method: &str, path: &str, extra_headers: &str) -> String {
    format!("{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n{extra_headers}\r\n")
}

/// Sends every kind of aborted request `RESETS_PER_KIND` times, all at once.
async fn send_aborted_requests(addr: SocketAddr) {
    let mut tasks = Vec::new();
    for index in 0..RESETS_PER_KIND {
        // HTTP/1.1: the headers stop in the middle of a header line, so Envoy never has a
        // complete request and the plugin is never called.
        let partial = format!("GET /partial/{index} HTTP/1.1\r\nhost: 127.0.0.1\r\nx-cut: ");
        tasks.push(tokio::spawn(async move {
            write_and_close(addr, partial.as_bytes(), Duration::ZERO).await;
        }));

        // HTTP/1.1: a complete GET, abandoned while the plugin's goroutine sleeps.
        let complete = http1_request_head("GET", &format!("/leave/{index}"), "");
        tasks.push(tokio::spawn(async move {
            write_and_close(addr, complete.as_bytes(), CLIENT_PATIENCE).await;
        }));

        // HTTP/2: headers of a POST whose body never comes, reset at once, and reset while
        // the plugin's goroutine sleeps.
        let path = format!("/reset-now/{index}");
        tasks.push(tokio::spawn(async move {
            h2_reset_after(addr, &path, Duration::ZERO).await;
        }));
        let path = format!("/reset-later/{index}");
        tasks.push(tokio::spawn(async move {
            h2_reset_after(addr, &path, CLIENT_PATIENCE).await;
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test]
async fn client_resets_leave_envoy_serving() {
    let files = testplugins_server();
    let upstream = EchoUpstream::start().unwrap();
    let config = format!(
        r#"{{"phase": "decodeHeaders", "delayMs": {}}}"#,
        PLUGIN_DELAY.as_millis()
    );
    let revision = Revision::new("resets-v1", "async-continue", &files.url(PLUGIN_FILE))
        .plugin_config(&config);
    let envoy = start_envoy(&upstream, &revision).await;

    send_aborted_requests(envoy.listen_addr()).await;

    // A goroutine that calls into the host after its stream was destroyed gets an error
    // status, which the Go SDK turns into a panic that RecoverPanic logs. That happens for
    // each request abandoned while its goroutine slept, and for the HTTP/2 requests reset at
    // once when Envoy ran the plugin before it read the RST_STREAM.
    // NOTE: async-continue sets a header before it calls Continue, so the late call that
    // meets the destroyed stream is the header copy. No test plugin makes Continue itself
    // the first late call.
    let abandoned_in_go = 2 * RESETS_PER_KIND;
    let late_call_count = || lines_with(&envoy.log_text(), &[LATE_CALL_ERROR]).len();
    let all_late_calls_seen = wait_until(100, async || late_call_count() >= abandoned_in_go).await;
    let late_calls = late_call_count();
    println!("{late_calls} host calls after a reset got the destroyed-stream status");
    assert!(
        all_late_calls_seen,
        "{late_calls} late host calls got an error, expected at least {abandoned_in_go}"
    );
    assert!(
        late_calls <= 3 * RESETS_PER_KIND,
        "{late_calls} late host calls got an error"
    );

    assert_admin_ready(&envoy).await;
    for protocol in [Protocol::Http1, Protocol::Http2] {
        let response = Client::new(envoy.listen_addr(), protocol)
            .send(Request::get("/after-resets"))
            .await
            .unwrap_or_else(|error| panic!("{protocol:?}: {error}\n{}", tail(&envoy.log_text())));
        assert_eq!(response.status, 200, "{protocol:?}");
        let echoed = response.echoed().unwrap();
        assert_eq!(echoed.header_values("x-async"), ["done"], "{protocol:?}");
    }
    let resets = envoy
        .stat("http.ingress.downstream_rq_rx_reset")
        .await
        .unwrap();
    // Envoy counts every abandoned stream as a reset received. That includes an HTTP/1.1
    // connection closed in the middle of the request headers, because its stream starts with
    // the request line.
    let aborted = 4 * RESETS_PER_KIND as u64;
    assert_eq!(resets, Some(aborted), "streams reset by the client");
    assert_no_crash(&envoy);
}

// === Per-request Go state released on every path ===

/// Concurrent client tasks during a load phase.
const CLIENT_TASKS: usize = 16;
const WARM_UP_REQUESTS: usize = 200;
const FIRST_LOAD_REQUESTS: usize = 2000;
const ABORTED_REQUESTS: usize = 200;
const SECOND_LOAD_REQUESTS: usize = 1000;
/// Reads of `/destroy-count`, 100 ms apart, while waiting for the count to stop moving.
const SETTLE_READS: u32 = 50;
/// Allowed RSS growth from after warm-up to after the load, because the Go heap and Envoy's
/// buffers may keep some of what the load used. It only catches gross leaks.
// NOTE: the bound is a generous guess, not a measured limit.
const RSS_GROWTH_LIMIT: u64 = 64 << 20;

/// Sends `count` requests to destroy-counter, `/load/<n>` for n in `first..first + count`,
/// from `CLIENT_TASKS` tasks, alternating HTTP/1.1 and HTTP/2. Returns the requests whose
/// response was wrong, with what was received: 403 is expected for odd `n`, 200 for even.
async fn send_load(addr: SocketAddr, first: usize, count: usize) -> Vec<String> {
    let mut tasks = Vec::new();
    for task in 0..CLIENT_TASKS {
        tasks.push(tokio::spawn(async move {
            let mut wrong = Vec::new();
            for number in (first + task..first + count).step_by(CLIENT_TASKS) {
                let protocol = if number % 2 == 0 {
                    Protocol::Http1
                } else {
                    Protocol::Http2
                };
                let path = format!("/load/{number}");
                let expected = if number % 2 == 1 { 403 } else { 200 };
                match Client::new(addr, protocol).send(Request::get(&path)).await {
                    Ok(response) if response.status == expected => {}
                    Ok(response) => wrong.push(format!("{path}: status {}", response.status)),
                    Err(error) => wrong.push(format!("{path}: {error}")),
                }
            }
            wrong
        }));
    }
    let mut wrong = Vec::new();
    for task in tasks {
        wrong.extend(task.await.unwrap());
    }
    wrong
}

/// Sends `count` HTTP/1.1 requests that the client abandons mid-body: each announces 100
/// bytes and sends 10. For odd paths the client waits for the plugin's 403 before it closes,
/// so those requests certainly reached the plugin. For even paths it closes at once, and
/// whether Envoy parsed the headers, creating the Go request, before it saw the close depends
/// on timing. Returns how many 403 status lines arrived.
async fn send_aborted_uploads(addr: SocketAddr, count: usize) -> usize {
    let mut tasks = Vec::new();
    for number in 0..count {
        let head = http1_request_head(
            "POST",
            &format!("/aborted/{number}"),
            "content-length: 100\r\n",
        );
        let request = format!("{head}0123456789");
        tasks.push(tokio::spawn(async move {
            if number % 2 == 1 {
                let status_line = write_and_read_status_line(addr, request.as_bytes()).await;
                usize::from(status_line.starts_with("HTTP/1.1 403 "))
            } else {
                write_and_close(addr, request.as_bytes(), Duration::ZERO).await;
                0
            }
        }));
    }
    let mut forbidden = 0;
    for task in tasks {
        forbidden += task.await.unwrap();
    }
    forbidden
}

/// Reads destroy-counter's count of `OnDestroy` calls through `GET /destroy-count`.
///
/// Each read is itself a request that reaches the plugin and is destroyed after its reply, so
/// the count includes the reads before it. [`DestroyCounter::settle`] subtracts them.
struct DestroyCounter {
    client: Client,
    reads: i64,
}

impl DestroyCounter {
    async fn read(&mut self) -> i64 {
        let response = self
            .client
            .send(Request::get("/destroy-count"))
            .await
            .unwrap_or_else(|error| panic!("GET /destroy-count: {error}"));
        self.reads += 1;
        assert_eq!(response.status, 200, "GET /destroy-count");
        let body = response.body_text();
        body.trim()
            .parse()
            .unwrap_or_else(|error| panic!("/destroy-count body {body:?}: {error}"))
    }

    /// Returns the number of destroys of requests other than the reads, once two reads 100 ms
    /// apart agree on it (or after `SETTLE_READS` reads).
    async fn settle(&mut self) -> i64 {
        let mut previous = None;
        for _ in 0..SETTLE_READS {
            let reads_before = self.reads;
            let others = self.read().await - reads_before;
            if previous == Some(others) {
                break;
            }
            previous = Some(others);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        previous.expect("SETTLE_READS is at least 1")
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroy_runs_once_per_request() {
    let files = testplugins_server();
    let upstream = EchoUpstream::start().unwrap();
    let revision = Revision::new(
        "destroy-count-v1",
        "destroy-counter",
        &files.url(PLUGIN_FILE),
    );
    let envoy = start_envoy(&upstream, &revision).await;
    let addr = envoy.listen_addr();
    let mut counter = DestroyCounter {
        client: Client::http1(addr),
        reads: 0,
    };

    // Warm-up: Envoy's and Go's pools and caches reach their working size.
    let wrong = send_load(addr, 0, WARM_UP_REQUESTS).await;
    assert!(wrong.is_empty(), "warm-up: {wrong:#?}");
    let warm_rss = envoy.rss_bytes().unwrap();
    let mut expected = WARM_UP_REQUESTS as i64;
    assert_eq!(
        counter.settle().await,
        expected,
        "destroys after the warm-up"
    );

    // Every request completes: the count is exact.
    let wrong = send_load(addr, WARM_UP_REQUESTS, FIRST_LOAD_REQUESTS).await;
    assert!(wrong.is_empty(), "first load: {wrong:#?}");
    expected += FIRST_LOAD_REQUESTS as i64;
    assert_eq!(
        counter.settle().await,
        expected,
        "destroys after the first load"
    );

    // Aborted uploads: at least the ones that got a 403 reached the plugin, at most all.
    let forbidden = send_aborted_uploads(addr, ABORTED_REQUESTS).await;
    assert_eq!(
        forbidden,
        ABORTED_REQUESTS / 2,
        "aborted uploads answered 403"
    );
    let aborted_destroys = counter.settle().await - expected;
    println!("{aborted_destroys} of {ABORTED_REQUESTS} aborted requests reached the plugin");
    assert!(
        aborted_destroys >= forbidden as i64,
        "{aborted_destroys} destroys for aborted requests, {forbidden} of which got a 403"
    );
    assert!(
        aborted_destroys <= ABORTED_REQUESTS as i64,
        "{aborted_destroys} destroys for {ABORTED_REQUESTS} aborted requests"
    );
    expected += aborted_destroys;

    // After the aborts, counting is exact again.
    let first = WARM_UP_REQUESTS + FIRST_LOAD_REQUESTS;
    let wrong = send_load(addr, first, SECOND_LOAD_REQUESTS).await;
    assert!(wrong.is_empty(), "second load: {wrong:#?}");
    expected += SECOND_LOAD_REQUESTS as i64;
    assert_eq!(
        counter.settle().await,
        expected,
        "destroys after the second load"
    );

    tokio::time::sleep(Duration::from_secs(1)).await;
    let loaded_rss = envoy.rss_bytes().unwrap();
    println!(
        "Envoy RSS: {:.1} MiB after warm-up, {:.1} MiB after the load and a 1 s pause",
        mib(warm_rss),
        mib(loaded_rss)
    );
    assert!(
        loaded_rss <= warm_rss + RSS_GROWTH_LIMIT,
        "RSS grew from {:.1} MiB to {:.1} MiB",
        mib(warm_rss),
        mib(loaded_rss)
    );
    assert_no_crash(&envoy);
}
