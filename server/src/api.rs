//! Handlers of `/apis/extensions.apoxy.dev/v1alpha2/edgefunctionrevisions[/{name}[/status]]`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use edgefn_proto::EdgeFunctionRevision;
use serde::Deserialize;
use serde_json::Value as Json;

use crate::artifacts::ArtifactStore;
use crate::ingest::{self, Ingest};
use crate::patch::{self, PatchType};
use crate::query::{ContinueToken, Query};
use crate::resource::{
    check_object_media_type, decode_body, generate_name, json_response, now_rfc3339, prepare_input,
    present, present_list, validate,
};
use crate::secrets::keep_stored_secret;
use crate::status::ApiError;
use crate::store::{resource_version, Store, StoreError};
use crate::watch;

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    /// Storage of the objects.
    pub store: Arc<dyn Store>,
    /// Ingest step, run after each create and after each update that changes the spec.
    pub ingest: Arc<dyn Ingest>,
    /// Artifacts served at `/artifacts/sha256/{hex}`; `None` serves none.
    pub artifacts: Option<Arc<ArtifactStore>>,
}

/// Number of read-modify-write attempts of a PATCH or DELETE that races other writes.
const WRITE_ATTEMPTS: usize = 5;

/// Number of names tried for a create with `generateName`.
const GENERATE_NAME_ATTEMPTS: usize = 5;

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::AlreadyExists { name } => ApiError::AlreadyExists { name },
            StoreError::NotFound { name } => ApiError::NotFound { name },
            StoreError::Conflict { name, .. } => ApiError::Conflict {
                name,
                message: "the object has been modified; please apply your changes to the latest \
                          version and try again"
                    .to_owned(),
            },
            StoreError::Expired { .. } => ApiError::Expired {
                message: error.to_string(),
            },
            StoreError::Backend(message) => ApiError::Internal { message },
        }
    }
}

/// Part of the object that a write changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    /// The main resource: metadata and spec. Status is kept.
    Main,
    /// The `/status` subresource: status only. Metadata and spec are kept.
    Status,
}

fn ok(object: &EdgeFunctionRevision) -> Response {
    json_response(StatusCode::OK, &present(object))
}

async fn get_existing(state: &AppState, name: &str) -> Result<EdgeFunctionRevision, ApiError> {
    state
        .store
        .get(name)
        .await?
        .ok_or_else(|| ApiError::NotFound {
            name: name.to_owned(),
        })
}

/// `GET` on the collection: a list, or a watch with `watch=true`.
pub async fn list(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let query = Query::parse(raw.as_deref())?;
    if query.watch {
        return watch::watch(state.store.clone(), query).await;
    }

    let at = query.continue_token.as_ref().map(|token| token.revision);
    let snapshot = state.store.list(at).await?;
    let after = query
        .continue_token
        .as_ref()
        .map(|token| token.after.as_str());
    let mut items: Vec<EdgeFunctionRevision> = snapshot
        .objects
        .into_iter()
        .filter(|object| after.is_none_or(|after| object.metadata.name.as_str() > after))
        .filter(|object| query.matches(object))
        .collect();

    let mut next = None;
    if query.limit > 0 && items.len() > query.limit {
        items.truncate(query.limit);
        let last = items.last().map(|object| object.metadata.name.clone());
        next = last.map(|after| {
            ContinueToken {
                revision: snapshot.revision,
                after,
            }
            .encode()
        });
    }
    Ok(json_response(
        StatusCode::OK,
        &present_list(&items, snapshot.revision, next),
    ))
}

/// `POST` on the collection.
pub async fn create(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let query = Query::parse(raw.as_deref())?;
    check_object_media_type(&headers)?;
    let mut object = decode_body(&body)?;
    if !object.metadata.resource_version.is_empty() {
        return Err(ApiError::bad_request(
            "metadata.resourceVersion must not be set on objects to be created; remove it",
        ));
    }

    prepare_input(&mut object);
    let generate = object.metadata.name.is_empty() && !object.metadata.generate_name.is_empty();
    if generate {
        object.metadata.name = generate_name(&object.metadata.generate_name);
    }
    validate(&object)?;

    object.metadata.uid = uuid::Uuid::new_v4().to_string();
    object.metadata.creation_timestamp = Some(now_rfc3339());
    object.status = Default::default();
    object
        .status
        .conditions
        .push(ingest::in_progress_condition());
    if query.dry_run {
        return Ok(json_response(StatusCode::CREATED, &present(&object)));
    }

    let mut attempts = 0;
    let created = loop {
        attempts += 1;
        match state.store.create(object.clone()).await {
            Err(StoreError::AlreadyExists { .. })
                if generate && attempts < GENERATE_NAME_ATTEMPTS =>
            {
                object.metadata.name = generate_name(&object.metadata.generate_name);
            }
            result => break result?,
        }
    };
    tracing::info!(
        name = %created.metadata.name,
        resource_version = %created.metadata.resource_version,
        "created revision"
    );

    tokio::spawn(ingest::run(
        state.store.clone(),
        state.ingest.clone(),
        created.clone(),
    ));
    Ok(json_response(StatusCode::CREATED, &present(&created)))
}

/// `GET` on one object or its status.
pub async fn get(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    Ok(ok(&get_existing(&state, &name).await?))
}

/// `PUT` on one object.
pub async fn replace(
    state: State<AppState>,
    name: Path<String>,
    query: RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    replace_target(state, name, query, headers, body, Target::Main).await
}

/// `PUT` on the status of one object.
pub async fn replace_status(
    state: State<AppState>,
    name: Path<String>,
    query: RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    replace_target(state, name, query, headers, body, Target::Status).await
}

async fn replace_target(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
    target: Target,
) -> Result<Response, ApiError> {
    let query = Query::parse(raw.as_deref())?;
    check_object_media_type(&headers)?;
    let incoming = decode_body(&body)?;
    if incoming.metadata.resource_version.is_empty() {
        return Err(ApiError::Invalid {
            name,
            causes: vec![edgefn_proto::FieldError::new(
                "metadata.resourceVersion",
                "required: must be specified for an update; read the object and send back its \
                 resourceVersion",
            )],
        });
    }

    let old = get_existing(&state, &name).await?;
    let updated = write_update(&state, &name, target, &old, incoming, query.dry_run).await?;
    Ok(ok(&updated))
}

/// `PATCH` on one object.
pub async fn patch(
    state: State<AppState>,
    name: Path<String>,
    query: RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    patch_target(state, name, query, headers, body, Target::Main).await
}

/// `PATCH` on the status of one object.
pub async fn patch_status(
    state: State<AppState>,
    name: Path<String>,
    query: RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    patch_target(state, name, query, headers, body, Target::Status).await
}

/// Applies the patch to the object as a client sees it (without its password, so that a JSON
/// patch `test` cannot probe the secret), then stores the result like a PUT. A write that loses
/// a race is retried on the new object, unless the patch itself set `resourceVersion`.
async fn patch_target(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
    target: Target,
) -> Result<Response, ApiError> {
    let query = Query::parse(raw.as_deref())?;
    let kind = PatchType::from_headers(&headers)?;

    let mut attempt = 0;
    loop {
        attempt += 1;
        let old = get_existing(&state, &name).await?;
        let view = present(&old);
        let patched = patch::apply(kind, &view, &body)?;
        let mut incoming = decode_body(patched.to_string().as_bytes())?;
        // A patch that sets resourceVersion makes it a precondition. One that removes it is
        // applied to the current object, like one that leaves it alone.
        let sets_version = !incoming.metadata.resource_version.is_empty()
            && incoming.metadata.resource_version != old.metadata.resource_version;
        if incoming.metadata.resource_version.is_empty() {
            incoming.metadata.resource_version = old.metadata.resource_version.clone();
        }

        match write_update(&state, &name, target, &old, incoming, query.dry_run).await {
            Err(ApiError::Conflict { .. }) if !sets_version && attempt < WRITE_ATTEMPTS => {}
            result => return Ok(ok(&result?)),
        }
    }
}

/// Checks and stores the update of `old` with `incoming`, keeping the fields that `target`
/// does not change.
async fn write_update(
    state: &AppState,
    name: &str,
    target: Target,
    old: &EdgeFunctionRevision,
    incoming: EdgeFunctionRevision,
    dry_run: bool,
) -> Result<EdgeFunctionRevision, ApiError> {
    if incoming.metadata.name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({:?}) does not match the name on the URL ({name:?})",
            incoming.metadata.name
        )));
    }
    let expected = parse_resource_version(&incoming.metadata.resource_version)?;
    let conflict = |message: String| ApiError::Conflict {
        name: name.to_owned(),
        message,
    };
    if !incoming.metadata.uid.is_empty() && incoming.metadata.uid != old.metadata.uid {
        return Err(conflict(format!(
            "Precondition failed: UID in object meta: {}, UID of the stored object: {}",
            incoming.metadata.uid, old.metadata.uid
        )));
    }
    if resource_version(old) != Some(expected) {
        return Err(conflict(
            "the object has been modified; please apply your changes to the latest version and \
             try again"
                .to_owned(),
        ));
    }

    let updated = match target {
        Target::Main => {
            let mut updated = incoming;
            prepare_input(&mut updated);
            validate(&updated)?;
            updated.metadata.uid = old.metadata.uid.clone();
            updated.metadata.creation_timestamp = old.metadata.creation_timestamp.clone();
            updated.status = old.status.clone();
            keep_stored_secret(&mut updated, old);
            if ingest::inputs_changed(old, &updated) {
                updated
                    .status
                    .conditions
                    .push(ingest::in_progress_condition());
            }
            updated
        }
        Target::Status => {
            let mut updated = old.clone();
            updated.status = incoming.status;
            updated
        }
    };
    if dry_run {
        return Ok(updated);
    }

    let reingest = target == Target::Main && ingest::inputs_changed(old, &updated);
    let stored = state.store.update(updated, expected).await?;
    tracing::info!(
        %name,
        resource_version = %stored.metadata.resource_version,
        ?target,
        reingest,
        "updated revision"
    );
    if reingest {
        tokio::spawn(ingest::run(
            state.store.clone(),
            state.ingest.clone(),
            stored.clone(),
        ));
    }
    Ok(stored)
}

fn parse_resource_version(text: &str) -> Result<u64, ApiError> {
    text.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "invalid metadata.resourceVersion {text:?}: expected a resourceVersion returned by \
             this server"
        ))
    })
}

/// Body of a DELETE: Kubernetes `DeleteOptions`, of which only the preconditions are used.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteOptions {
    #[serde(default)]
    preconditions: Option<Preconditions>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Preconditions {
    #[serde(default)]
    uid: Option<String>,
    #[serde(default)]
    resource_version: Option<String>,
}

/// `DELETE` on one object. Deletion is immediate (there are no finalizers), so the response is
/// 200 with the deleted object.
pub async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    let query = Query::parse(raw.as_deref())?;
    let options: DeleteOptions = if body.iter().all(u8::is_ascii_whitespace) {
        DeleteOptions::default()
    } else {
        serde_json::from_slice(&body).map_err(|error| {
            ApiError::bad_request(format!("the body is not valid DeleteOptions: {error}"))
        })?
    };
    let preconditions = options.preconditions.unwrap_or_default();

    let mut attempt = 0;
    loop {
        attempt += 1;
        let old = get_existing(&state, &name).await?;
        check_preconditions(&name, &old, &preconditions)?;
        if query.dry_run {
            return Ok(ok(&old));
        }

        let expected = resource_version(&old).unwrap_or(0);
        match state.store.delete(&name, expected).await {
            Err(StoreError::Conflict { .. })
                if preconditions.resource_version.is_none() && attempt < WRITE_ATTEMPTS => {}
            result => {
                let deleted = result?;
                tracing::info!(%name, "deleted revision");
                return Ok(ok(&deleted));
            }
        }
    }
}

fn check_preconditions(
    name: &str,
    old: &EdgeFunctionRevision,
    preconditions: &Preconditions,
) -> Result<(), ApiError> {
    let conflict = |what: &str, expected: &str, actual: &str| ApiError::Conflict {
        name: name.to_owned(),
        message: format!(
            "Precondition failed: {what} in precondition: {expected}, {what} in object meta: \
             {actual}"
        ),
    };
    if let Some(uid) = &preconditions.uid {
        if *uid != old.metadata.uid {
            return Err(conflict("UID", uid, &old.metadata.uid));
        }
    }
    if let Some(version) = &preconditions.resource_version {
        if *version != old.metadata.resource_version {
            return Err(conflict(
                "ResourceVersion",
                version,
                &old.metadata.resource_version,
            ));
        }
    }
    Ok(())
}

/// `DELETE` on the collection: deletes every object that matches the selectors and returns
/// them as a list.
pub async fn delete_collection(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let query = Query::parse(raw.as_deref())?;
    let snapshot = state.store.list(None).await?;

    let mut deleted = Vec::new();
    let mut revision = snapshot.revision;
    for selected in snapshot
        .objects
        .iter()
        .filter(|object| query.matches(object))
    {
        if query.dry_run {
            deleted.push(selected.clone());
            continue;
        }
        if let Some(gone) = delete_if_selected(&state, &query, selected).await? {
            revision = revision.max(resource_version(&gone).unwrap_or(0));
            deleted.push(gone);
        }
    }
    tracing::info!(count = deleted.len(), "deleted revisions");
    let body: Json = present_list(&deleted, revision, None);
    Ok(json_response(StatusCode::OK, &body))
}

/// Deletes an object selected by a delete-collection request, retrying when it changes
/// meanwhile, as long as it still matches the selectors. Returns `None` when it is gone or no
/// longer selected.
async fn delete_if_selected(
    state: &AppState,
    query: &Query,
    selected: &EdgeFunctionRevision,
) -> Result<Option<EdgeFunctionRevision>, ApiError> {
    let name = &selected.metadata.name;
    let mut current = selected.clone();
    for _ in 0..WRITE_ATTEMPTS {
        let expected = resource_version(&current).unwrap_or(0);
        match state.store.delete(name, expected).await {
            Ok(gone) => return Ok(Some(gone)),
            Err(StoreError::NotFound { .. }) => return Ok(None),
            Err(StoreError::Conflict { .. }) => match state.store.get(name).await? {
                Some(changed) if query.matches(&changed) => current = changed,
                _ => return Ok(None),
            },
            Err(error) => return Err(error.into()),
        }
    }
    Err(ApiError::Conflict {
        name: name.clone(),
        message: format!(
            "the object changed during each of {WRITE_ATTEMPTS} delete attempts; retry the request"
        ),
    })
}
