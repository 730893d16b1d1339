//! Envoy 1.40 without edgefn: the plain proxy path and a stock filter (Lua), over HTTP/1.1 and
//! HTTP/2. These pin down what the edgefn tests build on.

use edgefn_integration::{
    Client, EchoUpstream, Envoy, Protocol, Request, CHUNKS_HEADER, STATUS_HEADER, TRAILER_HEADER,
};

async fn start_envoy(template: &str, upstream: &EchoUpstream) -> Envoy {
    Envoy::builder(template)
        .var("UPSTREAM_PORT", upstream.port())
        .concurrency(2)
        .start()
        .await
        .unwrap_or_else(|error| panic!("starting Envoy with {template}: {error}"))
}

#[tokio::test]
async fn no_filter_proxies_http1() {
    let upstream = EchoUpstream::start().unwrap();
    let envoy = start_envoy("no-filter.yaml", &upstream).await;

    let request = Request::post("/echo?q=1", "hello over http/1.1")
        .header("x-repeat", "first")
        .header("x-repeat", "second");
    let response = Client::http1(envoy.listen_addr())
        .send(request)
        .await
        .unwrap();

    assert_eq!(response.status, 200, "{}", envoy.log_text());
    assert_eq!(response.header("server"), Some("envoy"));
    let echoed = response.echoed().unwrap();
    assert_eq!(echoed.method, "POST");
    assert_eq!(echoed.path, "/echo?q=1");
    assert_eq!(echoed.body, "hello over http/1.1");
    assert_eq!(echoed.header_values("x-repeat"), ["first", "second"]);
    assert!(
        echoed.header("x-request-id").is_some(),
        "Envoy adds x-request-id: {echoed:?}"
    );
}

#[tokio::test]
async fn no_filter_proxies_http2_with_trailers() {
    let upstream = EchoUpstream::start().unwrap();
    let envoy = start_envoy("no-filter.yaml", &upstream).await;

    let request = Request::post("/h2", "hello over http/2")
        .header("x-repeat", "first")
        .header("x-repeat", "second")
        .header(TRAILER_HEADER, "x-response-trailer=from-upstream")
        .trailer("x-request-trailer", "from-client");
    let response = Client::http2(envoy.listen_addr())
        .send(request)
        .await
        .unwrap();

    assert_eq!(response.status, 200, "{}", envoy.log_text());
    let echoed = response.echoed().unwrap();
    assert_eq!(echoed.method, "POST");
    assert_eq!(echoed.path, "/h2");
    assert_eq!(echoed.body, "hello over http/2");
    assert_eq!(echoed.header_values("x-repeat"), ["first", "second"]);
    assert_eq!(echoed.trailer_values("x-request-trailer"), ["from-client"]);
    assert_eq!(
        response.trailer("x-response-trailer"),
        Some("from-upstream")
    );
}

#[tokio::test]
async fn no_filter_passes_status_and_chunks() {
    let upstream = EchoUpstream::start().unwrap();
    let envoy = start_envoy("no-filter.yaml", &upstream).await;

    for protocol in [Protocol::Http1, Protocol::Http2] {
        let request = Request::get("/status")
            .header(STATUS_HEADER, "503")
            .header(CHUNKS_HEADER, "4");
        let response = Client::new(envoy.listen_addr(), protocol)
            .send(request)
            .await
            .unwrap();

        assert_eq!(response.status, 503, "{protocol:?}");
        let echoed = response.echoed().unwrap();
        assert_eq!(echoed.path, "/status", "{protocol:?}");
    }
}

#[tokio::test]
async fn lua_filter_reads_request_header() {
    let upstream = EchoUpstream::start().unwrap();
    let envoy = start_envoy("lua.yaml", &upstream).await;

    for protocol in [Protocol::Http1, Protocol::Http2] {
        let client = Client::new(envoy.listen_addr(), protocol);

        let with_header = Request::get("/lua").header("x-lua-input", "hello-lua");
        let response = client.send(with_header).await.unwrap();
        assert_eq!(response.status, 200, "{protocol:?}: {}", envoy.log_text());
        assert_eq!(
            response.header("x-lua-saw"),
            Some("hello-lua"),
            "{protocol:?}"
        );

        let response = client.send(Request::get("/lua")).await.unwrap();
        assert_eq!(response.status, 200, "{protocol:?}");
        assert_eq!(response.header("x-lua-saw"), Some("none"), "{protocol:?}");
    }
}
