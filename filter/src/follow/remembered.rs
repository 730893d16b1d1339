//! The revision a filter last loaded from an API server, kept in the cache directory so that an
//! Envoy that starts while the server is unreachable serves it again.
//!
//! One file per server URL and selection: `<cache>/follow/<sha256 of both>.json`, holding the
//! revision object as the server returned it (so its `status.ref` names the artifact, which the
//! loader keeps as `<cache>/sha256/<hex>`). Files are written to a temporary name and renamed.

use std::io;
use std::path::{Path, PathBuf};

use edgefn_proto::EdgeFunctionRevision;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::settings::FollowSettings;

/// Folder under the cache directory.
const FOLDER: &str = "follow";

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    /// The server URL and the selection, for a person reading the file.
    api_server: String,
    selection: String,
    revision: EdgeFunctionRevision,
}

/// The remembered revision of one server URL and selection.
pub struct Remembered {
    path: PathBuf,
    api_server: String,
    selection: String,
}

impl Remembered {
    pub fn new(cache_dir: &Path, settings: &FollowSettings) -> Self {
        let selection = settings.selection.to_string();
        let key = Sha256::digest(format!("{}\n{selection}", settings.url));
        let name: String = key.iter().map(|byte| format!("{byte:02x}")).collect();
        Self {
            path: cache_dir.join(FOLDER).join(format!("{name}.json")),
            api_server: settings.url.clone(),
            selection,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Returns the remembered revision; `Ok(None)` when there is none.
    pub fn load(&self) -> io::Result<Option<EdgeFunctionRevision>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error),
        };
        let entry: Entry = serde_json::from_str(&text)
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
        Ok(Some(entry.revision))
    }

    /// Remembers `revision`, replacing the previous one.
    pub fn store(&self, revision: &EdgeFunctionRevision) -> io::Result<()> {
        let entry = Entry {
            api_server: self.api_server.clone(),
            selection: self.selection.clone(),
            revision: revision.clone(),
        };
        let text = serde_json::to_vec_pretty(&entry).map_err(io::Error::other)?;
        let folder = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(folder)?;

        let temporary = self
            .path
            .with_extension(format!("tmp-{}", std::process::id()));
        let written = std::fs::write(&temporary, &text)
            .and_then(|()| std::fs::File::open(&temporary)?.sync_all())
            .and_then(|()| std::fs::rename(&temporary, &self.path));
        if written.is_err() {
            let _ = std::fs::remove_file(&temporary);
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::follow::settings::Selection;

    fn settings(selection: Selection) -> FollowSettings {
        FollowSettings {
            url: "http://127.0.0.1:1".to_owned(),
            selection,
            fail_open: false,
        }
    }

    #[test]
    fn store_then_load() {
        let dir = tempfile::tempdir().unwrap();
        let remembered = Remembered::new(dir.path(), &settings(Selection::Name("a".to_owned())));
        let mut revision = EdgeFunctionRevision::default();
        revision.metadata.name = "a".to_owned();
        revision.status.artifact_ref = "sha256:00".to_owned();

        assert!(remembered.load().unwrap().is_none());
        remembered.store(&revision).unwrap();
        let loaded = remembered.load().unwrap().unwrap();

        assert_eq!(loaded.metadata.name, "a");
        assert_eq!(loaded.status.artifact_ref, "sha256:00");
    }

    #[test]
    fn selections_have_separate_files() {
        let dir = tempfile::tempdir().unwrap();
        let by_name = Remembered::new(dir.path(), &settings(Selection::Name("a".to_owned())));
        let by_labels = Remembered::new(dir.path(), &settings(Selection::Labels("a".to_owned())));
        assert_ne!(by_name.path(), by_labels.path());
    }
}
