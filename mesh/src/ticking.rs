//! Running a service's timers: a task per timer ticking on its schedule (see [`crate::Timer`]),
//! each run on a task of its own so that ticks go on; a tick that comes while the last run still
//! runs is skipped and counted. A stopping service stops ticking and waits for a run in progress
//! within its grace period.
//!
//! A once-per-service timer also ticks in every instance, but runs only where its lease is held
//! (docs/architecture.md §10): each tick that would run first holds the lease (keeps it, or
//! takes it when free), and a stopping instance gives it up once its last run has ended, so
//! that no two runs overlap across instances as long as the broker sees one holder.

use crate::call_context::CallContext;
use crate::lease::{Lease, Leases, lease_queue};
use crate::routes::{ErasedHandler, Routes};
use crate::running::ServiceStats;
use crate::shutdown::Shutdown;
use crate::timer::Timer;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

/// How long taking or keeping a lease may wait for the broker before the tick is skipped.
const LEASE_LIMIT: Duration = Duration::from_secs(5);

/// Starts every timer of `routes` (which carry their outbound), a once-per-service one with a
/// lease from `leases`; each ends once `stop` fires and its run in progress has finished (or
/// `grace` has passed).
pub(crate) fn spawn_all(
    routes: &Routes,
    stats: &Arc<ServiceStats>,
    stop: &Shutdown,
    grace: Duration,
    leases: Leases<'_>,
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
                lease: timer
                    .is_once_per_service()
                    .then(|| leases(lease_queue(routes.service(), timer.name()))),
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
    /// The lease a once-per-service timer runs under.
    lease: Option<Box<dyn Lease>>,
}

impl Ticking {
    async fn run(self, stop: Shutdown, grace: Duration) {
        let interval = self.timer.interval();
        let first = if self.timer.is_eager() {
            Instant::now()
        } else {
            Instant::now() + interval
        };
        let mut ticks = tokio::time::interval_at(first, interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let this = Arc::new(self);
        let mut running: Option<JoinHandle<()>> = None;
        let mut holding = false;
        if this.lease.is_some() {
            crate::telemetry::lease_held(&this.routes, this.timer.name(), false);
        }
        loop {
            tokio::select! {
                biased;
                () = stop.triggered() => break,
                _ = ticks.tick() => {}
            }
            if running.as_ref().is_some_and(|run| !run.is_finished()) {
                crate::telemetry::timer_skipped(&this.routes, &this.stats, this.timer.name());
                continue;
            }
            if let Some(lease) = &this.lease {
                let held = tokio::select! {
                    biased;
                    () = stop.triggered() => break,
                    held = tokio::time::timeout(LEASE_LIMIT, lease.hold()) => held.unwrap_or(false),
                };
                if held != holding {
                    holding = held;
                    crate::telemetry::lease_changed(&this.routes, this.timer.name(), held);
                }
                if !held {
                    continue;
                }
            }
            let tick = this.clone();
            running = Some(tokio::spawn(async move { tick.once().await }));
        }
        if let Some(mut run) = running
            && tokio::time::timeout(grace, &mut run).await.is_err()
        {
            tracing::warn!(
                service = %this.routes.service(),
                timer = %this.timer.name(),
                "grace period over; the timer's run is cancelled"
            );
            run.abort();
        }
        if let Some(lease) = &this.lease {
            lease.release().await;
            if holding {
                crate::telemetry::lease_changed(&this.routes, this.timer.name(), false);
            }
        }
    }

    async fn once(&self) {
        self.stats.work_started();
        let outcome = crate::telemetry::run_timer(
            &self.routes,
            &self.stats,
            &self.handler,
            self.timer.name(),
            CallContext::default(),
        )
        .await;
        self.stats.work_finished();
        if let Err(error) = outcome {
            tracing::warn!(
                service = %self.routes.service(),
                timer = %self.timer.name(),
                %error,
                "timer run failed"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::MeshConfig;
    use crate::error::RpcError;
    use crate::handle::Mesh;
    use crate::handler::State;
    use crate::service::Service;
    use crate::timer::Timer;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;
    use tokio::time::Instant;

    /// Runs counted, and the instants they started at.
    #[derive(Clone, Default)]
    struct Runs {
        count: Arc<AtomicU64>,
        running: Arc<AtomicU64>,
        overlapped: Arc<AtomicU64>,
        started: Arc<std::sync::Mutex<Vec<Instant>>>,
    }

    /// Takes `work` (virtual time) per run.
    async fn run(State((runs, work)): State<(Runs, Duration)>) -> Result<(), RpcError> {
        if runs.running.fetch_add(1, Ordering::SeqCst) > 0 {
            runs.overlapped.fetch_add(1, Ordering::SeqCst);
        }
        runs.started.lock().expect("started").push(Instant::now());
        tokio::time::sleep(work).await;
        runs.count.fetch_add(1, Ordering::SeqCst);
        runs.running.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }

    async fn serve(timer: Timer, work: Duration) -> (Runs, crate::RunningService) {
        let runs = Runs::default();
        let mesh = Mesh::in_process(MeshConfig::default());
        let service = Service::new("ticker")
            .timer(timer, run)
            .with_state((runs.clone(), work));
        let running = mesh.serve(service).await.expect("serve");
        (runs, running)
    }

    #[tokio::test(start_paused = true)]
    async fn a_tick_per_interval_the_first_one_interval_in() {
        let start = Instant::now();
        let every = Duration::from_millis(100);
        let (runs, running) = serve(Timer::every("tick", every), Duration::ZERO).await;
        tokio::time::sleep(Duration::from_millis(1_050)).await;
        assert_eq!(runs.count.load(Ordering::SeqCst), 10);
        let started = runs.started.lock().expect("started").clone();
        for (n, at) in started.iter().enumerate() {
            let expected = every * (u32::try_from(n).unwrap_or(0) + 1);
            let late = at.duration_since(start).saturating_sub(expected);
            assert!(late < Duration::from_millis(5), "tick {n} {late:?} late");
        }
        assert_eq!(running.stats().timer_skipped(), 0);
        running.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn an_eager_timer_ticks_at_once() {
        let (runs, running) = serve(
            Timer::every("tick", Duration::from_secs(60)).eager(),
            Duration::ZERO,
        )
        .await;
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(runs.count.load(Ordering::SeqCst), 1);
        running.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn ticks_during_a_run_are_skipped_and_counted_never_overlapped() {
        // Runs take 250 ms, ticks come every 100 ms: of the ticks at 100..=1000 ms, those at
        // 200 and 300 come during the first run, 500 and 600 during the second...
        let (runs, running) = serve(
            Timer::every("tick", Duration::from_millis(100)),
            Duration::from_millis(250),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(1_020)).await;
        assert_eq!(runs.overlapped.load(Ordering::SeqCst), 0);
        let stats = running.stats();
        assert_eq!(
            runs.count.load(Ordering::SeqCst),
            3,
            "runs at 100, 400, 700"
        );
        assert_eq!(stats.timer_skipped(), 6);
        running.stop().await;
        // The run that started at 1000 ms was waited for.
        assert_eq!(runs.count.load(Ordering::SeqCst), 4);
    }
}
