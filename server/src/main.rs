//! `edgefn-server`: serves the EdgeFunctionRevision API over plain HTTP.
//!
//! ```text
//! edgefn-server --data revisions.jsonl [--artifacts DIR] [--ingest fetch|none] [--listen ADDRESS]
//! edgefn-server --etcd http://127.0.0.1:2379 [--etcd-prefix PREFIX] --artifacts DIR [--listen …]
//! ```
//!
//! Ingest fetches each revision's artifact into `--artifacts` (default `FILE.artifacts` next to
//! the `--data` file) and serves it at `/artifacts/sha256/{hex}`. `--ingest none` turns ingest
//! off: every revision gets `Ready=False` and nothing is fetched.
//!
//! It prints `listening on http://ADDRESS` to stdout once it accepts connections, so that a
//! caller that passed port 0 learns the port. `EDGEFN_LOG` sets the log level (error, warn,
//! info, debug or trace; info by default); logs go to stderr.
#![forbid(unsafe_code)]

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use edgefn_server::artifact_ingest::ArtifactIngest;
use edgefn_server::artifacts::{ArtifactStore, ArtifactStoreError};
use edgefn_server::ingest::{DisabledIngest, Ingest};
use edgefn_server::store::{FileStore, Store, StoreError};
use tracing::level_filters::LevelFilter;

const USAGE: &str = "usage: edgefn-server (--data FILE | --etcd URL[,URL...] [--etcd-prefix \
                     PREFIX]) [--artifacts DIR] [--ingest fetch|none] [--listen ADDRESS]";

/// How long open requests, such as watches, may run after SIGINT or SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Error that stops the server.
#[derive(Debug, thiserror::Error)]
enum ServerError {
    #[error("{0}\n{USAGE}")]
    Usage(String),
    #[error("opening the store failed: {0}")]
    Store(#[from] StoreError),
    #[error("opening the artifact store failed: {0}")]
    Artifacts(#[from] ArtifactStoreError),
    #[error("listening on {address} failed: {source}; choose another --listen address")]
    Listen {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("serving HTTP failed: {0}")]
    Serve(std::io::Error),
}

/// Storage backend of the objects.
enum Backend {
    File(PathBuf),
    #[cfg_attr(
        not(feature = "etcd"),
        allow(dead_code, reason = "read only by builds with the etcd feature")
    )]
    Etcd {
        endpoints: Vec<String>,
        prefix: Option<String>,
    },
}

/// The ingest step run after a create or a spec change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IngestMode {
    /// Fetch, check and store the artifact.
    Fetch,
    /// Fetch nothing; every revision gets `Ready=False`.
    Disabled,
}

struct Options {
    listen: SocketAddr,
    backend: Backend,
    /// Folder of the artifact store; `None` when nothing is stored or served.
    artifacts: Option<PathBuf>,
    ingest: IngestMode,
}

fn parse_options(mut arguments: impl Iterator<Item = String>) -> Result<Options, ServerError> {
    let mut listen = SocketAddr::from(([127, 0, 0, 1], 8080));
    let mut data = None;
    let mut etcd = None;
    let mut etcd_prefix = None;
    let mut artifacts = None;
    let mut ingest = IngestMode::Fetch;

    while let Some(argument) = arguments.next() {
        let mut value = |name: &str| {
            arguments
                .next()
                .ok_or_else(|| ServerError::Usage(format!("{name} needs a value")))
        };
        match argument.as_str() {
            "--listen" => {
                let text = value("--listen")?;
                listen = text.parse().map_err(|_| {
                    ServerError::Usage(format!(
                        "invalid --listen address {text:?}: expected IP:PORT, such as \
                         127.0.0.1:8080"
                    ))
                })?;
            }
            "--data" => data = Some(PathBuf::from(value("--data")?)),
            "--etcd" => {
                let endpoints: Vec<String> = value("--etcd")?
                    .split(',')
                    .filter(|endpoint| !endpoint.is_empty())
                    .map(str::to_owned)
                    .collect();
                etcd = Some(endpoints);
            }
            "--etcd-prefix" => etcd_prefix = Some(value("--etcd-prefix")?),
            "--artifacts" => artifacts = Some(PathBuf::from(value("--artifacts")?)),
            "--ingest" => {
                ingest = match value("--ingest")?.as_str() {
                    "fetch" => IngestMode::Fetch,
                    "none" => IngestMode::Disabled,
                    other => {
                        return Err(ServerError::Usage(format!(
                            "invalid --ingest value {other:?}: expected fetch or none"
                        )))
                    }
                }
            }
            "-h" | "--help" => return Err(ServerError::Usage("help requested".to_owned())),
            other => return Err(ServerError::Usage(format!("unknown argument {other:?}"))),
        }
    }

    let backend = match (data, etcd) {
        (Some(path), None) => Backend::File(path),
        (None, Some(endpoints)) if !endpoints.is_empty() => Backend::Etcd {
            endpoints,
            prefix: etcd_prefix,
        },
        (Some(_), Some(_)) => {
            return Err(ServerError::Usage(
                "--data and --etcd exclude each other; pass one".to_owned(),
            ))
        }
        _ => {
            return Err(ServerError::Usage(
                "missing storage: pass --data FILE or --etcd URL".to_owned(),
            ))
        }
    };
    let artifacts = match (artifacts, &backend) {
        (Some(folder), _) => Some(folder),
        (None, Backend::File(path)) => Some(default_artifacts_folder(path)),
        // NOTE: each server keeps the artifacts of the ingests it ran in its own folder, so with
        // several servers on one etcd a proxy must download from the server that ingested.
        (None, Backend::Etcd { .. }) if ingest == IngestMode::Fetch => {
            return Err(ServerError::Usage(
                "--etcd needs --artifacts DIR, the folder where ingest keeps artifacts (or \
                 --ingest none)"
                    .to_owned(),
            ))
        }
        (None, Backend::Etcd { .. }) => None,
    };
    Ok(Options {
        listen,
        backend,
        artifacts,
        ingest,
    })
}

/// Returns `FILE.artifacts` next to the `--data` file.
fn default_artifacts_folder(data: &std::path::Path) -> PathBuf {
    let mut name = data.file_name().unwrap_or_default().to_os_string();
    name.push(".artifacts");
    data.with_file_name(name)
}

async fn open_store(backend: Backend) -> Result<Arc<dyn Store>, ServerError> {
    match backend {
        Backend::File(path) => Ok(Arc::new(FileStore::open(path)?)),
        #[cfg(feature = "etcd")]
        Backend::Etcd { endpoints, prefix } => Ok(Arc::new(
            edgefn_server::store::EtcdStore::connect(&endpoints, prefix.as_deref()).await?,
        )),
        #[cfg(not(feature = "etcd"))]
        Backend::Etcd { .. } => Err(ServerError::Usage(
            "--etcd needs a build with the cargo feature etcd".to_owned(),
        )),
    }
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(terminate) => terminate,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only SIGINT stops the server");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

async fn run(options: Options) -> Result<(), ServerError> {
    let store = open_store(options.backend).await?;
    let artifacts = match &options.artifacts {
        Some(folder) => Some(Arc::new(ArtifactStore::open(folder)?)),
        None => None,
    };
    let ingest: Arc<dyn Ingest> = match (options.ingest, &artifacts) {
        (IngestMode::Fetch, Some(artifacts)) => {
            tracing::info!(folder = %artifacts.root().display(), "artifact store opened");
            Arc::new(ArtifactIngest::new(
                Arc::clone(artifacts),
                edgefn_loader::FetchOptions::default(),
            ))
        }
        _ => {
            tracing::warn!("ingest is turned off: revisions get Ready=False");
            Arc::new(DisabledIngest)
        }
    };
    let app = edgefn_server::router_with_artifacts(store, ingest, artifacts);

    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|source| ServerError::Listen {
            address: options.listen,
            source,
        })?;
    let address = listener.local_addr().map_err(ServerError::Serve)?;
    tracing::info!(%address, "listening");
    println!("listening on http://{address}");
    let _ = std::io::stdout().flush();

    let (stop_sender, mut stop_receiver) = tokio::sync::watch::channel(false);
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = stop_sender.send(true);
    });
    let grace = async move {
        let _ = stop_receiver.wait_for(|stopped| *stopped).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        served = server => served.map_err(ServerError::Serve),
        () = grace => {
            tracing::info!("stopped with requests still open");
            Ok(())
        }
    }
}

fn log_level() -> LevelFilter {
    std::env::var("EDGEFN_LOG")
        .ok()
        .and_then(|level| level.parse().ok())
        .unwrap_or(LevelFilter::INFO)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_max_level(log_level())
        .with_writer(std::io::stderr)
        .init();

    let result = parse_options(std::env::args().skip(1)).and_then(|options| {
        let runtime = tokio::runtime::Runtime::new().map_err(ServerError::Serve)?;
        runtime.block_on(run(options))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("edgefn-server: {error}");
            ExitCode::FAILURE
        }
    }
}
