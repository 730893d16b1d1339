//! Bindings for functions that run on edgefn's WebAssembly runtime (target `wasm32-wasip1`).
//!
//! [`env`], [`kv`] and [`fetch`] wrap the host functions of the `edgefn` import module, and
//! [`cgi`] reads the request and writes the response of a backend function (CGI over WASI).
//! `docs/wasm.md` in the edgefn repository specifies both contracts.
//!
//! The host functions exist only inside a wasm32 module that edgefn runs. On other targets,
//! such as `cargo test` on the build machine, every host call fails with
//! [`Error::Unsupported`], and [`env::get`] returns `None`.
//!
//! A module imports only the host functions it calls, because the linker drops the rest. That
//! matters: edgefn rejects a module that imports a function whose capability
//! (`spec.runtime.capabilities.kv` or `fetchAPI`) is turned off.

pub mod cgi;
pub mod env;
mod error;
pub mod fetch;
pub mod kv;
mod sys;

pub use error::Error;
