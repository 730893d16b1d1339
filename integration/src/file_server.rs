//! A static file server for Go plugin files, with request counts and injected faults.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};

use crate::body::FrameBody;
use crate::server::{spawn_server, ServerHandle};

/// A failure the [`FileServer`] produces for one path instead of serving the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Reply with this status and a short text body.
    Status(StatusCode),
    /// Announce the file's full `content-length`, send the first half of it, then close the
    /// connection.
    CloseEarly,
}

#[derive(Debug, Default)]
struct State {
    request_counts: HashMap<String, u64>,
    faults: HashMap<String, Fault>,
}

/// A running file server on 127.0.0.1 that serves the files under one directory by URL path
/// (`/addheader.so` is `<dir>/addheader.so`). Stops on drop.
///
/// Only `GET` and `HEAD` are served, and a path with `..` or other non-plain components gets a
/// 404. Every request is counted under its URL path, faults included.
#[derive(Debug)]
pub struct FileServer {
    server: ServerHandle,
    state: Arc<Mutex<State>>,
}

impl FileServer {
    /// Starts a file server for `dir` on a free port.
    pub fn start(dir: impl Into<PathBuf>) -> io::Result<Self> {
        Self::start_on_port(dir, 0)
    }

    /// Starts a file server for `dir` on `127.0.0.1:port`.
    pub fn start_on_port(dir: impl Into<PathBuf>, port: u16) -> io::Result<Self> {
        let dir: Arc<Path> = Arc::from(dir.into());
        let state = Arc::new(Mutex::new(State::default()));
        let handler_state = Arc::clone(&state);
        let server = spawn_server(port, move |request| {
            serve(Arc::clone(&dir), Arc::clone(&handler_state), request)
        })?;
        Ok(Self { server, state })
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    pub fn port(&self) -> u16 {
        self.addr().port()
    }

    /// Returns the URL of `path` on this server, for example `http://127.0.0.1:PORT/x.so` for
    /// `"/x.so"` or `"x.so"`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{}", self.addr(), path.trim_start_matches('/'))
    }

    /// Returns how many requests arrived for URL path `path` (with its leading `/`).
    pub fn request_count(&self, path: &str) -> u64 {
        lock(&self.state)
            .request_counts
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// Makes every later request for URL path `path` fail with `fault`.
    pub fn set_fault(&self, path: &str, fault: Fault) {
        lock(&self.state).faults.insert(path.to_owned(), fault);
    }

    /// Serves `path` normally again.
    pub fn clear_fault(&self, path: &str) {
        lock(&self.state).faults.remove(path);
    }
}

/// Locks the state. A panic while it was held cannot leave it inconsistent (every update is a
/// single map operation), so a poisoned lock is used as is.
fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn serve(
    dir: Arc<Path>,
    state: Arc<Mutex<State>>,
    request: Request<Incoming>,
) -> Response<FrameBody> {
    let path = request.uri().path().to_owned();
    let fault = {
        let mut state = lock(&state);
        *state.request_counts.entry(path.clone()).or_insert(0) += 1;
        state.faults.get(&path).copied()
    };
    tracing::debug!(%path, ?fault, "file server request");

    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and HEAD are served\n",
        );
    }
    if let Some(Fault::Status(status)) = fault {
        return text_response(status, "fault injected by the test\n");
    }
    let Some(file) = resolve(&dir, &path) else {
        return text_response(StatusCode::NOT_FOUND, "not found\n");
    };
    let contents = match tokio::fs::read(&file).await {
        Ok(contents) => contents,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return text_response(StatusCode::NOT_FOUND, "not found\n");
        }
        Err(error) => {
            tracing::warn!(file = %file.display(), %error, "reading a served file failed");
            return text_response(StatusCode::INTERNAL_SERVER_ERROR, "read failed\n");
        }
    };

    let length = contents.len();
    let body = if request.method() == Method::HEAD {
        FrameBody::default()
    } else if fault == Some(Fault::CloseEarly) {
        let mut prefix = contents;
        prefix.truncate(length / 2);
        FrameBody::truncated(prefix, "connection closed early by the test")
    } else {
        FrameBody::full(contents)
    };
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    response
}

/// Maps a URL path to a file under `dir`, or `None` when the path leaves `dir` or names `dir`.
fn resolve(dir: &Path, url_path: &str) -> Option<PathBuf> {
    let relative = Path::new(url_path.trim_start_matches('/'));
    let plain = relative
        .components()
        .all(|part| matches!(part, Component::Normal(_)));
    if !plain || relative.as_os_str().is_empty() {
        return None;
    }
    Some(dir.join(relative))
}

fn text_response(status: StatusCode, message: &'static str) -> Response<FrameBody> {
    let mut response = Response::new(FrameBody::full(message));
    *response.status_mut() = status;
    response
}
