//! The EdgeFunctionRevision kind of `extensions.apoxy.dev/v1alpha2`, with its JSON field names.
//!
//! Every struct inside `spec` rejects unknown fields, so a misspelt field fails to parse instead
//! of being dropped. Fields that Apoxy's Go types serialise without `omitempty` are always
//! written (`spec.mode`, `spec.code`, `spec.code.metadata`, `oci.tag`, `status.ref`, …), so an
//! object written here reads the same in Apoxy's tools.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration::parse_go_duration;
use crate::error::FieldError;
use crate::meta::{null_as_default, Condition, ObjectMeta};

/// API group and version of EdgeFunctionRevision.
pub const API_VERSION: &str = "extensions.apoxy.dev/v1alpha2";

/// Kind name of EdgeFunctionRevision.
pub const KIND: &str = "EdgeFunctionRevision";

/// Port of a backend-mode function when `spec.runtime.port` is not set.
pub const DEFAULT_BACKEND_PORT: i32 = 8080;

/// Per-request timeout when `spec.runtime.timeout` is not set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// One immutable revision of an edge function.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EdgeFunctionRevision {
    /// Always [`API_VERSION`] after parsing.
    #[serde(default)]
    pub api_version: String,

    /// Always [`KIND`] after parsing.
    #[serde(default)]
    pub kind: String,

    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,

    /// Desired state: the function's code and runtime settings.
    #[serde(default)]
    pub spec: EdgeFunctionRevisionSpec,

    /// Observed state, written by the controller.
    #[serde(default)]
    pub status: EdgeFunctionRevisionStatus,
}

/// `spec` of an EdgeFunctionRevision.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EdgeFunctionRevisionSpec {
    /// `filter` or `backend` once defaulted. Kept as text because input may use any case (see
    /// [`crate::apply_defaults`]); read it through [`EdgeFunctionRevisionSpec::mode`].
    #[serde(default)]
    pub mode: String,

    /// Source of the function's code.
    #[serde(default)]
    pub code: EdgeFunctionCodeSource,

    /// Environment variables passed to the function.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub env: Vec<EnvVar>,

    /// Runtime settings. Defaulting sets an empty value when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<EdgeFunctionRuntime>,
}

/// Role of a function in request handling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EdgeFunctionMode {
    /// The function runs in the proxy before the request reaches the backend.
    Filter,
    /// The function is an upstream that listens on `spec.runtime.port`.
    Backend,
}

impl EdgeFunctionMode {
    /// Returns the API value: `filter` or `backend`.
    pub fn as_str(self) -> &'static str {
        match self {
            EdgeFunctionMode::Filter => "filter",
            EdgeFunctionMode::Backend => "backend",
        }
    }

    /// Parses an API value, ignoring case as Apoxy's defaulting does.
    pub fn parse(value: &str) -> Option<Self> {
        match value.to_lowercase().as_str() {
            "filter" => Some(EdgeFunctionMode::Filter),
            "backend" => Some(EdgeFunctionMode::Backend),
            _ => None,
        }
    }
}

impl fmt::Display for EdgeFunctionMode {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// `spec.code`: exactly one of the three sources, plus metadata.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EdgeFunctionCodeSource {
    /// Metadata of the code. Its `name` is the Go plugin name (see
    /// [`EdgeFunctionRevision::plugin_name`]). Always written, as `{}` when empty.
    #[serde(default)]
    pub metadata: ObjectMeta,

    /// JavaScript source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub js_source: Option<JavaScriptSource>,

    /// WebAssembly module source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wasm_source: Option<WasmSource>,

    /// Go filter plugin (a `-buildmode=c-shared` library) source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub go_plugin_source: Option<GoPluginSource>,
}

/// `spec.code.goPluginSource`: where to fetch the Go plugin, and its configuration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GoPluginSource {
    /// http, https or file URL, or absolute path, of the shared library.
    ///
    /// Apoxy releases from January to October 2025 wrote this field under the key
    /// `url.omitempty`. [`crate::decode_revision`] reads that key as `url`, and it is always
    /// written as `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,

    /// OCI image that carries the shared library.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oci: Option<OciImageRef>,

    /// A JSON or YAML object in a string, passed to the plugin (see
    /// [`crate::plugin_config_any`]). Empty means `{}`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub plugin_config: String,
}

/// `goPluginSource.oci`: an OCI image reference.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OciImageRef {
    /// Repository, such as `ghcr.io/example/plugin`, optionally with `@sha256:<digest>`.
    #[serde(default)]
    pub repo: String,

    /// Tag. Defaulting sets `latest` when empty and `repo` has no digest. Always written.
    #[serde(default)]
    pub tag: String,

    /// Inline registry credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<OciCredentials>,

    /// Reference to an object that contains registry credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_ref: Option<OciCredentialsObjectReference>,
}

/// `oci.credentials`: inline registry credentials. `Debug` never shows the secrets.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OciCredentials {
    /// Registry user name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username: String,

    /// Plain-text password.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub password: String,

    /// Password as bytes, written as standard base64 (Go's `[]byte` JSON encoding).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_data: Option<PasswordData>,
}

const REDACTED: &str = "<redacted>";

impl fmt::Debug for OciCredentials {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let password = if self.password.is_empty() {
            ""
        } else {
            REDACTED
        };
        formatter
            .debug_struct("OciCredentials")
            .field("username", &self.username)
            .field("password", &password)
            .field("password_data", &self.password_data)
            .finish()
    }
}

/// Base64 text of `passwordData`, kept as read so that writing it back gives the same text.
/// `Debug` prints `<redacted>`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PasswordData(pub String);

impl PasswordData {
    /// Decodes the standard (padded) base64 text. Like Go, it skips `\r` and `\n`.
    pub fn decode(&self) -> Result<Vec<u8>, base64::DecodeError> {
        use base64::Engine as _;

        let text: String = self
            .0
            .chars()
            .filter(|c| *c != '\r' && *c != '\n')
            .collect();
        base64::engine::general_purpose::STANDARD.decode(text)
    }
}

impl fmt::Debug for PasswordData {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(REDACTED)
    }
}

/// `oci.credentialsRef`: the object that contains registry credentials. Every field is always
/// written, as Apoxy's type has no `omitempty` on them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OciCredentialsObjectReference {
    /// API group of the object, empty for the core group.
    #[serde(default)]
    pub group: String,
    /// Kind of the object, such as `Secret`.
    #[serde(default)]
    pub kind: String,
    /// Name of the object.
    #[serde(default)]
    pub name: String,
    /// Namespace of the object.
    #[serde(default)]
    pub namespace: String,
}

/// `spec.code.wasmSource`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WasmSource {
    /// http, https or file URL, or absolute path, of the module.
    #[serde(default)]
    pub url: String,
}

/// `spec.code.jsSource`: an entry point plus exactly one of assets, git or npm.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JavaScriptSource {
    /// Relative path of the entry module.
    #[serde(default)]
    pub entrypoint: String,

    /// Source files given inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assets: Option<JavaScriptAssetsSource>,

    /// Source files from a git repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<JavaScriptGitSource>,

    /// Source files from an npm package.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub npm: Option<JavaScriptNpmSource>,
}

/// `jsSource.assets`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JavaScriptAssetsSource {
    /// The files.
    #[serde(default, deserialize_with = "null_as_default")]
    pub files: Vec<SourceFile>,
}

/// One inline source file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceFile {
    /// Relative path without `..` components.
    #[serde(default)]
    pub path: String,
    /// File content.
    #[serde(default)]
    pub content: String,
}

/// `jsSource.git`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JavaScriptGitSource {
    /// Repository URL.
    #[serde(default)]
    pub repository: String,
    /// Branch to check out.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub branch: String,
    /// Commit to check out.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub commit: String,
}

/// `jsSource.npm`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JavaScriptNpmSource {
    /// Package name.
    #[serde(default)]
    pub package: String,
    /// Version or range.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
}

/// One entry of `spec.env`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvVar {
    /// Variable name.
    #[serde(default)]
    pub name: String,
    /// Variable value.
    #[serde(default)]
    pub value: String,
}

/// `spec.runtime`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EdgeFunctionRuntime {
    /// Per-request timeout as a Go duration string (`30s`, `1m30s`); see
    /// [`EdgeFunctionRevisionSpec::timeout`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,

    /// Features the function may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<RuntimeCapabilities>,

    /// Port a backend-mode function listens on. Must not be set in filter mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
}

/// `spec.runtime.capabilities`. Unset means enabled.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeCapabilities {
    /// Whether the function may call the Fetch API.
    #[serde(rename = "fetchAPI", default, skip_serializing_if = "Option::is_none")]
    pub fetch_api: Option<bool>,

    /// Whether the function may use the key-value store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv: Option<bool>,
}

/// `status` of an EdgeFunctionRevision.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EdgeFunctionRevisionStatus {
    /// Name of the stored artifact once ingest succeeded, empty before. Always written.
    #[serde(rename = "ref", default)]
    pub artifact_ref: String,

    /// Conditions, appended in the order they happened.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub conditions: Vec<Condition>,
}

impl EdgeFunctionRevision {
    /// Returns `metadata.name`.
    pub fn name(&self) -> &str {
        &self.metadata.name
    }

    /// Returns the Go plugin name: `spec.code.metadata.name` when it is set and non-empty,
    /// otherwise `metadata.name`, or `None` when both are empty.
    pub fn plugin_name(&self) -> Option<&str> {
        [&self.spec.code.metadata.name, &self.metadata.name]
            .into_iter()
            .find(|name| !name.is_empty())
            .map(String::as_str)
    }
}

impl EdgeFunctionRevisionSpec {
    /// Returns the mode, or `None` when it is empty or not `filter`/`backend` in any case.
    pub fn mode(&self) -> Option<EdgeFunctionMode> {
        EdgeFunctionMode::parse(&self.mode)
    }

    /// Returns `runtime.timeout` parsed, or [`DEFAULT_TIMEOUT`] when it is not set.
    pub fn timeout(&self) -> Result<Duration, FieldError> {
        let timeout = self.runtime.as_ref().and_then(|r| r.timeout.as_deref());
        match timeout {
            None => Ok(DEFAULT_TIMEOUT),
            Some(text) => parse_go_duration(text)
                .map_err(|error| FieldError::new("spec.runtime.timeout", error.to_string())),
        }
    }

    /// Returns `runtime.port` when it is set and within 1..=65535.
    pub fn port(&self) -> Option<u16> {
        let port = self.runtime.as_ref()?.port?;
        u16::try_from(port).ok().filter(|port| *port != 0)
    }

    /// Returns `runtime.capabilities.fetchAPI`, `true` when unset.
    pub fn fetch_api_enabled(&self) -> bool {
        self.capabilities()
            .and_then(|c| c.fetch_api)
            .unwrap_or(true)
    }

    /// Returns `runtime.capabilities.kv`, `true` when unset.
    pub fn kv_enabled(&self) -> bool {
        self.capabilities().and_then(|c| c.kv).unwrap_or(true)
    }

    fn capabilities(&self) -> Option<&RuntimeCapabilities> {
        self.runtime.as_ref()?.capabilities.as_ref()
    }
}
