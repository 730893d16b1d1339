//! Go test plugins that work on headers, in the real Envoy with `--concurrency 2`, over
//! HTTP/1.1 and HTTP/2: add-header, copy-header, require-header and stream-info.
//!
//! Needs `libedgefn.so` (`cargo build --release -p edgefn-filter`) and the Go test plugins
//! (`scripts/setup.sh`); see `edgefn_integration::tools` for the locations.

use edgefn_integration::{
    log_tail, send_paced, Client, Envoy, PacedRequest, PluginServers, Protocol, Request,
};
use hyper::Method;

const PROTOCOLS: [Protocol; 2] = [Protocol::Http1, Protocol::Http2];
/// Log lines shown when an assertion fails.
const TAIL: usize = 40;
/// Worker threads of every Envoy in this file.
const CONCURRENCY: u32 = 2;

async fn start(servers: &PluginServers, revision: &serde_json::Value) -> Envoy {
    servers
        .envoy(revision)
        .concurrency(CONCURRENCY)
        .start()
        .await
        .unwrap_or_else(|error| panic!("{error}"))
}

fn tail(envoy: &Envoy) -> String {
    log_tail(&envoy.log_text(), TAIL).to_owned()
}

#[tokio::test]
async fn add_header_sets_both_directions() {
    let servers = PluginServers::start().unwrap();
    let revision = servers.revision("add-header").plugin_config(
        r#"{"requestHeader": {"name": "x-hello", "value": "world"},
            "responseHeader": {"name": "x-added", "value": "yes"}}"#,
    );
    let envoy = start(&servers, &revision.to_json()).await;

    for protocol in PROTOCOLS {
        // The plugin uses Set, so the client's own x-hello is replaced, not kept beside it.
        let request = Request::post("/add", "payload").header("x-hello", "from-client");
        let response = Client::new(envoy.listen_addr(), protocol)
            .send(request)
            .await
            .unwrap();

        assert_eq!(response.status, 200, "{protocol:?}:\n{}", tail(&envoy));
        assert_eq!(response.header_values("x-added"), ["yes"], "{protocol:?}");
        assert_eq!(
            response.header_values("x-edgefn-plugin"),
            ["add-header"],
            "{protocol:?}"
        );
        assert_eq!(
            response.header_values("x-edgefn-library"),
            ["testplugins"],
            "{protocol:?}"
        );
        let echoed = response.echoed().unwrap();
        assert_eq!(echoed.header_values("x-hello"), ["world"], "{protocol:?}");
        assert_eq!(echoed.body, "payload", "{protocol:?}");
    }
}

#[tokio::test]
async fn copy_header_returns_request_value() {
    let servers = PluginServers::start().unwrap();
    let revision = servers
        .revision("copy-header")
        .plugin_config(r#"{"from": "x-copy-from", "to": "x-copied"}"#);
    let envoy = start(&servers, &revision.to_json()).await;

    for protocol in PROTOCOLS {
        let client = Client::new(envoy.listen_addr(), protocol);

        let with_header = Request::get("/copy").header("x-copy-from", "value-42");
        let response = client.send(with_header).await.unwrap();
        assert_eq!(response.status, 200, "{protocol:?}:\n{}", tail(&envoy));
        assert_eq!(
            response.header_values("x-copied"),
            ["value-42"],
            "{protocol:?}"
        );
        let echoed = response.echoed().unwrap();
        assert_eq!(
            echoed.header_values("x-copy-from"),
            ["value-42"],
            "{protocol:?}"
        );

        let without_header = client.send(Request::get("/copy")).await.unwrap();
        assert_eq!(without_header.status, 200, "{protocol:?}");
        assert_eq!(
            without_header.header_values("x-copied"),
            ["none"],
            "{protocol:?}"
        );

        // Get returns the first of repeated values, and UTF-8 bytes pass through unchanged.
        let repeated = Request::get("/copy")
            .header("x-copy-from", "café")
            .header("x-copy-from", "second");
        let response = client.send(repeated).await.unwrap();
        assert_eq!(response.status, 200, "{protocol:?}:\n{}", tail(&envoy));
        assert_eq!(response.header_values("x-copied"), ["café"], "{protocol:?}");

        // An empty request header is found, so the plugin sets x-copied to "". edgefn cannot
        // apply an empty value (README, Limits), so the response has no x-copied at all.
        let empty = Request::get("/copy").header("x-copy-from", "");
        let response = client.send(empty).await.unwrap();
        assert_eq!(response.status, 200, "{protocol:?}:\n{}", tail(&envoy));
        assert!(
            response.header_values("x-copied").is_empty(),
            "{protocol:?}: {:?}",
            response.headers
        );
    }
}

#[tokio::test]
async fn add_header_empty_value_removes() {
    let servers = PluginServers::start().unwrap();
    let revision = servers.revision("add-header").plugin_config(
        r#"{"requestHeader": {"name": "x-empty", "value": ""},
            "responseHeader": {"name": "content-type", "value": ""}}"#,
    );
    let envoy = start(&servers, &revision.to_json()).await;

    // README, Limits: Set(name, "") cannot be applied through the dynamic-modules ABI, which
    // removes a header set to an empty value.
    for protocol in PROTOCOLS {
        let request = Request::get("/empty").header("x-empty", "from-client");
        let response = Client::new(envoy.listen_addr(), protocol)
            .send(request)
            .await
            .unwrap();

        assert_eq!(response.status, 200, "{protocol:?}:\n{}", tail(&envoy));
        assert!(
            response.header_values("content-type").is_empty(),
            "{protocol:?}: {:?}",
            response.headers
        );
        let echoed = response.echoed().unwrap();
        assert!(
            echoed.header_values("x-empty").is_empty(),
            "{protocol:?}: {:?}",
            echoed.headers
        );
    }
}

#[tokio::test]
async fn require_header_rejects_missing_header() {
    let servers = PluginServers::start().unwrap();
    let revision = servers
        .revision("require-header")
        .plugin_config(r#"{"header": "x-api-key", "body": "missing api key"}"#);
    let envoy = start(&servers, &revision.to_json()).await;

    for protocol in PROTOCOLS {
        let client = Client::new(envoy.listen_addr(), protocol);

        let rejected = client
            .send(Request::post("/private", "body"))
            .await
            .unwrap();
        assert_eq!(rejected.status, 403, "{protocol:?}:\n{}", tail(&envoy));
        assert_eq!(rejected.body_text(), "missing api key", "{protocol:?}");
        assert_eq!(
            rejected.header_values("content-type"),
            ["text/plain"],
            "{protocol:?}"
        );

        let accepted = Request::post("/private", "body").header("x-api-key", "k1");
        let response = client.send(accepted).await.unwrap();
        assert_eq!(response.status, 200, "{protocol:?}:\n{}", tail(&envoy));
        let echoed = response.echoed().unwrap();
        assert_eq!(echoed.header_values("x-api-key"), ["k1"], "{protocol:?}");
        assert_eq!(echoed.body, "body", "{protocol:?}");

        // A header that is present with an empty value counts as present.
        let empty_value = Request::get("/private").header("x-api-key", "");
        let response = client.send(empty_value).await.unwrap();
        assert_eq!(response.status, 200, "{protocol:?}:\n{}", tail(&envoy));
    }
}

#[tokio::test]
async fn require_header_default_body() {
    let servers = PluginServers::start().unwrap();
    let revision = servers
        .revision("require-header")
        .plugin_config(r#"{"header": "x-api-key"}"#);
    let envoy = start(&servers, &revision.to_json()).await;

    for protocol in PROTOCOLS {
        let response = Client::new(envoy.listen_addr(), protocol)
            .send(Request::get("/"))
            .await
            .unwrap();

        assert_eq!(response.status, 403, "{protocol:?}:\n{}", tail(&envoy));
        assert_eq!(
            response.body_text(),
            "missing required header",
            "{protocol:?}"
        );
    }
}

/// Stream-info values that edgefn does not support yet (README, Limits), as the stream-info
/// plugin shows them: route and filter chain names are empty strings, the rest are not found,
/// and the attempt count reads as 0.
const UNSUPPORTED_STREAM_INFO: [(&str, &str); 8] = [
    ("route-name", "(empty)"),
    ("filter-chain-name", "(empty)"),
    ("response-code-details", "(not found)"),
    ("attempt-count", "0"),
    ("upstream-local-address", "(not found)"),
    ("upstream-remote-address", "(not found)"),
    ("upstream-cluster-name", "(not found)"),
    ("virtual-cluster-name", "(not found)"),
];

#[tokio::test]
async fn stream_info_reports_connection() {
    let servers = PluginServers::start().unwrap();
    let revision = servers.revision("stream-info");
    let envoy = start(&servers, &revision.to_json()).await;
    // Envoy's Go SDK names the protocols "HTTP/1.1" and "HTTP/2.0" (not "HTTP/2").
    let expected_protocols = [(Protocol::Http1, "HTTP/1.1"), (Protocol::Http2, "HTTP/2.0")];

    // Several connections per protocol, so that both workers are likely to serve some.
    for (protocol, protocol_name) in expected_protocols {
        for index in 0..4 {
            let request = PacedRequest::new(Method::GET, &format!("/info/{index}"));
            let exchange = send_paced(envoy.listen_addr(), protocol, request)
                .await
                .unwrap();
            let response = &exchange.response;
            let context = format!("{protocol:?} request {index}");

            assert_eq!(response.status, 200, "{context}:\n{}", tail(&envoy));
            assert_eq!(
                response.header_values("x-stream-protocol"),
                [protocol_name],
                "{context}"
            );
            let worker = response.header("x-stream-worker-id").unwrap_or("(missing)");
            let worker_id: u32 = worker
                .parse()
                .unwrap_or_else(|_| panic!("{context}: worker id {worker:?} is not a number"));
            assert!(
                worker_id < CONCURRENCY,
                "{context}: worker id {worker_id} not below {CONCURRENCY}"
            );
            assert_eq!(
                response.header_values("x-stream-downstream-remote-address"),
                [exchange.local_addr.to_string()],
                "{context}"
            );
            assert_eq!(
                response.header_values("x-stream-downstream-local-address"),
                [envoy.listen_addr().to_string()],
                "{context}"
            );
            assert_eq!(
                response.header_values("x-stream-response-code"),
                ["200"],
                "{context}"
            );
            for (name, value) in UNSUPPORTED_STREAM_INFO {
                let header = format!("x-stream-{name}");
                assert_eq!(response.header_values(&header), [value], "{context}");
            }
        }
    }
}

/// Envoy's Go SDK passes requests through when the library registers no plugin under the
/// revision's plugin name; edgefn returns 500 instead, so a typo never disables a filter.
#[tokio::test]
async fn unknown_plugin_name_fails_closed() {
    let servers = PluginServers::start().unwrap();
    let revision = servers.revision("add-headr");
    let envoy = start(&servers, &revision.to_json()).await;

    for protocol in PROTOCOLS {
        for attempt in 0..2 {
            let response = Client::new(envoy.listen_addr(), protocol)
                .send(Request::get("/typo"))
                .await
                .unwrap();

            assert_eq!(
                response.status,
                500,
                "{protocol:?} attempt {attempt}:\n{}",
                tail(&envoy)
            );
        }
    }
    let log = envoy.log_text();
    assert!(
        log.contains(r#"the Go library has no plugin named "add-headr""#),
        "{}",
        tail(&envoy)
    );
}
