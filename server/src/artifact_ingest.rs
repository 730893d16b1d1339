//! The ingest that fetches a revision's artifact with `edgefn-loader`, checks it, and keeps it
//! in the server's [`ArtifactStore`], so that `status.ref` can name it as `sha256:<hex>`.
//!
//! - `goPluginSource` (an http(s) URL or an OCI image, with the stored credentials): the
//!   bytes must pass [`edgefn_loader::check_go_plugin`], which accepts an ELF Go plugin for this
//!   host's platform with the ten exports Envoy's golang filter needs.
//! - `wasmSource` (an http(s) URL): the bytes must start with the WebAssembly module magic and
//!   version 1.
//! - `jsSource` is not supported and fails.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use edgefn_loader::{FetchOptions, Source};
use edgefn_proto::EdgeFunctionRevision;

use crate::artifacts::{ArtifactStore, REF_PREFIX};
use crate::ingest::{Ingest, IngestResult};

/// First bytes of a WebAssembly binary: `\0asm`.
const WASM_MAGIC: &[u8; 4] = b"\0asm";
/// Version field of a WebAssembly core module (1, little-endian).
const WASM_MODULE_VERSION: [u8; 4] = [1, 0, 0, 0];

/// Kind of artifact a revision names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ArtifactKind {
    GoPlugin,
    Wasm,
}

/// Ingest that downloads, checks and stores artifacts.
#[derive(Debug)]
pub struct ArtifactIngest {
    artifacts: Arc<ArtifactStore>,
    options: FetchOptions,
}

impl ArtifactIngest {
    /// Returns an ingest that stores into `artifacts` and fetches with `options` (size limit,
    /// timeout, CA file, secrets folder, insecure registries). `options.cache_dir` and
    /// `options.expected_sha256` are replaced for each revision.
    pub fn new(artifacts: Arc<ArtifactStore>, options: FetchOptions) -> Self {
        Self { artifacts, options }
    }

    async fn fetch_and_store(
        &self,
        revision: &EdgeFunctionRevision,
    ) -> Result<IngestResult, String> {
        let (source, kind) = artifact_source(revision)?;
        let origin = source.to_string();
        let mut options = self.options.clone();
        options.cache_dir = self.artifacts.fetch_cache_dir();
        options.expected_sha256 = revision
            .expected_sha256()
            .map_err(|error| format!("invalid {error}"))?
            .map(str::to_owned);

        let artifact = edgefn_loader::fetch(&source, &options)
            .await
            .map_err(|error| format!("fetching the artifact failed: {error}"))?;

        let artifacts = Arc::clone(&self.artifacts);
        let path = artifact.path.clone();
        let hex = artifact.sha256.clone();
        let checked = tokio::task::spawn_blocking(move || {
            check_artifact(kind, &path, &origin)?;
            artifacts
                .insert(&path, &hex)
                .map_err(|error| error.to_string())
        })
        .await
        .map_err(|error| format!("the artifact check stopped unexpectedly: {error}"))?;
        checked?;

        tracing::info!(
            name = %revision.metadata.name,
            source = %source,
            sha256 = %artifact.sha256,
            size = artifact.size,
            ?kind,
            "stored artifact"
        );
        Ok(IngestResult {
            artifact_ref: format!("{REF_PREFIX}{}", artifact.sha256),
        })
    }
}

#[async_trait]
impl Ingest for ArtifactIngest {
    async fn ingest(&self, revision: &EdgeFunctionRevision) -> Result<IngestResult, String> {
        self.fetch_and_store(revision).await
    }
}

/// Returns where the revision's artifact comes from, and what it must be.
fn artifact_source(revision: &EdgeFunctionRevision) -> Result<(Source, ArtifactKind), String> {
    let code = &revision.spec.code;
    if let Some(go) = &code.go_plugin_source {
        let source = match (&go.url, &go.oci) {
            (Some(url), _) => Source::Url(remote_url(url, "spec.code.goPluginSource.url")?),
            (None, Some(oci)) => Source::Oci(edgefn_loader::OciSource::from(oci)),
            (None, None) => {
                return Err(
                    "spec.code.goPluginSource has neither url nor oci; set one of them".to_owned(),
                )
            }
        };
        return Ok((source, ArtifactKind::GoPlugin));
    }
    if let Some(wasm) = &code.wasm_source {
        let url = remote_url(&wasm.url, "spec.code.wasmSource.url")?;
        return Ok((Source::Url(url), ArtifactKind::Wasm));
    }
    if code.js_source.is_some() {
        return Err(
            "spec.code.jsSource is not supported by this server's ingest: it stores Go plugins \
             and WebAssembly modules only; use goPluginSource or wasmSource"
                .to_owned(),
        );
    }
    Err("spec.code names no source; set goPluginSource or wasmSource".to_owned())
}

/// Accepts an http or https URL. Local paths and `file:` URLs are refused, because any client
/// of the API could otherwise make the server read and serve files from its own disk.
fn remote_url(url: &str, field: &str) -> Result<String, String> {
    let lower = url.trim().to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        Ok(url.trim().to_owned())
    } else {
        Err(format!(
            "{field} {url:?} is not an http:// or https:// URL; the server fetches artifacts \
             over HTTP(S) or from OCI registries only, never from its own disk"
        ))
    }
}

/// Checks the fetched file at `path`. `origin` is the source URL or image, for the error.
fn check_artifact(kind: ArtifactKind, path: &Path, origin: &str) -> Result<(), String> {
    match kind {
        ArtifactKind::GoPlugin => edgefn_loader::check_go_plugin(path)
            .map(|_| ())
            .map_err(|error| format!("the artifact fetched from {origin} was rejected: {error}")),
        ArtifactKind::Wasm => check_wasm_module(path)
            .map_err(|reason| format!("the artifact fetched from {origin} was rejected: {reason}")),
    }
}

/// Checks the WebAssembly magic and the core-module version of the file at `path`.
fn check_wasm_module(path: &Path) -> Result<(), String> {
    use std::io::Read as _;

    let mut header = [0u8; 8];
    let read = std::fs::File::open(path)
        .and_then(|file| file.take(8).read(&mut header))
        .map_err(|error| format!("reading {} failed: {error}", path.display()))?;
    let header = &header[..read];
    if header.len() < 8 || &header[..4] != WASM_MAGIC {
        return Err(
            "it is not a WebAssembly binary (it does not start with \\0asm and a version); \
             build a .wasm module"
                .to_owned(),
        );
    }
    if header[4..8] != WASM_MODULE_VERSION {
        return Err(format!(
            "it is a WebAssembly binary with version bytes {:02x?}, not a core module (version \
             1); a component or another version cannot run, so build a core module",
            &header[4..8]
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wasm_file(bytes: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("module.wasm");
        std::fs::write(&path, bytes).unwrap();
        (dir, path)
    }

    #[test]
    fn wasm_check_accepts_core_module() {
        let (_dir, path) = wasm_file(b"\0asm\x01\0\0\0\x01\x04");
        assert_eq!(check_wasm_module(&path), Ok(()));
    }

    #[test]
    fn wasm_check_rejects_component() {
        let (_dir, path) = wasm_file(b"\0asm\x0d\0\x01\0");
        let error = check_wasm_module(&path).unwrap_err();
        assert!(error.contains("not a core module"), "{error}");
    }

    #[test]
    fn wasm_check_rejects_other_bytes() {
        let (_dir, path) = wasm_file(b"\x7fELF\x02\x01\x01\0");
        let error = check_wasm_module(&path).unwrap_err();
        assert!(error.contains("not a WebAssembly binary"), "{error}");
    }

    #[test]
    fn wasm_check_rejects_short_file() {
        let (_dir, path) = wasm_file(b"\0asm");
        let error = check_wasm_module(&path).unwrap_err();
        assert!(error.contains("not a WebAssembly binary"), "{error}");
    }

    #[test]
    fn local_paths_are_refused() {
        for url in ["/etc/passwd", "file:///etc/passwd", "ftp://example.test/x"] {
            let error = remote_url(url, "spec.code.goPluginSource.url").unwrap_err();
            assert!(
                error.contains("not an http:// or https:// URL"),
                "{url}: {error}"
            );
        }
    }
}
