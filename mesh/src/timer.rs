//! Timers: a handler run on a schedule in every instance of a service (nameko's `@timer`), on
//! either transport.
//!
//! The schedule is fixed-rate: ticks come every interval from the start, whatever a run takes.
//! A tick that comes while the last run still runs is skipped and counted, never queued, so a
//! slow run cannot pile up work. With [`Timer::eager`] the first tick comes at once, as the
//! service starts (after its consumers are attached), instead of one interval later. A stopping
//! service stops ticking and waits for a run in progress within its grace period.

use crate::call_context::CallContext;
use crate::routes::{ErasedHandler, Routes};
use crate::running::ServiceStats;
use crate::shutdown::Shutdown;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

/// When a timer's handler runs.
///
/// ```
/// use mesh::Timer;
/// use std::time::Duration;
/// let every_minute = Timer::every("reconcile", Duration::from_secs(60)).eager();
/// assert_eq!(every_minute.name(), "reconcile");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    name: String,
    interval: Duration,
    eager: bool,
}

impl Timer {
    /// A timer named `name` (its handler's method name in spans, metrics and logs) ticking every
    /// `interval` (at least a millisecond), the first tick one interval after the start.
    pub fn every(name: impl Into<String>, interval: Duration) -> Self {
        Self {
            name: name.into(),
            interval: interval.max(Duration::from_millis(1)),
            eager: false,
        }
    }

    /// The first tick comes as the service starts.
    pub fn eager(mut self) -> Self {
        self.eager = true;
        self
    }

    /// The timer's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The interval between ticks.
    pub fn interval(&self) -> Duration {
        self.interval
    }
}

/// Starts every timer of `routes` (which carry their outbound); each ends once `stop` fires and
/// its run in progress has finished (or `grace` has passed).
pub(crate) fn spawn_all(
    routes: &Routes,
    stats: &Arc<ServiceStats>,
    stop: &Shutdown,
    grace: Duration,
) -> Vec<JoinHandle<()>> {
    routes
        .timers()
        .iter()
        .map(|(timer, handler)| {
            let ticking = Ticking {
                routes: routes.clone(),
                timer: timer.clone(),
                handler: handler.clone(),
                stats: stats.clone(),
            };
            tokio::spawn(ticking.run(stop.clone(), grace))
        })
        .collect()
}

struct Ticking {
    routes: Routes,
    timer: Timer,
    handler: ErasedHandler,
    stats: Arc<ServiceStats>,
}

impl Ticking {
    async fn run(self, stop: Shutdown, grace: Duration) {
        let first = if self.timer.eager {
            Instant::now()
        } else {
            Instant::now() + self.timer.interval
        };
        let mut ticks = tokio::time::interval_at(first, self.timer.interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let this = Arc::new(self);
        let mut running: Option<JoinHandle<()>> = None;
        loop {
            tokio::select! {
                biased;
                () = stop.triggered() => break,
                _ = ticks.tick() => {}
            }
            if running.as_ref().is_some_and(|run| !run.is_finished()) {
                crate::telemetry::timer_skipped(&this.routes, &this.stats, &this.timer.name);
                continue;
            }
            let tick = this.clone();
            running = Some(tokio::spawn(async move { tick.once().await }));
        }
        if let Some(mut run) = running
            && tokio::time::timeout(grace, &mut run).await.is_err()
        {
            tracing::warn!(
                service = %this.routes.service(),
                timer = %this.timer.name,
                "grace period over; the timer's run is cancelled"
            );
            run.abort();
        }
    }

    async fn once(&self) {
        self.stats.work_started();
        let outcome = crate::telemetry::run_timer(
            &self.routes,
            &self.stats,
            &self.handler,
            &self.timer.name,
            CallContext::default(),
        )
        .await;
        self.stats.work_finished();
        if let Err(error) = outcome {
            tracing::warn!(
                service = %self.routes.service(),
                timer = %self.timer.name,
                %error,
                "timer run failed"
            );
        }
    }
}
