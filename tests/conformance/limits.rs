//! The bad-input battery at the HTTP layer, on raw sockets: slow-loris clients (stalled or
//! trickling heads, stalled bodies), idle keep-alive connections, huge and numerous headers,
//! and a shutdown that a stalled client cannot hold up.
//!
//! What hyper does, asserted here: a head not received within the header read timeout closes
//! the connection without an answer (hyper sends no 408); a head over the size or count limit
//! is answered `431` with an empty body and the connection is closed. A body not received
//! within the call's deadline is the gateway's own `408` problem+json.

use crate::common::{Harness, Kind, unique, wait_until};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use warren_gateway::{GatewayConfig, ServeConfig};

/// The header read timeout of these tests: short, so the faults under test end quickly.
const HEADER_TIMEOUT: Duration = Duration::from_secs(1);

/// How late after its timeout a connection may be closed and still pass.
const MARGIN: Duration = Duration::from_secs(3);

/// A gateway with `limits` and a greeter; returns the greeter's name.
async fn harness(kind: Kind, limits: ServeConfig) -> (Harness, String) {
    let mut h = Harness::with_limits(kind, GatewayConfig::default(), limits).await;
    let greeter = unique("greeter");
    h.serve(greeter::service_named(&greeter)).await;
    (h, greeter)
}

fn short_timeout() -> ServeConfig {
    ServeConfig {
        header_read_timeout: HEADER_TIMEOUT,
        ..ServeConfig::default()
    }
}

/// Reads until the peer closes (EOF or reset) or `limit` passes; returns what was read, or
/// `None` when the connection was still open at the limit.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut read = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(read),
            Ok(Ok(n)) => read.extend_from_slice(&buf[..n]),
        }
    }
}

/// A parsed HTTP/1.1 response.
struct RawResponse {
    status: u16,
    head: String,
    body: Vec<u8>,
}

/// Reads one response (head, then a `Content-Length` body) within 10 s.
async fn read_response(stream: &mut TcpStream) -> RawResponse {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&data[..end]).into_owned();
                let length = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if data.len() >= end + 4 + length {
                    let status = head
                        .split_whitespace()
                        .nth(1)
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0);
                    let body = data[end + 4..end + 4 + length].to_vec();
                    return RawResponse { status, head, body };
                }
            }
            let n = stream.read(&mut buf).await.expect("read");
            assert!(
                n > 0,
                "closed mid-response: {:?}",
                String::from_utf8_lossy(&data)
            );
            data.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("a response within 10 s")
}

/// A `GET /healthz` on `stream`, answered 200.
async fn healthz(stream: &mut TcpStream) {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: warren\r\n\r\n")
        .await
        .expect("write");
    assert_eq!(read_response(stream).await.status, 200);
}

/// A slow-loris client: sends a head one byte every 50 ms and never finishes it. Returns how
/// long it took the server to cut it off, and what the server sent before.
async fn trickle(addr: SocketAddr, limit: Duration) -> Option<(Duration, Vec<u8>)> {
    let started = Instant::now();
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut read, mut write) = stream.into_split();
    write
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: warren\r\nX-Slow: ")
        .await
        .expect("write");
    let mut ticks = tokio::time::interval(Duration::from_millis(50));
    let mut received = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        tokio::select! {
            r = read.read(&mut buf) => match r {
                Ok(0) | Err(_) => return Some((started.elapsed(), received)),
                Ok(n) => received.extend_from_slice(&buf[..n]),
            },
            _ = ticks.tick() => {
                if write.write_all(b"a").await.is_err() {
                    return Some((started.elapsed(), received));
                }
            }
            () = tokio::time::sleep_until(deadline) => return None,
        }
    }
}

pub async fn a_slow_loris_client_is_cut_off_while_others_are_served(kind: Kind) {
    let (h, greeter) = harness(kind, short_timeout()).await;
    // One client stalls in the middle of its head; another trickles it byte by byte.
    let started = Instant::now();
    let mut stalled = TcpStream::connect(h.addr).await.expect("connect");
    stalled
        .write_all(b"POST /rpc/x/hello HTTP/1.1\r\nHost: warren\r\nContent-Ty")
        .await
        .expect("write");
    let trickling = tokio::spawn(trickle(h.addr, HEADER_TIMEOUT + MARGIN));
    // Meanwhile a normal client is served.
    let r = h.post(&greeter, "hello", json!({"name": "Matt"})).await;
    assert_eq!(r.status(), 200);
    let served = started.elapsed();

    let sent = read_until_closed(&mut stalled, HEADER_TIMEOUT + MARGIN)
        .await
        .expect("the stalled client was not cut off");
    let cut = started.elapsed();
    // hyper closes without an answer (no 408), after the timeout and not before.
    assert!(sent.is_empty(), "{:?}", String::from_utf8_lossy(&sent));
    assert!(cut >= HEADER_TIMEOUT, "cut after {cut:?}");
    assert!(served < cut, "served after {served:?}, cut after {cut:?}");

    let (took, sent) = trickling
        .await
        .expect("task")
        .expect("the trickling client was not cut off");
    assert!(sent.is_empty(), "{:?}", String::from_utf8_lossy(&sent));
    assert!(took >= HEADER_TIMEOUT, "cut after {took:?}");

    // The gateway keeps serving new connections. Not the first request's pooled one: it has
    // sat idle past the header timeout, which is also the keep-alive timeout, so reusing it
    // would race the server closing it.
    let r = reqwest::Client::new()
        .post(format!("{}/rpc/{greeter}/hello", h.base))
        .json(&json!({"name": "Ann"}))
        .send()
        .await
        .expect("HTTP request");
    assert_eq!(r.status(), 200);
}

pub async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout(kind: Kind) {
    let (h, _) = harness(kind, short_timeout()).await;
    let mut conn = TcpStream::connect(h.addr).await.expect("connect");
    // Keep-alive: two requests on one connection.
    healthz(&mut conn).await;
    healthz(&mut conn).await;
    let idle = Instant::now();
    let sent = read_until_closed(&mut conn, HEADER_TIMEOUT + MARGIN)
        .await
        .expect("the idle connection was never closed");
    assert!(sent.is_empty(), "{:?}", String::from_utf8_lossy(&sent));
    // The timer starts when the server finished its response, a moment before the client
    // read it: allow half the timeout of slack below, none above the margin.
    let waited = idle.elapsed();
    assert!(waited >= HEADER_TIMEOUT / 2, "closed after {waited:?}");
}

pub async fn huge_or_too_many_headers_are_431_and_the_gateway_keeps_serving(kind: Kind) {
    let (h, greeter) = harness(kind, ServeConfig::default()).await;
    let url = format!("{}/rpc/{greeter}/hello", h.base);
    // Below the limits: a 20 KB header, 90 headers.
    let r = h
        .http
        .post(&url)
        .header("x-big", "a".repeat(20_000))
        .json(&json!({"name": "Big"}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let mut many = h.http.post(&url).json(&json!({"name": "Many"}));
    for i in 0..90 {
        many = many.header(format!("x-h{i}"), "v");
    }
    assert_eq!(many.send().await.expect("send").status(), 200);

    // A 100 KB header, and 120 headers: hyper answers 431 with no body and closes.
    let huge = format!(
        "GET /healthz HTTP/1.1\r\nHost: warren\r\nX-Huge: {}\r\n\r\n",
        "a".repeat(100_000)
    );
    let mut numerous = String::from("GET /healthz HTTP/1.1\r\nHost: warren\r\n");
    for i in 0..120 {
        numerous.push_str(&format!("X-H{i}: v\r\n"));
    }
    numerous.push_str("\r\n");
    for request in [huge, numerous] {
        let mut conn = TcpStream::connect(h.addr).await.expect("connect");
        // Written while reading: the server may answer before it has read everything.
        let (mut read, mut write) = conn.split();
        let (_, answer) = tokio::join!(write.write_all(request.as_bytes()), async {
            let mut answer = Vec::new();
            let _ =
                tokio::time::timeout(Duration::from_secs(10), read.read_to_end(&mut answer)).await;
            answer
        });
        let text = String::from_utf8_lossy(&answer);
        assert!(
            text.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{text}"
        );
        assert!(text.ends_with("\r\n\r\n"), "a body: {text}");
        assert!(
            text.to_ascii_lowercase().contains("content-length: 0"),
            "{text}"
        );
    }

    // The gateway keeps serving.
    let r = h.post(&greeter, "hello", json!({"name": "After"})).await;
    assert_eq!(r.status(), 200);
}

pub async fn a_body_that_stops_arriving_is_408_problem_json(kind: Kind) {
    let (h, greeter) = harness(kind, short_timeout()).await;
    let mut conn = TcpStream::connect(h.addr).await.expect("connect");
    let head = format!(
        "POST /rpc/{greeter}/hello HTTP/1.1\r\nHost: warren\r\nContent-Type: application/json\r\n\
         Content-Length: 100\r\nX-Timeout-Ms: 300\r\n\r\n{{\"name\": "
    );
    let started = Instant::now();
    conn.write_all(head.as_bytes()).await.expect("write");
    let r = read_response(&mut conn).await;
    let took = started.elapsed();
    assert_eq!(r.status, 408, "{}", r.head);
    assert!(
        r.head
            .to_ascii_lowercase()
            .contains("content-type: application/problem+json"),
        "{}",
        r.head
    );
    let body: Value = serde_json::from_slice(&r.body).expect("problem JSON");
    assert_eq!(body["type"], "urn:warren:problem:request-timeout", "{body}");
    assert_eq!(body["status"], 408, "{body}");
    assert!(
        took >= Duration::from_millis(300),
        "answered after {took:?}"
    );
    assert!(
        took < Duration::from_millis(300) + MARGIN,
        "answered after {took:?}"
    );
}

pub async fn a_stalled_client_does_not_hold_up_a_graceful_shutdown(kind: Kind) {
    let (h, greeter) = harness(kind, short_timeout()).await;
    // A server of its own on the same gateway, to stop it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn({
        let app = h.gateway.service();
        async move {
            let signal = async move {
                let _ = stopped.await;
            };
            warren_gateway::serve_with(listener, app, &short_timeout(), signal).await
        }
    });
    let mut stalled = TcpStream::connect(addr).await.expect("connect");
    stalled
        .write_all(b"GET /healthz HTTP/1.1\r\nHo")
        .await
        .expect("write");
    let in_flight = tokio::spawn({
        let (http, url) = (h.http.clone(), format!("http://{addr}/rpc/{greeter}/slow"));
        async move { http.post(url).json(&json!({"ms": 1000})).send().await }
    });
    let client = h.client.clone();
    assert!(
        wait_until(Duration::from_secs(10), || {
            let pending = client.stats().pending;
            async move { pending >= 1 }
        })
        .await,
        "the call never became pending"
    );
    let started = Instant::now();
    stop.send(()).expect("signal");
    // Stops accepting at once...
    assert!(
        wait_until(Duration::from_secs(5), || async {
            TcpStream::connect(addr).await.is_err()
        })
        .await,
        "still accepting"
    );
    // ...answers the call in flight, and returns once the stalled client is cut off.
    let r = in_flight.await.expect("task").expect("answered");
    assert_eq!(r.status(), 200);
    tokio::time::timeout(HEADER_TIMEOUT + MARGIN, server)
        .await
        .expect("the stalled client held up the shutdown")
        .expect("task")
        .expect("serve");
    assert!(started.elapsed() < HEADER_TIMEOUT + MARGIN);
}
