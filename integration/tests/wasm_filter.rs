//! proxy-wasm filters on edgefn in the real Envoy, each compared with the same .wasm in
//! Envoy's own wasm filter (`envoy.filters.http.wasm`, V8) of the same Envoy binary: both must
//! give the client and the upstream the same result.
//!
//! Needs `libedgefn.so` and the wasm test modules (`scripts/setup.sh`); see
//! `edgefn_integration::tools` for the locations.

use edgefn_integration::wasm_module as wasm;
use edgefn_integration::{
    log_tail, Client, EchoUpstream, Envoy, Protocol, Request, Response, WasmRevision,
};

const PROTOCOLS: [Protocol; 2] = [Protocol::Http1, Protocol::Http2];
const TAIL: usize = 40;

/// Envoy with the plugin on edgefn, and Envoy with the same plugin on its own wasm filter.
struct Pair {
    edgefn: Envoy,
    native: Envoy,
}

async fn start_pair(upstream: &EchoUpstream, name: &str, file: &str, configuration: &str) -> Pair {
    let revision = WasmRevision::new(name, "filter", wasm(file)).configuration(configuration);
    let edgefn = Envoy::builder("edgefn.yaml")
        .var("UPSTREAM_PORT", upstream.port())
        .var("REVISION", revision.to_template_value())
        .concurrency(2)
        .start()
        .await
        .unwrap_or_else(|error| panic!("edgefn: {error}"));
    // edgefn gives the plugin the revision name as its name and VM id, and an empty root id.
    let native = Envoy::builder("envoy-wasm.yaml")
        .var("UPSTREAM_PORT", upstream.port())
        .var("WASM_FILE", wasm(file))
        .var("WASM_NAME", name)
        .var("WASM_ROOT_ID", "\"\"")
        .var(
            "WASM_CONFIGURATION",
            serde_json::to_string(configuration).unwrap(),
        )
        .concurrency(2)
        .start()
        .await
        .unwrap_or_else(|error| panic!("Envoy's wasm filter: {error}"));
    Pair { edgefn, native }
}

/// Sends `request` to both Envoys over `protocol` and returns (edgefn, native) responses.
async fn send_both(pair: &Pair, protocol: Protocol, request: &Request) -> (Response, Response) {
    let edgefn = Client::new(pair.edgefn.listen_addr(), protocol)
        .send(request.clone())
        .await
        .unwrap_or_else(|error| panic!("edgefn {protocol:?}: {error}"));
    let native = Client::new(pair.native.listen_addr(), protocol)
        .send(request.clone())
        .await
        .unwrap_or_else(|error| panic!("native {protocol:?}: {error}"));
    (edgefn, native)
}

/// The parts of a response the comparison looks at: the status, the named response headers,
/// the named request headers as the echo upstream saw them, and the body when it is not JSON.
fn observed(response: &Response, response_headers: &[&str], request_headers: &[&str]) -> String {
    let mut lines = vec![format!("status {}", response.status)];
    for name in response_headers {
        lines.push(format!(
            "response {name}: {:?}",
            response.header_values(name)
        ));
    }
    match response.echoed() {
        Ok(echoed) => {
            for name in request_headers {
                lines.push(format!(
                    "upstream saw {name}: {:?}",
                    echoed.header_values(name)
                ));
            }
        }
        Err(_) => lines.push(format!("body {:?}", response.body_text())),
    }
    lines.join("\n")
}

#[tokio::test]
async fn header_filter_matches_envoy_wasm() {
    let upstream = EchoUpstream::start().unwrap();
    let pair = start_pair(&upstream, "pw-headers-compare", "pw_headers.wasm", "V1").await;
    let response_headers = [
        "x-wasm-response",
        "x-upstream",
        "x-wasm-denied",
        "content-type",
    ];
    let request_headers = [
        "x-wasm-request",
        "x-remove-me",
        "x-wasm-path",
        "x-wasm-method",
    ];

    // The `edgefn` command beside libedgefn.so compiled the module into the cache.
    let compiled = std::fs::read_dir(pair.edgefn.cache_dir().join("compiled"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "cwasm"))
                .count()
        })
        .unwrap_or(0);
    assert_eq!(compiled, 1, "no compiled module in the cache");

    for protocol in PROTOCOLS {
        let request = Request::get("/compare?q=1").header("x-remove-me", "gone");
        let (edgefn, native) = send_both(&pair, protocol, &request).await;
        let edgefn_view = observed(&edgefn, &response_headers, &request_headers);
        let native_view = observed(&native, &response_headers, &request_headers);
        assert_eq!(
            edgefn_view,
            native_view,
            "{protocol:?}: edgefn differs from Envoy's wasm filter\nedgefn log:\n{}",
            log_tail(&pair.edgefn.log_text(), TAIL)
        );
        assert_eq!(edgefn.status, 200, "{protocol:?}");
        assert_eq!(
            edgefn.header_values("x-wasm-response"),
            ["V1"],
            "{protocol:?}"
        );
        assert_eq!(
            edgefn.header_values("x-upstream"),
            ["replaced"],
            "{protocol:?}"
        );
        let echoed = edgefn.echoed().unwrap();
        assert_eq!(
            echoed.header_values("x-wasm-request"),
            ["V1"],
            "{protocol:?}"
        );
        assert!(
            echoed.header_values("x-remove-me").is_empty(),
            "{protocol:?}"
        );
        assert_eq!(
            echoed.header_values("x-wasm-path"),
            ["/compare?q=1"],
            "{protocol:?}"
        );
        assert_eq!(
            echoed.header_values("x-wasm-method"),
            ["GET"],
            "{protocol:?}"
        );

        let denied = Request::get("/deny").header("x-wasm-deny", "1");
        let (edgefn, native) = send_both(&pair, protocol, &denied).await;
        assert_eq!(
            observed(&edgefn, &response_headers, &request_headers),
            observed(&native, &response_headers, &request_headers),
            "{protocol:?}: the local reply differs\nedgefn log:\n{}",
            log_tail(&pair.edgefn.log_text(), TAIL)
        );
        assert_eq!(edgefn.status, 403, "{protocol:?}");
        assert_eq!(
            edgefn.header_values("x-wasm-denied"),
            ["yes"],
            "{protocol:?}"
        );
        assert_eq!(edgefn.body_text(), "denied by wasm\n", "{protocol:?}");
    }
}

/// Removes the request headers whose values differ between two Envoys by design (the
/// listener port in `host`, and `x-request-id`) from the upper-cased echo JSON.
fn without_varying_headers(body: &str) -> String {
    let Ok(mut echoed) = serde_json::from_str::<serde_json::Value>(body) else {
        return body.to_owned();
    };
    if let Some(headers) = echoed.get_mut("HEADERS").and_then(|h| h.as_array_mut()) {
        headers.retain(|pair| !matches!(pair[0].as_str(), Some("HOST" | "X-REQUEST-ID")));
    }
    echoed.to_string()
}

#[tokio::test]
async fn body_filter_matches_envoy_wasm() {
    let upstream = EchoUpstream::start().unwrap();
    let pair = start_pair(&upstream, "pw-body-compare", "pw_body.wasm", "").await;

    for protocol in PROTOCOLS {
        let request = Request::post("/upper", "some request body");
        let (edgefn, native) = send_both(&pair, protocol, &request).await;
        assert_eq!(edgefn.status, native.status, "{protocol:?}");
        assert_eq!(
            without_varying_headers(&edgefn.body_text()),
            without_varying_headers(&native.body_text()),
            "{protocol:?}: edgefn differs from Envoy's wasm filter\nedgefn log:\n{}",
            log_tail(&pair.edgefn.log_text(), TAIL)
        );
        assert_eq!(edgefn.status, 200, "{protocol:?}");
        let body = edgefn.body_text();
        assert!(body.contains("\"PATH\":\"/UPPER\""), "{protocol:?}: {body}");
        assert!(body.contains("SOME REQUEST BODY"), "{protocol:?}: {body}");
    }
}

/// A proxy-wasm filter that loops forever on requests with `x-loop` and traps on requests
/// with `x-trap`, and passes other requests on.
const MISBEHAVING_FILTER: &str = r#"(module
  (import "env" "proxy_get_header_map_value"
    (func $get_header (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "x-loop")
  (data (i32.const 32) "x-trap")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func $has (param $name i32) (result i32)
    (i32.eqz (call $get_header (i32.const 0) (local.get $name) (i32.const 6)
                               (i32.const 64) (i32.const 68))))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (if (call $has (i32.const 16)) (then (loop $forever (br $forever))))
    (if (call $has (i32.const 32)) (then unreachable))
    (i32.const 0)))"#;

#[tokio::test]
async fn looping_and_trapping_filters_fail_one_request() {
    let upstream = EchoUpstream::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("misbehaving.wasm");
    std::fs::write(&module, wat::parse_str(MISBEHAVING_FILTER).unwrap()).unwrap();
    let revision = WasmRevision::new("misbehaving-filter", "filter", module.to_str().unwrap())
        .timeout("300ms");
    let envoy = Envoy::builder("edgefn.yaml")
        .var("UPSTREAM_PORT", upstream.port())
        .var("REVISION", revision.to_template_value())
        .start()
        .await
        .unwrap_or_else(|error| panic!("{error}"));

    for protocol in PROTOCOLS {
        let client = Client::new(envoy.listen_addr(), protocol);
        for (header, expected) in [("x-loop", 504), ("x-trap", 500)] {
            let failed = client
                .send(Request::get("/").header(header, "1"))
                .await
                .unwrap();
            assert_eq!(failed.status, expected, "{protocol:?} {header}");

            // The worker's VM was replaced, and the next request passes.
            let fine = client.send(Request::get("/after")).await.unwrap();
            assert_eq!(fine.status, 200, "{protocol:?} after {header}");
            assert_eq!(fine.echoed().unwrap().path, "/after", "{protocol:?}");
        }
    }
    let log = envoy.log_text();
    let named = log
        .lines()
        .any(|line| line.contains("misbehaving-filter") && line.contains("timeout"));
    assert!(
        named,
        "no timeout line naming the revision:\n{}",
        log_tail(&log, TAIL)
    );
}
