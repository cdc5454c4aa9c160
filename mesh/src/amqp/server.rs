//! [`serve_routes`]: run a service on a [`Broker`], its RPC queue and its event subscriptions each
//! with its own channel and consume loop, its timers and its announcer, until
//! [`RunningService::stop`].

use super::broker::Broker;
use super::consumer::{Attach, Attached, ConsumeLoop, DeliveryHandler};
use super::outbound::AmqpOutbound;
use super::publisher::Dispatcher;
use super::{events, rpc};
use crate::error::ConnectError;
use crate::events::Subscription;
use crate::routes::{ErasedHandler, Routes};
use crate::running::{RunningService, ServiceStats};
use crate::shutdown::Shutdown;
use lapin::Channel;
use lapin::options::{BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use std::sync::Arc;

/// Serves already validated routes: declares and consumes `rpc-<service>` (when it has RPC
/// methods) and one queue per event subscription, then starts its timers and its announcer.
pub(crate) async fn serve_routes(
    broker: &Broker,
    dispatcher: &Dispatcher,
    routes: Routes,
) -> Result<RunningService, ConnectError> {
    let name = routes.service().to_owned();
    let outbound = AmqpOutbound::new(broker.clone(), dispatcher.clone(), &name);
    let routes = routes.with_outbound(Arc::new(outbound));
    let stop = Shutdown::new();
    let stats = Arc::new(ServiceStats::new(&name));
    let mut tasks = Vec::new();

    let max_workers = usize::from(broker.config().max_workers.max(1));
    let consume_loop = |attach: Attach, label: &str, max_workers: usize| ConsumeLoop {
        broker: broker.clone(),
        attach,
        label: label.to_owned(),
        max_workers,
        grace: broker.config().shutdown_grace,
        stats: stats.clone(),
    };
    if routes.has_methods() {
        let attach = attach_rpc(broker.clone(), routes.clone(), stats.clone());
        // The first attach fails the start; later ones are retried on each new connection.
        let attached = attach().await?;
        let consume = consume_loop(attach, &name, max_workers);
        tasks.push(tokio::spawn(consume.run(attached, stop.clone())));
    }
    for (subscription, handler) in routes.subscriptions() {
        let label = subscription.queue(&name, &broker.config().instance_id);
        let attach = attach_events(
            broker.clone(),
            dispatcher.clone(),
            routes.clone(),
            subscription.clone(),
            handler.clone(),
            stats.clone(),
        );
        let attached = attach().await?;
        let workers = if subscription.in_order {
            1
        } else {
            max_workers
        };
        let consume = consume_loop(attach, &label, workers);
        tasks.push(tokio::spawn(consume.run(attached, stop.clone())));
        tasks.extend(events::renew_leases(
            broker,
            &name,
            subscription,
            stop.clone(),
        ));
    }
    let config = broker.config();
    let leases = |queue: String| -> Box<dyn crate::lease::Lease> {
        Box::new(super::lease::AmqpLease::new(broker.clone(), queue))
    };
    tasks.extend(crate::ticking::spawn_all(
        &routes,
        &stats,
        &stop,
        config.shutdown_grace,
        &leases,
    ));
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

/// Attaching the service's RPC queue: declare it, consume it, answer on its channel.
fn attach_rpc(broker: Broker, routes: Routes, stats: Arc<ServiceStats>) -> Attach {
    Arc::new(move || {
        let (broker, routes, stats) = (broker.clone(), routes.clone(), stats.clone());
        Box::pin(async move {
            let name = routes.service().to_owned();
            let (generation, channel, queue) = rpc::declare(&broker, &name).await?;
            let handler = rpc::handler(channel.clone(), routes, &broker, stats);
            consume(&broker, generation, channel, &queue, &name, handler).await
        })
    })
}

/// Attaching one event subscription's queue.
fn attach_events(
    broker: Broker,
    dispatcher: Dispatcher,
    routes: Routes,
    subscription: Subscription,
    handler: ErasedHandler,
    stats: Arc<ServiceStats>,
) -> Attach {
    Arc::new(move || {
        let (broker, routes, stats) = (broker.clone(), routes.clone(), stats.clone());
        let (subscription, handler) = (subscription.clone(), handler.clone());
        let dispatcher = dispatcher.clone();
        Box::pin(async move {
            let setup = events::declare(&broker, routes.service(), &subscription).await?;
            let delivery_handler =
                events::handler(dispatcher, routes, subscription, handler, &setup, stats);
            let queue = &setup.queues.own.name;
            consume(
                &broker,
                setup.generation,
                setup.channel,
                queue,
                queue,
                delivery_handler,
            )
            .await
        })
    })
}

/// Sets prefetch = `max_workers` on `channel` and starts consuming `queue`.
async fn consume(
    broker: &Broker,
    generation: u64,
    channel: Channel,
    queue: &str,
    label: &str,
    handler: DeliveryHandler,
) -> Result<Attached, ConnectError> {
    channel
        .basic_qos(broker.config().max_workers, BasicQosOptions::default())
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
    Ok(Attached {
        generation,
        channel,
        consumer,
        consumer_tag,
        handler,
    })
}
