//! Calling services and dispatching events: the one way, from a handler ([`crate::Ctx::rpc`],
//! [`crate::Ctx::dispatch`]) or from outside one ([`Client::rpc`], [`Client::dispatch`]).
//!
//! Both hand out a [`ServiceProxy`], which calls through the transport's [`Outbound`] with a
//! context: a handler's own (so the caller's deadline, identity and call id stack travel on), or
//! a fresh root one for a client.

use crate::call_context::CallContext;
use crate::detached::{Collected, ResultQueue};
use crate::error::CallError;
use crate::future::BoxFuture;
use crate::protocol::Arguments;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::sync::Arc;

/// Calls and dispatches on behalf of handlers and clients: the seam between them and a
/// transport.
pub(crate) trait Outbound: Send + Sync + 'static {
    /// Calls `service.method`; `idempotent` says the method is safe to run twice (a request
    /// whose fate a lost connection leaves unknown may then be published again).
    fn call(
        &self,
        service: &str,
        method: &str,
        body: Arguments,
        context: CallContext,
        idempotent: bool,
    ) -> BoxFuture<Result<Value, CallError>>;

    /// Publishes event `event_type` from `source` with `payload`; returns once the transport
    /// has it (for AMQP: the broker confirmed it).
    fn dispatch(
        &self,
        source: &str,
        event_type: &str,
        payload: Value,
        context: CallContext,
    ) -> BoxFuture<Result<(), CallError>>;

    /// Publishes a call to `service.method` whose reply goes to `result` (declared first);
    /// returns once the transport has the request (for AMQP: the broker confirmed it).
    fn call_detached(
        &self,
        service: &str,
        method: &str,
        body: Arguments,
        context: CallContext,
        idempotent: bool,
        result: ResultQueue,
    ) -> BoxFuture<Result<(), CallError>>;

    /// What the result queue `queue` holds.
    fn collect(&self, queue: &str) -> BoxFuture<Result<Collected, CallError>>;

    /// Whether calls can be made now.
    fn is_ready(&self) -> bool;

    /// Counters since start.
    fn stats(&self) -> ClientStats;
}

/// Counters of a client since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Calls made.
    pub calls: u64,
    /// Calls waiting for a reply now.
    pub pending: usize,
    /// Calls that passed their deadline.
    pub timeouts: u64,
    /// Calls to a service with no bound queue.
    pub unknown_service: u64,
    /// Replies that found no waiting caller (late, duplicate or foreign).
    pub unmatched_replies: u64,
    /// Requests published again because the first attempt did not reach a queue, or may not
    /// have for an idempotent method (AMQP only).
    pub republished: u64,
    /// Times the broker connection was lost (AMQP only).
    pub broker_lost: u64,
    /// Requests published without a publisher confirm, to a service whose queue the broker
    /// had confirmed routing to (AMQP only; see docs/architecture.md §6).
    pub unconfirmed: u64,
}

/// A shared [`Outbound`].
pub(crate) type SharedOutbound = Arc<dyn Outbound>;

/// Calls one service with a context: `ctx.rpc("kv").call("inc", json!({"key": "x"}))`.
///
/// From a handler ([`crate::Ctx::rpc`]) the context is the handler's: its deadline, identity and
/// call id stack travel on. From a [`Client`] it is a fresh root context, which
/// [`ServiceProxy::with_context`] replaces (a deadline of your own, a request id to root the
/// call id stack at, a caller's identity).
#[derive(Clone)]
pub struct ServiceProxy {
    outbound: Option<SharedOutbound>,
    service: String,
    context: CallContext,
    idempotent: bool,
}

impl ServiceProxy {
    pub(crate) fn new(
        outbound: Option<SharedOutbound>,
        service: &str,
        context: CallContext,
    ) -> Self {
        Self {
            outbound,
            service: service.to_owned(),
            context,
            idempotent: false,
        }
    }

    /// The same proxy for calls to a method that is safe to run twice (see
    /// [`crate::Service::idempotent`]): over AMQP, a request whose confirm a lost connection
    /// took with it is then published again on the next connection, within its deadline.
    /// Without it such a request fails `Unavailable`, as it may have run.
    pub fn idempotent(mut self, idempotent: bool) -> Self {
        self.idempotent = idempotent;
        self
    }

    /// The same proxy with `context` for the calls it makes (without a deadline, the
    /// transport's default timeout applies).
    pub fn with_context(mut self, context: CallContext) -> Self {
        self.context = context;
        self
    }

    /// Calls `method` with `args`: a JSON object (keyword arguments), an array (positional),
    /// `null` or `()` (none), or [`Arguments`].
    ///
    /// The future owns what it needs (it borrows neither the proxy nor `args`), so it can be
    /// kept, moved or spawned; dropping it abandons the call.
    pub fn call(
        &self,
        method: &str,
        args: impl IntoArguments,
    ) -> impl Future<Output = Result<Value, CallError>> + Send + 'static {
        let call: BoxFuture<Result<Value, CallError>> = match self.sendable(args) {
            Err(error) => Box::pin(std::future::ready(Err(error))),
            Ok((arguments, outbound)) => outbound.call(
                &self.service,
                method,
                arguments,
                self.context.clone(),
                self.idempotent,
            ),
        };
        call
    }

    /// The arguments and the transport to send them on, or why the call fails at once.
    fn sendable(
        &self,
        args: impl IntoArguments,
    ) -> Result<(Arguments, &SharedOutbound), CallError> {
        let arguments = args.into_arguments()?;
        let outbound = self.outbound.as_ref().ok_or_else(|| {
            CallError::Unavailable("this handler runs without a transport".into())
        })?;
        Ok((arguments, outbound))
    }

    /// Calls `method` with `args` detached from this caller: the reply goes to `result`, for
    /// any instance of the mesh to [`Client::collect`]. Returns once the transport has the
    /// request (over AMQP: the broker confirmed it; an unknown service is `UnknownService`
    /// at once). The call's deadline is the context's, as for [`ServiceProxy::call`].
    pub fn call_detached(
        &self,
        method: &str,
        args: impl IntoArguments,
        result: ResultQueue,
    ) -> impl Future<Output = Result<(), CallError>> + Send + 'static {
        let call: BoxFuture<Result<(), CallError>> = match self.sendable(args) {
            Err(error) => Box::pin(std::future::ready(Err(error))),
            Ok((arguments, outbound)) => outbound.call_detached(
                &self.service,
                method,
                arguments,
                self.context.clone(),
                self.idempotent,
                result,
            ),
        };
        call
    }

    /// Calls `method` with typed arguments (serialised to a JSON object or array) and decodes
    /// the result into `R`.
    pub async fn call_typed<A: Serialize, R: DeserializeOwned>(
        &self,
        method: &str,
        args: &A,
    ) -> Result<R, CallError> {
        let args =
            serde_json::to_value(args).map_err(|e| CallError::InvalidArguments(e.to_string()))?;
        let result = self.call(method, args).await?;
        serde_json::from_value(result).map_err(|e| {
            CallError::MalformedReply(format!("result does not fit the expected type: {e}"))
        })
    }
}

/// What [`ServiceProxy::call`] takes as a call's arguments.
pub trait IntoArguments {
    /// The arguments, or why these cannot be any.
    fn into_arguments(self) -> Result<Arguments, CallError>;
}

impl IntoArguments for Arguments {
    fn into_arguments(self) -> Result<Arguments, CallError> {
        Ok(self)
    }
}

impl IntoArguments for () {
    fn into_arguments(self) -> Result<Arguments, CallError> {
        Ok(Arguments::default())
    }
}

impl IntoArguments for Value {
    /// An object is keyword arguments, an array positional ones, `null` none; any other value
    /// is refused with [`CallError::InvalidArguments`].
    fn into_arguments(self) -> Result<Arguments, CallError> {
        Arguments::from_json(self).map_err(|v| {
            CallError::InvalidArguments(format!("arguments must be an object or array, not {v}"))
        })
    }
}

/// Calls services and dispatches events from outside a handler (a command-line tool, a test, a
/// gateway): the same proxies a handler gets from its [`crate::Ctx`], with a fresh root
/// context. Made by [`crate::Mesh::client`]; cheap to clone.
#[derive(Clone)]
pub struct Client {
    outbound: SharedOutbound,
    source: String,
}

impl Client {
    /// A client that dispatches as `source` and calls through `outbound`.
    pub(crate) fn new(outbound: SharedOutbound, source: impl Into<String>) -> Self {
        Self {
            outbound,
            source: source.into(),
        }
    }

    /// Whether calls can be made now (for AMQP: connected and consuming replies).
    pub fn is_ready(&self) -> bool {
        self.outbound.is_ready()
    }

    /// The client's counters.
    pub fn stats(&self) -> ClientStats {
        self.outbound.stats()
    }

    /// A proxy for calling `service` with a root context (the default deadline applies; see
    /// [`ServiceProxy::with_context`]).
    pub fn rpc(&self, service: &str) -> ServiceProxy {
        ServiceProxy::new(Some(self.outbound.clone()), service, CallContext::default())
    }

    /// What the result queue of a detached call ([`ServiceProxy::call_detached`]) holds: its
    /// reply (left there for the next collect), none yet, or no such queue.
    pub async fn collect(&self, queue: &str) -> Result<Collected, CallError> {
        self.outbound.collect(queue).await
    }

    /// Dispatches `event_type` from this client's source.
    pub async fn dispatch(&self, event_type: &str, payload: Value) -> Result<(), CallError> {
        self.outbound
            .dispatch(&self.source, event_type, payload, CallContext::default())
            .await
    }
}
