//! [`Ctx`]: what a handler knows about the call it serves, and how it reaches the rest of the
//! mesh with that call's context (calls to other services, events).

use crate::blocking::BlockingPool;
use crate::call_context::CallContext;
use crate::client::{ServiceProxy, SharedOutbound};
use crate::deadline::Deadline;
use crate::error::{CallError, RpcError};
use serde_json::Value;
use std::fmt;
use warren_telemetry::trace::TraceParent;

/// What a handler knows about the call it is serving. Take it as an argument to get it:
///
/// ```
/// use mesh::{Ctx, RpcError};
/// async fn whoami(ctx: Ctx) -> Result<Vec<String>, RpcError> {
///     Ok(ctx.call_id_stack().to_vec())
/// }
/// let _service: mesh::Service = mesh::Service::new("who").rpc("whoami", whoami);
/// ```
#[derive(Clone)]
pub struct Ctx {
    service: String,
    method: String,
    call_id: String,
    context: CallContext,
    outbound: Option<SharedOutbound>,
    blocking: Option<BlockingPool>,
}

impl fmt::Debug for Ctx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ctx")
            .field("service", &self.service)
            .field("method", &self.method)
            .field("call_id", &self.call_id)
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

impl Ctx {
    /// The context of a call to `service.method`; the stack is extended with this call's own id
    /// (`<service>.<method>.<uuid>`).
    pub fn new(service: &str, method: &str, incoming: CallContext) -> Self {
        let call_id = format!("{service}.{method}.{}", uuid::Uuid::new_v4());
        // This call is a span of the caller's trace (or starts one).
        let span = incoming
            .traceparent
            .as_deref()
            .and_then(TraceParent::parse)
            .map_or_else(TraceParent::new_root, |parent| parent.child());
        let context = CallContext {
            call_id_stack: incoming.stack_with(&call_id),
            traceparent: Some(span.to_string()),
            ..incoming
        };
        Self {
            service: service.to_owned(),
            method: method.to_owned(),
            call_id,
            context,
            outbound: None,
            blocking: None,
        }
    }

    /// Replaces this call's `traceparent` (an exporter's span now names the call).
    pub(crate) fn set_traceparent(&mut self, traceparent: &TraceParent) {
        self.context.traceparent = Some(traceparent.to_string());
    }

    /// Gives the context a way to reach the mesh (the runtime does this for every call).
    pub(crate) fn with_outbound(mut self, outbound: Option<SharedOutbound>) -> Self {
        self.outbound = outbound;
        self
    }

    /// Gives the context the pool its CPU-bound work runs on (the mesh's, for a served service).
    pub(crate) fn with_blocking(mut self, pool: Option<BlockingPool>) -> Self {
        self.blocking = pool;
        self
    }

    /// Runs CPU-bound `work` (seconds of computing, a blocking library call) on the mesh's
    /// bounded blocking pool rather than on the async runtime, where it would hold up every
    /// other handler, the broker connection's heartbeats and the ops port of the process.
    ///
    /// The work waits its turn while the pool is full (`MeshConfig::blocking_threads`, by
    /// default the cores less one); if the call's deadline passes first it never starts and
    /// this fails with `exc_type` `DeadlineExceeded`. Once started it runs to its end, even if
    /// the caller stops waiting: a thread cannot be interrupted. A panic in it is an
    /// `Internal` error.
    ///
    /// ```
    /// use mesh::{Args, Ctx, RpcError};
    ///
    /// #[derive(serde::Deserialize, utoipa::ToSchema)]
    /// struct Digits { n: u32 }
    ///
    /// fn count_primes(n: u32) -> usize {
    ///     (2..n).filter(|k| (2..*k).take_while(|d| d * d <= *k).all(|d| k % d != 0)).count()
    /// }
    ///
    /// async fn primes(ctx: Ctx, Args(d): Args<Digits>) -> Result<usize, RpcError> {
    ///     ctx.blocking(move || count_primes(d.n)).await
    /// }
    /// # let _service: mesh::Service = mesh::Service::new("maths").rpc("primes", primes);
    /// ```
    pub async fn blocking<F, R>(&self, work: F) -> Result<R, RpcError>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let pool = self.blocking.as_ref().unwrap_or(BlockingPool::fallback());
        pool.run(self.deadline(), work).await
    }

    /// A proxy for calling `service` from this handler. The call carries this call's deadline,
    /// context data and call id stack:
    ///
    /// ```no_run
    /// # async fn f(ctx: mesh::Ctx) -> Result<(), mesh::CallError> {
    /// let n = ctx.rpc("kv").call("inc", serde_json::json!({"key": "x"})).await?;
    /// # Ok(()) }
    /// ```
    pub fn rpc(&self, service: &str) -> ServiceProxy {
        ServiceProxy::new(self.outbound.clone(), service, self.outgoing())
    }

    /// Dispatches event `event_type` from this service with `payload`; returns once the broker
    /// has confirmed it.
    pub async fn dispatch(&self, event_type: &str, payload: Value) -> Result<(), CallError> {
        let Some(outbound) = &self.outbound else {
            return Err(CallError::Unavailable(
                "this handler runs without a transport".into(),
            ));
        };
        outbound
            .dispatch(&self.service, event_type, payload, self.outgoing())
            .await
    }

    /// The service serving the call.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The method being called.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// This call's own id, `<service>.<method>.<uuid>`.
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// The call id stack, ending with this call's id.
    pub fn call_id_stack(&self) -> &[String] {
        &self.context.call_id_stack
    }

    /// The caller's deadline, if it set one.
    pub fn deadline(&self) -> Option<Deadline> {
        self.context.deadline
    }

    /// This call's W3C `traceparent` (its trace id is the caller's).
    pub fn traceparent(&self) -> Option<&str> {
        self.context.traceparent.as_deref()
    }

    /// A context value such as `user_id` or `auth_token`.
    pub fn data(&self, key: &str) -> Option<&str> {
        self.context.data.get(key).map(String::as_str)
    }

    /// The caller's user id (`nameko.user_id`): the identity the gateway authenticated, or
    /// what a nameko caller set. `None` for anonymous calls.
    pub fn user_id(&self) -> Option<&str> {
        self.context.user_id()
    }

    /// The caller's bearer token (`nameko.auth_token`): the JWT a client presented to the
    /// gateway, for a service that checks claims itself. Never logged.
    pub fn auth_token(&self) -> Option<&str> {
        self.context.auth_token()
    }

    /// The caller's preferred languages (`nameko.language`): the `Accept-Language` a client
    /// sent the gateway, or what a nameko caller set.
    pub fn language(&self) -> Option<&str> {
        self.context.language()
    }

    /// The caller's user agent (`nameko.user_agent`): the `User-Agent` a client sent the
    /// gateway, or what a nameko caller set.
    pub fn user_agent(&self) -> Option<&str> {
        self.context.user_agent()
    }

    /// The context to pass on to a call this handler makes: the same data, deadline and stack.
    pub fn outgoing(&self) -> CallContext {
        self.context.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{AUTH_TOKEN_KEY, CALL_ID_STACK_LIMIT, USER_ID_KEY};

    #[test]
    fn stack_is_extended_and_capped() {
        let ctx = Ctx::new("kv", "inc", CallContext::rooted_at("req-1"));
        assert_eq!(ctx.call_id_stack().len(), 2);
        assert_eq!(ctx.call_id_stack()[0], "req-1");
        assert!(ctx.call_id().starts_with("kv.inc."));
        assert_eq!(ctx.call_id_stack()[1], ctx.call_id());

        let long = CallContext {
            call_id_stack: (0..20).map(|i| format!("c{i}")).collect(),
            ..CallContext::default()
        };
        let ctx = Ctx::new("kv", "get", long);
        assert_eq!(ctx.call_id_stack().len(), CALL_ID_STACK_LIMIT);
        assert_eq!(ctx.call_id_stack()[0], "c10");
        assert_eq!(
            ctx.call_id_stack().last().map(String::as_str),
            Some(ctx.call_id())
        );
    }

    #[test]
    fn identity_is_readable_and_the_token_never_debug_printed() {
        let incoming = CallContext::rooted_at("r")
            .with_data(USER_ID_KEY, "alice")
            .with_data(AUTH_TOKEN_KEY, "eyJ.secret.sig");
        let ctx = Ctx::new("kv", "get", incoming);
        assert_eq!(ctx.user_id(), Some("alice"));
        assert_eq!(ctx.auth_token(), Some("eyJ.secret.sig"));
        let shown = format!("{ctx:?}");
        assert!(shown.contains("alice"), "{shown}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        let anonymous = Ctx::new("kv", "get", CallContext::default());
        assert_eq!(anonymous.user_id(), None);
        assert_eq!(anonymous.auth_token(), None);
    }
}
