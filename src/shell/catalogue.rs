//! What the shell knows of the mesh: the services' descriptors, heard as the gateway hears them
//! (docs/architecture.md §4), for completion and `help` only — a call never waits for one.

use mesh::describe::{MethodDescriptor, ServiceDescriptor};
use mesh::{ConnectError, Mesh, Payload, RpcError, RunningService, Service, State};
use serde_json::Value;
use std::sync::Arc;
use warren_gateway::{Registry, ServiceOverview};

/// The name the shell's own subscriptions run under (their queues say `shell`).
pub const SHELL: &str = "shell";

/// The services heard of, by their descriptors.
#[derive(Clone, Default)]
pub struct Catalogue {
    registry: Arc<Registry>,
}

impl Catalogue {
    /// Starts following descriptors on `mesh`; they stop coming when the returned service
    /// stops.
    pub async fn follow(mesh: &Mesh) -> Result<(Self, RunningService), ConnectError> {
        let catalogue = Self::default();
        let feed = Service::new(SHELL)
            .subscribe(mesh::describe::descriptor_subscription(), on_descriptor)
            .with_state(catalogue.registry.clone());
        let running = mesh.serve(feed).await?;
        Ok((catalogue, running))
    }

    /// Every service heard of, live or not, by name.
    pub fn overview(&self) -> Vec<ServiceOverview> {
        self.registry.overview()
    }

    /// The latest descriptor of `service`, when it has a live instance.
    pub fn descriptor(&self, service: &str) -> Option<ServiceDescriptor> {
        self.registry
            .live_descriptors()
            .into_iter()
            .find(|d| d.service == service)
    }

    /// The names of the services with a live instance.
    pub fn services(&self) -> Vec<String> {
        self.registry
            .live_descriptors()
            .into_iter()
            .map(|d| d.service)
            .collect()
    }

    /// The methods of `service`, by name.
    pub fn methods(&self, service: &str) -> Vec<MethodDescriptor> {
        self.descriptor(service)
            .map(|d| d.methods)
            .unwrap_or_default()
    }

    /// The event types of `source` some live service subscribes to.
    pub fn event_types(&self, source: &str) -> Vec<String> {
        let mut types: Vec<String> = self
            .registry
            .live_descriptors()
            .into_iter()
            .flat_map(|d| d.subscriptions)
            .filter(|s| s.source == source)
            .map(|s| s.event_type)
            .collect();
        types.sort_unstable();
        types.dedup();
        types
    }

    /// The keyword arguments of `service.method`: (name, schema, required), from its schema.
    pub fn parameters(&self, service: &str, method: &str) -> Vec<(String, Value, bool)> {
        let Some(descriptor) = self.descriptor(service) else {
            return Vec::new();
        };
        let Some(request) = descriptor
            .methods
            .iter()
            .find(|m| m.name == method)
            .map(|m| resolve(&m.request, &descriptor))
        else {
            return Vec::new();
        };
        let required: Vec<&str> = request["required"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        request["properties"]
            .as_object()
            .map(|properties| {
                properties
                    .iter()
                    .map(|(name, schema)| {
                        let schema = resolve(schema, &descriptor);
                        (name.clone(), schema, required.contains(&name.as_str()))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// `schema`, or the named schema it refers to (`#/components/schemas/<name>`).
fn resolve(schema: &Value, descriptor: &ServiceDescriptor) -> Value {
    schema["$ref"]
        .as_str()
        .and_then(|r| r.rsplit('/').next())
        .and_then(|name| descriptor.components.get(name))
        .unwrap_or(schema)
        .clone()
}

async fn on_descriptor(
    State(registry): State<Arc<Registry>>,
    Payload(descriptor): Payload<ServiceDescriptor>,
) -> Result<(), RpcError> {
    registry.apply(descriptor);
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use mesh::describe::{InstanceState, SubscriptionDescriptor};
    use serde_json::json;

    /// A catalogue that heard `greeting_service` (its `hello` by a reference) and an indexer
    /// following `library.book_added`.
    pub(crate) fn heard() -> Catalogue {
        let catalogue = Catalogue::default();
        let now = u64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or_default(),
        )
        .unwrap_or_default();
        let descriptor = |service: &str, methods: Vec<MethodDescriptor>| ServiceDescriptor {
            service: service.into(),
            instance: "i".into(),
            version: "1.0.0".into(),
            sent_at_ms: now,
            started_at_ms: 1,
            heartbeat_ms: 5_000,
            state: InstanceState::Up,
            methods,
            components: [(
                "Hello".to_owned(),
                json!({"type": "object", "required": ["name"],
                       "properties": {"name": {"type": "string", "description": "Who to greet."}}}),
            )]
            .into_iter()
            .collect(),
            subscriptions: vec![],
        };
        let method = |name: &str, request: Value| MethodDescriptor {
            name: name.into(),
            description: Some(format!("{name}s")),
            request,
            response: json!({"type": "string"}),
            idempotent: false,
        };
        catalogue.registry.apply(descriptor(
            "greeting_service",
            vec![
                method("hello", json!({"$ref": "#/components/schemas/Hello"})),
                method("help_me", Value::Null),
            ],
        ));
        let mut indexer = descriptor("indexer", vec![method("search", Value::Null)]);
        indexer.subscriptions = vec![SubscriptionDescriptor {
            source: "library".into(),
            event_type: "book_added".into(),
            handler_type: "service_pool".into(),
            dead_letter_queue: None,
        }];
        catalogue.registry.apply(indexer);
        catalogue
    }

    #[test]
    fn parameters_come_from_the_schema_or_its_reference() {
        let catalogue = heard();
        let parameters = catalogue.parameters("greeting_service", "hello");
        assert_eq!(parameters.len(), 1);
        assert_eq!(parameters[0].0, "name");
        assert_eq!(parameters[0].1["type"], "string");
        assert!(parameters[0].2);
        assert!(
            catalogue
                .parameters("greeting_service", "help_me")
                .is_empty()
        );
        assert!(catalogue.parameters("nobody", "x").is_empty());
        assert_eq!(catalogue.event_types("library"), vec!["book_added"]);
        assert_eq!(catalogue.services(), vec!["greeting_service", "indexer"]);
    }
}
