//! Load-time checks: what `ProxyWasmModule::load` rejects, and what it accepts.

use super::{load, plugin_wat, settings};
use crate::proxywasm::{LoadError, StartError};

fn missing_export(error: LoadError) -> &'static str {
    match error {
        LoadError::MissingExport { export, .. } => export,
        other => panic!("expected a missing export, got: {other}"),
    }
}

#[test]
fn minimal_plugin_loads() {
    let result = load(&plugin_wat("", ""), settings("pw-load-minimal"));
    assert!(result.is_ok(), "{:?}", result.err());
}

#[test]
fn missing_memory_is_rejected() {
    let wat = r#"(module
      (func (export "proxy_abi_version_0_2_1"))
      (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 0))
      (func (export "proxy_on_context_create") (param i32 i32)))"#;
    let error = load(wat, settings("pw-load-no-memory"))
        .err()
        .expect("rejected");
    assert_eq!(missing_export(error), "memory");
}

#[test]
fn missing_abi_version_is_rejected() {
    let wat = r#"(module
      (memory (export "memory") 1)
      (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 0))
      (func (export "proxy_on_context_create") (param i32 i32)))"#;
    let error = load(wat, settings("pw-load-no-abi"))
        .err()
        .expect("rejected");
    assert_eq!(missing_export(error), "proxy_abi_version_0_2_1");
}

#[test]
fn older_abi_and_malloc_load() {
    let wat = r#"(module
      (memory (export "memory") 1)
      (func (export "proxy_abi_version_0_2_0"))
      (func (export "malloc") (param i32) (result i32) (i32.const 1024))
      (func (export "proxy_on_context_create") (param i32 i32)))"#;
    let result = load(wat, settings("pw-load-0-2-0"));
    assert!(result.is_ok(), "{:?}", result.err());
}

#[test]
fn missing_allocator_is_rejected() {
    let wat = r#"(module
      (memory (export "memory") 1)
      (func (export "proxy_abi_version_0_2_1"))
      (func (export "proxy_on_context_create") (param i32 i32)))"#;
    let error = load(wat, settings("pw-load-no-allocator"))
        .err()
        .expect("rejected");
    assert_eq!(missing_export(error), "proxy_on_memory_allocate");
}

#[test]
fn missing_context_create_is_rejected() {
    let wat = r#"(module
      (memory (export "memory") 1)
      (func (export "proxy_abi_version_0_2_1"))
      (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 0)))"#;
    let error = load(wat, settings("pw-load-no-create"))
        .err()
        .expect("rejected");
    assert_eq!(missing_export(error), "proxy_on_context_create");
}

#[test]
fn unknown_proxy_import_is_named() {
    let imports = r#"(import "env" "proxy_not_in_the_abi" (func (param i32) (result i32)))"#;
    let error = load(&plugin_wat(imports, ""), settings("pw-load-unknown-env"))
        .err()
        .expect("rejected");
    let message = error.to_string();
    assert!(
        matches!(error, LoadError::UnknownImport { .. }),
        "{message}"
    );
    assert!(message.contains("`env.proxy_not_in_the_abi`"), "{message}");
}

#[test]
fn import_from_unknown_module_is_named() {
    let imports = r#"(import "other" "thing" (func))"#;
    let error = load(&plugin_wat(imports, ""), settings("pw-load-unknown-module"))
        .err()
        .expect("rejected");
    assert!(error.to_string().contains("`other.thing`"), "{error}");
}

#[test]
fn kv_import_needs_capability() {
    let imports = r#"(import "edgefn" "kv_get" (func (param i32 i32 i32 i32) (result i32)))"#;
    let mut without_kv = settings("pw-load-kv-off");
    without_kv.kv = false;
    let error = load(&plugin_wat(imports, ""), without_kv)
        .err()
        .expect("rejected");
    assert!(
        matches!(error, LoadError::CapabilityDisabled { .. }),
        "{error}"
    );

    let result = load(&plugin_wat(imports, ""), settings("pw-load-kv-on"));
    assert!(result.is_ok(), "{:?}", result.err());
}

#[test]
fn fetch_import_is_rejected_in_filter_mode() {
    let imports = r#"(import "edgefn" "fetch"
      (func (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))"#;
    let error = load(&plugin_wat(imports, ""), settings("pw-load-fetch"))
        .err()
        .expect("rejected");
    assert!(matches!(error, LoadError::FetchInFilter { .. }), "{error}");
}

#[test]
fn wasi_and_env_get_imports_load() {
    let imports = r#"
      (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "path_open"
        (func (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
      (import "edgefn" "env_get" (func (param i32 i32 i32 i32) (result i32)))"#;
    let result = load(&plugin_wat(imports, ""), settings("pw-load-wasi"));
    assert!(result.is_ok(), "{:?}", result.err());
}

#[test]
fn callback_with_wrong_signature_is_rejected() {
    let body = r#"(func (export "proxy_on_request_headers") (param i32 i32) (result i32)
      (i32.const 0))"#;
    let error = load(&plugin_wat("", body), settings("pw-load-signature"))
        .err()
        .expect("rejected");
    match error {
        LoadError::ExportType { export, .. } => assert_eq!(export, "proxy_on_request_headers"),
        other => panic!("expected a wrong export type, got: {other}"),
    }
}

fn start_error(error: LoadError) -> StartError {
    match error {
        LoadError::Start { source, .. } => source,
        other => panic!("expected a start failure, got: {other}"),
    }
}

#[test]
fn vm_start_returning_false_rejects_load() {
    let body = r#"(func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 0))"#;
    let error = load(&plugin_wat("", body), settings("pw-load-vm-start"))
        .err()
        .expect("rejected");
    assert!(matches!(start_error(error), StartError::VmStartRejected));
}

#[test]
fn configure_returning_false_rejects_load() {
    let body = r#"(func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 0))"#;
    let error = load(&plugin_wat("", body), settings("pw-load-configure"))
        .err()
        .expect("rejected");
    assert!(matches!(
        start_error(error),
        StartError::ConfigureRejected { size: 0 }
    ));
}

#[test]
fn configure_reads_plugin_configuration() {
    // Returns true only when PLUGIN_CONFIGURATION (7) reads back as the 2 bytes "ok".
    let imports = r#"(import "env" "proxy_get_buffer_bytes"
      (func $get_buffer (param i32 i32 i32 i32 i32) (result i32)))"#;
    let body = r#"
      (func (export "proxy_on_configure") (param $context i32) (param $size i32) (result i32)
        (if (i32.ne (call $get_buffer (i32.const 7) (i32.const 0) (local.get $size)
                                      (i32.const 16) (i32.const 20)) (i32.const 0))
          (then (return (i32.const 0))))
        (i32.and
          (i32.eq (i32.load (i32.const 20)) (i32.const 2))
          (i32.eq (i32.load16_u (i32.load (i32.const 16))) (i32.const 0x6b6f))))"#;
    let module = super::compile(&plugin_wat(imports, body));
    let accepted = crate::proxywasm::ProxyWasmModule::load(
        &module,
        settings("pw-load-config-ok"),
        b"ok".to_vec(),
    );
    assert!(accepted.is_ok(), "{:?}", accepted.err());

    let rejected = crate::proxywasm::ProxyWasmModule::load(
        &module,
        settings("pw-load-config-no"),
        b"no".to_vec(),
    );
    assert!(matches!(
        rejected.err().map(start_error),
        Some(StartError::ConfigureRejected { size: 2 })
    ));
}

#[test]
fn trap_in_initialize_rejects_load() {
    let body = r#"(func (export "_initialize") unreachable)"#;
    let error = load(&plugin_wat("", body), settings("pw-load-init-trap"))
        .err()
        .expect("rejected");
    match start_error(error) {
        StartError::Callback { callback, .. } => assert_eq!(callback, "_initialize"),
        other => panic!("expected a failed _initialize, got: {other}"),
    }
}
