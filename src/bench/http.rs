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
        let request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header("host", &self.host)
            .header("content-type", "application/json")
            .body(Full::new(body))
            .map_err(|e| e.to_string())?;
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
            Ok(())
        } else {
            Err(format!("{status}: {}", String::from_utf8_lossy(&body)))
        }
    }
}
