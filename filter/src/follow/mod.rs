//! Filter configs that name a revision on an API server (`apiServer`) instead of carrying it.
//!
//! Each such config starts a [`Follower`], a background thread with its own Tokio runtime. It
//! lists and watches the server's EdgeFunctionRevisions and picks the revision to run
//! ([`select`]). It downloads that revision's artifact from the server by digest into the
//! loader cache, loads it and creates the Go plugin config. Then it swaps the plugin config
//! that `on_http_filter_new` reads, so new streams run the new revision while streams in flight
//! finish on the one they started with. Envoy's threads never wait for the server.
//!
//! A revision that fails to load leaves the previous one serving. With no revision loaded yet,
//! the revision remembered in the cache ([`remembered`]) is loaded when the server cannot be
//! reached or names no Ready revision; without one, streams get a 503 (or pass through with
//! `failOpen: true`).

mod client;
mod remembered;
mod select;
mod settings;

use std::collections::{BTreeMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use edgefn_loader::{FetchOptions, LoadError, Source};
use edgefn_proto::EdgeFunctionRevision;
use tokio::sync::watch;

use crate::config::{self, GoFilterConfig};
use client::{ApiClient, ClientError, WatchEvent};
use remembered::Remembered;
pub use settings::{is_api_server_config, FollowSettings, Selection, SettingsError};

/// First pause before talking to the server again after a failure; it doubles up to
/// [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// The plugin config new streams use, with the load key of its revision.
struct Current {
    config: Arc<GoFilterConfig>,
    key: String,
}

/// The state shared by Envoy's workers and the follow thread.
struct Shared {
    current: RwLock<Option<Current>>,
    fail_open: bool,
    /// Server URL and selection. Followers with equal ones run the same revisions.
    identity: String,
}

/// Followers alive in this process. A follower started for an updated Envoy config begins with
/// the revision that a follower of the same server and selection runs, so that its streams do
/// not get 503 until its own first load.
static FOLLOWERS: Mutex<Vec<Weak<Shared>>> = Mutex::new(Vec::new());

/// Registers `shared` and returns the revision a live follower with the same identity runs.
fn register(shared: &Arc<Shared>) -> Option<(Arc<GoFilterConfig>, String)> {
    let mut followers = FOLLOWERS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    followers.retain(|follower| follower.strong_count() > 0);
    let running = followers
        .iter()
        .filter_map(Weak::upgrade)
        .filter(|follower| follower.identity == shared.identity)
        .find_map(|follower| {
            let current = follower
                .current
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            current
                .as_ref()
                .map(|current| (Arc::clone(&current.config), current.key.clone()))
        });
    followers.push(Arc::downgrade(shared));
    running
}

/// The Envoy-side handle of one followed filter config. Dropping it stops the follow thread.
pub struct Follower {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
}

impl Follower {
    /// Starts following. `concurrency` is Envoy's worker count, read on the main thread, for
    /// the Go plugin configs created later on the follow thread.
    pub fn start(
        settings: FollowSettings,
        concurrency: u32,
        cache_dir: PathBuf,
    ) -> Result<Self, SettingsError> {
        let start_error = |detail: String| SettingsError::Start {
            url: settings.url.clone(),
            detail,
        };
        let client = ApiClient::new(&settings.url, settings.selection.clone())
            .map_err(|error| start_error(error.to_string()))?;
        let shared = Arc::new(Shared {
            current: RwLock::new(None),
            fail_open: settings.fail_open,
            identity: format!("{}\n{}", settings.url, settings.selection),
        });
        let loaded = register(&shared).map(|(config, key)| {
            tracing::info!(
                revision = %config.revision,
                api_server = %settings.url,
                "new filter config starts with the revision another one of this server runs"
            );
            let loaded = Loaded {
                key: key.clone(),
                name: config.revision.clone(),
            };
            *shared
                .current
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Current { config, key });
            loaded
        });
        let (stop, stop_receiver) = watch::channel(false);

        let follow = Follow {
            remembered: Remembered::new(&cache_dir, &settings),
            settings: settings.clone(),
            client,
            shared: Arc::clone(&shared),
            cache_dir,
            concurrency,
            stop: stop_receiver,
            revisions: BTreeMap::new(),
            loaded,
            rejected: HashSet::new(),
            tried_remembered: false,
            reachable: None,
        };
        std::thread::Builder::new()
            .name("edgefn-follow".to_owned())
            .spawn(move || run_thread(follow))
            .map_err(|error| start_error(format!("cannot start the follow thread: {error}")))?;
        Ok(Self { shared, stop })
    }

    /// Returns the plugin config of the loaded revision, `None` before the first one loads.
    pub fn current(&self) -> Option<Arc<GoFilterConfig>> {
        let current = self
            .shared
            .current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        current.as_ref().map(|current| Arc::clone(&current.config))
    }

    /// Returns whether streams pass through untouched while no revision is loaded.
    pub fn fail_open(&self) -> bool {
        self.shared.fail_open
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

fn run_thread(follow: Follow) {
    let url = follow.settings.url.clone();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(
                api_server = %url,
                %error,
                "cannot start the follow runtime; no revision will load"
            );
            return;
        }
    };
    let result = catch_unwind(AssertUnwindSafe(|| runtime.block_on(follow.run())));
    if let Err(payload) = result {
        crate::hooks::report_panic("follow", payload.as_ref());
    }
}

/// Error that ends a sync with the server early. The follower retries after a pause.
#[derive(Debug, thiserror::Error)]
enum SyncError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("downloading the artifact of revision {revision:?} failed: {source}")]
    Artifact {
        revision: String,
        source: Box<LoadError>,
    },
}

/// End of a sync with the server that was not an error.
enum SyncEnd {
    /// The follower was stopped.
    Stopped,
    /// The watch ended or expired: list again.
    Restart,
}

/// Reason a revision did not load.
enum LoadFailure {
    /// The server could not be reached for the artifact: retry later.
    Unavailable(SyncError),
    /// The revision cannot load as it is; retrying would fail the same way.
    Rejected(String),
}

/// The revision new streams run.
struct Loaded {
    key: String,
    name: String,
}

/// The state of the follow thread.
struct Follow {
    settings: FollowSettings,
    client: ApiClient,
    shared: Arc<Shared>,
    remembered: Remembered,
    cache_dir: PathBuf,
    concurrency: u32,
    stop: watch::Receiver<bool>,
    /// The revisions the selection matches on the server, by name.
    revisions: BTreeMap<String, EdgeFunctionRevision>,
    loaded: Option<Loaded>,
    /// Load keys of revisions that failed to load for reasons a retry cannot fix.
    rejected: HashSet<String>,
    tried_remembered: bool,
    /// Whether the last request reached the server; `None` before the first one.
    reachable: Option<bool>,
}

impl Follow {
    async fn run(mut self) {
        tracing::info!(
            api_server = %self.settings.url,
            selection = %self.settings.selection,
            "following the API server for the revision to run"
        );
        let mut delay = RETRY_MIN;
        loop {
            match self.sync().await {
                Ok(SyncEnd::Stopped) => break,
                Ok(SyncEnd::Restart) => delay = RETRY_MIN,
                Err(error) => {
                    if self.reachable == Some(true) {
                        // The list worked this time, so the server was up until just now.
                        delay = RETRY_MIN;
                    }
                    self.report_unreachable(&error, delay);
                    self.serve_remembered_if_idle().await;
                }
            }
            if wait_or_stop(&mut self.stop, delay).await {
                break;
            }
            delay = (delay * 2).min(RETRY_MAX);
        }
        tracing::info!(api_server = %self.settings.url, "stopped following the API server");
    }

    /// Lists the revisions, loads the one to run, then applies watch events until the watch
    /// ends.
    async fn sync(&mut self) -> Result<SyncEnd, SyncError> {
        let list = tokio::select! {
            () = wait_for_stop(&mut self.stop) => return Ok(SyncEnd::Stopped),
            list = self.client.list() => list?,
        };
        self.report_reachable();
        self.revisions = list
            .items
            .into_iter()
            .map(|revision| (revision.metadata.name.clone(), revision))
            .collect();
        self.reconcile().await?;

        let mut watch = tokio::select! {
            () = wait_for_stop(&mut self.stop) => return Ok(SyncEnd::Stopped),
            watch = self.client.watch(&list.resource_version) => watch?,
        };
        loop {
            let event = tokio::select! {
                () = wait_for_stop(&mut self.stop) => return Ok(SyncEnd::Stopped),
                event = watch.next() => event?,
            };
            match event {
                None | Some(WatchEvent::Expired) => return Ok(SyncEnd::Restart),
                Some(WatchEvent::Upsert(revision)) => {
                    self.revisions
                        .insert(revision.metadata.name.clone(), *revision);
                }
                Some(WatchEvent::Deleted(name)) => {
                    self.revisions.remove(&name);
                }
            }
            self.reconcile().await?;
        }
    }

    /// Loads the revision the selection picks, unless it runs already or failed before.
    async fn reconcile(&mut self) -> Result<(), SyncError> {
        let Some(target) = select::target(&self.revisions, &self.settings.selection) else {
            self.serve_remembered_if_idle().await;
            return Ok(());
        };
        let key = select::load_key(target);
        let running = self.loaded.as_ref().is_some_and(|loaded| loaded.key == key);
        if running || self.rejected.contains(&key) {
            return Ok(());
        }

        let target = target.clone();
        match self.load(&target).await {
            Ok(config) => {
                self.install(config, &target, key);
                if let Err(error) = self.remembered.store(&target) {
                    tracing::warn!(
                        file = %self.remembered.path().display(),
                        %error,
                        "cannot remember the loaded revision in the cache"
                    );
                }
                Ok(())
            }
            Err(LoadFailure::Unavailable(error)) => Err(error),
            Err(LoadFailure::Rejected(message)) => {
                tracing::error!(
                    revision = %target.metadata.name,
                    running = %self.loaded.as_ref().map_or("none", |loaded| loaded.name.as_str()),
                    "revision failed to load; the running revision keeps serving: {message}"
                );
                self.rejected.insert(key);
                Ok(())
            }
        }
    }

    /// Downloads the artifact of `target` from the server (no request when the loader cache has
    /// it), loads it and creates its Go plugin config.
    async fn load(
        &self,
        target: &EdgeFunctionRevision,
    ) -> Result<Arc<GoFilterConfig>, LoadFailure> {
        let text = serde_json::to_string(target)
            .map_err(|error| LoadFailure::Rejected(error.to_string()))?;
        let revision = edgefn_proto::parse_revision(&text)
            .map_err(|error| LoadFailure::Rejected(format!("invalid revision: {error}")))?;
        let hex = select::artifact_digest(&revision)
            .map_err(LoadFailure::Rejected)?
            .to_owned();

        let source = Source::Url(self.client.artifact_url(&hex));
        let options = FetchOptions {
            cache_dir: self.cache_dir.clone(),
            expected_sha256: Some(hex),
            ..Default::default()
        };
        let mut stop = self.stop.clone();
        let fetched = tokio::select! {
            fetched = edgefn_loader::fetch(&source, &options) => fetched,
            () = wait_for_stop(&mut stop) => {
                return Err(LoadFailure::Rejected("the filter config was removed".to_owned()))
            }
        };
        let artifact = fetched.map_err(|error| match &error {
            LoadError::Fetch(fetch) if fetch.is_server_unavailable() => {
                LoadFailure::Unavailable(SyncError::Artifact {
                    revision: revision.metadata.name.clone(),
                    source: Box::new(error),
                })
            }
            _ => LoadFailure::Rejected(error.to_string()),
        })?;

        // Opening the library and Go's NewHttpPluginConfig block this thread, which only
        // delays the next watch event.
        config::load_revision(&revision, &artifact, &source, self.concurrency)
            .map_err(|error| LoadFailure::Rejected(error.to_string()))
    }

    /// Makes `config` the plugin config of new streams.
    fn install(
        &mut self,
        config: Arc<GoFilterConfig>,
        revision: &EdgeFunctionRevision,
        key: String,
    ) {
        let previous = {
            let mut current = self
                .shared
                .current
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            current.replace(Current {
                config,
                key: key.clone(),
            })
        };
        let previous_name = previous
            .as_ref()
            .map_or("none", |previous| previous.config.revision.as_str());
        tracing::info!(
            revision = %revision.metadata.name,
            artifact = %revision.status.artifact_ref,
            previous = %previous_name,
            "new streams run revision {}",
            revision.metadata.name
        );
        // Streams in flight hold their own references, so the previous plugin config is
        // destroyed when the last of them ends.
        drop(previous);
        self.loaded = Some(Loaded {
            key,
            name: revision.metadata.name.clone(),
        });
    }

    /// Loads the remembered revision once, when no revision runs yet.
    async fn serve_remembered_if_idle(&mut self) {
        if self.loaded.is_some() || self.tried_remembered {
            return;
        }
        self.tried_remembered = true;
        let without = if self.shared.fail_open {
            "requests pass through untouched"
        } else {
            "requests get 503"
        };

        let revision = match self.remembered.load() {
            Ok(Some(revision)) => revision,
            Ok(None) => {
                tracing::warn!(
                    api_server = %self.settings.url,
                    "no revision is loaded and the cache remembers none; {without} until one loads"
                );
                return;
            }
            Err(error) => {
                tracing::warn!(
                    file = %self.remembered.path().display(),
                    %error,
                    "cannot read the remembered revision; {without} until one loads"
                );
                return;
            }
        };
        match self.load(&revision).await {
            Ok(config) => {
                tracing::info!(
                    revision = %revision.metadata.name,
                    "serving the revision remembered in the cache until the API server names one"
                );
                let key = select::load_key(&revision);
                self.install(config, &revision, key);
            }
            Err(LoadFailure::Unavailable(error)) => {
                tracing::warn!(
                    %error,
                    "the remembered revision did not load; {without} until one loads"
                );
            }
            Err(LoadFailure::Rejected(message)) => {
                tracing::warn!(
                    revision = %revision.metadata.name,
                    "the remembered revision did not load; {without} until one loads: {message}"
                );
            }
        }
    }

    fn report_unreachable(&mut self, error: &SyncError, retry_in: Duration) {
        if self.reachable != Some(false) {
            tracing::warn!(
                api_server = %self.settings.url,
                %error,
                ?retry_in,
                "cannot sync with the API server; retrying"
            );
        } else {
            tracing::debug!(
                api_server = %self.settings.url,
                %error,
                ?retry_in,
                "still cannot sync"
            );
        }
        self.reachable = Some(false);
    }

    fn report_reachable(&mut self) {
        if self.reachable == Some(false) {
            tracing::info!(api_server = %self.settings.url, "reached the API server again");
        }
        self.reachable = Some(true);
    }
}

/// Returns once the follower is stopped (or its handle is gone).
async fn wait_for_stop(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// Sleeps for `delay`; returns true when the follower was stopped meanwhile.
async fn wait_or_stop(stop: &mut watch::Receiver<bool>, delay: Duration) -> bool {
    tokio::select! {
        () = wait_for_stop(stop) => true,
        () = tokio::time::sleep(delay) => false,
    }
}
