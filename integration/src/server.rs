//! The shared background runtime and the accept loop behind [`crate::EchoUpstream`] and
//! [`crate::FileServer`].

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::OnceLock;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::runtime::Runtime;
use tokio::task::{JoinHandle, JoinSet};

use crate::body::FrameBody;

/// Returns the runtime that every server of this crate runs on. It has its own threads, so a
/// test that blocks its thread (or runs on a single-threaded runtime) does not stall them.
pub(crate) fn background_runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("edgefn-test-server")
            .enable_all()
            .build()
            .expect("the background Tokio runtime for test servers failed to start")
    })
}

/// A running server. Dropping it stops the accept loop and aborts every open connection.
#[derive(Debug)]
pub(crate) struct ServerHandle {
    addr: SocketAddr,
    accept_task: JoinHandle<()>,
}

impl ServerHandle {
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

/// Binds `127.0.0.1:port` (0 picks a free port) and serves HTTP/1.1 and h2c (HTTP/2 with prior
/// knowledge) on it, calling `handler` once per request.
pub(crate) fn spawn_server<H, F>(port: u16, handler: H) -> io::Result<ServerHandle>
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<FrameBody>> + Send + 'static,
{
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;

    let runtime = background_runtime();
    let listener = {
        let _guard = runtime.enter();
        tokio::net::TcpListener::from_std(listener)?
    };
    let accept_task = runtime.spawn(accept_loop(listener, handler));
    Ok(ServerHandle { addr, accept_task })
}

async fn accept_loop<H, F>(listener: tokio::net::TcpListener, handler: H)
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<FrameBody>> + Send + 'static,
{
    // The connection tasks live in this set, so aborting the accept task aborts them too.
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}

        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };

        let handler = handler.clone();
        connections.spawn(async move {
            let service = service_fn(move |request| {
                let response = handler(request);
                async move { Ok::<_, Infallible>(response.await) }
            });
            let result = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(error) = result {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
}
