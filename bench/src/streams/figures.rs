//! What the streams run reports: the figures of each round and their summary.

use crate::cpu::CpuSplit;
use serde::Serialize;

/// What the streams run measured.
#[derive(Debug, Clone, Serialize)]
pub struct StreamsOutcome {
    /// Idle streams per round.
    pub idle_streams: usize,
    /// Streams fed in the fan-out runs.
    pub clients: usize,
    /// Events dispatched per fan-out run.
    pub events: usize,
    /// Dispatches in flight at once.
    pub in_flight: usize,
    /// The payload's size, bytes of JSON.
    pub payload_bytes: usize,
    /// The idle-streams rounds.
    pub idle: Vec<IdleRound>,
    /// The fan-out runs, baseline then gateway in every round.
    pub fanout: Vec<FanoutRun>,
    /// Medians and spreads over the rounds.
    pub summary: StreamsSummary,
}

/// One round's idle streams.
#[derive(Debug, Clone, Serialize)]
pub struct IdleRound {
    pub round: usize,
    /// Streams that got their `200` headers.
    pub streams: usize,
    /// Streams that could not be opened.
    pub failed: usize,
    /// The first failure, if any.
    pub first_error: Option<String>,
    /// Seconds to open them all (headers received).
    pub open_seconds: f64,
    /// The idle gateway's RSS, settled, MB.
    pub rss_before_mb: f64,
    /// With the streams open, settled, MB.
    pub rss_after_mb: f64,
    /// after - before, MB.
    pub extra_mb: f64,
    /// (after - before) / streams, KiB.
    pub kib_per_stream: f64,
    /// Whether both readings settled before [`SETTLE_LIMIT`].
    pub settled: bool,
    /// Streams that ended while they should have stayed open.
    pub ended: usize,
}

/// One fan-out run: the baseline's raw consumer or the gateway's streams.
#[derive(Debug, Clone, Serialize)]
pub struct FanoutRun {
    pub round: usize,
    /// `baseline` (one raw AMQP consumer) or `gateway` (the streams).
    pub target: &'static str,
    /// Consumers: 1 for the baseline, the streams for the gateway.
    pub clients: usize,
    /// Events dispatched (confirmed).
    pub dispatched: u64,
    /// Dispatches that failed.
    pub dispatch_errors: u64,
    /// The first dispatch failure, if any.
    pub first_dispatch_error: Option<String>,
    /// Seconds from the first dispatch to the last confirm.
    pub dispatch_seconds: f64,
    /// Events dispatched per second.
    pub dispatched_per_s: f64,
    /// Events received over all clients.
    pub delivered: u64,
    /// Seconds from the first dispatch until the last client had all events (`None`: some
    /// never did).
    pub all_delivered_seconds: Option<f64>,
    /// Deliveries per second over all clients: delivered / the time of the last delivery.
    pub deliveries_per_s: f64,
    /// Events per second each client received: deliveries/s / clients.
    pub events_per_s: f64,
    /// Clients the gateway ended early (a `: ended:` comment).
    pub ended: usize,
    /// Clients without all events at the end (ended ones included).
    pub incomplete: usize,
    /// The machine's CPU per dispatched event, µs, by process (the gateway's is its whole
    /// fan-out; the bench process's the dispatch and the consumers).
    pub cpu: Option<CpuSplit>,
    /// The gateway's RSS at the end of the run, MB.
    pub gateway_rss_mb: Option<f64>,
}

/// A median with its lowest and highest.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub(super) fn of(values: impl IntoIterator<Item = f64>) -> Self {
        let mut v: Vec<f64> = values.into_iter().filter(|v| v.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n == 0 {
            return Self::default();
        }
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Self {
            median,
            min: v[0],
            max: v[n - 1],
        }
    }

    pub(super) fn show(&self, digits: usize) -> String {
        format!(
            "**{:.digits$}** ({:.digits$} - {:.digits$})",
            self.median, self.min, self.max
        )
    }
}

/// The figures to quote, over the rounds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StreamsSummary {
    pub rounds: usize,
    pub idle_rss_before_mb: Spread,
    pub idle_rss_after_mb: Spread,
    pub idle_extra_mb: Spread,
    pub idle_kib_per_stream: Spread,
    /// The baseline consumer's events/s.
    pub baseline_events_per_s: Spread,
    /// Events/s dispatched in the baseline runs.
    pub baseline_dispatched_per_s: Spread,
    /// Events/s dispatched in the gateway runs.
    pub gateway_dispatched_per_s: Spread,
    /// Events/s each stream received.
    pub gateway_events_per_s: Spread,
    /// Deliveries/s over all streams.
    pub gateway_deliveries_per_s: Spread,
    /// Per round: the streams' events/s over the baseline's.
    pub gateway_to_baseline: Spread,
    /// The machine's CPU per event in the gateway runs: the bench process (the dispatch and
    /// the streams' readers), the gateway, the broker; and the machine's idle share.
    pub gateway_bench_cpu_us_per_event: Spread,
    pub gateway_cpu_us_per_event: Spread,
    pub gateway_broker_cpu_us_per_event: Spread,
    pub gateway_idle_pct: Spread,
    /// The same in the baseline runs (the bench process: the dispatch and the raw consumer).
    pub baseline_bench_cpu_us_per_event: Spread,
    pub baseline_broker_cpu_us_per_event: Spread,
    pub baseline_idle_pct: Spread,
    /// Over all rounds.
    pub ended: usize,
    pub incomplete: usize,
    pub idle_failed: usize,
}
