//! An upstream that returns the request it received as JSON.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE, TRAILER};
use hyper::{HeaderMap, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};

use crate::body::FrameBody;
use crate::server::{spawn_server, ServerHandle};

/// Request header that sets the response status, for example `x-echo-status: 503`.
pub const STATUS_HEADER: &str = "x-echo-status";
/// Request header, repeatable, that adds one response trailer: `x-echo-trailer: name=value`.
/// HTTP/1.1 clients receive trailers only when they send `te: trailers`.
pub const TRAILER_HEADER: &str = "x-echo-trailer";
/// Request header that splits the response body into this many chunks (DATA frames in HTTP/2,
/// chunked transfer encoding in HTTP/1.1) instead of one body with a `content-length`.
pub const CHUNKS_HEADER: &str = "x-echo-chunks";
/// Request header that delays the response by this many milliseconds, at most [`MAX_DELAY_MS`].
pub const DELAY_HEADER: &str = "x-echo-delay-ms";
/// Maximum accepted value of [`DELAY_HEADER`].
pub const MAX_DELAY_MS: u64 = 60_000;
const MAX_CHUNKS: usize = 1024;

/// The JSON body the echo upstream returns: everything it received, as it received it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EchoedRequest {
    pub method: String,
    /// Path and query, as in the request line or `:path`.
    pub path: String,
    /// Every request header as a `[name, value]` pair, repeated names kept. The values of one
    /// name keep their arrival order, and names are listed in the order they first arrived.
    ///
    /// NOTE: hyper parses headers into a `HeaderMap`, which groups values by name, so headers
    /// sent as `a, b, a` are listed as `a, a, b`.
    pub headers: Vec<(String, String)>,
    /// The request body, with invalid UTF-8 replaced by U+FFFD.
    pub body: String,
    /// Request trailers as `[name, value]` pairs.
    pub trailers: Vec<(String, String)>,
}

impl EchoedRequest {
    /// Returns every value of header `name` (lower case) in arrival order.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        pairs_named(&self.headers, name)
    }

    /// Returns the first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_values(name).first().copied()
    }

    /// Returns every value of trailer `name` (lower case) in arrival order.
    pub fn trailer_values(&self, name: &str) -> Vec<&str> {
        pairs_named(&self.trailers, name)
    }
}

fn pairs_named<'a>(pairs: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    pairs
        .iter()
        .filter(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
        .collect()
}

/// A running echo upstream on 127.0.0.1, serving HTTP/1.1 and h2c. Stops on drop.
///
/// Every reply is `application/json` with an [`EchoedRequest`] body. Request headers shape the
/// reply: [`STATUS_HEADER`], [`TRAILER_HEADER`], [`CHUNKS_HEADER`] and [`DELAY_HEADER`]. An
/// invalid value of one of them gets a 400 whose body names the header.
#[derive(Debug)]
pub struct EchoUpstream {
    server: ServerHandle,
}

impl EchoUpstream {
    /// Starts an echo upstream on a free port.
    pub fn start() -> io::Result<Self> {
        Self::start_on_port(0)
    }

    /// Starts an echo upstream on `127.0.0.1:port`.
    pub fn start_on_port(port: u16) -> io::Result<Self> {
        let server = spawn_server(port, echo)?;
        Ok(Self { server })
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    pub fn port(&self) -> u16 {
        self.addr().port()
    }
}

async fn echo(request: Request<Incoming>) -> Response<FrameBody> {
    let (parts, body) = request.into_parts();
    let options = match ReplyOptions::from_headers(&parts.headers) {
        Ok(options) => options,
        Err(message) => return text_response(StatusCode::BAD_REQUEST, message),
    };

    let collected = match body.collect().await {
        Ok(collected) => collected,
        Err(error) => {
            let message = format!("reading the request body failed: {error}");
            return text_response(StatusCode::BAD_REQUEST, message);
        }
    };
    let trailers = collected.trailers().map(header_pairs).unwrap_or_default();
    let body = collected.to_bytes();

    let echoed = EchoedRequest {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map_or("/", |path| path.as_str())
            .to_owned(),
        headers: header_pairs(&parts.headers),
        body: String::from_utf8_lossy(&body).into_owned(),
        trailers,
    };
    let json = serde_json::to_vec(&echoed).expect("EchoedRequest always serializes to JSON");

    if !options.delay.is_zero() {
        tokio::time::sleep(options.delay).await;
    }

    // hyper's HTTP/1.1 server sends only trailers that the `trailer` header announces, and only
    // to a client that sent `te: trailers`.
    let announced = announce_trailers(&options.trailers);
    let body = if options.chunks > 1 || !options.trailers.is_empty() {
        FrameBody::chunked(
            split_into_chunks(Bytes::from(json), options.chunks),
            options.trailers,
        )
    } else {
        FrameBody::full(json)
    };
    let mut response = Response::new(body);
    *response.status_mut() = options.status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(names) = announced {
        response.headers_mut().insert(TRAILER, names);
    }
    response
}

/// Reply settings, read from the request's control headers.
struct ReplyOptions {
    status: StatusCode,
    trailers: HeaderMap,
    chunks: usize,
    delay: Duration,
}

impl ReplyOptions {
    fn from_headers(headers: &HeaderMap) -> Result<Self, String> {
        let mut options = Self {
            status: StatusCode::OK,
            trailers: HeaderMap::new(),
            chunks: 1,
            delay: Duration::ZERO,
        };

        if let Some(value) = header_text(headers, STATUS_HEADER)? {
            options.status = value
                .parse::<u16>()
                .ok()
                .and_then(|code| StatusCode::from_u16(code).ok())
                .ok_or_else(|| format!("{STATUS_HEADER}: expected a status code, got {value:?}"))?;
        }

        for value in headers.get_all(TRAILER_HEADER) {
            let text = value
                .to_str()
                .map_err(|_| format!("{TRAILER_HEADER}: not ASCII"))?;
            let (name, trailer_value) = text
                .split_once('=')
                .ok_or_else(|| format!("{TRAILER_HEADER}: expected name=value, got {text:?}"))?;
            let name = HeaderName::try_from(name.trim())
                .map_err(|_| format!("{TRAILER_HEADER}: invalid trailer name in {text:?}"))?;
            let trailer_value = HeaderValue::try_from(trailer_value.trim())
                .map_err(|_| format!("{TRAILER_HEADER}: invalid trailer value in {text:?}"))?;
            options.trailers.append(name, trailer_value);
        }

        if let Some(value) = header_text(headers, CHUNKS_HEADER)? {
            options.chunks = value
                .parse::<usize>()
                .ok()
                .filter(|chunks| (1..=MAX_CHUNKS).contains(chunks))
                .ok_or_else(|| {
                    format!("{CHUNKS_HEADER}: expected 1..={MAX_CHUNKS}, got {value:?}")
                })?;
        }

        if let Some(value) = header_text(headers, DELAY_HEADER)? {
            let millis = value
                .parse::<u64>()
                .ok()
                .filter(|millis| *millis <= MAX_DELAY_MS)
                .ok_or_else(|| {
                    format!("{DELAY_HEADER}: expected 0..={MAX_DELAY_MS}, got {value:?}")
                })?;
            options.delay = Duration::from_millis(millis);
        }

        Ok(options)
    }
}

/// Returns the `trailer` header value listing the names in `trailers`, or `None` when empty.
fn announce_trailers(trailers: &HeaderMap) -> Option<HeaderValue> {
    let names: Vec<&str> = trailers.keys().map(|name| name.as_str()).collect();
    if names.is_empty() {
        return None;
    }
    let value = HeaderValue::try_from(names.join(", "))
        .expect("header names joined by commas are a valid header value");
    Some(value)
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, String> {
    match headers.get(name) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .map(Some)
            .map_err(|_| format!("{name}: not ASCII")),
    }
}

/// Converts a header map to `(name, value)` pairs. Values that are not UTF-8 are converted
/// lossily, because the echo reply is JSON text.
pub(crate) fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// Splits `data` into `count` chunks of nearly equal size, none empty unless `data` is shorter
/// than `count`, in which case the chunks are single bytes.
fn split_into_chunks(data: Bytes, count: usize) -> Vec<Bytes> {
    let chunk_size = data.len().div_ceil(count.max(1)).max(1);
    let mut chunks = Vec::with_capacity(count);
    let mut rest = data;
    while !rest.is_empty() {
        let take = chunk_size.min(rest.len());
        chunks.push(rest.split_to(take));
    }
    chunks
}

fn text_response(status: StatusCode, message: String) -> Response<FrameBody> {
    let mut response = Response::new(FrameBody::full(message));
    *response.status_mut() = status;
    response
}
