//! Pulls from the real CNCF distribution registry (Debian's `docker-registry`) on 127.0.0.1:
//! the published layout, image indexes, the other artifact shapes, the cache and its records,
//! and the fallback while the registry is down.

mod common;
mod oci_support;

use std::path::PathBuf;

use common::TestDir;
use edgefn_loader::oci::{push, PushOptions};
use edgefn_loader::{FetchOptions, OciError, OciSource};
use oci_client::secrets::RegistryAuth;
use oci_support::registry::{Auth, Registry};
use oci_support::*;
use serde_json::json;

fn blobs_in(options: &FetchOptions) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(options.cache_dir.join("sha256"))
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .filter(|name| !name.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Pushes `files` to `reference` with the loader's own push, over plain HTTP.
fn push_files(reference: &str, files: &[PathBuf]) -> String {
    let options = PushOptions {
        insecure: true,
        ..PushOptions::default()
    };
    runtime()
        .block_on(push(reference, files, &options, &mut |_| {}))
        .unwrap_or_else(|error| panic!("push {reference}: {error}"))
        .digest
}

fn write_library(dir: &TestDir, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write the library");
    path
}

#[test]
fn pushed_plugin_pulls_identical_bytes() {
    let registry = Registry::start(Auth::None);
    let dir = TestDir::new("oci-roundtrip");
    let (host_machine, _) = host_and_other_machine();
    let library = fake_library(host_machine, "roundtrip");
    let file = write_library(&dir, "plugin.so", &library);
    let reference = format!("{}:v1", registry.repo("plugins/roundtrip"));
    push_files(&reference, &[file]);

    let options = options(&dir, &registry.host());
    let source = OciSource::new(&registry.repo("plugins/roundtrip"), "v1");
    let artifact = pull(&source, &options).expect("pull the pushed plugin");

    assert_eq!(std::fs::read(&artifact.path).ok(), Some(library.clone()));
    assert_eq!(artifact.sha256, hex(&library));
    assert_eq!(
        artifact.path,
        options.cache_dir.join("sha256").join(hex(&library))
    );
}

#[test]
fn image_index_picks_host_platform() {
    let registry = Registry::start(Auth::None);
    let dir = TestDir::new("oci-index");
    let (host_machine, other_machine) = host_and_other_machine();
    let host_library = fake_library(host_machine, "host");
    let other_library = fake_library(other_machine, "other");
    let files = [
        write_library(&dir, "other.so", &other_library),
        write_library(&dir, "host.so", &host_library),
    ];
    push_files(&format!("{}:multi", registry.repo("plugins/index")), &files);

    let options = options(&dir, &registry.host());
    let source = OciSource::new(&registry.repo("plugins/index"), "multi");
    let artifact = pull(&source, &options).expect("pull from the index");

    assert_eq!(artifact.sha256, hex(&host_library));
}

#[test]
fn index_without_host_platform_is_rejected() {
    let registry = Registry::start(Auth::None);
    let dir = TestDir::new("oci-index-missing");
    let (_, other_machine) = host_and_other_machine();
    const EM_S390: u16 = 22;
    let files = [
        write_library(&dir, "other.so", &fake_library(other_machine, "o")),
        write_library(&dir, "s390x.so", &fake_library(EM_S390, "s")),
    ];
    let repo = registry.repo("plugins/foreign-index");
    push_files(&format!("{repo}:v1"), &files);

    let options = options(&dir, &registry.host());
    let error = pull_oci_error(&OciSource::new(&repo, "v1"), &options);

    assert!(
        matches!(error, OciError::NoMatchingPlatform { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("linux/s390x"), "{error}");
}

#[test]
fn foreign_architecture_config_is_rejected() {
    let registry = Registry::start(Auth::None);
    let dir = TestDir::new("oci-foreign");
    let (_, other_machine) = host_and_other_machine();
    let files = [write_library(
        &dir,
        "other.so",
        &fake_library(other_machine, "o"),
    )];
    let repo = registry.repo("plugins/foreign");
    push_files(&format!("{repo}:v1"), &files);

    let options = options(&dir, &registry.host());
    let error = pull_oci_error(&OciSource::new(&repo, "v1"), &options);
    assert!(matches!(error, OciError::WrongPlatform { .. }), "{error}");
}

#[test]
fn tag_and_digest_share_one_cache_entry() {
    let registry = Registry::start(Auth::None);
    let dir = TestDir::new("oci-tag-digest");
    let library = fake_library(host_and_other_machine().0, "shared");
    let file = write_library(&dir, "plugin.so", &library);
    let repo = registry.repo("plugins/shared");
    let digest = push_files(&format!("{repo}:v1"), &[file]);

    let options = options(&dir, &registry.host());
    let by_tag = pull(&OciSource::new(&repo, "v1"), &options).expect("pull by tag");
    let by_digest =
        pull(&OciSource::new(&format!("{repo}@{digest}"), ""), &options).expect("pull by digest");

    assert_eq!(by_tag.path, by_digest.path);
    assert_eq!(blobs_in(&options), vec![hex(&library)]);
}

#[test]
fn digest_pinned_reference_needs_no_registry() {
    let mut registry = Registry::start(Auth::None);
    let dir = TestDir::new("oci-pinned");
    let library = fake_library(host_and_other_machine().0, "pinned");
    let file = write_library(&dir, "plugin.so", &library);
    let repo = registry.repo("plugins/pinned");
    let digest = push_files(&format!("{repo}:v1"), &[file]);
    let source = OciSource::new(&format!("{repo}@{digest}"), "");
    let options = options(&dir, &registry.host());
    pull(&source, &options).expect("first pull");

    registry.stop();
    let again = pull(&source, &options).expect("pull from the cache with the registry down");

    assert_eq!(again.sha256, hex(&library));
}

#[test]
fn tag_falls_back_while_registry_is_down() {
    let mut registry = Registry::start(Auth::None);
    let dir = TestDir::new("oci-fallback");
    let library = fake_library(host_and_other_machine().0, "fallback");
    let file = write_library(&dir, "plugin.so", &library);
    let repo = registry.repo("plugins/fallback");
    push_files(&format!("{repo}:v1"), &[file]);
    let options = options(&dir, &registry.host());
    pull(&OciSource::new(&repo, "v1"), &options).expect("first pull");

    registry.stop();
    let cached = pull(&OciSource::new(&repo, "v1"), &options).expect("fallback pull");
    let never_pulled = pull_oci_error(&OciSource::new(&repo, "v2"), &options);

    assert_eq!(cached.sha256, hex(&library));
    assert!(
        matches!(never_pulled, OciError::Unreachable { .. }),
        "{never_pulled}"
    );
}

#[test]
fn moved_tag_is_pulled_again() {
    let registry = Registry::start(Auth::None);
    let dir = TestDir::new("oci-moved");
    let machine = host_and_other_machine().0;
    let first = fake_library(machine, "first");
    let second = fake_library(machine, "second");
    let repo = registry.repo("plugins/moved");
    let options = options(&dir, &registry.host());

    push_files(
        &format!("{repo}:v1"),
        &[write_library(&dir, "a.so", &first)],
    );
    let before = pull(&OciSource::new(&repo, "v1"), &options).expect("pull the first push");
    push_files(
        &format!("{repo}:v1"),
        &[write_library(&dir, "b.so", &second)],
    );
    let after = pull(&OciSource::new(&repo, "v1"), &options).expect("pull the second push");

    assert_eq!(before.sha256, hex(&first));
    assert_eq!(after.sha256, hex(&second));
}

#[test]
fn missing_tag_is_not_found() {
    let registry = Registry::start(Auth::None);
    let dir = TestDir::new("oci-missing");
    let options = options(&dir, &registry.host());
    let error = pull_oci_error(
        &OciSource::new(&registry.repo("plugins/none"), "v1"),
        &options,
    );
    assert!(matches!(error, OciError::NotFound { .. }), "{error}");
    assert!(error.to_string().contains("plugins/none"), "{error}");
}

#[test]
fn layer_over_size_limit_is_rejected() {
    let registry = Registry::start(Auth::None);
    let dir = TestDir::new("oci-too-large");
    let library = fake_library(host_and_other_machine().0, &"x".repeat(4096));
    let repo = registry.repo("plugins/large");
    push_files(
        &format!("{repo}:v1"),
        &[write_library(&dir, "big.so", &library)],
    );
    let options = FetchOptions {
        max_size: 1024,
        ..options(&dir, &registry.host())
    };

    let error = pull_oci_error(&OciSource::new(&repo, "v1"), &options);

    assert!(matches!(error, OciError::TooLarge { .. }), "{error}");
    assert!(blobs_in(&options).is_empty());
}

#[test]
fn oras_style_raw_layer_loads() {
    let registry = Registry::start(Auth::None);
    let dir = TestDir::new("oci-oras");
    let library = fake_library(host_and_other_machine().0, "oras");
    let empty = b"{}".to_vec();
    let mut layer = descriptor("application/vnd.example.plugin", &library);
    layer["annotations"] = json!({ "org.opencontainers.image.title": "plugin.so" });
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.plugin",
        "config": descriptor(OCI_EMPTY, &empty),
        "layers": [layer],
    });
    let repo = registry.repo("plugins/oras");
    Publisher::new(&registry.host(), RegistryAuth::Anonymous).publish(
        &format!("{repo}:v1"),
        &[&empty, &library],
        &manifest,
        OCI_MANIFEST,
    );

    let options = options(&dir, &registry.host());
    let artifact = pull(&OciSource::new(&repo, "v1"), &options).expect("pull the artifact");
    assert_eq!(artifact.sha256, hex(&library));
}

#[test]
fn apoxy_config_media_type_is_accepted() {
    let registry = Registry::start(Auth::None);
    let dir = TestDir::new("oci-apoxy-config");
    let library = fake_library(host_and_other_machine().0, "apoxy");
    let config = b"{}".to_vec();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(APOXY_CONFIG, &config),
        "layers": [descriptor(APOXY_CONTENT, &library)],
    });
    let repo = registry.repo("plugins/apoxy");
    Publisher::new(&registry.host(), RegistryAuth::Anonymous).publish(
        &format!("{repo}:v1"),
        &[&config, &library],
        &manifest,
        OCI_MANIFEST,
    );

    let artifact = pull(
        &OciSource::new(&repo, "v1"),
        &options(&dir, &registry.host()),
    )
    .expect("pull the Apoxy-config artifact");
    assert_eq!(artifact.sha256, hex(&library));
}

/// Publishes a Docker-style image whose layers are `layers` (media type, bytes).
fn publish_image(registry: &Registry, repository: &str, layers: &[(&str, Vec<u8>)]) -> String {
    let config = image_config(edgefn_loader::oci::host_architecture());
    let descriptors: Vec<_> = layers
        .iter()
        .map(|(media_type, bytes)| descriptor(media_type, bytes))
        .collect();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": descriptor(DOCKER_CONFIG, &config),
        "layers": descriptors,
    });
    let mut blobs: Vec<&[u8]> = vec![&config];
    blobs.extend(layers.iter().map(|(_, bytes)| bytes.as_slice()));
    let repo = registry.repo(repository);
    Publisher::new(&registry.host(), RegistryAuth::Anonymous).publish(
        &format!("{repo}:v1"),
        &blobs,
        &manifest,
        DOCKER_MANIFEST,
    );
    repo
}

#[test]
fn docker_image_tar_gzip_layer_loads() {
    let registry = Registry::start(Auth::None);
    let dir = TestDir::new("oci-docker");
    let library = fake_library(host_and_other_machine().0, "docker");
    let layer = gzip(&tar_of(&[
        ("usr/lib/edgefn/plugin.so", &library),
        ("etc/readme", b"hi"),
    ]));
    let repo = publish_image(&registry, "plugins/docker", &[(DOCKER_LAYER_GZIP, layer)]);

    let artifact = pull(
        &OciSource::new(&repo, "v1"),
        &options(&dir, &registry.host()),
    )
    .expect("pull the Docker image");
    assert_eq!(std::fs::read(&artifact.path).ok(), Some(library));
}

#[test]
fn library_in_last_of_several_layers_loads() {
    let registry = Registry::start(Auth::None);
    let dir = TestDir::new("oci-layers");
    let library = fake_library(host_and_other_machine().0, "last");
    let layers = [
        (OCI_LAYER_GZIP, gzip(&tar_of(&[("etc/config", b"a")]))),
        (OCI_LAYER_TAR, tar_of(&[("bin/tool", b"b")])),
        (OCI_LAYER_GZIP, gzip(&tar_of(&[("plugin.so", &library)]))),
    ];
    let repo = publish_image(&registry, "plugins/layers", &layers);

    let artifact = pull(
        &OciSource::new(&repo, "v1"),
        &options(&dir, &registry.host()),
    )
    .expect("pull the layered image");
    assert_eq!(artifact.sha256, hex(&library));
}

#[test]
fn two_candidates_are_rejected() {
    let registry = Registry::start(Auth::None);
    let dir = TestDir::new("oci-two");
    let layer = gzip(&tar_of(&[("a.so", b"\x7fELF a"), ("b.so", b"\x7fELF b")]));
    let repo = publish_image(&registry, "plugins/two", &[(OCI_LAYER_GZIP, layer)]);

    let error = pull_oci_error(
        &OciSource::new(&repo, "v1"),
        &options(&dir, &registry.host()),
    );

    assert!(
        matches!(
            error,
            OciError::LayerSelection {
                found: 2,
                layer_count: 1,
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains(OCI_LAYER_GZIP), "{error}");
}

#[test]
fn path_traversal_is_rejected() {
    let registry = Registry::start(Auth::None);
    let dir = TestDir::new("oci-traversal");
    let layer = tar_of(&[("../../etc/plugin.so", b"\x7fELF x")]);
    let repo = publish_image(&registry, "plugins/traversal", &[(OCI_LAYER_TAR, layer)]);

    let error = pull_oci_error(
        &OciSource::new(&repo, "v1"),
        &options(&dir, &registry.host()),
    );
    assert!(
        matches!(error, OciError::UnsafeArchiveEntry { .. }),
        "{error}"
    );
}

#[test]
fn symlink_library_is_rejected() {
    let registry = Registry::start(Auth::None);
    let dir = TestDir::new("oci-symlink");
    let layer = tar_with_symlink("plugin.so", "/usr/lib/libc.so");
    let repo = publish_image(&registry, "plugins/symlink", &[(OCI_LAYER_TAR, layer)]);

    let error = pull_oci_error(
        &OciSource::new(&repo, "v1"),
        &options(&dir, &registry.host()),
    );
    assert!(
        matches!(error, OciError::UnsafeArchiveEntry { .. }),
        "{error}"
    );
}

#[test]
fn layer_without_library_is_rejected() {
    let registry = Registry::start(Auth::None);
    let dir = TestDir::new("oci-none");
    let repo = publish_image(
        &registry,
        "plugins/nolib",
        &[("application/json", b"{}".to_vec())],
    );

    let error = pull_oci_error(
        &OciSource::new(&repo, "v1"),
        &options(&dir, &registry.host()),
    );

    assert!(
        matches!(
            error,
            OciError::LayerSelection {
                found: 0,
                layer_count: 1,
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("application/json"), "{error}");
}
