//! Fetches Go filter plugin libraries into a content-addressed cache, checks them, and opens
//! them with `dlopen`.
//!
//! The loader runs inside Envoy's process, on the main thread while a filter configuration
//! loads, so `fetch_blocking` brings its own runtime and no function panics on bad input.
//!
//! 1. [`fetch_blocking`] (or [`fetch`]) stores the artifact as `<cache>/sha256/<hex>`, from a
//!    URL or from an OCI registry ([`oci`]).
//! 2. [`check_go_plugin`] checks from the bytes alone that the file is a Go filter plugin
//!    for this host. [`GoPluginLibrary::open`] repeats the check before it calls `dlopen`.
//! 3. [`GoPluginLibrary::open`] opens the library once per digest and resolves its exports.
//!
//! Only the `dlopen` module contains `unsafe` code.

#![deny(unsafe_code)]

mod cache;
mod digest;
mod dlopen;
mod elf;
mod error;
mod fetch;
mod http;
pub mod oci;
mod source;

pub use dlopen::{
    CleanUpFn, DestroyHttpPluginConfigFn, GoExports, GoPluginLibrary, HostCallbacks,
    MergeHttpPluginConfigFn, NewHttpPluginConfigFn, OnHttpDataFn, OnHttpDestroyFn, OnHttpHeaderFn,
    OnHttpLogFn, OnHttpStreamCompleteFn, RequestSemaDecFn, SecondRuntimePolicy, GO_LIBRARIES_ENV,
};
pub use elf::{check_go_plugin, ElfInfo, REQUIRED_EXPORTS};
pub use error::{ElfError, FetchError, LoadError, OpenError};
pub use fetch::{fetch, fetch_blocking, Artifact, FetchOptions, DEFAULT_MAX_SIZE, DEFAULT_TIMEOUT};
pub use oci::{OciCredentials, OciError, OciSource, Secret, SecretRef};
pub use source::Source;
