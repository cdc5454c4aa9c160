//! Serving event subscriptions: declare the source's exchange and the subscription's queues
//! ([`EventQueues`]), run the handler for each event, ack on success; on failure copy the event
//! (confirmed, then ack) to the retry queue of its next attempt, or once the schedule is spent
//! to the dead-letter queue. Nothing is lost silently and nothing loops hot.

use super::broker::{Broker, declare_error, declare_topic_exchange};
use super::consumer::{DeliveryHandler, HandleDelivery, into_handler};
use super::event_queues::{EventQueues, QueueDeclaration};
use super::headers::{self, ATTEMPT_HEADER, ERROR_HEADER, EVENT_TYPE_HEADER, SOURCE_HEADER};
use super::publisher::{Dispatcher, copy_properties};
use super::rpc::ack;
use crate::error::{ConnectError, RpcError};
use crate::events::{BROADCAST_QUEUE_EXPIRES_MS, HandlerType, Subscription};
use crate::protocol::events_exchange;
use crate::routes::{ErasedHandler, Routes};
use crate::running::ServiceStats;
use crate::shutdown::Shutdown;
use crate::telemetry::{self, EventOutcome};
use lapin::Channel;
use lapin::message::Delivery;
use lapin::options::{BasicNackOptions, QueueBindOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// A subscription's channel and queues, declared.
pub(crate) struct Declared {
    /// The generation of the connection the channel is on.
    pub generation: u64,
    pub channel: Channel,
    pub queues: Arc<EventQueues>,
}

/// Declares `<source>.events` (topic, durable, as nameko does), the subscription's queue bound
/// with the event type, its dead-letter queue and its retry queues.
pub(crate) async fn declare(
    broker: &Broker,
    service: &str,
    subscription: &Subscription,
) -> Result<Declared, ConnectError> {
    let setup = |e: lapin::Error| broker.setup_error(e);
    let (generation, channel) = broker.open_channel().await?;
    let exchange = events_exchange(&subscription.source);
    declare_topic_exchange(&channel, &exchange)
        .await
        .map_err(setup)?;
    let queue = subscription.queue(service, &broker.config().instance_id);
    let queues = EventQueues::of(broker.queue_type(), subscription, &queue);
    let declare = |q: &QueueDeclaration| {
        let channel = channel.clone();
        let q = q.clone();
        async move {
            q.declare(&channel)
                .await
                .map_err(|e| declare_error(broker, &q.name, e))
        }
    };
    declare(&queues.own).await?;
    channel
        .queue_bind(
            queue.as_str().into(),
            exchange.as_str().into(),
            subscription.event_type.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(setup)?;
    for q in queues
        .dead_letter
        .iter()
        .chain(queues.retries.iter().map(|(_, q)| q))
    {
        declare(q).await?;
    }
    Ok(Declared {
        generation,
        channel,
        queues: Arc::new(queues),
    })
}

/// How often a broadcast subscription's dead-letter and retry queues are declared again while
/// its instance runs: well within their `x-expires`, which counts a queue without consumers as
/// unused from its last declaration on.
const LEASE_RENEWAL: Duration =
    Duration::from_millis(BROADCAST_QUEUE_EXPIRES_MS.unsigned_abs() / 3);

/// For a broadcast subscription, a task declaring its dead-letter and retry queues again every
/// [`LEASE_RENEWAL`] until `stop`: no one consumes them, so without it they would expire, dead
/// letters and all, half an hour after the instance connected; once the instance is gone for
/// good they expire with its queue. `None` for the other subscriptions, whose queues never
/// expire.
pub(crate) fn renew_leases(
    broker: &Broker,
    service: &str,
    subscription: &Subscription,
    stop: Shutdown,
) -> Option<JoinHandle<()>> {
    if subscription.transient || subscription.handler_type != HandlerType::Broadcast {
        return None;
    }
    let queue = subscription.queue(service, &broker.config().instance_id);
    let queues = EventQueues::of(broker.queue_type(), subscription, &queue);
    let broker = broker.clone();
    Some(tokio::spawn(async move {
        loop {
            tokio::select! {
                () = stop.triggered() => return,
                () = tokio::time::sleep(LEASE_RENEWAL) => {}
            }
            let Ok((_, channel)) = broker.open_channel().await else {
                continue;
            };
            for q in queues
                .dead_letter
                .iter()
                .chain(queues.retries.iter().map(|(_, q)| q))
            {
                if let Err(error) = q.declare(&channel).await {
                    tracing::warn!(queue = %q.name, %error, "cannot renew a queue's lease");
                    break;
                }
            }
            super::closing::step(
                "closing a lease channel",
                channel.close(200, "renewed".into()),
            )
            .await;
        }
    }))
}

/// The delivery handler of one subscription, on the channel it consumes.
pub(crate) fn handler(
    dispatcher: Dispatcher,
    routes: Routes,
    subscription: Subscription,
    handler: ErasedHandler,
    declared: &Declared,
    stats: Arc<ServiceStats>,
) -> DeliveryHandler {
    into_handler(EventWorker {
        dispatcher,
        routes,
        subscription,
        handler,
        channel: declared.channel.clone(),
        queues: declared.queues.clone(),
        stats,
    })
}

struct EventWorker {
    dispatcher: Dispatcher,
    routes: Routes,
    subscription: Subscription,
    handler: ErasedHandler,
    /// The channel the deliveries come on, where the queues a copy goes to are declared again.
    channel: Channel,
    queues: Arc<EventQueues>,
    stats: Arc<ServiceStats>,
}

impl HandleDelivery for EventWorker {
    async fn handle(&self, delivery: Delivery) {
        let attempt = headers::attempt(delivery.properties.headers().as_ref());
        let payload: Value = match serde_json::from_slice(&delivery.data) {
            Ok(payload) => payload,
            Err(e) => {
                // It will never decode: no point retrying.
                let reason = format!("event payload is not valid JSON: {e}");
                return self.dead_letter(&delivery, &reason, attempt).await;
            }
        };
        let context = headers::read(delivery.properties.headers().as_ref());
        let method = &self.subscription.method;
        let outcome =
            telemetry::run_event(&self.routes, &self.handler, method, context, payload).await;
        match outcome {
            Ok(_) => {
                self.count(EventOutcome::Handled);
                ack(&delivery, &self.queues.own.name).await;
            }
            Err(error) => match self.subscription.retry.delay_after(attempt) {
                Some(delay) => self.retry(&delivery, attempt, delay, &error).await,
                None => {
                    self.dead_letter(&delivery, &error.to_string(), attempt)
                        .await
                }
            },
        }
    }
}

impl EventWorker {
    fn count(&self, outcome: EventOutcome) {
        telemetry::event(
            &self.routes,
            &self.stats,
            &self.subscription.event_type,
            outcome,
        );
    }

    /// Sends the event on to its next attempt, `delay` from now: through the retry queue of
    /// that delay (or straight back to its own queue for no delay), or for a transient
    /// subscription on a timer of this process.
    async fn retry(&self, delivery: &Delivery, attempt: u32, delay: Duration, error: &RpcError) {
        let label = &self.queues.own.name;
        let next = attempt.saturating_add(1);
        tracing::warn!(queue = %label, %error, attempt, ?delay, "event handler failed; retrying");
        let headers = with_headers(
            &delivery.properties,
            &[(ATTEMPT_HEADER, AMQPValue::LongInt(attempt_value(next)))],
        );
        let properties = copy_properties(&delivery.properties, headers);
        if self.subscription.transient && !delay.is_zero() {
            self.count(EventOutcome::Retried);
            ack(delivery, label).await;
            let (dispatcher, queue) = (self.dispatcher.clone(), label.clone());
            let body = delivery.data.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                if let Err(error) = dispatcher.to_queue(&queue, &body, &properties).await {
                    tracing::warn!(%queue, %error, "cannot retry an event of a transient queue");
                }
            });
            return;
        }
        let millis = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        let moved = match self.queues.retry(millis) {
            Some(retry_queue) => self.copy(delivery, retry_queue, &properties).await,
            // No delay: straight back to the own queue, which is there (this worker consumes it).
            None => self.copy_to(delivery, label, &properties).await,
        };
        if moved {
            self.count(EventOutcome::Retried);
        }
    }

    /// Moves the event to the dead-letter queue (confirmed), then acks it, with headers saying
    /// why, after how many attempts, and what event it was. A transient subscription has no
    /// dead-letter queue: its event is dropped, and logged.
    async fn dead_letter(&self, delivery: &Delivery, reason: &str, attempt: u32) {
        let Some(queue) = &self.queues.dead_letter else {
            let queue = &self.queues.own.name;
            tracing::error!(%queue, %reason, attempt, "event of a transient queue dropped");
            self.count(EventOutcome::DeadLettered);
            return ack(delivery, queue).await;
        };
        let headers = with_headers(
            &delivery.properties,
            &[
                (ERROR_HEADER, long_string(reason)),
                (ATTEMPT_HEADER, AMQPValue::LongInt(attempt_value(attempt))),
                (SOURCE_HEADER, long_string(&self.subscription.source)),
                (
                    EVENT_TYPE_HEADER,
                    long_string(&self.subscription.event_type),
                ),
            ],
        );
        let properties = copy_properties(&delivery.properties, headers);
        if self.copy(delivery, queue, &properties).await {
            self.count(EventOutcome::DeadLettered);
            tracing::error!(queue = %queue.name, %reason, attempt, "event moved to its dead-letter queue");
        }
    }

    /// Declares `queue` again (it may have expired with a broadcast instance's absence, or been
    /// deleted by hand), then [`EventWorker::copy_to`] it.
    async fn copy(
        &self,
        delivery: &Delivery,
        queue: &QueueDeclaration,
        properties: &lapin::BasicProperties,
    ) -> bool {
        if let Err(error) = queue.declare(&self.channel).await {
            tracing::error!(queue = %queue.name, %error, "cannot declare a queue; requeueing the event");
            requeue(delivery, &queue.name).await;
            return false;
        }
        self.copy_to(delivery, &queue.name, properties).await
    }

    /// Publishes a copy of the delivery to `queue`, then acks it once the broker confirmed the
    /// copy. If the broker does not take the copy, the event goes back to its queue instead:
    /// it is never dropped.
    async fn copy_to(
        &self,
        delivery: &Delivery,
        queue: &str,
        properties: &lapin::BasicProperties,
    ) -> bool {
        match self
            .dispatcher
            .to_queue(queue, &delivery.data, properties)
            .await
        {
            Ok(()) => {
                ack(delivery, queue).await;
                true
            }
            Err(error) => {
                tracing::error!(%queue, %error, "cannot move an event; requeueing it");
                requeue(delivery, queue).await;
                false
            }
        }
    }
}

/// `original`'s headers with `set` added (replacing any of the same name).
fn with_headers(original: &lapin::BasicProperties, set: &[(&str, AMQPValue)]) -> FieldTable {
    let mut headers = original.headers().clone().unwrap_or_default();
    for (name, value) in set {
        headers.insert((*name).into(), value.clone());
    }
    headers
}

/// An attempt number as a signed 32-bit header, the integer type every AMQP client reads.
fn attempt_value(attempt: u32) -> i32 {
    i32::try_from(attempt).unwrap_or(i32::MAX)
}

fn long_string(text: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(text))
}

async fn requeue(delivery: &Delivery, label: &str) {
    let options = BasicNackOptions {
        requeue: true,
        ..BasicNackOptions::default()
    };
    if let Err(error) = delivery.acker.nack(options).await {
        tracing::warn!(%label, %error, "cannot requeue a delivery");
    }
}
