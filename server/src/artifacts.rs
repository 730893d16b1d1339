//! The server's content-addressed artifact store, and `GET /artifacts/sha256/{hex}`, which
//! serves its files to proxies so that they never need the original URL or registry
//! credentials.
//!
//! Layout under the store's root:
//!
//! - `sha256/<hex>`: artifacts that passed ingest's checks, named by the SHA-256 of their
//!   bytes. Only these are served.
//! - `fetch/`: the loader's download cache (`edgefn_loader::fetch`), where ingest fetches to.
//!   It also contains files that failed the checks, and is never served.

use std::io;
use std::path::{Path, PathBuf};

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use tokio::io::AsyncReadExt as _;

use crate::api::AppState;
use crate::status::ApiError;

/// Route of one artifact.
pub const ARTIFACT_ROUTE: &str = "/artifacts/sha256/{hex}";

/// Prefix of `status.ref` for an artifact in this store: `sha256:<hex>`.
pub const REF_PREFIX: &str = "sha256:";

/// Size of the chunks an artifact is streamed in.
const CHUNK_SIZE: usize = 64 * 1024;

/// Error of the store.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactStoreError {
    #[error(
        "creating the artifact folder {path} failed: {source}; check that the parent exists and \
         is writable"
    )]
    CreateFolder { path: PathBuf, source: io::Error },
    #[error(
        "storing artifact sha256:{hex} as {path} failed: {source}; check the free space and \
         permissions of the artifact folder"
    )]
    Store {
        hex: String,
        path: PathBuf,
        source: io::Error,
    },
}

/// Artifacts on the local disk, one file per SHA-256 digest.
#[derive(Debug)]
pub struct ArtifactStore {
    root: PathBuf,
}

impl ArtifactStore {
    /// Opens the store in `root`, creating its folders when they are missing.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, ArtifactStoreError> {
        let store = Self { root: root.into() };
        for folder in [store.root.join("sha256"), store.fetch_cache_dir()] {
            std::fs::create_dir_all(&folder).map_err(|source| {
                ArtifactStoreError::CreateFolder {
                    path: folder.clone(),
                    source,
                }
            })?;
        }
        Ok(store)
    }

    /// Returns the root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Returns the loader cache that ingest downloads into, before the checks.
    pub fn fetch_cache_dir(&self) -> PathBuf {
        self.root.join("fetch")
    }

    /// Returns the path of the artifact with digest `hex`, or `None` when `hex` is not 64
    /// lower-case hex digits.
    pub fn path(&self, hex: &str) -> Option<PathBuf> {
        is_sha256_hex(hex).then(|| self.root.join("sha256").join(hex))
    }

    /// Returns whether the artifact with digest `hex` is stored.
    pub fn contains(&self, hex: &str) -> bool {
        self.path(hex).is_some_and(|path| path.is_file())
    }

    /// Stores the checked file `source`, whose SHA-256 is `hex`, as `sha256/<hex>`.
    ///
    /// The file is hard-linked when `source` is on the same file system (the loader cache
    /// is), and copied through a temporary file and a rename otherwise, so a reader never sees
    /// a partial artifact. An artifact that is already stored is kept.
    pub fn insert(&self, source: &Path, hex: &str) -> Result<(), ArtifactStoreError> {
        let Some(target) = self.path(hex) else {
            return Err(ArtifactStoreError::Store {
                hex: hex.to_owned(),
                path: self.root.join("sha256"),
                source: io::Error::new(io::ErrorKind::InvalidInput, "not a SHA-256 hex digest"),
            });
        };
        if target.is_file() {
            return Ok(());
        }
        let error = |source| ArtifactStoreError::Store {
            hex: hex.to_owned(),
            path: target.clone(),
            source,
        };

        match std::fs::hard_link(source, &target) {
            Ok(()) => return Ok(()),
            Err(link_error) if link_error.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
            Err(link_error) => {
                tracing::debug!(
                    %hex,
                    error = %link_error,
                    "hard link failed; copying the artifact"
                );
            }
        }

        let temporary = target.with_extension(format!("tmp-{}", uuid::Uuid::new_v4()));
        let copied = std::fs::copy(source, &temporary)
            .and_then(|_| std::fs::File::open(&temporary)?.sync_all())
            .and_then(|()| std::fs::rename(&temporary, &target));
        if let Err(source) = copied {
            let _ = std::fs::remove_file(&temporary);
            return Err(error(source));
        }
        Ok(())
    }
}

/// Returns whether `text` is a SHA-256 digest in 64 lower-case hex digits.
pub fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
}

/// `GET /artifacts/sha256/{hex}`: the artifact's bytes as `application/octet-stream`.
pub async fn serve(
    State(state): State<AppState>,
    UrlPath(hex): UrlPath<String>,
) -> Result<Response, ApiError> {
    if !is_sha256_hex(&hex) {
        return Err(ApiError::bad_request(format!(
            "invalid artifact digest {hex:?}: expected 64 lower-case hex digits, as in the \
             sha256:<hex> of a revision's status.ref"
        )));
    }
    let not_found = || ApiError::ArtifactNotFound {
        digest: format!("{REF_PREFIX}{hex}"),
    };
    let path = state
        .artifacts
        .as_ref()
        .and_then(|artifacts| artifacts.path(&hex))
        .ok_or_else(not_found)?;

    let file = match tokio::fs::File::open(&path).await {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Err(not_found()),
        Err(error) => {
            return Err(ApiError::Internal {
                message: format!("opening artifact {} failed: {error}", path.display()),
            })
        }
    };
    let length = file
        .metadata()
        .await
        .map_err(|error| ApiError::Internal {
            message: format!(
                "reading the size of artifact {} failed: {error}",
                path.display()
            ),
        })?
        .len();

    let chunks = futures_util::stream::unfold(Some(file), move |file| async move {
        let mut file = file?;
        let mut buffer = vec![0; CHUNK_SIZE];
        match file.read(&mut buffer).await {
            Ok(0) => None,
            Ok(read) => {
                buffer.truncate(read);
                Some((Ok(Bytes::from(buffer)), Some(file)))
            }
            Err(error) => {
                tracing::warn!(%error, "reading an artifact while sending it failed");
                Some((Err(error), None))
            }
        }
    });
    let mut response = Response::new(Body::from_stream(chunks));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    // Content-addressed: the bytes behind one URL never change.
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn sha256_hex_accepts_lower_case_only() {
        assert!(is_sha256_hex(HEX));
        assert!(!is_sha256_hex(&HEX.to_uppercase()));
        assert!(!is_sha256_hex(&HEX[1..]));
        assert!(!is_sha256_hex("../../etc/passwd"));
    }

    #[test]
    fn insert_links_once_and_keeps_existing() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path().join("artifacts")).unwrap();
        let source = dir.path().join("source");
        std::fs::write(&source, b"first").unwrap();

        store.insert(&source, HEX).unwrap();
        std::fs::write(dir.path().join("other"), b"second").unwrap();
        store.insert(&dir.path().join("other"), HEX).unwrap();

        let stored = std::fs::read(store.path(HEX).unwrap()).unwrap();
        assert_eq!(stored, b"first");
        assert!(store.contains(HEX));
    }

    #[test]
    fn path_rejects_non_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path()).unwrap();
        assert_eq!(store.path("x"), None);
    }
}
