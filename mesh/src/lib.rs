//! # mesh
//!
//! Warren's service framework, in the spirit of Python's nameko, speaking nameko's AMQP RPC wire
//! protocol so Warren services and nameko services can call each other.
//!
//! A service is a name plus handlers; handlers are plain async functions whose arguments are
//! extractors ([`Args`], [`State`], [`Ctx`]):
//!
//! ```no_run
//! use mesh::{Args, MeshConfig, RpcError, Service};
//! use serde::Deserialize;
//! use utoipa::ToSchema;
//!
//! /// Greets someone.
//! #[derive(Deserialize, ToSchema)]
//! struct Hello { name: String }
//!
//! async fn hello(Args(h): Args<Hello>) -> Result<String, RpcError> {
//!     Ok(format!("Hello, {}!", h.name))
//! }
//!
//! # async fn example() -> Result<(), mesh::ConnectError> {
//! let service = Service::new("greeting_service").rpc("hello", hello);
//! mesh::run(vec![service], MeshConfig::from_env()).await
//! # }
//! ```
//!
//! Calling a service from a client goes through [`RpcClient`]; both sides share one
//! [`Broker`] connection per process.

pub mod amqp;
mod announce;
pub mod args;
pub mod call_metrics;
mod config;
mod context;
mod deadline;
pub mod describe;
mod error;
pub mod events;
mod handler;
pub mod local;
mod outbound;
pub mod pending;
pub mod protocol;
mod running;
mod service;
mod shutdown;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod trace;
mod transport;

pub use amqp::{Broker, Publisher, RpcClient, serve};
pub use config::{DEFAULT_AMQP_URL, MeshConfig, redact_url};
pub use context::{CallContext, Ctx};
pub use deadline::Deadline;
pub use error::{CallError, ConnectError, ErrorKind, RpcError};
pub use events::{HandlerType, Subscription};
pub use handler::{Args, BoxFuture, Call, FromCall, Handler, IntoReply, Payload, State};
pub use outbound::{Client, ClientStats, Outbound, ServiceProxy, SharedOutbound};
pub use running::{RunningService, ServiceStats};
pub use service::{ErasedHandler, Routes, Service};
pub use shutdown::{Shutdown, terminate_signal};
pub use transport::{Mesh, Transport};

/// Connects to the broker, serves `services` until SIGINT or SIGTERM, then shuts each down
/// gracefully (stop consuming, finish in-flight work within the grace period).
pub async fn run<S: Clone + Send + Sync + 'static>(
    services: Vec<Service<S>>,
    config: MeshConfig,
) -> Result<(), ConnectError> {
    let broker = Broker::connect(config).await?;
    let mut running = Vec::with_capacity(services.len());
    for service in services {
        running.push(serve(&broker, service).await?);
    }
    terminate_signal().await;
    tracing::info!("shutting down");
    for service in running {
        service.stop().await;
    }
    broker.close().await;
    Ok(())
}
