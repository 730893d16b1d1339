//! Fetching an artifact into the content-addressed cache, with pinning and fallback.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tracing::{debug, info, warn};

use crate::cache::{Cache, TempFile};
use crate::digest::parse_expected_sha256;
use crate::error::{FetchError, LoadError};
use crate::http;
use crate::oci::{INSECURE_REGISTRIES_ENV, SECRETS_DIR_ENV};
use crate::source::{parse_location, path_display, Location, Source};

/// Default size limit: 50 MiB. A Go filter plugin is typically 5 to 30 MiB.
pub const DEFAULT_MAX_SIZE: u64 = 50 * 1024 * 1024;

/// Default timeout for one fetch, connection and body included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Size of the buffer used to copy local files into the cache.
const COPY_BUFFER_SIZE: usize = 64 * 1024;

/// Settings for one fetch.
#[derive(Clone, Debug)]
pub struct FetchOptions {
    /// Maximum artifact size in bytes. A larger `Content-Length`, file or streamed body is an
    /// error, never a truncated artifact. Default: `DEFAULT_MAX_SIZE` (50 MiB).
    pub max_size: u64,

    /// Time limit for one HTTP fetch, covering connection, headers and the whole body.
    /// Default: `DEFAULT_TIMEOUT` (60 s). Local files are read without a limit.
    pub timeout: Duration,

    /// Root of the cache (`sha256/` and `urls/` below it). Default: `edgefn-cache` in the
    /// system temporary directory. Point it at persistent storage in production, because the
    /// fallback to the last good artifact only works while the cache survives.
    pub cache_dir: PathBuf,

    /// Pinned SHA-256 of the artifact: 64 lower-case hex digits, optionally prefixed with
    /// `sha256:`. With a pin, a cached artifact is used without any request, and bytes that do
    /// not match are never stored. Default: none.
    pub expected_sha256: Option<String>,

    /// PEM file with CA certificates trusted for https in addition to the system roots, for
    /// servers with a private CA. Default: none.
    pub extra_ca_file: Option<PathBuf>,

    /// Directory of Kubernetes Secret manifests (`*.yaml`, `*.yml`, `*.json`) that an OCI
    /// source's `credentialsRef` is looked up in. Default: `$EDGEFN_SECRETS_DIR`, else none.
    pub secrets_dir: Option<PathBuf>,

    /// OCI registries (`host:port`) reached over plain HTTP instead of https. Default: the
    /// comma-separated entries of `$EDGEFN_INSECURE_REGISTRIES`, checked when a pull starts.
    pub insecure_registries: Vec<String>,
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            max_size: DEFAULT_MAX_SIZE,
            timeout: DEFAULT_TIMEOUT,
            cache_dir: std::env::temp_dir().join("edgefn-cache"),
            expected_sha256: None,
            extra_ca_file: None,
            secrets_dir: std::env::var_os(SECRETS_DIR_ENV)
                .filter(|value| !value.is_empty())
                .map(PathBuf::from),
            insecure_registries: std::env::var(INSECURE_REGISTRIES_ENV)
                .map(|value| value.split(',').map(|e| e.trim().to_owned()).collect())
                .unwrap_or_default(),
        }
    }
}

/// A fetched artifact in the cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Artifact {
    /// Path of the artifact in the cache: `<cache_dir>/sha256/<sha256>`. Never rewritten with
    /// different bytes.
    pub path: PathBuf,
    /// Lower-case hex SHA-256 of the artifact's bytes.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// Origin the artifact was fetched from.
    pub source: Source,
}

/// Fetches `source` into the cache and returns the cached artifact.
///
/// Needs a Tokio runtime with the I/O and time drivers enabled. `fetch_blocking` brings its
/// own runtime.
pub async fn fetch(source: &Source, options: &FetchOptions) -> Result<Artifact, LoadError> {
    fetch_source(source, options).await.map_err(LoadError::from)
}

/// Fetches `source` into the cache on the calling thread, blocking until it is done.
///
/// Builds a private current-thread Tokio runtime for the call. When called from inside a Tokio
/// runtime, where blocking on a second runtime is not allowed, the work runs on a scoped
/// helper thread instead.
pub fn fetch_blocking(source: &Source, options: &FetchOptions) -> Result<Artifact, LoadError> {
    if tokio::runtime::Handle::try_current().is_err() {
        return run_on_private_runtime(source, options);
    }

    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("edgefn-fetch".to_owned())
            .spawn_scoped(scope, || run_on_private_runtime(source, options))
            .map_err(|error| runtime_error(&error))?;
        worker.join().unwrap_or_else(|_panic| {
            Err(LoadError::from(FetchError::Runtime {
                detail: "the fetch thread panicked".to_owned(),
            }))
        })
    })
}

fn run_on_private_runtime(source: &Source, options: &FetchOptions) -> Result<Artifact, LoadError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| runtime_error(&error))?;
    runtime.block_on(fetch(source, options))
}

fn runtime_error(error: &io::Error) -> LoadError {
    LoadError::from(FetchError::Runtime {
        detail: error.to_string(),
    })
}

async fn fetch_source(source: &Source, options: &FetchOptions) -> Result<Artifact, FetchError> {
    let url = match source {
        Source::Url(url) => url,
        Source::Oci(oci) => return crate::oci::fetch_oci(oci, options).await,
    };
    let location = parse_location(url)?;
    let expected = options
        .expected_sha256
        .as_deref()
        .map(parse_expected_sha256)
        .transpose()?;
    let shown = location.display();
    let cache = Cache::open(&options.cache_dir)?;

    // A pinned artifact that is already cached needs no request at all.
    if let Some(expected) = &expected {
        if let Some(size) = cache.lookup(expected)? {
            debug!(url = %shown, sha256 = %expected, "pinned artifact found in the cache");
            remember_url(&cache, &location, url, expected);
            return Ok(artifact(&cache, source, expected.clone(), size));
        }
    }

    let mut temp = cache.create_temp()?;
    let copied = match &location {
        Location::File(path) => copy_local_file(path, options, &mut temp),
        Location::Http(http_url) => http::download(http_url, options, &mut temp).await,
    };
    if let Err(error) = copied {
        drop(temp);
        return fall_back_to_last_digest(&cache, source, url, expected.as_deref(), error);
    }

    let (sha256, size) = temp.commit_blob(expected.as_deref(), &shown)?;
    info!(url = %shown, sha256 = %sha256, size, "fetched artifact");
    remember_url(&cache, &location, url, &sha256);
    Ok(artifact(&cache, source, sha256, size))
}

fn artifact(cache: &Cache, source: &Source, sha256: String, size: u64) -> Artifact {
    Artifact {
        path: cache.blob_path(&sha256),
        sha256,
        size,
        source: source.clone(),
    }
}

/// Records the digest fetched from an HTTP URL, for the fallback. A failure only costs the
/// fallback, so it is logged and not returned.
fn remember_url(cache: &Cache, location: &Location, url: &str, sha256: &str) {
    if let Location::Http(_) = location {
        if let Err(error) = cache.record_url(url, sha256) {
            warn!(url = %location.display(), %error, "cannot record the fetched digest");
        }
    }
}

/// Returns the artifact last fetched from `url` when `error` means the server is
/// unavailable, and `error` otherwise.
///
/// With a pin the fallback must carry the pinned digest, but that artifact would already have
/// been found in the cache, so a pinned fetch never falls back to different bytes.
fn fall_back_to_last_digest(
    cache: &Cache,
    source: &Source,
    url: &str,
    expected: Option<&str>,
    error: FetchError,
) -> Result<Artifact, FetchError> {
    if !error.is_server_unavailable() {
        return Err(error);
    }
    let Some(last) = cache.last_digest(url) else {
        return Err(error);
    };
    if expected.is_some_and(|expected| expected != last) {
        return Err(error);
    }

    let size = match cache.lookup(&last) {
        Ok(Some(size)) => size,
        Ok(None) => return Err(error),
        Err(lookup_error) => {
            warn!(url = %source, %lookup_error, "cannot read the last good artifact");
            return Err(error);
        }
    };
    warn!(
        url = %source,
        sha256 = %last,
        %error,
        "server unavailable; using the last artifact fetched from this URL"
    );
    Ok(artifact(cache, source, last, size))
}

/// Copies a local file into `temp`, enforcing the size limit.
fn copy_local_file(
    path: &Path,
    options: &FetchOptions,
    temp: &mut TempFile,
) -> Result<(), FetchError> {
    let shown = path_display(path);
    let read_error = |error: io::Error| {
        if error.kind() == io::ErrorKind::NotFound {
            FetchError::NotFound {
                location: shown.clone(),
                detail: "no such file".to_owned(),
            }
        } else {
            FetchError::ReadFile {
                path: path.to_owned(),
                error,
            }
        }
    };

    let file = File::open(path).map_err(read_error)?;
    let length = file.metadata().map_err(read_error)?.len();
    let too_large = |observed: String| FetchError::TooLarge {
        location: shown.clone(),
        limit: options.max_size,
        observed,
    };
    if length > options.max_size {
        return Err(too_large(format!("the file is {length} bytes")));
    }

    // Read one byte past the limit, so a file that grows while being copied is still caught.
    let mut reader = file.take(options.max_size.saturating_add(1));
    let mut buffer = vec![0_u8; COPY_BUFFER_SIZE];
    loop {
        let read = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(read_error(error)),
        };
        if temp.size().saturating_add(read as u64) > options.max_size {
            return Err(too_large(
                "the file grew past the limit while being copied".to_owned(),
            ));
        }
        temp.write(&buffer[..read])?;
    }
    Ok(())
}
