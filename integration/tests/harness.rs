//! The harness itself: the echo upstream and the file server without Envoy, and the Envoy
//! runner's validate, failed-start and resource readings.

use edgefn_integration::{
    Client, ClientError, EchoUpstream, Envoy, Fault, FileServer, Protocol, Request, CHUNKS_HEADER,
    DELAY_HEADER, STATUS_HEADER, TRAILER_HEADER,
};
use hyper::StatusCode;

#[tokio::test]
async fn echo_returns_request_over_both_protocols() {
    let upstream = EchoUpstream::start().unwrap();

    for protocol in [Protocol::Http1, Protocol::Http2] {
        let request = Request::post("/a/b?c=d", "body text")
            .header("x-one", "1")
            .header("x-two", "2a")
            .header("x-two", "2b");
        let response = Client::new(upstream.addr(), protocol)
            .send(request)
            .await
            .unwrap();

        assert_eq!(response.status, 200, "{protocol:?}");
        assert_eq!(
            response.header("content-type"),
            Some("application/json"),
            "{protocol:?}"
        );
        let echoed = response.echoed().unwrap();
        assert_eq!(echoed.method, "POST", "{protocol:?}");
        assert_eq!(echoed.path, "/a/b?c=d", "{protocol:?}");
        assert_eq!(echoed.body, "body text", "{protocol:?}");
        assert_eq!(echoed.header_values("x-one"), ["1"], "{protocol:?}");
        assert_eq!(echoed.header_values("x-two"), ["2a", "2b"], "{protocol:?}");
    }
}

#[tokio::test]
async fn echo_honours_control_headers() {
    let upstream = EchoUpstream::start().unwrap();
    let client = Client::http2(upstream.addr());

    let request = Request::post("/", "x")
        .header(STATUS_HEADER, "418")
        .header(TRAILER_HEADER, "x-first=1")
        .header(TRAILER_HEADER, "x-second=2")
        .header(CHUNKS_HEADER, "3")
        .header(DELAY_HEADER, "10")
        .trailer("x-request-trailer", "t");
    let response = client.send(request).await.unwrap();

    assert_eq!(response.status, 418);
    assert_eq!(response.trailer("x-first"), Some("1"));
    assert_eq!(response.trailer("x-second"), Some("2"));
    let echoed = response.echoed().unwrap();
    assert_eq!(echoed.trailer_values("x-request-trailer"), ["t"]);
}

#[tokio::test]
async fn echo_chunks_http1_body() {
    let upstream = EchoUpstream::start().unwrap();

    let request = Request::get("/").header(CHUNKS_HEADER, "5");
    let response = Client::http1(upstream.addr()).send(request).await.unwrap();

    assert_eq!(response.status, 200);
    assert_eq!(response.header("transfer-encoding"), Some("chunked"));
    assert_eq!(response.header("content-length"), None);
    assert_eq!(response.echoed().unwrap().path, "/");
}

#[tokio::test]
async fn echo_sends_http1_trailers() {
    let upstream = EchoUpstream::start().unwrap();
    let client = Client::http1(upstream.addr());

    let accepted = Request::get("/")
        .header("te", "trailers")
        .header(TRAILER_HEADER, "x-t=1");
    let response = client.send(accepted).await.unwrap();
    assert_eq!(response.header("trailer"), Some("x-t"));
    assert_eq!(response.trailer("x-t"), Some("1"));

    let not_accepted = Request::get("/").header(TRAILER_HEADER, "x-t=1");
    let response = client.send(not_accepted).await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.trailer("x-t"), None);
}

#[tokio::test]
async fn echo_rejects_invalid_control_header() {
    let upstream = EchoUpstream::start().unwrap();

    for (name, value) in [
        (STATUS_HEADER, "abc"),
        (TRAILER_HEADER, "no-equals-sign"),
        (CHUNKS_HEADER, "0"),
        (DELAY_HEADER, "999999999"),
    ] {
        let request = Request::get("/").header(name, value);
        let response = Client::http1(upstream.addr()).send(request).await.unwrap();

        assert_eq!(response.status, 400, "{name}: {value}");
        assert!(
            response.body_text().contains(name),
            "{name}: {}",
            response.body_text()
        );
    }
}

fn plugin_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("plugin.so"), vec![7u8; 10_000]).unwrap();
    dir
}

#[tokio::test]
async fn file_server_serves_and_counts() {
    let dir = plugin_dir();
    let server = FileServer::start(dir.path()).unwrap();
    let client = Client::http1(server.addr());

    let first = client.send(Request::get("/plugin.so")).await.unwrap();
    let second = client.send(Request::get("/plugin.so")).await.unwrap();

    assert_eq!(first.status, 200);
    assert_eq!(first.body.len(), 10_000);
    assert!(first.body.iter().all(|byte| *byte == 7));
    assert_eq!(second.status, 200);
    assert_eq!(server.request_count("/plugin.so"), 2);
    assert_eq!(server.request_count("/other.so"), 0);
    assert_eq!(
        server.url("plugin.so"),
        format!("http://{}/plugin.so", server.addr())
    );
}

#[tokio::test]
async fn file_server_rejects_missing_and_escaping_paths() {
    let dir = plugin_dir();
    let served = dir.path().join("www");
    std::fs::create_dir(&served).unwrap();
    std::fs::write(served.join("inside.so"), b"inside").unwrap();
    let server = FileServer::start(&served).unwrap();
    let client = Client::http1(server.addr());

    let inside = client.send(Request::get("/inside.so")).await.unwrap();
    assert_eq!(inside.status, 200);
    for path in ["/../plugin.so", "/www/../../plugin.so", "/", "/missing.so"] {
        let response = client.send(Request::get(path)).await.unwrap();
        assert_eq!(response.status, 404, "{path}");
    }
}

#[tokio::test]
async fn file_server_injects_faults() {
    let dir = plugin_dir();
    let server = FileServer::start(dir.path()).unwrap();
    let client = Client::http1(server.addr());

    server.set_fault("/plugin.so", Fault::Status(StatusCode::NOT_FOUND));
    assert_eq!(
        client
            .send(Request::get("/plugin.so"))
            .await
            .unwrap()
            .status,
        404
    );

    server.set_fault(
        "/plugin.so",
        Fault::Status(StatusCode::INTERNAL_SERVER_ERROR),
    );
    assert_eq!(
        client
            .send(Request::get("/plugin.so"))
            .await
            .unwrap()
            .status,
        500
    );

    server.set_fault("/plugin.so", Fault::CloseEarly);
    let error = client.send(Request::get("/plugin.so")).await.unwrap_err();
    assert!(matches!(error, ClientError::Request { .. }), "{error}");

    server.clear_fault("/plugin.so");
    assert_eq!(
        client
            .send(Request::get("/plugin.so"))
            .await
            .unwrap()
            .status,
        200
    );
    assert_eq!(server.request_count("/plugin.so"), 4);
}

#[tokio::test]
async fn envoy_validate_reports_status() {
    let upstream = EchoUpstream::start().unwrap();

    let good = Envoy::builder("no-filter.yaml").var("UPSTREAM_PORT", upstream.port());
    let outcome = good.validate().await.unwrap();
    assert!(outcome.status.success(), "{}", outcome.output);

    let outcome = Envoy::validate("static_resources: {clusters: [{name: 7}]}\n")
        .await
        .unwrap();
    assert!(!outcome.status.success(), "{}", outcome.output);
    assert!(!outcome.output.is_empty());
}

#[tokio::test]
async fn envoy_start_expecting_failure_returns_log() {
    // A port that is not a number is a config error Envoy reports when it starts.
    let builder = Envoy::builder("no-filter.yaml").var("UPSTREAM_PORT", "not-a-port");

    let failed = builder.start_expecting_failure().await.unwrap();

    assert!(!failed.status.success(), "{}", failed.log);
    assert!(failed.log.contains("not-a-port"), "{}", failed.log);
}

#[tokio::test]
async fn envoy_reports_stats_and_resources() {
    let upstream = EchoUpstream::start().unwrap();
    let envoy = Envoy::builder("no-filter.yaml")
        .var("UPSTREAM_PORT", upstream.port())
        .start()
        .await
        .unwrap();

    let response = Client::http1(envoy.listen_addr())
        .send(Request::get("/"))
        .await
        .unwrap();
    assert_eq!(response.status, 200);

    let completed = envoy
        .stat("cluster.upstream.upstream_rq_completed")
        .await
        .unwrap();
    assert_eq!(completed, Some(1));
    assert_eq!(envoy.stat("no.such.stat").await.unwrap(), None);
    assert!(envoy.rss_bytes().unwrap() > 1024 * 1024);
    envoy.cpu_time().unwrap();
    assert!(
        envoy.log_text().contains("starting main dispatch loop"),
        "{}",
        envoy.log_text()
    );
}
