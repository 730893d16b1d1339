//! The subset of Kubernetes `metav1.ObjectMeta` and `metav1.Condition` that EdgeFunctionRevision
//! uses.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

/// Kubernetes object metadata (`metav1.ObjectMeta`).
///
/// The fields edgefn reads are typed. Every other field (`ownerReferences`, `finalizers`,
/// `managedFields`, …) is kept as JSON in [`ObjectMeta::other`], so an object read and written
/// again keeps it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    /// Object name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,

    /// Prefix from which the API server generates a name when `name` is empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub generate_name: String,

    /// Unique id assigned by the API server.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,

    /// Opaque version used for optimistic concurrency.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub resource_version: String,

    /// RFC 3339 time of creation. Kubernetes writes `null` for an unset time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<String>,

    /// RFC 3339 time at which deletion was requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_timestamp: Option<String>,

    /// Labels.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,

    /// Annotations, including edgefn's own options (see [`crate::annotations`]).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,

    /// Every other metadata field, kept as read.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// The `metav1.ObjectMeta` fields that [`ObjectMeta`] keeps in [`ObjectMeta::other`].
///
/// Inside `spec` any other key is rejected as unknown.
pub(crate) const OTHER_OBJECT_META_FIELDS: &[&str] = &[
    "namespace",
    "selfLink",
    "generation",
    "deletionGracePeriodSeconds",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

/// The typed `metav1.ObjectMeta` fields, listed in unknown-field errors.
pub(crate) const TYPED_OBJECT_META_FIELDS: &[&str] = &[
    "name",
    "generateName",
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "deletionTimestamp",
    "labels",
    "annotations",
];

/// One status condition (`metav1.Condition`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Condition {
    /// Condition type, such as `Ready`.
    #[serde(rename = "type", default)]
    pub condition_type: String,

    /// `True`, `False` or `Unknown`.
    #[serde(default)]
    pub status: String,

    /// `metadata.generation` that the condition was computed from, 0 when unknown.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub observed_generation: i64,

    /// RFC 3339 time of the last change of `status`.
    #[serde(default)]
    pub last_transition_time: String,

    /// Machine-readable CamelCase reason.
    #[serde(default)]
    pub reason: String,

    /// Human-readable message.
    #[serde(default)]
    pub message: String,
}

fn is_zero(value: &i64) -> bool {
    *value == 0
}

/// Deserializes `null` as the type's default, as Go's encoding/json does for maps and slices.
pub(crate) fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    let value = Option::<T>::deserialize(deserializer)?;
    Ok(value.unwrap_or_default())
}
