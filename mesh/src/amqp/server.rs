//! [`serve`]: run a [`Service`] on a [`Broker`] — its RPC queue and its event subscriptions, each
//! with its own channel and consume loop — until [`RunningService::stop`].

use super::broker::Broker;
use super::consumer::{ConsumeLoop, DeliveryHandler};
use super::outbound::AmqpOutbound;
use super::{events, rpc};
use crate::error::ConnectError;
use crate::service::Service;
use crate::shutdown::Shutdown;
use lapin::Channel;
use lapin::options::{BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::task::JoinHandle;

/// Counters of a running service since it started.
#[derive(Debug, Default)]
pub struct ServiceStats {
    pub(crate) handled: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) expired: AtomicU64,
    busy: AtomicU64,
    pub(crate) events_handled: AtomicU64,
    pub(crate) events_retried: AtomicU64,
    pub(crate) events_dead_lettered: AtomicU64,
}

impl ServiceStats {
    /// RPC requests answered (successfully or with an error).
    pub fn handled(&self) -> u64 {
        self.handled.load(Ordering::Relaxed)
    }

    /// RPC requests answered with an error.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// RPC requests skipped because their deadline had passed before they started.
    pub fn expired(&self) -> u64 {
        self.expired.load(Ordering::Relaxed)
    }

    /// Handlers (RPC and events) running now.
    pub fn busy(&self) -> u64 {
        self.busy.load(Ordering::Relaxed)
    }

    /// Events handled successfully.
    pub fn events_handled(&self) -> u64 {
        self.events_handled.load(Ordering::Relaxed)
    }

    /// Events whose handler failed once and that went back to the queue for a retry.
    pub fn events_retried(&self) -> u64 {
        self.events_retried.load(Ordering::Relaxed)
    }

    /// Events moved to a dead-letter queue after failing twice.
    pub fn events_dead_lettered(&self) -> u64 {
        self.events_dead_lettered.load(Ordering::Relaxed)
    }

    pub(crate) fn work_started(&self) {
        self.busy.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn work_finished(&self) {
        self.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A service being served. [`RunningService::stop`] shuts it down gracefully; dropping it leaves
/// it running until the process ends.
pub struct RunningService {
    name: String,
    stop: Shutdown,
    stats: Arc<ServiceStats>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningService {
    /// The service's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its counters.
    pub fn stats(&self) -> &ServiceStats {
        &self.stats
    }

    /// Stops consuming, requeues what has not started, waits up to the grace period for
    /// in-flight handlers, then closes its channels (the broker requeues anything still unacked).
    pub async fn stop(self) {
        self.stop.trigger();
        for task in self.tasks {
            if let Err(e) = task.await {
                tracing::error!(service = %self.name, error = %e, "service task failed");
            }
        }
    }
}

/// Serves `service` on `broker`: declares and consumes `rpc-<service>` (when it has RPC
/// methods) and one queue per event subscription.
pub async fn serve<S: Clone + Send + Sync + 'static>(
    broker: &Broker,
    service: Service<S>,
) -> Result<RunningService, ConnectError> {
    service
        .validate()
        .map_err(|(name, e)| broker.setup_error(format!("invalid name `{name}`: {e}")))?;
    let name = service.name().to_owned();
    let outbound = AmqpOutbound::new(broker.clone(), &name);
    let routes = service.routes().with_outbound(Arc::new(outbound));
    let stop = Shutdown::new();
    let stats = Arc::new(ServiceStats::default());
    let mut tasks = Vec::new();

    if !service.methods().is_empty() {
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
    tracing::info!(
        service = %name,
        max_workers = broker.config().max_workers,
        methods = service.methods().len(),
        subscriptions = routes.subscriptions().len(),
        "serving"
    );
    Ok(RunningService {
        name,
        stop,
        stats,
        tasks,
    })
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
