//! Outbound HTTP for the `fetchAPI` capability. Requests run on a background Tokio runtime;
//! the calling function's thread waits for the whole response, up to its deadline.

use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use reqwest::Client;

/// Maximum response body kept, in bytes.
pub const MAX_RESPONSE_BODY: usize = 16 << 20;

/// An outbound request as a function sent it.
#[derive(Debug, Clone)]
pub struct FetchRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A response read to its end.
#[derive(Debug, Clone)]
pub struct FetchResponse {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

/// Error of a fetch; each variant maps to one host API error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// The method, URL or a header is malformed.
    Invalid(String),
    /// The URL scheme is not `http` or `https`.
    Denied(String),
    /// The response body is over [`MAX_RESPONSE_BODY`].
    TooLarge,
    /// The connection or the exchange failed.
    Failed(String),
    /// The deadline passed first.
    TimedOut,
}

/// Sends `request` and waits for the whole response until `deadline`.
pub fn fetch(request: FetchRequest, deadline: Instant) -> Result<FetchResponse, FetchError> {
    let url = reqwest::Url::parse(&request.url)
        .map_err(|error| FetchError::Invalid(format!("URL {:?}: {error}", request.url)))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(FetchError::Denied(url.scheme().to_owned()));
    }
    let method = reqwest::Method::from_bytes(request.method.as_bytes())
        .map_err(|_| FetchError::Invalid(format!("method {:?}", request.method)))?;
    let mut builder = client().request(method, url);
    for (name, value) in &request.headers {
        let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| FetchError::Invalid(format!("header name {name:?}")))?;
        let value = reqwest::header::HeaderValue::from_str(value)
            .map_err(|_| FetchError::Invalid(format!("value of header {name}")))?;
        builder = builder.header(name, value);
    }
    let remaining = deadline.saturating_duration_since(Instant::now());
    if remaining.is_zero() {
        return Err(FetchError::TimedOut);
    }
    let prepared = builder.body(request.body).timeout(remaining);

    let (sender, receiver) = mpsc::sync_channel(1);
    let task = runtime().spawn(async move {
        let _receiver_gone = sender.send(send(prepared).await);
    });
    match receiver.recv_timeout(remaining) {
        Ok(result) => result,
        Err(_) => {
            task.abort();
            Err(FetchError::TimedOut)
        }
    }
}

async fn send(prepared: reqwest::RequestBuilder) -> Result<FetchResponse, FetchError> {
    let mut response = prepared.send().await.map_err(classify)?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(classify)? {
        if body.len() + chunk.len() > MAX_RESPONSE_BODY {
            return Err(FetchError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(FetchResponse {
        status,
        headers,
        body,
    })
}

fn classify(error: reqwest::Error) -> FetchError {
    if error.is_timeout() {
        return FetchError::TimedOut;
    }
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message = format!("{message}: {cause}");
        source = cause.source();
    }
    FetchError::Failed(message)
}

fn client() -> &'static Client {
    static CLIENT: OnceLock<Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        // The process may already have installed a provider; either way ring is available.
        let _already_installed = rustls::crypto::ring::default_provider().install_default();
        Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()
            .unwrap_or_else(|error| panic!("cannot build the fetch HTTP client: {error}"))
    })
}

fn runtime() -> &'static tokio::runtime::Handle {
    static RUNTIME: OnceLock<tokio::runtime::Handle> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|error| panic!("cannot build the fetch runtime: {error}"));
        let handle = runtime.handle().clone();
        let spawned = std::thread::Builder::new()
            .name("edgefn-wasm-fetch".to_owned())
            .spawn(move || runtime.block_on(std::future::pending::<()>()));
        if let Err(error) = spawned {
            panic!("cannot start the fetch thread: {error}");
        }
        handle
    })
}
