//! [`FileStore`]: every object in memory, every write appended to one log file.
//!
//! The file contains one JSON record per line: `{"op":"put","revision":N,"object":{…}}`,
//! `{"op":"delete","revision":N,"name":"…"}`, or `{"op":"revision","revision":N}`, which a
//! compacted file starts with. A write is appended and fsynced before it is acknowledged, so a
//! killed server loses no acknowledged write. At start the file is replayed; a last line
//! without its newline is a write that was never acknowledged, and is cut off. When the file
//! contains many more records than objects, it is rewritten with one record per object into a
//! temporary file that is fsynced and renamed over it.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use edgefn_proto::EdgeFunctionRevision;
use serde::{Deserialize, Serialize};

use super::history::{forward, EventHistory};
use super::{
    resource_version, with_revision, EventType, Snapshot, Store, StoreError, WatchEvent,
    WatchReceiver,
};

/// Settings of a [`FileStore`].
#[derive(Clone, Debug)]
pub struct FileStoreOptions {
    /// Number of recent changes kept for watches that start from an older resourceVersion.
    pub history_limit: usize,
    /// The log is compacted once it contains more than this many records and more than twice as
    /// many records as objects.
    pub compact_after: usize,
}

impl Default for FileStoreOptions {
    fn default() -> Self {
        FileStoreOptions {
            history_limit: 1000,
            compact_after: 10_000,
        }
    }
}

/// A store in one append-only log file. See the module documentation for the format.
///
/// The store holds an exclusive lock on `<path>.lock` while it is open, so a second store on the
/// same file, in this process or another, fails to open.
#[derive(Clone)]
pub struct FileStore {
    state: Arc<Mutex<State>>,
}

struct State {
    path: PathBuf,
    file: File,
    /// Locked for the lifetime of the store; the lock ends when the file is closed.
    _lock: File,
    revision: u64,
    objects: BTreeMap<String, EdgeFunctionRevision>,
    records: usize,
    history: EventHistory,
    options: FileStoreOptions,
    /// Set after a failed append: the file may end in a partial record, so no further write is
    /// accepted until a restart replays and repairs it.
    failed: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
enum Record {
    Put {
        revision: u64,
        object: Box<EdgeFunctionRevision>,
    },
    Delete {
        revision: u64,
        name: String,
    },
    Revision {
        revision: u64,
    },
}

fn io_error(action: &str, path: &Path, error: std::io::Error) -> StoreError {
    StoreError::Backend(format!("{action} {} failed: {error}", path.display()))
}

impl FileStore {
    /// Opens or creates the log at `path` with default options, and replays it.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, StoreError> {
        Self::open_with(path, FileStoreOptions::default())
    }

    /// Opens or creates the log at `path` and replays it.
    pub fn open_with(
        path: impl Into<PathBuf>,
        options: FileStoreOptions,
    ) -> Result<Self, StoreError> {
        let path = path.into();
        let lock = lock(&path)?;
        let (objects, revision, records) = replay(&path)?;
        // Only the server's user may read the file: it holds registry passwords.
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(|error| io_error("opening", &path, error))?;
        sync_parent(&path)?;
        tracing::info!(
            path = %path.display(),
            objects = objects.len(),
            revision,
            "opened revision log"
        );

        let history = EventHistory::new(revision, options.history_limit);
        let state = State {
            path,
            file,
            _lock: lock,
            revision,
            objects,
            records,
            history,
            options,
            failed: None,
        };
        Ok(FileStore {
            state: Arc::new(Mutex::new(state)),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the state as the last completed write left it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs a write on a blocking thread, because it waits for fsync.
    async fn write<T, F>(&self, operation: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut State) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || operation(&mut store.lock()))
            .await
            .map_err(|error| StoreError::Backend(format!("storage task failed: {error}")))?
    }
}

/// Takes the exclusive lock on `<path>.lock`.
fn lock(path: &Path) -> Result<File, StoreError> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|error| io_error("opening", &lock_path, error))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Backend(format!(
            "{} is in use by another edgefn-server (its lock file {} is locked); stop that \
             server or choose another --data file",
            path.display(),
            lock_path.display()
        ))),
        Err(std::fs::TryLockError::Error(error)) => Err(io_error("locking", &lock_path, error)),
    }
}

/// Reads the log and returns the objects, the last revision and the number of records. Cuts off
/// a partial last record.
fn replay(path: &Path) -> Result<(BTreeMap<String, EdgeFunctionRevision>, u64, usize), StoreError> {
    let mut objects = BTreeMap::new();
    let mut revision = 0;
    let mut records = 0;

    let mut text = String::new();
    match File::open(path) {
        Ok(mut file) => {
            file.read_to_string(&mut text)
                .map_err(|error| io_error("reading", path, error))?;
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok((objects, revision, records))
        }
        Err(error) => return Err(io_error("opening", path, error)),
    }

    let complete = text.rfind('\n').map_or(0, |end| end + 1);
    if complete < text.len() {
        tracing::warn!(
            path = %path.display(),
            bytes = text.len() - complete,
            "cutting off a partial last record, a write that was never acknowledged"
        );
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|error| io_error("opening", path, error))?;
        file.set_len(complete as u64)
            .and_then(|()| file.sync_all())
            .map_err(|error| io_error("truncating", path, error))?;
    }

    for (index, line) in text[..complete].lines().enumerate() {
        let record: Record = serde_json::from_str(line).map_err(|error| {
            StoreError::Backend(format!(
                "{} line {} is not a valid record ({error}); restore the file from a backup or \
                 remove that line",
                path.display(),
                index + 1
            ))
        })?;
        records += 1;
        match record {
            Record::Put {
                revision: at,
                object,
            } => {
                revision = at;
                objects.insert(object.metadata.name.clone(), with_revision(*object, at));
            }
            Record::Delete { revision: at, name } => {
                revision = at;
                objects.remove(&name);
            }
            Record::Revision { revision: at } => revision = at,
        }
    }
    Ok((objects, revision, records))
}

/// Fsyncs the folder that contains `path`, so that a created or renamed file survives a crash.
fn sync_parent(path: &Path) -> Result<(), StoreError> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    File::open(parent)
        .and_then(|folder| folder.sync_all())
        .map_err(|error| io_error("syncing folder", parent, error))
}

impl State {
    /// Appends one record and fsyncs it.
    fn append(&mut self, record: &Record) -> Result<(), StoreError> {
        if let Some(reason) = &self.failed {
            return Err(StoreError::Backend(format!(
                "{} is not writable after an earlier failure ({reason}); restart the server",
                self.path.display()
            )));
        }

        let mut line = serde_json::to_vec(record).map_err(|error| {
            StoreError::Backend(format!("serializing a record failed: {error}"))
        })?;
        line.push(b'\n');
        let written = self
            .file
            .write_all(&line)
            .and_then(|()| self.file.sync_data());
        if let Err(error) = written {
            let error = io_error("appending to", &self.path, error);
            self.failed = Some(error.to_string());
            return Err(error);
        }
        self.records += 1;
        Ok(())
    }

    fn put(&mut self, object: EdgeFunctionRevision, event_type: EventType) -> EdgeFunctionRevision {
        let previous = self.objects.get(&object.metadata.name).cloned();
        self.objects
            .insert(object.metadata.name.clone(), object.clone());
        self.history.push(WatchEvent {
            event_type,
            object: object.clone(),
            previous,
        });
        object
    }

    fn write_put(
        &mut self,
        object: EdgeFunctionRevision,
        event_type: EventType,
    ) -> Result<EdgeFunctionRevision, StoreError> {
        let revision = self.revision + 1;
        let object = with_revision(object, revision);
        let mut stored = object.clone();
        stored.metadata.resource_version.clear();
        self.append(&Record::Put {
            revision,
            object: Box::new(stored),
        })?;
        self.revision = revision;
        let object = self.put(object, event_type);
        self.compact_if_needed();
        Ok(object)
    }

    fn check_current(&self, name: &str, expected: u64) -> Result<(), StoreError> {
        let current = self.objects.get(name).ok_or_else(|| StoreError::NotFound {
            name: name.to_owned(),
        })?;
        let current = resource_version(current).unwrap_or(0);
        if current != expected {
            return Err(StoreError::Conflict {
                name: name.to_owned(),
                expected,
                current,
            });
        }
        Ok(())
    }

    fn compact_if_needed(&mut self) {
        let limit = self.options.compact_after.max(2 * self.objects.len());
        if self.records <= limit {
            return;
        }
        match self.compact() {
            Ok(()) => tracing::info!(
                path = %self.path.display(),
                objects = self.objects.len(),
                "compacted revision log"
            ),
            // The uncompacted log is still complete, so the store goes on using it.
            Err(error) => tracing::error!(%error, "compacting the revision log failed"),
        }
    }

    /// Rewrites the log with one record per object, through a fsynced temporary file.
    fn compact(&mut self) -> Result<(), StoreError> {
        let mut temporary_path = self.path.clone().into_os_string();
        temporary_path.push(".compact");
        let temporary_path = PathBuf::from(temporary_path);

        let mut text = Vec::new();
        let header = Record::Revision {
            revision: self.revision,
        };
        let mut records = vec![header];
        for object in self.objects.values() {
            let mut stored = object.clone();
            stored.metadata.resource_version.clear();
            records.push(Record::Put {
                revision: resource_version(object).unwrap_or(0),
                object: Box::new(stored),
            });
        }
        for record in &records {
            serde_json::to_writer(&mut text, record).map_err(|error| {
                StoreError::Backend(format!("serializing a record failed: {error}"))
            })?;
            text.push(b'\n');
        }

        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary_path)
            .map_err(|error| io_error("creating", &temporary_path, error))?;
        file.write_all(&text)
            .and_then(|()| file.sync_all())
            .map_err(|error| io_error("writing", &temporary_path, error))?;
        fs::rename(&temporary_path, &self.path)
            .map_err(|error| io_error("renaming", &temporary_path, error))?;
        sync_parent(&self.path)?;

        self.file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|error| io_error("opening", &self.path, error))?;
        self.records = records.len();
        Ok(())
    }
}

#[async_trait]
impl Store for FileStore {
    async fn get(&self, name: &str) -> Result<Option<EdgeFunctionRevision>, StoreError> {
        Ok(self.lock().objects.get(name).cloned())
    }

    /// Returns the latest objects: the file keeps no older versions, so `at` is not used.
    async fn list(&self, _at: Option<u64>) -> Result<Snapshot, StoreError> {
        let state = self.lock();
        Ok(Snapshot {
            revision: state.revision,
            objects: state.objects.values().cloned().collect(),
        })
    }

    async fn create(
        &self,
        object: EdgeFunctionRevision,
    ) -> Result<EdgeFunctionRevision, StoreError> {
        self.write(move |state| {
            let name = object.metadata.name.clone();
            if state.objects.contains_key(&name) {
                return Err(StoreError::AlreadyExists { name });
            }
            state.write_put(object, EventType::Added)
        })
        .await
    }

    async fn update(
        &self,
        object: EdgeFunctionRevision,
        expected: u64,
    ) -> Result<EdgeFunctionRevision, StoreError> {
        self.write(move |state| {
            state.check_current(&object.metadata.name, expected)?;
            state.write_put(object, EventType::Modified)
        })
        .await
    }

    async fn delete(&self, name: &str, expected: u64) -> Result<EdgeFunctionRevision, StoreError> {
        let name = name.to_owned();
        self.write(move |state| {
            state.check_current(&name, expected)?;
            let revision = state.revision + 1;
            state.append(&Record::Delete {
                revision,
                name: name.clone(),
            })?;
            state.revision = revision;

            let previous = state.objects.remove(&name);
            let deleted = with_revision(previous.clone().unwrap_or_default(), revision);
            state.history.push(WatchEvent {
                event_type: EventType::Deleted,
                object: deleted.clone(),
                previous,
            });
            state.compact_if_needed();
            Ok(deleted)
        })
        .await
    }

    async fn watch(&self, after: u64) -> Result<WatchReceiver, StoreError> {
        let (past, live) = self.lock().history.subscribe(after)?;
        Ok(forward(after, past, live))
    }
}
