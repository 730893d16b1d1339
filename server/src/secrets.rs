//! The write-only registry password of `spec.code.goPluginSource.oci.credentials`.
//!
//! `password` and `passwordData` are stored, for the ingest step that pulls the image, but no
//! response, list, watch event or log ever contains them. A response that leaves them out
//! carries the annotation [`CREDENTIALS_ANNOTATION`]` = stored` instead. The secret also stays
//! out of kubectl's `last-applied-configuration` annotation, which would otherwise repeat it.

use edgefn_proto::{EdgeFunctionRevision, OciCredentials};
use serde_json::Value as Json;

/// Annotation set on responses whose stored object has a password. The server sets and
/// removes it; a value sent by a client is ignored. Its prefix is not `edgefn.dev/`, because
/// `edgefn-proto` rejects unknown annotations with that prefix as typos.
pub const CREDENTIALS_ANNOTATION: &str = "server.edgefn.dev/credentials";

/// Value of [`CREDENTIALS_ANNOTATION`].
pub const CREDENTIALS_STORED: &str = "stored";

/// Annotation in which `kubectl apply` keeps the last applied object, password included.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

fn credentials(object: &EdgeFunctionRevision) -> Option<&OciCredentials> {
    object
        .spec
        .code
        .go_plugin_source
        .as_ref()?
        .oci
        .as_ref()?
        .credentials
        .as_ref()
}

fn credentials_mut(object: &mut EdgeFunctionRevision) -> Option<&mut OciCredentials> {
    object
        .spec
        .code
        .go_plugin_source
        .as_mut()?
        .oci
        .as_mut()?
        .credentials
        .as_mut()
}

fn has_secret(credentials: &OciCredentials) -> bool {
    !credentials.password.is_empty() || credentials.password_data.is_some()
}

/// Removes the password from an object about to be returned, and marks that one is stored.
pub fn redact(object: &mut EdgeFunctionRevision) {
    if let Some(credentials) = credentials_mut(object) {
        if has_secret(credentials) {
            credentials.password.clear();
            credentials.password_data = None;
            object.metadata.annotations.insert(
                CREDENTIALS_ANNOTATION.to_owned(),
                CREDENTIALS_STORED.to_owned(),
            );
        }
    }
}

/// Prepares an object sent by a client for storage: drops the server's annotation and removes
/// the password from kubectl's last-applied annotation.
pub fn clean_input(object: &mut EdgeFunctionRevision) {
    object.metadata.annotations.remove(CREDENTIALS_ANNOTATION);

    if let Some(applied) = object.metadata.annotations.get_mut(LAST_APPLIED_ANNOTATION) {
        // kubectl writes this annotation as JSON. Other text is left alone.
        if let Ok(mut document) = serde_json::from_str::<Json>(applied) {
            let credentials = document
                .pointer_mut("/spec/code/goPluginSource/oci/credentials")
                .and_then(Json::as_object_mut);
            if let Some(credentials) = credentials {
                let password = credentials.remove("password");
                let password_data = credentials.remove("passwordData");
                if password.is_some() || password_data.is_some() {
                    *applied = document.to_string();
                }
            }
        }
    }
}

/// Keeps the stored password of `old` in `new` when the client sent the credentials back
/// without it, as it does after reading the object.
///
/// The password is kept only while `username` and the registry host of `oci.repo` are
/// unchanged, so that an update cannot send the stored password to another registry or
/// account. Credentials sent with a password replace the stored one, and removing
/// `credentials` removes it.
pub fn keep_stored_secret(new: &mut EdgeFunctionRevision, old: &EdgeFunctionRevision) {
    let Some(old_credentials) = credentials(old) else {
        return;
    };
    if !has_secret(old_credentials) || registry_host(new) != registry_host(old) {
        return;
    }
    let Some(new_credentials) = credentials_mut(new) else {
        return;
    };
    if has_secret(new_credentials) || new_credentials.username != old_credentials.username {
        return;
    }
    new_credentials.password = old_credentials.password.clone();
    new_credentials.password_data = old_credentials.password_data.clone();
}

/// Returns the registry host of `oci.repo`: the part before the first `/`.
fn registry_host(object: &EdgeFunctionRevision) -> Option<&str> {
    let repo = &object
        .spec
        .code
        .go_plugin_source
        .as_ref()?
        .oci
        .as_ref()?
        .repo;
    Some(repo.split('/').next().unwrap_or(repo))
}
