//! Registry credentials: inline username and password, base64 `passwordData`, or a Kubernetes
//! Secret manifest found in the secrets directory.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use oci_client::secrets::RegistryAuth;
use oci_client::Reference;
use serde::Deserialize;
use tracing::{debug, warn};

use super::error::OciError;
use super::{OciCredentials, OciSource, Secret, SecretRef};

/// Maximum number of directory entries examined in the secrets directory.
const MAX_SECRET_FILES: usize = 10_000;

/// Maximum size of one secret manifest file.
const MAX_SECRET_FILE_SIZE: u64 = 1024 * 1024;

const DOCKER_CONFIG_JSON_TYPE: &str = "kubernetes.io/dockerconfigjson";
const DOCKER_CONFIG_JSON_KEY: &str = ".dockerconfigjson";
const BASIC_AUTH_TYPE: &str = "kubernetes.io/basic-auth";

/// Host names under which Docker Hub appears in Docker config files.
const DOCKER_HUB_HOSTS: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];

/// Credentials ready for the registry client, and the password to scrub from any text that
/// the registry or its token service sends back.
pub(crate) struct ResolvedAuth {
    pub(crate) auth: RegistryAuth,
    pub(crate) password: Option<Secret>,
}

impl ResolvedAuth {
    pub(crate) fn anonymous() -> Self {
        Self {
            auth: RegistryAuth::Anonymous,
            password: None,
        }
    }

    pub(crate) fn basic(username: &str, password: &str) -> Self {
        Self {
            auth: RegistryAuth::Basic(username.to_owned(), password.to_owned()),
            password: (!password.is_empty()).then(|| Secret::new(password)),
        }
    }

    /// Returns `text` with every occurrence of the password replaced by `<redacted>`.
    pub(crate) fn scrub(&self, text: &str) -> String {
        match &self.password {
            Some(password) if !password.expose().is_empty() => {
                text.replace(password.expose(), "<redacted>")
            }
            _ => text.to_owned(),
        }
    }
}

/// Resolves the credentials of `source` without contacting the registry.
pub(crate) fn resolve(
    source: &OciSource,
    reference: &Reference,
    secrets_dir: Option<&Path>,
) -> Result<ResolvedAuth, OciError> {
    match &source.credentials {
        None => Ok(ResolvedAuth::anonymous()),
        Some(OciCredentials::Password { username, password }) => {
            Ok(ResolvedAuth::basic(username, password.expose()))
        }
        Some(OciCredentials::PasswordData {
            username,
            password_data,
        }) => {
            let invalid = || OciError::InvalidPasswordData {
                reference: reference.whole(),
            };
            let password = decode_base64(password_data.expose()).ok_or_else(invalid)?;
            let password = String::from_utf8(password).map_err(|_| invalid())?;
            Ok(ResolvedAuth::basic(username, &password))
        }
        Some(OciCredentials::SecretRef(secret_ref)) => {
            resolve_secret_ref(secret_ref, reference, secrets_dir)
        }
    }
}

/// Decodes standard padded base64, skipping `\r` and `\n` as Go's decoder does.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let compact: String = text.chars().filter(|c| *c != '\r' && *c != '\n').collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .ok()
}

#[derive(Debug, Default, Deserialize)]
struct Metadata {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: String,
}

/// The fields of a Secret manifest read here. `Debug` is not derived: `data` holds secrets.
#[derive(Deserialize)]
struct SecretManifest {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    metadata: Metadata,
    #[serde(default, rename = "type")]
    secret_type: String,
    #[serde(default)]
    data: BTreeMap<String, String>,
    #[serde(default, rename = "stringData")]
    string_data: BTreeMap<String, String>,
}

/// Namespace a Secret without one, or a reference without one, stands for.
const DEFAULT_NAMESPACE: &str = "default";

fn namespace_or_default(namespace: &str) -> &str {
    if namespace.is_empty() {
        DEFAULT_NAMESPACE
    } else {
        namespace
    }
}

fn resolve_secret_ref(
    secret_ref: &SecretRef,
    reference: &Reference,
    secrets_dir: Option<&Path>,
) -> Result<ResolvedAuth, OciError> {
    let namespace = namespace_or_default(&secret_ref.namespace).to_owned();
    let kind_ok = secret_ref.kind.is_empty() || secret_ref.kind == "Secret";
    if !secret_ref.group.is_empty() || !kind_ok {
        return Err(OciError::UnsupportedCredentialsRef {
            reference: reference.whole(),
            group: secret_ref.group.clone(),
            kind: secret_ref.kind.clone(),
        });
    }
    let Some(dir) = secrets_dir else {
        return Err(OciError::SecretsDirUnset {
            reference: reference.whole(),
            namespace,
            name: secret_ref.name.clone(),
        });
    };

    let files = list_manifest_files(dir)?;
    for file in &files {
        let Some(secret) = find_in_file(file, &secret_ref.name, &namespace) else {
            continue;
        };
        debug!(
            file = %file.display(),
            name = %secret_ref.name,
            %namespace,
            "found the registry secret",
        );
        let invalid = |reason: String| OciError::InvalidSecret {
            reference: reference.whole(),
            namespace: namespace.clone(),
            name: secret_ref.name.clone(),
            file: file.clone(),
            reason,
        };
        return credentials_from_secret(&secret, reference).map_err(invalid);
    }

    Err(OciError::SecretNotFound {
        reference: reference.whole(),
        namespace,
        name: secret_ref.name.clone(),
        dir: dir.to_owned(),
        files: files.len(),
    })
}

/// Lists `*.yaml`, `*.yml` and `*.json` files in `dir`, sorted by name.
fn list_manifest_files(dir: &Path) -> Result<Vec<PathBuf>, OciError> {
    let entries = fs::read_dir(dir).map_err(|error| OciError::SecretsDir {
        dir: dir.to_owned(),
        detail: error.to_string(),
    })?;
    let mut files: Vec<PathBuf> = entries
        .take(MAX_SECRET_FILES)
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            matches!(extension, "yaml" | "yml" | "json") && path.is_file()
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Returns the Secret named `name` in `namespace` from `file`, which may hold several YAML
/// documents. Unreadable files and documents are skipped with a warning that names the file
/// only, because a parser message could quote secret bytes.
fn find_in_file(file: &Path, name: &str, namespace: &str) -> Option<SecretManifest> {
    let text = match fs::metadata(file) {
        Ok(metadata) if metadata.len() > MAX_SECRET_FILE_SIZE => {
            warn!(
                file = %file.display(),
                limit = MAX_SECRET_FILE_SIZE,
                "skipping a secret file over the size limit",
            );
            return None;
        }
        Ok(_) => match fs::read_to_string(file) {
            Ok(text) => text,
            Err(error) => {
                warn!(file = %file.display(), %error, "cannot read a secret file");
                return None;
            }
        },
        Err(error) => {
            warn!(file = %file.display(), %error, "cannot read a secret file");
            return None;
        }
    };

    for document in serde_yaml_ng::Deserializer::from_str(&text) {
        let Ok(manifest) = SecretManifest::deserialize(document) else {
            warn!(file = %file.display(), "skipping a document that is not a valid manifest");
            continue;
        };
        let matches = manifest.kind == "Secret"
            && manifest.metadata.name == name
            && namespace_or_default(&manifest.metadata.namespace) == namespace;
        if matches {
            return Some(manifest);
        }
    }
    None
}

/// Returns the value of `key` from `stringData`, else base64-decoded from `data`.
fn secret_value(secret: &SecretManifest, key: &str) -> Result<Option<String>, String> {
    if let Some(value) = secret.string_data.get(key) {
        return Ok(Some(value.clone()));
    }
    let Some(encoded) = secret.data.get(key) else {
        return Ok(None);
    };
    let bytes = decode_base64(encoded).ok_or_else(|| format!("data.{key} is not valid base64"))?;
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| format!("data.{key} is not UTF-8 text"))
}

fn credentials_from_secret(
    secret: &SecretManifest,
    reference: &Reference,
) -> Result<ResolvedAuth, String> {
    match secret.secret_type.as_str() {
        BASIC_AUTH_TYPE => {
            let username = secret_value(secret, "username")?.unwrap_or_default();
            let password = secret_value(secret, "password")?
                .ok_or_else(|| "the basic-auth secret has no password key".to_owned())?;
            Ok(ResolvedAuth::basic(&username, &password))
        }
        DOCKER_CONFIG_JSON_TYPE => {
            let json = secret_value(secret, DOCKER_CONFIG_JSON_KEY)?
                .ok_or_else(|| format!("the secret has no {DOCKER_CONFIG_JSON_KEY} key"))?;
            docker_config_credentials(&json, reference)
        }
        other => Err(format!("unsupported secret type `{other}`")),
    }
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, DockerAuth>,
}

#[derive(Deserialize)]
struct DockerAuth {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    /// Standard base64 of `username:password`.
    #[serde(default)]
    auth: String,
}

/// Picks the entry of a Docker config JSON for the reference's registry. An entry with a path
/// (`host/org`) applies to repositories under that path, and the longest match wins.
fn docker_config_credentials(json: &str, reference: &Reference) -> Result<ResolvedAuth, String> {
    let config: DockerConfig = serde_json::from_str(json)
        .map_err(|_| format!("{DOCKER_CONFIG_JSON_KEY} is not a Docker config JSON object"))?;

    let best = config
        .auths
        .iter()
        .filter_map(|(key, auth)| {
            match_specificity(key, reference.registry(), reference.repository())
                .map(|specificity| (specificity, key, auth))
        })
        .max_by_key(|(specificity, _, _)| *specificity);
    let Some((_, key, auth)) = best else {
        let hosts: Vec<&str> = config.auths.keys().map(String::as_str).collect();
        return Err(format!(
            "{DOCKER_CONFIG_JSON_KEY} has no entry for registry {} (entries: {})",
            reference.registry(),
            hosts.join(", ")
        ));
    };

    if !auth.username.is_empty() || !auth.password.is_empty() {
        return Ok(ResolvedAuth::basic(&auth.username, &auth.password));
    }
    let decoded = decode_base64(&auth.auth)
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| format!("the auth field of entry {key} is not valid base64"))?;
    let (username, password) = decoded
        .split_once(':')
        .ok_or_else(|| format!("the auth field of entry {key} is not username:password"))?;
    Ok(ResolvedAuth::basic(username, password))
}

/// Returns how specifically the Docker config key `key` names `repository` on `registry`:
/// the length of its path, or `None` when it does not apply.
fn match_specificity(key: &str, registry: &str, repository: &str) -> Option<usize> {
    let without_scheme = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let (host, path) = match without_scheme.split_once('/') {
        Some((host, path)) => (host, path.trim_end_matches('/')),
        None => (without_scheme, ""),
    };

    let is_hub = |name: &str| DOCKER_HUB_HOSTS.contains(&name);
    let same_host = host == registry || (is_hub(host) && is_hub(registry));
    if !same_host {
        return None;
    }
    // `https://index.docker.io/v1/` and similar keys name the API version, not a path.
    if path.is_empty() || path == "v1" || path == "v2" {
        return Some(0);
    }
    let under_path = repository == path
        || repository
            .strip_prefix(path)
            .is_some_and(|rest| rest.starts_with('/'));
    under_path.then_some(path.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(text: &str) -> Reference {
        text.parse().expect("valid reference")
    }

    #[test]
    fn docker_hub_key_matches_short_names() {
        let specificity =
            match_specificity("https://index.docker.io/v1/", "docker.io", "library/plugin");
        assert_eq!(specificity, Some(0));
    }

    #[test]
    fn path_key_matches_only_its_repositories() {
        assert_eq!(
            match_specificity("ghcr.io/org", "ghcr.io", "org/plugin"),
            Some(3)
        );
        assert_eq!(
            match_specificity("ghcr.io/org", "ghcr.io", "orgx/plugin"),
            None
        );
        assert_eq!(match_specificity("quay.io", "ghcr.io", "org/plugin"), None);
    }

    #[test]
    fn docker_config_auth_field_is_decoded() {
        let json = r#"{"auths": {"127.0.0.1:5000": {"auth": "dXNlcjpwYXNzOndvcmQ="}}}"#;
        let resolved = docker_config_credentials(json, &reference("127.0.0.1:5000/a/b:v1"))
            .unwrap_or_else(|reason| panic!("{reason}"));
        let expected = RegistryAuth::Basic("user".to_owned(), "pass:word".to_owned());
        assert!(resolved.auth == expected);
    }

    #[test]
    fn docker_config_without_entry_names_registry() {
        let json = r#"{"auths": {"ghcr.io": {"username": "u", "password": "p"}}}"#;
        let error = docker_config_credentials(json, &reference("127.0.0.1:5000/a/b:v1"))
            .err()
            .unwrap_or_default();
        assert!(error.contains("127.0.0.1:5000"), "{error}");
    }

    #[test]
    fn scrub_removes_password() {
        let resolved = ResolvedAuth::basic("user", "hunter2");
        assert_eq!(resolved.scrub("bad hunter2 here"), "bad <redacted> here");
    }
}
