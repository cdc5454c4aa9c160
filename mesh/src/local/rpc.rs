//! Serving RPC requests in process: the same steps as over AMQP (skip a request whose deadline
//! passed while it waited, run the handler, reply), minus the wire.

use super::Request;
use super::consume::HandleMessage;
use crate::error::RpcError;
use crate::handler::Call;
use crate::running::ServiceStats;
use crate::service::Routes;
use futures_util::FutureExt;
use std::panic::AssertUnwindSafe;
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
            self.stats.expired.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let ctx = self.routes.ctx(&request.method, request.context);
        let outcome = AssertUnwindSafe(self.routes.dispatch(Call::rpc(ctx, request.body)))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| Err(RpcError::internal("the handler panicked")));
        if outcome.is_err() {
            self.stats.failed.fetch_add(1, Ordering::Relaxed);
        }
        self.stats.handled.fetch_add(1, Ordering::Relaxed);
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
