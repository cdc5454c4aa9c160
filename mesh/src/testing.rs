//! Test helpers for service authors (feature `testing`), in the spirit of nameko's
//! `worker_factory`, `entrypoint_hook` and `entrypoint_waiter`:
//!
//! - [`call_handler`] calls one handler directly with JSON arguments and the state you inject;
//! - [`TestMesh`] runs whole services in process: call them, send them events and wait until
//!   their handlers are done, read their dead letters;
//! - a dependency is replaced by a test double either as state (inject the double where the
//!   service takes `State<S>`) or, for a service it calls, by serving a fake service under that
//!   name on the [`TestMesh`].
//!
//! ```
//! use mesh::testing::{TestMesh, call_handler};
//! use mesh::{Args, Ctx, RpcError, Service};
//! use serde_json::{Value, json};
//!
//! #[derive(serde::Deserialize, utoipa::ToSchema)]
//! struct Number {
//!     n: i64,
//! }
//!
//! async fn double(Args(x): Args<Number>) -> Result<i64, RpcError> {
//!     Ok(x.n * 2)
//! }
//!
//! // The service under test calls `kv.inc`...
//! async fn visit(ctx: Ctx) -> Result<Value, RpcError> {
//!     Ok(ctx.rpc("kv").call("inc", json!({"key": "visits"})).await?)
//! }
//!
//! // ...which the test replaces with a double (taking the same arguments, whatever they are).
//! async fn fake_inc(Args(_): Args<Value>) -> Result<i64, RpcError> {
//!     Ok(42)
//! }
//!
//! # tokio_test_block_on(async {
//! assert_eq!(call_handler(double, (), json!([21])).await, Ok(json!(42)));
//!
//! let mut mesh = TestMesh::new();
//! mesh.serve(Service::new("site").rpc("visit", visit)).await;
//! mesh.serve(Service::new("kv").rpc("inc", fake_inc)).await;
//! assert_eq!(mesh.call("site", "visit", json!({})).await, Ok(json!(42)));
//! mesh.stop().await;
//! # });
//! # fn tokio_test_block_on(f: impl std::future::Future<Output = ()>) {
//! #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
//! # }
//! ```

use crate::call_context::CallContext;
use crate::client::Client;
use crate::config::MeshConfig;
use crate::ctx::Ctx;
use crate::error::{CallError, RpcError};
use crate::handler::{Call, Handler};
use crate::local::InProcess;
use crate::protocol::Arguments;
use crate::running::{RunningService, ServiceStats};
use crate::service::Service;
use crate::transport::Transport;

pub use crate::local::DeadLetter;
use serde_json::Value;

use std::time::Duration;
use tokio::time::Instant;

/// How long [`TestMesh::dispatch_and_wait`] waits for handlers before giving up.
pub const WAIT_LIMIT: Duration = Duration::from_secs(5);

/// Calls `handler` once with `args` (a JSON object for keyword arguments, an array for
/// positional ones, `null` for none) and `state`, as its service would, without a transport:
/// calls it makes through `ctx.rpc` fail with `Unavailable` (use a [`TestMesh`] for those).
pub async fn call_handler<H, T, S>(handler: H, state: S, args: Value) -> Result<Value, RpcError>
where
    H: Handler<T, S>,
    S: Clone + Send + Sync + 'static,
{
    let ctx = Ctx::new("test", "handler", CallContext::default());
    call_handler_with(handler, state, args, ctx).await
}

/// [`call_handler`] with a context of your own (a deadline, a call id stack, caller data).
pub async fn call_handler_with<H, T, S>(
    handler: H,
    state: S,
    args: Value,
    ctx: Ctx,
) -> Result<Value, RpcError>
where
    H: Handler<T, S>,
    S: Clone + Send + Sync + 'static,
{
    let body = Arguments::from_json(args).map_err(|v| {
        RpcError::bad_request(format!(
            "test arguments must be an object, array or null, not {v}"
        ))
    })?;
    handler.call(Call::rpc(ctx, body), state).await
}

/// Services running in process for a test.
pub struct TestMesh {
    local: InProcess,
    running: Vec<RunningService>,
}

impl Default for TestMesh {
    fn default() -> Self {
        Self::new()
    }
}

impl TestMesh {
    /// An empty in-process mesh with the default configuration and a short grace period.
    pub fn new() -> Self {
        Self::with_config(MeshConfig {
            shutdown_grace: Duration::from_secs(1),
            ..MeshConfig::default()
        })
    }

    /// An empty in-process mesh with `config` (`max_workers`, default timeout...).
    pub fn with_config(config: MeshConfig) -> Self {
        Self {
            local: InProcess::new(config),
            running: Vec::new(),
        }
    }

    /// Serves `service` (the one under test, or a double standing in for a dependency).
    ///
    /// # Panics
    /// When a name in the service is invalid: a bug in the test.
    pub async fn serve(&mut self, service: Service) -> &mut Self {
        if let Err((name, error)) = service.validate() {
            panic!("invalid name `{name}` in the service under test: {error}");
        }
        match self.local.serve(service.routes()).await {
            Ok(running) => self.running.push(running),
            Err(error) => panic!("the in-process transport refused the service: {error}"),
        }
        self
    }

    /// A client calling as `owner`.
    pub fn client(&self, owner: &str) -> Client {
        let outbound = crate::local::client_for(&self.local);
        Client::new(outbound, owner)
    }

    /// Calls `service.method` with JSON `args`, as a caller over the wire would.
    pub async fn call(&self, service: &str, method: &str, args: Value) -> Result<Value, CallError> {
        self.client("test").rpc(service).call(method, args).await
    }

    /// Dispatches `event_type` from `source` and returns at once.
    pub async fn dispatch(
        &self,
        source: &str,
        event_type: &str,
        payload: Value,
    ) -> Result<(), CallError> {
        self.client(source).dispatch(event_type, payload).await
    }

    /// Dispatches `event_type` from `source`, then waits until every handler that received it
    /// has finished with it (handled or dead-lettered), like nameko's `entrypoint_waiter`, for
    /// at most [`WAIT_LIMIT`]: give a subscription under test short retry delays.
    pub async fn dispatch_and_wait(
        &self,
        source: &str,
        event_type: &str,
        payload: Value,
    ) -> Result<(), CallError> {
        let deliveries = self.local.bound_queue_count(source, event_type);
        let before = self.finished_events();
        self.dispatch(source, event_type, payload).await?;
        let deadline = Instant::now() + WAIT_LIMIT;
        while self.finished_events() < before + deliveries {
            if Instant::now() >= deadline {
                return Err(CallError::DeadlineExceeded(
                    u64::try_from(WAIT_LIMIT.as_millis()).unwrap_or(u64::MAX),
                ));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(())
    }

    fn finished_events(&self) -> usize {
        self.running
            .iter()
            .map(|r| r.stats().events_handled() + r.stats().events_dead_lettered())
            .sum::<u64>()
            .try_into()
            .unwrap_or(usize::MAX)
    }

    /// The counters of the first running service named `service`.
    pub fn stats(&self, service: &str) -> Option<&ServiceStats> {
        self.running
            .iter()
            .find(|r| r.name() == service)
            .map(RunningService::stats)
    }

    /// Events of `queue` (see [`crate::Subscription::queue`]) whose handler failed on every
    /// attempt of the subscription's [`crate::RetrySchedule`].
    pub fn dead_letters(&self, queue: &str) -> Vec<DeadLetter> {
        self.local
            .dead_letters(&crate::events::dead_letter_queue(queue))
    }

    /// Stops every service gracefully.
    pub async fn stop(self) {
        for running in self.running {
            running.stop().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Payload, State, Subscription};
    use serde_json::json;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<Value>>>);

    async fn remember(
        State(seen): State<Seen>,
        Payload(p): Payload<Value>,
    ) -> Result<(), RpcError> {
        seen.0.lock().expect("seen").push(p);
        Ok(())
    }

    async fn refuse(State(n): State<Arc<AtomicUsize>>) -> Result<(), RpcError> {
        n.fetch_add(1, Ordering::SeqCst);
        Err(RpcError::internal("no"))
    }

    #[tokio::test]
    async fn dispatch_and_wait_returns_once_handlers_are_done() {
        let seen = Seen::default();
        let mut mesh = TestMesh::new();
        mesh.serve(
            Service::new("listener")
                .on_event("src", "ping", remember)
                .with_state(seen.clone()),
        )
        .await;
        mesh.dispatch_and_wait("src", "ping", json!({"n": 1}))
            .await
            .expect("handled");
        assert_eq!(*seen.0.lock().expect("seen"), vec![json!({"n": 1})]);
        // No subscriber: nothing to wait for.
        mesh.dispatch_and_wait("src", "other", json!(null))
            .await
            .expect("nothing");
        mesh.stop().await;
    }

    #[tokio::test]
    async fn dead_letters_are_readable() {
        let attempts = Arc::new(AtomicUsize::new(0));
        let mut mesh = TestMesh::new();
        let subscription = Subscription::new("src", "doomed");
        let queue = subscription.queue("sink", "");
        mesh.serve(
            Service::new("sink")
                .subscribe(subscription, refuse)
                .with_state(attempts.clone()),
        )
        .await;
        mesh.dispatch_and_wait("src", "doomed", json!({"id": 1}))
            .await
            .expect("finished");
        assert_eq!(attempts.load(Ordering::SeqCst), 2);
        let dead = mesh.dead_letters(&queue);
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].payload, json!({"id": 1}));
        assert_eq!(dead[0].reason, "Internal: no");
        assert_eq!(dead[0].attempts, 2);
        assert_eq!(
            mesh.stats("sink").map(ServiceStats::events_retried),
            Some(1)
        );
    }
}
