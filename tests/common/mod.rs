//! Shared pieces of the end-to-end suites: a gateway and services on the real RabbitMQ, behind a
//! real socket, with names unique to each test so suites can run in parallel on one broker.

#![allow(dead_code)]

pub mod process;
pub mod sse;

use mesh::{Client, Mesh, MeshConfig, RunningService, Service};
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

/// The broker's URL (the first of `AMQP_URL`'s, or the local default), for raw connections.
pub fn broker_url() -> String {
    mesh_config().amqp.urls.first().cloned().unwrap_or_default()
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

/// GETs an asynchronous call's `location` on the gateway at `base` until it is no longer 202
/// (each 202 with `Retry-After: 1`), at most 20 s; returns that answer.
pub async fn collect_call(
    http: &reqwest::Client,
    base: &str,
    location: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut request = http.get(format!("{base}{location}"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("send");
        if response.status() != 202 {
            return response;
        }
        assert_eq!(response.headers()["retry-after"], "1");
        assert!(Instant::now() < deadline, "still running after 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A raw channel on a fresh connection, for tests that play a peer by hand. The connection is
/// leaked on purpose: it lives until the test process ends, as long as the channel's users.
pub async fn raw_channel() -> lapin::Channel {
    let conn = lapin::Connection::connect(&broker_url(), lapin::ConnectionProperties::default())
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
            mesh::amqp::DEFAULT_RPC_EXCHANGE.into(),
            routing_key.into(),
            lapin::options::QueueBindOptions::default(),
            lapin::types::FieldTable::default(),
        )
        .await
        .expect("bind");
}

/// Deletes the queues and exchanges a test declared on the broker, when dropped (also when the
/// test panics). In-process tests leave nothing behind and skip it.
#[derive(Default)]
pub struct QueueCleanup {
    queues: Vec<String>,
    exchanges: Vec<String>,
    disabled: bool,
}

impl QueueCleanup {
    pub fn new() -> Self {
        Self::default()
    }

    /// A cleanup that only acts for AMQP.
    pub fn for_kind(kind: Kind) -> Self {
        let mut cleanup = Self::default();
        cleanup.disabled = kind == Kind::InProcess;
        cleanup
    }

    /// The service's RPC queue.
    pub fn service(&mut self, service: &str) {
        self.queues.push(mesh::amqp::service_queue(service));
    }

    /// A queue, and its dead-letter queue.
    pub fn queue(&mut self, queue: &str) {
        self.queues.push(queue.to_owned());
        self.queues.push(mesh::amqp::dead_letter_queue(queue));
    }

    /// A queue alone (a retry queue, say).
    pub fn queue_alone(&mut self, queue: &str) {
        self.queues.push(queue.to_owned());
    }

    /// A service's event exchange.
    pub fn events_of(&mut self, source: &str) {
        self.exchanges.push(mesh::amqp::events_exchange(source));
    }
}

impl Drop for QueueCleanup {
    fn drop(&mut self) {
        if self.disabled {
            return;
        }
        let queues = std::mem::take(&mut self.queues);
        let exchanges = std::mem::take(&mut self.exchanges);
        let url = broker_url();
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

/// The transport a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// RabbitMQ on `AMQP_URL` (default 127.0.0.1:5672).
    Amqp,
    /// The in-process transport.
    InProcess,
}

/// A gateway on a real socket over a mesh of `Kind`, its client, and the services started for
/// the test.
pub struct Harness {
    pub kind: Kind,
    pub base: String,
    pub addr: SocketAddr,
    pub mesh: Mesh,
    pub client: Client,
    pub http: reqwest::Client,
    pub services: Vec<RunningService>,
    pub cleanup: QueueCleanup,
    pub gateway: warren_gateway::Gateway,
    server: tokio::task::JoinHandle<()>,
}

impl Harness {
    /// A gateway over RabbitMQ with default settings and no services yet.
    pub async fn start() -> Self {
        Self::on(Kind::Amqp, GatewayConfig::default()).await
    }

    /// A gateway over RabbitMQ with `config`.
    pub async fn with_config(config: GatewayConfig) -> Self {
        Self::on(Kind::Amqp, config).await
    }

    /// A gateway over a mesh of `kind` with `config` and no services yet.
    pub async fn on(kind: Kind, config: GatewayConfig) -> Self {
        Self::with_limits(kind, config, warren_gateway::ServeConfig::default()).await
    }

    /// A gateway over a mesh of `kind` with `config`, its HTTP server limited by `limits`.
    pub async fn with_limits(
        kind: Kind,
        config: GatewayConfig,
        limits: warren_gateway::ServeConfig,
    ) -> Self {
        let mesh = match kind {
            Kind::Amqp => Mesh::amqp(mesh_config())
                .await
                .expect("RabbitMQ must be running"),
            Kind::InProcess => Mesh::in_process(mesh_config()),
        };
        let gateway = warren_gateway::Gateway::start(&mesh, config)
            .await
            .expect("gateway");
        let client = gateway.client().clone();
        let app = gateway.service();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let _ =
                warren_gateway::serve_with(listener, app, &limits, std::future::pending()).await;
        });
        Self {
            kind,
            base: format!("http://{addr}"),
            addr,
            mesh,
            client,
            http: reqwest::Client::new(),
            services: Vec::new(),
            cleanup: QueueCleanup::for_kind(kind),
            gateway,
            server,
        }
    }

    /// Serves `service` on this harness's mesh.
    pub async fn serve(&mut self, service: Service) {
        let running = self.serve_on(&self.mesh.clone(), service).await;
        self.services.push(running);
    }

    /// Serves `service` on `mesh` (another instance), cleaned up with the harness.
    pub async fn serve_on(&mut self, mesh: &Mesh, service: Service) -> RunningService {
        self.cleanup.service(service.name());
        mesh.serve(service).await.expect("serve")
    }

    /// Another instance on the same mesh, as another process would be.
    pub async fn instance(&self, config: MeshConfig) -> Mesh {
        self.mesh
            .another_instance(config)
            .await
            .expect("another instance")
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

/// Keyword arguments from a JSON object.
pub fn kwargs(value: serde_json::Value) -> mesh::Arguments {
    mesh::Arguments::kwargs(value.as_object().cloned().unwrap_or_default())
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
