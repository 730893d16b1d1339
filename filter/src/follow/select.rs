//! Selection of the revision a filter runs among those an API server lists.
//!
//! Conditions are appended, never replaced: a create or a spec change appends `Ingest`, and the
//! end of that ingest appends `Ready`. So a revision is ready when its last `Ready` condition is
//! True, comes after its last `Ingest` condition, and `status.ref` names the artifact.

use std::collections::BTreeMap;

use edgefn_proto::EdgeFunctionRevision;

use super::settings::Selection;

const READY: &str = "Ready";
const INGEST: &str = "Ingest";
/// Prefix of a `status.ref` that an edgefn-server's artifact store can serve.
const DIGEST_PREFIX: &str = "sha256:";

/// Returns whether `revision` finished its latest ingest successfully.
pub fn is_ready(revision: &EdgeFunctionRevision) -> bool {
    let conditions = &revision.status.conditions;
    let last = |condition_type: &str| {
        conditions
            .iter()
            .rposition(|condition| condition.condition_type == condition_type)
    };
    let Some(ready) = last(READY) else {
        return false;
    };
    let ingest_after_ready = last(INGEST).is_some_and(|ingest| ingest > ready);
    conditions[ready].status == "True"
        && !ingest_after_ready
        && !revision.status.artifact_ref.is_empty()
}

/// Returns the hex SHA-256 that `status.ref` names as `sha256:<hex>`.
pub fn artifact_digest(revision: &EdgeFunctionRevision) -> Result<&str, String> {
    let reference = &revision.status.artifact_ref;
    let hex = reference.strip_prefix(DIGEST_PREFIX).unwrap_or_default();
    let is_lower_hex = |byte: u8| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte);
    if hex.len() == 64 && hex.bytes().all(is_lower_hex) {
        Ok(hex)
    } else {
        Err(format!(
            "status.ref {reference:?} is not a sha256:<hex> artifact digest, so edgefn cannot \
             download the plugin; run edgefn-server with artifact ingest (--ingest fetch)"
        ))
    }
}

/// Returns the revision to run: for [`Selection::Name`] that revision when it is ready, for
/// [`Selection::Labels`] the ready one with the newest `creationTimestamp` (then the greatest
/// name, because timestamps have whole seconds). `revisions` contains only the revisions that
/// the selection matched on the server.
pub fn target<'a>(
    revisions: &'a BTreeMap<String, EdgeFunctionRevision>,
    selection: &Selection,
) -> Option<&'a EdgeFunctionRevision> {
    match selection {
        Selection::Name(name) => revisions.get(name).filter(|revision| is_ready(revision)),
        Selection::Labels(_) => revisions
            .values()
            .filter(|revision| is_ready(revision))
            .max_by(|a, b| {
                let created = |revision: &EdgeFunctionRevision| {
                    revision
                        .metadata
                        .creation_timestamp
                        .clone()
                        .unwrap_or_default()
                };
                // RFC 3339 timestamps in UTC with whole seconds sort as text.
                created(a)
                    .cmp(&created(b))
                    .then_with(|| a.metadata.name.cmp(&b.metadata.name))
            }),
    }
}

/// Returns a key that changes whenever what edgefn loads from a revision changes: the object's
/// uid, its artifact, its spec and its `edgefn.dev/` annotations (the plugin-config wrapping).
pub fn load_key(revision: &EdgeFunctionRevision) -> String {
    let options: BTreeMap<&String, &String> = revision
        .metadata
        .annotations
        .iter()
        .filter(|(key, _)| key.starts_with(edgefn_proto::annotations::ANNOTATION_PREFIX))
        .collect();
    let parts = (
        &revision.metadata.uid,
        &revision.status.artifact_ref,
        &revision.spec,
        options,
    );
    serde_json::to_string(&parts).unwrap_or_else(|_| revision.metadata.uid.clone())
}

#[cfg(test)]
mod tests {
    use edgefn_proto::Condition;

    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn condition(condition_type: &str, status: &str) -> Condition {
        Condition {
            condition_type: condition_type.to_owned(),
            status: status.to_owned(),
            ..Default::default()
        }
    }

    fn revision(name: &str, created: &str, conditions: &[(&str, &str)]) -> EdgeFunctionRevision {
        let mut revision = EdgeFunctionRevision::default();
        revision.metadata.name = name.to_owned();
        revision.metadata.uid = format!("uid-{name}");
        revision.metadata.creation_timestamp = Some(created.to_owned());
        revision.status.artifact_ref = DIGEST.to_owned();
        revision.status.conditions = conditions
            .iter()
            .map(|(condition_type, status)| condition(condition_type, status))
            .collect();
        revision
    }

    #[test]
    fn ready_after_successful_ingest() {
        let ready = revision("a", "", &[("Ingest", "True"), ("Ready", "True")]);
        assert!(is_ready(&ready));
    }

    #[test]
    fn not_ready_while_ingesting_again() {
        let conditions = [("Ingest", "True"), ("Ready", "True"), ("Ingest", "True")];
        assert!(!is_ready(&revision("a", "", &conditions)));
    }

    #[test]
    fn not_ready_after_failed_ingest() {
        let conditions = [
            ("Ingest", "True"),
            ("Ready", "True"),
            ("Ingest", "True"),
            ("Ready", "False"),
        ];
        assert!(!is_ready(&revision("a", "", &conditions)));
    }

    #[test]
    fn not_ready_without_ref() {
        let mut ready = revision("a", "", &[("Ingest", "True"), ("Ready", "True")]);
        ready.status.artifact_ref.clear();
        assert!(!is_ready(&ready));
    }

    #[test]
    fn digest_needs_sha256_prefix() {
        let mut ready = revision("a", "", &[]);
        assert_eq!(artifact_digest(&ready).unwrap(), &DIGEST[7..]);
        ready.status.artifact_ref = "a".to_owned();
        assert!(artifact_digest(&ready)
            .unwrap_err()
            .contains("--ingest fetch"));
    }

    #[test]
    fn labels_pick_newest_ready() {
        let ready = [("Ingest", "True"), ("Ready", "True")];
        let revisions: BTreeMap<String, EdgeFunctionRevision> = [
            revision("old", "2025-01-01T00:00:00Z", &ready),
            revision("new", "2025-01-01T00:00:05Z", &ready),
            revision("newest", "2025-01-01T00:00:09Z", &[("Ingest", "True")]),
        ]
        .into_iter()
        .map(|revision| (revision.metadata.name.clone(), revision))
        .collect();

        let chosen = target(&revisions, &Selection::Labels("app=x".to_owned()));
        assert_eq!(
            chosen.map(|revision| revision.metadata.name.as_str()),
            Some("new")
        );
    }

    #[test]
    fn labels_break_ties_by_name() {
        let ready = [("Ingest", "True"), ("Ready", "True")];
        let revisions: BTreeMap<String, EdgeFunctionRevision> = [
            revision("b", "2025-01-01T00:00:00Z", &ready),
            revision("a", "2025-01-01T00:00:00Z", &ready),
        ]
        .into_iter()
        .map(|revision| (revision.metadata.name.clone(), revision))
        .collect();

        let chosen = target(&revisions, &Selection::Labels("app=x".to_owned()));
        assert_eq!(
            chosen.map(|revision| revision.metadata.name.as_str()),
            Some("b")
        );
    }

    #[test]
    fn name_needs_ready() {
        let revisions: BTreeMap<String, EdgeFunctionRevision> =
            [("a".to_owned(), revision("a", "", &[("Ingest", "True")]))].into();
        assert!(target(&revisions, &Selection::Name("a".to_owned())).is_none());
    }

    #[test]
    fn load_key_follows_spec() {
        let first = revision("a", "", &[]);
        let mut second = first.clone();
        second.spec.mode = "backend".to_owned();
        assert_ne!(load_key(&first), load_key(&second));
        let mut relabeled = first.clone();
        relabeled
            .metadata
            .labels
            .insert("x".to_owned(), "y".to_owned());
        let annotations = &mut relabeled.metadata.annotations;
        annotations.insert(
            "kubectl.kubernetes.io/last-applied-configuration".to_owned(),
            "{}".to_owned(),
        );
        assert_eq!(load_key(&first), load_key(&relabeled));
    }
}
