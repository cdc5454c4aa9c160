//! Serving RPC requests in process: the same steps as over AMQP (skip a request whose deadline
//! passed while it waited, run the handler, reply), minus the wire.

use super::Request;
use super::consume::HandleMessage;
use crate::routes::Routes;
use crate::running::ServiceStats;
use crate::telemetry;
use std::sync::Arc;
use std::sync::atomic::Ordering;

pub(crate) struct RpcWorker {
    routes: Routes,
    stats: Arc<ServiceStats>,
}

impl RpcWorker {
    pub(crate) fn new(routes: Routes, stats: Arc<ServiceStats>) -> Self {
        Self { routes, stats }
    }
}

impl HandleMessage<Request> for RpcWorker {
    async fn handle(&self, request: Request) {
        if request.context.deadline.is_some_and(|d| d.expired()) {
            telemetry::expired(&self.routes, &self.stats);
            return;
        }
        let outcome = telemetry::run_rpc(
            &self.routes,
            &self.stats,
            &request.method,
            request.context,
            Ok(request.body),
        )
        .await;
        if request
            .reply
            .send(outcome.map_err(|e| e.to_wire()))
            .is_err()
        {
            // The caller gave up (deadline, or dropped): a late reply, counted as on AMQP.
            request.caller.unmatched.fetch_add(1, Ordering::Relaxed);
        }
    }
}
