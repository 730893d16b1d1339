//! The `pw-headers` and `pw-body` plugins, built with the `proxy-wasm` crate. They are read
//! from `$EDGEFN_WASM_DIR` (`scripts/build-wasm-guests.sh` writes them); without it these
//! tests pass with a message, unless `EDGEFN_REQUIRE_WASM=1` makes them fail.

use std::path::PathBuf;

use wasmtime::Module;

use super::fake::FakeHost;
use super::settings;
use crate::engine::engine;
use crate::proxywasm::{
    BodyKind, DataAction, HeaderMapKind, HeadersAction, ProxyWasmModule, ProxyWasmVm,
};

/// Compiles the plugin `name` from `$EDGEFN_WASM_DIR`, where it is `<name>.wasm` or, as
/// cargo names a cdylib, with `_` for `-`. Returns `None` when the variable is unset and the
/// plugins are not required.
fn plugin(name: &str) -> Option<Module> {
    let Some(dir) = std::env::var_os("EDGEFN_WASM_DIR") else {
        let required = std::env::var("EDGEFN_REQUIRE_WASM").is_ok_and(|value| value == "1");
        assert!(
            !required,
            "EDGEFN_REQUIRE_WASM=1 but EDGEFN_WASM_DIR is unset; run \
             scripts/build-wasm-guests.sh DIR and set EDGEFN_WASM_DIR=DIR"
        );
        eprintln!("skipped: EDGEFN_WASM_DIR is unset, so {name} is not tested");
        return None;
    };
    let dir = PathBuf::from(dir);
    let candidates = [
        dir.join(format!("{name}.wasm")),
        dir.join(format!("{}.wasm", name.replace('-', "_"))),
    ];
    let Some(path) = candidates.iter().find(|path| path.is_file()) else {
        panic!(
            "neither {} nor {} exists; run scripts/build-wasm-guests.sh {}",
            candidates[0].display(),
            candidates[1].display(),
            dir.display()
        );
    };
    let bytes = std::fs::read(path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    Some(Module::new(engine(), &bytes).expect("plugin compiles"))
}

fn headers_vm(revision: &str) -> Option<(ProxyWasmModule, ProxyWasmVm)> {
    let module = plugin("pw-headers")?;
    let loaded = ProxyWasmModule::load(&module, settings(revision), b"v1".to_vec())
        .expect("pw-headers loads");
    let vm = ProxyWasmVm::start(&loaded).expect("pw-headers starts");
    Some((loaded, vm))
}

#[test]
fn pw_headers_edits_request_and_response() {
    let Some((_module, mut vm)) = headers_vm("pw-plugin-headers") else {
        return;
    };
    let context = vm.new_http_context().expect("context created");
    let mut host = FakeHost::with_request(&[
        (":method", "POST"),
        (":path", "/items?id=1"),
        ("x-remove-me", "1"),
    ]);
    host.properties.insert(
        vec!["request".to_owned(), "method".to_owned()],
        b"POST".to_vec(),
    );

    let outcome = vm
        .on_request_headers(context, &mut host, 3, false)
        .expect("request headers");
    let request = HeaderMapKind::RequestHeaders;
    assert_eq!(outcome.action, HeadersAction::Continue);
    assert_eq!(outcome.local_reply, None);
    assert_eq!(host.values(request, "x-wasm-request"), vec!["v1"]);
    assert_eq!(host.values(request, "x-remove-me"), Vec::<String>::new());
    assert_eq!(host.values(request, "x-wasm-path"), vec!["/items?id=1"]);
    assert_eq!(host.values(request, "x-wasm-method"), vec!["POST"]);

    host.set_map(
        HeaderMapKind::ResponseHeaders,
        &[(":status", "200"), ("x-upstream", "original")],
    );
    let outcome = vm
        .on_response_headers(context, &mut host, 2, true)
        .expect("response headers");
    let response = HeaderMapKind::ResponseHeaders;
    assert_eq!(outcome.action, HeadersAction::Continue);
    assert_eq!(host.values(response, "x-wasm-response"), vec!["v1"]);
    assert_eq!(host.values(response, "x-upstream"), vec!["replaced"]);

    vm.finish(context).expect("context finishes");
    assert!(!vm.is_broken());
}

#[test]
fn pw_headers_denies_with_local_reply() {
    let Some((_module, mut vm)) = headers_vm("pw-plugin-deny") else {
        return;
    };
    let context = vm.new_http_context().expect("context created");
    let mut host = FakeHost::with_request(&[(":path", "/"), ("x-wasm-deny", "1")]);

    let outcome = vm
        .on_request_headers(context, &mut host, 2, true)
        .expect("request headers");
    assert_eq!(outcome.action, HeadersAction::StopAllIterationAndWatermark);
    let reply = outcome.local_reply.expect("a local reply");
    assert_eq!(reply.status, 403);
    assert_eq!(
        reply.headers,
        vec![(b"x-wasm-denied".to_vec(), b"yes".to_vec())]
    );
    assert_eq!(reply.body, b"denied by wasm\n");
}

#[test]
fn pw_body_upper_cases_whole_response() {
    let Some(module) = plugin("pw-body") else {
        return;
    };
    let loaded = ProxyWasmModule::load(&module, settings("pw-plugin-body"), Vec::new())
        .expect("pw-body loads");
    let mut vm = ProxyWasmVm::start(&loaded).expect("pw-body starts");
    let context = vm.new_http_context().expect("context created");
    let mut host = FakeHost::default();
    host.set_map(
        HeaderMapKind::ResponseHeaders,
        &[(":status", "200"), ("content-length", "11")],
    );

    vm.on_response_headers(context, &mut host, 2, false)
        .expect("response headers");
    let response = HeaderMapKind::ResponseHeaders;
    assert_eq!(
        host.values(response, "content-length"),
        Vec::<String>::new()
    );

    host.bodies.insert(BodyKind::Response, b"hello ".to_vec());
    let first = vm
        .on_response_body(context, &mut host, 6, false)
        .expect("first chunk");
    assert_eq!(first.action, DataAction::StopIterationAndBuffer);
    assert_eq!(
        host.bodies.get(&BodyKind::Response),
        Some(&b"hello ".to_vec())
    );

    // The filter buffered the first chunk, so the last call reads the whole body.
    host.bodies
        .insert(BodyKind::Response, b"hello world".to_vec());
    let last = vm
        .on_response_body(context, &mut host, 11, true)
        .expect("last chunk");
    assert_eq!(last.action, DataAction::Continue);
    assert_eq!(
        host.bodies.get(&BodyKind::Response),
        Some(&b"HELLO WORLD".to_vec())
    );
}

#[test]
fn pw_body_counts_request_bytes() {
    let Some(module) = plugin("pw-body") else {
        return;
    };
    let loaded = ProxyWasmModule::load(&module, settings("pw-plugin-count"), Vec::new())
        .expect("pw-body loads");
    let mut vm = ProxyWasmVm::start(&loaded).expect("pw-body starts");
    let context = vm.new_http_context().expect("context created");
    let mut host = FakeHost::default();
    host.bodies
        .insert(BodyKind::Request, b"0123456789".to_vec());

    let outcome = vm
        .on_request_body(context, &mut host, 10, true)
        .expect("request body");
    assert_eq!(outcome.action, DataAction::Continue);
    assert_eq!(loaded.metric("pw_body.request_body_bytes"), Some(10));
}
