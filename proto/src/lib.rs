//! EdgeFunctionRevision of the Apoxy Extensions API (`extensions.apoxy.dev/v1alpha2`): the
//! types with their JSON names, parsing from JSON or YAML, defaulting, validation, and the
//! encoding of a Go plugin's config as the `google.protobuf.Any` Envoy's golang filter passes to
//! the plugin.
//!
//! ```
//! let revision = edgefn_proto::parse_revision(
//!     "mode: filter\ncode:\n  goPluginSource:\n    oci: {repo: ghcr.io/example/plugin}\n",
//! )?;
//! assert_eq!(revision.spec.code.go_plugin_source.unwrap().oci.unwrap().tag, "latest");
//! # Ok::<(), edgefn_proto::RevisionError>(())
//! ```
#![forbid(unsafe_code)]

pub mod annotations;
mod defaults;
mod document;
mod duration;
mod error;
mod meta;
mod parse;
mod plugin_config;
mod types;
mod validate;

pub use defaults::{apply_defaults, DEFAULT_OCI_TAG};
pub use duration::{parse_go_duration, InvalidDuration};
pub use error::{FieldError, FieldErrorList, RevisionError};
pub use meta::{Condition, ObjectMeta};
pub use parse::{decode_revision, parse_revision, revision_name_hint};
pub use plugin_config::{
    json_object_to_struct, json_to_value, parse_plugin_config, plugin_config_any, AnyWrapping,
    TypedStruct, STRUCT_TYPE_URL, TYPED_STRUCT_TYPE_URL,
};
pub use types::*;
pub use validate::{validate_revision, validate_spec};
