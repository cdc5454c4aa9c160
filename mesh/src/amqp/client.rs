//! [`RpcClient`]: calls services over AMQP through one shared callback queue (see
//! [`super::callback_queue`]).
//!
//! A call registers its correlation id in the client's pending calls, publishes the request
//! `mandatory` on a confirm channel, and waits for its reply until its deadline. The broker
//! returns a mandatory message that no queue is bound for before it confirms it, so a call to a
//! service that was never declared fails at once with `UnknownService`. Requests to a service
//! the broker has confirmed routing to go out without a confirm ([`super::known_routes`]).

use super::broker::{Broker, ChannelTask};
use super::callback_queue::{self, Shared};
use super::publish::{self, Message};
use crate::call_context::CallContext;
use crate::client::ClientStats;
use crate::deadline::Deadline;
use crate::detached::ResultQueue;
use crate::error::{CallError, ConnectError};
use crate::protocol::{
    Arguments, ReplyBody, request_routing_key, validate_call_names, validate_name,
};
use lapin::types::ShortString;
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use tokio::time::Sleep;

/// Calls services over AMQP. Cheap to clone; all clones share one callback queue.
#[derive(Clone)]
pub(crate) struct RpcClient {
    inner: Arc<Inner>,
}

struct Inner {
    broker: Broker,
    exchange: ShortString,
    reply_to: ShortString,
    shared: Arc<Shared>,
    /// The reply consumer's task (it holds the callback queue's channels).
    task: Arc<ChannelTask>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.task.release();
    }
}

impl RpcClient {
    /// Declares this process's callback queue and starts consuming replies. `owner` names the
    /// queue (`rpc.reply-<owner>-<uuid>`), e.g. `gateway`. The queue keeps its name across
    /// reconnections, and is declared again on each new connection.
    pub(crate) async fn start(broker: &Broker, owner: &str) -> Result<Self, ConnectError> {
        let reply_to = format!("rpc.reply-{owner}-{}", uuid::Uuid::new_v4());
        let (shared, task) = callback_queue::start(broker, &reply_to).await?;
        Ok(Self {
            inner: Arc::new(Inner {
                broker: broker.clone(),
                exchange: broker.rpc_exchange().into(),
                reply_to: reply_to.into(),
                shared,
                task,
            }),
        })
    }

    /// Calls `service.method` with `body` and `context`, waiting until the context's deadline
    /// (or the configured default timeout when it has none). The body and context are
    /// serialized and freed before the future is returned: it borrows nothing.
    ///
    /// Dropping the returned future abandons the call and removes its pending entry.
    ///
    /// A request that provably never reached a queue (no live connection took it, or the broker
    /// refused it) is published again, on the next connection if need be, within its deadline;
    /// one lost after it was written and before its confirm may have run, and is published
    /// again only when `idempotent` says the method is safe to run twice.
    pub(crate) fn call(
        &self,
        service: &str,
        method: &str,
        body: &Arguments,
        context: CallContext,
        idempotent: bool,
    ) -> impl Future<Output = Result<Value, CallError>> + Send + 'static + use<> {
        let request = self.prepare(service, method, body, context, idempotent);
        let client = self.clone();
        async move { client.send(request?).await }
    }

    /// Checks and serializes a call: everything up to publishing, done before the first
    /// `await` so the call's future keeps none of it (only the [`Prepared`] request).
    fn prepare(
        &self,
        service: &str,
        method: &str,
        body: &Arguments,
        context: CallContext,
        idempotent: bool,
    ) -> Result<Prepared, CallError> {
        for name in [service, method] {
            validate_name(name).map_err(|reason| CallError::InvalidName {
                name: name.to_owned(),
                reason,
            })?;
        }
        validate_call_names(service, method).map_err(|reason| CallError::InvalidName {
            name: format!("{service}.{method}"),
            reason,
        })?;
        let inner = &self.inner;
        let shared = &inner.shared;
        shared.calls.fetch_add(1, Ordering::Relaxed);
        let deadline = context
            .deadline
            .unwrap_or_else(|| Deadline::after(inner.broker.config().default_timeout));
        let context = context.with_deadline(deadline);
        let budget_ms = deadline.remaining_ms();
        if deadline.expired() {
            shared.timeouts.fetch_add(1, Ordering::Relaxed);
            return Err(CallError::DeadlineExceeded(budget_ms));
        }
        let payload =
            serde_json::to_vec(body).map_err(|e| CallError::InvalidArguments(e.to_string()))?;
        // The AMQP properties and headers are made when the request's turn to publish comes (a
        // burst may wait for the publish window): until then it keeps only these.
        let message = Box::new(Message {
            deadline,
            routing_key: request_routing_key(service, method),
            service_len: service.len(),
            payload,
            context,
            idempotent,
        });
        Ok(Prepared { message, budget_ms })
    }

    /// Publishes a prepared request and waits for its reply until its deadline.
    ///
    /// What a pending call holds while it waits is kept small (a server may have a hundred
    /// thousand of them): the future owns the client and the request (no wrapper around it
    /// keeping a second copy), one timer serves the whole call, and the publish phase is boxed
    /// and freed once the broker confirmed, with everything only it needs (the routing key
    /// among them, for an unknown service's error): a future keeps what it captures for its
    /// whole life. The call future stays in mimalloc's 224-byte size class (release build); a
    /// field more in it takes the next class, 288 bytes, for every pending call.
    fn send(
        self,
        request: Prepared,
    ) -> impl Future<Output = Result<Value, CallError>> + Send + 'static {
        let Prepared { message, budget_ms } = request;
        async move {
            let shared = &self.inner.shared;
            let mut pending = shared.pending.register(uuid::Uuid::new_v4());
            let timed_out = || {
                shared.timeouts.fetch_add(1, Ordering::Relaxed);
                CallError::DeadlineExceeded(budget_ms)
            };
            // One timer for the whole call (a `Sleep` is 112 bytes and a timer-wheel entry),
            // raced first against the publish and then against the reply.
            let expired = tokio::time::sleep_until(message.deadline.instant());
            tokio::pin!(expired);
            // The publish phase is boxed: a call waiting for its reply keeps none of it. Inside,
            // the publish future proper (frames, properties, confirm: large) is made only once
            // the request's turn in the window comes, and freed once the broker confirmed it.
            let published = Box::pin(self.publish_in_turn(
                self.inner.reply_to.clone(),
                pending.correlation_id(),
                *message,
                true,
            ));
            let Some(published) = (Before {
                future: published,
                expired: expired.as_mut(),
            })
            .await
            else {
                return Err(timed_out());
            };
            published?;
            let reply = Before {
                future: pending.reply(),
                expired: expired.as_mut(),
            };
            let Some(bytes) = reply.await else {
                return Err(timed_out());
            };
            let bytes = bytes?;
            let reply: ReplyBody = serde_json::from_slice(&bytes)
                .map_err(|e| CallError::MalformedReply(format!("reply is not valid: {e}")))?;
            reply.into_result().map_err(CallError::Remote)
        }
    }

    /// Publishes `message` with its reply to `reply_to` under `correlation_id` once its turn
    /// in the publish window comes, until the broker confirmed it.
    async fn publish_in_turn(
        &self,
        reply_to: ShortString,
        correlation_id: uuid::Uuid,
        message: Message,
        may_skip_confirm: bool,
    ) -> Result<(), CallError> {
        let shared = &self.inner.shared;
        let _turn = shared
            .publishing
            .0
            .acquire()
            .await
            .map_err(|_| CallError::Unavailable("the client is closed".into()))?;
        let request = publish::Request {
            exchange: self.inner.exchange.clone(),
            reply_to,
            correlation_id,
            message,
            may_skip_confirm,
        };
        request.publish(shared, &self.inner.broker).await
    }

    /// Publishes a call whose reply goes to `result`, declared and bound first; returns once
    /// the broker confirmed the request. Nothing waits for the reply here (see
    /// [`super::detached::collect`]).
    pub(crate) async fn call_detached(
        &self,
        service: &str,
        method: &str,
        body: &Arguments,
        context: CallContext,
        idempotent: bool,
        result: &ResultQueue,
    ) -> Result<(), CallError> {
        let Prepared { message, budget_ms } =
            self.prepare(service, method, body, context, idempotent)?;
        let deadline = message.deadline;
        // The whole of it within the call's deadline: a stalled broker does not hold a caller
        // waiting for a 202 past it.
        let published = async {
            super::detached::declare(&self.inner.broker, result).await?;
            let reply_to = result.name().into();
            self.publish_in_turn(reply_to, uuid::Uuid::new_v4(), *message, false)
                .await
        };
        tokio::time::timeout_at(deadline.instant(), published)
            .await
            .map_err(|_| CallError::DeadlineExceeded(budget_ms))?
    }

    /// Whether calls can be made: connected to the broker and consuming replies.
    pub(crate) fn is_ready(&self) -> bool {
        self.inner.broker.is_connected() && self.inner.shared.is_consuming()
    }

    /// Counters since start.
    pub(crate) fn stats(&self) -> ClientStats {
        let shared = &self.inner.shared;
        ClientStats {
            calls: shared.calls.load(Ordering::Relaxed),
            pending: shared.pending.len(),
            timeouts: shared.timeouts.load(Ordering::Relaxed),
            unknown_service: shared.unknown_service.load(Ordering::Relaxed),
            republished: shared.republished.load(Ordering::Relaxed),
            unmatched_replies: shared.pending.unmatched(),
            broker_lost: shared.broker_lost.load(Ordering::Relaxed),
            unconfirmed: shared.unconfirmed.load(Ordering::Relaxed),
        }
    }
}

/// `future`'s output, or `None` if `expired` fires first: a `Timeout` over a borrowed timer, so
/// that one `Sleep` serves every phase of a call.
struct Before<'t, F> {
    future: F,
    expired: Pin<&'t mut Sleep>,
}

impl<F: Future + Unpin> Future for Before<'_, F> {
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(output) = Pin::new(&mut self.future).poll(cx) {
            return Poll::Ready(Some(output));
        }
        self.expired.as_mut().poll(cx).map(|()| None)
    }
}

/// A call checked and serialized, ready to publish.
struct Prepared {
    message: Box<Message>,
    /// The time it had, ms (for a timeout's error).
    budget_ms: u64,
}
