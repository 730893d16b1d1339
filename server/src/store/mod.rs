//! Storage of EdgeFunctionRevision objects behind the [`Store`] trait.
//!
//! A store keeps whole objects, secrets included, and numbers every write with a global,
//! increasing revision that becomes the object's `metadata.resourceVersion`, as etcd's mod
//! revision does in Kubernetes. [`FileStore`] keeps them in one local file, and `EtcdStore`
//! (cargo feature `etcd`) in etcd, so several servers can share them.

mod file;
mod history;

#[cfg(feature = "etcd")]
mod etcd;

use async_trait::async_trait;
use edgefn_proto::EdgeFunctionRevision;
use tokio::sync::mpsc;

#[cfg(feature = "etcd")]
pub use etcd::EtcdStore;
pub use file::{FileStore, FileStoreOptions};

/// Kind of change a [`WatchEvent`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// The object was created.
    Added,
    /// The object was replaced.
    Modified,
    /// The object was deleted.
    Deleted,
}

impl EventType {
    /// Returns the Kubernetes name of the event type: `ADDED`, `MODIFIED` or `DELETED`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change of one object.
#[derive(Clone, Debug, PartialEq)]
pub struct WatchEvent {
    /// What happened.
    pub event_type: EventType,
    /// The object after the change. For a deletion, the last stored object with
    /// `resourceVersion` set to the revision of the deletion.
    pub object: EdgeFunctionRevision,
    /// The object before the change, `None` for [`EventType::Added`].
    pub previous: Option<EdgeFunctionRevision>,
}

impl WatchEvent {
    /// Returns the revision of the change.
    pub fn revision(&self) -> u64 {
        resource_version(&self.object).unwrap_or(0)
    }
}

/// Every stored object at one revision, sorted by name.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Revision of the store when the snapshot was read.
    pub revision: u64,
    /// The objects, sorted by name, each with its `resourceVersion`.
    pub objects: Vec<EdgeFunctionRevision>,
}

/// Receiving end of a watch: events in revision order. An `Err` is the last item.
pub type WatchReceiver = mpsc::Receiver<Result<WatchEvent, StoreError>>;

/// Number of events a watch buffers for a slow reader before the store stops waiting for it.
pub(crate) const WATCH_BUFFER: usize = 256;

/// Error of a [`Store`] operation.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// A create named an existing object.
    #[error("edgefunctionrevision {name:?} already exists")]
    AlreadyExists {
        /// Name of the object.
        name: String,
    },

    /// No object has this name.
    #[error("edgefunctionrevision {name:?} not found")]
    NotFound {
        /// Name of the object.
        name: String,
    },

    /// The object's revision is not the one the write expected.
    #[error(
        "edgefunctionrevision {name:?} has resourceVersion {current}, not the expected \
         {expected}; read it again and retry"
    )]
    Conflict {
        /// Name of the object.
        name: String,
        /// Revision the write expected.
        expected: u64,
        /// Revision of the stored object.
        current: u64,
    },

    /// A watch or read asked for a revision older than the store retains.
    #[error(
        "too old resource version: {requested}: the store no longer has the changes after it; \
         list again and watch from the list's resourceVersion"
    )]
    Expired {
        /// Requested revision.
        requested: u64,
    },

    /// The backing file or etcd failed.
    #[error("{0}")]
    Backend(String),
}

/// Storage of EdgeFunctionRevision objects.
///
/// Every method that writes returns only once the write is durable: fsynced to the file, or
/// committed by etcd. Objects go in and come out with their secrets; redaction is the API's
/// job. The stored `resourceVersion` is always the store's, whatever the caller set.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Returns the object named `name`, or `None`.
    async fn get(&self, name: &str) -> Result<Option<EdgeFunctionRevision>, StoreError>;

    /// Returns every object. `at` requests the objects as of that revision, which only some
    /// stores can serve (see each store); a store that cannot returns the latest objects.
    async fn list(&self, at: Option<u64>) -> Result<Snapshot, StoreError>;

    /// Stores a new object and returns it with its `resourceVersion`.
    async fn create(
        &self,
        object: EdgeFunctionRevision,
    ) -> Result<EdgeFunctionRevision, StoreError>;

    /// Replaces an object whose current revision is `expected`.
    async fn update(
        &self,
        object: EdgeFunctionRevision,
        expected: u64,
    ) -> Result<EdgeFunctionRevision, StoreError>;

    /// Deletes an object whose current revision is `expected`, and returns the deleted object
    /// with `resourceVersion` set to the revision of the deletion.
    async fn delete(&self, name: &str, expected: u64) -> Result<EdgeFunctionRevision, StoreError>;

    /// Starts a watch of every change with a revision greater than `after`.
    async fn watch(&self, after: u64) -> Result<WatchReceiver, StoreError>;
}

/// Returns `metadata.resourceVersion` as a number, or `None` when it is empty or not a number.
pub fn resource_version(object: &EdgeFunctionRevision) -> Option<u64> {
    object.metadata.resource_version.parse().ok()
}

/// Returns the object with `metadata.resourceVersion` set to `revision`.
pub(crate) fn with_revision(
    mut object: EdgeFunctionRevision,
    revision: u64,
) -> EdgeFunctionRevision {
    object.metadata.resource_version = revision.to_string();
    object
}
