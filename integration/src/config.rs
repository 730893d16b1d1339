//! Envoy config templates from `envoy-configs/` and the EdgeFunctionRevision objects that go
//! into them.

use std::io;
use std::net::TcpListener;
use std::path::PathBuf;

use serde_json::json;

use crate::tools;

/// Annotation that pins the SHA-256 digest (64 lower-case hex digits) of the plugin file.
pub const SHA256_ANNOTATION: &str = "edgefn.dev/sha256";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading Envoy config template {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error(
        "Envoy config template {template} uses placeholder {{{{{name}}}}} but no value was \
         given for it; set it with EnvoyBuilder::var"
    )]
    MissingValue { template: String, name: String },
    #[error("Envoy config template {template} has an unclosed placeholder at byte {offset}")]
    Unclosed { template: String, offset: usize },
    #[error("picking a free port on 127.0.0.1 failed: {0}")]
    FreePort(io::Error),
}

/// Returns a TCP port on 127.0.0.1 that was free a moment ago.
///
/// The port is released before it is returned, so another process can take it before Envoy
/// binds it. [`crate::EnvoyBuilder::start`] retries with new ports when that happens.
pub fn free_port() -> Result<u16, ConfigError> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).map_err(ConfigError::FreePort)?;
    Ok(listener.local_addr().map_err(ConfigError::FreePort)?.port())
}

/// Reads `envoy-configs/<name>` from the repository.
pub(crate) fn load_template(name: &str) -> Result<String, ConfigError> {
    let path = tools::repo_root().join("envoy-configs").join(name);
    std::fs::read_to_string(&path).map_err(|source| ConfigError::Read { path, source })
}

/// Replaces every `{{NAME}}` in `template` with the value of `NAME` in `vars`. Comment lines
/// (first non-blank character `#`) are copied unchanged, so they can name placeholders.
///
/// A value with several lines keeps the template's layout: its second and later lines are
/// indented to the placeholder's column, so a multi-line JSON value is valid YAML in place.
pub(crate) fn render(
    template_name: &str,
    template: &str,
    vars: &[(String, String)],
) -> Result<String, ConfigError> {
    let mut output = String::with_capacity(template.len());
    let mut line_offset = 0;
    for line in template.split_inclusive('\n') {
        if line.trim_start().starts_with('#') {
            output.push_str(line);
        } else {
            render_line(template_name, line, line_offset, vars, &mut output)?;
        }
        line_offset += line.len();
    }
    Ok(output)
}

fn render_line(
    template_name: &str,
    line: &str,
    line_offset: usize,
    vars: &[(String, String)],
    output: &mut String,
) -> Result<(), ConfigError> {
    let line_start = output.len();
    let mut rest = line;
    while let Some(start) = rest.find("{{") {
        output.push_str(&rest[..start]);
        let after_open = &rest[start + 2..];
        let Some(end) = after_open.find("}}") else {
            let offset = line_offset + (line.len() - rest.len()) + start;
            return Err(ConfigError::Unclosed {
                template: template_name.to_owned(),
                offset,
            });
        };
        let name = after_open[..end].trim();
        let value = vars
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
            .ok_or_else(|| ConfigError::MissingValue {
                template: template_name.to_owned(),
                name: name.to_owned(),
            })?;

        let column = output.len() - line_start;
        let indent = format!("\n{}", " ".repeat(column));
        output.push_str(&value.replace('\n', &indent));
        rest = &after_open[end + 2..];
    }
    output.push_str(rest);
    Ok(())
}

/// An `extensions.apoxy.dev/v1alpha2` EdgeFunctionRevision in filter mode whose Go plugin comes
/// from a URL. It is what edgefn receives as its filter config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    /// `metadata.name`; Envoy's error for a revision that fails to load names it.
    pub name: String,
    /// `spec.code.metadata.name`, the name the Go plugin registers itself under.
    pub plugin_name: String,
    /// `spec.code.goPluginSource.url`.
    pub url: String,
    /// `spec.code.goPluginSource.pluginConfig`: a JSON or YAML object, as a string.
    pub plugin_config: Option<String>,
    /// The [`SHA256_ANNOTATION`] value, when the plugin file is pinned.
    pub sha256: Option<String>,
}

impl Revision {
    pub fn new(name: &str, plugin_name: &str, url: &str) -> Self {
        Self {
            name: name.to_owned(),
            plugin_name: plugin_name.to_owned(),
            url: url.to_owned(),
            plugin_config: None,
            sha256: None,
        }
    }

    pub fn plugin_config(mut self, config: &str) -> Self {
        self.plugin_config = Some(config.to_owned());
        self
    }

    pub fn sha256(mut self, hex_digest: &str) -> Self {
        self.sha256 = Some(hex_digest.to_owned());
        self
    }

    /// Builds the revision object as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        let mut metadata = json!({ "name": self.name });
        if let Some(digest) = &self.sha256 {
            metadata["annotations"] = json!({ SHA256_ANNOTATION: digest });
        }
        let mut source = json!({ "url": self.url });
        if let Some(config) = &self.plugin_config {
            source["pluginConfig"] = json!(config);
        }
        json!({
            "apiVersion": "extensions.apoxy.dev/v1alpha2",
            "kind": "EdgeFunctionRevision",
            "metadata": metadata,
            "spec": {
                "mode": "filter",
                "code": {
                    "metadata": { "name": self.plugin_name },
                    "goPluginSource": source,
                },
            },
        })
    }

    /// Formats the revision for the `{{REVISION}}` placeholder: indented JSON, which YAML reads
    /// as a flow mapping.
    pub fn to_template_value(&self) -> String {
        serde_json::to_string_pretty(&self.to_json()).expect("a JSON value always serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn render_replaces_placeholders() {
        let rendered = render(
            "t",
            "port: {{PORT}}\nname: {{ NAME }}\n",
            &vars(&[("PORT", "8080"), ("NAME", "x")]),
        )
        .unwrap();
        assert_eq!(rendered, "port: 8080\nname: x\n");
    }

    #[test]
    fn render_indents_multiline_values() {
        let rendered = render(
            "t",
            "a:\n  value: {{V}}\n",
            &vars(&[("V", "{\n  \"k\": 1\n}")]),
        );
        assert_eq!(
            rendered.unwrap(),
            "a:\n  value: {\n           \"k\": 1\n         }\n"
        );
    }

    #[test]
    fn render_keeps_comment_lines() {
        let rendered = render("t", "  # {{V}} here\nv: {{V}}\n", &vars(&[("V", "1\n2")]));
        assert_eq!(rendered.unwrap(), "  # {{V}} here\nv: 1\n   2\n");
    }

    #[test]
    fn render_rejects_missing_value() {
        let error = render("edgefn.yaml", "x: {{NOPE}}", &[]).unwrap_err();
        assert!(error.to_string().contains("{{NOPE}}"), "{error}");
    }

    #[test]
    fn render_rejects_unclosed_placeholder() {
        let error = render("t", "a: 1\nx: {{NOPE", &vars(&[("NOPE", "1")])).unwrap_err();
        assert!(
            matches!(error, ConfigError::Unclosed { offset: 8, .. }),
            "{error}"
        );
    }

    #[test]
    fn revision_json_carries_pin_and_config() {
        let revision = Revision::new("rev-1", "add-header", "http://127.0.0.1:1/a.so")
            .plugin_config("{\"a\": 1}")
            .sha256("ab");
        let json = revision.to_json();
        assert_eq!(json["metadata"]["annotations"][SHA256_ANNOTATION], "ab");
        assert_eq!(
            json["spec"]["code"]["goPluginSource"]["pluginConfig"],
            "{\"a\": 1}"
        );
        assert_eq!(json["spec"]["code"]["metadata"]["name"], "add-header");
    }

    #[test]
    fn revision_json_omits_absent_fields() {
        let json = Revision::new("rev-1", "p", "http://127.0.0.1:1/a.so").to_json();
        assert!(json["metadata"].get("annotations").is_none());
        assert!(json["spec"]["code"]["goPluginSource"]
            .get("pluginConfig")
            .is_none());
    }
}
