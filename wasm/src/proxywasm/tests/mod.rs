//! Tests of the proxy-wasm host: small WAT modules for load checks, traps, timeouts and
//! guest pointers, and the `pw-headers` and `pw-body` plugins when they are built.

mod calls;
mod fake;
mod load;
mod plugins;

use std::time::Duration;

use wasmtime::Module;

use super::{LoadError, ProxyWasmModule};
use crate::engine::engine;
use crate::settings::FunctionSettings;

/// Settings for a test revision named `revision` (names keep shared data and metrics apart).
fn settings(revision: &str) -> FunctionSettings {
    let mut settings = FunctionSettings::new(revision);
    settings.timeout = Duration::from_secs(5);
    settings
}

/// Builds a proxy-wasm module in WAT: `imports`, then one page of memory, the ABI marker,
/// a bump allocator from address 4096, an empty `proxy_on_context_create`, and `body`.
/// Data segments in `body` may use addresses below 4096.
fn plugin_wat(imports: &str, body: &str) -> String {
    format!(
        r#"(module
  {imports}
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 4096))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $address i32)
    (local.set $address (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $size)))
    (local.get $address))
  (func (export "proxy_on_context_create") (param i32 i32))
  {body}
)"#
    )
}

fn compile(wat: &str) -> Module {
    let bytes = wat::parse_str(wat).expect("test WAT parses");
    Module::new(engine(), &bytes).expect("test module compiles")
}

fn load(wat: &str, settings: FunctionSettings) -> Result<ProxyWasmModule, LoadError> {
    ProxyWasmModule::load(&compile(wat), settings, Vec::new())
}
