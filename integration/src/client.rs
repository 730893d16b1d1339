//! An HTTP client for tests: one request per connection, HTTP/1.1 or HTTP/2 with prior
//! knowledge, with request trailers and full access to the response.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::header::{HeaderName, HeaderValue, HOST};
use hyper::{HeaderMap, Method, StatusCode, Uri};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use crate::body::FrameBody;
use crate::echo::{header_pairs, EchoedRequest};

/// Time allowed for one request, from connecting to the last byte of the response.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connecting to {addr} failed: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{protocol:?} handshake with {addr} failed: {source}")]
    Handshake {
        addr: SocketAddr,
        protocol: Protocol,
        source: hyper::Error,
    },
    #[error("{method} {path} to {addr} failed: {source}")]
    Request {
        addr: SocketAddr,
        method: Method,
        path: String,
        source: hyper::Error,
    },
    #[error("{method} {path} to {addr} got no complete response within {timeout:?}")]
    Timeout {
        addr: SocketAddr,
        method: Method,
        path: String,
        timeout: Duration,
    },
    #[error("invalid request {part} {value:?}: {reason}")]
    InvalidRequest {
        part: &'static str,
        value: String,
        reason: String,
    },
}

/// The protocol the [`Client`] speaks to its peer. Neither uses TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    /// HTTP/2 over cleartext with prior knowledge (h2c, no upgrade).
    Http2,
}

/// A request to send: method, path with query, headers, body and trailers.
///
/// Trailers are sent only over HTTP/2 in these tests. Over HTTP/1.1, hyper sends them only with a
/// chunked body and Envoy drops them unless trailers are enabled for HTTP/1.1.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub trailers: Vec<(String, String)>,
}

impl Request {
    pub fn get(path: &str) -> Self {
        Self::new(Method::GET, path)
    }

    pub fn post(path: &str, body: impl Into<Bytes>) -> Self {
        Self {
            body: body.into(),
            ..Self::new(Method::POST, path)
        }
    }

    pub fn new(method: Method, path: &str) -> Self {
        Self {
            method,
            path: path.to_owned(),
            headers: Vec::new(),
            body: Bytes::new(),
            trailers: Vec::new(),
        }
    }

    /// Appends a header; a repeated name is sent as several header lines.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Appends a trailer, which makes the body end with a trailers frame.
    pub fn trailer(mut self, name: &str, value: &str) -> Self {
        self.trailers.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// A complete response: status, headers, body and trailers, all as received.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: StatusCode,
    /// Headers as `(name, value)` pairs, repeated names kept.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub trailers: Vec<(String, String)>,
}

impl Response {
    /// Returns every value of header `name` (lower case) in arrival order.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Returns the first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_values(name).first().copied()
    }

    /// Returns the first value of trailer `name` (lower case).
    pub fn trailer(&self, name: &str) -> Option<&str> {
        self.trailers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Returns the body as text, with invalid UTF-8 replaced by U+FFFD.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Parses the body as the JSON reply of an [`crate::EchoUpstream`].
    pub fn echoed(&self) -> Result<EchoedRequest, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// Sends requests to one address; each request opens its own connection.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    addr: SocketAddr,
    protocol: Protocol,
}

impl Client {
    pub fn new(addr: SocketAddr, protocol: Protocol) -> Self {
        Self { addr, protocol }
    }

    pub fn http1(addr: SocketAddr) -> Self {
        Self::new(addr, Protocol::Http1)
    }

    pub fn http2(addr: SocketAddr) -> Self {
        Self::new(addr, Protocol::Http2)
    }

    /// Sends `request` on a new connection and reads the whole response, within 30 seconds.
    pub async fn send(&self, request: Request) -> Result<Response, ClientError> {
        let method = request.method.clone();
        let path = request.path.clone();
        match tokio::time::timeout(REQUEST_TIMEOUT, self.send_inner(request)).await {
            Ok(result) => result,
            Err(_) => Err(ClientError::Timeout {
                addr: self.addr,
                method,
                path,
                timeout: REQUEST_TIMEOUT,
            }),
        }
    }

    async fn send_inner(&self, request: Request) -> Result<Response, ClientError> {
        let method = request.method.clone();
        let path = request.path.clone();
        let http_request = self.build(request)?;

        let stream =
            TcpStream::connect(self.addr)
                .await
                .map_err(|source| ClientError::Connect {
                    addr: self.addr,
                    source,
                })?;
        exchange(stream, self.addr, self.protocol, method, path, http_request).await
    }

    fn build(&self, request: Request) -> Result<hyper::Request<FrameBody>, ClientError> {
        let uri: Uri = match self.protocol {
            // HTTP/1.1 sends the origin form; the authority goes in `host`.
            Protocol::Http1 => request.path.parse(),
            // HTTP/2 takes `:scheme` and `:authority` from an absolute URI.
            Protocol::Http2 => format!("http://{}{}", self.addr, request.path).parse(),
        }
        .map_err(
            |error: hyper::http::uri::InvalidUri| ClientError::InvalidRequest {
                part: "path",
                value: request.path.clone(),
                reason: error.to_string(),
            },
        )?;

        let headers = to_header_map(&request.headers, "header")?;
        let trailers = to_header_map(&request.trailers, "trailer")?;
        let body = if trailers.is_empty() {
            FrameBody::full(request.body)
        } else {
            FrameBody::chunked(vec![request.body], trailers)
        };

        let mut http_request = hyper::Request::new(body);
        *http_request.method_mut() = request.method;
        *http_request.uri_mut() = uri;
        *http_request.headers_mut() = headers;
        if self.protocol == Protocol::Http1 && !http_request.headers().contains_key(HOST) {
            let host = HeaderValue::try_from(self.addr.to_string())
                .expect("a socket address is a valid header value");
            http_request.headers_mut().insert(HOST, host);
        }
        Ok(http_request)
    }
}

fn to_header_map(pairs: &[(String, String)], part: &'static str) -> Result<HeaderMap, ClientError> {
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

/// Sends one request over a fresh connection and reads the whole response. Shared by
/// [`Client`] and the paced client in `plugins`, which build their requests differently.
pub(crate) async fn exchange<B>(
    stream: TcpStream,
    addr: SocketAddr,
    protocol: Protocol,
    method: Method,
    path: String,
    http_request: hyper::Request<B>,
) -> Result<Response, ClientError>
where
    B: hyper::body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let io = TokioIo::new(stream);
    let handshake_error = |source| ClientError::Handshake {
        addr,
        protocol,
        source,
    };
    let request_error = |source| ClientError::Request {
        addr,
        method: method.clone(),
        path: path.clone(),
        source,
    };

    // The connection task drives the socket. It ends when the response is read and the
    // sender is dropped, or with an error that the request also reports.
    let response = match protocol {
        Protocol::Http1 => {
            let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(handshake_error)?;
            tokio::spawn(connection);
            sender
                .send_request(http_request)
                .await
                .map_err(request_error)?
        }
        Protocol::Http2 => {
            let (mut sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(handshake_error)?;
            tokio::spawn(connection);
            sender
                .send_request(http_request)
                .await
                .map_err(request_error)?
        }
    };

    let (parts, body) = response.into_parts();
    let collected = body.collect().await.map_err(request_error)?;
    let trailers = collected.trailers().map(header_pairs).unwrap_or_default();
    Ok(Response {
        status: parts.status,
        headers: header_pairs(&parts.headers),
        body: collected.to_bytes(),
        trailers,
    })
}
