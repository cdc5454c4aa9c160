//! [`serve`]: run a [`Service`] on a [`Broker`] — its RPC queue and its event subscriptions, each
//! with its own channel and consume loop — until [`RunningService::stop`].

use super::broker::Broker;
use super::consumer::{ConsumeLoop, DeliveryHandler};
use super::outbound::AmqpOutbound;
use super::{events, rpc};
use crate::error::ConnectError;
use crate::running::{RunningService, ServiceStats};
use crate::service::{Routes, Service};
use crate::shutdown::Shutdown;
use lapin::Channel;
use lapin::options::{BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use std::sync::Arc;

/// Serves `service` on `broker`: declares and consumes `rpc-<service>` (when it has RPC
/// methods) and one queue per event subscription.
pub async fn serve<S: Clone + Send + Sync + 'static>(
    broker: &Broker,
    service: Service<S>,
) -> Result<RunningService, ConnectError> {
    service
        .validate()
        .map_err(|(name, e)| broker.setup_error(format!("invalid name `{name}`: {e}")))?;
    serve_routes(broker, service.routes()).await
}

/// Serves already validated routes (see [`serve`]).
pub(crate) async fn serve_routes(
    broker: &Broker,
    routes: Routes,
) -> Result<RunningService, ConnectError> {
    let name = routes.service().to_owned();
    let outbound = AmqpOutbound::new(broker.clone(), &name);
    let routes = routes.with_outbound(Arc::new(outbound));
    let stop = Shutdown::new();
    let stats = Arc::new(ServiceStats::default());
    let mut tasks = Vec::new();

    if routes.has_methods() {
        let (channel, queue) = rpc::declare(broker, &name).await?;
        let handler = rpc::handler(channel.clone(), routes.clone(), broker, stats.clone());
        let consume = consume(broker, channel, &queue, &name, handler, stats.clone()).await?;
        tasks.push(tokio::spawn(consume.run_until(stop.clone())));
    }
    for (subscription, handler) in routes.subscriptions() {
        let setup = events::declare(broker, &name, subscription).await?;
        let label = setup.queue.clone();
        let delivery_handler = events::handler(
            broker.clone(),
            routes.clone(),
            subscription.clone(),
            handler.clone(),
            setup.dead_letter_queue.clone(),
            stats.clone(),
        );
        let consume = consume(
            broker,
            setup.channel,
            &setup.queue,
            &label,
            delivery_handler,
            stats.clone(),
        )
        .await?;
        tasks.push(tokio::spawn(consume.run_until(stop.clone())));
    }
    let config = broker.config();
    tasks.push(crate::announce::spawn(
        routes.clone(),
        config.instance_id.clone(),
        config.heartbeat,
        stop.clone(),
    ));
    tracing::info!(
        service = %name,
        max_workers = broker.config().max_workers,
        methods = routes.method_count(),
        subscriptions = routes.subscriptions().len(),
        "serving"
    );
    Ok(RunningService::new(name, stop, stats, tasks))
}

/// A consume loop ready to run, with its handler.
struct Consuming {
    consume: ConsumeLoop,
    handler: DeliveryHandler,
}

impl Consuming {
    async fn run_until(self, stop: Shutdown) {
        self.consume.run(self.handler, stop).await;
    }
}

/// Sets prefetch = `max_workers` on `channel` and starts consuming `queue`.
async fn consume(
    broker: &Broker,
    channel: Channel,
    queue: &str,
    label: &str,
    handler: DeliveryHandler,
    stats: Arc<ServiceStats>,
) -> Result<Consuming, ConnectError> {
    let config = broker.config();
    channel
        .basic_qos(config.max_workers, BasicQosOptions::default())
        .await
        .map_err(|e| broker.setup_error(e))?;
    let consumer_tag = format!("{label}-{}", uuid::Uuid::new_v4().simple());
    let consumer = channel
        .basic_consume(
            queue.into(),
            consumer_tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| broker.setup_error(e))?;
    Ok(Consuming {
        consume: ConsumeLoop {
            channel,
            consumer,
            consumer_tag,
            label: label.to_owned(),
            max_workers: usize::from(config.max_workers.max(1)),
            grace: config.shutdown_grace,
            stats,
        },
        handler,
    })
}
