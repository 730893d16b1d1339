//! Error types. Each message names the URL or file involved and what to do next.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Any failure of the loader: fetching, checking or opening a plugin library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// Fetching the artifact or storing it in the cache failed.
    #[error(transparent)]
    Fetch(#[from] FetchError),

    /// The file is not a Go filter plugin that this host can load.
    #[error(transparent)]
    Elf(#[from] ElfError),

    /// The dynamic linker or the loading policy rejected the library.
    #[error(transparent)]
    Open(#[from] OpenError),
}

/// A failure to fetch an artifact or to store it in the cache.
///
/// URLs in messages have their user information and query string removed, because those often
/// carry credentials.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The source is not an absolute path, a `file://` URL or an `http(s)://` URL.
    #[error(
        "invalid plugin source `{location}`: {reason}; use an absolute path, a file:/// URL, \
         or an http:// or https:// URL"
    )]
    InvalidSource { location: String, reason: String },

    /// The pinned digest is not 64 lower-case hex digits.
    #[error(
        "invalid expected sha256 `{value}`: {reason}; give 64 lower-case hex digits, \
         optionally prefixed with `sha256:`"
    )]
    InvalidSha256 { value: String, reason: String },

    /// The file does not exist, or the server returned 404.
    #[error("{location} was not found ({detail}); check the URL or path of the plugin or module")]
    NotFound { location: String, detail: String },

    /// The server returned a status other than 2xx or 404.
    #[error("{url} returned HTTP {status}, body: \"{body}\"; check the URL and the server's logs")]
    HttpStatus {
        url: String,
        status: u16,
        body: String,
    },

    /// The artifact is larger than the configured size limit.
    #[error(
        "{location} is larger than the size limit of {limit} bytes ({observed}); raise the \
         size limit or publish a smaller plugin"
    )]
    TooLarge {
        location: String,
        limit: u64,
        observed: String,
    },

    /// The request, including the whole body, did not finish within the timeout.
    #[error(
        "fetching {url} timed out after {timeout:?}; check that the server is reachable and \
         responsive, or raise the timeout"
    )]
    Timeout { url: String, timeout: Duration },

    /// No connection could be made: refused, reset, or the host name did not resolve.
    #[error(
        "connection to {url} failed: {detail}; check that the server is running and reachable"
    )]
    Connection { url: String, detail: String },

    /// The connection closed before the whole body arrived.
    #[error(
        "the response body from {url} ended after {received} bytes: {detail}; retry, and check \
         the server and any proxy between it and this host"
    )]
    IncompleteBody {
        url: String,
        received: u64,
        detail: String,
    },

    /// The TLS handshake failed, usually because the server's certificate is not trusted.
    #[error(
        "TLS handshake with {url} failed: {detail}; if the certificate is not trusted, add its \
         CA certificate to the system trust store or set the extra CA file option"
    )]
    Tls { url: String, detail: String },

    /// The bytes do not match the pinned digest. Nothing was stored in the cache.
    #[error(
        "sha256 mismatch for {location}: expected {expected}, got {actual}; nothing was cached. \
         Update the pin only if you trust the new bytes"
    )]
    DigestMismatch {
        location: String,
        expected: String,
        actual: String,
    },

    /// Creating, writing, syncing or renaming a file in the cache directory failed.
    #[error(
        "cache I/O failed: cannot {action} {path}: {error}; check that the cache directory is \
         writable and has free space"
    )]
    CacheIo {
        action: &'static str,
        path: PathBuf,
        error: io::Error,
    },

    /// The cache directory could be changed by another user.
    #[error(
        "cache directory {path} is unsafe: {reason}; use a directory that belongs to this user \
         and that other users cannot write (set EDGEFN_CACHE_DIR)"
    )]
    UnsafeCacheDir { path: PathBuf, reason: String },

    /// A local source file exists but cannot be read.
    #[error("cannot read {path}: {error}; check the path and its permissions")]
    ReadFile { path: PathBuf, error: io::Error },

    /// The extra CA file cannot be read or contains no certificate.
    #[error(
        "invalid extra CA file {path}: {detail}; give a PEM file with one or more CERTIFICATE \
         blocks"
    )]
    ExtraCa { path: PathBuf, detail: String },

    /// Any other failure of the HTTP client, such as a redirect loop or an invalid response.
    #[error("request to {url} failed: {detail}")]
    Request { url: String, detail: String },

    /// Pulling from an OCI registry, or resolving its credentials, failed. Boxed because the
    /// OCI errors carry more fields than the others.
    #[error(transparent)]
    Oci(#[from] Box<crate::oci::OciError>),

    /// The private runtime for a blocking fetch could not be started.
    #[error("cannot start the runtime for a blocking fetch: {detail}")]
    Runtime { detail: String },
}

impl FetchError {
    /// Reports whether the failure means that the server was unreachable or failing (connection
    /// failure, timeout, cut-off body or a 5xx status), so that a previously fetched artifact
    /// may stand in. Statuses such as 404 or 403 and every verification failure give false.
    pub fn is_server_unavailable(&self) -> bool {
        match self {
            Self::Connection { .. } | Self::Timeout { .. } | Self::IncompleteBody { .. } => true,
            Self::HttpStatus { status, .. } => (500..600).contains(status),
            Self::Oci(error) => error.is_registry_unavailable(),
            _ => false,
        }
    }
}

impl From<crate::oci::OciError> for FetchError {
    fn from(error: crate::oci::OciError) -> Self {
        Self::Oci(Box::new(error))
    }
}

/// A reason why a file is not a Go filter plugin that this host can load.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ElfError {
    /// The plugin file cannot be read.
    #[error("cannot read plugin file {path}: {error}; check the path and its permissions")]
    Read { path: PathBuf, error: io::Error },

    /// The file has no bytes.
    #[error("plugin file {path} is empty; fetch or build it again")]
    Empty { path: PathBuf },

    /// The file does not start with the ELF magic bytes.
    #[error(
        "plugin file {path} is not an ELF file: it starts with {magic}; edgefn loads Linux \
         shared libraries built with `go build -buildmode=c-shared`"
    )]
    NotElf { path: PathBuf, magic: String },

    /// The file ends before the data that its ELF headers describe.
    #[error("plugin file {path} is a truncated ELF file: {detail}; fetch or copy it again")]
    Truncated { path: PathBuf, detail: String },

    /// The ELF class (32 or 64 bit) or byte order differs from this host's.
    #[error(
        "plugin file {path} is a {found} ELF file, but this host needs {expected}; build the \
         plugin for this host's platform"
    )]
    WrongClass {
        path: PathBuf,
        found: String,
        expected: String,
    },

    /// The ELF machine differs from this host's.
    #[error(
        "plugin file {path} is built for {found}, but this host is {expected}; build the plugin \
         with GOARCH set for this host"
    )]
    WrongMachine {
        path: PathBuf,
        found: String,
        expected: String,
    },

    /// The ELF type is not `ET_DYN`.
    #[error(
        "plugin file {path} is {found}, not a shared library; build it with \
         `go build -buildmode=c-shared`"
    )]
    NotSharedObject { path: PathBuf, found: String },

    /// The shared library lacks exports that Envoy's golang filter requires.
    #[error(
        "plugin file {path} is a shared library but not a Go filter plugin: it does not export \
         {}; build it with Envoy's Go SDK and `go build -buildmode=c-shared`",
        .missing.join(", ")
    )]
    NotGoPlugin { path: PathBuf, missing: Vec<String> },

    /// The ELF headers are inconsistent in a way that truncation does not explain.
    #[error("plugin file {path} is a malformed ELF file: {detail}; rebuild it")]
    Malformed { path: PathBuf, detail: String },
}

/// A failure to open a checked plugin library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The library imports `envoyGo*` callbacks that the host did not declare as defined.
    #[error(
        "plugin file {path} imports host callbacks that edgefn does not define: {}; build the \
         plugin against the Envoy Go SDK version that edgefn supports",
        .missing.join(", ")
    )]
    MissingHostCallbacks { path: PathBuf, missing: Vec<String> },

    /// `dlopen` failed; `message` is the dynamic linker's own text.
    #[error(
        "dlopen of plugin file {path} failed: {message}; if it names a missing symbol version \
         such as GLIBC_2.34, build the plugin against an older glibc or run a newer host"
    )]
    DlOpen { path: PathBuf, message: String },

    /// `dlsym` did not find an export that the ELF check had found.
    #[error("symbol {symbol} of plugin file {path} cannot be resolved: {message}")]
    MissingSymbol {
        path: PathBuf,
        symbol: &'static str,
        message: String,
    },

    /// A second, distinct Go library was requested under `SecondRuntimePolicy::Refuse`.
    #[error(
        "this process already runs the Go plugin library {}; a second Go runtime is refused by \
         policy for {requested} ({path}), because Go does not support two Go runtimes in one \
         process; set EDGEFN_GO_LIBRARIES=multiple to allow it",
        .loaded.join(", ")
    )]
    SecondRuntimeRefused {
        loaded: Vec<String>,
        requested: String,
        path: PathBuf,
    },

    /// `EDGEFN_GO_LIBRARIES` contains a value other than `single` or `multiple`.
    #[error("invalid value `{value}` for EDGEFN_GO_LIBRARIES; expected `single` or `multiple`")]
    InvalidPolicy { value: String },
}
