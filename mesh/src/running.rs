//! [`RunningService`] and its [`ServiceStats`]: a served service, whatever the transport.

use crate::shutdown::Shutdown;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::task::JoinHandle;

/// Counters of a running service since it started.
#[derive(Debug)]
pub struct ServiceStats {
    pub(crate) handled: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) expired: AtomicU64,
    busy: AtomicU64,
    /// `warren_service_busy_workers{service}`, kept as the work starts and ends (a scrape
    /// reads it as it is, whoever serves `/metrics`).
    busy_gauge: metrics::Gauge,
    pub(crate) events_handled: AtomicU64,
    pub(crate) events_retried: AtomicU64,
    pub(crate) events_dead_lettered: AtomicU64,
    pub(crate) timer_runs: AtomicU64,
    pub(crate) timer_skipped: AtomicU64,
}

impl ServiceStats {
    /// The counters of a service called `service`, all zero.
    pub(crate) fn new(service: &str) -> Self {
        Self {
            handled: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            busy: AtomicU64::new(0),
            busy_gauge: metrics::gauge!("warren_service_busy_workers", "service" => service.to_owned()),
            events_handled: AtomicU64::new(0),
            events_retried: AtomicU64::new(0),
            events_dead_lettered: AtomicU64::new(0),
            timer_runs: AtomicU64::new(0),
            timer_skipped: AtomicU64::new(0),
        }
    }

    /// RPC requests answered (successfully or with an error).
    pub fn handled(&self) -> u64 {
        self.handled.load(Ordering::Relaxed)
    }

    /// RPC requests answered with an error.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// RPC requests skipped because their deadline had passed before they started.
    pub fn expired(&self) -> u64 {
        self.expired.load(Ordering::Relaxed)
    }

    /// Handlers (RPC, events and timers) running now.
    pub fn busy(&self) -> u64 {
        self.busy.load(Ordering::Relaxed)
    }

    /// Events handled successfully.
    pub fn events_handled(&self) -> u64 {
        self.events_handled.load(Ordering::Relaxed)
    }

    /// Events whose handler failed once and that went back to the queue for a retry.
    pub fn events_retried(&self) -> u64 {
        self.events_retried.load(Ordering::Relaxed)
    }

    /// Events moved to a dead-letter queue after failing twice.
    pub fn events_dead_lettered(&self) -> u64 {
        self.events_dead_lettered.load(Ordering::Relaxed)
    }

    /// Timer runs finished (successfully or not).
    pub fn timer_runs(&self) -> u64 {
        self.timer_runs.load(Ordering::Relaxed)
    }

    /// Timer ticks skipped because the timer's last run was still running.
    pub fn timer_skipped(&self) -> u64 {
        self.timer_skipped.load(Ordering::Relaxed)
    }

    pub(crate) fn work_started(&self) {
        self.busy.fetch_add(1, Ordering::Relaxed);
        self.busy_gauge.increment(1.0);
    }

    pub(crate) fn work_finished(&self) {
        self.busy.fetch_sub(1, Ordering::Relaxed);
        self.busy_gauge.decrement(1.0);
    }
}

/// A service being served. [`RunningService::stop`] shuts it down gracefully; dropping it leaves
/// it running until the process ends.
pub struct RunningService {
    name: String,
    stop: Shutdown,
    stats: Arc<ServiceStats>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningService {
    pub(crate) fn new(
        name: String,
        stop: Shutdown,
        stats: Arc<ServiceStats>,
        tasks: Vec<JoinHandle<()>>,
    ) -> Self {
        Self {
            name,
            stop,
            stats,
            tasks,
        }
    }

    /// The service's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its counters.
    pub fn stats(&self) -> &ServiceStats {
        &self.stats
    }

    /// Stops consuming, requeues what has not started, waits up to the grace period for
    /// in-flight handlers, then closes its channels (the broker requeues anything still unacked).
    pub async fn stop(self) {
        self.stop.trigger();
        for task in self.tasks {
            if let Err(e) = task.await {
                tracing::error!(service = %self.name, error = %e, "service task failed");
            }
        }
    }
}
