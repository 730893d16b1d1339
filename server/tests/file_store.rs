//! The file store: replay after a restart, a partial last record, a corrupt record,
//! compaction, and the lock that keeps a second store off the file.

mod common;

use std::io::Write;
use std::path::Path;

use edgefn_proto::EdgeFunctionRevision;
use edgefn_server::store::{FileStore, FileStoreOptions, Store, StoreError};

fn revision(name: &str) -> EdgeFunctionRevision {
    edgefn_proto::decode_revision(&common::url_revision(name).to_string()).expect("valid")
}

fn version(object: &EdgeFunctionRevision) -> u64 {
    object
        .metadata
        .resource_version
        .parse()
        .expect("numeric resourceVersion")
}

fn names(objects: &[EdgeFunctionRevision]) -> Vec<&str> {
    objects
        .iter()
        .map(|object| object.metadata.name.as_str())
        .collect()
}

fn line_count(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .expect("read log")
        .lines()
        .count()
}

#[tokio::test]
async fn reopened_store_replays_writes() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let path = dir.path().join("log.jsonl");
    let revision_after_writes = {
        let store = FileStore::open(&path).expect("open");
        let first = store.create(revision("one")).await.expect("create one");
        store.create(revision("two")).await.expect("create two");
        store
            .update(first.clone(), version(&first))
            .await
            .expect("update one");
        let two = store.get("two").await.expect("get").expect("two exists");
        store
            .delete("two", version(&two))
            .await
            .expect("delete two");
        store.list(None).await.expect("list").revision
    };

    let store = FileStore::open(&path).expect("reopen");
    let snapshot = store.list(None).await.expect("list");
    assert_eq!(names(&snapshot.objects), ["one"]);
    assert_eq!(snapshot.revision, revision_after_writes);
    assert_eq!(version(&snapshot.objects[0]), 3);
}

#[tokio::test]
async fn partial_last_record_is_cut_off() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let path = dir.path().join("log.jsonl");
    {
        let store = FileStore::open(&path).expect("open");
        store.create(revision("one")).await.expect("create");
    }
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("open log");
    file.write_all(br#"{"op":"put","revision":2,"object":{"metad"#)
        .expect("append a partial record");
    drop(file);

    let store = FileStore::open(&path).expect("reopen");
    store
        .create(revision("two"))
        .await
        .expect("create after repair");
    drop(store);
    let store = FileStore::open(&path).expect("reopen again");
    let snapshot = store.list(None).await.expect("list");
    assert_eq!(names(&snapshot.objects), ["one", "two"]);
    assert_eq!(snapshot.revision, 2);
}

#[tokio::test]
async fn corrupt_record_fails_open_with_line() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let path = dir.path().join("log.jsonl");
    std::fs::write(&path, "{\"op\":\"revision\",\"revision\":1}\nnot json\n").expect("write");

    let error = FileStore::open(&path)
        .err()
        .expect("a corrupt log fails to open");
    let message = error.to_string();
    assert!(message.contains("line 2"), "{message}");
}

#[tokio::test]
async fn compaction_keeps_objects_and_revision() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let path = dir.path().join("log.jsonl");
    let options = FileStoreOptions {
        compact_after: 5,
        ..FileStoreOptions::default()
    };
    let last = {
        let store = FileStore::open_with(&path, options.clone()).expect("open");
        let mut current = store.create(revision("one")).await.expect("create");
        store.create(revision("two")).await.expect("create");
        for _ in 0..20 {
            current = store
                .update(current.clone(), version(&current))
                .await
                .expect("update");
        }
        let two = store.get("two").await.expect("get").expect("exists");
        store.delete("two", version(&two)).await.expect("delete");
        store.list(None).await.expect("list").revision
    };
    assert!(
        line_count(&path) <= 6,
        "{} records after compaction",
        line_count(&path)
    );

    let store = FileStore::open_with(&path, options).expect("reopen");
    let snapshot = store.list(None).await.expect("list");
    assert_eq!(names(&snapshot.objects), ["one"]);
    assert_eq!(snapshot.revision, last);
    let next = store.create(revision("three")).await.expect("create");
    assert_eq!(version(&next), last + 1);
}

#[tokio::test]
async fn second_store_on_same_file_fails() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let path = dir.path().join("log.jsonl");
    let _first = FileStore::open(&path).expect("open");

    let second = FileStore::open(&path);
    let message = second
        .err()
        .map(|error| error.to_string())
        .unwrap_or_default();
    assert!(
        message.contains("in use by another edgefn-server"),
        "{message}"
    );
}

#[tokio::test]
async fn store_errors_name_the_object() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let store = FileStore::open(dir.path().join("log.jsonl")).expect("open");
    let created = store.create(revision("one")).await.expect("create");

    let duplicate = store.create(revision("one")).await;
    assert_eq!(
        duplicate,
        Err(StoreError::AlreadyExists {
            name: "one".to_owned()
        })
    );
    let stale = store.update(created.clone(), version(&created) + 1).await;
    assert!(
        matches!(stale, Err(StoreError::Conflict { .. })),
        "{stale:?}"
    );
    let missing = store.delete("missing", 1).await;
    assert_eq!(
        missing.err(),
        Some(StoreError::NotFound {
            name: "missing".to_owned()
        })
    );
}

#[tokio::test]
async fn data_file_readable_only_by_owner() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().expect("temporary folder");
    let path = dir.path().join("log.jsonl");
    let store = FileStore::open(&path).expect("open");
    store.create(revision("one")).await.expect("create one");

    let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
    assert_eq!(mode & 0o077, 0, "mode {mode:o}");
}
