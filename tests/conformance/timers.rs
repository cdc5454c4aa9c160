//! Once-per-service timers: among the instances of a service, one runs the timer, a tick per
//! interval and never two runs at once; when it stops, another takes over.

use crate::common::{Harness, Kind, mesh_config, unique, wait_until};
use mesh::{RpcError, Service, State, Timer};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use warren_gateway::GatewayConfig;

/// The interval of the timers under test.
const EVERY: Duration = Duration::from_millis(100);

/// Every run of the timer, in every instance: which instance, when it started.
#[derive(Clone, Default)]
pub struct Runs {
    started: Arc<Mutex<Vec<(usize, Instant)>>>,
    running: Arc<AtomicUsize>,
    overlapped: Arc<AtomicUsize>,
}

impl Runs {
    pub fn all(&self) -> Vec<(usize, Instant)> {
        self.started.lock().expect("runs").clone()
    }

    pub fn count(&self) -> usize {
        self.started.lock().expect("runs").len()
    }
}

async fn reconcile(State((instance, runs)): State<(usize, Runs)>) -> Result<(), RpcError> {
    if runs.running.fetch_add(1, Ordering::SeqCst) > 0 {
        runs.overlapped.fetch_add(1, Ordering::SeqCst);
    }
    runs.started
        .lock()
        .expect("runs")
        .push((instance, Instant::now()));
    tokio::time::sleep(Duration::from_millis(20)).await;
    runs.running.fetch_sub(1, Ordering::SeqCst);
    Ok(())
}

/// The service of instance `instance`, recording its runs in `runs`.
pub fn reconciler(name: &str, instance: usize, runs: &Runs) -> Service {
    let timer = Timer::every("reconcile", EVERY).eager().once_per_service();
    Service::new(name)
        .timer(timer, reconcile)
        .with_state((instance, runs.clone()))
}

/// The median gap between consecutive runs.
pub fn median_gap(runs: &[(usize, Instant)]) -> Duration {
    let mut gaps: Vec<Duration> = runs.windows(2).map(|w| w[1].1 - w[0].1).collect();
    gaps.sort_unstable();
    gaps.get(gaps.len() / 2).copied().unwrap_or_default()
}

/// Waits until `runs` has `more` runs after the first `after`, at most 10 s.
pub async fn wait_for_runs(runs: &Runs, after: usize, more: usize) -> bool {
    wait_until(Duration::from_secs(10), || async {
        runs.count() >= after + more
    })
    .await
}

pub async fn a_once_per_service_timer_runs_in_one_instance_and_hands_over(kind: Kind) {
    let mut h = Harness::on(kind, GatewayConfig::default()).await;
    let name = unique("reconciler");
    h.cleanup
        .queue(&mesh::amqp::lease_queue(&name, "reconcile"));
    let runs = Runs::default();
    let mut instances = Vec::new();
    for instance in 0..2 {
        let mesh = h.instance(mesh_config()).await;
        let running = h.serve_on(&mesh, reconciler(&name, instance, &runs)).await;
        instances.push(Some(running));
    }
    assert!(
        wait_for_runs(&runs, 0, 10).await,
        "the timer never ran ten times"
    );
    let first = runs.all();
    let holder = first[0].0;
    assert!(
        first.iter().all(|(instance, _)| *instance == holder),
        "both instances ran it: {:?}",
        first.iter().map(|(i, _)| i).collect::<Vec<_>>()
    );
    let gap = median_gap(&first);
    assert!(
        gap >= EVERY * 7 / 10 && gap <= EVERY * 15 / 10,
        "a run every {gap:?}, not every {EVERY:?}"
    );

    // The instance running it stops; the other takes over at its next tick.
    let stopped = instances[holder].take().expect("the holder");
    // The tenth may still run.
    assert!(stopped.stats().timer_runs() >= 9);
    stopped.stop().await;
    let handed_over = runs.count();
    assert!(
        wait_for_runs(&runs, handed_over, 5).await,
        "no instance took over"
    );
    let after: Vec<usize> = runs.all()[handed_over..].iter().map(|(i, _)| *i).collect();
    assert!(after.iter().all(|i| *i != holder), "{after:?}");
    assert_eq!(
        runs.overlapped.load(Ordering::SeqCst),
        0,
        "two runs at once"
    );
    if let Some(survivor) = instances[1 - holder].take() {
        survivor.stop().await;
    }
}
