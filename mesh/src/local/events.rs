//! Handling events in process: ack on success; on failure retry once, then dead-letter.

use super::consume::HandleMessage;
use super::{DeadLetter, EventMessage, Registry};
use crate::events::{Subscription, dead_letter_queue};
use crate::routes::{ErasedHandler, Routes};
use crate::running::ServiceStats;
use crate::telemetry::{self, EventOutcome};
use std::sync::Arc;

pub(crate) struct EventWorker {
    registry: Arc<Registry>,
    routes: Routes,
    subscription: Subscription,
    handler: ErasedHandler,
    queue: String,
    requeue: flume::Sender<EventMessage>,
    stats: Arc<ServiceStats>,
}

impl EventWorker {
    pub(crate) fn new(
        registry: Arc<Registry>,
        routes: Routes,
        subscription: Subscription,
        handler: ErasedHandler,
        queue: String,
        requeue: flume::Sender<EventMessage>,
        stats: Arc<ServiceStats>,
    ) -> Self {
        Self {
            registry,
            routes,
            subscription,
            handler,
            queue,
            requeue,
            stats,
        }
    }
}

impl HandleMessage<EventMessage> for EventWorker {
    async fn handle(&self, message: EventMessage) {
        let outcome = telemetry::run_event(
            &self.routes,
            &self.handler,
            &self.subscription.method,
            message.context.clone(),
            message.payload.clone(),
        )
        .await;
        let event_type = &self.subscription.event_type;
        match outcome {
            Ok(_) => {
                telemetry::event(&self.routes, &self.stats, event_type, EventOutcome::Handled);
            }
            Err(error) if !message.redelivered => {
                telemetry::event(&self.routes, &self.stats, event_type, EventOutcome::Retried);
                tracing::warn!(queue = %self.queue, %error, "event handler failed; retrying once");
                let retry = EventMessage {
                    redelivered: true,
                    ..message
                };
                if self.requeue.send(retry).is_err() {
                    tracing::error!(queue = %self.queue, "event queue closed; retry lost");
                }
            }
            Err(error) => {
                let queue = dead_letter_queue(&self.queue);
                tracing::error!(%queue, %error, "event moved to its dead-letter queue");
                self.registry.dead_letter(
                    &queue,
                    DeadLetter {
                        payload: message.payload,
                        reason: error.to_string(),
                    },
                );
                telemetry::event(
                    &self.routes,
                    &self.stats,
                    event_type,
                    EventOutcome::DeadLettered,
                );
            }
        }
    }
}
