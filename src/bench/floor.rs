//! The HTTP floor: what the HTTP exchange alone costs on this machine, so the bench can say how
//! close to its ceiling any HTTP front could come.
//!
//! `warren http-floor` (hidden; the bench starts it like the gateway) is a bare hyper HTTP/1.1
//! server on the same runtime set-up as the gateway: per request it parses the head, reads the
//! whole body and writes the same small JSON answer the gateway gives for `hello`, and nothing
//! else (no AMQP, no routing, no JSON parsing, no metrics, no logs). Loaded by the same load
//! generator at the same concurrency, its rate `F` bounds the gateway's: a gateway request is
//! a ceiling request plus at least this exchange, and on a machine the two legs share (the
//! load generator, the gateway, the greeter and the broker on the same cores) their costs add,
//! so `1 / gateway >= 1 / ceiling + 1 / F` and the ratio gateway/ceiling is at most
//! `F / (ceiling + F)`: the bench's `ratio_bound`.

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;

/// The answer, as the gateway gives it for `hello` with `{"name": "Matt"}`.
const ANSWER: &[u8] = br#""Hello, Matt!""#;

/// Serves the floor on `listen` until the process is stopped; prints `http://ADDR` first, as
/// the gateway does, for the bench to read.
pub async fn serve(listen: SocketAddr) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let address = listener.local_addr()?;
    println!("warren: http floor on http://{address}");
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors fails again at once: pause rather than spin.
                tracing::debug!(%error, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        // Nagle off, as on the gateway's sockets: an answer goes out as one small write.
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let served = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service_fn(answer))
                .await;
            if let Err(error) = served {
                tracing::debug!(%error, "connection ended");
            }
        });
    }
}

/// Reads the request's body and answers 200 with [`ANSWER`].
async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    // The body is read whole, as the gateway reads it before a call; a broken one is ignored.
    let _ = request.into_body().collect().await;
    let mut response = Response::new(Full::new(Bytes::from_static(ANSWER)));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}
