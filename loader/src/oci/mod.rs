//! Plugins from OCI registries: references, credentials, pulls into the artifact cache, and
//! pushes in the layout that Apoxy and edgefn pull.
//!
//! A pull resolves the reference to a manifest digest, picks the manifest for `linux` and this
//! host's architecture from an image index, and takes the plugin library from the layers:
//! the first layer of media type [`CONTENT_MEDIA_TYPE`] as raw bytes, else the only layer when
//! it is a raw library (as ORAS pushes files), else the only `.so` file in the tar or
//! tar+gzip layers of a container image. Every manifest, config and layer is checked against
//! its digest before it is used or cached.
//!
//! Records under `<cache>/oci/` map tags to manifest digests and manifest and layer digests to
//! the library's digest, so a digest already seen needs no layer download, a digest-pinned
//! reference needs no request at all, and a tag still loads while its registry is down.

mod client;
mod credentials;
mod error;
mod layer;
mod manifest;
mod platform;
mod pull;
mod push;
mod records;
mod reference;

use std::fmt;

pub use error::OciError;
pub use platform::{elf_architecture, host_architecture};
pub use push::{push, PushOptions, PushedPlugin};
pub use reference::{parse_insecure_registries, INSECURE_REGISTRIES_ENV};

pub(crate) use pull::fetch_oci;

/// Media type of the layer that holds the raw plugin library (not a tar, despite the name).
pub const CONTENT_MEDIA_TYPE: &str = "application/vnd.apoxy.dev.image.content.v1.tar+gzip";

/// Apoxy's own config media type, accepted in place of a standard image config.
pub const APOXY_CONFIG_MEDIA_TYPE: &str = "application/vnd.apoxy.dev.image.config.v1+json";

/// Environment variable naming the directory of Kubernetes Secret manifests that
/// `credentialsRef` is resolved from.
pub const SECRETS_DIR_ENV: &str = "EDGEFN_SECRETS_DIR";

/// A plugin in an OCI registry: `goPluginSource.oci` of an EdgeFunctionRevision.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OciSource {
    /// Repository, such as `ghcr.io/example/plugin` or `plugin` (Docker Hub's `library/`),
    /// optionally followed by `@sha256:<hex>` to pin a manifest digest.
    pub repo: String,
    /// Tag; empty means `latest`. Ignored when `repo` names a digest.
    pub tag: String,
    /// Credentials; `None` pulls anonymously.
    pub credentials: Option<OciCredentials>,
}

impl From<&edgefn_proto::OciImageRef> for OciSource {
    /// Converts `goPluginSource.oci`. `passwordData` wins over `password`, as in Apoxy, which
    /// moves the password there and reads only `passwordData`.
    fn from(oci: &edgefn_proto::OciImageRef) -> Self {
        let credentials = match (&oci.credentials, &oci.credentials_ref) {
            (Some(inline), _) => Some(match &inline.password_data {
                Some(data) => OciCredentials::PasswordData {
                    username: inline.username.clone(),
                    password_data: Secret::new(data.0.clone()),
                },
                None => OciCredentials::Password {
                    username: inline.username.clone(),
                    password: Secret::new(inline.password.clone()),
                },
            }),
            (None, Some(reference)) => Some(OciCredentials::SecretRef(SecretRef {
                group: reference.group.clone(),
                kind: reference.kind.clone(),
                name: reference.name.clone(),
                namespace: reference.namespace.clone(),
            })),
            (None, None) => None,
        };
        Self {
            repo: oci.repo.clone(),
            tag: oci.tag.clone(),
            credentials,
        }
    }
}

impl OciSource {
    /// Returns an anonymous source for `repo` and `tag`.
    pub fn new(repo: &str, tag: &str) -> Self {
        Self {
            repo: repo.to_owned(),
            tag: tag.to_owned(),
            credentials: None,
        }
    }

    /// Splits a reference such as `127.0.0.1:5000/plugins/a:v1` into `repo` and `tag`. A
    /// reference with `@sha256:` keeps the digest in `repo`.
    pub fn from_reference(reference: &str) -> Self {
        let reference = reference.trim();
        if reference.contains('@') {
            return Self::new(reference, "");
        }
        let slash = reference.rfind('/').map_or(0, |index| index + 1);
        match reference[slash..].rfind(':') {
            Some(colon) => {
                let split = slash + colon;
                Self::new(&reference[..split], &reference[split + 1..])
            }
            None => Self::new(reference, ""),
        }
    }

    /// Returns the registry host (`host[:port]`) the source resolves to, such as `docker.io`
    /// for a short name.
    pub fn registry(&self) -> Result<String, OciError> {
        reference::parse(self).map(|parsed| parsed.registry().to_owned())
    }

    /// Returns the source with `credentials`.
    pub fn with_credentials(mut self, credentials: OciCredentials) -> Self {
        self.credentials = Some(credentials);
        self
    }
}

impl fmt::Display for OciSource {
    /// Shows the full reference, such as `127.0.0.1:5000/plugins/a:v1`, without credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match reference::parse(self) {
            Ok(parsed) => f.write_str(&parsed.whole()),
            Err(_) => write!(f, "{}:{}", self.repo, self.tag),
        }
    }
}

/// Registry credentials of an OCI source. `Debug` never shows a password.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OciCredentials {
    /// `credentials.username` and `credentials.password`.
    Password { username: String, password: Secret },
    /// `credentials.username` and `credentials.passwordData`, the standard base64 of the
    /// password. It is decoded when the plugin is pulled.
    PasswordData {
        username: String,
        password_data: Secret,
    },
    /// `credentialsRef`: a Kubernetes Secret in the secrets directory.
    SecretRef(SecretRef),
}

/// `credentialsRef`: a Secret of type `kubernetes.io/dockerconfigjson` or
/// `kubernetes.io/basic-auth`, looked up by name and namespace in the secrets directory.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct SecretRef {
    /// API group; must be empty (the core group).
    pub group: String,
    /// Kind; `Secret`, or empty for `Secret`.
    pub kind: String,
    /// `metadata.name` of the Secret.
    pub name: String,
    /// `metadata.namespace` of the Secret; empty means `default`.
    pub namespace: String,
}

/// A password or other secret text. `Debug` and `Display` print `<redacted>`.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// Returns the secret text, to hand to the registry client only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}
