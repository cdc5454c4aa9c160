//! Handling events in process: ack on success; on failure retry once, then dead-letter.

use super::consume::HandleMessage;
use super::{DeadLetter, EventMessage, Registry};
use crate::error::RpcError;
use crate::events::{Subscription, dead_letter_queue};
use crate::handler::Call;
use crate::running::ServiceStats;
use crate::service::{ErasedHandler, Routes};
use futures_util::FutureExt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;

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
        let ctx = self
            .routes
            .ctx(&self.subscription.method, message.context.clone());
        let call = Call::event(ctx, message.payload.clone());
        let outcome = AssertUnwindSafe((self.handler)(call))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| Err(RpcError::internal("the handler panicked")));
        match outcome {
            Ok(_) => {
                self.stats.events_handled.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) if !message.redelivered => {
                self.stats.events_retried.fetch_add(1, Ordering::Relaxed);
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
                self.stats
                    .events_dead_lettered
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
