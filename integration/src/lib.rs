//! Test harness for running edgefn inside the real Envoy 1.40.
//!
//! - [`EchoUpstream`]: an HTTP/1.1 and h2c server that returns the request it received as JSON.
//! - [`FileServer`]: serves Go plugin files over HTTP, counts requests and injects faults.
//! - [`Envoy`]: renders a config from `envoy-configs/*.yaml`, runs Envoy and reads its log,
//!   admin stats and resource use.
//! - [`Client`]: sends one HTTP/1.1 or HTTP/2 (prior knowledge) request per call.
//! - [`tools`]: finds the Envoy binary, the Go test plugins and `libedgefn.so`.
//!
//! Every server listens on 127.0.0.1 only and runs on a shared background Tokio runtime, so
//! tests may block their own thread (for example while Envoy validates a config that makes it
//! fetch a plugin from a [`FileServer`]).

mod body;
mod client;
mod config;
mod echo;
mod envoy;
mod file_server;
mod plugins;
mod server;
pub mod tools;
mod wasm;

pub use body::FrameBody;
pub use client::{Client, ClientError, Protocol, Request, Response};
pub use config::{free_port, ConfigError, Revision};
pub use echo::{EchoUpstream, EchoedRequest, CHUNKS_HEADER, DELAY_HEADER, STATUS_HEADER};
pub use echo::{MAX_DELAY_MS, TRAILER_HEADER};
pub use envoy::{log_tail, Envoy, EnvoyBuilder, EnvoyError, FailedStart, ValidateOutcome};
pub use file_server::{Fault, FileServer};
pub use plugins::{send_paced, Exchange, FlaggedEnvoy, PacedRequest, PluginServers};
pub use plugins::{PlainUpstream, PluginServersError, PLAIN_UPSTREAM_BODY, TEST_PLUGINS_FILE};
pub use wasm::{wasm_module, WasmRevision};
