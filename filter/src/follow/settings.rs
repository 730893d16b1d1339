//! The `apiServer` form of the filter config:
//!
//! ```yaml
//! apiServer:
//!   url: http://127.0.0.1:8080      # base URL of an edgefn-server
//!   revision: add-header-v1         # one revision by name, or
//!   labelSelector: app=demo         # the newest Ready revision among those with these labels
//!   failOpen: false                 # with no revision loaded: 503 (false) or pass through
//! ```

use serde::Deserialize;
use thiserror::Error;

/// Top-level key that selects this form.
pub const API_SERVER_KEY: &str = "apiServer";

/// Error in an `apiServer` filter config. Each message names the field.
#[derive(Debug, Error)]
pub enum SettingsError {
    #[error(
        "cannot read it as JSON or YAML: {0}; expected apiServer with url and revision or \
         labelSelector"
    )]
    Syntax(String),
    #[error("invalid apiServer.url {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("apiServer needs exactly one of revision and labelSelector, found {found}")]
    Selection { found: &'static str },
    #[error("apiServer.{field} is empty; set it or remove it")]
    Empty { field: &'static str },
    #[error("cannot start following {url}: {detail}")]
    Start { url: String, detail: String },
}

/// The revision a filter runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    /// The revision with this `metadata.name`.
    Name(String),
    /// The newest Ready revision among those this label selector matches.
    Labels(String),
}

impl Selection {
    /// Returns the selection as the query parameter of a list or watch.
    pub fn query_pair(&self) -> (&'static str, String) {
        match self {
            Self::Name(name) => ("fieldSelector", format!("metadata.name={name}")),
            Self::Labels(selector) => ("labelSelector", selector.clone()),
        }
    }
}

impl std::fmt::Display for Selection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Name(name) => write!(f, "revision={name}"),
            Self::Labels(selector) => write!(f, "labelSelector={selector}"),
        }
    }
}

/// A checked `apiServer` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FollowSettings {
    /// Base URL of the server, without a trailing `/`.
    pub url: String,
    pub selection: Selection,
    /// With no revision loaded, pass requests through (true) instead of replying 503.
    pub fail_open: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Document {
    api_server: RawSettings,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawSettings {
    url: String,
    #[serde(default)]
    revision: Option<String>,
    #[serde(default)]
    label_selector: Option<String>,
    #[serde(default)]
    fail_open: bool,
}

/// Returns whether `text` is a mapping with an `apiServer` key, the form [`FollowSettings`]
/// reads. Anything else, unreadable text included, is left to the inline-revision path.
pub fn is_api_server_config(text: &str) -> bool {
    match serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text) {
        Ok(serde_yaml_ng::Value::Mapping(mapping)) => mapping.contains_key(API_SERVER_KEY),
        _ => false,
    }
}

impl FollowSettings {
    /// Parses and checks an `apiServer` filter config given as JSON or YAML.
    pub fn parse(text: &str) -> Result<Self, SettingsError> {
        let document: Document = serde_yaml_ng::from_str(text)
            .map_err(|error| SettingsError::Syntax(error.to_string()))?;
        let raw = document.api_server;

        let selection = match (raw.revision, raw.label_selector) {
            (Some(name), None) => Selection::Name(non_empty(name, "revision")?),
            (None, Some(selector)) => Selection::Labels(non_empty(selector, "labelSelector")?),
            (Some(_), Some(_)) => return Err(SettingsError::Selection { found: "both" }),
            (None, None) => return Err(SettingsError::Selection { found: "neither" }),
        };
        Ok(Self {
            url: check_url(&raw.url)?,
            selection,
            fail_open: raw.fail_open,
        })
    }
}

fn non_empty(value: String, field: &'static str) -> Result<String, SettingsError> {
    let value = value.trim().to_owned();
    if value.is_empty() {
        Err(SettingsError::Empty { field })
    } else {
        Ok(value)
    }
}

/// Accepts an http(s) URL with a host and no query or fragment, and drops a trailing `/`.
fn check_url(url: &str) -> Result<String, SettingsError> {
    let invalid = |reason: &str| SettingsError::Url {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let parsed = reqwest::Url::parse(url.trim()).map_err(|error| invalid(&error.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid("expected an http:// or https:// URL"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid("the URL has no host"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(invalid(
            "expected the server's base URL, without a query or fragment",
        ));
    }
    Ok(parsed.as_str().trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_revision_by_name() {
        let settings =
            FollowSettings::parse("apiServer:\n  url: http://127.0.0.1:8080/\n  revision: a-1\n")
                .unwrap();
        assert_eq!(settings.url, "http://127.0.0.1:8080");
        assert_eq!(settings.selection, Selection::Name("a-1".to_owned()));
        assert!(!settings.fail_open);
    }

    #[test]
    fn parse_label_selector_json() {
        let text = r#"{"apiServer": {"url": "https://api.example.test/edgefn",
            "labelSelector": "app=demo", "failOpen": true}}"#;
        let settings = FollowSettings::parse(text).unwrap();
        assert_eq!(settings.url, "https://api.example.test/edgefn");
        assert_eq!(settings.selection, Selection::Labels("app=demo".to_owned()));
        assert!(settings.fail_open);
    }

    #[test]
    fn parse_rejects_both_selections() {
        let text = "apiServer: {url: 'http://a', revision: x, labelSelector: y}";
        let error = FollowSettings::parse(text).unwrap_err();
        assert!(matches!(error, SettingsError::Selection { found: "both" }));
    }

    #[test]
    fn parse_rejects_no_selection() {
        let error = FollowSettings::parse("apiServer: {url: 'http://a'}").unwrap_err();
        assert!(matches!(
            error,
            SettingsError::Selection { found: "neither" }
        ));
    }

    #[test]
    fn parse_rejects_empty_revision() {
        let error =
            FollowSettings::parse("apiServer: {url: 'http://a', revision: ' '}").unwrap_err();
        assert!(matches!(error, SettingsError::Empty { field: "revision" }));
    }

    #[test]
    fn parse_rejects_unknown_field() {
        let text = "apiServer: {url: 'http://a', revision: x, failopen: true}";
        let error = FollowSettings::parse(text).unwrap_err();
        assert!(error.to_string().contains("failopen"), "{error}");
    }

    #[test]
    fn parse_rejects_other_schemes() {
        for url in ["file:///tmp/x", "ftp://a/", "not a url", "http://a/?x=1"] {
            let text = format!("apiServer: {{url: '{url}', revision: x}}");
            let error = FollowSettings::parse(&text).unwrap_err();
            assert!(matches!(error, SettingsError::Url { .. }), "{url}: {error}");
        }
    }

    #[test]
    fn detection_needs_api_server_key() {
        assert!(is_api_server_config("apiServer: {}"));
        assert!(is_api_server_config(r#"{"apiServer": 1}"#));
        assert!(!is_api_server_config("metadata: {name: x}"));
        assert!(!is_api_server_config("- a list"));
        assert!(!is_api_server_config("{not yaml"));
    }

    #[test]
    fn selection_query_pairs() {
        let name = Selection::Name("r".to_owned()).query_pair();
        assert_eq!(name, ("fieldSelector", "metadata.name=r".to_owned()));
        let labels = Selection::Labels("a in (x,y)".to_owned()).query_pair();
        assert_eq!(labels, ("labelSelector", "a in (x,y)".to_owned()));
    }
}
