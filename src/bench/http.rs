//! HTTP/1.1 keep-alive connections for the load generator (hyper's client connection API: one
//! TCP connection per worker, no per-request connection setup, Nagle off).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request};
use std::net::SocketAddr;
use tokio::sync::Mutex;

/// One keep-alive connection.
pub struct Connection {
    sender: Mutex<SendRequest<Full<Bytes>>>,
    host: String,
}

impl Connection {
    /// Opens a connection to `address`.
    pub async fn open(address: SocketAddr) -> Result<Self, String> {
        let stream = tokio::net::TcpStream::connect(address)
            .await
            .map_err(|e| format!("connect {address}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let io = hyper_util::rt::TokioIo::new(stream);
        let (sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Self {
            sender: Mutex::new(sender),
            host: address.to_string(),
        })
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
        let mut sender = self.sender.lock().await;
        sender.ready().await.map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
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
