//! HTTP/2 over cleartext with prior knowledge (h2c): the same contract as HTTP/1.1 on the same
//! port, many calls multiplexed on one connection up to the stream limit, the header limit per
//! stream, and a client that stalls in the preface.
//!
//! The client is hyper's own HTTP/2 connection (one TCP connection per [`H2`]), so "one
//! connection" is a fact of the test, not of a client's pool.

use crate::common::{Harness, Kind, unique, wait_until};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper::{Request, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use warren_gateway::{GatewayConfig, ServeConfig};

/// One HTTP/2 connection to the gateway.
#[derive(Clone)]
struct H2 {
    sender: SendRequest<Full<Bytes>>,
}

/// An answer: status, headers and body.
struct Answer {
    status: StatusCode,
    version: Version,
    headers: hyper::HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

impl H2 {
    async fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let (sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .expect("h2 handshake");
        tokio::spawn(connection);
        Self { sender }
    }

    async fn send(&self, request: Request<Full<Bytes>>) -> Result<Answer, hyper::Error> {
        let mut sender = self.sender.clone();
        sender.ready().await?;
        let response = sender.send_request(request).await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Answer {
            status: parts.status,
            version: parts.version,
            headers: parts.headers,
            body,
        })
    }

    /// A JSON POST to `path`, to finish with a body.
    fn post(path: &str) -> hyper::http::request::Builder {
        Request::post(format!("http://warren{path}")).header("content-type", "application/json")
    }

    async fn call(&self, service: &str, method: &str, body: Value) -> Answer {
        let request = Self::post(&format!("/rpc/{service}/{method}"))
            .body(Full::new(Bytes::from(body.to_string())))
            .expect("request");
        self.send(request).await.expect("answered")
    }

    /// The status of `hello` on `greeter`.
    async fn hello(&self, greeter: &str) -> StatusCode {
        self.call(greeter, "hello", json!({"name": "A"}))
            .await
            .status
    }
}

/// A gateway with `limits` and a greeter; returns the greeter's name.
async fn harness(kind: Kind, limits: ServeConfig) -> (Harness, String) {
    let mut h = Harness::with_limits(kind, GatewayConfig::default(), limits).await;
    let greeter = unique("greeter");
    h.serve(greeter::service_named(&greeter)).await;
    (h, greeter)
}

pub async fn h2c_with_prior_knowledge_gets_the_http1_contract(kind: Kind) {
    let (h, greeter) = harness(kind, ServeConfig::default()).await;
    let h2 = H2::connect(h.addr).await;

    let ok = h2.call(&greeter, "hello", json!({"name": "Matt"})).await;
    assert_eq!(ok.version, Version::HTTP_2);
    assert_eq!(ok.status, 200);
    assert_eq!(ok.headers["content-type"], "application/json");
    assert!(ok.headers.contains_key("x-request-id"));
    assert_eq!(ok.json(), json!("Hello, Matt!"));

    let missing = h2.call(&greeter, "nope", json!({})).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.headers["content-type"], "application/problem+json");
    assert_eq!(missing.json()["status"], 404);

    let bad = h2.call(&greeter, "hello", json!({"nom": 1})).await;
    assert_eq!(bad.status, 400);

    let health = Request::get("http://warren/healthz")
        .body(Full::new(Bytes::new()))
        .expect("request");
    assert_eq!(h2.send(health).await.expect("answered").status, 200);

    // HTTP/1.1 on the same port still works.
    let r = h.post(&greeter, "hello", json!({"name": "Ann"})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
}

pub async fn one_connection_carries_calls_up_to_the_stream_limit(kind: Kind) {
    const STREAMS: u32 = 8;
    const CALLS: usize = 24;
    let limits = ServeConfig {
        http2_max_concurrent_streams: STREAMS,
        ..ServeConfig::default()
    };
    let (h, greeter) = harness(kind, limits).await;
    let h2 = H2::connect(h.addr).await;
    // One call first: the client then has the server's SETTINGS, stream limit included (streams
    // opened before that, above the limit, are refused with REFUSED_STREAM).
    assert_eq!(h2.hello(&greeter).await, 200);
    // Every call sleeps 400 ms in the service: the first STREAMS are pending together, the rest
    // wait in the client for a free stream.
    let calls: Vec<_> = (0..CALLS)
        .map(|_| {
            let (h2, greeter) = (h2.clone(), greeter.clone());
            tokio::spawn(async move { h2.call(&greeter, "slow", json!({"ms": 400})).await })
        })
        .collect();
    let client = h.client.clone();
    let most = Arc::new(AtomicUsize::new(0));
    let seen = most.clone();
    assert!(
        wait_until(Duration::from_secs(10), || {
            let pending = client.stats().pending;
            seen.fetch_max(pending, Ordering::Relaxed);
            async move { pending >= STREAMS as usize }
        })
        .await,
        "the calls on one connection were never pending together"
    );
    for call in calls {
        let answer = call.await.expect("task");
        assert_eq!(answer.status, 200);
        assert_eq!(answer.json(), json!(400));
        seen.fetch_max(h.client.stats().pending, Ordering::Relaxed);
    }
    let most = most.load(Ordering::Relaxed);
    assert!(most <= STREAMS as usize, "{most} calls pending at once");
}

pub async fn an_oversize_header_list_is_431_and_the_connection_carries_on(kind: Kind) {
    let limits = ServeConfig {
        max_header_bytes: 4096,
        ..ServeConfig::default()
    };
    let (h, greeter) = harness(kind, limits).await;
    let h2 = H2::connect(h.addr).await;
    let body = json!({"name": "Matt"});
    let big = H2::post(&format!("/rpc/{greeter}/hello"))
        .header("x-big", "a".repeat(8_000))
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request");
    match h2.send(big).await {
        // The server answers the stream 431...
        Ok(answer) => assert_eq!(answer.status, 431),
        // ...or the client, told the limit in the server's SETTINGS, refuses to send it.
        Err(error) => assert!(
            error.is_user() || error.to_string().contains("header"),
            "{error}"
        ),
    }
    let ok = h2.call(&greeter, "hello", body).await;
    assert_eq!(ok.status, 200);
}

pub async fn a_client_stalled_in_the_preface_is_cut_off_after_the_header_timeout(kind: Kind) {
    const HEADER_TIMEOUT: Duration = Duration::from_secs(1);
    let limits = ServeConfig {
        header_read_timeout: HEADER_TIMEOUT,
        ..ServeConfig::default()
    };
    let (h, greeter) = harness(kind, limits).await;
    let started = Instant::now();
    let mut stalled = TcpStream::connect(h.addr).await.expect("connect");
    stalled
        .write_all(b"PRI * HTTP/2.0\r\n")
        .await
        .expect("write");
    // Others are served meanwhile, over both protocols.
    let h2 = H2::connect(h.addr).await;
    assert_eq!(h2.hello(&greeter).await, 200);
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(HEADER_TIMEOUT * 4, stalled.read(&mut buf))
        .await
        .expect("the stalled client was not cut off");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let cut = started.elapsed();
    assert!(cut >= HEADER_TIMEOUT, "cut after {cut:?}");
}
