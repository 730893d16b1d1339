//! Callbacks into WAT plugins: traps, timeouts, guest pointers, and the host functions'
//! effects on a fake stream.

use std::time::Duration;

use super::fake::FakeHost;
use super::{load, plugin_wat, settings};
use crate::proxywasm::{
    CallError, DataAction, HeaderMapKind, HeadersAction, LocalReply, ProxyWasmModule, ProxyWasmVm,
};

/// Declares `$expect`, which traps unless a status equals the expected one.
const EXPECT: &str = r#"(func $expect (param $status i32) (param $expected i32)
    (if (i32.ne (local.get $status) (local.get $expected)) (then unreachable)))"#;

fn start(module: &ProxyWasmModule) -> ProxyWasmVm {
    ProxyWasmVm::start(module).expect("VM starts")
}

fn request_headers(body: &str, imports: &str, revision: &str) -> (ProxyWasmModule, ProxyWasmVm) {
    let module = load(&plugin_wat(imports, body), settings(revision)).expect("plugin loads");
    let vm = start(&module);
    (module, vm)
}

#[test]
fn trap_returns_trap_and_breaks_vm() {
    let body = r#"(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
      unreachable)"#;
    let (_module, mut vm) = request_headers(body, "", "pw-call-trap");
    let context = vm.new_http_context().expect("context created");
    let mut host = FakeHost::with_request(&[]);

    let result = vm.on_request_headers(context, &mut host, 0, true);
    assert!(matches!(result, Err(CallError::Trap { .. })), "{result:?}");
    assert!(vm.is_broken());
    assert_eq!(
        vm.on_request_headers(context, &mut host, 0, true),
        Err(CallError::Broken)
    );
}

#[test]
fn infinite_loop_times_out() {
    let body = r#"(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
      (loop $forever (br $forever))
      (i32.const 0))"#;
    let mut short = settings("pw-call-timeout");
    short.timeout = Duration::from_millis(50);
    let module = load(&plugin_wat("", body), short).expect("plugin loads");
    let mut vm = start(&module);
    let context = vm.new_http_context().expect("context created");
    let mut host = FakeHost::with_request(&[]);

    let result = vm.on_request_headers(context, &mut host, 0, true);
    assert!(
        matches!(result, Err(CallError::Timeout { .. })),
        "{result:?}"
    );
    assert!(vm.is_broken());
}

#[test]
fn out_of_bounds_pointers_return_status() {
    // Memory is 2 pages (131072 bytes). Each call must return the expected status.
    let imports = r#"
      (import "env" "proxy_get_header_map_value"
        (func $get_value (param i32 i32 i32 i32 i32) (result i32)))
      (import "env" "proxy_add_header_map_value"
        (func $add (param i32 i32 i32 i32 i32) (result i32)))
      (import "env" "proxy_get_header_map_pairs" (func $get_pairs (param i32 i32 i32) (result i32)))
      (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
      (import "env" "proxy_get_buffer_bytes"
        (func $get_buffer (param i32 i32 i32 i32 i32) (result i32)))"#;
    let body = format!(
        r#"{EXPECT}
      (data (i32.const 100) "x-a")
      (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
        ;; a key that runs past the end of memory
        (call $expect (call $get_value (i32.const 0) (i32.const 131070) (i32.const 10)
                                       (i32.const 16) (i32.const 20)) (i32.const 6))
        ;; a length of 0xffffffff
        (call $expect (call $add (i32.const 0) (i32.const 100) (i32.const -1)
                                 (i32.const 100) (i32.const 3)) (i32.const 6))
        ;; a pointer above 2 GiB
        (call $expect (call $add (i32.const 0) (i32.const 100) (i32.const 3)
                                 (i32.const -16) (i32.const 3)) (i32.const 6))
        ;; a result pointer outside memory
        (call $expect (call $get_pairs (i32.const 0) (i32.const 131072) (i32.const 20))
                      (i32.const 6))
        (call $expect (call $log (i32.const 2) (i32.const 131000) (i32.const 1000)) (i32.const 6))
        ;; an unknown map type and log level
        (call $expect (call $get_pairs (i32.const 99) (i32.const 16) (i32.const 20)) (i32.const 2))
        (call $expect (call $log (i32.const 6) (i32.const 100) (i32.const 3)) (i32.const 2))
        ;; a start past the end of the request body
        (call $expect (call $get_buffer (i32.const 0) (i32.const 10) (i32.const 1)
                                        (i32.const 16) (i32.const 20)) (i32.const 2))
        (i32.const 0))"#
    );
    let (_module, mut vm) = request_headers(&body, imports, "pw-call-bounds");
    let context = vm.new_http_context().expect("context created");
    let mut host = FakeHost::with_request(&[("x-original", "1")]);
    host.bodies
        .insert(crate::proxywasm::BodyKind::Request, b"abc".to_vec());

    let outcome = vm
        .on_request_headers(context, &mut host, 1, false)
        .expect("every bad pointer returns a status");
    assert_eq!(outcome.action, HeadersAction::Continue);
    assert_eq!(
        host.values(HeaderMapKind::RequestHeaders, "x-a"),
        Vec::<String>::new()
    );
    assert!(!vm.is_broken());
}

#[test]
fn header_functions_edit_stream_and_reply() {
    let imports = r#"
      (import "env" "proxy_add_header_map_value"
        (func $add (param i32 i32 i32 i32 i32) (result i32)))
      (import "env" "proxy_replace_header_map_value"
        (func $replace (param i32 i32 i32 i32 i32) (result i32)))
      (import "env" "proxy_remove_header_map_value"
        (func $remove (param i32 i32 i32) (result i32)))
      (import "env" "proxy_get_header_map_pairs" (func $get_pairs (param i32 i32 i32) (result i32)))
      (import "env" "proxy_set_header_map_pairs" (func $set_pairs (param i32 i32 i32) (result i32)))
      (import "env" "proxy_get_header_map_value"
        (func $get_value (param i32 i32 i32 i32 i32) (result i32)))
      (import "env" "proxy_send_local_response"
        (func $reply (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))"#;
    let body = format!(
        r#"{EXPECT}
      (data (i32.const 100) "x-added")
      (data (i32.const 110) "1")
      (data (i32.const 120) "X-Upstream")
      (data (i32.const 140) "r")
      (data (i32.const 150) "x-remove")
      (data (i32.const 160) "teapot")
      (data (i32.const 170) "short")
      (data (i32.const 200) "\01\00\00\00\07\00\00\00\03\00\00\00X-Reply\00yes\00")
      (data (i32.const 240) "x-absent")
      (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
        (call $expect (call $add (i32.const 0) (i32.const 100) (i32.const 7)
                                 (i32.const 110) (i32.const 1)) (i32.const 0))
        (call $expect (call $replace (i32.const 0) (i32.const 120) (i32.const 10)
                                     (i32.const 140) (i32.const 1)) (i32.const 0))
        (call $expect (call $remove (i32.const 0) (i32.const 150) (i32.const 8)) (i32.const 0))
        (call $expect (call $get_value (i32.const 0) (i32.const 240) (i32.const 8)
                                       (i32.const 16) (i32.const 20)) (i32.const 1))
        ;; response trailers are missing: reads are empty, writes are rejected
        (call $expect (call $get_pairs (i32.const 3) (i32.const 24) (i32.const 28)) (i32.const 0))
        (call $expect (i32.load (i32.const 28)) (i32.const 0))
        (call $expect (call $add (i32.const 3) (i32.const 100) (i32.const 7)
                                 (i32.const 110) (i32.const 1)) (i32.const 2))
        ;; copy the request headers into the response headers
        (call $expect (call $get_pairs (i32.const 0) (i32.const 16) (i32.const 20)) (i32.const 0))
        (call $expect (call $set_pairs (i32.const 2) (i32.load (i32.const 16))
                                       (i32.load (i32.const 20))) (i32.const 0))
        (call $expect (call $reply (i32.const 418) (i32.const 160) (i32.const 6)
                                   (i32.const 170) (i32.const 5) (i32.const 200) (i32.const 24)
                                   (i32.const -1)) (i32.const 0))
        (i32.const 0))"#
    );
    let (_module, mut vm) = request_headers(&body, imports, "pw-call-headers");
    let context = vm.new_http_context().expect("context created");
    let mut host =
        FakeHost::with_request(&[(":path", "/a"), ("x-upstream", "old"), ("x-remove", "gone")]);
    host.set_map(HeaderMapKind::ResponseHeaders, &[]);

    let outcome = vm
        .on_request_headers(context, &mut host, 3, true)
        .expect("callback runs");

    let request = HeaderMapKind::RequestHeaders;
    assert_eq!(host.values(request, "x-added"), vec!["1"]);
    assert_eq!(host.values(request, "x-upstream"), vec!["r"]);
    assert_eq!(host.values(request, "x-remove"), Vec::<String>::new());
    assert_eq!(
        host.maps.get(&HeaderMapKind::ResponseHeaders),
        host.maps.get(&request)
    );
    assert_eq!(outcome.action, HeadersAction::StopAllIterationAndWatermark);
    assert_eq!(
        outcome.local_reply,
        Some(LocalReply {
            status: 418,
            headers: vec![(b"x-reply".to_vec(), b"yes".to_vec())],
            body: b"short".to_vec(),
            details: "teapot".to_owned(),
            grpc_status: None,
        })
    );
}

#[test]
fn body_functions_follow_envoy_edits() {
    let imports = r#"
      (import "env" "proxy_get_buffer_bytes"
        (func $get_buffer (param i32 i32 i32 i32 i32) (result i32)))
      (import "env" "proxy_set_buffer_bytes"
        (func $set_buffer (param i32 i32 i32 i32 i32) (result i32)))"#;
    let body = format!(
        r#"{EXPECT}
      (data (i32.const 100) "!")
      (func (export "proxy_on_response_body") (param i32 $size i32) (param i32) (result i32)
        (call $expect (call $get_buffer (i32.const 1) (i32.const 0) (local.get $size)
                                        (i32.const 16) (i32.const 20)) (i32.const 0))
        (call $expect (i32.load (i32.const 20)) (local.get $size))
        ;; no request body in a response callback, and no plugin configuration after start
        (call $expect (call $get_buffer (i32.const 0) (i32.const 0) (i32.const 10)
                                        (i32.const 16) (i32.const 20)) (i32.const 1))
        (call $expect (call $get_buffer (i32.const 7) (i32.const 0) (i32.const 10)
                                        (i32.const 16) (i32.const 20)) (i32.const 1))
        ;; Envoy edits only the start or the end of a body
        (call $expect (call $set_buffer (i32.const 1) (i32.const 1) (i32.const 1)
                                        (i32.const 100) (i32.const 1)) (i32.const 2))
        (call $expect (call $set_buffer (i32.const 1) (i32.const -1) (i32.const 0)
                                        (i32.const 100) (i32.const 1)) (i32.const 0))
        (i32.const 1))"#
    );
    let body = body.replace("(param i32 $size i32)", "(param i32) (param $size i32)");
    let (_module, mut vm) = request_headers(&body, imports, "pw-call-body");
    let context = vm.new_http_context().expect("context created");
    let mut host = FakeHost::default();
    host.bodies
        .insert(crate::proxywasm::BodyKind::Response, b"abc".to_vec());

    let outcome = vm
        .on_response_body(context, &mut host, 3, false)
        .expect("callback runs");
    assert_eq!(outcome.action, DataAction::StopIterationAndBuffer);
    assert_eq!(
        host.bodies.get(&crate::proxywasm::BodyKind::Response),
        Some(&b"abc!".to_vec())
    );
}

#[test]
fn properties_come_from_plugin_context_and_stream() {
    let imports = r#"
      (import "env" "proxy_get_property" (func $get (param i32 i32 i32 i32) (result i32)))
      (import "env" "proxy_set_property" (func $set (param i32 i32 i32 i32) (result i32)))
      (import "env" "proxy_add_header_map_value"
        (func $add (param i32 i32 i32 i32 i32) (result i32)))"#;
    let body = format!(
        r#"{EXPECT}
      (data (i32.const 100) "request\00method")
      (data (i32.const 120) "plugin_vm_id")
      (data (i32.const 140) "my_key")
      (data (i32.const 150) "my_value")
      (data (i32.const 160) "x-method")
      (data (i32.const 170) "x-vm")
      (data (i32.const 180) "x-key")
      (data (i32.const 190) "absent")
      (func $copy_to_header (param $name i32) (param $name_size i32)
        (call $expect (call $add (i32.const 0) (local.get $name) (local.get $name_size)
                                 (i32.load (i32.const 16)) (i32.load (i32.const 20)))
                      (i32.const 0)))
      (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
        (call $expect (call $get (i32.const 100) (i32.const 14) (i32.const 16) (i32.const 20))
                      (i32.const 0))
        (call $copy_to_header (i32.const 160) (i32.const 8))
        (call $expect (call $get (i32.const 120) (i32.const 12) (i32.const 16) (i32.const 20))
                      (i32.const 0))
        (call $copy_to_header (i32.const 170) (i32.const 4))
        (call $expect (call $set (i32.const 140) (i32.const 6) (i32.const 150) (i32.const 8))
                      (i32.const 0))
        (call $expect (call $get (i32.const 140) (i32.const 6) (i32.const 16) (i32.const 20))
                      (i32.const 0))
        (call $copy_to_header (i32.const 180) (i32.const 5))
        (call $expect (call $get (i32.const 190) (i32.const 6) (i32.const 16) (i32.const 20))
                      (i32.const 1))
        (i32.const 0))"#
    );
    let (_module, mut vm) = request_headers(&body, imports, "pw-call-properties");
    let context = vm.new_http_context().expect("context created");
    let mut host = FakeHost::with_request(&[]);
    host.properties.insert(
        vec!["request".to_owned(), "method".to_owned()],
        b"GET".to_vec(),
    );

    vm.on_request_headers(context, &mut host, 0, true)
        .expect("callback runs");
    let request = HeaderMapKind::RequestHeaders;
    assert_eq!(host.values(request, "x-method"), vec!["GET"]);
    assert_eq!(host.values(request, "x-vm"), vec!["pw-call-properties"]);
    assert_eq!(host.values(request, "x-key"), vec!["my_value"]);
}

#[test]
fn metrics_and_shared_data_work() {
    let imports = r#"
      (import "env" "proxy_define_metric" (func $define (param i32 i32 i32 i32) (result i32)))
      (import "env" "proxy_increment_metric" (func $increment (param i32 i64) (result i32)))
      (import "env" "proxy_get_metric" (func $get_metric (param i32 i32) (result i32)))
      (import "env" "proxy_set_shared_data"
        (func $set_shared (param i32 i32 i32 i32 i32) (result i32)))
      (import "env" "proxy_get_shared_data"
        (func $get_shared (param i32 i32 i32 i32 i32) (result i32)))"#;
    let body = format!(
        r#"{EXPECT}
      (data (i32.const 100) "hits")
      (data (i32.const 110) "key")
      (data (i32.const 120) "value")
      (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
        (call $expect (call $define (i32.const 0) (i32.const 100) (i32.const 4) (i32.const 24))
                      (i32.const 0))
        (call $expect (call $increment (i32.load (i32.const 24)) (i64.const 3)) (i32.const 0))
        ;; counters only go up
        (call $expect (call $increment (i32.load (i32.const 24)) (i64.const -1)) (i32.const 2))
        (call $expect (call $get_metric (i32.load (i32.const 24)) (i32.const 32)) (i32.const 0))
        (call $expect (i32.wrap_i64 (i64.load (i32.const 32))) (i32.const 3))
        (call $expect (call $increment (i32.const 400) (i64.const 1)) (i32.const 1))
        ;; shared data: set, read with its cas, and reject a stale cas
        (call $expect (call $set_shared (i32.const 110) (i32.const 3) (i32.const 120) (i32.const 5)
                                        (i32.const 0)) (i32.const 0))
        (call $expect (call $get_shared (i32.const 110) (i32.const 3) (i32.const 16) (i32.const 20)
                                        (i32.const 40)) (i32.const 0))
        (call $expect (i32.load (i32.const 20)) (i32.const 5))
        (call $expect (call $set_shared (i32.const 110) (i32.const 3) (i32.const 120) (i32.const 5)
                                        (i32.load (i32.const 40))) (i32.const 0))
        (call $expect (call $set_shared (i32.const 110) (i32.const 3) (i32.const 120) (i32.const 5)
                                        (i32.load (i32.const 40))) (i32.const 8))
        (i32.const 0))"#
    );
    let (module, mut vm) = request_headers(&body, imports, "pw-call-metrics");
    let context = vm.new_http_context().expect("context created");
    let mut host = FakeHost::with_request(&[]);

    let outcome = vm.on_request_headers(context, &mut host, 0, true);
    assert!(outcome.is_ok(), "{outcome:?}");
    assert_eq!(module.metric("hits"), Some(3));
}

#[test]
fn stream_control_is_reported() {
    let imports = r#"
      (import "env" "proxy_continue_stream" (func $continue (param i32) (result i32)))
      (import "env" "proxy_close_stream" (func $close (param i32) (result i32)))"#;
    let body = format!(
        r#"{EXPECT}
      (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
        (call $expect (call $continue (i32.const 0)) (i32.const 0))
        (call $expect (call $continue (i32.const 2)) (i32.const 2))
        (call $expect (call $close (i32.const 1)) (i32.const 0))
        (call $expect (call $close (i32.const 9)) (i32.const 2))
        (i32.const 1))"#
    );
    let (_module, mut vm) = request_headers(&body, imports, "pw-call-stream");
    let context = vm.new_http_context().expect("context created");
    let mut host = FakeHost::with_request(&[]);

    let outcome = vm
        .on_request_headers(context, &mut host, 0, false)
        .expect("callback runs");
    assert!(outcome.continue_request);
    assert!(!outcome.continue_response);
    assert!(outcome.reset_stream);
    assert_eq!(outcome.action, HeadersAction::StopAllIterationAndWatermark);
}

#[test]
fn unknown_and_finished_contexts_are_rejected() {
    let (_module, mut vm) = request_headers("", "", "pw-call-contexts");
    let mut host = FakeHost::with_request(&[]);

    assert_eq!(
        vm.on_request_headers(99, &mut host, 0, true),
        Err(CallError::UnknownContext { context_id: 99 })
    );
    let context = vm.new_http_context().expect("context created");
    let outcome = vm
        .on_request_headers(context, &mut host, 0, true)
        .expect("a plugin without the callback continues");
    assert_eq!(outcome.action, HeadersAction::Continue);

    vm.finish(context).expect("context finishes");
    assert_eq!(
        vm.on_request_headers(context, &mut host, 0, true),
        Err(CallError::UnknownContext {
            context_id: context
        })
    );
    assert!(!vm.is_broken());
}
