//! The consume loop every queue of a service runs, RPC or events: bounded concurrency, recovery
//! after a broker restart, and a graceful stop.

use crate::handler::BoxFuture;
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

/// One consumer and how to run it.
pub(crate) struct ConsumeLoop {
    pub channel: Channel,
    pub consumer: Consumer,
    pub consumer_tag: String,
    /// What the logs call it: the service, or the event queue.
    pub label: String,
    pub max_workers: usize,
    pub grace: Duration,
    /// The service's counters (the loop keeps `busy`).
    pub stats: Arc<ServiceStats>,
}

impl ConsumeLoop {
    /// Runs until `stop` triggers or the consumer ends, then stops gracefully: cancel the
    /// consumer, requeue what was delivered but not started, wait up to the grace period for
    /// running handlers, close the channel (the broker requeues anything still unacked).
    pub(crate) async fn run(mut self, handle: DeliveryHandler, stop: Shutdown) {
        let label = self.label.clone();
        let workers = Arc::new(Semaphore::new(self.max_workers));
        loop {
            let next = tokio::select! {
                biased;
                () = stop.triggered() => break,
                next = self.consumer.next() => next,
            };
            match next {
                None => break,
                Some(Ok(delivery)) => {
                    // Prefetch already bounds deliveries to `max_workers`; the semaphore makes
                    // the bound hold for handlers too, and lets the stop wait for them.
                    let Ok(permit) = workers.clone().acquire_owned().await else {
                        break;
                    };
                    let (handle, stats) = (handle.clone(), self.stats.clone());
                    stats.work_started();
                    tokio::spawn(async move {
                        handle(delivery).await;
                        stats.work_finished();
                        drop(permit);
                    });
                }
                Some(Err(error)) => {
                    tracing::warn!(%label, %error, "consumer interrupted; waiting for recovery");
                    if let Err(error) = self.channel.wait_for_recovery(error).await {
                        tracing::error!(%label, %error, "consumer cannot recover");
                        break;
                    }
                    tracing::info!(%label, "consumer recovered");
                }
            }
        }
        self.stop(&workers).await;
    }

    async fn stop(mut self, workers: &Semaphore) {
        let label = &self.label;
        if let Err(error) = self
            .channel
            .basic_cancel(
                self.consumer_tag.as_str().into(),
                BasicCancelOptions::default(),
            )
            .await
        {
            tracing::debug!(%label, %error, "cancelling the consumer");
        }
        while let Ok(Some(Ok(delivery))) =
            tokio::time::timeout(Duration::from_millis(100), self.consumer.next()).await
        {
            let requeue = BasicNackOptions {
                requeue: true,
                ..BasicNackOptions::default()
            };
            if let Err(error) = delivery.acker.nack(requeue).await {
                tracing::debug!(%label, %error, "requeueing an unstarted delivery");
            }
        }
        let all = u32::try_from(self.max_workers).unwrap_or(u32::MAX);
        match tokio::time::timeout(self.grace, workers.acquire_many(all)).await {
            Ok(_) => tracing::info!(%label, "stopped; all in-flight work finished"),
            Err(_) => tracing::warn!(
                %label,
                busy = self.max_workers - workers.available_permits(),
                "grace period over; unfinished deliveries go back to the queue"
            ),
        }
        if let Err(error) = self.channel.close(200, "stopping".into()).await {
            tracing::debug!(%label, %error, "closing the channel");
        }
    }
}
