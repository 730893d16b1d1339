//! Small files under `<cache>/oci/` that remember what was pulled:
//! - `tags/<sha256 of the reference>`: the manifest digest a tag pointed to at its last pull;
//! - `manifests/<manifest hex>`: the hex digest of the library that manifest yields;
//! - `layers/<layer hex>`: the hex digest of the library extracted from that archive layer.
//!
//! Each record contains one hex digest and a newline. It is written to a `.tmp-*` file, synced and
//! renamed into place, so a reader sees the old or the new record, never a partial one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::warn;

use crate::digest::{is_sha256_hex, sha256_hex};
use crate::error::FetchError;

/// Sequence number that keeps temporary names unique within this process.
static TEMP_SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// Maximum number of bytes read from one record.
const MAX_RECORD_SIZE: u64 = 256;

/// The record directories of one cache.
#[derive(Debug)]
pub(crate) struct Records {
    tags: PathBuf,
    manifests: PathBuf,
    layers: PathBuf,
}

impl Records {
    /// Creates the record directories under `<cache_dir>/oci` if needed.
    pub(crate) fn open(cache_dir: &Path) -> Result<Self, FetchError> {
        let root = cache_dir.join("oci");
        let records = Self {
            tags: root.join("tags"),
            manifests: root.join("manifests"),
            layers: root.join("layers"),
        };
        for dir in [&records.tags, &records.manifests, &records.layers] {
            crate::cache::create_private_dir(dir)?;
        }
        Ok(records)
    }

    /// Returns the manifest digest (hex) recorded for a tagged reference such as
    /// `registry/repo:tag`.
    pub(crate) fn tag(&self, reference: &str) -> Option<String> {
        read_record(&self.tags.join(sha256_hex(reference.as_bytes())))
    }

    pub(crate) fn set_tag(&self, reference: &str, manifest_hex: &str) {
        let path = self.tags.join(sha256_hex(reference.as_bytes()));
        write_logged(&self.tags, &path, manifest_hex);
    }

    /// Returns the library digest (hex) recorded for a manifest digest (hex).
    pub(crate) fn manifest(&self, manifest_hex: &str) -> Option<String> {
        read_record(&self.manifests.join(manifest_hex))
    }

    pub(crate) fn set_manifest(&self, manifest_hex: &str, library_hex: &str) {
        write_logged(
            &self.manifests,
            &self.manifests.join(manifest_hex),
            library_hex,
        );
    }

    /// Returns the library digest (hex) recorded for an archive layer digest (hex).
    pub(crate) fn layer(&self, layer_hex: &str) -> Option<String> {
        read_record(&self.layers.join(layer_hex))
    }

    pub(crate) fn set_layer(&self, layer_hex: &str, library_hex: &str) {
        write_logged(&self.layers, &self.layers.join(layer_hex), library_hex);
    }
}

/// Reads a record. A missing, unreadable or malformed record reads as absent, because records
/// only save requests and every digest they name is checked again before use.
fn read_record(path: &Path) -> Option<String> {
    let mut text = String::new();
    let read =
        File::open(path).and_then(|file| file.take(MAX_RECORD_SIZE).read_to_string(&mut text));
    match read {
        Ok(_) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => return None,
        Err(error) => {
            warn!(path = %path.display(), %error, "cannot read an OCI cache record");
            return None;
        }
    }

    let digest = text.trim();
    if is_sha256_hex(digest) {
        Some(digest.to_owned())
    } else {
        warn!(path = %path.display(), "ignoring a malformed OCI cache record");
        None
    }
}

/// Writes a record. A failure costs only a later request or the offline fallback, so it is
/// logged and not returned.
fn write_logged(dir: &Path, path: &Path, digest: &str) {
    if let Err(error) = write_record(dir, path, digest) {
        warn!(path = %path.display(), %error, "cannot write an OCI cache record");
    }
}

fn write_record(dir: &Path, path: &Path, digest: &str) -> io::Result<()> {
    let sequence = TEMP_SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let temp = dir.join(format!(".tmp-{}-{sequence}", std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        file.write_all(format!("{digest}\n").as_bytes())?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}
