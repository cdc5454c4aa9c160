//! The ops port of `warren run`: `/healthz`, `/readyz` and `/metrics` for probes and scrapes,
//! on an address of its own (`--ops-listen`), so services can be probed like the gateway.

use crate::bundled::Started;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use mesh::Mesh;
use std::sync::Arc;

#[derive(Clone)]
struct Ops {
    mesh: Mesh,
    services: Arc<Vec<Started>>,
}

/// The ops routes for `services` on `mesh`.
pub fn router(mesh: Mesh, services: Arc<Vec<Started>>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(Ops { mesh, services })
}

async fn readyz(State(ops): State<Ops>) -> impl IntoResponse {
    if ops.mesh.is_ready() {
        (StatusCode::OK, "ready")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not connected to the broker",
        )
    }
}

async fn metrics(State(ops): State<Ops>) -> impl IntoResponse {
    for service in ops.services.iter() {
        service.running().publish_gauges();
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        mesh::telemetry::render(),
    )
}
