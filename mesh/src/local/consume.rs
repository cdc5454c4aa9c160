//! The consume loop of an in-process queue: take a message only when a worker is free, run it on
//! its own task, and stop gracefully (what was not taken stays in the queue).

use crate::running::ServiceStats;
use crate::shutdown::Shutdown;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Handles one message of type `T`.
pub(crate) trait HandleMessage<T>: Send + Sync + 'static {
    /// Handles it, reply or retry included.
    fn handle(&self, message: T) -> impl Future<Output = ()> + Send;
}

/// Concurrency and stop limits of a consumer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_workers: usize,
    pub grace: Duration,
}

/// Consumes `queue` with `worker` until `stop`, then waits up to the grace period for running
/// handlers.
pub(crate) async fn run<T: Send + 'static, W: HandleMessage<T>>(
    queue: flume::Receiver<T>,
    worker: W,
    limits: Limits,
    stats: Arc<ServiceStats>,
    stop: Shutdown,
) {
    let worker = Arc::new(worker);
    let workers = Arc::new(Semaphore::new(limits.max_workers));
    loop {
        // A free worker first, then a message: like prefetch, an instance never holds more
        // messages than it can run, so the rest stay available to other instances.
        let permit = tokio::select! {
            biased;
            () = stop.triggered() => break,
            permit = workers.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let message = tokio::select! {
            biased;
            () = stop.triggered() => break,
            message = queue.recv_async() => match message {
                Ok(message) => message,
                Err(_) => break,
            },
        };
        let (worker, stats) = (worker.clone(), stats.clone());
        stats.work_started();
        tokio::spawn(async move {
            worker.handle(message).await;
            stats.work_finished();
            drop(permit);
        });
    }
    let all = u32::try_from(limits.max_workers).unwrap_or(u32::MAX);
    if tokio::time::timeout(limits.grace, workers.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("grace period over; unfinished handlers keep running detached");
    }
}
