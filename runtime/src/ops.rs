//! The ops listener of a process that serves no gateway (`--ops-listen`): `/healthz`,
//! `/readyz` and `/metrics`, so service processes are probed and scraped like the gateway.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use mesh::Mesh;

/// The ops routes of a process on `mesh`.
pub(crate) fn router(mesh: Mesh) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(mesh)
}

/// 200 while the transport can carry calls.
async fn readyz(State(mesh): State<Mesh>) -> impl IntoResponse {
    if mesh.is_ready() {
        (StatusCode::OK, "ready")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not connected to the broker",
        )
    }
}

/// Every metric of the process, as Prometheus text.
async fn metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        warren_telemetry::render(),
    )
}
