//! The HTTP/1.1 server under the gateway's routes: an accept loop on hyper's connection builder,
//! so the limits `axum::serve` does not expose can be set (DESIGN §6, §7):
//!
//! - **Slow clients.** A client gets [`ServeConfig::header_read_timeout`] to send a request's
//!   line and headers, counted from the connection's start or the end of the previous response.
//!   Past it, hyper closes the connection without an answer (a slow-loris client holds a socket
//!   for that long at most). The same timer closes idle keep-alive connections.
//! - **Big heads.** A request line plus headers over [`ServeConfig::max_header_bytes`], or more
//!   than [`ServeConfig::max_headers`] headers, is answered `431 Request Header Fields Too Large`
//!   by hyper itself (no problem+json body: the request never reaches the routes) and the
//!   connection is closed.
//! - **Graceful shutdown.** When the signal resolves, the listener is closed at once; idle
//!   connections are closed, busy ones finish their request and close; `serve` returns when the
//!   last connection is done. A stalled client cannot hold the shutdown longer than the header
//!   read timeout.
//! - Every accepted socket has `TCP_NODELAY` set (Nagle's algorithm delays small responses).

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::io;
use std::time::Duration;
use tokio::net::TcpListener;

/// How many headers hyper parses on the stack; another limit makes it allocate per request.
const HYPER_DEFAULT_MAX_HEADERS: usize = 100;

/// hyper's default read buffer limit (8 KiB + 100 x 4 KiB); a larger head needs a larger one.
const HYPER_DEFAULT_MAX_BUF: usize = 8192 + 4096 * 100;

/// Limits of the HTTP server, per connection and per request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeConfig {
    /// How long a client may take to send a request's line and headers (and how long an idle
    /// keep-alive connection stays open). Then the connection is closed without an answer.
    pub header_read_timeout: Duration,
    /// The largest request line plus headers, in bytes; larger is answered 431.
    pub max_header_bytes: usize,
    /// The most headers a request may carry; more is answered 431.
    pub max_headers: usize,
}

impl ServeConfig {
    /// The default header read (and keep-alive idle) timeout: 10 s.
    pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
    /// The default limit on a request's line plus headers: 32 KiB.
    pub const DEFAULT_MAX_HEADER_BYTES: usize = 32 * 1024;
    /// The default limit on the number of headers: 100 (hyper's own).
    pub const DEFAULT_MAX_HEADERS: usize = HYPER_DEFAULT_MAX_HEADERS;
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: Self::DEFAULT_HEADER_READ_TIMEOUT,
            max_header_bytes: Self::DEFAULT_MAX_HEADER_BYTES,
            max_headers: Self::DEFAULT_MAX_HEADERS,
        }
    }
}

/// Serves `app` on `listener` with the default [`ServeConfig`] until `shutdown` resolves, then
/// stops accepting connections and lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve_with(listener, app, &ServeConfig::default(), shutdown).await
}

/// Serves `app` on `listener` with `config` until `shutdown` resolves, then stops accepting
/// connections and lets in-flight requests finish (see the module documentation).
pub async fn serve_with(
    listener: TcpListener,
    app: Router,
    config: &ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let builder = builder(config);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    accept_failed(error).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        let service = TowerToHyperService::new(app.clone());
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            // Resets, header timeouts and malformed requests end a connection: the client's
            // business, not the server's.
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// hyper's HTTP/1 connection builder with `config`'s limits.
fn builder(config: &ServeConfig) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(config.header_read_timeout.max(Duration::from_millis(1)))
        .max_header_size(config.max_header_bytes);
    if config.max_headers != HYPER_DEFAULT_MAX_HEADERS {
        builder.max_headers(config.max_headers);
    }
    if config.max_header_bytes > HYPER_DEFAULT_MAX_BUF {
        builder.max_buf_size(config.max_header_bytes.saturating_add(8192));
    }
    builder
}

/// What to do when `accept` fails: per-connection errors are the peer's and are skipped; others
/// (out of file descriptors) would fail again at once, so the loop pauses a moment first.
async fn accept_failed(error: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(%error, "cannot accept connections; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
