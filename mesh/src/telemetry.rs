//! Metrics: the process-wide Prometheus recorder, and the service runtime's measurements, taken
//! in one place whatever the transport.
//!
//! Names: `warren_service_requests_total{service,method,outcome}`,
//! `warren_service_request_duration_seconds{service,method}`, `warren_service_busy_workers{service}`,
//! `warren_service_expired_total{service}`, `warren_service_events_total{service,event,outcome}`.

use crate::call_metrics::CallMetrics;
use crate::context::CallContext;
use crate::error::RpcError;
use crate::handler::Call;
use crate::running::ServiceStats;
use crate::service::{ErasedHandler, Routes};
use crate::trace::TraceParent;
use futures_util::FutureExt;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::Value;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, OnceLock};
use std::time::Instant;
use tracing::Instrument;

/// Latency buckets, seconds: 100 µs to 30 s.
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// The process's Prometheus handle: `None` inside when another recorder was installed first.
static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The RPC handlers' duration and count, by service, method and outcome.
static SERVICE_CALLS: LazyLock<CallMetrics> = LazyLock::new(|| {
    CallMetrics::new(
        "warren_service_request_duration_seconds",
        "warren_service_requests_total",
        "outcome",
    )
});

/// How often histogram samples are folded into their buckets when no scrape does it (more
/// often in this crate's unit tests, which wait for it).
const UPKEEP_EVERY: std::time::Duration = if cfg!(test) {
    std::time::Duration::from_millis(50)
} else {
    std::time::Duration::from_secs(5)
};

/// Upkeeps run since start.
static UPKEEPS: AtomicU64 = AtomicU64::new(0);

/// The process's Prometheus handle, installing the recorder on first use. `None` when the
/// application installed another `metrics` recorder first.
///
/// Histogram samples wait in the recorder until a render (a scrape of `/metrics`) or an upkeep
/// folds them into buckets: in a process nobody scrapes they would pile up, a few bytes per
/// request without end (seen in a 5-minute soak: +24% RSS). A thread of its own runs the
/// upkeep every [`UPKEEP_EVERY`], so memory stays flat whether or not anyone scrapes.
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
pub(crate) fn installed() -> Option<&'static PrometheusHandle> {
    HANDLE.get()?.as_ref()
}

/// The Prometheus text of every metric of this process.
pub fn render() -> String {
    prometheus()
        .map(PrometheusHandle::render)
        .unwrap_or_default()
}

/// Runs an RPC handler for `method` with `body` (or answers `error` without running it, for a
/// request that could not be decoded): catches a panic, counts and times it.
pub(crate) async fn run_rpc(
    routes: &Routes,
    stats: &ServiceStats,
    method: &str,
    context: CallContext,
    body: Result<crate::protocol::RequestBody, RpcError>,
) -> Result<Value, RpcError> {
    let started = Instant::now();
    let outcome = match body {
        Err(error) => Err(error),
        Ok(body) => {
            let (ctx, span) = call_span(routes, method, context);
            AssertUnwindSafe(routes.dispatch(Call::rpc(ctx, body)))
                .catch_unwind()
                .instrument(span)
                .await
                .unwrap_or_else(|_| Err(RpcError::internal("the handler panicked")))
        }
    };
    stats.handled.fetch_add(1, Ordering::Relaxed);
    if outcome.is_err() {
        stats.failed.fetch_add(1, Ordering::Relaxed);
    }
    let result = if outcome.is_ok() { "ok" } else { "error" };
    SERVICE_CALLS.record(
        routes.service(),
        method,
        result,
        started.elapsed().as_secs_f64(),
    );
    outcome
}

/// The context of one call of `method` and its span: service, method, the request id (the root
/// of the call id stack), the whole stack, and the trace context. With a span linker installed
/// (spans exported), the span is the caller's child and names the call's `traceparent`.
fn call_span(routes: &Routes, method: &str, incoming: CallContext) -> (crate::Ctx, tracing::Span) {
    let parent = crate::trace::linking()
        .then(|| incoming.traceparent.as_deref().and_then(TraceParent::parse))
        .flatten();
    let mut ctx = routes.ctx(method, incoming);
    let stack = ctx.call_id_stack();
    let span = tracing::info_span!(
        "call",
        otel.name = tracing::field::Empty,
        otel.kind = tracing::field::Empty,
        service = %ctx.service(),
        method = %ctx.method(),
        request_id = %stack.first().map(String::as_str).unwrap_or(""),
        call_id_stack = %stack.join(" > "),
        traceparent = tracing::field::Empty,
    );
    if crate::trace::linking() {
        span.record("otel.name", format!("{}.{}", ctx.service(), ctx.method()));
        span.record("otel.kind", "server");
        if let Some(own) = crate::trace::link_span(&span, parent.as_ref()) {
            ctx.set_traceparent(&own);
        }
    }
    span.record("traceparent", ctx.traceparent().unwrap_or(""));
    (ctx, span)
}

/// Counts a request skipped because its deadline passed while it waited.
pub(crate) fn expired(routes: &Routes, stats: &ServiceStats) {
    stats.expired.fetch_add(1, Ordering::Relaxed);
    metrics::counter!("warren_service_expired_total", "service" => routes.service().to_owned())
        .increment(1);
}

/// What became of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventOutcome {
    Handled,
    Retried,
    DeadLettered,
}

/// Runs an event handler with `payload`, catching a panic.
pub(crate) async fn run_event(
    routes: &Routes,
    handler: &ErasedHandler,
    method: &str,
    context: CallContext,
    payload: Value,
) -> Result<Value, RpcError> {
    let (ctx, span) = call_span(routes, method, context);
    AssertUnwindSafe(handler(Call::event(ctx, payload)))
        .catch_unwind()
        .instrument(span)
        .await
        .unwrap_or_else(|_| Err(RpcError::internal("the handler panicked")))
}

/// Counts what became of an event of `event_type`.
pub(crate) fn event(
    routes: &Routes,
    stats: &ServiceStats,
    event_type: &str,
    outcome: EventOutcome,
) {
    let (counter, name) = match outcome {
        EventOutcome::Handled => (&stats.events_handled, "handled"),
        EventOutcome::Retried => (&stats.events_retried, "retried"),
        EventOutcome::DeadLettered => (&stats.events_dead_lettered, "dead_lettered"),
    };
    counter.fetch_add(1, Ordering::Relaxed);
    metrics::counter!(
        "warren_service_events_total",
        "service" => routes.service().to_owned(),
        "event" => event_type.to_owned(),
        "outcome" => name
    )
    .increment(1);
}

/// Publishes the busy-workers gauge of `service`.
pub(crate) fn busy(service: &str, busy: u64) {
    metrics::gauge!("warren_service_busy_workers", "service" => service.to_owned())
        .set(busy as f64);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

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
