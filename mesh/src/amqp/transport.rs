//! [`AmqpTransport`]: the [`Transport`] over RabbitMQ.

use super::broker::Broker;
use super::outbound::AmqpOutbound;
use super::publisher::Dispatcher;
use super::server::serve_routes;
use crate::client::Client;
use crate::config::MeshConfig;
use crate::error::ConnectError;
use crate::future::BoxFuture;
use crate::routes::Routes;
use crate::running::RunningService;
use crate::transport::Transport;
use std::sync::Arc;

/// A process's connection to RabbitMQ and its publisher of events.
pub(crate) struct AmqpTransport {
    broker: Broker,
    dispatcher: Dispatcher,
}

impl AmqpTransport {
    /// Connects (see [`Broker::connect`]).
    pub(crate) async fn connect(config: MeshConfig) -> Result<Self, ConnectError> {
        let broker = Broker::connect(config).await?;
        Ok(Self {
            dispatcher: Dispatcher::new(broker.clone()),
            broker,
        })
    }
}

impl Transport for AmqpTransport {
    fn serve(&self, routes: Routes) -> BoxFuture<Result<RunningService, ConnectError>> {
        let (broker, dispatcher) = (self.broker.clone(), self.dispatcher.clone());
        Box::pin(async move { serve_routes(&broker, &dispatcher, routes).await })
    }

    fn client(&self, owner: &str) -> BoxFuture<Result<Client, ConnectError>> {
        let (broker, dispatcher) = (self.broker.clone(), self.dispatcher.clone());
        let owner = owner.to_owned();
        Box::pin(async move {
            let outbound = AmqpOutbound::ready(broker, dispatcher, &owner).await?;
            Ok(Client::new(Arc::new(outbound), owner))
        })
    }

    fn is_ready(&self) -> bool {
        self.broker.is_connected()
    }

    fn describe(&self) -> String {
        format!("AMQP {}", self.broker.config().amqp.redacted_url())
    }

    fn close(&self) -> BoxFuture<()> {
        let broker = self.broker.clone();
        Box::pin(async move { broker.close().await })
    }

    fn another_instance(
        &self,
        config: MeshConfig,
    ) -> BoxFuture<Result<Arc<dyn Transport>, ConnectError>> {
        Box::pin(async move {
            let transport: Arc<dyn Transport> = Arc::new(AmqpTransport::connect(config).await?);
            Ok(transport)
        })
    }
}
