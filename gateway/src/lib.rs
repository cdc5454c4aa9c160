//! # warren-gateway
//!
//! The HTTP/JSON front of a Warren mesh: `POST /rpc/{service}/{method}` with a JSON body becomes a
//! call through one shared [`mesh::Client`] (over AMQP: a nameko-compatible request on one
//! callback queue), and the outcome comes back as the method's JSON result or an RFC 9457 problem
//! document (see [`GatewayError`] for the status of each failure).
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let mesh = mesh::Mesh::amqp(mesh::MeshConfig::from_env()).await?;
//! let client = mesh.client("gateway").await?;
//! let app = warren_gateway::router(client, warren_gateway::GatewayConfig::default());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! warren_gateway::serve(listener, app, mesh::terminate_signal()).await?;
//! # Ok(()) }
//! ```

mod error;
mod health;
mod problem;
mod request;
mod rpc;

pub use axum::http::StatusCode;
pub use error::{CallInfo, ErrorMap, GatewayError};
pub use problem::{PROBLEM_JSON, Problem};
pub use request::{REQUEST_ID, TIMEOUT_MS};

use axum::Router;
use axum::routing::{get, post};
use mesh::Client;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// How the gateway treats calls.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The deadline of a call without `X-Timeout-Ms`.
    pub default_timeout: Duration,
    /// The longest deadline a client may ask for with `X-Timeout-Ms`.
    pub max_timeout: Duration,
    /// The largest request body accepted.
    pub max_body_bytes: usize,
    /// Statuses of remote errors by `exc_type`.
    pub error_map: ErrorMap,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            default_timeout: Duration::from_secs(30),
            max_timeout: Duration::from_secs(300),
            max_body_bytes: 16 * 1024 * 1024,
            error_map: ErrorMap::default(),
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    client: Client,
    config: Arc<GatewayConfig>,
}

/// The gateway's routes.
pub fn router(client: Client, config: GatewayConfig) -> Router {
    let state = AppState {
        client,
        config: Arc::new(config),
    };
    Router::new()
        .route(
            "/rpc/{service}/{method}",
            post(rpc::call).fallback(rpc::method_not_allowed),
        )
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .fallback(rpc::no_route)
        .with_state(state)
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting connections and
/// lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
