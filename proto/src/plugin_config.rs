//! `goPluginSource.pluginConfig` as the `google.protobuf.Any` that Envoy's golang filter hands
//! to the plugin.
//!
//! JSON numbers become `double` values, as in protobuf's JSON mapping, so an integer beyond
//! 2^53 (9007199254740992) is rounded to the nearest `double`: `9007199254740993` arrives as
//! `9007199254740992`. Send such values as strings.
//!
//! Map keys are encoded in byte order, and prost leaves out the key field of an empty key, as
//! proto3 allows. The bytes equal Python protobuf's deterministic encoding (upb, version 7.36)
//! except for configs with an empty key or with a key that is a prefix of another key, which upb
//! orders after the longer key. Both decode to the same Struct.
//!
//! NOTE: nesting is bounded only by the JSON and YAML parsers (128 levels). A decoder with
//! protobuf's usual recursion limit of 100 messages rejects a Struct nested more than 33 objects
//! deep (measured with upb: 33 decode, 34 fail). Deeper configs work only with a decoder whose
//! limit is higher.

use prost::Message;
use prost_types::value::Kind;
use prost_types::{Any, ListValue, Struct, Value};
use serde_json::{Map, Value as Json};

use crate::document::{json_type_name, parse_json_or_yaml};
use crate::error::FieldError;
use crate::types::EdgeFunctionRevisionSpec;

/// Type URL of `google.protobuf.Struct`.
pub const STRUCT_TYPE_URL: &str = "type.googleapis.com/google.protobuf.Struct";

/// Type URL of `xds.type.v3.TypedStruct`.
pub const TYPED_STRUCT_TYPE_URL: &str = "type.googleapis.com/xds.type.v3.TypedStruct";

pub(crate) const PLUGIN_CONFIG_PATH: &str = "spec.code.goPluginSource.pluginConfig";

/// Wrapping of the plugin config `Struct` in the `Any` given to the plugin.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AnyWrapping {
    /// `Any(google.protobuf.Struct)`, what Apoxy sends. Annotation value `struct`.
    #[default]
    Struct,
    /// `Any(xds.type.v3.TypedStruct{type_url: "", value: Struct})`, for plugins that unpack a
    /// TypedStruct. Annotation value `typed-struct`.
    TypedStruct,
}

impl AnyWrapping {
    /// Returns the `edgefn.dev/plugin-config-type` annotation value.
    pub fn as_str(self) -> &'static str {
        match self {
            AnyWrapping::Struct => "struct",
            AnyWrapping::TypedStruct => "typed-struct",
        }
    }

    /// Parses an `edgefn.dev/plugin-config-type` annotation value.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "struct" => Some(AnyWrapping::Struct),
            "typed-struct" => Some(AnyWrapping::TypedStruct),
            _ => None,
        }
    }
}

/// `xds.type.v3.TypedStruct` from the xDS API (`xds/type/v3/typed_struct.proto`).
#[derive(Clone, PartialEq, Message)]
pub struct TypedStruct {
    /// Type URL of the message that `value` describes. edgefn leaves it empty.
    #[prost(string, tag = "1")]
    pub type_url: String,

    /// The message's fields in JSON form.
    #[prost(message, optional, tag = "2")]
    pub value: Option<Struct>,
}

/// Parses a plugin config string: a JSON or YAML object, where an empty or blank string means
/// `{}`. Errors name `spec.code.goPluginSource.pluginConfig`.
///
/// NOTE: YAML is read as YAML 1.2, but Apoxy converts with `sigs.k8s.io/yaml`, which is based
/// on go-yaml v2 and resolves YAML 1.1 booleans. A plain `yes`, `y` or `on` is therefore the
/// string "yes" here and `true` in Apoxy. Quote such values or write `true`.
pub fn parse_plugin_config(text: &str) -> Result<Map<String, Json>, FieldError> {
    if text.trim().is_empty() {
        return Ok(Map::new());
    }

    let value = parse_json_or_yaml(text).map_err(|error| {
        FieldError::new(
            PLUGIN_CONFIG_PATH,
            format!(
                "invalid {}: {}; expected a JSON or YAML object",
                error.format, error.message
            ),
        )
    })?;

    match value {
        Json::Object(object) => Ok(object),
        other => Err(FieldError::new(
            PLUGIN_CONFIG_PATH,
            format!(
                "expected a JSON or YAML object, found {}",
                json_type_name(&other)
            ),
        )),
    }
}

/// Returns the serialized `google.protobuf.Any` that carries `spec`'s plugin config, wrapped as
/// `wrapping` selects.
///
/// Map keys are encoded in sorted order, so equal configs give equal bytes.
pub fn plugin_config_any(
    spec: &EdgeFunctionRevisionSpec,
    wrapping: AnyWrapping,
) -> Result<Vec<u8>, FieldError> {
    let source = spec.code.go_plugin_source.as_ref().ok_or_else(|| {
        FieldError::new(
            "spec.code.goPluginSource",
            "required: only a Go plugin source has a plugin config",
        )
    })?;
    let config = parse_plugin_config(&source.plugin_config)?;
    let config = json_object_to_struct(&config);

    let any = match wrapping {
        AnyWrapping::Struct => Any {
            type_url: STRUCT_TYPE_URL.to_owned(),
            value: config.encode_to_vec(),
        },
        AnyWrapping::TypedStruct => {
            let typed = TypedStruct {
                type_url: String::new(),
                value: Some(config),
            };
            Any {
                type_url: TYPED_STRUCT_TYPE_URL.to_owned(),
                value: typed.encode_to_vec(),
            }
        }
    };
    Ok(any.encode_to_vec())
}

/// Converts a JSON object into a `google.protobuf.Struct`, following protobuf's JSON mapping.
pub fn json_object_to_struct(object: &Map<String, Json>) -> Struct {
    let fields = object
        .iter()
        .map(|(key, value)| (key.clone(), json_to_value(value)))
        .collect();
    Struct { fields }
}

/// Converts a JSON value into a `google.protobuf.Value`. Numbers become `double`.
pub fn json_to_value(value: &Json) -> Value {
    let kind = match value {
        Json::Null => Kind::NullValue(prost_types::NullValue::NullValue as i32),
        Json::Bool(value) => Kind::BoolValue(*value),
        Json::Number(number) => Kind::NumberValue(number_to_f64(number)),
        Json::String(value) => Kind::StringValue(value.clone()),
        Json::Array(items) => Kind::ListValue(ListValue {
            values: items.iter().map(json_to_value).collect(),
        }),
        Json::Object(object) => Kind::StructValue(json_object_to_struct(object)),
    };
    Value { kind: Some(kind) }
}

/// Rounds a JSON number to the nearest `double`, as Go's `strconv.ParseFloat` does in
/// protobuf's JSON mapping. Rust's integer-to-float `as` conversion also rounds to nearest, ties
/// to even.
fn number_to_f64(number: &serde_json::Number) -> f64 {
    if let Some(value) = number.as_u64() {
        value as f64
    } else if let Some(value) = number.as_i64() {
        value as f64
    } else {
        // Without serde_json's `arbitrary_precision` feature every other number is an f64.
        number.as_f64().unwrap_or(f64::NAN)
    }
}
