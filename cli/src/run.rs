//! `edgefn run`: serves a backend wasm function over HTTP on its own, outside Envoy, for
//! deployments whose Envoy routes to the function as a cluster.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use edgefn_loader::{fetch_blocking, FetchOptions, Source};
use edgefn_proto::EdgeFunctionMode;
use edgefn_wasm::backend::MAX_REQUEST_BODY;
use edgefn_wasm::{BackendFunction, CgiRequest, CgiResponse, FunctionSettings};
use tokio::sync::Semaphore;

/// Port a backend revision listens on when `spec.runtime.port` is not set.
const DEFAULT_PORT: u16 = 8080;

/// Loads the backend revision in `file` and serves it on `listen`, or on 127.0.0.1 at
/// `spec.runtime.port`, until the process is stopped.
pub fn run(
    file: &Path,
    listen: Option<SocketAddr>,
    cache_dir: &Path,
    max_concurrent: usize,
) -> Result<(), String> {
    let text = std::fs::read_to_string(file)
        .map_err(|error| format!("cannot read {}: {error}", file.display()))?;
    let revision = edgefn_proto::parse_revision(&text)
        .map_err(|error| format!("{}: {error}", file.display()))?;
    let name = revision.name().to_owned();
    let Some(wasm_source) = &revision.spec.code.wasm_source else {
        return Err(format!(
            "{}: revision {name:?} has no spec.code.wasmSource; edgefn run serves wasm \
             functions only",
            file.display()
        ));
    };
    if revision.spec.mode() != Some(EdgeFunctionMode::Backend) {
        return Err(format!(
            "{}: revision {name:?} has mode {:?}; edgefn run serves backend functions, so set \
             spec.mode to backend",
            file.display(),
            revision.spec.mode
        ));
    }

    let settings = FunctionSettings::from_revision(&revision)
        .map_err(|error| format!("{}: revision {name:?}: invalid {error}", file.display()))?;
    let options = FetchOptions {
        cache_dir: cache_dir.to_owned(),
        expected_sha256: revision
            .expected_sha256()
            .map_err(|error| format!("revision {name:?}: invalid {error}"))?
            .map(str::to_owned),
        ..FetchOptions::default()
    };
    let artifact = fetch_blocking(&Source::Url(wasm_source.url.clone()), &options)
        .map_err(|error| format!("revision {name:?}: cannot fetch the wasm module: {error}"))?;
    let module = edgefn_wasm::compile(
        &artifact.path,
        &artifact.sha256,
        Some(&cache_dir.join("compiled")),
        None,
    )
    .map_err(|error| format!("revision {name:?}: {error}"))?;
    edgefn_wasm::settings::check_module(&module, &settings, true)?;
    let function = BackendFunction::load(&module, settings).map_err(|error| error.to_string())?;
    let function = Arc::new(function);

    let port = revision.spec.port().unwrap_or(DEFAULT_PORT);
    let listen = listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], port)));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the runtime: {error}"))?;
    runtime.block_on(serve(function, listen, max_concurrent))
}

async fn serve(
    function: Arc<BackendFunction>,
    listen: SocketAddr,
    max_concurrent: usize,
) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|error| format!("cannot listen on {listen}: {error}"))?;
    let revision = function.settings().revision.clone();
    eprintln!("edgefn: serving revision {revision:?} on http://{listen}");

    let slots = Arc::new(Semaphore::new(max_concurrent.max(1)));
    let app = axum::Router::new().fallback(move |connect_info, request| {
        handle(
            Arc::clone(&function),
            Arc::clone(&slots),
            connect_info,
            request,
        )
    });
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, service)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|error| format!("the server on {listen} failed: {error}"))
}

/// Resolves on SIGINT or SIGTERM, so requests in flight finish before the server exits.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};

    let terminate = async {
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                terminate.recv().await;
            }
            Err(error) => {
                tracing::warn!("cannot watch for SIGTERM: {error}");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    eprintln!("edgefn: stopping; requests in flight finish first");
}

async fn handle(
    function: Arc<BackendFunction>,
    slots: Arc<Semaphore>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    // Each running function holds a thread and up to its memory cap, so requests beyond
    // --max-concurrent get 503 instead of queueing without bound.
    let Ok(_slot) = slots.try_acquire_owned() else {
        return plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "edgefn: too many requests are running\n",
        );
    };
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, MAX_REQUEST_BODY).await {
        Ok(body) => body,
        Err(_) => return plain(StatusCode::PAYLOAD_TOO_LARGE, "request body over 16 MiB\n"),
    };
    let mut headers = Vec::new();
    for (name, value) in &parts.headers {
        headers.push((name.as_str().to_owned(), value.as_bytes().to_vec()));
    }
    let request = CgiRequest {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |path| path.to_string()),
        scheme: "http".to_owned(),
        protocol: format!("{:?}", parts.version).replace("HTTP/2.0", "HTTP/2"),
        headers,
        body: body.to_vec(),
        remote_addr: Some(client.to_string()),
    };

    let revision = function.settings().revision.clone();
    let outcome = tokio::task::spawn_blocking(move || function.run(&request)).await;
    match outcome {
        Ok(Ok(response)) => to_response(response),
        Ok(Err(error)) => {
            tracing::error!(revision = %revision, "wasm function failed: {error}");
            let status =
                StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            plain(status, "edgefn: the function failed\n")
        }
        Err(error) => {
            tracing::error!(revision = %revision, "the function thread failed: {error}");
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "edgefn: internal error\n",
            )
        }
    }
}

fn to_response(response: CgiResponse) -> Response {
    let mut built = Response::new(Body::from(response.body));
    *built.status_mut() =
        StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in response.headers {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) else {
            continue;
        };
        built.headers_mut().append(name, value);
    }
    built
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    response
}
