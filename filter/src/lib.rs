//! edgefn: an Envoy dynamic module that runs edge functions described by Apoxy
//! `EdgeFunctionRevision`s. This build hosts Go HTTP filter plugins written for Envoy's golang
//! filter: it fetches the plugin the revision names, loads it, and offers it the same C ABI
//! as Envoy's golang filter, so unmodified plugins run on a stock Envoy.
//!
//! Layout: `hooks` (what Envoy calls) → `stream` (per-stream state machine on the worker)
//! and `gohost::callbacks` (what Go calls, from any thread) → `shared` (state both sides
//! reach). `abi` and `envoy` wrap Envoy's side, `config` loads plugins, and `follow` keeps
//! a filter on the revision an API server names.

pub mod abi;
pub mod config;
pub mod envoy;
pub mod follow;
pub mod gohost;
pub mod hooks;
pub mod logging;
pub mod retry;
pub mod shared;
pub mod stream;
#[cfg(test)]
mod testing;
pub mod wasm;
