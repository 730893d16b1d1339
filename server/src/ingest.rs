//! Ingest: the step after a create, or after an update that changes what ingest reads, that
//! fetches or builds a revision's artifact and records the outcome in the revision's status
//! conditions.
//!
//! The write stores the object with the condition `Ingest=True` (reason `InProgress`) appended.
//! Then a task calls [`Ingest::ingest`] and appends `Ready=True` (reason `Ready`) with
//! `status.ref` set, or `Ready=False` (reason `Failed`) with the error as message and
//! `status.ref` emptied. Conditions are appended, never replaced, as Apoxy's ingest does, so a
//! revision is ready when its last `Ready` condition is True and comes after its last `Ingest`
//! condition.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use edgefn_proto::{Condition, EdgeFunctionRevision};

use crate::resource::now_rfc3339;
use crate::store::{resource_version, Store, StoreError};

/// Outcome of a successful ingest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngestResult {
    /// Name of the stored artifact, written to `status.ref`.
    pub artifact_ref: String,
}

/// Fetches or builds the artifact of a new revision.
#[async_trait]
pub trait Ingest: Send + Sync + 'static {
    /// Ingests `revision`, which carries its stored credentials. The error text becomes the
    /// message of the `Ready=False` condition, so it must not contain secrets.
    async fn ingest(&self, revision: &EdgeFunctionRevision) -> Result<IngestResult, String>;
}

/// An ingest that fetches nothing and reports success, with the revision name as `status.ref`
/// (the reference Apoxy uses). Proxies cannot download an artifact by that reference; the
/// binary uses [`crate::artifact_ingest::ArtifactIngest`].
#[derive(Clone, Copy, Debug, Default)]
pub struct NoopIngest;

#[async_trait]
impl Ingest for NoopIngest {
    async fn ingest(&self, revision: &EdgeFunctionRevision) -> Result<IngestResult, String> {
        Ok(IngestResult {
            artifact_ref: revision.metadata.name.clone(),
        })
    }
}

/// An ingest that always fails with the given message, for tests of the failure path.
#[derive(Clone, Debug)]
pub struct FailingIngest(pub String);

#[async_trait]
impl Ingest for FailingIngest {
    async fn ingest(&self, _revision: &EdgeFunctionRevision) -> Result<IngestResult, String> {
        Err(self.0.clone())
    }
}

/// An ingest that fails every revision, for a server run with ingest turned off: revisions get
/// `Ready=False` with a message saying so, and no artifact is fetched.
#[derive(Clone, Copy, Debug, Default)]
pub struct DisabledIngest;

#[async_trait]
impl Ingest for DisabledIngest {
    async fn ingest(&self, _revision: &EdgeFunctionRevision) -> Result<IngestResult, String> {
        Err(
            "ingest is turned off on this server (--ingest none), so no artifact was fetched; \
             restart the server with --ingest fetch and update the revision"
                .to_owned(),
        )
    }
}

/// Type of the condition appended at create.
pub const INGEST_CONDITION: &str = "Ingest";
/// Type of the condition appended when ingest ends.
pub const READY_CONDITION: &str = "Ready";

fn condition(condition_type: &str, status: &str, reason: &str, message: &str) -> Condition {
    Condition {
        condition_type: condition_type.to_owned(),
        status: status.to_owned(),
        observed_generation: 0,
        last_transition_time: now_rfc3339(),
        reason: reason.to_owned(),
        message: message.to_owned(),
    }
}

/// Returns the condition set at create.
pub fn in_progress_condition() -> Condition {
    condition(
        INGEST_CONDITION,
        "True",
        "InProgress",
        "Edge Function code is being ingested",
    )
}

/// Returns whether an update from `old` to `new` changes what ingest reads: the spec, or the
/// `edgefn.dev/sha256` pin. Such an update starts a new ingest.
pub fn inputs_changed(old: &EdgeFunctionRevision, new: &EdgeFunctionRevision) -> bool {
    let pin = |revision: &EdgeFunctionRevision| {
        revision
            .metadata
            .annotations
            .get(edgefn_proto::annotations::SHA256_ANNOTATION)
            .cloned()
    };
    old.spec != new.spec || pin(old) != pin(new)
}

/// Number of attempts to record the outcome when concurrent writes change the object.
const RECORD_ATTEMPTS: usize = 10;
/// Pause between two attempts.
const RECORD_RETRY_DELAY: Duration = Duration::from_millis(20);

/// Runs `ingest` for a created or changed revision and appends the `Ready` condition to its
/// status. The outcome is dropped when the stored revision no longer has the ingested inputs,
/// because the write that changed them started a newer ingest.
///
/// NOTE: nothing resumes an ingest that a restart interrupted: a revision whose server stopped
/// before recording the outcome keeps `Ingest=True` and never gets `Ready`.
pub async fn run(store: Arc<dyn Store>, ingest: Arc<dyn Ingest>, revision: EdgeFunctionRevision) {
    let name = revision.metadata.name.clone();
    let outcome = ingest.ingest(&revision).await;
    let ready = match &outcome {
        Ok(_) => condition(READY_CONDITION, "True", "Ready", "Ready"),
        Err(message) => {
            tracing::warn!(%name, error = %message, "ingest failed");
            condition(READY_CONDITION, "False", "Failed", message)
        }
    };

    for _ in 0..RECORD_ATTEMPTS {
        let current = match store.get(&name).await {
            Ok(Some(current)) => current,
            Ok(None) => {
                tracing::info!(%name, "revision deleted before its ingest ended");
                return;
            }
            Err(error) => {
                tracing::error!(%name, %error, "reading the revision after ingest failed");
                return;
            }
        };
        if current.metadata.uid != revision.metadata.uid {
            tracing::info!(%name, "revision replaced by a new object before its ingest ended");
            return;
        }
        if inputs_changed(&current, &revision) {
            tracing::info!(%name, "revision changed before its ingest ended; a newer one runs");
            return;
        }

        let expected = resource_version(&current).unwrap_or(0);
        let mut updated = current;
        updated.status.conditions.push(ready.clone());
        updated.status.artifact_ref = match &outcome {
            Ok(result) => result.artifact_ref.clone(),
            Err(_) => String::new(),
        };
        match store.update(updated, expected).await {
            Ok(_) => {
                tracing::info!(%name, ready = outcome.is_ok(), "recorded ingest outcome");
                return;
            }
            Err(StoreError::Conflict { .. }) => tokio::time::sleep(RECORD_RETRY_DELAY).await,
            Err(error) => {
                tracing::error!(%name, %error, "recording the ingest outcome failed");
                return;
            }
        }
    }
    tracing::error!(
        %name,
        attempts = RECORD_ATTEMPTS,
        "recording the ingest outcome failed: the revision kept changing"
    );
}
