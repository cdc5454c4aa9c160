//! Service descriptors: what a service tells the mesh about itself — its name, instance,
//! version, and for each RPC method the JSON Schemas of its arguments and result (derived from
//! the handler's types with utoipa's `ToSchema`) — so a gateway can list services, know which
//! have live instances, and build an OpenAPI document.
//!
//! Descriptors travel as ordinary events from source [`DESCRIPTOR_SOURCE`], type
//! [`DESCRIPTOR_EVENT`]: at start, on every heartbeat, and once more (state `down`) at a
//! graceful stop. Both transports carry them like any other event.

use crate::ctx::Ctx;
use crate::events::{HandlerType, Subscription};
use crate::handler::{Args, FromCall, IntoReply, Payload, State};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::Schema;

/// The source descriptors are dispatched from (`warren.events` on AMQP).
pub const DESCRIPTOR_SOURCE: &str = "warren";

/// The event type of descriptors.
pub const DESCRIPTOR_EVENT: &str = "service_descriptor";

/// The subscription that follows every service's descriptors, for a process that wants to know
/// the mesh (a gateway's registry, `warren shell`'s completion): transient and broadcast, so
/// each follower hears every descriptor and its queue goes away with it; handled by
/// `on_descriptor` (a handler taking `Payload<ServiceDescriptor>`). A process that only
/// follows is not announced itself.
pub fn descriptor_subscription() -> Subscription {
    Subscription::new(DESCRIPTOR_SOURCE, DESCRIPTOR_EVENT)
        .method("on_descriptor")
        .transient()
}

/// Whether an instance is serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstanceState {
    /// Serving; alive until `sent_at_ms + 3 * heartbeat_ms` unless another descriptor comes.
    Up,
    /// Stopped gracefully.
    Down,
}

/// One RPC method of a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodDescriptor {
    /// The method's name.
    pub name: String,
    /// What it does (the `Service::doc` text, or the argument type's doc comment).
    #[serde(default)]
    pub description: Option<String>,
    /// JSON Schema of the keyword arguments, `null` when the method takes none.
    #[serde(default)]
    pub request: Value,
    /// JSON Schema of the result.
    #[serde(default)]
    pub response: Value,
    /// Whether the method is safe to run twice ([`crate::Service::idempotent`]): a caller may
    /// publish again a request whose fate a lost connection left unknown. Sent only when true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub idempotent: bool,
}

/// One event subscription of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionDescriptor {
    /// The dispatching service.
    pub source: String,
    /// The event type.
    pub event_type: String,
    /// `service_pool`, `singleton` or `broadcast`.
    pub handler_type: String,
    /// Where its events go once every attempt failed (`<queue>.dead-letter` on AMQP, see
    /// `warren dead-letters`); absent for a transient subscription, which keeps none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_queue: Option<String>,
}

/// What one instance of a service says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceDescriptor {
    /// The service's name.
    pub service: String,
    /// The instance's id.
    pub instance: String,
    /// The service's version.
    pub version: String,
    /// When this descriptor was sent, unix epoch milliseconds.
    pub sent_at_ms: u64,
    /// When this incarnation of the instance started, unix epoch milliseconds: a restart under
    /// the same instance id starts a newer one, whose word beats the old process's.
    #[serde(default)]
    pub started_at_ms: u64,
    /// How often the instance sends one.
    pub heartbeat_ms: u64,
    /// Up, or stopped.
    pub state: InstanceState,
    /// Its RPC methods.
    #[serde(default)]
    pub methods: Vec<MethodDescriptor>,
    /// Named schemas the method schemas refer to (`#/components/schemas/<name>`).
    #[serde(default)]
    pub components: BTreeMap<String, Value>,
    /// Its event subscriptions.
    #[serde(default)]
    pub subscriptions: Vec<SubscriptionDescriptor>,
}

/// The schemas of one handler, computed when it is registered.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HandlerSchemas {
    /// Arguments schema, when the handler takes `Args<T>`.
    pub request: Option<Value>,
    /// Result schema.
    pub response: Value,
    /// Named schemas referred to.
    pub components: BTreeMap<String, Value>,
}

/// What a service says about itself besides its names: its version, each method's schemas and
/// description.
#[derive(Debug, Clone, Default)]
pub(crate) struct Docs {
    pub(crate) version: Option<String>,
    pub(crate) schemas: BTreeMap<String, HandlerSchemas>,
    pub(crate) descriptions: BTreeMap<String, String>,
    pub(crate) idempotent: BTreeSet<String>,
}

impl Docs {
    /// The descriptor of instance `instance` of `service` with `methods` and `subscriptions`:
    /// methods sorted by name, with their schemas and descriptions.
    pub(crate) fn descriptor<'a>(
        &self,
        service: &str,
        methods: impl Iterator<Item = &'a str>,
        subscriptions: impl Iterator<Item = &'a Subscription>,
        instance: &str,
        heartbeat_ms: u64,
        state: InstanceState,
    ) -> ServiceDescriptor {
        let mut components = BTreeMap::new();
        let mut names: Vec<&str> = methods.collect();
        names.sort_unstable();
        let methods = names
            .into_iter()
            .map(|name| {
                let schemas = self.schemas.get(name).cloned().unwrap_or_default();
                components.extend(schemas.components.clone());
                let description = self.descriptions.get(name).cloned().or_else(|| {
                    schemas
                        .request
                        .as_ref()
                        .and_then(|r| r.get("description"))
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                });
                MethodDescriptor {
                    name: name.to_owned(),
                    description,
                    request: schemas.request.unwrap_or(Value::Null),
                    response: schemas.response,
                    idempotent: self.idempotent.contains(name),
                }
            })
            .collect();
        let subscriptions = subscriptions
            .map(|s| SubscriptionDescriptor {
                source: s.source.clone(),
                event_type: s.event_type.clone(),
                handler_type: match s.handler_type {
                    HandlerType::ServicePool => "service_pool",
                    HandlerType::Singleton => "singleton",
                    HandlerType::Broadcast => "broadcast",
                }
                .to_owned(),
                dead_letter_queue: (!s.transient)
                    .then(|| crate::events::dead_letter_queue(&s.queue(service, instance))),
            })
            .collect();
        ServiceDescriptor {
            service: service.to_owned(),
            instance: instance.to_owned(),
            version: self.version.clone().unwrap_or_else(|| "0.0.0".to_owned()),
            sent_at_ms: crate::deadline::epoch_ms_now(),
            started_at_ms: 0,
            heartbeat_ms,
            state,
            methods,
            components,
            subscriptions,
        }
    }
}

/// Named schemas gathered while describing, as utoipa collects them.
pub type Components = Vec<(String, RefOr<Schema>)>;

/// An extractor's part in a method's description.
pub trait DescribeExtractor {
    /// The arguments schema this extractor stands for, if any.
    fn request_schema(_components: &mut Components) -> Option<RefOr<Schema>> {
        None
    }
}

impl<T: ToSchema> DescribeExtractor for Args<T> {
    fn request_schema(components: &mut Components) -> Option<RefOr<Schema>> {
        T::schemas(components);
        Some(T::schema())
    }
}

impl<S> DescribeExtractor for State<S> {}

impl DescribeExtractor for Ctx {}

impl<T> DescribeExtractor for Payload<T> {}

/// A handler result's part in a method's description.
pub trait DescribeReply: IntoReply {
    /// The result schema.
    fn response_schema(components: &mut Components) -> RefOr<Schema>;
}

impl<T: ToSchema + Serialize, E: Into<crate::RpcError>> DescribeReply for Result<T, E> {
    fn response_schema(components: &mut Components) -> RefOr<Schema> {
        T::schemas(components);
        T::schema()
    }
}

/// Describes a handler from its signature; implemented for every async fn handler whose
/// extractors and result describe themselves (`Args<T>` with `T: ToSchema`, a
/// `Result<R: ToSchema, _>`).
pub trait Describe<T, S> {
    /// The handler's schemas.
    fn schemas() -> HandlerSchemas;
}

pub(crate) fn finish(
    request: Option<RefOr<Schema>>,
    response: RefOr<Schema>,
    components: Components,
) -> HandlerSchemas {
    let to_json = |schema: &RefOr<Schema>| serde_json::to_value(schema).unwrap_or(Value::Null);
    HandlerSchemas {
        request: request.as_ref().map(to_json),
        response: to_json(&response),
        components: components
            .iter()
            .map(|(name, schema)| (name.clone(), to_json(schema)))
            .collect(),
    }
}

macro_rules! impl_describe {
    ($($ty:ident),*) => {
        #[allow(non_snake_case, unused_mut)]
        impl<F, Fut, R, S, $($ty,)*> Describe<($($ty,)*), S> for F
        where
            F: Fn($($ty,)*) -> Fut,
            Fut: std::future::Future<Output = R>,
            R: DescribeReply,
            $($ty: FromCall<S> + DescribeExtractor,)*
        {
            fn schemas() -> HandlerSchemas {
                let mut components = Components::new();
                let mut request = None;
                $(
                    if request.is_none() {
                        request = $ty::request_schema(&mut components);
                    }
                )*
                let response = R::response_schema(&mut components);
                finish(request, response, components)
            }
        }
    };
}

impl_describe!();
impl_describe!(T1);
impl_describe!(T1, T2);
impl_describe!(T1, T2, T3);
impl_describe!(T1, T2, T3, T4);
impl_describe!(T1, T2, T3, T4, T5);
impl_describe!(T1, T2, T3, T4, T5, T6);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RpcError;
    use serde::Deserialize;
    use serde_json::json;

    /// Greets someone.
    #[derive(Deserialize, ToSchema)]
    #[allow(dead_code)]
    struct Hello {
        /// Who to greet.
        name: String,
    }

    async fn hello(Args(h): Args<Hello>) -> Result<String, RpcError> {
        Ok(h.name)
    }

    async fn nothing(_ctx: Ctx) -> Result<(), RpcError> {
        Ok(())
    }

    fn schemas<T, S, H: Describe<T, S>>(_: &H) -> HandlerSchemas {
        H::schemas()
    }

    #[test]
    fn schemas_come_from_the_signature() {
        let s = schemas::<_, (), _>(&hello);
        let request = s.request.unwrap_or_default();
        assert_eq!(request["type"], "object");
        assert_eq!(request["description"], "Greets someone.");
        assert_eq!(request["properties"]["name"]["type"], "string");
        assert_eq!(request["required"], json!(["name"]));
        assert_eq!(s.response["type"], "string");
        let s = schemas::<_, (), _>(&nothing);
        assert_eq!(s.request, None);
    }

    #[test]
    fn descriptors_round_trip() {
        let d = ServiceDescriptor {
            service: "s".into(),
            instance: "i".into(),
            version: "1".into(),
            sent_at_ms: 5,
            started_at_ms: 1,
            heartbeat_ms: 1000,
            state: InstanceState::Up,
            methods: vec![],
            components: BTreeMap::new(),
            subscriptions: vec![],
        };
        let json = serde_json::to_value(&d).unwrap_or_default();
        assert_eq!(json["state"], "up");
        assert_eq!(
            serde_json::from_value::<ServiceDescriptor>(json).ok(),
            Some(d)
        );
    }
}
