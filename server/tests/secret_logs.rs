//! No log line contains the registry password, at any level.
//!
//! This is a test binary of its own with one test, so the global subscriber it installs receives
//! every log line of the requests below and no other test's.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use common::{item, oci_revision_with_password, TestApi};
use edgefn_server::ingest::FailingIngest;
use edgefn_server::store::FileStoreOptions;
use serde_json::json;

const PASSWORD: &str = "log-secret-Pa55-7f3e";

/// A `tracing` writer that keeps everything in memory.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn logs_never_contain_password() {
    let logs = LogBuffer::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .init();

    let api = TestApi::with(
        Arc::new(FailingIngest("registry refused the credentials".to_owned())),
        FileStoreOptions::default(),
    );
    let object = api
        .create_ready(&oci_revision_with_password("pw", PASSWORD))
        .await;
    let (status, _) = api.put(&item("pw"), &object).await;
    assert_eq!(status, StatusCode::OK);
    let patch = json!({"metadata": {"labels": {"x": "y"}}});
    let (status, _) = api
        .patch(&item("pw"), "application/merge-patch+json", &patch)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = api.post(&oci_revision_with_password("pw", PASSWORD)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = api.delete(&item("pw")).await;
    assert_eq!(status, StatusCode::OK);

    let logs = String::from_utf8_lossy(&logs.0.lock().expect("logs")).into_owned();
    for expected in [
        "created revision",
        "ingest failed",
        "updated revision",
        "deleted revision",
    ] {
        assert!(
            logs.contains(expected),
            "log line {expected:?} missing: {logs}"
        );
    }
    assert!(
        !logs.contains(PASSWORD),
        "the password is in the logs: {logs}"
    );
}
