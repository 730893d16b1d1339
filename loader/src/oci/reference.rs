//! Image references: `repo` plus `tag` into a registry reference, and the list of registries
//! that may be reached over plain HTTP.

use oci_client::Reference;

use super::error::OciError;
use super::OciSource;
use crate::digest::is_sha256_hex;

/// Environment variable with the comma-separated `host:port` registries that are reached over
/// plain HTTP. Every other registry is reached over https.
pub const INSECURE_REGISTRIES_ENV: &str = "EDGEFN_INSECURE_REGISTRIES";

/// Tag used when `tag` is empty and `repo` names no digest, as Docker does.
const DEFAULT_TAG: &str = "latest";

/// Parses `source` into a reference with a tag or a digest. Short names resolve as Docker
/// resolves them: `plugin` is `docker.io/library/plugin`.
pub(crate) fn parse(source: &OciSource) -> Result<Reference, OciError> {
    let repo = source.repo.trim();
    let invalid = |reason: &str| OciError::InvalidReference {
        reference: display_input(source),
        reason: reason.to_owned(),
    };

    if repo.is_empty() {
        return Err(invalid("`repo` is empty"));
    }
    if repo.contains("://") {
        return Err(invalid("`repo` must not have a URL scheme"));
    }

    let (name, digest) = match repo.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (repo, None),
    };
    let last_segment = name.rsplit('/').next().unwrap_or(name);
    if last_segment.contains(':') {
        return Err(invalid(
            "`repo` contains a tag; put the tag in the `tag` field",
        ));
    }

    let text = match digest {
        Some(digest) => {
            let hex = digest.strip_prefix("sha256:").unwrap_or("");
            if !is_sha256_hex(hex) {
                return Err(invalid(
                    "the digest must be sha256: followed by 64 lower-case hex digits",
                ));
            }
            format!("{name}@{digest}")
        }
        None => {
            let tag = source.tag.trim();
            let tag = if tag.is_empty() { DEFAULT_TAG } else { tag };
            format!("{name}:{tag}")
        }
    };

    let reference: Reference = text
        .parse()
        .map_err(|error: oci_client::ParseError| invalid(&error.to_string()))?;
    if reference.repository().is_empty() {
        return Err(invalid("the repository path is empty"));
    }
    Ok(reference)
}

/// Returns the reference as written, for errors about a reference that does not parse.
fn display_input(source: &OciSource) -> String {
    if source.repo.contains('@') || source.tag.is_empty() {
        source.repo.clone()
    } else {
        format!("{}:{}", source.repo, source.tag)
    }
}

/// Returns the hex part of a `sha256:<hex>` digest, or an error naming `reference`.
pub(crate) fn sha256_hex_of(reference: &Reference, digest: &str) -> Result<String, OciError> {
    match digest.strip_prefix("sha256:") {
        Some(hex) if is_sha256_hex(hex) => Ok(hex.to_owned()),
        _ => Err(OciError::UnsupportedDigest {
            reference: reference.whole(),
            digest: digest.to_owned(),
        }),
    }
}

/// Parses the value of `EDGEFN_INSECURE_REGISTRIES`: `host:port` entries separated by commas,
/// blanks ignored.
pub fn parse_insecure_registries(value: &str) -> Result<Vec<String>, OciError> {
    let mut registries = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let valid = entry.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty()
                && !host.contains('/')
                && port.parse::<u16>().is_ok_and(|port| port != 0)
        });
        if !valid {
            return Err(OciError::InvalidInsecureRegistry {
                entry: entry.to_owned(),
            });
        }
        registries.push(entry.to_owned());
    }
    Ok(registries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(repo: &str, tag: &str) -> Result<Reference, OciError> {
        parse(&OciSource::new(repo, tag))
    }

    #[test]
    fn short_name_resolves_to_docker_hub() {
        let reference = parsed("plugin", "").expect("valid reference");
        assert_eq!(reference.whole(), "docker.io/library/plugin:latest");
    }

    #[test]
    fn registry_with_port_keeps_tag() {
        let reference = parsed("127.0.0.1:5000/plugins/a", "v1").expect("valid reference");
        assert_eq!(reference.registry(), "127.0.0.1:5000");
        assert_eq!(reference.repository(), "plugins/a");
        assert_eq!(reference.tag(), Some("v1"));
    }

    #[test]
    fn digest_reference_ignores_tag() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let reference = parsed(&format!("ghcr.io/x/y@{digest}"), "v1").expect("valid");
        assert_eq!(reference.digest(), Some(digest.as_str()));
        assert_eq!(reference.tag(), None);
    }

    #[test]
    fn invalid_references_are_rejected() {
        let cases = [
            ("", "v1"),
            ("https://ghcr.io/x/y", "v1"),
            ("ghcr.io/x/y:v2", "v1"),
            ("ghcr.io/x/y@sha256:ABC", ""),
            (&format!("ghcr.io/x/y@sha512:{}", "a".repeat(128)), ""),
            ("ghcr.io/X/y", "v1"),
            ("ghcr.io/x/y", "bad tag"),
        ];
        for (repo, tag) in cases {
            let result = parsed(repo, tag);
            assert!(
                matches!(result, Err(OciError::InvalidReference { .. })),
                "{repo:?} {tag:?} gave {result:?}"
            );
        }
    }

    #[test]
    fn insecure_registries_parse() {
        let parsed = parse_insecure_registries(" 127.0.0.1:5000, ,localhost:1").expect("valid");
        assert_eq!(parsed, vec!["127.0.0.1:5000", "localhost:1"]);
    }

    #[test]
    fn insecure_registries_reject_missing_port() {
        for value in ["127.0.0.1", "http://a:1", "a:0", ":5000"] {
            let result = parse_insecure_registries(value);
            assert!(
                matches!(result, Err(OciError::InvalidInsecureRegistry { .. })),
                "{value:?} gave {result:?}"
            );
        }
    }
}
