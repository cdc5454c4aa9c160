//! [`Service`]: a name plus handlers, declared the way axum declares routes. Like axum's
//! `Router<S>`, a `Service<S>` is declared without its state and takes it when it is served, so
//! its descriptor (methods, schemas, subscriptions) exists without opening anything.

use crate::describe::{Describe, Docs, InstanceState, ServiceDescriptor};
use crate::events::Subscription;
use crate::handler::{Call, Handler};
use crate::protocol::{NameError, validate_name};
use crate::routes::{BoxedHandler, ErasedHandler, Routes};
use crate::timer::Timer;
use std::collections::HashMap;
use std::sync::Arc;

/// A service: its name, its RPC methods, event subscriptions and timers, all of whose handlers
/// share a state of type `S` (none for `S = ()`).
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
/// // Declared without its state: its descriptor is there already.
/// let service = Service::new("greeting_service")
///     .rpc("hello", hello)
///     .rpc("greeting", greeting);
/// assert_eq!(service.methods(), ["greeting", "hello"]);
/// // Given its state, it can be served (`Mesh::serve`, or the runtime's builder).
/// let ready: Service = service.with_state(Arc::new("Hi".to_owned()));
/// assert_eq!(ready.name(), "greeting_service");
/// ```
pub struct Service<S = ()> {
    name: String,
    methods: HashMap<String, BoxedHandler<S>>,
    subscriptions: Vec<(Subscription, BoxedHandler<S>)>,
    timers: Vec<(Timer, BoxedHandler<S>)>,
    docs: Docs,
}

impl<S> Clone for Service<S> {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            methods: self.methods.clone(),
            subscriptions: self.subscriptions.clone(),
            timers: self.timers.clone(),
            docs: self.docs.clone(),
        }
    }
}

impl<S: Clone + Send + Sync + 'static> Service<S> {
    /// A service called `name`, with no handlers yet. Names follow the gateway's rule
    /// (`^[A-Za-z_][A-Za-z0-9_-]{0,127}$`); see [`Service::validate`].
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            methods: HashMap::new(),
            subscriptions: Vec::new(),
            timers: Vec::new(),
            docs: Docs::default(),
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
        self.methods.insert(method, erase(handler));
        self
    }

    /// Describes `method` for readers of the API (otherwise its argument type's doc comment).
    pub fn doc(mut self, method: impl Into<String>, description: impl Into<String>) -> Self {
        self.docs
            .descriptions
            .insert(method.into(), description.into());
        self
    }

    /// Declares `method` safe to run twice (a read, or a write keyed by what the caller sends):
    /// over AMQP, a caller that lost its connection between publishing a request and the
    /// broker's confirm may then publish it again, rather than fail the call. The gateway
    /// learns it from the service's descriptor.
    pub fn idempotent(mut self, method: impl Into<String>) -> Self {
        self.docs.idempotent.insert(method.into());
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
        self.subscriptions.push((subscription, erase(handler)));
        self
    }

    /// Runs `handler` on `timer`'s schedule in every instance of the service (or, for a
    /// [`Timer::once_per_service`], in the one instance holding the timer's lease), with the
    /// same extractors as an RPC handler (its [`crate::Ctx`] can call and dispatch). A tick
    /// that comes while the last run still runs is skipped and counted.
    pub fn timer<H, T>(mut self, timer: Timer, handler: H) -> Self
    where
        H: Handler<T, S>,
    {
        self.timers.push((timer, erase(handler)));
        self
    }

    /// The service's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The names of its RPC methods, sorted.
    pub fn methods(&self) -> Vec<&str> {
        let mut methods: Vec<&str> = self.methods.keys().map(String::as_str).collect();
        methods.sort_unstable();
        methods
    }

    /// The event subscriptions.
    pub fn subscriptions(&self) -> impl Iterator<Item = &Subscription> {
        self.subscriptions.iter().map(|(s, _)| s)
    }

    /// Checks the service name, every method and timer name and every subscription.
    pub fn validate(&self) -> Result<(), (String, NameError)> {
        validate_name(&self.name).map_err(|e| (self.name.clone(), e))?;
        let timers = self.timers.iter().map(|(t, _)| t.name());
        for method in self.methods.keys().map(String::as_str).chain(timers) {
            validate_name(method).map_err(|e| (method.to_owned(), e))?;
        }
        for (timer, _) in self.timers.iter().filter(|(t, _)| t.is_once_per_service()) {
            crate::lease::validate_lease_names(&self.name, timer.name())
                .map_err(|e| (timer.name().to_owned(), e))?;
        }
        for (subscription, _) in &self.subscriptions {
            subscription.validate()?;
        }
        Ok(())
    }

    /// The descriptor an instance `instance` of this service sends: methods sorted by name,
    /// their schemas, the subscriptions. No state is needed: this is what `warren openapi`
    /// documents a service from.
    pub fn descriptor(
        &self,
        instance: &str,
        heartbeat_ms: u64,
        state: InstanceState,
    ) -> ServiceDescriptor {
        let methods = self.methods.keys().map(String::as_str);
        let subscriptions = self.subscriptions.iter().map(|(s, _)| s);
        self.docs.descriptor(
            &self.name,
            methods,
            subscriptions,
            instance,
            heartbeat_ms,
            state,
        )
    }

    /// The service with its state: every handler gets `state` (cloned per call) through
    /// [`crate::State`]. This is what a [`crate::Dependency`] opens, or a value of your own.
    pub fn with_state(self, state: S) -> Service {
        let bind = |handler: BoxedHandler<S>| -> ErasedHandler {
            let state = state.clone();
            Arc::new(move |call: Call, ()| handler(call, state.clone()))
        };
        Service {
            name: self.name,
            methods: self
                .methods
                .into_iter()
                .map(|(name, handler)| (name, bind(handler)))
                .collect(),
            subscriptions: self
                .subscriptions
                .into_iter()
                .map(|(subscription, handler)| (subscription, bind(handler)))
                .collect(),
            timers: self
                .timers
                .into_iter()
                .map(|(timer, handler)| (timer, bind(handler)))
                .collect(),
            docs: self.docs,
        }
    }
}

impl Service {
    /// The handlers as the runtime serves them.
    pub(crate) fn routes(&self) -> Routes {
        Routes::new(
            &self.name,
            self.methods.clone(),
            self.subscriptions.clone(),
            self.timers.clone(),
            self.docs.clone(),
        )
    }
}

fn erase<H, T, S>(handler: H) -> BoxedHandler<S>
where
    H: Handler<T, S>,
    S: Send + Sync + 'static,
{
    Arc::new(move |call: Call, state: S| handler.clone().call(call, state))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call_context::CallContext;
    use crate::error::{ErrorKind, RpcError};
    use crate::handler::{Args, State};
    use crate::protocol::Arguments;
    use serde::Deserialize;
    use serde_json::{Value, json};
    use std::sync::atomic::{AtomicU64, Ordering};

    #[derive(Deserialize, utoipa::ToSchema)]
    struct Add {
        a: i64,
        b: i64,
    }

    async fn add(Args(x): Args<Add>) -> Result<i64, RpcError> {
        Ok(x.a + x.b)
    }

    async fn bump(State(n): State<Arc<AtomicU64>>, ctx: crate::Ctx) -> Result<Value, RpcError> {
        let value = n.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(json!({"value": value, "method": ctx.method()}))
    }

    async fn fail() -> Result<(), RpcError> {
        Err(RpcError::conflict("no"))
    }

    async fn call(routes: &Routes, method: &str, body: Arguments) -> Result<Value, RpcError> {
        let ctx = routes.ctx(method, CallContext::default());
        routes.dispatch(Call::rpc(ctx, body)).await
    }

    #[tokio::test]
    async fn dispatches_with_extractors() {
        let counter = Arc::new(AtomicU64::new(0));
        let service = Service::new("math")
            .rpc("add", add)
            .rpc("fail", fail)
            .rpc("bump", bump);
        assert_eq!(service.methods(), ["add", "bump", "fail"]);
        let routes = service.with_state(counter.clone()).routes();
        let sum = call(&routes, "add", Arguments::args(vec![json!(2), json!(3)])).await;
        assert_eq!(sum, Ok(json!(5)));
        let bumped = call(&routes, "bump", Arguments::default()).await;
        assert_eq!(bumped, Ok(json!({"value": 1, "method": "bump"})));
        assert_eq!(counter.load(Ordering::SeqCst), 1);
        let err = call(&routes, "fail", Arguments::default()).await;
        assert_eq!(err.map_err(|e| e.kind()), Err(ErrorKind::Conflict));
        let err = call(&routes, "nope", Arguments::default()).await;
        assert_eq!(err.map_err(|e| e.kind()), Err(ErrorKind::MethodNotFound));
        let err = call(&routes, "add", Arguments::args(vec![json!(1)])).await;
        assert_eq!(
            err.map_err(|e| e.kind()),
            Err(ErrorKind::IncorrectSignature)
        );
    }

    #[test]
    fn a_stateful_service_is_described_without_its_state() {
        let service: Service<Arc<AtomicU64>> = Service::new("counter").rpc("bump", bump);
        let descriptor = service.descriptor("i", 0, InstanceState::Up);
        let names: Vec<&str> = descriptor.methods.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["bump"]);
    }

    #[test]
    fn idempotent_methods_are_declared_in_the_descriptor() {
        let service: Service = Service::new("math")
            .rpc("add", add)
            .rpc("fail", fail)
            .idempotent("add");
        let descriptor = service.descriptor("i", 0, InstanceState::Up);
        let flags: Vec<(&str, bool)> = descriptor
            .methods
            .iter()
            .map(|m| (m.name.as_str(), m.idempotent))
            .collect();
        assert_eq!(flags, [("add", true), ("fail", false)]);
        // Sent only when true, so descriptors stay as they were for every other method.
        let json = serde_json::to_value(&descriptor.methods[1]).unwrap_or_default();
        assert!(json.get("idempotent").is_none(), "{json}");
    }

    #[test]
    fn validates_names() {
        let ok: Service = Service::new("ok").rpc("fine", fail);
        assert!(ok.validate().is_ok());
        assert!(Service::<()>::new("bad.name").validate().is_err());
        let bad: Service = Service::new("ok").rpc("bad*", fail);
        assert!(bad.validate().is_err());
    }
}
