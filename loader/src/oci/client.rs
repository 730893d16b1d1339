//! The registry client: construction, authentication, manifest and blob requests, and the
//! sorting of the client's errors into [`OciError`] variants.

use std::error::Error as StdError;

use bytes::Bytes;
use futures_util::StreamExt;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{DigestError, OciDistributionError, OciErrorCode};
use oci_client::manifest::{
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
};
use oci_client::{Client, Reference, RegistryOperation};
use sha2::{Digest, Sha256};
use tracing::debug;

use super::credentials::ResolvedAuth;
use super::error::OciError;
use crate::digest::finish_hex;
use crate::fetch::FetchOptions;

/// Manifest media types requested and accepted.
pub(crate) const MANIFEST_MEDIA_TYPES: [&str; 4] = [
    OCI_IMAGE_MEDIA_TYPE,
    OCI_IMAGE_INDEX_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE,
    IMAGE_MANIFEST_LIST_MEDIA_TYPE,
];

/// Maximum size of a manifest, as in the CNCF distribution registry and oras.
pub(crate) const MAX_MANIFEST_SIZE: u64 = 4 * 1024 * 1024;

/// Maximum depth followed in an error's source chain.
const MAX_ERROR_CHAIN: usize = 16;

/// Maximum number of characters of registry text kept in an error message.
const MAX_DETAIL_CHARS: usize = 300;

/// A registry client bound to one repository and its credentials.
pub(crate) struct RegistryClient {
    client: Client,
    reference: Reference,
    auth: ResolvedAuth,
    operation: RegistryOperation,
    /// Whether the registry issued a bearer token, which may expire and be fetched again.
    uses_token: bool,
    timeout: std::time::Duration,
}

impl RegistryClient {
    /// Builds a client for `reference` and authenticates with the registry. Registries in
    /// `insecure` are reached over plain HTTP.
    pub(crate) async fn connect(
        reference: &Reference,
        auth: ResolvedAuth,
        options: &FetchOptions,
        insecure: &[String],
        operation: RegistryOperation,
    ) -> Result<Self, OciError> {
        install_crypto_provider();

        let mut config = ClientConfig {
            protocol: ClientProtocol::HttpsExcept(insecure.to_vec()),
            connect_timeout: Some(options.timeout),
            read_timeout: Some(options.timeout),
            user_agent: concat!("edgefn-loader/", env!("CARGO_PKG_VERSION")),
            // Platforms are chosen here, not by the client.
            platform_resolver: None,
            ..ClientConfig::default()
        };
        if let Some(ca_file) = &options.extra_ca_file {
            let pem = std::fs::read(ca_file).map_err(|error| OciError::Request {
                reference: reference.whole(),
                registry: reference.registry().to_owned(),
                detail: format!(
                    "cannot read the extra CA file {}: {error}",
                    ca_file.display()
                ),
            })?;
            config.extra_root_certificates.push(Certificate {
                encoding: CertificateEncoding::Pem,
                data: pem,
            });
        }
        let client = Client::try_from(config).map_err(|error| OciError::Request {
            reference: reference.whole(),
            registry: reference.registry().to_owned(),
            detail: format!("cannot build the registry client: {}", error_chain(&error)),
        })?;

        let mut connected = Self {
            client,
            reference: reference.clone(),
            auth,
            operation,
            uses_token: false,
            timeout: options.timeout,
        };
        connected.authenticate().await?;
        Ok(connected)
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// Asks the registry how to authenticate and fetches a token when it uses token auth.
    /// The client keeps the token and sends it with every later request.
    async fn authenticate(&mut self) -> Result<(), OciError> {
        let token = self
            .client
            .auth(&self.reference, &self.auth.auth, self.operation)
            .await
            .map_err(|error| self.classify(error, "the token"))?;
        self.uses_token = token.is_some();
        debug!(
            reference = %self.reference,
            token = self.uses_token,
            "authenticated with the registry"
        );
        Ok(())
    }

    /// Fetches a manifest by tag or digest and returns its bytes and `sha256:` digest.
    pub(crate) async fn manifest(
        &mut self,
        reference: &Reference,
    ) -> Result<(Bytes, String), OciError> {
        let mut retried = false;
        loop {
            let result = self
                .client
                .pull_manifest_raw(reference, &self.auth.auth, &MANIFEST_MEDIA_TYPES)
                .await;
            match result {
                Ok((body, digest)) => {
                    self.check_manifest(&body, &digest, reference)?;
                    return Ok((body, digest));
                }
                Err(error) if self.should_refresh_token(&error, retried) => {
                    retried = true;
                    self.authenticate().await?;
                }
                Err(error) => return Err(self.classify(error, "the manifest")),
            }
        }
    }

    /// Checks a manifest's size and recomputes its digest, which the client already compared
    /// with the registry's `Docker-Content-Digest` and with the digest in the reference.
    fn check_manifest(
        &self,
        body: &[u8],
        digest: &str,
        reference: &Reference,
    ) -> Result<(), OciError> {
        // NOTE: oci-client has already read the whole body, so this bounds what is parsed, not
        // what was received; the pull's timeout bounds the transfer.
        if body.len() as u64 > MAX_MANIFEST_SIZE {
            return Err(OciError::TooLarge {
                reference: self.reference.whole(),
                what: "the manifest".to_owned(),
                limit: MAX_MANIFEST_SIZE,
                observed: format!("{} bytes", body.len()),
            });
        }
        let actual = format!("sha256:{}", finish_hex(Sha256::new().chain_update(body)));
        let expected = reference.digest().unwrap_or(digest);
        if actual != expected {
            return Err(OciError::DigestMismatch {
                reference: self.reference.whole(),
                what: "the manifest".to_owned(),
                expected: expected.to_owned(),
                actual,
            });
        }
        Ok(())
    }

    /// Downloads the blob `digest` of `size` bytes into memory, within `limit`, and checks its
    /// length and digest. `what` names the blob in errors.
    pub(crate) async fn blob(
        &mut self,
        digest: &str,
        size: u64,
        limit: u64,
        what: &str,
    ) -> Result<Vec<u8>, OciError> {
        let shown = self.reference.whole();
        let too_large = |observed: String| OciError::TooLarge {
            reference: shown.clone(),
            what: what.to_owned(),
            limit,
            observed,
        };
        if size > limit {
            return Err(too_large(format!("its descriptor declares {size} bytes")));
        }

        let mut retried = false;
        let mut stream = loop {
            match self.client.pull_blob_stream(&self.reference, digest).await {
                Ok(stream) => break stream,
                Err(error) if self.should_refresh_token(&error, retried) => {
                    retried = true;
                    self.authenticate().await?;
                }
                Err(error) => return Err(self.classify(error, what)),
            }
        };
        if let Some(length) = stream.content_length {
            if length > limit {
                return Err(too_large(format!("Content-Length is {length} bytes")));
            }
        }

        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        let mut hasher = Sha256::new();
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(error) => {
                    return Err(self.classify_stream_error(&error, what, bytes.len() as u64, size))
                }
            };
            let received = bytes.len() as u64 + chunk.len() as u64;
            if received > limit {
                return Err(too_large(
                    "the body passed the limit while streaming".to_owned(),
                ));
            }
            if received > size {
                return Err(OciError::DigestMismatch {
                    reference: self.reference.whole(),
                    what: what.to_owned(),
                    expected: format!("{digest} ({size} bytes)"),
                    actual: format!("at least {received} bytes"),
                });
            }
            hasher.update(&chunk);
            bytes.extend_from_slice(&chunk);
        }

        let received = bytes.len() as u64;
        if received < size {
            return Err(OciError::Truncated {
                reference: self.reference.whole(),
                what: what.to_owned(),
                progress: format!("after {received} of {size} bytes"),
                detail: "the body ended early".to_owned(),
            });
        }
        let actual = format!("sha256:{}", finish_hex(hasher));
        if actual != digest {
            return Err(OciError::DigestMismatch {
                reference: self.reference.whole(),
                what: what.to_owned(),
                expected: digest.to_owned(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// A 401 after a token was issued means the token expired or was revoked: fetch a new one
    /// and send the request once more.
    fn should_refresh_token(&self, error: &OciDistributionError, retried: bool) -> bool {
        !retried && self.uses_token && is_unauthorized(error)
    }

    /// Sorts an error from a blob stream: a digest mismatch found by the client, or a
    /// transfer that ended early.
    fn classify_stream_error(
        &self,
        error: &std::io::Error,
        what: &str,
        received: u64,
        expected: u64,
    ) -> OciError {
        if let Some(DigestError::VerificationError { expected, actual }) = error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<DigestError>())
        {
            return OciError::DigestMismatch {
                reference: self.reference.whole(),
                what: what.to_owned(),
                expected: expected.clone(),
                actual: actual.clone(),
            };
        }
        OciError::Truncated {
            reference: self.reference.whole(),
            what: what.to_owned(),
            progress: format!("after {received} of {expected} bytes"),
            detail: self.auth.scrub(&error_chain(error)),
        }
    }

    /// Sorts a client error into an [`OciError`] that names the reference. `what` names the
    /// object requested, such as `the manifest`.
    pub(crate) fn classify(&self, error: OciDistributionError, what: &str) -> OciError {
        let reference = self.reference.whole();
        let registry = self.reference.registry().to_owned();
        let repository = self.reference.repository().to_owned();
        let scrub = |text: &str| shorten(&self.auth.scrub(text));

        match error {
            OciDistributionError::RequestError(error) => {
                let detail = scrub(&error_chain(&error));
                if error.is_timeout() {
                    OciError::Timeout {
                        reference,
                        registry,
                        timeout: self.timeout,
                    }
                } else if error.is_connect() {
                    OciError::Unreachable {
                        reference,
                        registry,
                        detail,
                    }
                } else if error.is_body() || error.is_decode() {
                    OciError::Truncated {
                        reference,
                        what: what.to_owned(),
                        progress: "before the body was complete".to_owned(),
                        detail,
                    }
                } else {
                    OciError::Request {
                        reference,
                        registry,
                        detail,
                    }
                }
            }
            OciDistributionError::UnauthorizedError { .. } => OciError::Unauthorized {
                reference,
                registry,
                repository,
                detail: format!("HTTP 401 for {what}"),
            },
            OciDistributionError::AuthenticationFailure(reason) => OciError::Unauthorized {
                reference,
                registry,
                repository,
                detail: format!("the token service refused a token: {}", scrub(&reason)),
            },
            OciDistributionError::RegistryError { envelope, .. } => {
                let detail = scrub(&envelope.to_string());
                let code = envelope.errors.first().map(|error| &error.code);
                match code {
                    Some(OciErrorCode::Unauthorized) => OciError::Unauthorized {
                        reference,
                        registry,
                        repository,
                        detail,
                    },
                    Some(OciErrorCode::Denied) => OciError::Forbidden {
                        reference,
                        registry,
                        repository,
                        detail,
                    },
                    Some(
                        OciErrorCode::ManifestUnknown
                        | OciErrorCode::BlobUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::NotFound,
                    ) => OciError::NotFound {
                        reference,
                        registry,
                        what: what.to_owned(),
                        detail,
                    },
                    Some(OciErrorCode::Toomanyrequests) => OciError::ServerStatus {
                        reference,
                        registry,
                        status: 429,
                        detail,
                    },
                    _ => OciError::Registry {
                        reference,
                        registry,
                        detail,
                    },
                }
            }
            OciDistributionError::ServerError { code, message, .. } => {
                let detail = scrub(&message);
                match code {
                    401 => OciError::Unauthorized {
                        reference,
                        registry,
                        repository,
                        detail,
                    },
                    403 => OciError::Forbidden {
                        reference,
                        registry,
                        repository,
                        detail,
                    },
                    404 => OciError::NotFound {
                        reference,
                        registry,
                        what: what.to_owned(),
                        detail,
                    },
                    429 | 500..=599 => OciError::ServerStatus {
                        reference,
                        registry,
                        status: code,
                        detail,
                    },
                    _ => OciError::Registry {
                        reference,
                        registry,
                        detail: format!("HTTP {code}: {detail}"),
                    },
                }
            }
            OciDistributionError::DigestError(DigestError::VerificationError {
                expected,
                actual,
            }) => OciError::DigestMismatch {
                reference,
                what: what.to_owned(),
                expected,
                actual,
            },
            OciDistributionError::UnsupportedMediaTypeError(media_type) => {
                OciError::UnsupportedMediaType {
                    reference,
                    media_type,
                    layer_count: 0,
                    detail: format!("{what} is not an OCI or Docker image manifest or index"),
                }
            }
            OciDistributionError::ManifestParsingError(detail)
            | OciDistributionError::VersionedParsingError(detail) => OciError::InvalidManifest {
                reference,
                digest: what.to_owned(),
                detail: scrub(&detail),
            },
            other => OciError::Request {
                reference,
                registry,
                detail: scrub(&error_chain(&other)),
            },
        }
    }
}

fn is_unauthorized(error: &OciDistributionError) -> bool {
    match error {
        OciDistributionError::UnauthorizedError { .. } => true,
        OciDistributionError::ServerError { code, .. } => *code == 401,
        OciDistributionError::RegistryError { envelope, .. } => envelope
            .errors
            .iter()
            .any(|error| error.code == OciErrorCode::Unauthorized),
        _ => false,
    }
}

/// Installs `ring` as this library's default rustls crypto provider, as `http.rs` does, because
/// reqwest is built without a provider of its own and panics without a default. A provider
/// installed earlier is kept.
fn install_crypto_provider() {
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
}

/// Joins the messages of `error` and its sources with ": ", skipping repeats.
pub(crate) fn error_chain(error: &(dyn StdError + 'static)) -> String {
    let mut messages: Vec<String> = Vec::new();
    let mut current = Some(error);
    for _ in 0..MAX_ERROR_CHAIN {
        let Some(level) = current else {
            break;
        };
        let message = level.to_string();
        if messages.last().is_none_or(|last| !last.contains(&message)) {
            messages.push(message);
        }
        current = match level
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(wrapped) => Some(wrapped),
            None => level.source(),
        };
    }
    messages.join(": ")
}

/// Returns `text` on one line, cut at `MAX_DETAIL_CHARS` characters.
fn shorten(text: &str) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= MAX_DETAIL_CHARS {
        return one_line;
    }
    let mut cut: String = one_line.chars().take(MAX_DETAIL_CHARS).collect();
    cut.push('…');
    cut
}
