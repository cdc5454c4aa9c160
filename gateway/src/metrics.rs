//! The gateway's metrics and `GET /metrics` (Prometheus text).
//!
//! Per call: `warren_gateway_requests_total{service,method,status}` and
//! `warren_gateway_request_duration_seconds{service,method}` (handles kept, see
//! [`warren_telemetry::CallMetrics`]). At each scrape, from the admission semaphore, the client's and the
//! registry's counters: `warren_gateway_in_flight` (calls admitted and not yet answered),
//! `warren_gateway_pending_calls`, `warren_gateway_event_streams` (open `GET /events/...`),
//! `warren_gateway_calls_total`, `warren_gateway_timeouts_total`,
//! `warren_gateway_unmatched_replies_total` (late, duplicate or foreign replies),
//! `warren_gateway_broker_lost_total`, `warren_gateway_live_instances{service}`,
//! `warren_gateway_rate_limit_clients{policy}` (clients a rate limit tracks one by one; refusals
//! are `warren_gateway_rate_limited_total{policy}`, counted as they happen); and from the mesh,
//! `warren_broker_reconnects_total` (connections replaced after a loss). The service
//! runtime's own metrics (same process in `warren dev`) come along.
//!
//! Labels carry only names proven real (the method answered, or a descriptor lists it); every
//! other call is counted under `_unknown`, so clients cannot grow the label set.

use crate::AppState;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use std::sync::LazyLock;
use std::time::Instant;
use warren_telemetry::CallMetrics;

/// The calls' duration and count, by service, method and HTTP status.
static CALLS: LazyLock<CallMetrics> = LazyLock::new(|| {
    CallMetrics::new(
        "warren_gateway_request_duration_seconds",
        "warren_gateway_requests_total",
        "status",
    )
});

/// Times one call from start to answer.
pub(crate) struct CallTimer {
    started: Instant,
}

impl CallTimer {
    pub(crate) fn start() -> Self {
        Self {
            started: Instant::now(),
        }
    }

    /// Records the answer: `service`/`method` as labels (already reduced to safe values).
    pub(crate) fn finish(&self, service: &str, method: &str, status: u16) {
        let code = StatusCode::from_u16(status);
        let status = code.as_ref().map_or("_other", StatusCode::as_str);
        CALLS.record(
            service,
            method,
            status,
            self.started.elapsed().as_secs_f64(),
        );
    }
}

/// `GET /metrics`.
pub(crate) async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    let stats = app.client.stats();
    let admitted = app.config.max_in_flight - app.in_flight.available_permits();
    metrics::gauge!("warren_gateway_in_flight").set(admitted as f64);
    metrics::gauge!("warren_gateway_pending_calls").set(stats.pending as f64);
    metrics::gauge!("warren_gateway_event_streams").set(app.events.open() as f64);
    for (policy, clients) in app.rate_limiter.tracked_clients() {
        metrics::gauge!("warren_gateway_rate_limit_clients", "policy" => policy.to_owned())
            .set(clients as f64);
    }
    metrics::counter!("warren_gateway_calls_total").absolute(stats.calls);
    metrics::counter!("warren_gateway_timeouts_total").absolute(stats.timeouts);
    metrics::counter!("warren_gateway_unmatched_replies_total").absolute(stats.unmatched_replies);
    metrics::counter!("warren_gateway_broker_lost_total").absolute(stats.broker_lost);
    for service in app.registry.overview() {
        metrics::gauge!("warren_gateway_live_instances", "service" => service.name)
            .set(service.instances.len() as f64);
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        warren_telemetry::render(),
    )
}
