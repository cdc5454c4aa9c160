//! The service runtime: consume `rpc-<service>`, run handlers with bounded concurrency, reply,
//! then acknowledge.
//!
//! Flow control is the broker's: prefetch = `max_workers`, so a busy instance holds at most that
//! many requests and the rest wait in the queue for any instance. A request is acked only after
//! its reply is published on the same channel (AMQP orders them), so a request whose instance
//! dies is redelivered to another. Handlers run on their own tasks, off the connection's task,
//! so a CPU-heavy handler never starves the heartbeat.

use super::broker::Broker;
use super::headers;
use crate::error::{ConnectError, ErrorKind, RpcError};
use crate::handler::Call;
use crate::protocol::{
    ReplyBody, RequestBody, method_of_routing_key, service_binding, service_queue,
};
use crate::service::{Routes, Service};
use crate::shutdown::Shutdown;
use futures_util::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
    BasicPublishOptions, BasicQosOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Consumer};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// Counters of a running service since it started.
#[derive(Debug, Default)]
pub struct ServiceStats {
    handled: AtomicU64,
    failed: AtomicU64,
    expired: AtomicU64,
    busy: AtomicU64,
}

impl ServiceStats {
    /// Requests answered (successfully or with an error).
    pub fn handled(&self) -> u64 {
        self.handled.load(Ordering::Relaxed)
    }

    /// Requests answered with an error.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Handlers running now.
    pub fn busy(&self) -> u64 {
        self.busy.load(Ordering::Relaxed)
    }

    /// Requests skipped because their deadline had passed before they started.
    pub fn expired(&self) -> u64 {
        self.expired.load(Ordering::Relaxed)
    }
}

/// A service being served. [`RunningService::stop`] shuts it down gracefully; dropping it leaves
/// it running until the process ends.
pub struct RunningService {
    name: String,
    stop: Shutdown,
    stats: Arc<ServiceStats>,
    task: JoinHandle<()>,
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
    /// in-flight handlers, then closes its channel (the broker requeues anything still unacked).
    pub async fn stop(self) {
        self.stop.trigger();
        if let Err(e) = self.task.await {
            tracing::error!(service = %self.name, error = %e, "service task failed");
        }
    }
}

/// Declares `rpc-<service>`, binds it and starts serving `service` on `broker`.
pub async fn serve<S: Clone + Send + Sync + 'static>(
    broker: &Broker,
    service: Service<S>,
) -> Result<RunningService, ConnectError> {
    service
        .validate()
        .map_err(|(name, e)| broker.setup_error(format!("invalid name `{name}`: {e}")))?;
    let config = broker.config();
    let routes = service.routes();
    let name = routes.service().to_owned();
    let queue = service_queue(&name);

    let channel = broker.channel().await?;
    broker.declare_rpc_exchange(&channel).await?;
    // Exactly nameko's declaration: durable, no x-arguments. Anything else and a nameko peer
    // declaring the same queue gets PRECONDITION_FAILED.
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| broker.setup_error(e))?;
    channel
        .queue_bind(
            queue.as_str().into(),
            config.rpc_exchange.as_str().into(),
            service_binding(&name).into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| broker.setup_error(e))?;
    channel
        .basic_qos(config.max_workers, BasicQosOptions::default())
        .await
        .map_err(|e| broker.setup_error(e))?;
    let consumer_tag = format!("{name}-{}", uuid::Uuid::new_v4());
    let consumer = channel
        .basic_consume(
            queue.as_str().into(),
            consumer_tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| broker.setup_error(e))?;

    let stop = Shutdown::new();
    let stats = Arc::new(ServiceStats::default());
    let worker = Worker {
        channel: channel.clone(),
        routes,
        exchange: config.rpc_exchange.as_str().into(),
        stats: stats.clone(),
    };
    let task = tokio::spawn(consume(
        worker,
        consumer,
        consumer_tag,
        usize::from(config.max_workers.max(1)),
        config.shutdown_grace,
        stop.clone(),
    ));
    tracing::info!(service = %name, max_workers = config.max_workers, "serving");
    Ok(RunningService {
        name,
        stop,
        stats,
        task,
    })
}

/// What each request task needs, cloned per request.
#[derive(Clone)]
struct Worker {
    channel: Channel,
    routes: Routes,
    exchange: ShortString,
    stats: Arc<ServiceStats>,
}

async fn consume(
    worker: Worker,
    mut consumer: Consumer,
    consumer_tag: String,
    max_workers: usize,
    grace: Duration,
    stop: Shutdown,
) {
    let service = worker.routes.service().to_owned();
    let workers = Arc::new(Semaphore::new(max_workers));
    loop {
        let next = tokio::select! {
            biased;
            () = stop.triggered() => break,
            next = consumer.next() => next,
        };
        match next {
            None => break,
            Some(Ok(delivery)) => {
                // Prefetch already bounds deliveries to `max_workers`; the semaphore makes the
                // bound hold for handlers too, and lets shutdown wait for them.
                let Ok(permit) = workers.clone().acquire_owned().await else {
                    break;
                };
                let worker = worker.clone();
                worker.stats.busy.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    let stats = worker.stats.clone();
                    worker.handle(delivery).await;
                    stats.busy.fetch_sub(1, Ordering::Relaxed);
                    drop(permit);
                });
            }
            Some(Err(error)) => {
                tracing::warn!(%service, %error, "consumer interrupted; waiting for recovery");
                if let Err(error) = worker.channel.wait_for_recovery(error).await {
                    tracing::error!(%service, %error, "consumer cannot recover");
                    break;
                }
                tracing::info!(%service, "consumer recovered");
            }
        }
    }

    // Stop consuming; whatever was delivered but not started goes back to the queue.
    if let Err(error) = worker
        .channel
        .basic_cancel(consumer_tag.as_str().into(), BasicCancelOptions::default())
        .await
    {
        tracing::debug!(%service, %error, "cancelling the consumer");
    }
    while let Ok(Some(Ok(delivery))) =
        tokio::time::timeout(Duration::from_millis(100), consumer.next()).await
    {
        let requeue = BasicNackOptions {
            requeue: true,
            ..BasicNackOptions::default()
        };
        if let Err(error) = delivery.acker.nack(requeue).await {
            tracing::debug!(%service, %error, "requeueing an unstarted request");
        }
    }
    // Wait for in-flight handlers: each holds a permit until its reply is published and acked.
    let all = u32::try_from(max_workers).unwrap_or(u32::MAX);
    match tokio::time::timeout(grace, workers.acquire_many(all)).await {
        Ok(_) => tracing::info!(%service, "stopped; all in-flight requests finished"),
        Err(_) => tracing::warn!(
            %service,
            busy = max_workers - workers.available_permits(),
            "grace period over; unfinished requests go back to the queue"
        ),
    }
    if let Err(error) = worker.channel.close(200, "service stopping".into()).await {
        tracing::debug!(%service, %error, "closing the service channel");
    }
}

impl Worker {
    /// Serves one request: run the handler (unless the caller's deadline has passed), publish
    /// the reply, ack. Every decodable-or-not request is acked: a message that cannot be handled
    /// is answered with an error, never left to poison the queue.
    async fn handle(self, delivery: Delivery) {
        let properties = &delivery.properties;
        let context = headers::read(properties.headers().as_ref());
        let method = method_of_routing_key(delivery.routing_key.as_str()).to_owned();

        if context.deadline.is_some_and(|d| d.expired()) {
            self.stats.expired.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(service = %self.routes.service(), %method, "skipping an expired request");
            self.ack(&delivery).await;
            return;
        }

        let outcome = match RequestBody::decode(&delivery.data) {
            Err(message) => Err(RpcError::new(ErrorKind::MalformedRequest, message)),
            Ok(body) => {
                let ctx = self.routes.ctx(&method, context);
                let handler = self.routes.dispatch(Call { ctx, body });
                AssertUnwindSafe(handler)
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|_| Err(RpcError::internal("the handler panicked")))
            }
        };
        let reply = match outcome {
            Ok(result) => ReplyBody::ok(result),
            Err(error) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(service = %self.routes.service(), %method, %error, "handler failed");
                ReplyBody::err(error.to_wire())
            }
        };
        self.reply(properties, reply).await;
        self.stats.handled.fetch_add(1, Ordering::Relaxed);
        self.ack(&delivery).await;
    }

    async fn reply(&self, request: &BasicProperties, reply: ReplyBody) {
        let Some(reply_to) = request.reply_to().clone() else {
            tracing::debug!(service = %self.routes.service(), "request without reply_to; not replying");
            return;
        };
        let payload = match serde_json::to_vec(&reply) {
            Ok(payload) => payload,
            Err(error) => {
                tracing::error!(%error, "cannot encode a reply");
                return;
            }
        };
        let mut properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_content_encoding("utf-8".into())
            .with_delivery_mode(1);
        if let Some(correlation_id) = request.correlation_id().clone() {
            properties = properties.with_correlation_id(correlation_id);
        }
        let published = self
            .channel
            .basic_publish(
                self.exchange.clone(),
                reply_to,
                BasicPublishOptions::default(),
                &payload,
                properties,
            )
            .await;
        if let Err(error) = published {
            tracing::warn!(service = %self.routes.service(), %error, "cannot publish a reply");
        }
    }

    async fn ack(&self, delivery: &Delivery) {
        if let Err(error) = delivery.acker.ack(BasicAckOptions::default()).await {
            tracing::warn!(service = %self.routes.service(), %error, "cannot ack a request");
        }
    }
}
