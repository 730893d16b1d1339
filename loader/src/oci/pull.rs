//! Pulling a plugin from a registry into the artifact cache, with the records that let a
//! known digest skip downloads and a tag load while its registry is down.

use oci_client::{Reference, RegistryOperation};
use tracing::{debug, info, warn};

use super::client::RegistryClient;
use super::credentials::{self, ResolvedAuth};
use super::error::OciError;
use super::layer::{candidates_in_layer, content_layer, Candidate};
use super::manifest::{self, Descriptor, Manifest};
use super::records::Records;
use super::reference::{self, parse_insecure_registries, sha256_hex_of};
use super::OciSource;
use crate::cache::Cache;
use crate::digest::parse_expected_sha256;
use crate::error::FetchError;
use crate::fetch::{Artifact, FetchOptions};
use crate::source::Source;

/// Maximum size of an image config blob.
const MAX_CONFIG_SIZE: u64 = 1024 * 1024;

/// Maximum number of layers read from one manifest. It bounds the downloads of one pull.
const MAX_LAYERS: usize = 128;

/// Fetches the plugin of `source` into the cache and returns the cached library.
///
/// NOTE: a pull that fails is not retried with backoff. The caller's next load (a new filter
/// config, or an Envoy restart) tries again.
pub(crate) async fn fetch_oci(
    source: &OciSource,
    options: &FetchOptions,
) -> Result<Artifact, FetchError> {
    let reference = reference::parse(source)?;
    let insecure = parse_insecure_registries(&options.insecure_registries.join(","))?;
    let expected = options
        .expected_sha256
        .as_deref()
        .map(parse_expected_sha256)
        .transpose()?;
    let cache = Cache::open(&options.cache_dir)?;
    let records = Records::open(&options.cache_dir)?;
    let context = PullContext {
        source,
        reference: &reference,
        options,
        cache: &cache,
        records: &records,
        expected: expected.as_deref(),
    };

    // A pinned library, or a manifest digest seen before, needs no request at all.
    if let Some(artifact) = context.cached_without_request()? {
        return Ok(artifact);
    }

    // Credentials are resolved first, so a missing secret sends nothing to the registry.
    let auth = credentials::resolve(source, &reference, options.secrets_dir.as_deref())?;

    let pulled = tokio::time::timeout(options.timeout, context.pull(auth, &insecure)).await;
    let result = pulled.unwrap_or_else(|_elapsed| {
        Err(FetchError::from(OciError::Timeout {
            reference: reference.whole(),
            registry: reference.registry().to_owned(),
            timeout: options.timeout,
        }))
    });
    match result {
        Err(FetchError::Oci(error)) if error.is_registry_unavailable() => {
            context.fall_back_to_tag_record(*error)
        }
        other => other,
    }
}

/// The reference, settings, cache and records of one pull.
struct PullContext<'a> {
    source: &'a OciSource,
    reference: &'a Reference,
    options: &'a FetchOptions,
    cache: &'a Cache,
    records: &'a Records,
    /// Pinned hex digest of the library, from `FetchOptions::expected_sha256`.
    expected: Option<&'a str>,
}

/// The library chosen from a manifest's layers.
enum Library {
    /// Already in the cache under this hex digest, with this size.
    Cached(String, u64),
    /// Fresh bytes, and the archive layer they came from when it is worth a record.
    Fresh {
        candidate: Candidate,
        archive_layer: Option<String>,
    },
}

impl PullContext<'_> {
    fn artifact(&self, sha256: String, size: u64) -> Artifact {
        Artifact {
            path: self.cache.blob_path(&sha256),
            sha256,
            size,
            source: Source::Oci(self.source.clone()),
        }
    }

    /// Returns the cached library with hex digest `library`, if it is present, intact and
    /// matches the pin.
    fn cached_library(&self, library: &str) -> Result<Option<Artifact>, FetchError> {
        if self.expected.is_some_and(|expected| expected != library) {
            return Ok(None);
        }
        Ok(self
            .cache
            .lookup(library)?
            .map(|size| self.artifact(library.to_owned(), size)))
    }

    fn cached_manifest(&self, manifest_hex: &str) -> Result<Option<Artifact>, FetchError> {
        match self.records.manifest(manifest_hex) {
            Some(library) => self.cached_library(&library),
            None => Ok(None),
        }
    }

    fn cached_without_request(&self) -> Result<Option<Artifact>, FetchError> {
        if let Some(expected) = self.expected {
            if let Some(artifact) = self.cached_library(expected)? {
                debug!(
                    reference = %self.reference,
                    sha256 = %expected,
                    "pinned plugin found in the cache",
                );
                return Ok(Some(artifact));
            }
        }
        if let Some(digest) = self.reference.digest() {
            let manifest_hex = sha256_hex_of(self.reference, digest)?;
            if let Some(artifact) = self.cached_manifest(&manifest_hex)? {
                debug!(
                    reference = %self.reference,
                    sha256 = %artifact.sha256,
                    "digest-pinned plugin found in the cache",
                );
                return Ok(Some(artifact));
            }
        }
        Ok(None)
    }

    /// Uses the library last pulled for this tag when the registry is unavailable. A digest
    /// reference has no such fallback beyond the cache check made before any request.
    fn fall_back_to_tag_record(&self, error: OciError) -> Result<Artifact, FetchError> {
        let manifest_hex = match self.reference.tag() {
            Some(_) => self.records.tag(&self.reference.whole()),
            None => None,
        };
        let Some(manifest_hex) = manifest_hex else {
            return Err(error.into());
        };
        let artifact = match self.cached_manifest(&manifest_hex) {
            Ok(Some(artifact)) => artifact,
            Ok(None) => return Err(error.into()),
            Err(lookup_error) => {
                warn!(
                    reference = %self.reference,
                    %lookup_error,
                    "cannot read the last pulled plugin",
                );
                return Err(error.into());
            }
        };
        warn!(
            reference = %self.reference,
            manifest = %format!("sha256:{manifest_hex}"),
            sha256 = %artifact.sha256,
            %error,
            "registry unavailable; using the plugin last pulled for this tag"
        );
        Ok(artifact)
    }

    async fn pull(&self, auth: ResolvedAuth, insecure: &[String]) -> Result<Artifact, FetchError> {
        let mut client = RegistryClient::connect(
            self.reference,
            auth,
            self.options,
            insecure,
            RegistryOperation::Pull,
        )
        .await?;

        let (body, digest) = client.manifest(self.reference).await?;
        let top_hex = sha256_hex_of(self.reference, &digest)?;
        self.note_tag_move(&top_hex);
        if let Some(artifact) = self.cached_manifest(&top_hex)? {
            debug!(reference = %self.reference, manifest = %digest, "manifest already pulled");
            self.remember(&top_hex, None, &artifact.sha256);
            return Ok(artifact);
        }

        let (child_hex, config, layers) = match manifest::parse(&body, self.reference, &digest)? {
            Manifest::Image { config, layers } => (None, config, layers),
            Manifest::Index(entries) => {
                let entry = manifest::select_platform(&entries, self.reference)?;
                let child_hex = sha256_hex_of(self.reference, &entry.digest)?;
                if let Some(artifact) = self.cached_manifest(&child_hex)? {
                    self.remember(&top_hex, Some(&child_hex), &artifact.sha256);
                    return Ok(artifact);
                }
                let (config, layers) = self.pull_child(&mut client, entry).await?;
                (Some(child_hex), config, layers)
            }
        };

        if let Some(config) = config {
            self.check_config(&mut client, &config).await?;
        }
        let library = self.select_library(&mut client, &layers).await?;
        let artifact = self.store(library)?;
        self.remember(&top_hex, child_hex.as_deref(), &artifact.sha256);
        info!(
            reference = %self.reference,
            manifest = %digest,
            sha256 = %artifact.sha256,
            size = artifact.size,
            "pulled plugin from the registry"
        );
        Ok(artifact)
    }

    /// Logs a tag that points to a different manifest than at its last pull.
    fn note_tag_move(&self, manifest_hex: &str) {
        if self.reference.tag().is_none() {
            return;
        }
        match self.records.tag(&self.reference.whole()) {
            Some(previous) if previous != manifest_hex => info!(
                reference = %self.reference,
                previous = %format!("sha256:{previous}"),
                current = %format!("sha256:{manifest_hex}"),
                "tag moved to a new manifest"
            ),
            _ => {}
        }
    }

    fn remember(&self, top_hex: &str, child_hex: Option<&str>, library: &str) {
        self.records.set_manifest(top_hex, library);
        if let Some(child_hex) = child_hex {
            self.records.set_manifest(child_hex, library);
        }
        if self.reference.tag().is_some() {
            self.records.set_tag(&self.reference.whole(), top_hex);
        }
    }

    async fn pull_child(
        &self,
        client: &mut RegistryClient,
        entry: &Descriptor,
    ) -> Result<(Option<Descriptor>, Vec<Descriptor>), FetchError> {
        let child = self.reference.clone_with_digest(entry.digest.clone());
        let (body, digest) = client.manifest(&child).await?;
        match manifest::parse(&body, self.reference, &digest)? {
            Manifest::Image { config, layers } => Ok((config, layers)),
            Manifest::Index(_) => Err(OciError::UnsupportedMediaType {
                reference: self.reference.whole(),
                media_type: entry.media_type.clone(),
                layer_count: 0,
                detail: format!("the index entry {digest} is itself an index"),
            }
            .into()),
        }
    }

    /// Checks the platform in a standard image config. Other configs (Apoxy's, ORAS's empty
    /// config) carry no platform and are not fetched.
    async fn check_config(
        &self,
        client: &mut RegistryClient,
        config: &Descriptor,
    ) -> Result<(), FetchError> {
        if !manifest::is_image_config(&config.media_type) {
            debug!(
                reference = %self.reference,
                media_type = %config.media_type,
                "config not checked",
            );
            return Ok(());
        }
        sha256_hex_of(self.reference, &config.digest)?;
        let body = client
            .blob(
                &config.digest,
                config.size,
                MAX_CONFIG_SIZE,
                "the image config",
            )
            .await?;
        manifest::check_config_platform(&body, self.reference)?;
        Ok(())
    }

    /// Chooses the library: the first Apoxy content layer as raw bytes, or else the one
    /// candidate found in all layers.
    async fn select_library(
        &self,
        client: &mut RegistryClient,
        layers: &[Descriptor],
    ) -> Result<Library, FetchError> {
        let max_size = self.options.max_size;
        if let Some(layer) = content_layer(layers) {
            let layer_hex = sha256_hex_of(self.reference, &layer.digest)?;
            if let Some(size) = self.cache.lookup(&layer_hex)? {
                return Ok(Library::Cached(layer_hex, size));
            }
            let what = format!("layer {}", layer.digest);
            let bytes = client
                .blob(&layer.digest, layer.size, max_size, &what)
                .await?;
            let candidate = Candidate { name: what, bytes };
            return Ok(Library::Fresh {
                candidate,
                archive_layer: None,
            });
        }

        if layers.len() > MAX_LAYERS {
            return Err(self.selection_error(layers, 0, format!("more than {MAX_LAYERS} layers")));
        }
        if let [layer] = layers {
            let layer_hex = sha256_hex_of(self.reference, &layer.digest)?;
            if let Some(library) = self.records.layer(&layer_hex) {
                if let Some(size) = self.cache.lookup(&library)? {
                    return Ok(Library::Cached(library, size));
                }
            }
        }

        let mut candidates = Vec::new();
        for layer in layers {
            sha256_hex_of(self.reference, &layer.digest)?;
            let what = format!("layer {}", layer.digest);
            let bytes = client
                .blob(&layer.digest, layer.size, max_size, &what)
                .await?;
            let is_raw = bytes.starts_with(b"\x7fELF");
            let found = candidates_in_layer(bytes, layer, self.reference, max_size)?;
            debug!(
                reference = %self.reference,
                layer = %layer.digest,
                candidates = found.len(),
                "searched layer",
            );
            let archive_layer = (!is_raw && layers.len() == 1).then(|| layer.digest.clone());
            candidates.extend(
                found
                    .into_iter()
                    .map(|candidate| (candidate, archive_layer.clone())),
            );
        }

        if candidates.len() != 1 {
            let names: Vec<&str> = candidates.iter().map(|(c, _)| c.name.as_str()).collect();
            let detail = if names.is_empty() {
                "no layer is a raw ELF library or an archive holding a .so file".to_owned()
            } else {
                format!("candidates: {}", names.join(", "))
            };
            return Err(self.selection_error(layers, candidates.len(), detail));
        }
        let (candidate, archive_layer) = candidates.remove(0);
        let archive_layer = archive_layer
            .map(|digest| sha256_hex_of(self.reference, &digest))
            .transpose()?;
        Ok(Library::Fresh {
            candidate,
            archive_layer,
        })
    }

    fn selection_error(&self, layers: &[Descriptor], found: usize, detail: String) -> FetchError {
        let mut media_types: Vec<&str> = layers.iter().map(|l| l.media_type.as_str()).collect();
        media_types.sort_unstable();
        media_types.dedup();
        OciError::LayerSelection {
            reference: self.reference.whole(),
            found,
            layer_count: layers.len(),
            media_types: if media_types.is_empty() {
                "none".to_owned()
            } else {
                media_types.join(", ")
            },
            detail,
        }
        .into()
    }

    /// Writes a fresh library to the cache, checked against the pin, and returns it.
    fn store(&self, library: Library) -> Result<Artifact, FetchError> {
        let (candidate, archive_layer) = match library {
            Library::Cached(sha256, size) => {
                if let Some(expected) = self.expected {
                    if expected != sha256 {
                        return Err(FetchError::DigestMismatch {
                            location: self.reference.whole(),
                            expected: expected.to_owned(),
                            actual: sha256,
                        });
                    }
                }
                return Ok(self.artifact(sha256, size));
            }
            Library::Fresh {
                candidate,
                archive_layer,
            } => (candidate, archive_layer),
        };

        let mut temp = self.cache.create_temp()?;
        temp.write(&candidate.bytes)?;
        let (sha256, size) = temp.commit_blob(self.expected, &self.reference.whole())?;
        if let Some(layer_hex) = archive_layer {
            self.records.set_layer(&layer_hex, &sha256);
        }
        debug!(
            reference = %self.reference,
            file = %candidate.name,
            sha256 = %sha256,
            "stored plugin library",
        );
        Ok(self.artifact(sha256, size))
    }
}
