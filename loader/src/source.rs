//! The origin of a plugin artifact, and the parsing and display of its location.

use std::fmt;
use std::path::{Path, PathBuf};

use reqwest::Url;

use crate::error::FetchError;
use crate::oci::OciSource;

/// The origin of a plugin artifact.
///
/// More kinds of origin may be added as further variants, so matches outside this crate need
/// a wildcard arm.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Source {
    /// `file:///abs/path`, a plain absolute path, or an `http://` or `https://` URL.
    Url(String),
    /// An image in an OCI registry.
    Oci(OciSource),
}

impl fmt::Display for Source {
    /// Shows the source without user information or query string, so that it can be logged.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Url(url) => match Url::parse(url) {
                Ok(parsed) if parsed.scheme() != "file" => f.write_str(&redact_url(&parsed)),
                _ => f.write_str(url),
            },
            Self::Oci(oci) => oci.fmt(f),
        }
    }
}

/// A parsed URL source.
#[derive(Debug)]
pub(crate) enum Location {
    File(PathBuf),
    Http(Url),
}

/// Parses the URL forms that `Source::Url` accepts.
pub(crate) fn parse_location(url: &str) -> Result<Location, FetchError> {
    let invalid = |reason: &str| FetchError::InvalidSource {
        location: url.to_owned(),
        reason: reason.to_owned(),
    };

    if url.starts_with('/') {
        return Ok(Location::File(PathBuf::from(url)));
    }

    let parsed = Url::parse(url).map_err(|error| invalid(&format!("not a URL ({error})")))?;
    match parsed.scheme() {
        "http" | "https" => {
            if parsed.host_str().is_none_or(str::is_empty) {
                return Err(invalid("the URL has no host"));
            }
            Ok(Location::Http(parsed))
        }
        "file" => {
            if parsed
                .host_str()
                .is_some_and(|host| !host.is_empty() && host != "localhost")
            {
                return Err(invalid(
                    "a file URL must name a local path, as file:///abs/path",
                ));
            }
            let path = parsed
                .to_file_path()
                .map_err(|()| invalid("the file URL does not hold an absolute path"))?;
            Ok(Location::File(path))
        }
        other => Err(invalid(&format!("unsupported scheme `{other}`"))),
    }
}

impl Location {
    /// Returns the location as it may appear in logs and error messages.
    pub(crate) fn display(&self) -> String {
        match self {
            Self::File(path) => path_display(path),
            Self::Http(url) => redact_url(url),
        }
    }
}

/// Returns `path` for a message.
pub(crate) fn path_display(path: &Path) -> String {
    path.display().to_string()
}

/// Returns `url` without user information and with any query string replaced by `?…`, since
/// both often carry credentials (basic auth, signed-URL tokens).
pub(crate) fn redact_url(url: &Url) -> String {
    let mut shown = url.clone();
    // Both setters fail only for URLs that cannot have credentials; nothing to remove then.
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_fragment(None);
    let had_query = shown.query().is_some();
    shown.set_query(None);

    let mut text = shown.to_string();
    if had_query {
        text.push_str("?…");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_accepts_plain_absolute_path() {
        let location = parse_location("/srv/plugins/a.so");
        assert!(
            matches!(location, Ok(Location::File(path)) if path == Path::new("/srv/plugins/a.so"))
        );
    }

    #[test]
    fn location_decodes_file_url() {
        let location = parse_location("file:///srv/my%20plugins/a.so");
        let expected = Path::new("/srv/my plugins/a.so");
        assert!(matches!(location, Ok(Location::File(path)) if path == expected));
    }

    #[test]
    fn location_rejects_unsupported_forms() {
        let cases = [
            "plugins/a.so",
            "ftp://example.com/a.so",
            "file://otherhost/a.so",
            "http://",
            "",
        ];
        for case in cases {
            let location = parse_location(case);
            assert!(
                matches!(location, Err(FetchError::InvalidSource { .. })),
                "{case:?} gave {location:?}"
            );
        }
    }

    #[test]
    fn redact_url_removes_credentials_and_query() {
        let url =
            Url::parse("https://user:secret@example.com/a.so?token=abc#x").expect("valid URL");
        assert_eq!(redact_url(&url), "https://example.com/a.so?…");
    }

    #[test]
    fn source_display_is_redacted() {
        let source = Source::Url("https://user:secret@example.com/a.so".to_owned());
        assert_eq!(source.to_string(), "https://example.com/a.so");
    }
}
