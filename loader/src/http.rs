//! HTTP(S) download of one artifact into a cache temporary file.

use std::error::Error as StdError;
use std::path::Path;

use reqwest::redirect::{Attempt, Policy};
use reqwest::{Certificate, Client, Response, StatusCode, Url};
use tracing::debug;

use crate::cache::TempFile;
use crate::error::FetchError;
use crate::fetch::FetchOptions;
use crate::source::redact_url;

/// Maximum number of redirects followed.
const MAX_REDIRECTS: usize = 10;

/// Maximum number of body bytes read from an error response for the error message.
const ERROR_BODY_READ_LIMIT: usize = 4096;

/// Maximum number of characters of an error response body kept in the error message.
const ERROR_BODY_SHOWN_CHARS: usize = 300;

/// Maximum depth followed in an error's source chain.
const MAX_ERROR_CHAIN: usize = 16;

/// Downloads `url` into `temp`, enforcing the size limit while streaming.
///
/// `options.timeout` bounds the whole exchange, connection and body included.
pub(crate) async fn download(
    url: &Url,
    options: &FetchOptions,
    temp: &mut TempFile,
) -> Result<(), FetchError> {
    let shown = redact_url(url);
    let exchange = download_within_timeout(url, &shown, options, temp);
    match tokio::time::timeout(options.timeout, exchange).await {
        Ok(result) => result,
        Err(_elapsed) => Err(FetchError::Timeout {
            url: shown,
            timeout: options.timeout,
        }),
    }
}

async fn download_within_timeout(
    url: &Url,
    shown: &str,
    options: &FetchOptions,
    temp: &mut TempFile,
) -> Result<(), FetchError> {
    let client = build_client(options, shown)?;
    let mut response = client
        .get(url.clone())
        .send()
        .await
        .map_err(|error| classify(error, shown, options, 0))?;

    check_status(response.status(), &mut response, shown).await?;

    if let Some(length) = response.content_length() {
        if length > options.max_size {
            return Err(FetchError::TooLarge {
                location: shown.to_owned(),
                limit: options.max_size,
                observed: format!("Content-Length is {length} bytes"),
            });
        }
    }

    loop {
        let chunk = response
            .chunk()
            .await
            .map_err(|error| classify(error, shown, options, temp.size()))?;
        let Some(chunk) = chunk else {
            break;
        };

        let new_size = temp.size().saturating_add(chunk.len() as u64);
        if new_size > options.max_size {
            return Err(FetchError::TooLarge {
                location: shown.to_owned(),
                limit: options.max_size,
                observed: "the body passed the limit while streaming".to_owned(),
            });
        }
        temp.write(&chunk)?;
    }

    debug!(url = %shown, size = temp.size(), "downloaded plugin artifact");
    Ok(())
}

fn build_client(options: &FetchOptions, shown: &str) -> Result<Client, FetchError> {
    install_crypto_provider();

    let mut builder = Client::builder()
        .timeout(options.timeout)
        .connect_timeout(options.timeout)
        .redirect(Policy::custom(check_redirect))
        .user_agent(concat!("edgefn-loader/", env!("CARGO_PKG_VERSION")));
    if let Some(ca_file) = &options.extra_ca_file {
        builder = builder.tls_certs_merge(read_extra_ca(ca_file)?);
    }

    builder.build().map_err(|error| FetchError::Request {
        url: shown.to_owned(),
        detail: format!("cannot build the HTTP client: {}", error_chain(&error)),
    })
}

/// Installs `ring` as this library's default rustls crypto provider.
///
/// reqwest is built without a provider of its own (its default, aws-lc-rs, is a large C
/// build), and it panics when building a client with no default installed. The default is
/// a static of the rustls copy linked into this binary, so the call affects nothing outside
/// it. A provider installed earlier, by this function or other code, is kept.
fn install_crypto_provider() {
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
}

/// Follows at most `MAX_REDIRECTS` redirects and never one from https to http, so that an
/// https source without a pin cannot be downgraded to plain text.
fn check_redirect(attempt: Attempt<'_>) -> reqwest::redirect::Action {
    let downgrade = attempt.url().scheme() == "http"
        && attempt
            .previous()
            .last()
            .is_some_and(|previous| previous.scheme() == "https");
    if downgrade {
        attempt.error("redirect from https to http rejected")
    } else if attempt.previous().len() > MAX_REDIRECTS {
        attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
    } else {
        attempt.follow()
    }
}

fn read_extra_ca(path: &Path) -> Result<Vec<Certificate>, FetchError> {
    let invalid = |detail: String| FetchError::ExtraCa {
        path: path.to_owned(),
        detail,
    };

    let pem = std::fs::read(path).map_err(|error| invalid(error.to_string()))?;
    let certificates = Certificate::from_pem_bundle(&pem)
        .map_err(|error| invalid(format!("cannot parse PEM: {}", error_chain(&error))))?;
    if certificates.is_empty() {
        return Err(invalid("the file holds no certificate".to_owned()));
    }
    Ok(certificates)
}

/// Turns a non-success status into an error. 404 becomes `NotFound`.
async fn check_status(
    status: StatusCode,
    response: &mut Response,
    shown: &str,
) -> Result<(), FetchError> {
    if status.is_success() {
        return Ok(());
    }
    if status == StatusCode::NOT_FOUND {
        return Err(FetchError::NotFound {
            location: shown.to_owned(),
            detail: "HTTP 404".to_owned(),
        });
    }

    let body = read_error_body(response).await;
    Err(FetchError::HttpStatus {
        url: shown.to_owned(),
        status: status.as_u16(),
        body,
    })
}

/// Reads the start of an error response body, for the error message only. A body that fails
/// to arrive leaves the excerpt short; the status alone is the error.
async fn read_error_body(response: &mut Response) -> String {
    let mut body = Vec::new();
    while body.len() < ERROR_BODY_READ_LIMIT {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = ERROR_BODY_READ_LIMIT - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    sanitize_excerpt(&body)
}

/// Returns the start of `body` as one line of printable text: invalid UTF-8 replaced, control
/// characters and runs of whitespace collapsed to one space, cut at `ERROR_BODY_SHOWN_CHARS`.
pub(crate) fn sanitize_excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut excerpt = String::new();
    let mut shown_chars = 0;
    let mut pending_space = false;
    for character in text.chars() {
        if character.is_whitespace() || character.is_control() {
            pending_space = !excerpt.is_empty();
            continue;
        }
        if shown_chars == ERROR_BODY_SHOWN_CHARS {
            excerpt.push('…');
            break;
        }
        if pending_space {
            excerpt.push(' ');
            pending_space = false;
        }
        excerpt.push(character);
        shown_chars += 1;
    }
    excerpt
}

/// Sorts a reqwest error into the loader's variants. `received` is the number of body bytes
/// already stored.
fn classify(
    error: reqwest::Error,
    shown: &str,
    options: &FetchOptions,
    received: u64,
) -> FetchError {
    // The URL in reqwest's messages may carry credentials; `shown` is the redacted form.
    let error = error.without_url();
    let url = shown.to_owned();

    if error.is_timeout() {
        return FetchError::Timeout {
            url,
            timeout: options.timeout,
        };
    }
    if let Some(detail) = tls_failure(&error) {
        return FetchError::Tls { url, detail };
    }

    let detail = error_chain(&error);
    if error.is_connect() {
        FetchError::Connection { url, detail }
    } else if error.is_body() || error.is_decode() {
        FetchError::IncompleteBody {
            url,
            received,
            detail,
        }
    } else {
        FetchError::Request { url, detail }
    }
}

/// Returns the rustls error message if a TLS failure caused `error`.
fn tls_failure(error: &(dyn StdError + 'static)) -> Option<String> {
    let mut current = Some(error);
    for _ in 0..MAX_ERROR_CHAIN {
        let level = current?;
        if let Some(tls) = level.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        current = next_cause(level);
    }
    None
}

/// Returns the error that caused `error`.
///
/// For an `io::Error` that wraps another error this is the wrapped error: `io::Error::source`
/// skips it and returns the wrapped error's own source, which would hide the rustls error that
/// hyper-rustls wraps (twice) in `io::Error`.
fn next_cause<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a (dyn StdError + 'static)> {
    if let Some(wrapped) = error
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
    {
        return Some(wrapped);
    }
    error.source()
}

/// Joins the messages of `error` and its sources with ": ", skipping a message that repeats
/// the one before it.
fn error_chain(error: &(dyn StdError + 'static)) -> String {
    let mut messages: Vec<String> = Vec::new();
    let mut current = Some(error);
    for _ in 0..MAX_ERROR_CHAIN {
        let Some(level) = current else {
            break;
        };
        let message = level.to_string();
        if messages.last().is_none_or(|last| !last.contains(&message)) {
            messages.push(message);
        }
        current = next_cause(level);
    }
    messages.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_collapses_control_characters() {
        let excerpt = sanitize_excerpt(b"  line one\r\n\x1b[31mline\ttwo\xff  ");
        assert_eq!(excerpt, "line one [31mline two\u{fffd}");
    }

    #[test]
    fn excerpt_is_cut_at_limit() {
        let excerpt = sanitize_excerpt(&[b'a'; 1000]);
        assert_eq!(excerpt.chars().count(), ERROR_BODY_SHOWN_CHARS + 1);
    }
}
