//! Helpers for the tests of the Go test plugins in `testplugins.so`:
//!
//! - [`PluginServers`]: the plugin file server and the echo upstream, and Envoy settings for one
//!   plugin revision.
//! - [`send_paced`]: a request whose body chunks (and trailers) leave the client one by one
//!   with a pause before each, and which reports the client's local address.
//! - [`PlainUpstream`]: an upstream that sends no body where HTTP forbids one, for responses
//!   that the echo upstream cannot produce over HTTP/2.
//! - [`FlaggedEnvoy`]: Envoy started with command-line flags that [`EnvoyBuilder`] does not
//!   set, such as `--component-log-level dynamic_modules:trace`.

use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame};
use hyper::header::{HeaderName, HeaderValue, HOST};
use hyper::{HeaderMap, Method, StatusCode, Uri};
use tempfile::TempDir;
use tokio::net::TcpStream;
use tokio::time::Sleep;

use crate::body::FrameBody;
use crate::client::{exchange, Client, ClientError, Protocol, Request, Response};
use crate::config::{free_port, Revision};
use crate::echo::{EchoUpstream, STATUS_HEADER};
use crate::envoy::{log_tail, Envoy, EnvoyBuilder, EnvoyError};
use crate::file_server::FileServer;
use crate::server::{spawn_server, ServerHandle};
use crate::tools::{self, ToolError};

/// File name of the Go plugin library that registers every test plugin.
pub const TEST_PLUGINS_FILE: &str = "testplugins.so";

/// Time allowed for one paced request, pauses included.
const PACED_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Time a [`FlaggedEnvoy`] gets to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(90);
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Attempts at starting a [`FlaggedEnvoy`] when a picked port was taken in the meantime.
const BIND_ATTEMPTS: usize = 3;
/// Log lines kept in error messages.
const LOG_TAIL_LINES: usize = 40;

#[derive(Debug, thiserror::Error)]
pub enum PluginServersError {
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error("starting the {server} on 127.0.0.1 failed: {source}")]
    Start {
        server: &'static str,
        source: io::Error,
    },
}

/// The servers a plugin test needs besides Envoy: a [`FileServer`] for the directory that
/// contains `testplugins.so`, and an [`EchoUpstream`].
#[derive(Debug)]
pub struct PluginServers {
    pub files: FileServer,
    pub upstream: EchoUpstream,
}

impl PluginServers {
    pub fn start() -> Result<Self, PluginServersError> {
        let plugin = tools::plugin_path(TEST_PLUGINS_FILE)?;
        let dir = plugin
            .parent()
            .expect("a plugin file path always has a parent directory");
        let files = FileServer::start(dir).map_err(|source| PluginServersError::Start {
            server: "plugin file server",
            source,
        })?;
        let upstream = EchoUpstream::start().map_err(|source| PluginServersError::Start {
            server: "echo upstream",
            source,
        })?;
        Ok(Self { files, upstream })
    }

    /// Returns a revision named `<plugin>-test` that runs Go plugin `plugin` from
    /// `testplugins.so`, without a plugin config.
    pub fn revision(&self, plugin: &str) -> Revision {
        let name = format!("{plugin}-test");
        Revision::new(&name, plugin, &self.files.url(TEST_PLUGINS_FILE))
    }

    /// Returns settings for `envoy-configs/edgefn.yaml` with `revision` (an
    /// EdgeFunctionRevision object) in front of the echo upstream, with `--concurrency 2`.
    ///
    /// It takes JSON rather than a [`Revision`] so a test can add fields that [`Revision`] does
    /// not model, such as the `edgefn.dev/plugin-config-type` annotation.
    pub fn envoy(&self, revision: &serde_json::Value) -> EnvoyBuilder {
        self.envoy_from("edgefn.yaml", revision)
    }

    /// Returns the settings of [`PluginServers::envoy`] for another template that uses the
    /// same placeholders. `template` is a file name under `envoy-configs/`, or an absolute
    /// path, which `Path::join` keeps as it is.
    pub fn envoy_from(&self, template: &str, revision: &serde_json::Value) -> EnvoyBuilder {
        let revision_text =
            serde_json::to_string_pretty(revision).expect("a JSON value always serializes");
        Envoy::builder(template)
            .var("UPSTREAM_PORT", self.upstream.port())
            .var("REVISION", revision_text)
            .concurrency(2)
    }
}

/// Body of every [`PlainUpstream`] response that may have one.
pub const PLAIN_UPSTREAM_BODY: &str = "plain upstream\n";

/// An upstream on 127.0.0.1, serving HTTP/1.1 and h2c, that replies to every request with the
/// status in [`STATUS_HEADER`] (default 200) and the body [`PLAIN_UPSTREAM_BODY`], except for
/// `HEAD` requests and 1xx, 204 and 304 responses, which get neither a body nor a
/// `content-length`. Stops on drop.
///
/// The [`EchoUpstream`] sends its JSON body even then, which an HTTP/2 peer such as Envoy
/// treats as a protocol error.
#[derive(Debug)]
pub struct PlainUpstream {
    server: ServerHandle,
}

impl PlainUpstream {
    pub fn start() -> io::Result<Self> {
        let server = spawn_server(0, plain_reply)?;
        Ok(Self { server })
    }

    pub fn port(&self) -> u16 {
        self.server.addr().port()
    }
}

async fn plain_reply(request: hyper::Request<hyper::body::Incoming>) -> hyper::Response<FrameBody> {
    let status = request
        .headers()
        .get(STATUS_HEADER)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<u16>().ok())
        .and_then(|code| StatusCode::from_u16(code).ok())
        .unwrap_or(StatusCode::OK);
    let bodyless = request.method() == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;

    let body = if bodyless {
        FrameBody::default()
    } else {
        FrameBody::full(PLAIN_UPSTREAM_BODY)
    };
    let mut response = hyper::Response::new(body);
    *response.status_mut() = status;
    response
}

/// A request whose body leaves the client in chunks, each after a pause of `pause`, followed
/// by the trailers (after one more pause) when there are any.
///
/// Without a `content-length` header, HTTP/1.1 sends the body with chunked transfer encoding.
/// HTTP/2 sends HEADERS without END_STREAM unless there are neither chunks nor trailers.
#[derive(Debug, Clone)]
pub struct PacedRequest {
    pub method: Method,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub chunks: Vec<Bytes>,
    pub trailers: Vec<(String, String)>,
    pub pause: Duration,
}

impl PacedRequest {
    pub fn new(method: Method, path: &str) -> Self {
        Self {
            method,
            path: path.to_owned(),
            headers: Vec::new(),
            chunks: Vec::new(),
            trailers: Vec::new(),
            pause: Duration::ZERO,
        }
    }

    /// Appends a header; a repeated name is sent as several header lines.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Appends one body chunk, sent as its own HTTP/2 DATA frame or HTTP/1.1 chunk.
    pub fn chunk(mut self, data: impl Into<Bytes>) -> Self {
        self.chunks.push(data.into());
        self
    }

    /// Appends a trailer.
    pub fn trailer(mut self, name: &str, value: &str) -> Self {
        self.trailers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets the pause before each chunk and before the trailers.
    pub fn pause(mut self, pause: Duration) -> Self {
        self.pause = pause;
        self
    }
}

/// A response and the client address of the connection that carried it.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub response: Response,
    /// The client's end of the TCP connection, which Envoy reports as the downstream remote
    /// address.
    pub local_addr: SocketAddr,
}

/// Sends `request` to `addr` on a new connection and reads the whole response, within 30
/// seconds.
pub async fn send_paced(
    addr: SocketAddr,
    protocol: Protocol,
    request: PacedRequest,
) -> Result<Exchange, ClientError> {
    let method = request.method.clone();
    let path = request.path.clone();
    let exchange = send_paced_inner(addr, protocol, request);
    match tokio::time::timeout(PACED_REQUEST_TIMEOUT, exchange).await {
        Ok(result) => result,
        Err(_) => Err(ClientError::Timeout {
            addr,
            method,
            path,
            timeout: PACED_REQUEST_TIMEOUT,
        }),
    }
}

async fn send_paced_inner(
    addr: SocketAddr,
    protocol: Protocol,
    request: PacedRequest,
) -> Result<Exchange, ClientError> {
    let method = request.method.clone();
    let path = request.path.clone();
    let http_request = build_paced(addr, protocol, request)?;

    let stream = TcpStream::connect(addr)
        .await
        .map_err(|source| ClientError::Connect { addr, source })?;
    let local_addr = stream
        .local_addr()
        .map_err(|source| ClientError::Connect { addr, source })?;
    let response = exchange(stream, addr, protocol, method, path, http_request).await?;
    Ok(Exchange {
        response,
        local_addr,
    })
}

fn build_paced(
    addr: SocketAddr,
    protocol: Protocol,
    request: PacedRequest,
) -> Result<hyper::Request<PacedBody>, ClientError> {
    let uri_text = match protocol {
        Protocol::Http1 => request.path.clone(),
        Protocol::Http2 => format!("http://{addr}{}", request.path),
    };
    let uri: Uri = uri_text
        .parse()
        .map_err(
            |error: hyper::http::uri::InvalidUri| ClientError::InvalidRequest {
                part: "path",
                value: request.path.clone(),
                reason: error.to_string(),
            },
        )?;

    let headers = header_map(&request.headers, "header")?;
    let trailers = header_map(&request.trailers, "trailer")?;
    let body = PacedBody {
        chunks: request.chunks.into(),
        trailers: (!trailers.is_empty()).then_some(trailers),
        pause: request.pause,
        sleep: None,
    };

    let mut http_request = hyper::Request::new(body);
    *http_request.method_mut() = request.method;
    *http_request.uri_mut() = uri;
    *http_request.headers_mut() = headers;
    if protocol == Protocol::Http1 && !http_request.headers().contains_key(HOST) {
        let host = HeaderValue::try_from(addr.to_string())
            .expect("a socket address is a valid header value");
        http_request.headers_mut().insert(HOST, host);
    }
    Ok(http_request)
}

fn header_map(pairs: &[(String, String)], part: &'static str) -> Result<HeaderMap, ClientError> {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        let invalid = |reason: String| ClientError::InvalidRequest {
            part,
            value: format!("{name}: {value}"),
            reason,
        };
        let name = HeaderName::try_from(name.as_str()).map_err(|e| invalid(e.to_string()))?;
        let value = HeaderValue::try_from(value.as_str()).map_err(|e| invalid(e.to_string()))?;
        map.append(name, value);
    }
    Ok(map)
}

/// A request body that waits `pause` before yielding each data frame and the trailers.
struct PacedBody {
    chunks: VecDeque<Bytes>,
    trailers: Option<HeaderMap>,
    pause: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Body for PacedBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if this.chunks.is_empty() && this.trailers.is_none() {
            return Poll::Ready(None);
        }

        if !this.pause.is_zero() {
            let pause = this.pause;
            let sleep = this
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(pause)));
            ready!(sleep.as_mut().poll(cx));
            this.sleep = None;
        }

        if let Some(chunk) = this.chunks.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        let trailers = this.trailers.take().map(|map| Ok(Frame::trailers(map)));
        Poll::Ready(trailers)
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty() && self.trailers.is_none()
    }
}

/// A running Envoy started from a rendered [`EnvoyBuilder`] template with the caller's own
/// flags. Dropping it kills the process and removes its run directory.
///
/// [`EnvoyBuilder::start`] always passes `--component-log-level dynamic_modules:debug`, and
/// Envoy 1.40 rejects that flag when it is given twice ("Argument already set!"). So a test
/// that needs the `dynamic_modules` logger at another level starts Envoy here.
#[derive(Debug)]
pub struct FlaggedEnvoy {
    child: Child,
    dir: TempDir,
    listen_addr: SocketAddr,
    admin_addr: SocketAddr,
}

impl FlaggedEnvoy {
    /// Renders `builder`'s template, starts Envoy with `--config-path`,
    /// `--disable-hot-restart` and `flags`, and waits until its admin `/ready` returns 200.
    ///
    /// The builder's concurrency, log level and environment are not used: pass them in
    /// `flags` and `env`.
    pub async fn start(
        builder: &EnvoyBuilder,
        flags: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Self, EnvoyError> {
        let mut attempt = 1;
        loop {
            let mut envoy = Self::spawn(builder, flags, env)?;
            match envoy.wait_ready().await {
                Ok(()) => return Ok(envoy),
                Err(EnvoyError::Exited { log_tail, .. })
                    if attempt < BIND_ATTEMPTS && log_tail.contains("Address already in use") =>
                {
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    pub fn listen_addr(&self) -> SocketAddr {
        self.listen_addr
    }

    /// Returns everything Envoy has logged so far.
    pub fn log_text(&self) -> String {
        let path = self.dir.path().join("envoy.log");
        match std::fs::read(&path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(error) => format!("(reading {} failed: {error})", path.display()),
        }
    }

    /// Returns everything Envoy has logged so far as raw bytes, for checks on bytes that are
    /// not UTF-8.
    pub fn log_bytes(&self) -> io::Result<Vec<u8>> {
        std::fs::read(self.dir.path().join("envoy.log"))
    }

    fn spawn(
        builder: &EnvoyBuilder,
        flags: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Self, EnvoyError> {
        let listen_port = free_port()?;
        let admin_port = free_port()?;
        let config = builder.render(listen_port, admin_port)?;

        let dir = tempfile::Builder::new()
            .prefix("edgefn-envoy-")
            .tempdir()
            .map_err(io_error("creating a temporary directory for Envoy"))?;
        let config_path = dir.path().join("envoy.yaml");
        std::fs::write(&config_path, config)
            .map_err(io_error(format!("writing {}", config_path.display())))?;
        let cache_dir = dir.path().join("cache");
        std::fs::create_dir(&cache_dir)
            .map_err(io_error(format!("creating {}", cache_dir.display())))?;
        let log_path = dir.path().join("envoy.log");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io_error(format!("opening {}", log_path.display())))?;
        let log_for_stderr = log
            .try_clone()
            .map_err(io_error(format!("duplicating {}", log_path.display())))?;

        let envoy = tools::envoy_binary()?;
        let mut command = Command::new(&envoy);
        command
            .arg("--config-path")
            .arg(&config_path)
            .arg("--disable-hot-restart")
            .args(flags)
            .env("EDGEFN_CACHE_DIR", &cache_dir)
            .env("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", tools::module_dir()?)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_for_stderr));
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command
            .spawn()
            .map_err(io_error(format!("starting {}", envoy.display())))?;

        Ok(Self {
            child,
            dir,
            listen_addr: SocketAddr::from(([127, 0, 0, 1], listen_port)),
            admin_addr: SocketAddr::from(([127, 0, 0, 1], admin_port)),
        })
    }

    async fn wait_ready(&mut self) -> Result<(), EnvoyError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            let exited = self.child.try_wait().map_err(io_error(format!(
                "waiting for Envoy (pid {})",
                self.child.id()
            )))?;
            if let Some(status) = exited {
                return Err(EnvoyError::Exited {
                    status,
                    log_tail: log_tail(&self.log_text(), LOG_TAIL_LINES).to_owned(),
                });
            }
            if self.admin_ready().await {
                return Ok(());
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        Err(EnvoyError::Timeout {
            expected: "report ready on admin /ready",
            timeout: READY_TIMEOUT,
            log_tail: log_tail(&self.log_text(), LOG_TAIL_LINES).to_owned(),
        })
    }

    async fn admin_ready(&self) -> bool {
        let response = Client::http1(self.admin_addr)
            .send(Request::get("/ready"))
            .await;
        matches!(response, Ok(response) if response.status == StatusCode::OK)
    }
}

impl Drop for FlaggedEnvoy {
    fn drop(&mut self) {
        // The process may already be gone, so errors are ignored.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn io_error(action: impl Into<String>) -> impl FnOnce(io::Error) -> EnvoyError {
    let action = action.into();
    move |source| EnvoyError::Io { action, source }
}
