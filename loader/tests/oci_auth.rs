//! Credentials against the real registry with htpasswd basic auth: inline passwords,
//! `passwordData`, Secret manifests for `credentialsRef`, and secrets kept out of errors and
//! Debug output (`oci_logs.rs` checks the logs).

mod common;
mod oci_support;

use base64::Engine as _;
use common::TestDir;
use edgefn_loader::{FetchOptions, OciCredentials, OciError, OciSource, Secret, SecretRef};
use oci_client::secrets::RegistryAuth;
use oci_support::registry::{Auth, Registry, PASSWORD, USERNAME};
use oci_support::*;

const WRONG_PASSWORD: &str = "wrong-Pa55word-xyz";

fn base64_of(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Starts a basic-auth registry holding one plugin at `plugins/private:v1`.
fn private_registry() -> (Registry, String, Vec<u8>) {
    let registry = Registry::start(Auth::Basic);
    let library = fake_library(host_and_other_machine().0, "private");
    let repo = registry.repo("plugins/private");
    let auth = RegistryAuth::Basic(USERNAME.to_owned(), PASSWORD.to_owned());
    Publisher::new(&registry.host(), auth).publish_library(
        &format!("{repo}:v1"),
        &library,
        APOXY_CONTENT,
    );
    (registry, repo, library)
}

fn password(password: &str) -> OciCredentials {
    OciCredentials::Password {
        username: USERNAME.to_owned(),
        password: Secret::new(password),
    }
}

fn secret_ref(name: &str) -> OciCredentials {
    OciCredentials::SecretRef(SecretRef {
        name: name.to_owned(),
        namespace: "plugins".to_owned(),
        ..SecretRef::default()
    })
}

fn options_with_secrets(dir: &TestDir, registry: &Registry) -> FetchOptions {
    let secrets = dir.join("secrets");
    std::fs::create_dir_all(&secrets).expect("create the secrets directory");
    FetchOptions {
        secrets_dir: Some(secrets),
        ..options(dir, &registry.host())
    }
}

#[test]
fn inline_password_pulls() {
    let (registry, repo, library) = private_registry();
    let dir = TestDir::new("auth-inline");
    let source = OciSource::new(&repo, "v1").with_credentials(password(PASSWORD));
    let artifact = pull(&source, &options(&dir, &registry.host())).expect("pull with a password");
    assert_eq!(artifact.sha256, hex(&library));
}

#[test]
fn password_data_pulls() {
    let (registry, repo, library) = private_registry();
    let dir = TestDir::new("auth-data");
    let credentials = OciCredentials::PasswordData {
        username: USERNAME.to_owned(),
        password_data: Secret::new(base64_of(PASSWORD)),
    };
    let source = OciSource::new(&repo, "v1").with_credentials(credentials);
    let artifact = pull(&source, &options(&dir, &registry.host())).expect("pull with passwordData");
    assert_eq!(artifact.sha256, hex(&library));
}

#[test]
fn invalid_password_data_is_rejected() {
    let (registry, repo, _) = private_registry();
    let dir = TestDir::new("auth-bad-data");
    let credentials = OciCredentials::PasswordData {
        username: USERNAME.to_owned(),
        password_data: Secret::new("not base64!"),
    };
    let source = OciSource::new(&repo, "v1").with_credentials(credentials);
    let error = pull_oci_error(&source, &options(&dir, &registry.host()));
    assert!(
        matches!(error, OciError::InvalidPasswordData { .. }),
        "{error}"
    );
}

#[test]
fn wrong_password_is_unauthorized_without_secret() {
    let (registry, repo, _) = private_registry();
    let dir = TestDir::new("auth-wrong");
    let source = OciSource::new(&repo, "v1").with_credentials(password(WRONG_PASSWORD));
    let error = pull_oci_error(&source, &options(&dir, &registry.host()));
    let message = error.to_string();

    assert!(matches!(error, OciError::Unauthorized { .. }), "{error}");
    assert!(message.contains(&registry.host()), "{message}");
    assert!(message.contains("plugins/private"), "{message}");
    assert!(!message.contains(WRONG_PASSWORD), "{message}");
    assert!(!format!("{error:?}").contains(WRONG_PASSWORD));
}

#[test]
fn anonymous_pull_is_unauthorized() {
    let (registry, repo, _) = private_registry();
    let dir = TestDir::new("auth-anonymous");
    let error = pull_oci_error(
        &OciSource::new(&repo, "v1"),
        &options(&dir, &registry.host()),
    );
    assert!(matches!(error, OciError::Unauthorized { .. }), "{error}");
}

#[test]
fn dockerconfigjson_secret_pulls() {
    let (registry, repo, library) = private_registry();
    let dir = TestDir::new("auth-dockerconfig");
    let options = options_with_secrets(&dir, &registry);
    let config = format!(
        r#"{{"auths": {{"{}": {{"auth": "{}"}}}}}}"#,
        registry.host(),
        base64_of(&format!("{USERNAME}:{PASSWORD}"))
    );
    let manifest = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: other}}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata:\n  name: pull\n  namespace: plugins\n\
         type: kubernetes.io/dockerconfigjson\ndata:\n  .dockerconfigjson: {}\n",
        base64_of(&config)
    );
    let secrets_dir = options.secrets_dir.clone().expect("a secrets directory");
    std::fs::write(secrets_dir.join("pull.yaml"), manifest).expect("write the secret");

    let source = OciSource::new(&repo, "v1").with_credentials(secret_ref("pull"));
    let artifact = pull(&source, &options).expect("pull with a dockerconfigjson secret");
    assert_eq!(artifact.sha256, hex(&library));
}

#[test]
fn basic_auth_secret_pulls() {
    let (registry, repo, library) = private_registry();
    let dir = TestDir::new("auth-basic-secret");
    let options = options_with_secrets(&dir, &registry);
    let manifest = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": { "name": "basic", "namespace": "plugins" },
        "type": "kubernetes.io/basic-auth",
        "stringData": { "username": USERNAME, "password": PASSWORD },
    });
    let secrets_dir = options.secrets_dir.clone().expect("a secrets directory");
    std::fs::write(secrets_dir.join("basic.json"), manifest.to_string()).expect("write the secret");

    let source = OciSource::new(&repo, "v1").with_credentials(secret_ref("basic"));
    let artifact = pull(&source, &options).expect("pull with a basic-auth secret");
    assert_eq!(artifact.sha256, hex(&library));
}

#[test]
fn missing_secret_is_reported() {
    let (registry, repo, _) = private_registry();
    let dir = TestDir::new("auth-missing-secret");
    let source = OciSource::new(&repo, "v1").with_credentials(secret_ref("absent"));
    let error = pull_oci_error(&source, &options_with_secrets(&dir, &registry));
    assert!(matches!(error, OciError::SecretNotFound { .. }), "{error}");
    assert!(error.to_string().contains("plugins/absent"), "{error}");
}
