//! The content-addressed artifact cache.
//!
//! Layout under the cache directory:
//! - `sha256/<hex>`: an artifact, named by the SHA-256 of its bytes;
//! - `urls/<sha256 of the URL>`: the hex digest last fetched from that URL, used when the
//!   server is unavailable;
//! - `sha256/.tmp-*`, `urls/.tmp-*`: files being written. They are synced and then renamed
//!   into place, so a final name never shows a partly written file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use tracing::{debug, warn};

use crate::digest::{finish_hex, is_sha256_hex, sha256_hex};
use crate::error::FetchError;

/// Prefix of temporary files. A final name is 64 hex digits, so the two never collide.
const TEMP_PREFIX: &str = ".tmp-";

/// Age after which a temporary file is taken to be left over from a crashed process.
const STALE_TEMP_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// Maximum number of directory entries examined when removing stale temporary files.
const MAX_SWEEP_ENTRIES: usize = 10_000;

/// Maximum number of attempts to find an unused temporary file name.
const MAX_TEMP_ATTEMPTS: u32 = 16;

/// Sequence number that keeps temporary names unique within this process.
static TEMP_SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// An opened cache directory.
///
/// NOTE: nothing removes old artifacts. The cache grows by one file per distinct artifact
/// until an operator deletes files, which is safe while no fetch is running.
#[derive(Debug)]
pub(crate) struct Cache {
    blobs: PathBuf,
    urls: PathBuf,
}

impl Cache {
    /// Creates the cache directories if needed and removes stale temporary files.
    pub(crate) fn open(root: &Path) -> Result<Self, FetchError> {
        let cache = Self {
            blobs: root.join("sha256"),
            urls: root.join("urls"),
        };
        create_private_dir(&cache.blobs)?;
        create_private_dir(&cache.urls)?;

        remove_stale_temps(&cache.blobs);
        remove_stale_temps(&cache.urls);
        Ok(cache)
    }

    /// Returns the path of the artifact with this digest, whether or not it exists.
    pub(crate) fn blob_path(&self, sha256: &str) -> PathBuf {
        self.blobs.join(sha256)
    }

    /// Returns the size of the cached artifact with this digest after hashing it again.
    ///
    /// A file whose bytes no longer match its name (disk corruption, tampering) is removed with
    /// a warning and reported as absent, so it is fetched again and never loaded.
    pub(crate) fn lookup(&self, sha256: &str) -> Result<Option<u64>, FetchError> {
        let path = self.blob_path(sha256);
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(cache_io("open", &path, error)),
        };

        let mut hasher = Sha256::new();
        let size = io::copy(&mut file, &mut hasher).map_err(|e| cache_io("read", &path, e))?;
        let actual = finish_hex(hasher);
        if actual == sha256 {
            return Ok(Some(size));
        }

        warn!(
            path = %path.display(),
            actual = %actual,
            "removing a cached artifact whose bytes do not match its digest"
        );
        fs::remove_file(&path).map_err(|e| cache_io("remove", &path, e))?;
        Ok(None)
    }

    /// Creates a temporary file next to the artifacts, to be filled and then committed.
    pub(crate) fn create_temp(&self) -> Result<TempFile, FetchError> {
        TempFile::create_in(&self.blobs)
    }

    /// Stores `sha256` as the digest last fetched from `url`.
    pub(crate) fn record_url(&self, url: &str, sha256: &str) -> Result<(), FetchError> {
        let mut temp = TempFile::create_in(&self.urls)?;
        temp.write(format!("{sha256}\n").as_bytes())?;
        temp.persist(&self.url_record_path(url))
    }

    /// Returns the digest last fetched from `url`, if one was recorded and is well formed.
    pub(crate) fn last_digest(&self, url: &str) -> Option<String> {
        let path = self.url_record_path(url);
        let mut text = String::new();
        let read = File::open(&path).and_then(|file| file.take(256).read_to_string(&mut text));
        match read {
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => return None,
            Err(error) => {
                warn!(path = %path.display(), %error, "cannot read the URL record");
                return None;
            }
        }

        let digest = text.trim();
        if is_sha256_hex(digest) {
            Some(digest.to_owned())
        } else {
            warn!(path = %path.display(), "ignoring a malformed URL record");
            None
        }
    }

    fn url_record_path(&self, url: &str) -> PathBuf {
        self.urls.join(sha256_hex(url.as_bytes()))
    }
}

/// A file being written in a cache directory. Dropping it before a commit removes the file.
#[derive(Debug)]
pub(crate) struct TempFile {
    dir: PathBuf,
    path: PathBuf,
    file: Option<File>,
    hasher: Sha256,
    size: u64,
}

impl TempFile {
    fn create_in(dir: &Path) -> Result<Self, FetchError> {
        let mut last_error = None;
        for _ in 0..MAX_TEMP_ATTEMPTS {
            let path = dir.join(temp_name());
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => {
                    return Ok(Self {
                        dir: dir.to_owned(),
                        path,
                        file: Some(file),
                        hasher: Sha256::new(),
                        size: 0,
                    });
                }
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                    last_error = Some(error);
                }
                Err(error) => return Err(cache_io("create", &path, error)),
            }
        }
        let error = last_error.unwrap_or_else(|| io::Error::other("no attempt was made"));
        Err(cache_io("create a temporary file in", dir, error))
    }

    /// Appends `bytes` and adds them to the running digest.
    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<(), FetchError> {
        let Some(file) = self.file.as_mut() else {
            return Err(cache_io("write", &self.path, closed_error()));
        };
        file.write_all(bytes)
            .map_err(|e| cache_io("write", &self.path, e))?;
        self.hasher.update(bytes);
        self.size += bytes.len() as u64;
        Ok(())
    }

    /// Returns the number of bytes written so far.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Checks the digest against `expected`, then syncs the file and renames it to
    /// `<dir>/<digest>`. Returns the digest and the size.
    ///
    /// On a mismatch the temporary file is removed and nothing appears in the cache.
    pub(crate) fn commit_blob(
        mut self,
        expected: Option<&str>,
        location: &str,
    ) -> Result<(String, u64), FetchError> {
        let actual = finish_hex(std::mem::take(&mut self.hasher));
        if let Some(expected) = expected {
            if expected != actual {
                return Err(FetchError::DigestMismatch {
                    location: location.to_owned(),
                    expected: expected.to_owned(),
                    actual,
                });
            }
        }

        let size = self.size;
        let target = self.dir.join(&actual);
        self.persist(&target)?;
        Ok((actual, size))
    }

    /// Syncs the file, renames it to `target` and syncs the directory, so that after a crash
    /// `target` contains either the old or the complete new contents.
    fn persist(mut self, target: &Path) -> Result<(), FetchError> {
        let Some(file) = self.file.take() else {
            return Err(cache_io("sync", &self.path, closed_error()));
        };
        file.sync_all()
            .map_err(|e| cache_io("sync", &self.path, e))?;
        drop(file);

        fs::rename(&self.path, target).map_err(|e| cache_io("rename into place", target, e))?;
        // The file is now at `target`, so there is nothing left for `drop` to remove.
        self.path = PathBuf::new();

        let dir = File::open(&self.dir).map_err(|e| cache_io("open", &self.dir, e))?;
        dir.sync_all().map_err(|e| cache_io("sync", &self.dir, e))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.path.as_os_str().is_empty() {
            return;
        }
        self.file = None;
        if let Err(error) = fs::remove_file(&self.path) {
            warn!(path = %self.path.display(), %error, "cannot remove a temporary cache file");
        }
    }
}

fn temp_name() -> String {
    let sequence = TEMP_SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or(0);
    format!("{TEMP_PREFIX}{}-{sequence}-{nanos}", std::process::id())
}

fn closed_error() -> io::Error {
    io::Error::other("the temporary file was already closed")
}

/// Creates `dir` and its parents. New directories get mode 0700, because the default cache
/// directory is under the shared temporary directory.
/// Creates `dir` (mode 0700) if needed, then checks that it and its parent belong to this
/// process's user and are not writable by others. A cache another user can write would let
/// that user choose the code Envoy loads.
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), FetchError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|e| cache_io("create directory", dir, e))?;

    #[cfg(unix)]
    for checked in [Some(dir), dir.parent()].into_iter().flatten() {
        check_private_dir(checked)?;
    }
    Ok(())
}

#[cfg(unix)]
fn check_private_dir(dir: &Path) -> Result<(), FetchError> {
    use std::os::unix::fs::MetadataExt;

    let unsafe_dir = |reason: String| FetchError::UnsafeCacheDir {
        path: dir.to_owned(),
        reason,
    };
    let metadata = fs::symlink_metadata(dir).map_err(|e| cache_io("inspect", dir, e))?;
    // /proc/self belongs to the process's effective user.
    let user = fs::metadata("/proc/self")
        .map_err(|e| cache_io("inspect", Path::new("/proc/self"), e))?
        .uid();
    if !metadata.is_dir() {
        return Err(unsafe_dir(
            "it is not a directory (a symbolic link?)".to_owned(),
        ));
    }
    if metadata.uid() != user {
        return Err(unsafe_dir(format!(
            "it belongs to uid {}, not {user}",
            metadata.uid()
        )));
    }
    if metadata.mode() & 0o022 != 0 {
        return Err(unsafe_dir(format!(
            "its mode {:o} lets other users write it",
            metadata.mode() & 0o777
        )));
    }
    Ok(())
}

/// Removes temporary files older than `STALE_TEMP_AGE`, left by a process that died while
/// writing. Failures are logged and otherwise ignored: they cost only disk space.
fn remove_stale_temps(dir: &Path) {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) => {
            debug!(dir = %dir.display(), %error, "cannot list the cache directory");
            return;
        }
    };

    let now = SystemTime::now();
    for entry in entries.take(MAX_SWEEP_ENTRIES).flatten() {
        let is_temp = entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX);
        if !is_temp {
            continue;
        }
        let modified = entry.metadata().and_then(|metadata| metadata.modified());
        let is_stale = modified
            .ok()
            .and_then(|modified| now.duration_since(modified).ok())
            .is_some_and(|age| age > STALE_TEMP_AGE);
        if is_stale {
            let path = entry.path();
            match fs::remove_file(&path) {
                Ok(()) => debug!(path = %path.display(), "removed a stale temporary file"),
                Err(error) => warn!(path = %path.display(), %error, "cannot remove a stale file"),
            }
        }
    }
}

fn cache_io(action: &'static str, path: &Path, error: io::Error) -> FetchError {
    FetchError::CacheIo {
        action,
        path: path.to_owned(),
        error,
    }
}
