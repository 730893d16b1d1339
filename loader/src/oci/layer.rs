//! Finding the plugin library in a layer: raw bytes, or the one `.so` file of a tar or
//! tar+gzip layer, without writing any archive entry to disk.

use std::io::{self, Read};
use std::path::{Component, Path};

use oci_client::Reference;

use super::error::OciError;
use super::manifest::Descriptor;
use super::CONTENT_MEDIA_TYPE;

/// Annotation that names the file a layer was pushed from (ORAS sets it).
const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";

/// Maximum ratio of decompressed to compressed size of a layer, times the size limit. It bounds
/// the work spent on a gzip bomb. A container layer that expands past
/// `MAX_EXPANSION * size limit` is rejected.
const MAX_EXPANSION: u64 = 8;

const ELF_MAGIC: &[u8] = b"\x7fELF";
const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
/// `ustar` magic at offset 257 of a tar header, in both POSIX and GNU tar.
const TAR_MAGIC_OFFSET: usize = 257;
const TAR_MAGIC: &[u8] = b"ustar";

/// A file that may be the plugin library.
pub(crate) struct Candidate {
    /// Where it was found: the tar entry path, or the layer's title or digest.
    pub(crate) name: String,
    pub(crate) bytes: Vec<u8>,
}

/// Returns the first layer of the Apoxy content media type, which holds the raw library.
pub(crate) fn content_layer(layers: &[Descriptor]) -> Option<&Descriptor> {
    layers
        .iter()
        .find(|layer| layer.media_type == CONTENT_MEDIA_TYPE)
}

/// Returns the candidates in a layer whose bytes were already checked against its digest.
///
/// A layer that starts with the ELF magic is one raw candidate, as ORAS pushes files. A gzip
/// stream is decompressed, and a tar stream contributes its regular files named `*.so`. Any
/// other content contributes nothing.
pub(crate) fn candidates_in_layer(
    bytes: Vec<u8>,
    layer: &Descriptor,
    reference: &Reference,
    max_size: u64,
) -> Result<Vec<Candidate>, OciError> {
    if bytes.starts_with(ELF_MAGIC) {
        let name = layer
            .annotations
            .get(TITLE_ANNOTATION)
            .cloned()
            .unwrap_or_else(|| format!("layer {}", layer.digest));
        return Ok(vec![Candidate { name, bytes }]);
    }

    let context = ArchiveContext {
        reference,
        layer,
        max_size,
    };
    let limit = max_size.saturating_mul(MAX_EXPANSION);
    if bytes.starts_with(GZIP_MAGIC) {
        let decoder = flate2::read::MultiGzDecoder::new(bytes.as_slice());
        return context.scan_tar(LimitedReader::new(decoder, limit));
    }
    if is_tar(&bytes) {
        return context.scan_tar(LimitedReader::new(bytes.as_slice(), limit));
    }
    Ok(Vec::new())
}

fn is_tar(bytes: &[u8]) -> bool {
    bytes
        .get(TAR_MAGIC_OFFSET..TAR_MAGIC_OFFSET + TAR_MAGIC.len())
        .is_some_and(|magic| magic == TAR_MAGIC)
}

struct ArchiveContext<'a> {
    reference: &'a Reference,
    layer: &'a Descriptor,
    max_size: u64,
}

impl ArchiveContext<'_> {
    /// Reads every entry of a tar stream and returns its `*.so` regular files. Rejects the
    /// whole layer on an entry path that is absolute or contains `..`, and on a link named
    /// `*.so` or pointing at one.
    fn scan_tar<R: Read>(&self, reader: R) -> Result<Vec<Candidate>, OciError> {
        let mut archive = tar::Archive::new(reader);
        let entries = archive.entries().map_err(|error| self.invalid(&error))?;

        let mut candidates = Vec::new();
        for entry in entries {
            let mut entry = entry.map_err(|error| self.invalid(&error))?;
            let path = entry
                .path()
                .map_err(|error| self.invalid(&error))?
                .into_owned();
            let shown = path.display().to_string();
            if escapes_root(&path) {
                return Err(self.unsafe_entry(&shown, "the path is absolute or contains `..`"));
            }

            let entry_type = entry.header().entry_type();
            let is_link = entry_type.is_symlink() || entry_type.is_hard_link();
            let target_is_library = entry
                .link_name()
                .ok()
                .flatten()
                .is_some_and(|target| is_library_name(&target));
            if is_link && (is_library_name(&path) || target_is_library) {
                return Err(self.unsafe_entry(&shown, "a link cannot be the plugin library"));
            }
            if !entry_type.is_file() || !is_library_name(&path) || is_whiteout(&path) {
                continue;
            }

            let mut bytes = Vec::new();
            (&mut entry)
                .take(self.max_size.saturating_add(1))
                .read_to_end(&mut bytes)
                .map_err(|error| self.invalid(&error))?;
            if bytes.len() as u64 > self.max_size {
                return Err(OciError::TooLarge {
                    reference: self.reference.whole(),
                    what: format!("file {shown} in layer {}", self.layer.digest),
                    limit: self.max_size,
                    observed: "the file passed the limit while being extracted".to_owned(),
                });
            }
            candidates.push(Candidate { name: shown, bytes });
        }
        Ok(candidates)
    }

    fn invalid(&self, error: &io::Error) -> OciError {
        OciError::InvalidArchive {
            reference: self.reference.whole(),
            digest: self.layer.digest.clone(),
            media_type: self.layer.media_type.clone(),
            detail: error.to_string(),
        }
    }

    fn unsafe_entry(&self, entry: &str, reason: &str) -> OciError {
        OciError::UnsafeArchiveEntry {
            reference: self.reference.whole(),
            digest: self.layer.digest.clone(),
            media_type: self.layer.media_type.clone(),
            entry: entry.to_owned(),
            reason: reason.to_owned(),
        }
    }
}

fn escapes_root(path: &Path) -> bool {
    path.components().any(|component| {
        matches!(
            component,
            Component::ParentDir | Component::RootDir | Component::Prefix(_)
        )
    })
}

fn is_library_name(path: &Path) -> bool {
    path.extension().is_some_and(|extension| extension == "so")
}

/// Reports whether `path` is an overlay whiteout (`.wh.<name>`), which deletes a file of a
/// lower layer and holds no data.
fn is_whiteout(path: &Path) -> bool {
    path.file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| name.starts_with(".wh."))
}

/// A reader that fails once more than `limit` bytes were read.
struct LimitedReader<R> {
    inner: R,
    remaining: u64,
}

impl<R> LimitedReader<R> {
    fn new(inner: R, limit: u64) -> Self {
        Self {
            inner,
            remaining: limit,
        }
    }
}

impl<R: Read> Read for LimitedReader<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buffer)?;
        self.remaining = self
            .remaining
            .checked_sub(read as u64)
            .ok_or_else(|| io::Error::other("the layer expands past the decompression limit"))?;
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference() -> Reference {
        "127.0.0.1:5000/a/b:v1".parse().expect("valid reference")
    }

    fn layer() -> Descriptor {
        Descriptor {
            media_type: "application/vnd.oci.image.layer.v1.tar".to_owned(),
            digest: format!("sha256:{}", "2".repeat(64)),
            size: 0,
            platform: None,
            annotations: Default::default(),
        }
    }

    #[test]
    fn escapes_root_detects_parent_and_absolute() {
        assert!(escapes_root(Path::new("../etc/x.so")));
        assert!(escapes_root(Path::new("/x.so")));
        assert!(escapes_root(Path::new("a/../../x.so")));
        assert!(!escapes_root(Path::new("./a/x.so")));
    }

    #[test]
    fn raw_elf_layer_is_one_candidate() {
        let found = candidates_in_layer(b"\x7fELF rest".to_vec(), &layer(), &reference(), 100)
            .unwrap_or_default();
        assert_eq!(found.len(), 1);
    }

    #[test]
    fn other_content_has_no_candidate() {
        let found = candidates_in_layer(b"{}".to_vec(), &layer(), &reference(), 100)
            .map(|found| found.len());
        assert_eq!(found.ok(), Some(0));
    }

    #[test]
    fn limited_reader_fails_past_limit() {
        let mut reader = LimitedReader::new(&[0_u8; 10][..], 5);
        let mut sink = Vec::new();
        assert!(reader.read_to_end(&mut sink).is_err());
    }
}
