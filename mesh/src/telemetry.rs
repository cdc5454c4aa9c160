//! The service runtime's measurements, taken in one place whatever the transport: each handler
//! runs in its span, a panic is caught, and the outcome is counted and timed (recorded through
//! the process's Prometheus recorder, see `warren_telemetry`).
//!
//! Names: `warren_service_requests_total{service,method,outcome}`,
//! `warren_service_request_duration_seconds{service,method}`, `warren_service_busy_workers{service}`,
//! `warren_service_expired_total{service}`, `warren_service_events_total{service,event,outcome}`,
//! `warren_service_timer_runs_total{service,method,outcome}`,
//! `warren_service_timer_duration_seconds{service,method}`,
//! `warren_service_timer_skipped_total{service,timer}`,
//! `warren_service_timer_lease_held{service,timer}` (1 in the instance running a
//! once-per-service timer), `warren_blocking_queued`, `warren_blocking_running`,
//! `warren_blocking_expired_total`.

use crate::call_context::CallContext;
use crate::error::RpcError;
use crate::handler::Call;
use crate::routes::{ErasedHandler, Routes};
use crate::running::ServiceStats;
use futures_util::FutureExt;
use serde_json::Value;
use std::panic::AssertUnwindSafe;
use std::sync::LazyLock;
use std::sync::atomic::Ordering;
use std::time::Instant;
use tracing::Instrument;
use warren_telemetry::CallMetrics;
use warren_telemetry::trace::TraceParent;

/// The RPC handlers' duration and count, by service, method and outcome.
static SERVICE_CALLS: LazyLock<CallMetrics> = LazyLock::new(|| {
    CallMetrics::new(
        "warren_service_request_duration_seconds",
        "warren_service_requests_total",
        "outcome",
    )
});

/// Runs an RPC handler for `method` with `body` (or answers `error` without running it, for a
/// request that could not be decoded): catches a panic, counts and times it.
pub(crate) async fn run_rpc(
    routes: &Routes,
    stats: &ServiceStats,
    method: &str,
    context: CallContext,
    body: Result<crate::protocol::Arguments, RpcError>,
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
fn call_span(
    routes: &Routes,
    method: &str,
    incoming: CallContext,
) -> (crate::ctx::Ctx, tracing::Span) {
    let parent = warren_telemetry::trace::linking()
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
    if warren_telemetry::trace::linking() {
        span.record("otel.name", format!("{}.{}", ctx.service(), ctx.method()));
        span.record("otel.kind", "server");
        if let Some(own) = warren_telemetry::trace::link_span(&span, parent.as_ref()) {
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
    AssertUnwindSafe(handler(Call::event(ctx, payload), ()))
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

/// The timers' run duration and count, by service, timer and outcome.
static TIMER_RUNS: LazyLock<CallMetrics> = LazyLock::new(|| {
    CallMetrics::new(
        "warren_service_timer_duration_seconds",
        "warren_service_timer_runs_total",
        "outcome",
    )
});

/// Runs a timer's handler once, in a span like an RPC handler's, catching a panic; counts and
/// times it.
pub(crate) async fn run_timer(
    routes: &Routes,
    stats: &ServiceStats,
    handler: &ErasedHandler,
    timer: &str,
    context: CallContext,
) -> Result<Value, RpcError> {
    let started = Instant::now();
    let (ctx, span) = call_span(routes, timer, context);
    let outcome = AssertUnwindSafe(handler(Call::rpc(ctx, Default::default()), ()))
        .catch_unwind()
        .instrument(span)
        .await
        .unwrap_or_else(|_| Err(RpcError::internal("the handler panicked")));
    stats.timer_runs.fetch_add(1, Ordering::Relaxed);
    let result = if outcome.is_ok() { "ok" } else { "error" };
    TIMER_RUNS.record(
        routes.service(),
        timer,
        result,
        started.elapsed().as_secs_f64(),
    );
    outcome
}

/// Counts a timer tick skipped because the last run was still running.
pub(crate) fn timer_skipped(routes: &Routes, stats: &ServiceStats, timer: &str) {
    stats.timer_skipped.fetch_add(1, Ordering::Relaxed);
    metrics::counter!(
        "warren_service_timer_skipped_total",
        "service" => routes.service().to_owned(),
        "timer" => timer.to_owned()
    )
    .increment(1);
}

/// Sets whether this instance holds a once-per-service timer's lease (a standby shows 0).
pub(crate) fn lease_held(routes: &Routes, timer: &str, held: bool) {
    metrics::gauge!(
        "warren_service_timer_lease_held",
        "service" => routes.service().to_owned(),
        "timer" => timer.to_owned()
    )
    .set(if held { 1.0 } else { 0.0 });
}

/// Records that this instance took (`held`) or lost a once-per-service timer's lease.
pub(crate) fn lease_changed(routes: &Routes, timer: &str, held: bool) {
    lease_held(routes, timer, held);
    if held {
        tracing::info!(service = %routes.service(), %timer, "took the timer's lease: running it here");
    } else {
        tracing::info!(service = %routes.service(), %timer, "gave up the timer's lease");
    }
}
