//! Helpers for the OCI tests: a real registry, a fake one, and ways to publish artifacts of
//! any shape with the registry client directly.

#![allow(
    dead_code,
    reason = "each test binary uses a different subset of these helpers"
)]

pub mod fake;
pub mod registry;

use std::time::Duration;

use edgefn_loader::{
    fetch_blocking, Artifact, FetchError, FetchOptions, LoadError, OciError, OciSource, Source,
};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::common::TestDir;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
pub const APOXY_CONTENT: &str = "application/vnd.apoxy.dev.image.content.v1.tar+gzip";
pub const APOXY_CONFIG: &str = "application/vnd.apoxy.dev.image.config.v1+json";

/// ELF machine numbers of the two architectures the tests publish.
pub const EM_X86_64: u16 = 62;
pub const EM_AARCH64: u16 = 183;

/// Returns the ELF machine of this host, and of another architecture.
pub fn host_and_other_machine() -> (u16, u16) {
    if cfg!(target_arch = "aarch64") {
        (EM_AARCH64, EM_X86_64)
    } else {
        (EM_X86_64, EM_AARCH64)
    }
}

/// Returns the bytes of a small 64-bit little-endian ELF shared object header for `machine`,
/// followed by `label`, so different labels give different digests. It is not loadable; the
/// fetch tests only move bytes.
pub fn fake_library(machine: u16, label: &str) -> Vec<u8> {
    let mut bytes = vec![0_u8; 64];
    bytes[..4].copy_from_slice(b"\x7fELF");
    bytes[4] = 2;
    bytes[5] = 1;
    bytes[6] = 1;
    bytes[16..18].copy_from_slice(&3_u16.to_le_bytes());
    bytes[18..20].copy_from_slice(&machine.to_le_bytes());
    bytes.extend_from_slice(label.as_bytes());
    bytes
}

pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(bytes))
}

pub fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("build a Tokio runtime")
}

/// Fetch options with the cache in `dir`, a 10 s timeout, plain HTTP for `insecure_host`,
/// and no secrets directory.
pub fn options(dir: &TestDir, insecure_host: &str) -> FetchOptions {
    FetchOptions {
        cache_dir: dir.join("cache"),
        timeout: Duration::from_secs(10),
        insecure_registries: vec![insecure_host.to_owned()],
        secrets_dir: None,
        expected_sha256: None,
        ..FetchOptions::default()
    }
}

pub fn pull(source: &OciSource, options: &FetchOptions) -> Result<Artifact, LoadError> {
    fetch_blocking(&Source::Oci(source.clone()), options)
}

/// Pulls `source` and returns the OCI error, failing the test on any other outcome.
pub fn pull_oci_error(source: &OciSource, options: &FetchOptions) -> OciError {
    match pull(source, options) {
        Err(LoadError::Fetch(FetchError::Oci(error))) => *error,
        other => panic!("expected an OCI error, got {other:?}"),
    }
}

/// Returns a descriptor for `bytes` of `media_type`.
pub fn descriptor(media_type: &str, bytes: &[u8]) -> Value {
    json!({ "mediaType": media_type, "digest": digest_of(bytes), "size": bytes.len() })
}

/// Returns an image config for linux/`architecture`.
pub fn image_config(architecture: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "architecture": architecture,
        "os": "linux",
        "rootfs": { "type": "layers", "diff_ids": [] },
    }))
    .expect("serialize the config")
}

/// Returns a tar archive of `entries` (path, bytes), written with raw headers so that unsafe paths
/// are kept as given.
pub fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, bytes) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        set_raw_path(&mut header, path);
        header.set_cksum();
        builder.append(&header, *bytes).expect("append a tar entry");
    }
    builder.into_inner().expect("finish the tar archive")
}

/// Returns a tar archive with one symbolic link `path` -> `target`.
pub fn tar_with_symlink(path: &str, target: &str) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(0);
    header.set_mode(0o777);
    header.set_entry_type(tar::EntryType::Symlink);
    set_raw_path(&mut header, path);
    header.set_link_name(target).expect("set the link name");
    header.set_cksum();
    builder.append(&header, &[][..]).expect("append the link");
    builder.into_inner().expect("finish the tar archive")
}

fn set_raw_path(header: &mut tar::Header, path: &str) {
    let name = &mut header.as_old_mut().name;
    name.fill(0);
    name[..path.len()].copy_from_slice(path.as_bytes());
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).expect("compress");
    encoder.finish().expect("finish compressing")
}

/// Publishes blobs and manifests of any shape with the registry client itself.
pub struct Publisher {
    client: Client,
    runtime: tokio::runtime::Runtime,
    auth: RegistryAuth,
}

impl Publisher {
    /// Returns a publisher for the plain-HTTP registry at `host`, with `auth`.
    pub fn new(host: &str, auth: RegistryAuth) -> Self {
        // reqwest is built without a crypto provider, as in the loader itself.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = Client::new(ClientConfig {
            protocol: ClientProtocol::HttpsExcept(vec![host.to_owned()]),
            ..ClientConfig::default()
        });
        Self {
            client,
            runtime: runtime(),
            auth,
        }
    }

    /// Uploads `blobs` and then `manifest` of `media_type` under `reference`, and returns the
    /// manifest's digest.
    pub fn publish(
        &self,
        reference: &str,
        blobs: &[&[u8]],
        manifest: &Value,
        media_type: &str,
    ) -> String {
        let reference: Reference = reference.parse().expect("valid reference");
        let body = serde_json::to_vec(manifest).expect("serialize the manifest");
        self.runtime.block_on(async {
            self.client
                .auth(&reference, &self.auth, RegistryOperation::Push)
                .await
                .expect("authenticate for push");
            for blob in blobs {
                self.client
                    .push_blob(&reference, blob.to_vec(), &digest_of(blob))
                    .await
                    .expect("push a blob");
            }
            let content_type = media_type.parse().expect("valid header value");
            self.client
                .push_manifest_raw(&reference, body.clone(), content_type)
                .await
                .expect("push the manifest");
        });
        digest_of(&body)
    }

    /// Publishes `library` as an image manifest with a standard config for this host and
    /// one layer of `layer_media_type`, under `reference`. Returns the manifest digest.
    pub fn publish_library(
        &self,
        reference: &str,
        library: &[u8],
        layer_media_type: &str,
    ) -> String {
        let config = image_config(edgefn_loader::oci::host_architecture());
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, &config),
            "layers": [descriptor(layer_media_type, library)],
        });
        self.publish(reference, &[&config, library], &manifest, OCI_MANIFEST)
    }
}
