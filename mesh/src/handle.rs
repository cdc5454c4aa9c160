//! [`Mesh`]: a process's handle on its transport, the one way to serve a service and to get a
//! client.

use crate::amqp::AmqpTransport;
use crate::blocking::BlockingPool;
use crate::client::Client;
use crate::config::MeshConfig;
use crate::error::ConnectError;
use crate::local::InProcess;
use crate::running::RunningService;
use crate::service::Service;
use crate::transport::Transport;
use std::sync::Arc;

/// A process's handle on its transport: RabbitMQ ([`Mesh::amqp`]) or channels inside the
/// process ([`Mesh::in_process`]), with the same behaviour. Cheap to clone.
///
/// ```
/// use mesh::{Args, Mesh, MeshConfig, RpcError, Service};
/// use serde_json::json;
///
/// #[derive(serde::Deserialize, utoipa::ToSchema)]
/// struct Number {
///     n: i64,
/// }
///
/// async fn double(Args(x): Args<Number>) -> Result<i64, RpcError> {
///     Ok(x.n * 2)
/// }
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let mesh = Mesh::in_process(MeshConfig::default());
/// let running = mesh.serve(Service::new("math").rpc("double", double)).await?;
/// let client = mesh.client("example").await?;
/// assert_eq!(client.rpc("math").call("double", json!([21])).await?, json!(42));
/// running.stop().await;
/// mesh.close().await;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct Mesh {
    transport: Arc<dyn Transport>,
    amqp: bool,
    /// Where the CPU-bound work of this mesh's services runs.
    blocking: BlockingPool,
}

impl Mesh {
    /// Connects to RabbitMQ at `config.amqp`, failing within its connect timeout with a
    /// one-line error that names the URL (password hidden) when the broker cannot be reached.
    ///
    /// When the connection drops later (a broker restart, a network cut), it is dialled again
    /// with backoff, and every consumer, callback queue and publisher re-declares its topology
    /// on the new connection by itself; meanwhile calls fail at once with `Unavailable`.
    pub async fn amqp(config: MeshConfig) -> Result<Self, ConnectError> {
        let blocking = BlockingPool::new(config.blocking_threads);
        Ok(Self {
            transport: Arc::new(AmqpTransport::connect(config).await?),
            amqp: true,
            blocking,
        })
    }

    /// A mesh whose services live in this process and talk over channels, as they would over
    /// a broker: `config`'s `max_workers`, grace period, default timeout and instance id apply.
    pub fn in_process(config: MeshConfig) -> Self {
        Self {
            blocking: BlockingPool::new(config.blocking_threads),
            transport: Arc::new(InProcess::new(config)),
            amqp: false,
        }
    }

    /// Serves `service` (with its state given, see [`Service::with_state`]) until the returned
    /// [`RunningService`] is stopped. Its names are checked first ([`Service::validate`]).
    pub async fn serve(&self, service: Service) -> Result<RunningService, ConnectError> {
        service
            .validate()
            .map_err(|(name, e)| ConnectError::Setup {
                url: self.describe(),
                reason: format!("invalid name `{name}`: {e}"),
            })?;
        let routes = service.routes().with_blocking(self.blocking.clone());
        self.transport.serve(routes).await
    }

    /// A client that calls and dispatches as `owner`, ready to call when this returns.
    pub async fn client(&self, owner: &str) -> Result<Client, ConnectError> {
        self.transport.client(owner).await
    }

    /// Whether the transport can carry calls now (for AMQP: connected).
    pub fn is_ready(&self) -> bool {
        self.transport.is_ready()
    }

    /// Whether this mesh runs over RabbitMQ.
    pub fn is_amqp(&self) -> bool {
        self.amqp
    }

    /// `in-process`, or `AMQP` and the broker URL without its password.
    pub fn describe(&self) -> String {
        self.transport.describe()
    }

    /// Closes the transport: calls fail with `Unavailable` from now on. Stop the services
    /// first.
    pub async fn close(&self) {
        self.transport.close().await;
    }

    /// Another instance on the same mesh with its own `config` (its own `max_workers`,
    /// instance id...), as a second process would be: a new connection on AMQP, a new handle on
    /// the same queues in process.
    pub async fn another_instance(&self, config: MeshConfig) -> Result<Mesh, ConnectError> {
        Ok(Self {
            blocking: BlockingPool::new(config.blocking_threads),
            transport: self.transport.another_instance(config).await?,
            amqp: self.amqp,
        })
    }
}
