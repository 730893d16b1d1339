//! A small HTTP/1.1 server on 127.0.0.1 for the fetch tests, plain or over TLS.
//!
//! Each connection serves one request and closes. The server counts requests, so tests can
//! check that a cache hit sent none. It stops when dropped, or by itself after
//! `MAX_SERVER_LIFETIME`.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// Time after which the accept loop ends even if the test never drops the server.
const MAX_SERVER_LIFETIME: Duration = Duration::from_secs(120);

/// Pause between polls of the non-blocking listener.
const ACCEPT_POLL_INTERVAL: Duration = Duration::from_millis(5);

/// Read and write timeout of each connection.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// Maximum size of a request head.
const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// What the server sends for a path.
#[derive(Clone, Debug)]
pub enum Route {
    /// 200 with these bytes and a matching `Content-Length`.
    Bytes(Vec<u8>),
    /// This status with this body.
    Status(u16, Vec<u8>),
    /// 200 with `Content-Length: length`, then one byte per `delay`, `length` times.
    SlowBody { length: usize, delay: Duration },
    /// 200 without `Content-Length`: the body ends when the connection closes.
    Unsized(Vec<u8>),
    /// 200 with `Content-Length: length` and no body; the connection closes at once.
    DeclaredLength(u64),
    /// 200 with `Content-Length: declared`, then `sent` bytes, then the connection closes.
    Truncated { declared: usize, sent: Vec<u8> },
}

/// A running test server.
pub struct TestServer {
    address: SocketAddr,
    scheme: &'static str,
    routes: Arc<Mutex<HashMap<String, Route>>>,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Starts a plain HTTP server.
    pub fn start_http() -> Self {
        Self::start(None)
    }

    /// Starts an HTTPS server with `tls`.
    pub fn start_https(tls: Arc<rustls::ServerConfig>) -> Self {
        Self::start(Some(tls))
    }

    fn start(tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1");
        listener
            .set_nonblocking(true)
            .expect("make the listener non-blocking");
        let address = listener.local_addr().expect("read the listener address");

        let routes: Arc<Mutex<HashMap<String, Route>>> = Arc::default();
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let scheme = if tls.is_some() { "https" } else { "http" };

        let acceptor = {
            let (routes, requests, stop) = (routes.clone(), requests.clone(), stop.clone());
            std::thread::spawn(move || accept_loop(listener, tls, routes, requests, stop))
        };
        Self {
            address,
            scheme,
            routes,
            requests,
            stop,
            acceptor: Some(acceptor),
        }
    }

    /// Returns the URL of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.address)
    }

    /// Sets or replaces the route for `path`.
    pub fn set_route(&self, path: &str, route: Route) {
        self.routes
            .lock()
            .expect("routes lock")
            .insert(path.to_owned(), route);
    }

    /// Returns the number of requests received so far, whatever their path.
    pub fn request_count(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Stops accepting and closes the listening socket, so new connections are refused.
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shut_down();
    }
}

fn accept_loop(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    routes: Arc<Mutex<HashMap<String, Route>>>,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) {
    let started = Instant::now();
    while !stop.load(Ordering::SeqCst) && started.elapsed() < MAX_SERVER_LIFETIME {
        match listener.accept() {
            Ok((stream, _peer)) => {
                let (tls, routes, requests) = (tls.clone(), routes.clone(), requests.clone());
                std::thread::spawn(move || serve_connection(stream, tls, &routes, &requests));
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(ACCEPT_POLL_INTERVAL);
            }
            Err(_) => std::thread::sleep(ACCEPT_POLL_INTERVAL),
        }
    }
}

fn serve_connection(
    stream: TcpStream,
    tls: Option<Arc<rustls::ServerConfig>>,
    routes: &Mutex<HashMap<String, Route>>,
    requests: &AtomicUsize,
) {
    let configured = stream.set_nonblocking(false).is_ok()
        && stream.set_read_timeout(Some(CONNECTION_TIMEOUT)).is_ok()
        && stream.set_write_timeout(Some(CONNECTION_TIMEOUT)).is_ok();
    if !configured {
        return;
    }

    match tls {
        None => serve_request(stream, routes, requests),
        Some(config) => {
            let Ok(connection) = rustls::ServerConnection::new(config) else {
                return;
            };
            serve_request(
                rustls::StreamOwned::new(connection, stream),
                routes,
                requests,
            );
        }
    }
}

/// Reads one request head and writes the route's response. Write errors end the exchange:
/// they mean the client has gone, which several tests cause on purpose.
fn serve_request<S: Read + Write>(
    mut stream: S,
    routes: &Mutex<HashMap<String, Route>>,
    requests: &AtomicUsize,
) {
    let Some(path) = read_request_path(&mut stream) else {
        return;
    };
    requests.fetch_add(1, Ordering::SeqCst);

    let route = routes
        .lock()
        .map(|routes| routes.get(&path).cloned())
        .unwrap_or(None);
    let route = route.unwrap_or(Route::Status(404, b"no such route".to_vec()));
    let _ = write_route(&mut stream, &route);
}

fn read_request_path<S: Read>(stream: &mut S) -> Option<String> {
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
    }

    let head = String::from_utf8_lossy(&head);
    let request_line = head.lines().next()?;
    request_line.split(' ').nth(1).map(str::to_owned)
}

fn write_route<S: Write>(stream: &mut S, route: &Route) -> std::io::Result<()> {
    match route {
        Route::Bytes(body) => {
            write_head(stream, 200, Some(body.len() as u64))?;
            stream.write_all(body)?;
        }
        Route::Status(status, body) => {
            write_head(stream, *status, Some(body.len() as u64))?;
            stream.write_all(body)?;
        }
        Route::SlowBody { length, delay } => {
            write_head(stream, 200, Some(*length as u64))?;
            stream.flush()?;
            for _ in 0..*length {
                std::thread::sleep(*delay);
                stream.write_all(b"x")?;
                stream.flush()?;
            }
        }
        Route::Unsized(body) => {
            write_head(stream, 200, None)?;
            stream.write_all(body)?;
        }
        Route::DeclaredLength(length) => write_head(stream, 200, Some(*length))?,
        Route::Truncated { declared, sent } => {
            write_head(stream, 200, Some(*declared as u64))?;
            stream.write_all(sent)?;
        }
    }
    stream.flush()
}

fn write_head<S: Write>(stream: &mut S, status: u16, length: Option<u64>) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {status} Test\r\nConnection: close\r\n");
    if let Some(length) = length {
        head.push_str(&format!("Content-Length: {length}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())
}

/// A test CA and a server certificate for 127.0.0.1 signed by it.
pub struct TestTls {
    /// Server configuration presenting the certificate.
    pub server_config: Arc<rustls::ServerConfig>,
    /// The CA certificate in PEM form.
    pub ca_pem: String,
}

impl TestTls {
    pub fn new() -> Self {
        let ca_key = KeyPair::generate().expect("generate the CA key");
        let mut ca_params = CertificateParams::default();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "edgefn-loader test CA");
        let ca = ca_params
            .self_signed(&ca_key)
            .expect("sign the CA certificate");

        let server_key = KeyPair::generate().expect("generate the server key");
        let mut server_params = CertificateParams::default();
        server_params
            .distinguished_name
            .push(DnType::CommonName, "127.0.0.1");
        server_params.subject_alt_names = vec![SanType::IpAddress(Ipv4Addr::LOCALHOST.into())];
        let server_cert = server_params
            .signed_by(&server_key, &ca, &ca_key)
            .expect("sign the server cert");

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
        let server_config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("choose TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![server_cert.der().clone()], key)
            .expect("build the server TLS config");

        Self {
            server_config: Arc::new(server_config),
            ca_pem: ca.pem(),
        }
    }

    /// Writes the CA certificate to `path`.
    pub fn write_ca(&self, path: &Path) {
        std::fs::write(path, &self.ca_pem).expect("write the CA file");
    }
}
