//! [`EtcdStore`]: objects in etcd, one key per object, so that several servers share them.
//!
//! An object is stored as JSON under `<prefix><name>`. Its `resourceVersion` is the key's mod
//! revision, a list's is the revision of etcd's response, and a watch is an etcd watch of the
//! prefix, so a watch on one server receives the writes made through any other.

use async_trait::async_trait;
use edgefn_proto::EdgeFunctionRevision;
use etcd_client::{
    Client, Compare, CompareOp, DeleteOptions, EventType as EtcdEventType, GetOptions, KeyValue,
    Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use tokio::sync::mpsc;

use super::{
    with_revision, EventType, Snapshot, Store, StoreError, WatchEvent, WatchReceiver, WATCH_BUFFER,
};

/// Key prefix of the objects when none is given, in the layout a Kubernetes API server uses.
pub const DEFAULT_PREFIX: &str = "/registry/extensions.apoxy.dev/edgefunctionrevisions/";

/// A store in etcd.
///
/// NOTE: objects, their secrets included, are stored in etcd as plain JSON; protect etcd's data
/// folder and client port accordingly.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    prefix: String,
}

/// Serializes an object for storage, without its `resourceVersion`, which the store derives
/// from the revision of the write.
fn encode_object(object: &EdgeFunctionRevision) -> Result<Vec<u8>, StoreError> {
    let mut object = object.clone();
    object.metadata.resource_version.clear();
    serde_json::to_vec(&object).map_err(|error| {
        StoreError::Backend(format!(
            "serializing edgefunctionrevision {:?} failed: {error}",
            object.metadata.name
        ))
    })
}

/// Reads an object written by [`encode_object`].
fn decode_object(bytes: &[u8], revision: u64) -> Result<EdgeFunctionRevision, StoreError> {
    let object: EdgeFunctionRevision = serde_json::from_slice(bytes).map_err(|error| {
        StoreError::Backend(format!(
            "stored edgefunctionrevision at revision {revision} is not valid JSON: {error}"
        ))
    })?;
    Ok(with_revision(object, revision))
}

fn backend(action: &str, error: etcd_client::Error) -> StoreError {
    StoreError::Backend(format!("etcd {action} failed: {error}"))
}

/// Returns whether an etcd error reports that the requested revision was compacted away.
fn is_compacted(error: &etcd_client::Error) -> bool {
    error
        .to_string()
        .contains("required revision has been compacted")
}

fn revision_of(header: Option<&etcd_client::ResponseHeader>) -> u64 {
    header.map_or(0, |header| header.revision().max(0) as u64)
}

fn etcd_revision(revision: u64) -> i64 {
    i64::try_from(revision).unwrap_or(i64::MAX)
}

impl EtcdStore {
    /// Connects to etcd at `endpoints` (such as `http://127.0.0.1:2379`) and keeps the objects
    /// under `prefix`, [`DEFAULT_PREFIX`] when `None`.
    pub async fn connect(endpoints: &[String], prefix: Option<&str>) -> Result<Self, StoreError> {
        let client = Client::connect(endpoints, None).await.map_err(|error| {
            StoreError::Backend(format!(
                "connecting to etcd at {} failed: {error}; check that etcd runs there",
                endpoints.join(",")
            ))
        })?;
        let store = EtcdStore {
            client,
            prefix: prefix.unwrap_or(DEFAULT_PREFIX).to_owned(),
        };
        // A read, so that a wrong endpoint fails at start rather than at the first request.
        store.list(None).await?;
        tracing::info!(
            endpoints = %endpoints.join(","),
            prefix = %store.prefix,
            "connected to etcd"
        );
        Ok(store)
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn decode(&self, kv: &KeyValue, revision: i64) -> Result<EdgeFunctionRevision, StoreError> {
        decode_object(kv.value(), revision.max(0) as u64)
    }

    /// Returns the error for a failed compare: `NotFound`, or `Conflict` with the current
    /// revision read in the same transaction.
    fn compare_failure(name: &str, expected: u64, responses: Vec<TxnOpResponse>) -> StoreError {
        let current = responses.into_iter().find_map(|response| match response {
            TxnOpResponse::Get(get) => get.kvs().first().map(KeyValue::mod_revision),
            _ => None,
        });
        match current {
            None => StoreError::NotFound {
                name: name.to_owned(),
            },
            Some(current) => StoreError::Conflict {
                name: name.to_owned(),
                expected,
                current: current.max(0) as u64,
            },
        }
    }

    fn to_event(&self, event: &etcd_client::Event) -> Result<Option<WatchEvent>, StoreError> {
        let Some(kv) = event.kv() else {
            return Ok(None);
        };
        let previous = match event.prev_kv() {
            Some(prev) => Some(self.decode(prev, prev.mod_revision())?),
            None => None,
        };

        let watch_event = match event.event_type() {
            EtcdEventType::Put => {
                let object = self.decode(kv, kv.mod_revision())?;
                let event_type = if kv.create_revision() == kv.mod_revision() {
                    EventType::Added
                } else {
                    EventType::Modified
                };
                WatchEvent {
                    event_type,
                    object,
                    previous,
                }
            }
            EtcdEventType::Delete => {
                let mut last = previous.clone().unwrap_or_default();
                if last.metadata.name.is_empty() {
                    let key = String::from_utf8_lossy(kv.key());
                    last.metadata.name = key.strip_prefix(&self.prefix).unwrap_or(&key).to_owned();
                }
                WatchEvent {
                    event_type: EventType::Deleted,
                    object: with_revision(last, kv.mod_revision().max(0) as u64),
                    previous,
                }
            }
        };
        Ok(Some(watch_event))
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, name: &str) -> Result<Option<EdgeFunctionRevision>, StoreError> {
        let response = self
            .client
            .clone()
            .get(self.key(name), None)
            .await
            .map_err(|error| backend("get", error))?;
        match response.kvs().first() {
            Some(kv) => Ok(Some(self.decode(kv, kv.mod_revision())?)),
            None => Ok(None),
        }
    }

    /// Returns the objects as of revision `at` when given, which etcd serves until it compacts
    /// that revision away ([`StoreError::Expired`] after).
    async fn list(&self, at: Option<u64>) -> Result<Snapshot, StoreError> {
        let mut options = GetOptions::new().with_prefix();
        if let Some(at) = at {
            options = options.with_revision(etcd_revision(at));
        }
        let response = self
            .client
            .clone()
            .get(self.prefix.as_str(), Some(options))
            .await
            .map_err(|error| match (at, is_compacted(&error)) {
                (Some(requested), true) => StoreError::Expired { requested },
                _ => backend("list", error),
            })?;

        let mut objects = Vec::with_capacity(response.kvs().len());
        for kv in response.kvs() {
            objects.push(self.decode(kv, kv.mod_revision())?);
        }
        objects.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let revision = at.unwrap_or_else(|| revision_of(response.header()));
        Ok(Snapshot { revision, objects })
    }

    async fn create(
        &self,
        object: EdgeFunctionRevision,
    ) -> Result<EdgeFunctionRevision, StoreError> {
        let name = object.metadata.name.clone();
        let key = self.key(&name);
        let txn = Txn::new()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.as_str(), encode_object(&object)?, None)]);
        let response = self
            .client
            .clone()
            .txn(txn)
            .await
            .map_err(|error| backend("create", error))?;
        if !response.succeeded() {
            return Err(StoreError::AlreadyExists { name });
        }
        Ok(with_revision(object, revision_of(response.header())))
    }

    async fn update(
        &self,
        object: EdgeFunctionRevision,
        expected: u64,
    ) -> Result<EdgeFunctionRevision, StoreError> {
        let name = object.metadata.name.clone();
        let key = self.key(&name);
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key.as_str(),
                CompareOp::Equal,
                etcd_revision(expected),
            )])
            .and_then([TxnOp::put(key.as_str(), encode_object(&object)?, None)])
            .or_else([TxnOp::get(key.as_str(), None)]);
        let response = self
            .client
            .clone()
            .txn(txn)
            .await
            .map_err(|error| backend("update", error))?;
        if !response.succeeded() {
            return Err(Self::compare_failure(
                &name,
                expected,
                response.op_responses(),
            ));
        }
        Ok(with_revision(object, revision_of(response.header())))
    }

    async fn delete(&self, name: &str, expected: u64) -> Result<EdgeFunctionRevision, StoreError> {
        let key = self.key(name);
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key.as_str(),
                CompareOp::Equal,
                etcd_revision(expected),
            )])
            .and_then([TxnOp::delete(
                key.as_str(),
                Some(DeleteOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(key.as_str(), None)]);
        let response = self
            .client
            .clone()
            .txn(txn)
            .await
            .map_err(|error| backend("delete", error))?;
        if !response.succeeded() {
            return Err(Self::compare_failure(
                name,
                expected,
                response.op_responses(),
            ));
        }

        let revision = revision_of(response.header());
        let previous = response
            .op_responses()
            .into_iter()
            .find_map(|response| match response {
                TxnOpResponse::Delete(delete) => delete.prev_kvs().first().cloned(),
                _ => None,
            });
        let deleted = match previous {
            Some(kv) => self.decode(&kv, revision as i64)?,
            None => {
                let mut object = EdgeFunctionRevision::default();
                object.metadata.name = name.to_owned();
                with_revision(object, revision)
            }
        };
        Ok(deleted)
    }

    async fn watch(&self, after: u64) -> Result<WatchReceiver, StoreError> {
        // etcd reports a compacted start revision only inside the stream, so check first that
        // the revision is still readable, to respond 410 before the response starts.
        if after > 0 {
            let probe = GetOptions::new()
                .with_prefix()
                .with_keys_only()
                .with_limit(1)
                .with_revision(etcd_revision(after));
            if let Err(error) = self
                .client
                .clone()
                .get(self.prefix.as_str(), Some(probe))
                .await
            {
                if is_compacted(&error) {
                    return Err(StoreError::Expired { requested: after });
                }
                // A revision in the future is fine: the watch waits for it.
            }
        }

        let options = WatchOptions::new()
            .with_prefix()
            .with_prev_key()
            .with_start_revision(etcd_revision(after.saturating_add(1)));
        let mut stream = self
            .client
            .clone()
            .watch(self.prefix.as_str(), Some(options))
            .await
            .map_err(|error| backend("watch", error))?;

        let (sender, receiver) = mpsc::channel(WATCH_BUFFER);
        let store = self.clone();
        tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    () = sender.closed() => return,
                    message = stream.message() => message,
                };
                let response = match message {
                    Ok(Some(response)) => response,
                    Ok(None) => return,
                    Err(error) => {
                        let _ = sender.send(Err(backend("watch", error))).await;
                        return;
                    }
                };
                if response.canceled() {
                    let error = if response.compact_revision() > 0 {
                        StoreError::Expired { requested: after }
                    } else {
                        StoreError::Backend(format!(
                            "etcd cancelled the watch: {}",
                            response.cancel_reason()
                        ))
                    };
                    let _ = sender.send(Err(error)).await;
                    return;
                }
                for event in response.events() {
                    let item = match store.to_event(event) {
                        Ok(Some(event)) => Ok(event),
                        Ok(None) => continue,
                        Err(error) => Err(error),
                    };
                    let failed = item.is_err();
                    if sender.send(item).await.is_err() || failed {
                        return;
                    }
                }
            }
        });
        Ok(receiver)
    }
}
