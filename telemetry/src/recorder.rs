//! The process-wide Prometheus recorder.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Latency buckets, seconds: 100 µs to 30 s.
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// The process's Prometheus handle: `None` inside when another recorder was installed first.
static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// How often histogram samples are folded into their buckets when no scrape does it (more
/// often in this crate's unit tests, which wait for it).
const UPKEEP_EVERY: Duration = if cfg!(test) {
    Duration::from_millis(50)
} else {
    Duration::from_secs(5)
};

/// Upkeeps run since start.
static UPKEEPS: AtomicU64 = AtomicU64::new(0);

/// The process's Prometheus handle, installing the recorder on first use. `None` when the
/// application installed another `metrics` recorder first.
///
/// Histogram samples wait in the recorder until a render (a scrape of `/metrics`) or an upkeep
/// folds them into buckets: in a process nobody scrapes they would pile up, a few bytes per
/// request without end (a 5-minute soak grew 24% in RSS that way). A thread of its own runs the
/// upkeep every few seconds, so memory stays flat whether or not anyone scrapes.
pub fn prometheus() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets(BUCKETS)
                .ok()?
                .install_recorder()
                .ok()?;
            let upkeep = handle.clone();
            let started = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP_EVERY);
                        upkeep.run_upkeep();
                        UPKEEPS.fetch_add(1, Ordering::Relaxed);
                    }
                });
            if let Err(error) = started {
                tracing::warn!(%error, "no metrics upkeep thread: histograms fold only on scrape");
            }
            Some(handle)
        })
        .as_ref()
}

/// The process's Prometheus handle once [`prometheus`] installed it (never installs it).
pub fn installed() -> Option<&'static PrometheusHandle> {
    HANDLE.get()?.as_ref()
}

/// The Prometheus text of every metric of this process.
pub fn render() -> String {
    prometheus()
        .map(PrometheusHandle::render)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// Histogram samples pile up until an upkeep or a scrape folds them: with nobody scraping,
    /// the process's own upkeep thread must run.
    #[test]
    fn the_upkeep_runs_without_a_scrape() {
        assert!(prometheus().is_some(), "another recorder was installed");
        let before = UPKEEPS.load(Ordering::Relaxed);
        let deadline = Instant::now() + UPKEEP_EVERY * 40;
        while UPKEEPS.load(Ordering::Relaxed) < before + 2 {
            assert!(
                Instant::now() < deadline,
                "no upkeep within {:?}",
                UPKEEP_EVERY * 40
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
