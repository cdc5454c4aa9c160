//! The HTTP floor: what the HTTP exchange alone costs on this machine, so the bench can say how
//! close to its ceiling any HTTP front could come.
//!
//! `warren-bench http-floor` (hidden; the bench starts it like the gateway) is a bare hyper HTTP/1.1
//! server on the same runtime set-up as the gateway: per request it parses the head, reads the
//! whole body and writes the same small JSON answer the gateway gives for `hello`, and nothing
//! else (no AMQP, no routing, no JSON parsing, no metrics, no logs). Loaded by the same load
//! generator at the same concurrency, its rate `F` bounds the gateway's: a gateway request is
//! a ceiling request plus at least this exchange, and on a machine the two legs share (the
//! load generator, the gateway, the greeter and the broker on the same cores) their costs add,
//! so `1 / gateway >= 1 / ceiling + 1 / F` and the ratio gateway/ceiling is at most
//! `F / (ceiling + F)`: the bench's `ratio_bound`.
//!
//! That bound counts each leg at its own best rate. At a gateway's rate every process batches
//! less (fewer requests a wake-up in the load generator, the broker and the greeter), so
//! `warren-bench http-floor --call-over AMQP_URL` measures the rest: the same bare server making, for
//! every request, mesh's call the ceiling makes and answering with its reply. It is the ideal
//! front, a gateway with no work of its own (no checks, no JSON parsing of the body, no metrics,
//! spans or logs), loaded like the gateway: its rate over the ceiling's is the ratio an HTTP front
//! reaches here, measured (`ideal_bound`), and the gateway's over its own is what the gateway's
//! work costs (`ratio_to_ideal`).

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use mesh::{Arguments, Client, Mesh, MeshConfig};
use std::convert::Infallible;
use std::net::SocketAddr;

/// The answer, as the gateway gives it for `hello` with `{"name": "Matt"}`.
const ANSWER: &[u8] = br#""Hello, Matt!""#;

/// Serves the floor on `listen` until the process is stopped, making mesh's call for every
/// request when `call_over` names a RabbitMQ; prints `http://ADDR` first, as the gateway does,
/// for the bench to read.
pub async fn serve(listen: SocketAddr, call_over: Option<&str>) -> Result<()> {
    // The mesh lives as long as the server; the process ends with it (SIGTERM from the bench).
    let mesh = match call_over {
        Some(url) => Some(Mesh::amqp(MeshConfig::with_url(url)).await?),
        None => None,
    };
    let client = match &mesh {
        Some(mesh) => Some(mesh.client("ideal-front").await?),
        None => None,
    };
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
        let client = client.clone();
        tokio::spawn(async move {
            let answer = service_fn(move |request| answer(request, client.clone()));
            let served = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), answer)
                .await;
            if let Err(error) = served {
                tracing::debug!(%error, "connection ended");
            }
        });
    }
}

/// Reads the request's body and answers 200 with [`ANSWER`], or with the reply of mesh's call
/// of `greeting_service.hello` when there is a `client` (502 when the call fails).
async fn answer(
    request: Request<Incoming>,
    client: Option<Client>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    // The body is read whole, as the gateway reads it before a call; a broken one is ignored.
    let _ = request.into_body().collect().await;
    let body = match client {
        None => Ok(Bytes::from_static(ANSWER)),
        Some(client) => {
            let arguments = Arguments::kwargs(super::hello_args());
            match client
                .rpc("greeting_service")
                .call("hello", arguments)
                .await
            {
                Ok(reply) => Ok(Bytes::from(reply.to_string())),
                Err(error) => Err(error.to_string()),
            }
        }
    };
    let mut response = match body {
        Ok(body) => Response::new(Full::new(body)),
        Err(error) => {
            let mut response = Response::new(Full::new(Bytes::from(error)));
            *response.status_mut() = StatusCode::BAD_GATEWAY;
            response
        }
    };
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}
