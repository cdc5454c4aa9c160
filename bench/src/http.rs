//! Client connections for the load generator (hyper's client connection API, no per-request
//! connection setup, Nagle off): HTTP/1.1 keep-alive, one request at a time per connection, or
//! HTTP/2 over cleartext with prior knowledge, many at once.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper::{Method, Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use tokio::net::TcpStream;
use tokio::sync::Mutex;

/// One keep-alive connection.
pub struct Connection {
    sender: Sender,
    host: String,
}

/// The request side of a connection.
enum Sender {
    /// HTTP/1.1: one request at a time.
    Http1(Mutex<http1::SendRequest<Full<Bytes>>>),
    /// HTTP/2: requests run at once, up to the server's stream limit (more wait in the client
    /// for a free stream).
    Http2(http2::SendRequest<Full<Bytes>>),
}

impl Connection {
    /// Opens an HTTP/1.1 connection to `address`.
    pub async fn open(address: SocketAddr) -> Result<Self, String> {
        let io = TokioIo::new(connect(address).await?);
        let (sender, connection) = http1::handshake(io)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Self {
            sender: Sender::Http1(Mutex::new(sender)),
            host: address.to_string(),
        })
    }

    /// Opens an HTTP/2 connection (h2c, prior knowledge) to `address`.
    pub async fn open_h2(address: SocketAddr) -> Result<Self, String> {
        let io = TokioIo::new(connect(address).await?);
        let (sender, connection) = http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| format!("h2 handshake: {e}"))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let connection = Self {
            sender: Sender::Http2(sender),
            host: address.to_string(),
        };
        // One request first: the server's SETTINGS (its stream limit) have arrived once it is
        // answered, and streams opened above the limit before that would be refused.
        connection.get("/healthz").await?;
        Ok(connection)
    }

    /// POSTs `body` as JSON to `path`; Ok when the answer is 200.
    pub async fn post_json(&self, path: &str, body: Bytes) -> Result<(), String> {
        self.post_json_with(path, body, &[]).await
    }

    /// POSTs `body` as JSON to `path` with extra `headers`; Ok when the answer is 200.
    pub async fn post_json_with(
        &self,
        path: &str,
        body: Bytes,
        headers: &[(&str, &str)],
    ) -> Result<(), String> {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header("host", &self.host)
            .header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(body)).map_err(|e| e.to_string())?;
        self.send(request).await.map(|_| ())
    }

    /// GETs `path`; its body when the answer is 200.
    pub async fn get(&self, path: &str) -> Result<Bytes, String> {
        let request = Request::builder()
            .method(Method::GET)
            .uri(path)
            .header("host", &self.host)
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        self.send(request).await
    }

    async fn send(&self, request: Request<Full<Bytes>>) -> Result<Bytes, String> {
        let response = match &self.sender {
            Sender::Http1(sender) => {
                let mut sender = sender.lock().await;
                sender.ready().await.map_err(|e| e.to_string())?;
                sender.send_request(request).await
            }
            Sender::Http2(sender) => {
                let mut sender = sender.clone();
                sender.ready().await.map_err(|e| e.to_string())?;
                sender.send_request(request).await
            }
        };
        answer(response.map_err(|e| e.to_string())?).await
    }
}

/// A TCP connection to `address` with Nagle's algorithm off.
async fn connect(address: SocketAddr) -> Result<TcpStream, String> {
    let stream = TcpStream::connect(address)
        .await
        .map_err(|e| format!("connect {address}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    Ok(stream)
}

/// The body of `response` when its status is a success; otherwise the status and body as the
/// error.
async fn answer(response: Response<Incoming>) -> Result<Bytes, String> {
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    if status.is_success() {
        Ok(body)
    } else {
        Err(format!("{status}: {}", String::from_utf8_lossy(&body)))
    }
}

/// Opens `n` connections to `address`.
pub async fn open_many(address: SocketAddr, n: usize) -> Result<Vec<Connection>, String> {
    let mut connections = Vec::with_capacity(n);
    for _ in 0..n {
        connections.push(Connection::open(address).await?);
    }
    Ok(connections)
}

/// The value of the unlabelled Prometheus sample `name` in `text`.
pub fn prometheus_value(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (key, value) = l.split_once(' ')?;
        (key == name).then(|| value.trim().parse().ok())?
    })
}
