//! Pulls from a hand-written fake registry on 127.0.0.1, for the token flow (a
//! `WWW-Authenticate: Bearer realm=…` challenge and a token service) and for faults the real
//! registry cannot produce: corrupted and cut-off blobs, 403, 5xx and wrong media types.

mod common;
mod oci_support;

use common::TestDir;
use edgefn_loader::{FetchOptions, OciCredentials, OciError, OciSource, Secret, SecretRef};
use oci_support::fake::{Blob, FakeRegistry, TokenAuth};
use oci_support::*;
use serde_json::json;

const USERNAME: &str = "robot";
const PASSWORD: &str = "t0ken-Pa55word";

/// Serves `library` under `plugins/fake:v1` as an Apoxy-layout manifest. Returns the
/// manifest digest and the layer digest.
fn serve_plugin(registry: &FakeRegistry, library: &[u8]) -> (String, String) {
    let config = image_config(edgefn_loader::oci::host_architecture());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, &config),
        "layers": [descriptor(APOXY_CONTENT, library)],
    });
    let body = serde_json::to_vec(&manifest).expect("serialize");
    let digest = registry.set_manifest("v1", &body, OCI_MANIFEST);
    registry.set_blob(&digest_of(&config), Blob::Bytes(config));
    let layer_digest = digest_of(library);
    registry.set_blob(&layer_digest, Blob::Bytes(library.to_vec()));
    (digest, layer_digest)
}

fn token_auth(token_status: u16, uses_per_token: usize) -> TokenAuth {
    TokenAuth {
        username: USERNAME.to_owned(),
        password: PASSWORD.to_owned(),
        token_status,
        uses_per_token,
    }
}

fn source(registry: &FakeRegistry, password: &str) -> OciSource {
    OciSource::new(&format!("{}/plugins/fake", registry.host()), "v1").with_credentials(
        OciCredentials::Password {
            username: USERNAME.to_owned(),
            password: Secret::new(password),
        },
    )
}

fn library() -> Vec<u8> {
    fake_library(host_and_other_machine().0, "fake-registry")
}

#[test]
fn token_auth_pulls_with_right_credentials() {
    let registry = FakeRegistry::start();
    registry.state().token_auth = Some(token_auth(200, 100));
    let library = library();
    serve_plugin(&registry, &library);
    let dir = TestDir::new("fake-token");

    let artifact = pull(
        &source(&registry, PASSWORD),
        &options(&dir, &registry.host()),
    )
    .expect("pull with a token");

    assert_eq!(artifact.sha256, hex(&library));
    assert_eq!(registry.state().token_requests, 1);
}

#[test]
fn expired_token_is_fetched_again() {
    let registry = FakeRegistry::start();
    registry.state().token_auth = Some(token_auth(200, 1));
    let library = library();
    serve_plugin(&registry, &library);
    let dir = TestDir::new("fake-expired");

    let artifact = pull(
        &source(&registry, PASSWORD),
        &options(&dir, &registry.host()),
    )
    .expect("pull with tokens that last one request");

    assert_eq!(artifact.sha256, hex(&library));
    assert!(registry.state().token_requests >= 2);
}

#[test]
fn token_service_refusals_are_unauthorized() {
    for (status, password) in [
        (200, "wrong-password-123"),
        (401, PASSWORD),
        (403, PASSWORD),
    ] {
        let registry = FakeRegistry::start();
        registry.state().token_auth = Some(token_auth(status, 100));
        serve_plugin(&registry, &library());
        let dir = TestDir::new("fake-refused");

        let error = pull_oci_error(
            &source(&registry, password),
            &options(&dir, &registry.host()),
        );
        let message = error.to_string();

        assert!(
            matches!(error, OciError::Unauthorized { .. }),
            "{status}: {error}"
        );
        assert!(message.contains("plugins/fake"), "{message}");
        assert!(!message.contains(password), "{message}");
    }
}

#[test]
fn missing_secret_sends_nothing() {
    let registry = FakeRegistry::start();
    serve_plugin(&registry, &library());
    let dir = TestDir::new("fake-missing-secret");
    let secrets = dir.join("secrets");
    std::fs::create_dir_all(&secrets).expect("create the secrets directory");
    let options = FetchOptions {
        secrets_dir: Some(secrets),
        ..options(&dir, &registry.host())
    };
    let source = OciSource::new(&format!("{}/plugins/fake", registry.host()), "v1")
        .with_credentials(OciCredentials::SecretRef(SecretRef {
            name: "absent".to_owned(),
            namespace: "default".to_owned(),
            ..SecretRef::default()
        }));

    let error = pull_oci_error(&source, &options);

    assert!(matches!(error, OciError::SecretNotFound { .. }), "{error}");
    assert_eq!(registry.state().requests, 0);
}

fn cached_files(options: &FetchOptions) -> usize {
    std::fs::read_dir(options.cache_dir.join("sha256"))
        .map(|entries| entries.flatten().count())
        .unwrap_or(0)
}

#[test]
fn corrupted_layer_is_not_cached() {
    let registry = FakeRegistry::start();
    let library = library();
    let (_, layer_digest) = serve_plugin(&registry, &library);
    let mut corrupted = library.clone();
    let last = corrupted.len() - 1;
    corrupted[last] ^= 0xff;
    registry.set_blob(&layer_digest, Blob::Bytes(corrupted));
    let dir = TestDir::new("fake-corrupted");
    let options = options(&dir, &registry.host());

    let error = pull_oci_error(
        &OciSource::new(&format!("{}/plugins/fake", registry.host()), "v1"),
        &options,
    );

    assert!(matches!(error, OciError::DigestMismatch { .. }), "{error}");
    assert!(error.to_string().contains(&layer_digest), "{error}");
    assert_eq!(cached_files(&options), 0);
}

#[test]
fn cut_off_layer_is_truncated() {
    let registry = FakeRegistry::start();
    let library = library();
    let (_, layer_digest) = serve_plugin(&registry, &library);
    let sent = library[..library.len() / 2].to_vec();
    registry.set_blob(
        &layer_digest,
        Blob::Truncated {
            declared: library.len(),
            sent,
        },
    );
    let dir = TestDir::new("fake-truncated");
    let options = options(&dir, &registry.host());

    let error = pull_oci_error(
        &OciSource::new(&format!("{}/plugins/fake", registry.host()), "v1"),
        &options,
    );

    assert!(matches!(error, OciError::Truncated { .. }), "{error}");
    assert_eq!(cached_files(&options), 0);
}

#[test]
fn forbidden_manifest_is_reported() {
    let registry = FakeRegistry::start();
    serve_plugin(&registry, &library());
    registry.state().manifest_status = Some(403);
    let dir = TestDir::new("fake-forbidden");
    let repo = format!("{}/plugins/fake", registry.host());

    let error = pull_oci_error(
        &OciSource::new(&repo, "v1"),
        &options(&dir, &registry.host()),
    );
    assert!(matches!(error, OciError::Forbidden { .. }), "{error}");
}

#[test]
fn server_error_falls_back_to_last_pull() {
    let registry = FakeRegistry::start();
    let library = library();
    serve_plugin(&registry, &library);
    let dir = TestDir::new("fake-503");
    let options = options(&dir, &registry.host());
    let repo = format!("{}/plugins/fake", registry.host());
    pull(&OciSource::new(&repo, "v1"), &options).expect("first pull");

    registry.state().manifest_status = Some(503);
    let fallback = pull(&OciSource::new(&repo, "v1"), &options).expect("fallback pull");
    let other_tag = pull_oci_error(&OciSource::new(&repo, "v2"), &options);

    assert_eq!(fallback.sha256, hex(&library));
    assert!(
        matches!(other_tag, OciError::ServerStatus { status: 503, .. }),
        "{other_tag}"
    );
}

#[test]
fn unknown_manifest_media_type_is_rejected() {
    let registry = FakeRegistry::start();
    let library = library();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.artifact.manifest.v1+json",
        "layers": [descriptor(APOXY_CONTENT, &library)],
    });
    let body = serde_json::to_vec(&manifest).expect("serialize");
    registry.set_manifest("v1", &body, OCI_MANIFEST);
    let dir = TestDir::new("fake-media-type");
    let repo = format!("{}/plugins/fake", registry.host());

    let error = pull_oci_error(
        &OciSource::new(&repo, "v1"),
        &options(&dir, &registry.host()),
    );
    assert!(
        matches!(error, OciError::UnsupportedMediaType { .. }),
        "{error}"
    );
}

#[test]
fn plain_http_needs_insecure_opt_in() {
    let registry = FakeRegistry::start();
    serve_plugin(&registry, &library());
    let dir = TestDir::new("fake-https");
    let options = FetchOptions {
        insecure_registries: Vec::new(),
        ..options(&dir, &registry.host())
    };
    let repo = format!("{}/plugins/fake", registry.host());

    let error = pull_oci_error(&OciSource::new(&repo, "v1"), &options);

    assert!(matches!(error, OciError::Unreachable { .. }), "{error}");
    assert!(
        error.to_string().contains("EDGEFN_INSECURE_REGISTRIES"),
        "{error}"
    );
}
