//! Shared pieces of the end-to-end suites: a gateway and services on the real RabbitMQ, behind a
//! real socket, with names unique to each test so suites can run in parallel on one broker.

#![allow(dead_code)]

use mesh::{Broker, MeshConfig, RpcClient, RunningService, Service};
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::Instant;
use warren_gateway::GatewayConfig;

/// The broker the tests use: `AMQP_URL`, or the local default.
pub fn mesh_config() -> MeshConfig {
    let mut config = MeshConfig::from_env();
    config.shutdown_grace = Duration::from_secs(5);
    config
}

/// A name no other test uses: `t_<prefix>_<8 hex>`. The `t_` prefix lets the test script
/// remove queues a crashed test left behind.
pub fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("t_{prefix}_{}", &id[..8])
}

/// Polls `condition` until it holds or `limit` passes; returns whether it held.
pub async fn wait_until<F, Fut>(limit: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A raw channel on a fresh connection, for tests that play a peer by hand. The connection is
/// leaked on purpose: it lives until the test process ends, as long as the channel's users.
pub async fn raw_channel() -> lapin::Channel {
    let conn = lapin::Connection::connect(
        &mesh_config().amqp_url,
        lapin::ConnectionProperties::default(),
    )
    .await
    .expect("connect");
    let channel = conn.create_channel().await.expect("channel");
    std::mem::forget(conn);
    channel
}

/// Declares `queue` with `options` and binds it to the RPC exchange under `routing_key`.
pub async fn declare_rpc_queue(
    channel: &lapin::Channel,
    queue: &str,
    options: lapin::options::QueueDeclareOptions,
    routing_key: &str,
) {
    channel
        .queue_declare(queue.into(), options, lapin::types::FieldTable::default())
        .await
        .expect("declare");
    channel
        .queue_bind(
            queue.into(),
            mesh::protocol::DEFAULT_RPC_EXCHANGE.into(),
            routing_key.into(),
            lapin::options::QueueBindOptions::default(),
            lapin::types::FieldTable::default(),
        )
        .await
        .expect("bind");
}

/// Deletes the queues and exchanges a test declared, when dropped (also when the test panics).
#[derive(Default)]
pub struct QueueCleanup {
    queues: Vec<String>,
    exchanges: Vec<String>,
}

impl QueueCleanup {
    pub fn new() -> Self {
        Self::default()
    }

    /// The service's RPC queue.
    pub fn service(&mut self, service: &str) {
        self.queues.push(mesh::protocol::service_queue(service));
    }

    /// A queue, and its dead-letter queue.
    pub fn queue(&mut self, queue: &str) {
        self.queues.push(queue.to_owned());
        self.queues.push(mesh::events::dead_letter_queue(queue));
    }

    /// A service's event exchange.
    pub fn events_of(&mut self, source: &str) {
        self.exchanges.push(mesh::protocol::events_exchange(source));
    }
}

impl Drop for QueueCleanup {
    fn drop(&mut self) {
        let queues = std::mem::take(&mut self.queues);
        let exchanges = std::mem::take(&mut self.exchanges);
        let url = mesh_config().amqp_url;
        // Drop cannot await; a short-lived thread with its own runtime does the deletes.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let Ok(conn) =
                    lapin::Connection::connect(&url, lapin::ConnectionProperties::default()).await
                else {
                    return;
                };
                if let Ok(channel) = conn.create_channel().await {
                    for queue in queues {
                        let _ = channel
                            .queue_delete(queue.as_str().into(), Default::default())
                            .await;
                    }
                    for exchange in exchanges {
                        let _ = channel
                            .exchange_delete(exchange.as_str().into(), Default::default())
                            .await;
                    }
                }
                let _ = conn.close(200, "cleanup".into()).await;
            });
        })
        .join();
    }
}

/// A gateway on a real socket, its client, and the services started for the test.
pub struct Harness {
    pub base: String,
    pub addr: SocketAddr,
    pub broker: Broker,
    pub client: RpcClient,
    pub http: reqwest::Client,
    pub services: Vec<RunningService>,
    pub cleanup: QueueCleanup,
    server: tokio::task::JoinHandle<()>,
}

impl Harness {
    /// A gateway with default settings and no services yet.
    pub async fn start() -> Self {
        Self::with_config(GatewayConfig::default()).await
    }

    /// A gateway with `config` and no services yet.
    pub async fn with_config(config: GatewayConfig) -> Self {
        let broker = Broker::connect(mesh_config())
            .await
            .expect("RabbitMQ must be running");
        let client = RpcClient::start(&broker, "gateway")
            .await
            .expect("callback queue");
        let app = warren_gateway::router(client.clone(), config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let _ = warren_gateway::serve(listener, app, std::future::pending()).await;
        });
        Self {
            base: format!("http://{addr}"),
            addr,
            broker,
            client,
            http: reqwest::Client::new(),
            services: Vec::new(),
            cleanup: QueueCleanup::new(),
            server,
        }
    }

    /// Serves `service` on this harness's broker connection.
    pub async fn serve<S: Clone + Send + Sync + 'static>(&mut self, service: Service<S>) {
        self.cleanup.service(service.name());
        let running = mesh::serve(&self.broker, service).await.expect("serve");
        self.services.push(running);
    }

    /// `POST /rpc/{service}/{method}` with a JSON body.
    pub async fn post(
        &self,
        service: &str,
        method: &str,
        body: serde_json::Value,
    ) -> reqwest::Response {
        self.http
            .post(format!("{}/rpc/{service}/{method}", self.base))
            .json(&body)
            .send()
            .await
            .expect("HTTP request")
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Asserts a problem+json response: status, and that the body names `kind` and has the RFC 9457
/// members. Returns the body.
pub async fn assert_problem(
    response: reqwest::Response,
    status: u16,
    kind: &str,
) -> serde_json::Value {
    assert_eq!(response.status().as_u16(), status, "status");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: serde_json::Value = response.json().await.expect("problem body is JSON");
    assert_eq!(body["status"], status, "{body}");
    assert_eq!(body["type"], format!("urn:warren:problem:{kind}"), "{body}");
    assert!(body["title"].is_string(), "{body}");
    assert!(body["detail"].is_string(), "{body}");
    assert!(body["request_id"].is_string(), "{body}");
    body
}
