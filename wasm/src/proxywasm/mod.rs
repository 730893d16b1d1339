//! The host side of the proxy-wasm ABI 0.2.1, for revisions with `spec.mode: filter`.
//!
//! A plugin built for Envoy's wasm filter (`envoy.filters.http.wasm`), for example with the
//! `proxy-wasm` Rust crate 0.2, runs here unchanged and should answer as it does in Envoy:
//! status codes, header-map rules, body edits and callback results follow Envoy's wasm filter
//! and proxy-wasm-cpp-host, the host library inside it. This module knows nothing about
//! Envoy itself; the filter reaches the stream through [`HttpHost`].
//!
//! - [`ProxyWasmModule`] (one per revision, `Send + Sync`) checks a compiled module against
//!   the ABI, links it, and starts a trial VM so a plugin that rejects its configuration is
//!   rejected when the revision loads.
//! - [`ProxyWasmVm`] (one per worker thread) owns the wasmtime store, the root context
//!   (id 1) and the HTTP contexts; the filter calls one method per stream event and gets the
//!   plugin's action back in an [`Outcome`], with the local reply the plugin sent, if any.
//!
//! How the plugin sees edgefn:
//! - The VM id and the plugin name (properties `plugin_vm_id` and `plugin_name`) are the
//!   revision name, and `plugin_root_id` is empty; Envoy configured with `vm_id` and `name`
//!   set to the revision name and no `root_id` matches. Shared data and metrics are scoped by
//!   the VM id and shared by every VM of the revision in the process.
//! - `VM_CONFIGURATION` is empty. `PLUGIN_CONFIGURATION` is readable during
//!   `proxy_on_configure` only, as in Envoy.
//! - Properties the plugin sets are kept per context; the root context has none (Envoy
//!   returns `NOT_FOUND` there too). Every other property comes from [`HttpHost::property`].
//! - The plugin's stdout is logged at info level after each callback, stderr a line at a
//!   time, and its environment is `spec.env`. The `edgefn` import module offers `env_get` and,
//!   with the `kv` capability, the key-value functions; outbound HTTP is backend-only.
//! - Not offered: shared queues, HTTP and gRPC calls (`UNIMPLEMENTED`), foreign functions
//!   (`NOT_FOUND`). The tick period is stored; the filter drives [`ProxyWasmVm::on_tick`].

mod abi;
mod http;
mod imports_general;
mod imports_http;
mod module;
mod pairs;
mod shared;
mod state;
mod vm;

#[cfg(test)]
mod tests;

pub use abi::{BodyKind, DataAction, HeaderMapKind, HeadersAction, TrailersAction};
pub use http::{HttpHost, LocalReply, Outcome, Unavailable};
pub use module::{LoadError, ProxyWasmModule};
pub use pairs::{
    deserialize as deserialize_pairs, serialize as serialize_pairs, HeaderPairs, TruncatedPairs,
};
pub use state::ROOT_CONTEXT_ID;
pub use vm::{CallError, ProxyWasmVm, StartError};
