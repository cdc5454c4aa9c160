//! [`LocalOutbound`]: calls and dispatches over the in-process queues, with the AMQP client's
//! semantics (deadlines, `UnknownService`, late replies counted).

use super::{EventMessage, Registry, Request};
use crate::call_context::CallContext;
use crate::client::{ClientStats, Outbound};
use crate::deadline::Deadline;
use crate::detached::{Collected, ResultQueue};
use crate::error::CallError;
use crate::future::BoxFuture;
use crate::protocol::{Arguments, validate_name};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::oneshot;

/// A client's counters, shared with the requests it sent (a late reply counts against it).
#[derive(Default)]
pub(crate) struct ClientCounters {
    calls: AtomicU64,
    pending: AtomicUsize,
    timeouts: AtomicU64,
    unknown_service: AtomicU64,
    pub(crate) unmatched: AtomicU64,
}

pub(crate) struct LocalOutbound {
    registry: Arc<Registry>,
    default_timeout: Duration,
    counters: Arc<ClientCounters>,
}

impl LocalOutbound {
    pub(crate) fn new(registry: Arc<Registry>, default_timeout: Duration) -> Self {
        Self {
            registry,
            default_timeout,
            counters: Arc::default(),
        }
    }
}

/// Counts a call as pending for as long as it lives, however it ends.
struct PendingGuard(Arc<ClientCounters>);

impl PendingGuard {
    fn new(counters: &Arc<ClientCounters>) -> Self {
        counters.pending.fetch_add(1, Ordering::Relaxed);
        Self(counters.clone())
    }
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::Relaxed);
    }
}

fn closed() -> CallError {
    CallError::Unavailable("the in-process mesh is closed".into())
}

impl Outbound for LocalOutbound {
    fn call(
        &self,
        service: &str,
        method: &str,
        body: Arguments,
        context: CallContext,
        _idempotent: bool,
    ) -> BoxFuture<Result<Value, CallError>> {
        let registry = self.registry.clone();
        let counters = self.counters.clone();
        let default_timeout = self.default_timeout;
        let (service, method) = (service.to_owned(), method.to_owned());
        Box::pin(async move {
            for name in [&service, &method] {
                validate_name(name).map_err(|reason| CallError::InvalidName {
                    name: name.clone(),
                    reason,
                })?;
            }
            counters.calls.fetch_add(1, Ordering::Relaxed);
            if registry.is_closed() {
                return Err(closed());
            }
            let deadline = context
                .deadline
                .unwrap_or_else(|| Deadline::after(default_timeout));
            let budget_ms = deadline.remaining_ms();
            if deadline.expired() {
                counters.timeouts.fetch_add(1, Ordering::Relaxed);
                return Err(CallError::DeadlineExceeded(budget_ms));
            }
            let Some(queue) = registry.rpc_queue(&service) else {
                counters.unknown_service.fetch_add(1, Ordering::Relaxed);
                return Err(CallError::UnknownService(service));
            };
            let _pending = PendingGuard::new(&counters);
            let (reply, answer) = oneshot::channel();
            let request = Request {
                method,
                body,
                context: context.with_deadline(deadline),
                reply,
                caller: counters.clone(),
            };
            queue.tx.send(request).map_err(|_| closed())?;
            match tokio::time::timeout_at(deadline.instant(), answer).await {
                Err(_elapsed) => {
                    counters.timeouts.fetch_add(1, Ordering::Relaxed);
                    Err(CallError::DeadlineExceeded(budget_ms))
                }
                // A service drops a request whose deadline passed while it waited (as over AMQP,
                // where the caller then times out): that is the deadline, not an outage.
                Ok(Err(_dropped)) if deadline.expired() => {
                    counters.timeouts.fetch_add(1, Ordering::Relaxed);
                    Err(CallError::DeadlineExceeded(budget_ms))
                }
                Ok(Err(_dropped)) => Err(CallError::Unavailable(
                    "the service dropped the request".into(),
                )),
                Ok(Ok(reply)) => reply.map_err(CallError::Remote),
            }
        })
    }

    fn dispatch(
        &self,
        source: &str,
        event_type: &str,
        payload: Value,
        context: CallContext,
    ) -> BoxFuture<Result<(), CallError>> {
        let result = if self.registry.is_closed() {
            Err(closed())
        } else {
            for queue in self.registry.bound_queues(source, event_type) {
                let message = EventMessage {
                    payload: payload.clone(),
                    context: context.clone(),
                    attempt: 1,
                };
                // The registry holds every queue's receiver, so a send cannot fail.
                let _ = queue.tx.send(message);
            }
            Ok(())
        };
        Box::pin(std::future::ready(result))
    }

    fn call_detached(
        &self,
        service: &str,
        method: &str,
        body: Arguments,
        context: CallContext,
        idempotent: bool,
        result: ResultQueue,
    ) -> BoxFuture<Result<(), CallError>> {
        for name in [service, method] {
            if let Err(reason) = validate_name(name) {
                let name = name.to_owned();
                return Box::pin(std::future::ready(Err(CallError::InvalidName {
                    name,
                    reason,
                })));
            }
        }
        if self.registry.is_closed() {
            return Box::pin(std::future::ready(Err(closed())));
        }
        // As over AMQP, where the broker returns a request no queue is bound for.
        if self.registry.rpc_queue(service).is_none() {
            self.counters
                .unknown_service
                .fetch_add(1, Ordering::Relaxed);
            let service = service.to_owned();
            return Box::pin(std::future::ready(Err(CallError::UnknownService(service))));
        }
        let registry = self.registry.clone();
        let name = result.name().to_owned();
        registry.declare_result(&name, result.keep_for());
        let call = self.call(service, method, body, context, idempotent);
        tokio::spawn(async move {
            let outcome = call.await;
            registry.store_result(&name, outcome);
        });
        Box::pin(std::future::ready(Ok(())))
    }

    fn collect(&self, queue: &str) -> BoxFuture<Result<Collected, CallError>> {
        let collected = if self.registry.is_closed() {
            Err(closed())
        } else {
            Ok(self.registry.result(queue))
        };
        Box::pin(std::future::ready(collected))
    }

    fn is_ready(&self) -> bool {
        !self.registry.is_closed()
    }

    fn stats(&self) -> ClientStats {
        let c = &self.counters;
        ClientStats {
            calls: c.calls.load(Ordering::Relaxed),
            pending: c.pending.load(Ordering::Relaxed),
            timeouts: c.timeouts.load(Ordering::Relaxed),
            unknown_service: c.unknown_service.load(Ordering::Relaxed),
            unmatched_replies: c.unmatched.load(Ordering::Relaxed),
            ..ClientStats::default()
        }
    }
}
