//! Handling events in process: ack on success; on failure try again on the subscription's
//! schedule (a timer stands for AMQP's retry queue), then dead-letter.

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
        let error = match outcome {
            Ok(_) => {
                telemetry::event(&self.routes, &self.stats, event_type, EventOutcome::Handled);
                return;
            }
            Err(error) => error,
        };
        let attempt = message.attempt;
        if let Some(delay) = self.subscription.retry.delay_after(attempt) {
            telemetry::event(&self.routes, &self.stats, event_type, EventOutcome::Retried);
            tracing::warn!(queue = %self.queue, %error, attempt, ?delay, "event handler failed; retrying");
            let retry = EventMessage {
                attempt: attempt.saturating_add(1),
                ..message
            };
            if delay.is_zero() {
                return requeue(&self.requeue, retry, &self.queue);
            }
            let (sender, queue) = (self.requeue.clone(), self.queue.clone());
            // The queue outlives its consumers (the registry holds it), so the event comes back
            // even when this instance stopped meanwhile, as it would from a retry queue.
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                requeue(&sender, retry, &queue);
            });
            return;
        }
        let queue = dead_letter_queue(&self.queue);
        tracing::error!(%queue, %error, attempt, "event moved to its dead-letter queue");
        self.registry.dead_letter(
            &queue,
            DeadLetter {
                payload: message.payload,
                reason: error.to_string(),
                attempts: attempt,
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

fn requeue(sender: &flume::Sender<EventMessage>, message: EventMessage, queue: &str) {
    if sender.send(message).is_err() {
        tracing::error!(%queue, "event queue closed; retry lost");
    }
}
