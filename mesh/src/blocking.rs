//! [`BlockingPool`]: where handlers run CPU-bound work (docs/architecture.md §11), off the async
//! runtime, so that a handler computing for seconds holds up neither the other handlers, nor
//! the heartbeats of the broker connection, nor the process's ops port.
//!
//! The pool is a semaphore of `threads` permits in front of tokio's blocking threads: at most
//! `threads` pieces of work run at once, the rest wait their turn in order. The default, one
//! thread fewer than the machine has cores (at least one), leaves the async runtime a core
//! whatever the handlers compute. A piece of work whose call's deadline passes while it waits
//! is never started: the caller has stopped waiting for it.

use crate::deadline::Deadline;
use crate::error::{ErrorKind, RpcError};
use std::sync::{Arc, LazyLock};
use tokio::sync::Semaphore;

/// The `exc_type` of work refused because its call's deadline passed before it started.
pub const DEADLINE_EXCEEDED: &str = "DeadlineExceeded";

/// The pool's default size: the machine's cores less one, at least one.
pub fn default_blocking_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .saturating_sub(1)
        .max(1)
}

/// A bounded pool for CPU-bound work. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct BlockingPool {
    permits: Arc<Semaphore>,
}

/// The pool of a [`crate::Ctx`] made outside a served service (a handler called directly).
static DEFAULT_POOL: LazyLock<BlockingPool> =
    LazyLock::new(|| BlockingPool::new(default_blocking_threads()));

impl BlockingPool {
    /// A pool running at most `threads` pieces of work at once (at least one).
    pub(crate) fn new(threads: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(threads.max(1))),
        }
    }

    /// The pool of handlers that run outside a served service.
    pub(crate) fn fallback() -> &'static Self {
        &DEFAULT_POOL
    }

    /// Runs `work` on a blocking thread once the pool has room, unless `deadline` passes first.
    pub(crate) async fn run<F, R>(&self, deadline: Option<Deadline>, work: F) -> Result<R, RpcError>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let queued = Gauge::enter("warren_blocking_queued");
        let acquire = self.permits.clone().acquire_owned();
        let permit = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline.instant(), acquire)
                .await
                .map_err(|_| expired())?,
            None => acquire.await,
        };
        drop(queued);
        // Closed only if the semaphore were closed, which this pool never does.
        let permit = permit.map_err(|_| RpcError::internal("the blocking pool is closed"))?;
        if deadline.is_some_and(Deadline::expired) {
            return Err(expired());
        }
        let task = tokio::task::spawn_blocking(move || {
            // The permit and the gauge go with the work: a handler that gave up (its future
            // dropped at the end of a grace period) cannot stop a thread, and its work still
            // counts against the pool until it ends.
            let _permit = permit;
            let _running = Gauge::enter("warren_blocking_running");
            work()
        });
        task.await
            .map_err(|_| RpcError::internal("the handler's blocking work panicked"))
    }
}

/// The error of work whose deadline passed before it started, counted.
fn expired() -> RpcError {
    metrics::counter!("warren_blocking_expired_total").increment(1);
    RpcError::new(
        ErrorKind::Unavailable,
        "the call's deadline passed before its work started",
    )
    .with_exc_type(DEADLINE_EXCEEDED)
}

/// One more on a gauge while it lives.
struct Gauge(metrics::Gauge);

impl Gauge {
    fn enter(name: &'static str) -> Self {
        let gauge = metrics::gauge!(name);
        gauge.increment(1.0);
        Self(gauge)
    }
}

impl Drop for Gauge {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn the_default_leaves_the_runtime_a_core() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(default_blocking_threads(), (cores - 1).max(1));
    }

    #[tokio::test]
    async fn at_most_threads_pieces_of_work_run_at_once() {
        let pool = BlockingPool::new(2);
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let works: Vec<_> = (0..6)
            .map(|i| {
                let (pool, running, most) = (pool.clone(), running.clone(), most.clone());
                tokio::spawn(async move {
                    pool.run(None, move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(20));
                        running.fetch_sub(1, Ordering::SeqCst);
                        i
                    })
                    .await
                })
            })
            .collect();
        for (i, work) in works.into_iter().enumerate() {
            assert_eq!(work.await.expect("task"), Ok(i));
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn work_whose_deadline_passes_while_it_waits_never_starts() {
        let pool = BlockingPool::new(1);
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let busy = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.run(None, move || wait.recv().is_ok()).await })
        };
        // The one thread is taken once the busy work holds the permit.
        while pool.permits.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        let started = Arc::new(AtomicUsize::new(0));
        let counted = started.clone();
        let late = pool
            .run(
                Some(Deadline::after(Duration::from_millis(30))),
                move || {
                    counted.fetch_add(1, Ordering::SeqCst);
                },
            )
            .await;
        let error = late.expect_err("refused");
        assert_eq!(error.exc_type(), DEADLINE_EXCEEDED);
        release.send(()).expect("release");
        assert_eq!(busy.await.expect("task"), Ok(true));
        assert_eq!(started.load(Ordering::SeqCst), 0);
        let passed = pool
            .run(Some(Deadline::from_epoch_ms(0)), || ())
            .await
            .expect_err("already passed");
        assert_eq!(passed.exc_type(), DEADLINE_EXCEEDED);
    }

    #[tokio::test]
    async fn a_panic_in_the_work_is_an_internal_error() {
        let pool = BlockingPool::new(1);
        let error = pool
            .run(None, || -> u8 { panic!("boom") })
            .await
            .expect_err("panicked");
        assert_eq!(error.kind(), ErrorKind::Internal);
        // The permit came back.
        assert_eq!(pool.run(None, || 7).await, Ok(7));
    }
}
