//! What a handler reaches the mesh through: calls to other services and event dispatch.
//!
//! [`Outbound`] is the seam between handlers and the transport: the AMQP runtime gives every
//! [`crate::Ctx`] one, and a [`ServiceProxy`] (from [`crate::Ctx::rpc`]) calls through it with the
//! handler's context, so the caller's deadline and call id stack travel on.

use crate::context::CallContext;
use crate::error::CallError;
use crate::handler::BoxFuture;
use crate::protocol::RequestBody;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::sync::Arc;

/// Calls and dispatches on behalf of handlers.
pub trait Outbound: Send + Sync + 'static {
    /// Calls `service.method`.
    fn call(
        &self,
        service: &str,
        method: &str,
        body: RequestBody,
        context: CallContext,
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
    /// Times the broker connection was lost (AMQP only).
    pub broker_lost: u64,
}

/// A shared [`Outbound`].
pub type SharedOutbound = Arc<dyn Outbound>;

/// Calls one service with a handler's context: `ctx.rpc("kv").call("inc", json!({"key": "x"}))`.
#[derive(Clone)]
pub struct ServiceProxy {
    outbound: Option<SharedOutbound>,
    service: String,
    context: CallContext,
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
        }
    }

    /// Calls `method` with JSON arguments: an object (keyword), an array (positional) or `null`.
    pub async fn call(&self, method: &str, args: Value) -> Result<Value, CallError> {
        let body = RequestBody::from_json(args).map_err(|v| {
            CallError::InvalidArguments(format!("arguments must be an object or array, not {v}"))
        })?;
        let Some(outbound) = &self.outbound else {
            return Err(CallError::Unavailable(
                "this handler runs without a transport".into(),
            ));
        };
        outbound
            .call(&self.service, method, body, self.context.clone())
            .await
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

/// Calls services and dispatches events from outside a handler (a startup task, a test, a
/// CLI): the same proxies a handler gets from its [`crate::Ctx`], with a fresh root context.
#[derive(Clone)]
pub struct Client {
    outbound: SharedOutbound,
    source: String,
}

impl Client {
    /// A client that dispatches as `source` and calls through `outbound`.
    pub fn new(outbound: SharedOutbound, source: impl Into<String>) -> Self {
        Self {
            outbound,
            source: source.into(),
        }
    }

    /// Calls `service.method` with `body` and `context` (the default deadline applies when the
    /// context has none). Dropping the future abandons the call.
    ///
    /// The future owns what it needs (it borrows nothing), and holds as little as the transport
    /// can while it waits: the AMQP client serializes and frees `body` and `context` before it
    /// returns the future.
    pub fn call(
        &self,
        service: &str,
        method: &str,
        body: RequestBody,
        context: CallContext,
    ) -> BoxFuture<Result<Value, CallError>> {
        self.outbound.call(service, method, body, context)
    }

    /// Whether calls can be made now (for AMQP: connected and consuming replies).
    pub fn is_ready(&self) -> bool {
        self.outbound.is_ready()
    }

    /// The client's counters.
    pub fn stats(&self) -> ClientStats {
        self.outbound.stats()
    }

    /// A proxy for calling `service` with a root context (the default deadline applies).
    pub fn rpc(&self, service: &str) -> ServiceProxy {
        ServiceProxy::new(Some(self.outbound.clone()), service, CallContext::default())
    }

    /// A proxy for calling `service` with `context` (a deadline, a root call id).
    pub fn rpc_with(&self, service: &str, context: CallContext) -> ServiceProxy {
        ServiceProxy::new(Some(self.outbound.clone()), service, context)
    }

    /// Dispatches `event_type` from this client's source.
    pub async fn dispatch(&self, event_type: &str, payload: Value) -> Result<(), CallError> {
        self.outbound
            .dispatch(&self.source, event_type, payload, CallContext::default())
            .await
    }
}
