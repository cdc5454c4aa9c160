//! Serving event subscriptions: declare the source's exchange and the subscription's queue,
//! run the handler for each event, ack on success; on failure requeue once, then move the event
//! to the subscription's dead-letter queue. Nothing is lost silently and nothing loops hot.

use super::broker::{Broker, declare_error, declare_topic_exchange, queue_arguments};
use super::config::QueueType;
use super::consumer::{DeliveryHandler, HandleDelivery, into_handler};
use super::headers;
use super::publisher::Dispatcher;
use super::rpc::ack;
use crate::error::ConnectError;
use crate::events::{BROADCAST_QUEUE_EXPIRES_MS, HandlerType, Subscription, dead_letter_queue};
use crate::protocol::events_exchange;
use crate::routes::{ErasedHandler, Routes};
use crate::running::ServiceStats;
use crate::telemetry::{self, EventOutcome};
use lapin::Channel;
use lapin::message::Delivery;
use lapin::options::{BasicNackOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use serde_json::Value;
use std::sync::Arc;

/// A subscription's channel and queues, declared.
pub(crate) struct Declared {
    /// The generation of the connection the channel is on.
    pub generation: u64,
    pub channel: Channel,
    pub queue: String,
    pub dead_letter_queue: String,
}

/// Declares `<source>.events` (topic, durable, as nameko does), the subscription's queue bound
/// with the event type, and its dead-letter queue.
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
    let (options, arguments) = queue_declaration(broker.queue_type(), subscription);
    channel
        .queue_declare(queue.as_str().into(), options, arguments.clone())
        .await
        .map_err(|e| declare_error(broker, &queue, e))?;
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
    // The dead-letter queue lives as long as its queue: forever for a shared queue, until
    // expiry for a broadcast one. A transient subscription has none: it keeps nothing past its
    // consumer, and an exclusive queue no one consumes would stay until the connection closes
    // (one more for every feed a gateway makes).
    let dead_letter_queue = dead_letter_queue(&queue);
    if !subscription.transient {
        channel
            .queue_declare(dead_letter_queue.as_str().into(), options, arguments)
            .await
            .map_err(|e| declare_error(broker, &dead_letter_queue, e))?;
    }
    Ok(Declared {
        generation,
        channel,
        queue,
        dead_letter_queue,
    })
}

/// How a subscription's queue (and its dead-letter queue) is declared.
///
/// Classic: service-pool and singleton queues exactly as nameko declares them (durable, no
/// x-arguments); a broadcast queue belongs to one instance and expires once its instance has
/// been gone a while. Quorum: the same, as quorum queues, so that they survive the loss of a
/// node; a broadcast queue too (quorum queues take `x-expires`), since a durable classic queue
/// whose node is lost cannot be declared again until the node is back. A transient
/// subscription's queue lives as long as its consumer's connection (exclusive, auto-deleted,
/// declared again on each new connection), whatever the type: exclusive queues cannot be
/// quorum queues, and need not be.
fn queue_declaration(
    queue_type: QueueType,
    subscription: &Subscription,
) -> (QueueDeclareOptions, FieldTable) {
    if subscription.transient {
        let options = QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..QueueDeclareOptions::default()
        };
        return (options, FieldTable::default());
    }
    let mut arguments = queue_arguments(queue_type);
    if subscription.handler_type == HandlerType::Broadcast {
        arguments.insert(
            "x-expires".into(),
            AMQPValue::LongLongInt(BROADCAST_QUEUE_EXPIRES_MS),
        );
    }
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    (durable, arguments)
}

/// The delivery handler of one subscription.
pub(crate) fn handler(
    dispatcher: Dispatcher,
    routes: Routes,
    subscription: Subscription,
    handler: ErasedHandler,
    dead_letter_queue: String,
    stats: Arc<ServiceStats>,
) -> DeliveryHandler {
    into_handler(EventWorker {
        dispatcher,
        routes,
        subscription,
        handler,
        dead_letter_queue,
        stats,
    })
}

struct EventWorker {
    dispatcher: Dispatcher,
    routes: Routes,
    subscription: Subscription,
    handler: ErasedHandler,
    dead_letter_queue: String,
    stats: Arc<ServiceStats>,
}

impl HandleDelivery for EventWorker {
    async fn handle(&self, delivery: Delivery) {
        let label = self.dead_letter_queue.as_str();
        let payload: Value = match serde_json::from_slice(&delivery.data) {
            Ok(payload) => payload,
            Err(e) => {
                // It will never decode: no point retrying.
                let reason = format!("event payload is not valid JSON: {e}");
                return self.dead_letter(&delivery, &reason).await;
            }
        };
        let context = headers::read(delivery.properties.headers().as_ref());
        let method = &self.subscription.method;
        let outcome =
            telemetry::run_event(&self.routes, &self.handler, method, context, payload).await;
        match outcome {
            Ok(_) => {
                self.count(EventOutcome::Handled);
                ack(&delivery, label).await;
            }
            Err(error) if !delivery.redelivered => {
                self.count(EventOutcome::Retried);
                tracing::warn!(queue = %label, %error, "event handler failed; retrying once");
                requeue(&delivery, label).await;
            }
            Err(error) => self.dead_letter(&delivery, &error.to_string()).await,
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

    /// Moves the event to the dead-letter queue (confirmed), then acks it. If the broker does not
    /// take the copy, the event goes back to its queue instead: it is never dropped.
    async fn dead_letter(&self, delivery: &Delivery, reason: &str) {
        let queue = &self.dead_letter_queue;
        let copied = self
            .dispatcher
            .dead_letter(queue, &delivery.data, &delivery.properties, reason)
            .await;
        match copied {
            Ok(()) => {
                self.count(EventOutcome::DeadLettered);
                tracing::error!(%queue, %reason, "event moved to its dead-letter queue");
                ack(delivery, queue).await;
            }
            Err(error) => {
                tracing::error!(%queue, %error, "cannot dead-letter an event; requeueing it");
                requeue(delivery, queue).await;
            }
        }
    }
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
