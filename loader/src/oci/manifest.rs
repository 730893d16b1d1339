//! Manifest and image index documents, and the choice of this host's platform.

use std::collections::BTreeMap;

use oci_client::manifest::{
    IMAGE_CONFIG_MEDIA_TYPE, IMAGE_DOCKER_CONFIG_MEDIA_TYPE, IMAGE_MANIFEST_LIST_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE,
};
use oci_client::Reference;
use serde::Deserialize;

use super::error::OciError;
use super::platform::{host_architecture, PLUGIN_OS};

/// A content descriptor: the media type, digest and size of a blob or manifest.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Descriptor {
    pub(crate) media_type: String,
    pub(crate) digest: String,
    #[serde(default)]
    pub(crate) size: u64,
    #[serde(default)]
    pub(crate) platform: Option<Platform>,
    #[serde(default)]
    pub(crate) annotations: BTreeMap<String, String>,
}

/// The `platform` of an image index entry.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Platform {
    #[serde(default)]
    pub(crate) architecture: String,
    #[serde(default)]
    pub(crate) os: String,
    #[serde(default)]
    pub(crate) variant: Option<String>,
}

impl Platform {
    fn describe(&self) -> String {
        match &self.variant {
            Some(variant) => format!("{}/{}/{variant}", self.os, self.architecture),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }
}

/// The fields of a manifest or index read here.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Document {
    #[serde(default)]
    schema_version: Option<i64>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
}

/// A parsed manifest: an image index, or an image manifest.
pub(crate) enum Manifest {
    Index(Vec<Descriptor>),
    Image {
        config: Option<Descriptor>,
        layers: Vec<Descriptor>,
    },
}

/// Parses the manifest with digest `digest` fetched for `reference`.
pub(crate) fn parse(
    body: &[u8],
    reference: &Reference,
    digest: &str,
) -> Result<Manifest, OciError> {
    let invalid = |detail: String| OciError::InvalidManifest {
        reference: reference.whole(),
        digest: digest.to_owned(),
        detail,
    };
    let document: Document = serde_json::from_slice(body)
        .map_err(|error| invalid(format!("not a manifest JSON object: {error}")))?;

    if document.schema_version != Some(2) {
        return Err(invalid(format!(
            "schemaVersion is {:?}, expected 2",
            document.schema_version
        )));
    }

    let media_type = document.media_type.as_deref();
    let is_index = match media_type {
        Some(OCI_IMAGE_INDEX_MEDIA_TYPE | IMAGE_MANIFEST_LIST_MEDIA_TYPE) => true,
        Some(OCI_IMAGE_MEDIA_TYPE | IMAGE_MANIFEST_MEDIA_TYPE) => false,
        None => document.manifests.is_some(),
        Some(other) => {
            return Err(OciError::UnsupportedMediaType {
                reference: reference.whole(),
                media_type: other.to_owned(),
                layer_count: document.layers.as_ref().map_or(0, Vec::len),
                detail: format!("manifest {digest} is neither an image manifest nor an index"),
            });
        }
    };

    if is_index {
        let entries = document
            .manifests
            .ok_or_else(|| invalid("the index has no `manifests` list".to_owned()))?;
        return Ok(Manifest::Index(entries));
    }
    let layers = document
        .layers
        .ok_or_else(|| invalid("the manifest has no `layers` list".to_owned()))?;
    Ok(Manifest::Image {
        config: document.config,
        layers,
    })
}

/// Returns this host's platform as `linux/<GOARCH>`.
pub(crate) fn host_platform() -> String {
    format!("{PLUGIN_OS}/{}", host_architecture())
}

/// Picks the index entry for `linux` and this host's architecture; the first one wins, as in
/// Docker. Entries without a platform are skipped.
pub(crate) fn select_platform<'a>(
    entries: &'a [Descriptor],
    reference: &Reference,
) -> Result<&'a Descriptor, OciError> {
    let architecture = host_architecture();
    let chosen = entries.iter().find(|entry| {
        entry
            .platform
            .as_ref()
            .is_some_and(|p| p.os == PLUGIN_OS && p.architecture == architecture)
    });
    let Some(chosen) = chosen else {
        let available: Vec<String> = entries
            .iter()
            .filter_map(|entry| entry.platform.as_ref().map(Platform::describe))
            .collect();
        return Err(OciError::NoMatchingPlatform {
            reference: reference.whole(),
            expected: host_platform(),
            available: if available.is_empty() {
                "no platforms".to_owned()
            } else {
                available.join(", ")
            },
        });
    };

    if !matches!(
        chosen.media_type.as_str(),
        OCI_IMAGE_MEDIA_TYPE | IMAGE_MANIFEST_MEDIA_TYPE
    ) {
        return Err(OciError::UnsupportedMediaType {
            reference: reference.whole(),
            media_type: chosen.media_type.clone(),
            layer_count: 0,
            detail: format!(
                "the index entry {} for {} is not an image manifest",
                chosen.digest,
                host_platform()
            ),
        });
    }
    Ok(chosen)
}

/// Reports whether a config of this media type is a standard image config, whose `os` and
/// `architecture` are checked against this host.
pub(crate) fn is_image_config(media_type: &str) -> bool {
    matches!(
        media_type,
        IMAGE_CONFIG_MEDIA_TYPE | IMAGE_DOCKER_CONFIG_MEDIA_TYPE
    )
}

#[derive(Deserialize)]
struct ImageConfig {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
}

/// Checks the `os` and `architecture` of an image config against this host.
pub(crate) fn check_config_platform(body: &[u8], reference: &Reference) -> Result<(), OciError> {
    let config: ImageConfig =
        serde_json::from_slice(body).map_err(|error| OciError::InvalidManifest {
            reference: reference.whole(),
            digest: "the image config".to_owned(),
            detail: format!("not an image config JSON object: {error}"),
        })?;
    let architecture = host_architecture();
    if config.os == PLUGIN_OS && config.architecture == architecture {
        return Ok(());
    }
    Err(OciError::WrongPlatform {
        reference: reference.whole(),
        found: format!("{}/{}", config.os, config.architecture),
        expected: host_platform(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference() -> Reference {
        "127.0.0.1:5000/a/b:v1".parse().expect("valid reference")
    }

    fn entry(os: &str, architecture: &str) -> Descriptor {
        Descriptor {
            media_type: OCI_IMAGE_MEDIA_TYPE.to_owned(),
            digest: format!("sha256:{}", "1".repeat(64)),
            size: 10,
            platform: Some(Platform {
                architecture: architecture.to_owned(),
                os: os.to_owned(),
                variant: None,
            }),
            annotations: BTreeMap::new(),
        }
    }

    #[test]
    fn select_platform_picks_host_architecture() {
        let entries = vec![entry("linux", "s390x"), entry("linux", host_architecture())];
        let chosen = select_platform(&entries, &reference()).expect("a matching entry");
        let platform = chosen.platform.as_ref().expect("platform");
        assert_eq!(platform.architecture, host_architecture());
    }

    #[test]
    fn select_platform_lists_available() {
        let entries = vec![
            entry("windows", host_architecture()),
            entry("linux", "s390x"),
        ];
        let error = select_platform(&entries, &reference()).err();
        let message = error.map(|error| error.to_string()).unwrap_or_default();
        assert!(message.contains("linux/s390x"), "{message}");
    }

    #[test]
    fn parse_rejects_unknown_media_type() {
        let body = br#"{"schemaVersion": 2, "mediaType": "application/json", "layers": []}"#;
        let result = parse(body, &reference(), "sha256:x");
        assert!(matches!(result, Err(OciError::UnsupportedMediaType { .. })));
    }

    #[test]
    fn config_platform_mismatch_is_rejected() {
        let body = br#"{"os": "linux", "architecture": "mips"}"#;
        let result = check_config_platform(body, &reference());
        assert!(matches!(result, Err(OciError::WrongPlatform { .. })));
    }
}
