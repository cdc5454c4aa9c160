//! [`Transport`]: what carries calls and events between services, and [`Mesh`], the handle a
//! process holds on one. Two transports implement it with the same observable behaviour (one
//! conformance suite runs against both): AMQP on RabbitMQ (the production path, nameko-compatible)
//! and in-process channels (zero setup: `warren dev` without a broker, and unit tests).

use crate::amqp::{Broker, RpcClient, serve_routes};
use crate::config::MeshConfig;
use crate::error::ConnectError;
use crate::handler::BoxFuture;
use crate::local::InProcess;
use crate::outbound::Client;
use crate::running::RunningService;
use crate::service::{Routes, Service};
use std::sync::Arc;

/// A way to serve services and reach them.
pub trait Transport: Send + Sync + 'static {
    /// Serves `routes` (already validated) until the returned service is stopped.
    fn serve(&self, routes: Routes) -> BoxFuture<Result<RunningService, ConnectError>>;

    /// A client that calls as `owner`, ready to call when this returns (for AMQP its callback
    /// queue is consumed).
    fn client(&self, owner: &str) -> BoxFuture<Result<Client, ConnectError>>;

    /// Whether the transport can carry calls now.
    fn is_ready(&self) -> bool;

    /// A one-line description for logs: `in-process`, or the broker URL without its password.
    fn describe(&self) -> String;

    /// Closes the transport: calls fail with `Unavailable` from now on.
    fn close(&self) -> BoxFuture<()>;

    /// Another instance joining the same mesh with its own `config` (for AMQP: a new
    /// connection to the same broker), as a second process would.
    fn another_instance(
        &self,
        config: MeshConfig,
    ) -> BoxFuture<Result<Arc<dyn Transport>, ConnectError>>;
}

/// A process's handle on its transport. Cheap to clone.
#[derive(Clone)]
pub struct Mesh {
    transport: Arc<dyn Transport>,
    broker: Option<Broker>,
}

impl Mesh {
    /// Connects to RabbitMQ (see [`Broker::connect`]).
    pub async fn amqp(config: MeshConfig) -> Result<Self, ConnectError> {
        Ok(Self::from_broker(Broker::connect(config).await?))
    }

    /// A mesh on an existing broker connection.
    pub fn from_broker(broker: Broker) -> Self {
        Self {
            transport: Arc::new(AmqpTransport(broker.clone())),
            broker: Some(broker),
        }
    }

    /// A mesh whose services live in this process and talk over channels.
    pub fn in_process(config: MeshConfig) -> Self {
        Self {
            transport: Arc::new(InProcess::new(config)),
            broker: None,
        }
    }

    /// Serves `service`.
    pub async fn serve<S: Clone + Send + Sync + 'static>(
        &self,
        service: Service<S>,
    ) -> Result<RunningService, ConnectError> {
        service
            .validate()
            .map_err(|(name, e)| ConnectError::Setup {
                url: self.describe(),
                reason: format!("invalid name `{name}`: {e}"),
            })?;
        self.transport.serve(service.routes()).await
    }

    /// A client that calls as `owner`.
    pub async fn client(&self, owner: &str) -> Result<Client, ConnectError> {
        self.transport.client(owner).await
    }

    /// Whether the transport can carry calls now.
    pub fn is_ready(&self) -> bool {
        self.transport.is_ready()
    }

    /// `in-process`, or the broker URL without its password.
    pub fn describe(&self) -> String {
        self.transport.describe()
    }

    /// The broker, when this mesh runs on AMQP.
    pub fn broker(&self) -> Option<&Broker> {
        self.broker.as_ref()
    }

    /// Closes the transport.
    pub async fn close(&self) {
        self.transport.close().await;
    }

    /// Another instance on the same mesh with its own `config` (its own `max_workers`,
    /// instance id...): a new connection on AMQP, a new handle on the same queues in process.
    pub async fn another_instance(&self, config: MeshConfig) -> Result<Mesh, ConnectError> {
        match &self.broker {
            Some(_) => Mesh::amqp(config).await,
            None => Ok(Self {
                transport: self.transport.another_instance(config).await?,
                broker: None,
            }),
        }
    }
}

/// [`Transport`] over RabbitMQ.
struct AmqpTransport(Broker);

impl Transport for AmqpTransport {
    fn serve(&self, routes: Routes) -> BoxFuture<Result<RunningService, ConnectError>> {
        let broker = self.0.clone();
        Box::pin(async move { serve_routes(&broker, routes).await })
    }

    fn client(&self, owner: &str) -> BoxFuture<Result<Client, ConnectError>> {
        let (broker, owner) = (self.0.clone(), owner.to_owned());
        Box::pin(async move {
            let client = RpcClient::start(&broker, &owner).await?;
            Ok(Client::new(Arc::new(client), owner))
        })
    }

    fn is_ready(&self) -> bool {
        self.0.is_connected()
    }

    fn describe(&self) -> String {
        format!("AMQP {}", self.0.config().redacted_url())
    }

    fn close(&self) -> BoxFuture<()> {
        let broker = self.0.clone();
        Box::pin(async move { broker.close().await })
    }

    fn another_instance(
        &self,
        config: MeshConfig,
    ) -> BoxFuture<Result<Arc<dyn Transport>, ConnectError>> {
        Box::pin(async move {
            let transport: Arc<dyn Transport> =
                Arc::new(AmqpTransport(Broker::connect(config).await?));
            Ok(transport)
        })
    }
}
