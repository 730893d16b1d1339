//! Defaulting of an EdgeFunctionRevision spec.

use crate::types::{EdgeFunctionMode, EdgeFunctionRevisionSpec, DEFAULT_BACKEND_PORT};

/// Tag used when `oci.tag` is empty and `oci.repo` has no digest.
pub const DEFAULT_OCI_TAG: &str = "latest";

/// Fills in the defaults of `spec`. Applying it twice gives the same result as once.
///
/// - An empty `mode` becomes `filter` when `goPluginSource` is set, `backend` otherwise, and
///   the mode is lower-cased (`Filter` becomes `filter`).
/// - An absent `runtime` becomes `{}`.
/// - In backend mode, an absent `runtime.port` becomes 8080.
/// - An empty `goPluginSource.oci.tag` becomes `latest`, unless `oci.repo` is a digest
///   reference (`repo@sha256:…`).
///
/// `runtime.timeout` and `runtime.capabilities` stay unset, as in Apoxy's stored objects: the
/// accessors [`EdgeFunctionRevisionSpec::timeout`],
/// [`EdgeFunctionRevisionSpec::fetch_api_enabled`] and
/// [`EdgeFunctionRevisionSpec::kv_enabled`] apply their defaults. An inline `password` is not
/// moved into `passwordData`, unlike Apoxy, because storage decides that.
pub fn apply_defaults(spec: &mut EdgeFunctionRevisionSpec) {
    if spec.mode.is_empty() {
        let mode = if spec.code.go_plugin_source.is_some() {
            EdgeFunctionMode::Filter
        } else {
            EdgeFunctionMode::Backend
        };
        spec.mode = mode.as_str().to_owned();
    }
    spec.mode = spec.mode.to_lowercase();

    let runtime = spec.runtime.get_or_insert_with(Default::default);
    if spec.mode == EdgeFunctionMode::Backend.as_str() && runtime.port.is_none() {
        runtime.port = Some(DEFAULT_BACKEND_PORT);
    }

    let oci = spec
        .code
        .go_plugin_source
        .as_mut()
        .and_then(|source| source.oci.as_mut());
    if let Some(oci) = oci {
        if oci.tag.is_empty() && !is_digest_reference(&oci.repo) {
            oci.tag = DEFAULT_OCI_TAG.to_owned();
        }
    }
}

/// Returns whether an OCI repository reference names a digest (`name@algorithm:hex`).
pub(crate) fn is_digest_reference(repo: &str) -> bool {
    repo.rsplit_once('@')
        .is_some_and(|(_, digest)| digest.contains(':'))
}
