//! `GET …/edgefunctionrevisions?watch=true`: a stream of newline-delimited JSON events,
//! `{"type":"ADDED"|"MODIFIED"|"DELETED","object":{…}}`, as a Kubernetes API server sends.
//!
//! Without `resourceVersion` (or with `0`) the stream starts with an `ADDED` event per existing
//! object. With one, it carries every change after it, or responds with 410 `Expired` when the
//! store no longer has those changes. `allowWatchBookmarks` is accepted, and no bookmarks are sent.
//! With selectors, an object that stops matching is reported as `DELETED` and one that starts
//! matching as `ADDED`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::{json, Value as Json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::query::Query;
use crate::resource::present;
use crate::status::ApiError;
use crate::store::{EventType, Store, WatchEvent};

/// Length of a watch whose request has no `timeoutSeconds`. The client then starts a new
/// watch, as it does after a Kubernetes API server ends one.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Starts a watch and returns the streaming response.
pub async fn watch(store: Arc<dyn Store>, query: Query) -> Result<Response, ApiError> {
    let (initial, after) = match query.start_revision()? {
        Some(revision) => (Vec::new(), revision),
        None => {
            let snapshot = store.list(None).await?;
            let added: Vec<Json> = snapshot
                .objects
                .iter()
                .filter(|object| query.matches(object))
                .map(|object| event_json(EventType::Added, &present(object)))
                .collect();
            (added, snapshot.revision)
        }
    };
    let mut events = store.watch(after).await?;
    let timeout = query
        .timeout_seconds
        .map_or(DEFAULT_TIMEOUT, Duration::from_secs);

    let (sender, receiver) = mpsc::channel::<Result<Bytes, Infallible>>(16);
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + timeout;
        for line in initial {
            if sender.send(Ok(to_line(&line))).await.is_err() {
                return;
            }
        }

        loop {
            let received = tokio::select! {
                () = sender.closed() => return,
                () = tokio::time::sleep_until(deadline) => return,
                received = events.recv() => received,
            };
            let line = match received {
                None => return,
                Some(Ok(event)) => match filtered_event(&query, &event) {
                    Some(line) => line,
                    None => continue,
                },
                Some(Err(error)) => {
                    let status = ApiError::from(error).to_status();
                    let _ = sender
                        .send(Ok(to_line(&event_json_raw("ERROR", status))))
                        .await;
                    return;
                }
            };
            if sender.send(Ok(to_line(&line))).await.is_err() {
                return;
            }
        }
    });

    let mut response = Response::new(Body::from_stream(ReceiverStream::new(receiver)));
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// Returns the event a watch with `query`'s selectors reports for a change, if any.
fn filtered_event(query: &Query, event: &WatchEvent) -> Option<Json> {
    let now = query.matches(&event.object);
    let before = event
        .previous
        .as_ref()
        .is_some_and(|previous| query.matches(previous));
    let event_type = match event.event_type {
        EventType::Added if now => EventType::Added,
        EventType::Modified if now && before => EventType::Modified,
        EventType::Modified if now => EventType::Added,
        EventType::Modified if before => EventType::Deleted,
        EventType::Deleted if now || before => EventType::Deleted,
        _ => return None,
    };
    Some(event_json(event_type, &present(&event.object)))
}

fn event_json(event_type: EventType, object: &Json) -> Json {
    event_json_raw(event_type.as_str(), object.clone())
}

fn event_json_raw(event_type: &str, object: Json) -> Json {
    json!({"type": event_type, "object": object})
}

fn to_line(event: &Json) -> Bytes {
    let mut line = event.to_string().into_bytes();
    line.push(b'\n');
    Bytes::from(line)
}
