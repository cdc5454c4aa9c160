//! The gateway's metrics and `GET /metrics` (Prometheus text).
//!
//! Per call: `warren_gateway_requests_total{service,method,status}` and
//! `warren_gateway_request_duration_seconds{service,method}`; `warren_gateway_in_flight`. At
//! each scrape, from the client's and the registry's counters: `warren_gateway_pending_calls`,
//! `warren_gateway_calls_total`, `warren_gateway_timeouts_total`,
//! `warren_gateway_unmatched_replies_total` (late, duplicate or foreign replies),
//! `warren_gateway_broker_lost_total`, `warren_gateway_live_instances{service}`; and from the mesh,
//! `warren_broker_reconnects_total` (connections replaced after a loss). The service
//! runtime's own metrics (same process in `warren dev`) come along.
//!
//! Labels carry only names proven real (the method answered, or a descriptor lists it); every
//! other call is counted under `_unknown`, so clients cannot grow the label set.

use crate::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use std::time::Instant;

/// Counts one call from start to answer, in flight until dropped.
pub(crate) struct CallTimer {
    started: Instant,
}

impl CallTimer {
    pub(crate) fn start() -> Self {
        metrics::gauge!("warren_gateway_in_flight").increment(1.0);
        Self {
            started: Instant::now(),
        }
    }

    /// Records the answer: `service`/`method` as labels (already reduced to safe values).
    pub(crate) fn finish(&self, service: &str, method: &str, status: u16) {
        let labels = [
            ("service", service.to_owned()),
            ("method", method.to_owned()),
        ];
        metrics::histogram!("warren_gateway_request_duration_seconds", &labels)
            .record(self.started.elapsed().as_secs_f64());
        metrics::counter!(
            "warren_gateway_requests_total",
            "service" => service.to_owned(),
            "method" => method.to_owned(),
            "status" => status.to_string()
        )
        .increment(1);
    }
}

impl Drop for CallTimer {
    fn drop(&mut self) {
        metrics::gauge!("warren_gateway_in_flight").decrement(1.0);
    }
}

/// `GET /metrics`.
pub(crate) async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    let stats = app.client.stats();
    metrics::gauge!("warren_gateway_pending_calls").set(stats.pending as f64);
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
        mesh::telemetry::render(),
    )
}
