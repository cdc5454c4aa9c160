//! The HTTP server under the gateway's routes: an accept loop on hyper's connection builders,
//! so the limits `axum::serve` does not expose can be set (docs/architecture.md §6, §7):
//!
//! - **HTTP/1.1 and h2c.** Each connection speaks HTTP/1.1, or HTTP/2 over cleartext when the
//!   client opens with HTTP/2's preface (prior knowledge; [`crate::preface`]). HTTP/2 carries up
//!   to [`ServeConfig::http2_max_concurrent_streams`] calls at once on one connection, so many
//!   pending calls need few sockets and few read buffers (no `Upgrade: h2c` dance; TLS and ALPN
//!   are the ingress's business).
//! - **Slow clients.** A client gets [`ServeConfig::header_read_timeout`] to send a request's
//!   line and headers, counted from the connection's start or the end of the previous response.
//!   Past it, hyper closes the connection without an answer (a slow-loris client holds a socket
//!   for that long at most). The same timer closes idle keep-alive connections, and bounds how
//!   long a client may take to send its first bytes (HTTP/2's preface included). An idle HTTP/2
//!   connection stays open while its client answers pings (sent every header read timeout).
//! - **Big heads.** A request line plus headers over [`ServeConfig::max_header_bytes`], or more
//!   than [`ServeConfig::max_headers`] headers, is answered `431 Request Header Fields Too Large`
//!   by hyper itself (no problem+json body: the request never reaches the routes) and the
//!   connection is closed. Over HTTP/2 the same byte limit is the header list size (names,
//!   values and 32 bytes per field, RFC 9113 §6.5.2); the stream is answered 431 and the
//!   connection carries on.
//! - **Graceful shutdown.** When the signal resolves, the listener is closed at once and the
//!   gateway's event streams end (each with a closing comment); idle connections are closed,
//!   busy ones finish their request and close (HTTP/2: GOAWAY, then the open streams finish);
//!   `serve` returns when the last connection is done, or after
//!   [`ServeConfig::shutdown_limit`] with the rest dropped (a client that stopped reading an
//!   event stream would otherwise hold it for ever). A stalled client cannot hold the shutdown
//!   longer than the header read timeout before its request is in.
//! - Every accepted socket has `TCP_NODELAY` set (Nagle's algorithm delays small responses).

use crate::preface::{self, Protocol};
use crate::service::HttpService;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

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
    /// The most headers an HTTP/1 request may carry; more is answered 431.
    pub max_headers: usize,
    /// The most requests one HTTP/2 connection carries at once; the client waits for a stream
    /// to finish before it opens another.
    pub http2_max_concurrent_streams: u32,
    /// How long a shutdown waits for busy connections before it drops them: at least the
    /// longest call deadline, so calls in flight are answered.
    pub shutdown_limit: Duration,
}

impl ServeConfig {
    /// The default header read (and keep-alive idle) timeout: 10 s.
    pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
    /// The default limit on a request's line plus headers: 32 KiB.
    pub const DEFAULT_MAX_HEADER_BYTES: usize = 32 * 1024;
    /// The default limit on the number of headers: 100 (hyper's own).
    pub const DEFAULT_MAX_HEADERS: usize = HYPER_DEFAULT_MAX_HEADERS;
    /// The default limit on concurrent requests per HTTP/2 connection: 256.
    pub const DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS: u32 = 256;
    /// The default shutdown limit: 310 s (the default longest deadline, 300 s, and some).
    pub const DEFAULT_SHUTDOWN_LIMIT: Duration = Duration::from_secs(310);
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: Self::DEFAULT_HEADER_READ_TIMEOUT,
            max_header_bytes: Self::DEFAULT_MAX_HEADER_BYTES,
            max_headers: Self::DEFAULT_MAX_HEADERS,
            http2_max_concurrent_streams: Self::DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS,
            shutdown_limit: Self::DEFAULT_SHUTDOWN_LIMIT,
        }
    }
}

/// Serves `app` (a gateway's [`HttpService`], or any axum `Router`) on `listener` with the
/// default [`ServeConfig`] until `shutdown` resolves, then stops accepting connections and lets
/// in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    app: impl Into<HttpService>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve_with(listener, app, &ServeConfig::default(), shutdown).await
}

/// Serves `app` (a gateway's [`HttpService`], or any axum `Router`) on `listener` with `config`
/// until `shutdown` resolves, then stops accepting connections and lets in-flight requests
/// finish (see the module documentation).
pub async fn serve_with(
    listener: TcpListener,
    app: impl Into<HttpService>,
    config: &ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let app = app.into();
    let builders = Arc::new(Builders::new(config));
    let graceful = GracefulShutdown::new();
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
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
        // Watched from the start: a shutdown waits for a connection still sending its first
        // bytes too (at most the header read timeout).
        connections.spawn(serve_connection(
            stream,
            app.for_peer(peer),
            builders.clone(),
            graceful.watcher(),
        ));
        // Finished connections are reaped as new ones come, so the set stays the size of
        // the connections open.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    app.close_event_streams();
    if tokio::time::timeout(config.shutdown_limit, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            open = connections.len(),
            "connections still busy after the shutdown limit; dropped"
        );
        connections.abort_all();
    }
    Ok(())
}

/// hyper's connection builders, one per protocol, shared by every connection.
struct Builders {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    first_bytes_within: Duration,
}

impl Builders {
    /// The builders with `config`'s limits.
    fn new(config: &ServeConfig) -> Self {
        let header_read_timeout = config.header_read_timeout.max(Duration::from_millis(1));
        let mut http1 = http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .keep_alive(true)
            .header_read_timeout(header_read_timeout)
            .max_header_size(config.max_header_bytes);
        if config.max_headers != HYPER_DEFAULT_MAX_HEADERS {
            http1.max_headers(config.max_headers);
        }
        if config.max_header_bytes > HYPER_DEFAULT_MAX_BUF {
            http1.max_buf_size(config.max_header_bytes.saturating_add(8192));
        }
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_concurrent_streams(config.http2_max_concurrent_streams.max(1))
            .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX))
            .keep_alive_interval(header_read_timeout);
        Self {
            http1,
            http2,
            first_bytes_within: header_read_timeout,
        }
    }
}

/// Serves one accepted connection in the protocol its first bytes name, until it ends.
async fn serve_connection(
    stream: TcpStream,
    service: HttpService,
    builders: Arc<Builders>,
    watcher: Watcher,
) {
    let deadline = tokio::time::Instant::now() + builders.first_bytes_within;
    let protocol = match preface::sniff(&stream, deadline).await {
        Ok(Some(protocol)) => protocol,
        Ok(None) => return,
        Err(error) => {
            tracing::debug!(%error, "connection ended before its first request");
            return;
        }
    };
    let io = TokioIo::new(stream);
    // Resets, header timeouts and malformed requests end a connection: the client's business,
    // not the server's.
    let ended = match protocol {
        Protocol::Http1 => {
            watcher
                .watch(builders.http1.serve_connection(io, service))
                .await
        }
        Protocol::Http2 => {
            watcher
                .watch(builders.http2.serve_connection(io, service))
                .await
        }
    };
    if let Err(error) = ended {
        tracing::debug!(%error, "connection ended");
    }
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
