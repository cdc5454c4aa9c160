//! The consume loop every queue of a service runs, RPC or events: bounded concurrency,
//! re-attaching on a new connection after the broker was lost, and a graceful stop.

use super::broker::Broker;
use super::closing;
use crate::error::ConnectError;
use crate::future::BoxFuture;
use crate::running::ServiceStats;
use crate::shutdown::Shutdown;
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicCancelOptions, BasicNackOptions};
use lapin::{Channel, Consumer};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Handles one delivery, including its ack or nack.
pub(crate) type DeliveryHandler = Arc<dyn Fn(Delivery) -> BoxFuture<()> + Send + Sync>;

/// A worker that handles deliveries of one queue.
pub(crate) trait HandleDelivery: Send + Sync + 'static {
    /// Handles one delivery, including its ack or nack.
    fn handle(&self, delivery: Delivery) -> impl Future<Output = ()> + Send;
}

/// The [`DeliveryHandler`] running `worker` for each delivery.
pub(crate) fn into_handler(worker: impl HandleDelivery) -> DeliveryHandler {
    let worker = Arc::new(worker);
    Arc::new(move |delivery| {
        let worker = worker.clone();
        Box::pin(async move { worker.handle(delivery).await })
    })
}

/// A consumer on one connection: its channel, its consumer and the handler of its deliveries
/// (which may publish through that channel).
pub(crate) struct Attached {
    /// The generation of the connection it lives on.
    pub generation: u64,
    pub channel: Channel,
    pub consumer: Consumer,
    pub consumer_tag: String,
    pub handler: DeliveryHandler,
}

/// Declares a queue's topology on the broker's connection of the moment and starts consuming
/// it: run once at start and again on every new connection.
pub(crate) type Attach = Arc<dyn Fn() -> BoxFuture<Result<Attached, ConnectError>> + Send + Sync>;

/// One queue's consumer and how to run it.
pub(crate) struct ConsumeLoop {
    pub broker: Broker,
    pub attach: Attach,
    /// What the logs call it: the service, or the event queue.
    pub label: String,
    pub max_workers: usize,
    pub grace: Duration,
    /// The service's counters (the loop keeps `busy`).
    pub stats: Arc<ServiceStats>,
}

impl ConsumeLoop {
    /// Runs `attached` until `stop` triggers, re-attaching on each new connection when the
    /// consumer ends with its connection; then stops gracefully: cancel the consumer, requeue
    /// what was delivered but not started, wait up to the grace period for running handlers,
    /// close the channel (the broker requeues anything still unacked).
    pub(crate) async fn run(self, mut attached: Attached, stop: Shutdown) {
        let label = self.label.clone();
        let workers = Arc::new(Semaphore::new(self.max_workers));
        let mut links = self.broker.watch_links();
        loop {
            let next = tokio::select! {
                biased;
                () = stop.triggered() => break,
                changed = links.changed() => {
                    let gone = changed.is_err()
                        || links.borrow_and_update().left_behind(attached.generation);
                    if !gone {
                        continue;
                    }
                    // The connection dropped or was replaced: this consumer is gone with it.
                    None
                }
                next = attached.consumer.next() => next,
            };
            match next {
                Some(Ok(delivery)) => {
                    if delivery.redelivered {
                        // A delivery the broker gave before: its consumer's channel or
                        // connection went away with it unacked (work done twice, maybe).
                        metrics::counter!("warren_amqp_redelivered_total", "queue" => label.clone())
                            .increment(1);
                    }
                    // Prefetch already bounds deliveries to `max_workers`; the semaphore makes
                    // the bound hold for handlers too, and lets the stop wait for them.
                    let Ok(permit) = workers.clone().acquire_owned().await else {
                        break;
                    };
                    let (handle, stats) = (attached.handler.clone(), self.stats.clone());
                    stats.work_started();
                    tokio::spawn(async move {
                        handle(delivery).await;
                        stats.work_finished();
                        drop(permit);
                    });
                }
                interrupted => {
                    if let Some(Err(error)) = interrupted {
                        tracing::warn!(%label, %error, "consumer interrupted");
                    }
                    match self.reattach(attached, &stop).await {
                        Some(again) => attached = again,
                        None => return self.drain(&workers).await,
                    }
                }
            }
        }
        self.stop(attached, &workers).await;
    }

    /// Attaches again once the broker has a new connection; `None` when stopped first.
    async fn reattach(&self, old: Attached, stop: &Shutdown) -> Option<Attached> {
        // Still on a live connection (the broker cancelled the consumer, say): close the
        // channel so what it holds goes back to the queue, and attach on this connection.
        let after = if old.channel.status().connected() {
            let _ = old.channel.close(200, "re-attaching".into()).await;
            old.generation.saturating_sub(1)
        } else {
            old.generation
        };
        drop(old);
        tracing::info!(label = %self.label, "waiting to re-attach the consumer");
        self.broker
            .attach_again(after, stop, &self.label, || (self.attach)())
            .await
    }

    /// Waits up to the grace period for running handlers.
    async fn drain(&self, workers: &Semaphore) {
        let label = &self.label;
        let all = u32::try_from(self.max_workers).unwrap_or(u32::MAX);
        match tokio::time::timeout(self.grace, workers.acquire_many(all)).await {
            Ok(_) => tracing::info!(%label, "stopped; all in-flight work finished"),
            Err(_) => tracing::warn!(
                %label,
                busy = self.max_workers - workers.available_permits(),
                "grace period over; unfinished deliveries go back to the queue"
            ),
        }
    }

    async fn stop(&self, mut attached: Attached, workers: &Semaphore) {
        let label = &self.label;
        let cancel = attached.channel.basic_cancel(
            attached.consumer_tag.as_str().into(),
            BasicCancelOptions::default(),
        );
        closing::step(&format!("{label}: cancelling the consumer"), cancel).await;
        while let Ok(Some(Ok(delivery))) =
            tokio::time::timeout(Duration::from_millis(100), attached.consumer.next()).await
        {
            let requeue = BasicNackOptions {
                requeue: true,
                ..BasicNackOptions::default()
            };
            let nack = delivery.acker.nack(requeue);
            closing::step(&format!("{label}: requeueing an unstarted delivery"), nack).await;
        }
        self.drain(workers).await;
        let close = attached.channel.close(200, "stopping".into());
        closing::step(&format!("{label}: closing the channel"), close).await;
    }
}
