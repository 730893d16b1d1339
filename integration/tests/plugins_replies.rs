//! Go test plugins that end requests themselves, in the real Envoy with `--concurrency 2`,
//! over HTTP/1.1 and HTTP/2: panic, local-reply and reflect-headers.
//!
//! Needs `libedgefn.so` (`cargo build --release -p edgefn-filter`) and the Go test plugins
//! (`scripts/setup.sh`); see `edgefn_integration::tools` for the locations.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use edgefn_integration::{
    free_port, log_tail, send_paced, Client, Envoy, PacedRequest, PluginServers, Protocol, Request,
    Response, CHUNKS_HEADER,
};
use hyper::Method;

const PROTOCOLS: [Protocol; 2] = [Protocol::Http1, Protocol::Http2];
/// Log lines shown when an assertion fails.
const TAIL: usize = 40;
/// The body of the 500 reply for a plugin panic, the same as under Envoy's golang filter.
const PANIC_BODY: &str = "error happened in filter\r\n";
/// The line edgefn logs, at error level, for each plugin panic that it turns into a 500.
const PANIC_REPLY_LINE: &str = "Go plugin panicked; answering 500";

async fn start(servers: &PluginServers, revision: &serde_json::Value) -> Envoy {
    servers
        .envoy(revision)
        .concurrency(2)
        .start()
        .await
        .unwrap_or_else(|error| panic!("{error}"))
}

fn tail(envoy: &Envoy) -> String {
    log_tail(&envoy.log_text(), TAIL).to_owned()
}

/// Returns the log lines that Envoy's `dynamic_modules` logger wrote at `level` and that
/// contain `text`.
fn lines_at<'a>(log: &'a str, level: &str, text: &str) -> Vec<&'a str> {
    let tag = format!("[{level}][dynamic_modules]");
    log.lines()
        .filter(|line| line.contains(&tag) && line.contains(text))
        .collect()
}

// === panic ===

/// An Envoy with the panic plugin on its main listener and add-header on a second listener,
/// both from the same Go library, so a test can check that the process still runs Go plugins
/// after a panic.
struct PanicEnvoy {
    envoy: Envoy,
    second_addr: SocketAddr,
    _servers: PluginServers,
}

async fn start_panic_envoy(location: &str) -> PanicEnvoy {
    let servers = PluginServers::start().unwrap();
    let panic_revision = servers
        .revision("panic")
        .plugin_config(&format!(r#"{{"where": "{location}"}}"#));
    let second_revision = servers
        .revision("add-header")
        .plugin_config(r#"{"responseHeader": {"name": "x-second", "value": "alive"}}"#);
    // NOTE: Envoy's start retries with new ports when a picked port was taken, but this one
    // is picked once, so a port taken by another process in between fails the test.
    let second_port = free_port().unwrap();

    let template = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("configs")
        .join("edgefn-two-listeners.yaml");
    let template = template.to_str().expect("the repository path is UTF-8");
    let envoy = servers
        .envoy_from(template, &panic_revision.to_json())
        .var("SECOND_LISTEN_PORT", second_port)
        .var("SECOND_REVISION", second_revision.to_template_value())
        .start()
        .await
        .unwrap_or_else(|error| panic!("{error}"));

    PanicEnvoy {
        envoy,
        second_addr: SocketAddr::from(([127, 0, 0, 1], second_port)),
        _servers: servers,
    }
}

/// Sends `request` over both protocols and checks each gets the generic 500, that the add-header
/// listener of the same Envoy then returns 200, and that the log has `panic_message` and one
/// edgefn panic line per request.
async fn assert_panic_replies(run: &PanicEnvoy, request: &Request, panic_message: &str) {
    let envoy = &run.envoy;
    for protocol in PROTOCOLS {
        let response = Client::new(envoy.listen_addr(), protocol)
            .send(request.clone())
            .await
            .unwrap();
        assert_eq!(response.status, 500, "{protocol:?}:\n{}", tail(envoy));
        assert_eq!(response.body_text(), PANIC_BODY, "{protocol:?}");

        let next = Client::new(run.second_addr, protocol)
            .send(Request::get("/after-panic"))
            .await
            .unwrap();
        assert_eq!(next.status, 200, "{protocol:?}:\n{}", tail(envoy));
        assert_eq!(next.header_values("x-second"), ["alive"], "{protocol:?}");
    }

    let log = envoy.log_text();
    let sdk_line = format!("http: panic serving: {panic_message}");
    assert_eq!(
        lines_at(&log, "error", &sdk_line).len(),
        PROTOCOLS.len(),
        "{sdk_line:?}:\n{}",
        tail(envoy)
    );
    let reply_lines = lines_at(&log, "error", PANIC_REPLY_LINE);
    assert_eq!(reply_lines.len(), PROTOCOLS.len(), "{}", tail(envoy));
    // edgefn counts panics per process and logs the running total.
    assert!(
        reply_lines[1].contains("total=2"),
        "second panic line: {}",
        reply_lines[1]
    );
}

#[tokio::test]
async fn panic_in_decode_headers() {
    let run = start_panic_envoy("decodeHeaders").await;

    let request = Request::get("/panic");
    let message = "edgefn panic plugin: panic in DecodeHeaders";
    assert_panic_replies(&run, &request, message).await;
}

#[tokio::test]
async fn panic_in_decode_data() {
    let run = start_panic_envoy("decodeData").await;

    let request = Request::post("/panic", "a body makes DecodeData run");
    let message = "edgefn panic plugin: panic in DecodeData";
    assert_panic_replies(&run, &request, message).await;

    // The plugin panics only in DecodeData, so a request without a body passes.
    for protocol in PROTOCOLS {
        let response = Client::new(run.envoy.listen_addr(), protocol)
            .send(Request::get("/no-body"))
            .await
            .unwrap();
        assert_eq!(response.status, 200, "{protocol:?}:\n{}", tail(&run.envoy));
        assert_eq!(response.echoed().unwrap().path, "/no-body", "{protocol:?}");
    }

    // The request headers have already gone upstream when the first chunk panics, and the
    // client is still sending the rest.
    for protocol in PROTOCOLS {
        let request = PacedRequest::new(Method::POST, "/paced-panic")
            .pause(Duration::from_millis(20))
            .chunk("first")
            .chunk("second")
            .chunk("third");
        let exchange = send_paced(run.envoy.listen_addr(), protocol, request)
            .await
            .unwrap();
        let response = exchange.response;
        assert_eq!(response.status, 500, "{protocol:?}:\n{}", tail(&run.envoy));
        assert_eq!(response.body_text(), PANIC_BODY, "{protocol:?}");
    }
}

#[tokio::test]
async fn panic_in_goroutine() {
    let run = start_panic_envoy("goroutine").await;

    let request = Request::post("/panic", "body");
    let message = "edgefn panic plugin: panic in a goroutine before Continue";
    assert_panic_replies(&run, &request, message).await;
}

// === local-reply ===

fn local_reply_revision(servers: &PluginServers, phase: &str, crlf: bool) -> serde_json::Value {
    let config = format!(r#"{{"phase": "{phase}", "crlf": {crlf}}}"#);
    servers
        .revision("local-reply")
        .plugin_config(&config)
        .to_json()
}

fn assert_denied(response: &Response, status: u16, context: &str) {
    assert_eq!(response.status, status, "{context}");
    assert_eq!(response.body_text(), "denied", "{context}");
    assert_eq!(response.header_values("x-reason"), ["policy"], "{context}");
    assert_eq!(
        response.header_values("set-cookie"),
        ["a=1", "b=2"],
        "{context}"
    );
}

#[tokio::test]
async fn local_reply_from_decode() {
    let servers = PluginServers::start().unwrap();
    let envoy = start(&servers, &local_reply_revision(&servers, "decode", false)).await;

    for protocol in PROTOCOLS {
        let client = Client::new(envoy.listen_addr(), protocol);
        for request in [Request::get("/"), Request::post("/", "body")] {
            let context = format!("{protocol:?} {}:\n{}", request.method, tail(&envoy));
            let response = client.send(request).await.unwrap();
            assert_denied(&response, 403, &context);
        }
    }
}

#[tokio::test]
async fn local_reply_from_encode() {
    let servers = PluginServers::start().unwrap();
    let envoy = start(&servers, &local_reply_revision(&servers, "encode", false)).await;

    for protocol in PROTOCOLS {
        let client = Client::new(envoy.listen_addr(), protocol);
        // The last upstream reply is 100 KiB in 4 chunks, which the local reply replaces.
        let large = Request::post("/", vec![b'x'; 100 * 1024]).header(CHUNKS_HEADER, "4");
        for request in [Request::get("/"), Request::post("/", "body"), large] {
            let context = format!("{protocol:?} {}:\n{}", request.method, tail(&envoy));
            let response = client.send(request).await.unwrap();
            assert_denied(&response, 503, &context);
        }
    }
}

/// Checks that the x-reason value "policy\r\nx-injected: 1" never becomes a second header,
/// and that the rest of the reply is intact. Dropping x-reason and cleaning its value are both
/// accepted.
async fn assert_crlf_not_injected(phase: &str, status: u16) {
    let servers = PluginServers::start().unwrap();
    let envoy = start(&servers, &local_reply_revision(&servers, phase, true)).await;

    for protocol in PROTOCOLS {
        let response = Client::new(envoy.listen_addr(), protocol)
            .send(Request::get("/crlf"))
            .await
            .unwrap();

        let context = format!(
            "{phase} {protocol:?}: {:?}:\n{}",
            response.headers,
            tail(&envoy)
        );
        assert!(response.header("x-injected").is_none(), "{context}");
        for value in response.header_values("x-reason") {
            assert!(!value.contains(['\r', '\n']), "{context}");
        }
        assert_eq!(response.status, status, "{context}");
        assert_eq!(response.body_text(), "denied", "{context}");
        assert_eq!(
            response.header_values("set-cookie"),
            ["a=1", "b=2"],
            "{context}"
        );
    }

    // Envoy keeps serving after the reply.
    let response = Client::http1(envoy.listen_addr())
        .send(Request::get("/after"))
        .await
        .unwrap();
    assert!(response.header("x-injected").is_none(), "{}", tail(&envoy));
}

#[tokio::test]
async fn local_reply_crlf_from_decode() {
    assert_crlf_not_injected("decode", 403).await;
}

#[tokio::test]
async fn local_reply_crlf_from_encode() {
    assert_crlf_not_injected("encode", 503).await;
}

// === reflect-headers ===

#[tokio::test]
async fn reflect_headers_drops_pseudo_headers() {
    let servers = PluginServers::start().unwrap();
    let envoy = start(&servers, &servers.revision("reflect-headers").to_json()).await;

    for protocol in PROTOCOLS {
        let client = Client::new(envoy.listen_addr(), protocol);
        // The POST's content-length (4) differs from the reply body's, and x-dup repeats.
        let requests = [
            Request::get("/reflect?q=1")
                .header("x-dup", "1")
                .header("x-dup", "2"),
            Request::post("/reflect", "abcd")
                .header("x-dup", "1")
                .header("x-dup", "2"),
        ];
        for request in requests {
            let method = request.method.clone();
            let context = format!("{protocol:?} {method}");
            let response = client
                .send(request)
                .await
                .unwrap_or_else(|error| panic!("{context}: {error}\n{}", tail(&envoy)));

            assert_eq!(response.status, 403, "{context}:\n{}", tail(&envoy));
            assert_eq!(response.body_text(), "rejected", "{context}");
            let pseudo: Vec<_> = response
                .headers
                .iter()
                .filter(|(name, _)| name.starts_with(':'))
                .collect();
            assert!(pseudo.is_empty(), "{context}: {pseudo:?}");
            assert_eq!(response.header_values("x-dup"), ["1", "2"], "{context}");
            // The request's content-length is not copied over the reply's.
            assert_eq!(response.header_values("content-length"), ["8"], "{context}");
        }
    }

    // Envoy is still running and replying.
    let response = Client::http2(envoy.listen_addr())
        .send(Request::get("/again"))
        .await
        .unwrap();
    assert_eq!(response.status, 403, "{}", tail(&envoy));
}
