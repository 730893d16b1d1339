//! A hand-written fake registry on 127.0.0.1 for what the real registry cannot be made to do:
//! token auth with a token service that refuses or issues short-lived tokens, corrupted or
//! cut-off blobs, and chosen error statuses. One request per connection; it counts requests.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine as _;

/// Time after which the accept loop ends even if the test never drops the registry.
const MAX_LIFETIME: Duration = Duration::from_secs(120);
const POLL_INTERVAL: Duration = Duration::from_millis(5);
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// What a blob path serves.
#[derive(Clone, Debug)]
pub enum Blob {
    Bytes(Vec<u8>),
    /// `Content-Length: declared`, then `sent`, then the connection closes.
    Truncated {
        declared: usize,
        sent: Vec<u8>,
    },
    Status(u16),
}

/// Token auth settings: the token service at `/token` checks these credentials.
#[derive(Clone, Debug)]
pub struct TokenAuth {
    pub username: String,
    pub password: String,
    /// Status the token service returns for valid credentials: 200, or 401 or 403 to reject them.
    pub token_status: u16,
    /// Number of registry requests each token is accepted for; later ones get 401, as an
    /// expired token does.
    pub uses_per_token: usize,
}

#[derive(Default)]
pub struct State {
    /// Manifests by tag or digest: body and content type.
    pub manifests: HashMap<String, (Vec<u8>, String)>,
    pub blobs: HashMap<String, Blob>,
    pub token_auth: Option<TokenAuth>,
    /// Status every manifest request gets instead of the manifest, such as 403 or 500.
    pub manifest_status: Option<u16>,
    pub requests: usize,
    pub token_requests: usize,
    /// Authorization headers received by the token service.
    pub token_authorizations: Vec<String>,
    tokens: HashMap<String, usize>,
    issued: usize,
}

pub struct FakeRegistry {
    address: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl FakeRegistry {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let address = listener.local_addr().expect("listener address");
        let state: Arc<Mutex<State>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::spawn(move || accept_loop(listener, address, &state, &stop))
        };
        Self {
            address,
            state,
            stop,
            acceptor: Some(acceptor),
        }
    }

    pub fn host(&self) -> String {
        self.address.to_string()
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Serves `manifest` of `media_type` under `tag` and under its digest.
    pub fn set_manifest(&self, tag: &str, manifest: &[u8], media_type: &str) -> String {
        let digest = super::digest_of(manifest);
        let entry = (manifest.to_vec(), media_type.to_owned());
        let mut state = self.state();
        state.manifests.insert(tag.to_owned(), entry.clone());
        state.manifests.insert(digest.clone(), entry);
        digest
    }

    pub fn set_blob(&self, digest: &str, blob: Blob) {
        self.state().blobs.insert(digest.to_owned(), blob);
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn accept_loop(
    listener: TcpListener,
    address: SocketAddr,
    state: &Arc<Mutex<State>>,
    stop: &AtomicBool,
) {
    let started = Instant::now();
    while !stop.load(Ordering::SeqCst) && started.elapsed() < MAX_LIFETIME {
        match listener.accept() {
            Ok((stream, _)) => {
                let state = state.clone();
                std::thread::spawn(move || serve(stream, address, &state));
            }
            Err(_) => std::thread::sleep(POLL_INTERVAL),
        }
    }
}

struct Request {
    path: String,
    authorization: Option<String>,
}

fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let mut head = Vec::new();
    let mut buffer = [0_u8; 1024];
    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
        if head.len() > MAX_REQUEST_HEAD {
            return None;
        }
        let read = stream.read(&mut buffer).ok()?;
        if read == 0 {
            return None;
        }
        head.extend_from_slice(&buffer[..read]);
        // A TLS ClientHello (record type 22) is not HTTP: close, as a plain-HTTP server does.
        if head.first() == Some(&0x16) {
            return None;
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.lines();
    let path = lines.next()?.split(' ').nth(1)?.to_owned();
    let authorization = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("authorization"))
        .map(|(_, value)| value.trim().to_owned());
    Some(Request {
        path,
        authorization,
    })
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Declared length when it differs from the body's, to cut a transfer short.
    declared_length: Option<usize>,
}

impl Response {
    fn new(status: u16, body: Vec<u8>) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body,
            declared_length: None,
        }
    }

    fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

fn error_body(code: &str) -> Vec<u8> {
    format!(r#"{{"errors":[{{"code":"{code}","message":"fake registry: {code}"}}]}}"#).into_bytes()
}

fn serve(mut stream: TcpStream, address: SocketAddr, state: &Mutex<State>) {
    let configured = stream.set_nonblocking(false).is_ok()
        && stream.set_read_timeout(Some(CONNECTION_TIMEOUT)).is_ok()
        && stream.set_write_timeout(Some(CONNECTION_TIMEOUT)).is_ok();
    if !configured {
        return;
    }
    let Some(request) = read_request(&mut stream) else {
        return;
    };
    let response = {
        let mut state = state.lock().unwrap_or_else(|poison| poison.into_inner());
        state.requests += 1;
        route(&request, address, &mut state)
    };

    let mut head = format!("HTTP/1.1 {} Fake\r\nConnection: close\r\n", response.status);
    let length = response.declared_length.unwrap_or(response.body.len());
    head.push_str(&format!("Content-Length: {length}\r\n"));
    for (name, value) in &response.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&response.body);
    let _ = stream.flush();
}

fn route(request: &Request, address: SocketAddr, state: &mut State) -> Response {
    if request.path.starts_with("/token") {
        return token(request, state);
    }
    if !authorized(request, state) {
        let challenge = format!(r#"Bearer realm="http://{address}/token",service="fake-registry""#);
        return Response::new(401, error_body("UNAUTHORIZED"))
            .header("WWW-Authenticate", &challenge);
    }
    if request.path == "/v2/" {
        return Response::new(200, b"{}".to_vec());
    }

    let Some(rest) = request.path.strip_prefix("/v2/") else {
        return Response::new(404, error_body("NOT_FOUND"));
    };
    if let Some((_, reference)) = rest.rsplit_once("/manifests/") {
        if let Some(status) = state.manifest_status {
            let code = if status == 403 { "DENIED" } else { "UNKNOWN" };
            return Response::new(status, error_body(code));
        }
        return match state.manifests.get(reference) {
            Some((body, media_type)) => Response::new(200, body.clone())
                .header("Content-Type", media_type)
                .header("Docker-Content-Digest", &super::digest_of(body)),
            None => Response::new(404, error_body("MANIFEST_UNKNOWN")),
        };
    }
    if let Some((_, digest)) = rest.rsplit_once("/blobs/") {
        return match state.blobs.get(digest) {
            Some(Blob::Bytes(bytes)) => Response::new(200, bytes.clone()),
            Some(Blob::Truncated { declared, sent }) => Response {
                declared_length: Some(*declared),
                ..Response::new(200, sent.clone())
            },
            Some(Blob::Status(status)) => Response::new(*status, error_body("UNKNOWN")),
            None => Response::new(404, error_body("BLOB_UNKNOWN")),
        };
    }
    Response::new(404, error_body("NOT_FOUND"))
}

/// Accepts a request without token auth, or with a bearer token that has uses left.
fn authorized(request: &Request, state: &mut State) -> bool {
    if state.token_auth.is_none() {
        return true;
    }
    let Some(token) = request
        .authorization
        .as_deref()
        .and_then(|value| value.strip_prefix("Bearer "))
    else {
        return false;
    };
    match state.tokens.get_mut(token) {
        Some(uses) if *uses > 0 => {
            *uses -= 1;
            true
        }
        _ => false,
    }
}

fn token(request: &Request, state: &mut State) -> Response {
    state.token_requests += 1;
    if let Some(authorization) = &request.authorization {
        state.token_authorizations.push(authorization.clone());
    }
    let Some(auth) = state.token_auth.clone() else {
        return Response::new(404, b"no token service".to_vec());
    };

    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", auth.username, auth.password))
    );
    if request.authorization.as_deref() != Some(expected.as_str()) {
        return Response::new(
            401,
            br#"{"details":"incorrect username or password"}"#.to_vec(),
        );
    }
    if auth.token_status != 200 {
        return Response::new(
            auth.token_status,
            br#"{"details":"access refused"}"#.to_vec(),
        );
    }

    state.issued += 1;
    let token = format!("fake-token-{}", state.issued);
    state.tokens.insert(token.clone(), auth.uses_per_token);
    Response::new(200, format!(r#"{{"token":"{token}"}}"#).into_bytes())
        .header("Content-Type", "application/json")
}
