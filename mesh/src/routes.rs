//! [`Routes`]: a service with its state bound, as the runtime of either transport serves it:
//! its handlers by method, its subscriptions and timers, and the way its handlers reach the mesh.

use crate::blocking::BlockingPool;
use crate::call_context::CallContext;
use crate::client::SharedOutbound;
use crate::ctx::Ctx;
use crate::describe::{Docs, InstanceState, ServiceDescriptor};
use crate::error::{ErrorKind, RpcError};
use crate::events::Subscription;
use crate::future::BoxFuture;
use crate::handler::Call;
use crate::timer::Timer;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// A handler with its types erased, still waiting for the state `S`.
pub(crate) type BoxedHandler<S> =
    Arc<dyn Fn(Call, S) -> BoxFuture<Result<Value, RpcError>> + Send + Sync>;

/// A handler with its state bound and its types erased.
pub(crate) type ErasedHandler = BoxedHandler<()>;

/// A service's handlers, shared by the tasks that serve it.
#[derive(Clone)]
pub(crate) struct Routes {
    service: Arc<str>,
    handlers: Arc<HashMap<String, ErasedHandler>>,
    subscriptions: Arc<Vec<(Subscription, ErasedHandler)>>,
    timers: Arc<Vec<(Timer, ErasedHandler)>>,
    docs: Arc<Docs>,
    outbound: Option<SharedOutbound>,
    blocking: Option<BlockingPool>,
}

impl Routes {
    pub(crate) fn new(
        service: &str,
        handlers: HashMap<String, ErasedHandler>,
        subscriptions: Vec<(Subscription, ErasedHandler)>,
        timers: Vec<(Timer, ErasedHandler)>,
        docs: Docs,
    ) -> Self {
        Self {
            service: Arc::from(service),
            handlers: Arc::new(handlers),
            subscriptions: Arc::new(subscriptions),
            timers: Arc::new(timers),
            docs: Arc::new(docs),
            outbound: None,
            blocking: None,
        }
    }

    /// The service's name.
    pub(crate) fn service(&self) -> &str {
        &self.service
    }

    /// Runs `method` for `call`; an unknown method is `MethodNotFound`.
    pub(crate) fn dispatch(&self, call: Call) -> BoxFuture<Result<Value, RpcError>> {
        match self.handlers.get(call.ctx.method()) {
            Some(handler) => handler(call, ()),
            None => {
                let error = RpcError::new(
                    ErrorKind::MethodNotFound,
                    format!("{}.{}", self.service, call.ctx.method()),
                );
                Box::pin(std::future::ready(Err(error)))
            }
        }
    }

    /// Whether the service has RPC methods (a service with only event handlers has no queue).
    pub(crate) fn has_methods(&self) -> bool {
        !self.handlers.is_empty()
    }

    /// How many RPC methods the service has.
    pub(crate) fn method_count(&self) -> usize {
        self.handlers.len()
    }

    /// The event subscriptions with their handlers.
    pub(crate) fn subscriptions(&self) -> &[(Subscription, ErasedHandler)] {
        &self.subscriptions
    }

    /// The timers with their handlers.
    pub(crate) fn timers(&self) -> &[(Timer, ErasedHandler)] {
        &self.timers
    }

    /// Gives every [`Ctx`] built from now on a way to reach the mesh.
    pub(crate) fn with_outbound(mut self, outbound: SharedOutbound) -> Self {
        self.outbound = Some(outbound);
        self
    }

    /// Gives every [`Ctx`] built from now on the pool its CPU-bound work runs on.
    pub(crate) fn with_blocking(mut self, pool: BlockingPool) -> Self {
        self.blocking = Some(pool);
        self
    }

    /// The transport handle handlers reach the mesh through, once the runtime has set it.
    pub(crate) fn outbound(&self) -> Option<&SharedOutbound> {
        self.outbound.as_ref()
    }

    /// The descriptor instance `instance` sends.
    pub(crate) fn descriptor(
        &self,
        instance: &str,
        heartbeat_ms: u64,
        state: InstanceState,
    ) -> ServiceDescriptor {
        let methods = self.handlers.keys().map(String::as_str);
        let subscriptions = self.subscriptions.iter().map(|(s, _)| s);
        self.docs.descriptor(
            &self.service,
            methods,
            subscriptions,
            instance,
            heartbeat_ms,
            state,
        )
    }

    /// Builds the [`Ctx`] for a call to `method` on this service.
    pub(crate) fn ctx(&self, method: &str, incoming: CallContext) -> Ctx {
        Ctx::new(&self.service, method, incoming)
            .with_outbound(self.outbound.clone())
            .with_blocking(self.blocking.clone())
    }
}
