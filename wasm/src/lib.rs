//! The WebAssembly runtime edgefn runs wasm revisions on, independent of Envoy.
//!
//! - [`engine`]: the process-wide wasmtime engine, its epoch ticker, and compiling modules
//!   (with compiled code cached beside the artifact).
//! - [`backend`]: functions in `backend` mode, which handle a request over CGI on WASI.
//! - [`proxywasm`]: filters in `filter` mode, written for the proxy-wasm ABI 0.2.1.
//! - [`wasi`], [`host`], [`kv`], [`fetch`]: what modules import: a WASIp1 subset, and the
//!   `edgefn` module with env, the key-value store and outbound HTTP.
//!
//! The contracts are documented in `docs/wasm.md`.

pub mod backend;
pub mod engine;
pub mod fetch;
pub mod host;
pub mod kv;
mod memory;
pub mod proxywasm;
pub mod settings;
pub mod wasi;

pub use backend::{BackendFunction, CgiRequest, CgiResponse, RunError};
pub use engine::{compile, engine, CompileError};
pub use settings::FunctionSettings;
