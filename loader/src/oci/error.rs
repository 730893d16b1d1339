//! Errors of OCI pulls and pushes. Each message names the image reference and what to do next.
//! None contains a password, a token or a `passwordData` value.

use std::path::PathBuf;
use std::time::Duration;

/// A failure to pull a plugin from an OCI registry, to find its credentials, or to push one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OciError {
    /// `repo` and `tag` do not form a valid image reference.
    #[error(
        "invalid OCI reference `{reference}`: {reason}; give `repo` as [host[:port]/]path, \
         optionally with @sha256:<digest>, and the tag in `tag`"
    )]
    InvalidReference { reference: String, reason: String },

    /// `EDGEFN_INSECURE_REGISTRIES` contains an entry that is not `host:port`.
    #[error(
        "invalid entry `{entry}` in EDGEFN_INSECURE_REGISTRIES: expected a comma-separated list \
         of host:port, such as 127.0.0.1:5000"
    )]
    InvalidInsecureRegistry { entry: String },

    /// No TCP connection to the registry could be made, or TLS failed.
    #[error(
        "cannot reach registry {registry} for {reference}: {detail}; check that the registry \
         is running and speaks the scheme in use: a registry that serves plain HTTP must be \
         listed in EDGEFN_INSECURE_REGISTRIES (for edgefn push and pull: pass --insecure)"
    )]
    Unreachable {
        reference: String,
        registry: String,
        detail: String,
    },

    /// The registry did not answer within the timeout.
    #[error(
        "pulling {reference} from {registry} timed out after {timeout:?}; check that the \
         registry is responsive, or raise the timeout"
    )]
    Timeout {
        reference: String,
        registry: String,
        timeout: Duration,
    },

    /// The registry answered 5xx or 429.
    #[error(
        "registry {registry} answered HTTP {status} for {reference}: {detail}; retry later and \
         check the registry's logs"
    )]
    ServerStatus {
        reference: String,
        registry: String,
        status: u16,
        detail: String,
    },

    /// HTTP 401, or the token service rejected the credentials.
    #[error(
        "unauthorized: registry {registry} rejected the credentials for repository \
         {repository} ({reference}): {detail}; check the username and password, or the \
         credentialsRef secret"
    )]
    Unauthorized {
        reference: String,
        registry: String,
        repository: String,
        detail: String,
    },

    /// HTTP 403: the credentials are valid but may not pull this repository.
    #[error(
        "forbidden: registry {registry} denied access to repository {repository} \
         ({reference}): {detail}; grant the account pull access to the repository"
    )]
    Forbidden {
        reference: String,
        registry: String,
        repository: String,
        detail: String,
    },

    /// HTTP 404: the repository, tag, manifest or blob does not exist.
    #[error(
        "{what} not found in registry {registry} for {reference}: {detail}; check the \
         repository name and tag, and that the plugin was pushed"
    )]
    NotFound {
        reference: String,
        registry: String,
        what: String,
        detail: String,
    },

    /// Any other refusal or protocol error from the registry.
    #[error("registry {registry} failed the request for {reference}: {detail}")]
    Registry {
        reference: String,
        registry: String,
        detail: String,
    },

    /// A manifest is not valid JSON or lacks required fields.
    #[error("invalid manifest {digest} for {reference}: {detail}; push the plugin again")]
    InvalidManifest {
        reference: String,
        digest: String,
        detail: String,
    },

    /// A manifest, config or layer has a media type that edgefn cannot load.
    #[error(
        "unsupported media type `{media_type}` for {reference} ({layer_count} layers): {detail}; \
         publish the plugin with `edgefn push`, as one layer of media type \
         application/vnd.apoxy.dev.image.content.v1.tar+gzip"
    )]
    UnsupportedMediaType {
        reference: String,
        media_type: String,
        layer_count: usize,
        detail: String,
    },

    /// No layer, or more than one, holds a plugin library.
    #[error(
        "{reference} has {found} plugin candidates in {layer_count} layers (media types: \
         {media_types}): {detail}; publish exactly one .so, for example with `edgefn push`"
    )]
    LayerSelection {
        reference: String,
        found: usize,
        layer_count: usize,
        media_types: String,
        detail: String,
    },

    /// A tar layer contains an entry that could escape its directory, or a link to the plugin.
    #[error(
        "unsafe entry `{entry}` in layer {digest} ({media_type}) of {reference}: {reason}; \
         publish the plugin as a regular file"
    )]
    UnsafeArchiveEntry {
        reference: String,
        digest: String,
        media_type: String,
        entry: String,
        reason: String,
    },

    /// A layer is not a readable tar or gzip stream although it is not a raw library either.
    #[error("cannot read layer {digest} ({media_type}) of {reference}: {detail}; push it again")]
    InvalidArchive {
        reference: String,
        digest: String,
        media_type: String,
        detail: String,
    },

    /// An image index has no entry for this host's platform.
    #[error(
        "{reference} has no manifest for platform {expected} (the image index lists: \
         {available}); push a library built for {expected}"
    )]
    NoMatchingPlatform {
        reference: String,
        expected: String,
        available: String,
    },

    /// An image config names another operating system or architecture.
    #[error(
        "{reference} is built for {found}, but this host needs {expected}; push a library built \
         for {expected}, or an image index with one entry per platform"
    )]
    WrongPlatform {
        reference: String,
        found: String,
        expected: String,
    },

    /// A digest uses an algorithm other than sha256, or is malformed.
    #[error(
        "unsupported digest `{digest}` in {reference}: expected sha256:<64 lower-case hex \
         digits>"
    )]
    UnsupportedDigest { reference: String, digest: String },

    /// Received bytes do not match the digest that names them. Nothing was cached.
    #[error(
        "digest mismatch for {what} of {reference}: expected {expected}, got {actual}; nothing \
         was cached. The registry or a proxy altered the content: push the plugin again"
    )]
    DigestMismatch {
        reference: String,
        what: String,
        expected: String,
        actual: String,
    },

    /// A blob is larger than the size limit.
    #[error(
        "{what} of {reference} is larger than the size limit of {limit} bytes ({observed}); \
         raise the size limit or publish a smaller plugin"
    )]
    TooLarge {
        reference: String,
        what: String,
        limit: u64,
        observed: String,
    },

    /// The connection ended before the whole blob arrived.
    #[error(
        "transfer of {what} of {reference} was cut off {progress}: {detail}; retry, and check \
         the registry and any proxy in between"
    )]
    Truncated {
        reference: String,
        what: String,
        /// How far the transfer got, such as `after 10 of 64 bytes`.
        progress: String,
        detail: String,
    },

    /// `passwordData` is not valid standard base64.
    #[error(
        "invalid credentials.passwordData for {reference}: not valid standard base64 with \
         padding; encode the password with `base64 -w0`"
    )]
    InvalidPasswordData { reference: String },

    /// `credentialsRef` names something other than a core `Secret`.
    #[error(
        "unsupported credentialsRef for {reference}: group `{group}` kind `{kind}`; only a \
         Secret in the core group (group \"\", kind Secret) is supported"
    )]
    UnsupportedCredentialsRef {
        reference: String,
        group: String,
        kind: String,
    },

    /// `credentialsRef` is set but no secrets directory is configured.
    #[error(
        "credentialsRef {namespace}/{name} for {reference} cannot be resolved: \
         EDGEFN_SECRETS_DIR is not set; point it at a directory of Secret manifests"
    )]
    SecretsDirUnset {
        reference: String,
        namespace: String,
        name: String,
    },

    /// No manifest in the secrets directory is a Secret with this name and namespace.
    #[error(
        "secret {namespace}/{name} not found in {dir} (searched {files} *.yaml, *.yml and \
         *.json files) for {reference}; nothing was sent to the registry. Add the Secret \
         manifest or fix credentialsRef"
    )]
    SecretNotFound {
        reference: String,
        namespace: String,
        name: String,
        dir: PathBuf,
        files: usize,
    },

    /// The secrets directory cannot be listed.
    #[error("cannot list the secrets directory {dir}: {detail}; check EDGEFN_SECRETS_DIR")]
    SecretsDir { dir: PathBuf, detail: String },

    /// The Secret exists but cannot be used.
    #[error(
        "secret {namespace}/{name} in {file} cannot be used for {reference}: {reason}; use a \
         Secret of type kubernetes.io/dockerconfigjson or kubernetes.io/basic-auth"
    )]
    InvalidSecret {
        reference: String,
        namespace: String,
        name: String,
        file: PathBuf,
        reason: String,
    },

    /// A file given to `push` cannot be read or is not a shared library.
    #[error("cannot push {path}: {reason}")]
    InvalidPushFile { path: PathBuf, reason: String },

    /// Any other failure of the registry client.
    #[error("request for {reference} to {registry} failed: {detail}")]
    Request {
        reference: String,
        registry: String,
        detail: String,
    },
}

impl OciError {
    /// Reports whether the registry was unreachable or failing (connection failure, timeout,
    /// cut-off transfer, 5xx or 429), so that the artifact last pulled for a tag may stand in.
    /// Authentication, 404 and every verification failure give false.
    pub fn is_registry_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Unreachable { .. }
                | Self::Timeout { .. }
                | Self::Truncated { .. }
                | Self::ServerStatus { .. }
        )
    }
}
