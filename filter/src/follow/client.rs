//! A small client of the EdgeFunctionRevision API: list, then watch from the list's
//! `resourceVersion`, as Kubernetes clients do.

use std::time::Duration;

use edgefn_proto::EdgeFunctionRevision;
use reqwest::{Client, Response, StatusCode, Url};
use serde_json::Value as Json;
use thiserror::Error;

use super::settings::Selection;

/// Path of the collection under the server's base URL.
const COLLECTION_PATH: &str = "/apis/extensions.apoxy.dev/v1alpha2/edgefunctionrevisions";
/// Path of the artifacts under the server's base URL.
const ARTIFACTS_PATH: &str = "/artifacts/sha256/";

/// Time limit for connecting to the server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time limit for one list, body included.
const LIST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the server keeps one watch open before the client starts a new one.
const WATCH_SECONDS: u64 = 300;
/// How long a watch may stay silent before the client gives up on it: the server ends it
/// after [`WATCH_SECONDS`], so a longer silence means the connection is gone.
/// NOTE: the server sends no heartbeats, so a connection lost without a FIN or RST is noticed
/// only after this limit, and changes made meanwhile reach Envoy that much later.
const WATCH_IDLE_LIMIT: Duration = Duration::from_secs(WATCH_SECONDS + 30);
/// Largest watch event accepted, in bytes.
const MAX_EVENT_SIZE: usize = 16 * 1024 * 1024;
/// Characters of an error response kept in a message.
const ERROR_BODY_CHARS: usize = 300;

/// A failed request to the API server.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error("request to {url} failed: {detail}; check that edgefn-server runs there")]
    Request { url: String, detail: String },
    #[error("{url} returned {status}: {body}")]
    Status {
        url: String,
        status: StatusCode,
        body: String,
    },
    #[error("invalid response from {url}: {detail}")]
    Decode { url: String, detail: String },
    #[error("the watch at {url} sent nothing for {WATCH_IDLE_LIMIT:?}; starting again")]
    Idle { url: String },
}

/// The objects of one list and the `resourceVersion` to watch from.
pub struct ListResult {
    pub items: Vec<EdgeFunctionRevision>,
    pub resource_version: String,
}

/// One change reported by a watch.
pub enum WatchEvent {
    /// A matching object was added or changed.
    Upsert(Box<EdgeFunctionRevision>),
    /// An object was deleted or stopped matching.
    Deleted(String),
    /// The watch cannot continue from its `resourceVersion`: list again.
    Expired,
}

/// Client for one server and one selection.
pub struct ApiClient {
    http: Client,
    base_url: String,
    selection: Selection,
}

impl ApiClient {
    pub fn new(base_url: &str, selection: Selection) -> Result<Self, ClientError> {
        // reqwest is built without a bundled TLS provider; use ring, as the loader does. A
        // provider installed earlier is kept.
        let _already_installed = rustls::crypto::ring::default_provider().install_default();
        let http = Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("edgefn/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| ClientError::Request {
                url: base_url.to_owned(),
                detail: format!("cannot build the HTTP client: {error}"),
            })?;
        Ok(Self {
            http,
            base_url: base_url.to_owned(),
            selection,
        })
    }

    /// Returns the URL of the artifact with SHA-256 `hex`.
    pub fn artifact_url(&self, hex: &str) -> String {
        format!("{}{ARTIFACTS_PATH}{hex}", self.base_url)
    }

    fn collection_url(&self, extra: &[(&str, &str)]) -> Url {
        let mut url = Url::parse(&format!("{}{COLLECTION_PATH}", self.base_url))
            .expect("the base URL was checked when the settings were parsed");
        {
            let mut query = url.query_pairs_mut();
            let (key, value) = self.selection.query_pair();
            query.append_pair(key, &value);
            for (key, value) in extra {
                query.append_pair(key, value);
            }
        }
        url
    }

    /// Lists the revisions the selection matches.
    pub async fn list(&self) -> Result<ListResult, ClientError> {
        let url = self.collection_url(&[]);
        let shown = url.to_string();
        let response = self
            .http
            .get(url)
            .timeout(LIST_TIMEOUT)
            .send()
            .await
            .map_err(|error| request_error(&shown, &error))?;
        let response = check_status(response, &shown).await?;
        let body: Json = response.json().await.map_err(|error| ClientError::Decode {
            url: shown.clone(),
            detail: error.to_string(),
        })?;

        let resource_version = body["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let items = body["items"]
            .as_array()
            .ok_or_else(|| ClientError::Decode {
                url: shown.clone(),
                detail: "the list has no items array".to_owned(),
            })?
            .iter()
            .filter_map(|item| decode_object(item, &shown))
            .collect();
        Ok(ListResult {
            items,
            resource_version,
        })
    }

    /// Starts a watch of the changes after `resource_version`.
    pub async fn watch(&self, resource_version: &str) -> Result<Watch, ClientError> {
        let seconds = WATCH_SECONDS.to_string();
        let url = self.collection_url(&[
            ("watch", "true"),
            ("resourceVersion", resource_version),
            ("timeoutSeconds", &seconds),
        ]);
        let shown = url.to_string();
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|error| request_error(&shown, &error))?;
        if response.status() == StatusCode::GONE {
            return Ok(Watch::expired(shown));
        }
        let response = check_status(response, &shown).await?;
        Ok(Watch {
            response: Some(response),
            url: shown,
            buffer: Vec::new(),
        })
    }
}

/// An open watch; [`Watch::next`] returns its events in order.
pub struct Watch {
    /// `None` for a watch the server refused with 410: it reports [`WatchEvent::Expired`].
    response: Option<Response>,
    url: String,
    buffer: Vec<u8>,
}

impl Watch {
    fn expired(url: String) -> Self {
        Self {
            response: None,
            url,
            buffer: Vec::new(),
        }
    }

    /// Returns the next event, or `None` when the server ended the watch.
    pub async fn next(&mut self) -> Result<Option<WatchEvent>, ClientError> {
        loop {
            let Some(response) = self.response.as_mut() else {
                return Ok(Some(WatchEvent::Expired));
            };
            if let Some(end) = self.buffer.iter().position(|&byte| byte == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                match parse_event(&line, &self.url)? {
                    Some(event) => return Ok(Some(event)),
                    None => continue,
                }
            }
            if self.buffer.len() > MAX_EVENT_SIZE {
                return Err(ClientError::Decode {
                    url: self.url.clone(),
                    detail: format!("a watch event is larger than {MAX_EVENT_SIZE} bytes"),
                });
            }

            let chunk = tokio::time::timeout(WATCH_IDLE_LIMIT, response.chunk())
                .await
                .map_err(|_| ClientError::Idle {
                    url: self.url.clone(),
                })?
                .map_err(|error| request_error(&self.url, &error))?;
            match chunk {
                Some(bytes) => self.buffer.extend_from_slice(&bytes),
                None => return Ok(None),
            }
        }
    }
}

/// Parses one event line; blank lines, bookmarks and unknown types give `None`.
fn parse_event(line: &[u8], url: &str) -> Result<Option<WatchEvent>, ClientError> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let event: Json = serde_json::from_slice(line).map_err(|error| ClientError::Decode {
        url: url.to_owned(),
        detail: format!("a watch event is not JSON: {error}"),
    })?;
    let object = &event["object"];
    let event = match event["type"].as_str().unwrap_or_default() {
        "ADDED" | "MODIFIED" => decode_object(object, url)
            .map(Box::new)
            .map(WatchEvent::Upsert),
        "DELETED" => object["metadata"]["name"]
            .as_str()
            .map(|name| WatchEvent::Deleted(name.to_owned())),
        "ERROR" if object["code"] == 410 => Some(WatchEvent::Expired),
        "ERROR" => {
            return Err(ClientError::Status {
                url: url.to_owned(),
                status: StatusCode::INTERNAL_SERVER_ERROR,
                body: excerpt(&object["message"].to_string()),
            })
        }
        _ => None,
    };
    Ok(event)
}

/// Decodes one object; an object that does not decode is logged and skipped, so one bad object
/// cannot stop a filter from following the others.
fn decode_object(object: &Json, url: &str) -> Option<EdgeFunctionRevision> {
    match edgefn_proto::decode_revision(&object.to_string()) {
        Ok(revision) => Some(revision),
        Err(error) => {
            let name = object["metadata"]["name"].as_str().unwrap_or("<unnamed>");
            tracing::warn!(
                revision = %name,
                %url,
                %error,
                "ignoring a revision that does not decode"
            );
            None
        }
    }
}

async fn check_status(response: Response, url: &str) -> Result<Response, ClientError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = response.text().await.unwrap_or_default();
    Err(ClientError::Status {
        url: url.to_owned(),
        status,
        body: excerpt(&body),
    })
}

fn excerpt(text: &str) -> String {
    text.chars().take(ERROR_BODY_CHARS).collect()
}

fn request_error(url: &str, error: &reqwest::Error) -> ClientError {
    use std::error::Error as _;

    let mut detail = error.to_string();
    let mut source = error.source();
    // A few levels of the chain name the cause, such as "Connection refused".
    for _ in 0..4 {
        let Some(cause) = source else { break };
        detail.push_str(": ");
        detail.push_str(&cause.to_string());
        source = cause.source();
    }
    ClientError::Request {
        url: url.to_owned(),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_added_decodes_object() {
        let line = br#"{"type":"ADDED","object":{"metadata":{"name":"a"},"spec":{}}}"#;
        let event = parse_event(line, "u").unwrap();
        assert!(
            matches!(event, Some(WatchEvent::Upsert(revision)) if revision.metadata.name == "a")
        );
    }

    #[test]
    fn event_deleted_gives_name() {
        let line = br#"{"type":"DELETED","object":{"metadata":{"name":"a"}}}"#;
        let event = parse_event(line, "u").unwrap();
        assert!(matches!(event, Some(WatchEvent::Deleted(name)) if name == "a"));
    }

    #[test]
    fn event_error_410_expires() {
        let line = br#"{"type":"ERROR","object":{"kind":"Status","code":410}}"#;
        assert!(matches!(
            parse_event(line, "u").unwrap(),
            Some(WatchEvent::Expired)
        ));
    }

    #[test]
    fn event_other_error_fails() {
        let line = br#"{"type":"ERROR","object":{"kind":"Status","code":500,"message":"x"}}"#;
        assert!(parse_event(line, "u").is_err());
    }

    #[test]
    fn event_bookmark_and_blank_skipped() {
        let bookmark = br#"{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"9"}}}"#;
        assert!(parse_event(bookmark, "u").unwrap().is_none());
        assert!(parse_event(b" \n", "u").unwrap().is_none());
    }

    #[test]
    fn collection_url_encodes_selector() {
        let client = ApiClient::new(
            "http://127.0.0.1:1/base",
            Selection::Labels("a in (x,y),!b".to_owned()),
        )
        .unwrap();
        let url = client.collection_url(&[("watch", "true")]);
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:1/base/apis/extensions.apoxy.dev/v1alpha2/edgefunctionrevisions\
             ?labelSelector=a+in+%28x%2Cy%29%2C%21b&watch=true"
        );
        assert_eq!(
            client.artifact_url("ab"),
            "http://127.0.0.1:1/base/artifacts/sha256/ab"
        );
    }
}
