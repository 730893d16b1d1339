//! Watches: event order and types, the initial state, selectors, and 410 for an expired
//! resourceVersion.

mod common;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, StatusCode};
use common::{item, url_revision, TestApi, COLLECTION};
use edgefn_server::ingest::NoopIngest;
use edgefn_server::store::FileStoreOptions;
use http_body_util::BodyExt as _;
use serde_json::{json, Value as Json};

const MERGE: &str = "application/merge-patch+json";

/// Reads newline-delimited events from a streaming response body.
struct Events {
    body: Body,
    buffer: Vec<u8>,
    ready: VecDeque<Json>,
}

impl Events {
    async fn open(api: &TestApi, query: &str) -> Events {
        let response = api
            .send(
                Method::GET,
                &format!("{COLLECTION}?watch=true{query}"),
                None,
                None,
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let content_type = response.headers().get("content-type").cloned();
        assert_eq!(
            content_type.as_ref().and_then(|value| value.to_str().ok()),
            Some("application/json")
        );
        Events {
            body: response.into_body(),
            buffer: Vec::new(),
            ready: VecDeque::new(),
        }
    }

    /// Returns the next event, or `None` when none arrives within 2 s.
    async fn next(&mut self) -> Option<Json> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(event);
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame())
                .await
                .ok()??;
            let data = frame.ok()?.into_data().ok()?;
            self.buffer.extend_from_slice(&data);
            while let Some(end) = self.buffer.iter().position(|byte| *byte == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                let event = serde_json::from_slice(&line).expect("an event is JSON");
                self.ready.push_back(event);
            }
        }
    }

    async fn next_type_and_name(&mut self) -> (String, String) {
        let event = self.next().await.expect("an event within 2 s");
        let name = event["object"]["metadata"]["name"]
            .as_str()
            .unwrap_or_default();
        (
            event["type"].as_str().unwrap_or_default().to_owned(),
            name.to_owned(),
        )
    }
}

fn event(kind: &str, name: &str) -> (String, String) {
    (kind.to_owned(), name.to_owned())
}

#[tokio::test]
async fn watch_from_version_streams_changes_in_order() {
    let api = TestApi::new();
    let first = api.create_ready(&url_revision("one")).await;
    let start = first["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut events = Events::open(&api, &format!("&resourceVersion={start}")).await;

    api.create_ready(&url_revision("two")).await;
    api.patch(
        &item("one"),
        MERGE,
        &json!({"metadata": {"labels": {"x": "y"}}}),
    )
    .await;
    api.delete(&item("one")).await;

    assert_eq!(events.next_type_and_name().await, event("ADDED", "two"));
    // The ingest outcome of "two" is a change too.
    assert_eq!(events.next_type_and_name().await, event("MODIFIED", "two"));
    assert_eq!(events.next_type_and_name().await, event("MODIFIED", "one"));
    assert_eq!(events.next_type_and_name().await, event("DELETED", "one"));
}

#[tokio::test]
async fn watch_resource_versions_increase() {
    let api = TestApi::new();
    let mut events = Events::open(&api, "&resourceVersion=0").await;
    api.create_ready(&url_revision("one")).await;

    let mut last = 0;
    for _ in 0..2 {
        let event = events.next().await.expect("an event");
        let version: u64 = event["object"]["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|text| text.parse().ok())
            .expect("numeric resourceVersion");
        assert!(version > last, "{version} after {last}");
        last = version;
    }
}

#[tokio::test]
async fn watch_without_version_starts_with_existing_objects() {
    let api = TestApi::new();
    api.create_ready(&url_revision("a")).await;
    api.create_ready(&url_revision("b")).await;
    let mut events = Events::open(&api, "&allowWatchBookmarks=true").await;

    assert_eq!(events.next_type_and_name().await, event("ADDED", "a"));
    assert_eq!(events.next_type_and_name().await, event("ADDED", "b"));
    api.delete(&item("a")).await;
    assert_eq!(events.next_type_and_name().await, event("DELETED", "a"));
}

#[tokio::test]
async fn watch_with_selector_reports_leaving_as_deleted() {
    let api = TestApi::new();
    api.create_ready(&url_revision("one")).await;
    let mut events = Events::open(&api, "&labelSelector=app%3Ddemo").await;
    assert_eq!(events.next_type_and_name().await, event("ADDED", "one"));

    api.patch(
        &item("one"),
        MERGE,
        &json!({"metadata": {"labels": {"app": "other"}}}),
    )
    .await;
    assert_eq!(events.next_type_and_name().await, event("DELETED", "one"));
    api.patch(
        &item("one"),
        MERGE,
        &json!({"metadata": {"labels": {"app": "demo"}}}),
    )
    .await;
    assert_eq!(events.next_type_and_name().await, event("ADDED", "one"));
}

#[tokio::test]
async fn watch_with_field_selector() {
    let api = TestApi::new();
    let mut events =
        Events::open(&api, "&resourceVersion=0&fieldSelector=metadata.name%3Dtwo").await;
    api.create_ready(&url_revision("one")).await;
    api.create_ready(&url_revision("two")).await;
    assert_eq!(events.next_type_and_name().await, event("ADDED", "two"));
}

#[tokio::test]
async fn watch_from_expired_version_is_gone() {
    let options = FileStoreOptions {
        history_limit: 2,
        ..FileStoreOptions::default()
    };
    let api = TestApi::with(Arc::new(NoopIngest), options);
    for name in ["a", "b", "c"] {
        api.create_ready(&url_revision(name)).await;
    }

    let (status, body) = api
        .get(&format!("{COLLECTION}?watch=true&resourceVersion=1"))
        .await;
    assert_eq!(status, StatusCode::GONE);
    assert_eq!(body["kind"], "Status");
    assert_eq!(body["reason"], "Expired");
    assert_eq!(body["code"], 410);
}

#[tokio::test]
async fn watch_timeout_ends_stream() {
    let api = TestApi::new();
    let mut events = Events::open(&api, "&resourceVersion=0&timeoutSeconds=1").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let ended = tokio::time::timeout_at(deadline, events.body.frame()).await;
    assert!(
        matches!(ended, Ok(None)),
        "the stream ends after timeoutSeconds"
    );
}
