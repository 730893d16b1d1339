//! Publishing plugin libraries in the layout that edgefn and Apoxy pull. Each architecture gets
//! an OCI image manifest with a standard image config and one layer of media type
//! [`CONTENT_MEDIA_TYPE`] that contains the raw library. Several architectures go under one
//! image index.

use std::path::{Path, PathBuf};
use std::time::Duration;

use oci_client::manifest::{
    IMAGE_CONFIG_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE,
};
use oci_client::{Reference, RegistryOperation};
use reqwest::header::HeaderValue;
use serde_json::json;

use super::client::RegistryClient;
use super::credentials::ResolvedAuth;
use super::error::OciError;
use super::platform::{elf_architecture, PLUGIN_OS};
use super::{OciSource, Secret, CONTENT_MEDIA_TYPE};
use crate::digest::sha256_hex;
use crate::fetch::FetchOptions;

/// Annotation that names the file a layer was pushed from.
const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";

/// Settings for one push.
#[derive(Clone, Debug)]
pub struct PushOptions {
    /// User name for the registry; `None` pushes anonymously.
    pub username: Option<String>,
    /// Password or token for the registry.
    pub password: Option<Secret>,
    /// Reach the registry over plain HTTP instead of https.
    pub insecure: bool,
    /// Time limit for the whole push.
    pub timeout: Duration,
    /// PEM file with CA certificates trusted in addition to the system roots.
    pub extra_ca_file: Option<PathBuf>,
}

impl Default for PushOptions {
    fn default() -> Self {
        Self {
            username: None,
            password: None,
            insecure: false,
            timeout: Duration::from_secs(300),
            extra_ca_file: None,
        }
    }
}

/// The result of a push.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushedPlugin {
    /// The reference pushed to, such as `127.0.0.1:5000/plugins/a:v1`.
    pub reference: String,
    /// Digest of the manifest or image index that the tag now names, as `sha256:<hex>`.
    pub digest: String,
    /// The `linux/<arch>` platforms pushed, in file order.
    pub platforms: Vec<String>,
}

/// One library ready to push.
struct Prepared {
    architecture: &'static str,
    layer: Vec<u8>,
    layer_digest: String,
    config: Vec<u8>,
    config_digest: String,
    manifest: Vec<u8>,
    manifest_digest: String,
}

/// Pushes `files` to `reference` (`[host[:port]/]path[:tag]`, tag `latest` when absent) and
/// returns the digest the tag names. One file becomes an image manifest; several files, one per
/// architecture, become an image index. `progress` receives one line per step.
pub async fn push(
    reference: &str,
    files: &[PathBuf],
    options: &PushOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<PushedPlugin, OciError> {
    let source = OciSource::from_reference(reference);
    if source.repo.contains('@') {
        return Err(OciError::InvalidReference {
            reference: reference.to_owned(),
            reason: "push needs a tag, not a digest".to_owned(),
        });
    }
    let target = super::reference::parse(&source)?;
    let prepared = prepare_all(files)?;

    let auth = match (&options.username, &options.password) {
        (None, None) => ResolvedAuth::anonymous(),
        (username, password) => ResolvedAuth::basic(
            username.as_deref().unwrap_or(""),
            password.as_ref().map_or("", Secret::expose),
        ),
    };
    let insecure = if options.insecure {
        vec![target.resolve_registry().to_owned()]
    } else {
        Vec::new()
    };
    let fetch_options = FetchOptions {
        timeout: options.timeout,
        extra_ca_file: options.extra_ca_file.clone(),
        ..FetchOptions::default()
    };

    let work = push_prepared(
        &target,
        &prepared,
        auth,
        &fetch_options,
        &insecure,
        progress,
    );
    let digest = tokio::time::timeout(options.timeout, work)
        .await
        .unwrap_or_else(|_elapsed| {
            Err(OciError::Timeout {
                reference: target.whole(),
                registry: target.registry().to_owned(),
                timeout: options.timeout,
            })
        })?;

    Ok(PushedPlugin {
        reference: target.whole(),
        digest,
        platforms: prepared
            .iter()
            .map(|p| format!("{PLUGIN_OS}/{}", p.architecture))
            .collect(),
    })
}

fn prepare_all(files: &[PathBuf]) -> Result<Vec<Prepared>, OciError> {
    if files.is_empty() {
        return Err(OciError::InvalidPushFile {
            path: PathBuf::new(),
            reason: "no file given; name one .so file per architecture".to_owned(),
        });
    }
    let mut prepared: Vec<Prepared> = Vec::new();
    for file in files {
        let next = prepare(file)?;
        if prepared.iter().any(|p| p.architecture == next.architecture) {
            return Err(OciError::InvalidPushFile {
                path: file.clone(),
                reason: format!(
                    "another file is also built for {}; give one file per architecture",
                    next.architecture
                ),
            });
        }
        prepared.push(next);
    }
    Ok(prepared)
}

fn prepare(path: &Path) -> Result<Prepared, OciError> {
    let invalid = |reason: String| OciError::InvalidPushFile {
        path: path.to_owned(),
        reason,
    };
    let layer = std::fs::read(path).map_err(|error| invalid(error.to_string()))?;
    let architecture = elf_architecture(&layer).map_err(invalid)?;
    let layer_digest = format!("sha256:{}", sha256_hex(&layer));

    let config = serde_json::to_vec(&json!({
        "architecture": architecture,
        "os": PLUGIN_OS,
        "rootfs": { "type": "layers", "diff_ids": [layer_digest] },
    }))
    .map_err(|error| invalid(error.to_string()))?;
    let config_digest = format!("sha256:{}", sha256_hex(&config));

    let title = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_IMAGE_MEDIA_TYPE,
        "config": {
            "mediaType": IMAGE_CONFIG_MEDIA_TYPE,
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": [{
            "mediaType": CONTENT_MEDIA_TYPE,
            "digest": layer_digest,
            "size": layer.len(),
            "annotations": { TITLE_ANNOTATION: title },
        }],
    }))
    .map_err(|error| invalid(error.to_string()))?;
    let manifest_digest = format!("sha256:{}", sha256_hex(&manifest));

    Ok(Prepared {
        architecture,
        layer,
        layer_digest,
        config,
        config_digest,
        manifest,
        manifest_digest,
    })
}

async fn push_prepared(
    target: &Reference,
    prepared: &[Prepared],
    auth: ResolvedAuth,
    options: &FetchOptions,
    insecure: &[String],
    progress: &mut dyn FnMut(&str),
) -> Result<String, OciError> {
    progress(&format!("connecting to {}", target.registry()));
    let registry =
        RegistryClient::connect(target, auth, options, insecure, RegistryOperation::Push).await?;
    let client = registry.client();

    for library in prepared {
        progress(&format!(
            "pushing layer {} ({} bytes, {PLUGIN_OS}/{})",
            library.layer_digest,
            library.layer.len(),
            library.architecture
        ));
        client
            .push_blob(target, library.layer.clone(), &library.layer_digest)
            .await
            .map_err(|error| registry.classify(error, "the layer upload"))?;
        client
            .push_blob(target, library.config.clone(), &library.config_digest)
            .await
            .map_err(|error| registry.classify(error, "the config upload"))?;
    }

    if let [single] = prepared {
        progress(&format!("pushing manifest {}", single.manifest_digest));
        push_manifest(&registry, target, &single.manifest, OCI_IMAGE_MEDIA_TYPE).await?;
        return Ok(single.manifest_digest.clone());
    }

    let mut entries = Vec::new();
    for library in prepared {
        progress(&format!("pushing manifest {}", library.manifest_digest));
        let by_digest = target.clone_with_digest(library.manifest_digest.clone());
        push_manifest(
            &registry,
            &by_digest,
            &library.manifest,
            OCI_IMAGE_MEDIA_TYPE,
        )
        .await?;
        entries.push(json!({
            "mediaType": OCI_IMAGE_MEDIA_TYPE,
            "digest": library.manifest_digest,
            "size": library.manifest.len(),
            "platform": { "architecture": library.architecture, "os": PLUGIN_OS },
        }));
    }
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_IMAGE_INDEX_MEDIA_TYPE,
        "manifests": entries,
    }))
    .map_err(|error| OciError::Request {
        reference: target.whole(),
        registry: target.registry().to_owned(),
        detail: error.to_string(),
    })?;
    let index_digest = format!("sha256:{}", sha256_hex(&index));
    progress(&format!("pushing image index {index_digest}"));
    push_manifest(&registry, target, &index, OCI_IMAGE_INDEX_MEDIA_TYPE).await?;
    Ok(index_digest)
}

async fn push_manifest(
    registry: &RegistryClient,
    target: &Reference,
    body: &[u8],
    media_type: &'static str,
) -> Result<(), OciError> {
    registry
        .client()
        .push_manifest_raw(target, body.to_vec(), HeaderValue::from_static(media_type))
        .await
        .map_err(|error| registry.classify(error, "the manifest upload"))?;
    Ok(())
}
