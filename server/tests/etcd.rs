//! The etcd store, against a real etcd started on 127.0.0.1 with a temporary data folder.
//!
//! etcd is `$EDGEFN_ETCD`, or `etcd` on PATH. Without it the tests pass with a message, except
//! when `CI` is set, where they fail.
#![cfg(feature = "etcd")]

mod common;

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::process::{free_port, request, Server, WatchStream};
use common::{item, url_revision, COLLECTION};
use edgefn_proto::EdgeFunctionRevision;
use edgefn_server::ingest::NoopIngest;
use edgefn_server::store::{EtcdStore, EventType, Store, StoreError};

fn find_etcd() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("EDGEFN_ETCD") {
        return Some(PathBuf::from(path));
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|folder| folder.join("etcd"))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "etcd is missing: install Debian's etcd-server or set EDGEFN_ETCD to the etcd binary"
        );
        eprintln!("etcd not found (neither EDGEFN_ETCD nor etcd on PATH); skipping");
    }
    found
}

/// An etcd process on 127.0.0.1, killed when dropped.
struct Etcd {
    child: Child,
    endpoint: String,
    _data: tempfile::TempDir,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Etcd {
    /// Starts etcd and waits until it accepts connections, or returns `None` without etcd.
    fn start() -> Option<Etcd> {
        let binary = find_etcd()?;
        let data = tempfile::tempdir().expect("temporary folder");
        let client = free_port();
        let peer = free_port();
        let endpoint = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let child = Command::new(&binary)
            .arg("--name=edgefn-test")
            .arg(format!("--data-dir={}", data.path().display()))
            .arg(format!("--listen-client-urls={endpoint}"))
            .arg(format!("--advertise-client-urls={endpoint}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=edgefn-test={peer_url}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("starting {} failed: {error}", binary.display()));
        let etcd = Etcd {
            child,
            endpoint,
            _data: data,
        };

        let address = format!("127.0.0.1:{client}").parse().expect("address");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "etcd did not listen on {address} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(etcd)
    }

    /// Connects a store, retrying while etcd elects its leader.
    async fn store(&self, prefix: &str) -> EtcdStore {
        let endpoints = [self.endpoint.clone()];
        let mut last_error = None;
        for _ in 0..100 {
            match EtcdStore::connect(&endpoints, Some(prefix)).await {
                Ok(store) => return store,
                Err(error) => last_error = Some(error),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("connecting to etcd failed: {last_error:?}");
    }
}

fn revision(name: &str) -> EdgeFunctionRevision {
    edgefn_proto::decode_revision(&url_revision(name).to_string()).expect("valid revision")
}

fn version(object: &EdgeFunctionRevision) -> u64 {
    object
        .metadata
        .resource_version
        .parse()
        .expect("numeric resourceVersion")
}

#[tokio::test]
async fn etcd_store_operations() {
    let Some(etcd) = Etcd::start() else { return };
    let store = etcd.store("/test/operations/").await;

    let created = store.create(revision("one")).await.expect("create");
    let duplicate = store.create(revision("one")).await;
    assert_eq!(
        duplicate,
        Err(StoreError::AlreadyExists {
            name: "one".to_owned()
        })
    );

    let read = store.get("one").await.expect("get").expect("exists");
    assert_eq!(version(&read), version(&created));
    assert_eq!(store.get("missing").await, Ok(None));

    let updated = store
        .update(read.clone(), version(&created))
        .await
        .expect("update");
    assert!(version(&updated) > version(&created));
    let stale = store.update(read, version(&created)).await;
    assert!(
        matches!(stale, Err(StoreError::Conflict { .. })),
        "{stale:?}"
    );
    let missing = store.update(revision("missing"), 1).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound { .. })),
        "{missing:?}"
    );

    let old_list = store
        .list(Some(version(&created)))
        .await
        .expect("list at old revision");
    assert_eq!(old_list.objects.len(), 1);
    assert_eq!(version(&old_list.objects[0]), version(&created));

    let stale = store.delete("one", version(&created)).await;
    assert!(
        matches!(stale, Err(StoreError::Conflict { .. })),
        "{stale:?}"
    );
    let deleted = store
        .delete("one", version(&updated))
        .await
        .expect("delete");
    assert!(version(&deleted) > version(&updated));
    assert_eq!(store.get("one").await, Ok(None));
}

#[tokio::test]
async fn etcd_watch_events_and_expiry() {
    let Some(etcd) = Etcd::start() else { return };
    let store = etcd.store("/test/watch/").await;
    let start = store.list(None).await.expect("list").revision;
    let mut events = store.watch(start).await.expect("watch");

    let created = store.create(revision("one")).await.expect("create");
    let updated = store
        .update(created.clone(), version(&created))
        .await
        .expect("update");
    store
        .delete("one", version(&updated))
        .await
        .expect("delete");

    let mut types = Vec::new();
    for _ in 0..3 {
        let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .expect("an event within 5 s")
            .expect("watch open")
            .expect("no error");
        assert_eq!(event.object.metadata.name, "one");
        types.push(event.event_type);
    }
    assert_eq!(
        types,
        [EventType::Added, EventType::Modified, EventType::Deleted]
    );

    // After a compaction, a watch from before it is expired.
    let mut client = etcd_client::Client::connect([etcd.endpoint.as_str()], None)
        .await
        .expect("connect");
    let current = store.list(None).await.expect("list").revision;
    client.compact(current as i64, None).await.expect("compact");
    let expired = store.watch(start).await;
    assert!(
        matches!(expired, Err(StoreError::Expired { .. })),
        "{:?}",
        expired.err()
    );

    let app = edgefn_server::router(Arc::new(store), Arc::new(NoopIngest));
    let response = tower::ServiceExt::oneshot(
        app,
        axum::http::Request::builder()
            .uri(format!("{COLLECTION}?watch=true&resourceVersion={start}"))
            .body(axum::body::Body::empty())
            .expect("request"),
    )
    .await
    .expect("response");
    assert_eq!(response.status(), StatusCode::GONE);
}

#[test]
fn two_servers_share_one_etcd() {
    let Some(etcd) = Etcd::start() else { return };
    // Wait until etcd serves requests, through a store in this process.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(etcd.store("/registry/extensions.apoxy.dev/edgefunctionrevisions/"));

    let first = Server::start(&["--etcd", &etcd.endpoint, "--ingest", "none"]);
    let second = Server::start(&["--etcd", &etcd.endpoint, "--ingest", "none"]);
    let watch = WatchStream::open(
        first.address,
        &format!("{COLLECTION}?watch=true&resourceVersion=0"),
    );

    let body = url_revision("shared").to_string();
    let created = request(
        second.address,
        "POST",
        COLLECTION,
        Some("application/json"),
        &body,
    )
    .expect("create on the second server");
    assert_eq!(created.status, 201, "{}", created.body);

    let added = watch.wait_for(Duration::from_secs(10), |event| {
        event["type"] == "ADDED" && event["object"]["metadata"]["name"] == "shared"
    });
    assert!(
        added.is_some(),
        "the first server's watch saw the create made on the second"
    );

    let read = request(first.address, "GET", &item("shared"), None, "").expect("get");
    assert_eq!(read.status, 200, "{}", read.body);

    let patch = r#"{"metadata":{"labels":{"changed":"yes"}}}"#;
    let patched = request(
        second.address,
        "PATCH",
        &item("shared"),
        Some("application/merge-patch+json"),
        patch,
    )
    .expect("patch on the second server");
    assert_eq!(patched.status, 200, "{}", patched.body);
    let modified = watch.wait_for(Duration::from_secs(10), |event| {
        event["type"] == "MODIFIED" && event["object"]["metadata"]["labels"]["changed"] == "yes"
    });
    assert!(modified.is_some(), "the first server's watch saw the patch");

    let deleted = request(second.address, "DELETE", &item("shared"), None, "").expect("delete");
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    let deleted_event = watch.wait_for(Duration::from_secs(10), |event| event["type"] == "DELETED");
    assert!(
        deleted_event.is_some(),
        "the first server's watch saw the delete"
    );
}
