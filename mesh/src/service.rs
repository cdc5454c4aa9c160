//! [`Service`]: a name plus handlers, declared the way axum declares routes.

use crate::context::Ctx;
use crate::describe::{
    Describe, HandlerSchemas, InstanceState, MethodDescriptor, ServiceDescriptor,
    SubscriptionDescriptor,
};
use crate::error::{ErrorKind, RpcError};
use crate::events::{HandlerType, Subscription};
use crate::handler::{BoxFuture, Call, Handler};
use crate::outbound::SharedOutbound;
use crate::protocol::{NameError, validate_name};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// A handler with its state bound and its types erased.
pub type ErasedHandler = Arc<dyn Fn(Call) -> BoxFuture<Result<Value, RpcError>> + Send + Sync>;

/// A service definition: its name, its RPC methods and the state they share.
///
/// ```
/// use mesh::{Args, RpcError, Service, State};
/// use serde::Deserialize;
/// use std::sync::Arc;
/// use utoipa::ToSchema;
///
/// #[derive(Deserialize, ToSchema)]
/// struct Hello { name: String }
///
/// async fn hello(Args(h): Args<Hello>) -> Result<String, RpcError> {
///     Ok(format!("Hello, {}!", h.name))
/// }
///
/// async fn greeting(State(prefix): State<Arc<String>>) -> Result<String, RpcError> {
///     Ok(prefix.to_string())
/// }
///
/// let service = Service::new("greeting_service")
///     .rpc("hello", hello)
///     .with_state(Arc::new("Hi".to_owned()))
///     .rpc("greeting", greeting);
/// assert_eq!(service.name(), "greeting_service");
/// assert_eq!(service.methods(), ["greeting", "hello"]);
/// ```
#[derive(Clone)]
pub struct Service<S = ()> {
    name: String,
    routes: HashMap<String, ErasedHandler>,
    subscriptions: Vec<(Subscription, ErasedHandler)>,
    docs: Docs,
    state: S,
}

/// What a service says about itself in its descriptor.
#[derive(Debug, Clone, Default)]
struct Docs {
    version: Option<String>,
    schemas: BTreeMap<String, HandlerSchemas>,
    descriptions: BTreeMap<String, String>,
}

impl Service<()> {
    /// A service called `name` with no state yet. Names follow the same rule as the gateway's
    /// (`^[A-Za-z_][A-Za-z0-9_-]{0,127}$`); see [`Service::validate`].
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            routes: HashMap::new(),
            subscriptions: Vec::new(),
            docs: Docs::default(),
            state: (),
        }
    }
}

impl<S: Clone + Send + Sync + 'static> Service<S> {
    /// Replaces the state that handlers registered from now on receive through `State<S2>`.
    pub fn with_state<S2: Clone + Send + Sync + 'static>(self, state: S2) -> Service<S2> {
        Service {
            name: self.name,
            routes: self.routes,
            subscriptions: self.subscriptions,
            docs: self.docs,
            state,
        }
    }

    /// Registers `handler` as the RPC method `method`. A later registration of the same name
    /// replaces the earlier one. The method's argument and result schemas, for the service's
    /// descriptor and the gateway's OpenAPI document, come from the handler's types: its
    /// `Args<T>` and `Result<R, _>` need `T, R: utoipa::ToSchema`.
    pub fn rpc<H, T>(mut self, method: impl Into<String>, handler: H) -> Self
    where
        H: Handler<T, S> + Describe<T, S>,
    {
        let method = method.into();
        self.docs.schemas.insert(method.clone(), H::schemas());
        let erased = self.erase(handler);
        self.routes.insert(method, erased);
        self
    }

    /// Describes `method` for readers of the API (otherwise its argument type's doc comment).
    pub fn doc(mut self, method: impl Into<String>, description: impl Into<String>) -> Self {
        self.docs
            .descriptions
            .insert(method.into(), description.into());
        self
    }

    /// Sets the version the service announces (default `0.0.0`).
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.docs.version = Some(version.into());
        self
    }

    /// Subscribes `handler` to `source`'s `event_type`, one instance of this service getting
    /// each event (nameko's service pool). Handlers take the same extractors as RPC handlers,
    /// plus [`crate::Payload`]; an error or panic requeues the event once, then moves it to its
    /// dead-letter queue.
    pub fn on_event<H, T>(self, source: &str, event_type: &str, handler: H) -> Self
    where
        H: Handler<T, S>,
    {
        self.subscribe(Subscription::new(source, event_type), handler)
    }

    /// Subscribes `handler` as `subscription` says (broadcast, singleton, method name).
    pub fn subscribe<H, T>(mut self, subscription: Subscription, handler: H) -> Self
    where
        H: Handler<T, S>,
    {
        let erased = self.erase(handler);
        self.subscriptions.push((subscription, erased));
        self
    }

    fn erase<H, T>(&self, handler: H) -> ErasedHandler
    where
        H: Handler<T, S>,
    {
        let state = self.state.clone();
        Arc::new(move |call: Call| handler.clone().call(call, state.clone()))
    }

    /// The service's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The names of its RPC methods, sorted.
    pub fn methods(&self) -> Vec<&str> {
        let mut methods: Vec<&str> = self.routes.keys().map(String::as_str).collect();
        methods.sort_unstable();
        methods
    }

    /// Checks the service name and every method name.
    pub fn validate(&self) -> Result<(), (String, NameError)> {
        validate_name(&self.name).map_err(|e| (self.name.clone(), e))?;
        for method in self.routes.keys() {
            validate_name(method).map_err(|e| (method.clone(), e))?;
        }
        for (subscription, _) in &self.subscriptions {
            subscription.validate()?;
        }
        Ok(())
    }

    /// The event subscriptions.
    pub fn subscriptions(&self) -> impl Iterator<Item = &Subscription> {
        self.subscriptions.iter().map(|(s, _)| s)
    }

    /// The routes without the state type, as the runtime needs them.
    pub fn routes(&self) -> Routes {
        Routes {
            service: Arc::from(self.name.as_str()),
            handlers: Arc::new(self.routes.clone()),
            subscriptions: Arc::new(self.subscriptions.clone()),
            docs: Arc::new(self.docs.clone()),
            outbound: None,
        }
    }

    /// The descriptor an instance `instance` of this service sends.
    pub fn descriptor(
        &self,
        instance: &str,
        heartbeat_ms: u64,
        state: InstanceState,
    ) -> ServiceDescriptor {
        self.routes().descriptor(instance, heartbeat_ms, state)
    }
}

/// A service's handlers by method name, shared by the tasks that serve it.
#[derive(Clone)]
pub struct Routes {
    service: Arc<str>,
    handlers: Arc<HashMap<String, ErasedHandler>>,
    subscriptions: Arc<Vec<(Subscription, ErasedHandler)>>,
    docs: Arc<Docs>,
    outbound: Option<SharedOutbound>,
}

impl Routes {
    /// The service's name.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// Runs `method` for `call`; an unknown method is `MethodNotFound`.
    pub fn dispatch(&self, call: Call) -> BoxFuture<Result<Value, RpcError>> {
        match self.handlers.get(call.ctx.method()) {
            Some(handler) => handler(call),
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
    pub fn has_methods(&self) -> bool {
        !self.handlers.is_empty()
    }

    /// How many RPC methods the service has.
    pub fn method_count(&self) -> usize {
        self.handlers.len()
    }

    /// The event subscriptions with their handlers.
    pub fn subscriptions(&self) -> &[(Subscription, ErasedHandler)] {
        &self.subscriptions
    }

    /// Gives every [`Ctx`] built from now on a way to reach the mesh.
    pub fn with_outbound(mut self, outbound: SharedOutbound) -> Self {
        self.outbound = Some(outbound);
        self
    }

    /// The transport handle handlers reach the mesh through, once the runtime has set it.
    pub fn outbound(&self) -> Option<&SharedOutbound> {
        self.outbound.as_ref()
    }

    /// The descriptor instance `instance` sends: methods sorted by name, schemas, subscriptions.
    pub fn descriptor(
        &self,
        instance: &str,
        heartbeat_ms: u64,
        state: InstanceState,
    ) -> ServiceDescriptor {
        let docs = &self.docs;
        let mut components = BTreeMap::new();
        let mut names: Vec<&String> = self.handlers.keys().collect();
        names.sort_unstable();
        let methods = names
            .into_iter()
            .map(|name| {
                let schemas = docs.schemas.get(name).cloned().unwrap_or_default();
                components.extend(schemas.components.clone());
                let description = docs.descriptions.get(name).cloned().or_else(|| {
                    schemas
                        .request
                        .as_ref()
                        .and_then(|r| r.get("description"))
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                });
                MethodDescriptor {
                    name: name.clone(),
                    description,
                    request: schemas.request.unwrap_or(Value::Null),
                    response: schemas.response,
                }
            })
            .collect();
        let subscriptions = self
            .subscriptions
            .iter()
            .map(|(s, _)| SubscriptionDescriptor {
                source: s.source.clone(),
                event_type: s.event_type.clone(),
                handler_type: match s.handler_type {
                    HandlerType::ServicePool => "service_pool",
                    HandlerType::Singleton => "singleton",
                    HandlerType::Broadcast => "broadcast",
                }
                .to_owned(),
            })
            .collect();
        ServiceDescriptor {
            service: self.service.to_string(),
            instance: instance.to_owned(),
            version: docs.version.clone().unwrap_or_else(|| "0.0.0".to_owned()),
            sent_at_ms: crate::deadline::epoch_ms_now(),
            started_at_ms: 0,
            heartbeat_ms,
            state,
            methods,
            components,
            subscriptions,
        }
    }

    /// Builds the [`Ctx`] for a call to `method` on this service.
    pub fn ctx(&self, method: &str, incoming: crate::CallContext) -> Ctx {
        Ctx::new(&self.service, method, incoming).with_outbound(self.outbound.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CallContext;
    use crate::handler::{Args, State};
    use crate::protocol::RequestBody;
    use serde::Deserialize;
    use serde_json::json;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[derive(Deserialize, utoipa::ToSchema)]
    struct Add {
        a: i64,
        b: i64,
    }

    async fn add(Args(x): Args<Add>) -> Result<i64, RpcError> {
        Ok(x.a + x.b)
    }

    async fn bump(State(n): State<Arc<AtomicU64>>, ctx: Ctx) -> Result<Value, RpcError> {
        let value = n.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(json!({"value": value, "method": ctx.method()}))
    }

    async fn fail() -> Result<(), RpcError> {
        Err(RpcError::conflict("no"))
    }

    async fn call(routes: &Routes, method: &str, body: RequestBody) -> Result<Value, RpcError> {
        let ctx = routes.ctx(method, CallContext::default());
        routes.dispatch(Call::rpc(ctx, body)).await
    }

    #[tokio::test]
    async fn dispatches_with_extractors() {
        let counter = Arc::new(AtomicU64::new(0));
        let service = Service::new("math")
            .rpc("add", add)
            .rpc("fail", fail)
            .with_state(counter.clone())
            .rpc("bump", bump);
        assert_eq!(service.methods(), ["add", "bump", "fail"]);
        let routes = service.routes();
        let sum = call(&routes, "add", RequestBody::args(vec![json!(2), json!(3)])).await;
        assert_eq!(sum, Ok(json!(5)));
        let bumped = call(&routes, "bump", RequestBody::default()).await;
        assert_eq!(bumped, Ok(json!({"value": 1, "method": "bump"})));
        assert_eq!(counter.load(Ordering::SeqCst), 1);
        let err = call(&routes, "fail", RequestBody::default()).await;
        assert_eq!(err.map_err(|e| e.kind()), Err(ErrorKind::Conflict));
        let err = call(&routes, "nope", RequestBody::default()).await;
        assert_eq!(err.map_err(|e| e.kind()), Err(ErrorKind::MethodNotFound));
        let err = call(&routes, "add", RequestBody::args(vec![json!(1)])).await;
        assert_eq!(
            err.map_err(|e| e.kind()),
            Err(ErrorKind::IncorrectSignature)
        );
    }

    #[test]
    fn validates_names() {
        assert!(Service::new("ok").rpc("fine", fail).validate().is_ok());
        assert!(Service::new("bad.name").validate().is_err());
        assert!(Service::new("ok").rpc("bad*", fail).validate().is_err());
    }
}
