//! The OpenAPI 3.1 document of a gateway, built from service descriptors: one path per
//! `service.method` with its argument and result schemas, every error as problem+json with the
//! statuses the path can return, and the gateway's own endpoints.
//!
//! The pieces arrive as JSON (descriptors travel over the mesh), so the document is assembled
//! as JSON; the schemas inside were produced by utoipa in each service.

mod components;
mod long_lived;

use mesh::describe::ServiceDescriptor;
use serde_json::{Map, Value, json};

/// Where and how the document presents the gateway.
#[derive(Debug, Clone)]
pub struct DocumentInfo {
    /// The server URL clients use (`/` for "this origin").
    pub server_url: String,
    /// The gateway's version.
    pub version: String,
    /// How clients authenticate (nothing by default).
    pub security: DocumentSecurity,
}

impl Default for DocumentInfo {
    fn default() -> Self {
        Self {
            server_url: "/".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            security: DocumentSecurity::default(),
        }
    }
}

/// The authentication the document declares: security schemes, a top-level requirement, and
/// 401/403 on the RPC paths when any is on; the document is unchanged when none is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DocumentSecurity {
    /// API keys are accepted (`X-Api-Key`, or `Authorization: Bearer`).
    pub api_keys: bool,
    /// JWTs are accepted (`Authorization: Bearer`).
    pub jwt: bool,
    /// `/openapi.json` and `/services` need credentials too.
    pub docs_protected: bool,
}

impl DocumentSecurity {
    fn is_on(&self) -> bool {
        self.api_keys || self.jwt
    }

    /// `components.securitySchemes`.
    fn schemes(&self) -> Value {
        let bearer = match (self.api_keys, self.jwt) {
            (true, true) => json!({
                "type": "http", "scheme": "bearer",
                "description": "An API key or a JWT (HS256/RS256; identity: its `sub` claim)",
            }),
            (false, true) => json!({
                "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                "description": "A JWT (HS256/RS256; identity: its `sub` claim)",
            }),
            _ => json!({"type": "http", "scheme": "bearer", "description": "An API key"}),
        };
        let mut schemes = Map::new();
        schemes.insert("bearerAuth".to_owned(), bearer);
        if self.api_keys {
            schemes.insert(
                "apiKeyAuth".to_owned(),
                json!({"type": "apiKey", "in": "header", "name": "X-Api-Key", "description": "An API key"}),
            );
        }
        Value::Object(schemes)
    }

    /// The top-level requirement: any one of the schemes; none when authentication is off.
    fn requirement(&self) -> Value {
        let mut alternatives = Vec::new();
        if self.is_on() {
            alternatives.push(json!({"bearerAuth": []}));
        }
        if self.api_keys {
            alternatives.push(json!({"apiKeyAuth": []}));
        }
        Value::Array(alternatives)
    }
}

/// Error statuses every RPC path can answer, with the component naming each.
const RPC_ERRORS: &[(&str, &str, &str)] = &[
    (
        "400",
        "BadRequest",
        "Malformed JSON, arguments that do not fit, an invalid name or header, or a remote BadRequest/ValidationError",
    ),
    (
        "404",
        "NotFound",
        "Unknown service or method, or a remote NotFound",
    ),
    (
        "408",
        "RequestTimeout",
        "The body did not arrive within the call's deadline",
    ),
    ("409", "Conflict", "A remote Conflict, e.g. a stale version"),
    (
        "413",
        "PayloadTooLarge",
        "The body is larger than the gateway's limit",
    ),
    (
        "415",
        "UnsupportedMediaType",
        "The content type is not JSON",
    ),
    (
        "429",
        "TooManyRequests",
        "A rate limit is used up for this client (only when the gateway sets limits); retry after `Retry-After` seconds",
    ),
    (
        "500",
        "RemoteError",
        "The service failed with another error (type and message, never a traceback)",
    ),
    (
        "502",
        "BadReply",
        "The service sent a reply that is not valid reply JSON",
    ),
    (
        "503",
        "Unavailable",
        "No live instance, the broker is unreachable, or a remote Unavailable",
    ),
    ("504", "DeadlineExceeded", "No reply within the deadline"),
];

/// Error statuses of RPC paths when authentication is on.
const AUTH_ERRORS: &[(&str, &str, &str)] = &[
    (
        "401",
        "Unauthorized",
        "No credential, or one that is not valid (an unknown API key, or a JWT that is expired, badly signed, or for another issuer or audience); see `WWW-Authenticate`",
    ),
    (
        "403",
        "Forbidden",
        "The caller's API key does not allow this method",
    ),
];

/// The document for `services` (sorted by name, methods by name).
pub fn document(services: &[ServiceDescriptor], info: &DocumentInfo) -> Value {
    let mut services: Vec<&ServiceDescriptor> = services.iter().collect();
    services.sort_by(|a, b| a.service.cmp(&b.service));

    let mut paths = Map::new();
    let mut schemas = components::base_schemas();
    let mut tags = Vec::new();
    for service in &services {
        tags.push(json!({
            "name": service.service,
            "description": format!("Service `{}`, version {}", service.service, service.version),
        }));
        for (name, schema) in &service.components {
            schemas
                .entry(name.clone())
                .or_insert_with(|| schema.clone());
        }
        for method in &service.methods {
            paths.insert(
                format!("/rpc/{}/{}", service.service, method.name),
                json!({"post": rpc_operation(&service.service, method, &info.security)}),
            );
        }
    }
    paths.extend(gateway_paths(&info.security));
    paths.extend(long_lived::paths(&info.security));
    schemas.extend(long_lived::schemas());
    let mut components = json!({
        "schemas": schemas,
        "parameters": components::parameters(),
        "responses": components::responses(&info.security),
        "headers": {
            "X-Request-Id": {
                "description": "The request id (the client's, or one the gateway made)",
                "schema": {"type": "string"},
            },
            "RateLimit-Policy": {
                "description": "The rate limits this call counts against, when the gateway sets any (draft-ietf-httpapi-ratelimit-headers): e.g. `\"kv.*\";q=10;w=2, \"default\";q=200;w=2`, each a bucket of `q` calls that an empty one takes `w` seconds to refill",
                "schema": {"type": "string"},
            },
            "RateLimit": {
                "description": "What is left of each limit for this client: e.g. `\"default\";r=42;t=1`, `r` calls left, more in `t` seconds",
                "schema": {"type": "string"},
            },
            "Retry-After": {
                "description": "Whole seconds to wait before retrying",
                "schema": {"type": "integer", "minimum": 1},
            },
        },
    });
    if info.security.is_on()
        && let Some(components) = components.as_object_mut()
    {
        components.insert("securitySchemes".to_owned(), info.security.schemes());
    }

    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Warren gateway",
            "version": info.version,
            "description": "HTTP/JSON front of a Warren mesh. `POST /rpc/{service}/{method}` calls a method: the body is a JSON object of keyword arguments (a JSON array of positional arguments is accepted too); the answer is the method's result, or an RFC 9457 problem document.",
            "license": {"name": "MIT OR Apache-2.0", "identifier": "MIT OR Apache-2.0"},
        },
        "servers": [{"url": info.server_url, "description": "this gateway"}],
        "security": info.security.requirement(),
        "tags": tags,
        "paths": paths,
        "components": components,
    })
}

fn rpc_operation(
    service: &str,
    method: &mesh::describe::MethodDescriptor,
    security: &DocumentSecurity,
) -> Value {
    let request = match &method.request {
        Value::Null => json!({"type": "object", "additionalProperties": false, "maxProperties": 0}),
        schema => closed_object(schema.clone()),
    };
    let takes_required = request
        .get("required")
        .and_then(Value::as_array)
        .is_some_and(|r| !r.is_empty());
    let mut responses = Map::new();
    responses.insert(
        "200".to_owned(),
        json!({
            "description": "The method's result",
            "headers": {
                "X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"},
                "RateLimit-Policy": {"$ref": "#/components/headers/RateLimit-Policy"},
                "RateLimit": {"$ref": "#/components/headers/RateLimit"},
            },
            "content": {"application/json": {"schema": method.response}},
        }),
    );
    responses.insert("202".to_owned(), long_lived::accepted_response());
    let auth_errors = if security.is_on() { AUTH_ERRORS } else { &[] };
    for (status, component, _) in RPC_ERRORS.iter().chain(auth_errors) {
        responses.insert(
            (*status).to_owned(),
            json!({"$ref": format!("#/components/responses/{component}")}),
        );
    }
    let summary = method
        .description
        .as_deref()
        .and_then(|d| d.lines().next())
        .unwrap_or(&method.name)
        .to_owned();
    json!({
        "operationId": format!("{service}_{}", method.name),
        "tags": [service],
        "summary": summary,
        "description": method.description.clone().unwrap_or_default(),
        "parameters": [
            {"$ref": "#/components/parameters/X-Request-Id"},
            {"$ref": "#/components/parameters/X-Timeout-Ms"},
            {"$ref": "#/components/parameters/Prefer"},
        ],
        "requestBody": {
            "required": takes_required,
            "content": {"application/json": {"schema": request}},
        },
        "responses": responses,
    })
}

/// Keyword arguments the method does not take are refused (`IncorrectSignature`), so the
/// schema says so.
fn closed_object(mut schema: Value) -> Value {
    let is_object = schema.get("type") == Some(&json!("object"));
    if let Some(object) = schema.as_object_mut().filter(|_| is_object) {
        object
            .entry("additionalProperties")
            .or_insert(Value::Bool(false));
    }
    schema
}

fn gateway_paths(security: &DocumentSecurity) -> Map<String, Value> {
    let status = |description: &str, ok: &str| {
        json!({
            "description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Status"}}},
            "x-ok": ok,
        })
    };
    let mut paths = Map::new();
    paths.insert("/healthz".to_owned(), json!({"get": {
        "operationId": "gateway_healthz", "tags": ["gateway"], "summary": "The process is alive",
        "responses": {"200": strip_ok(status("Alive", "ok"))},
    }}));
    paths.insert(
        "/readyz".to_owned(),
        json!({"get": {
            "operationId": "gateway_readyz", "tags": ["gateway"],
            "summary": "Connected to the mesh and consuming replies",
            "responses": {
                "200": strip_ok(status("Ready", "ready")),
                "503": strip_ok(status("Not ready", "not ready")),
            },
        }}),
    );
    paths.insert(
        "/services".to_owned(),
        json!({"get": {
            "operationId": "gateway_services", "tags": ["gateway"],
            "summary": "Known services, their methods and live instances",
            "responses": {"200": {
                "description": "The services",
                "content": {"application/json": {"schema": {
                    "type": "array", "items": {"$ref": "#/components/schemas/ServiceOverview"},
                }}},
            }},
        }}),
    );
    paths.insert(
        "/openapi.json".to_owned(),
        json!({"get": {
            "operationId": "gateway_openapi", "tags": ["gateway"], "summary": "This document",
            "responses": {"200": {
                "description": "The OpenAPI document",
                "content": {"application/json": {"schema": {"type": "object"}}},
            }},
        }}),
    );
    // With authentication on, the probes stay public, and the docs unless protected.
    if security.is_on() {
        for (path, item) in &mut paths {
            let public =
                matches!(path.as_str(), "/healthz" | "/readyz") || !security.docs_protected;
            if let Some(get) = item
                .get_mut("get")
                .and_then(Value::as_object_mut)
                .filter(|_| public)
            {
                get.insert("security".to_owned(), json!([]));
            }
        }
    }
    paths
}

fn strip_ok(mut response: Value) -> Value {
    if let Some(object) = response.as_object_mut() {
        object.remove("x-ok");
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh::describe::{InstanceState, MethodDescriptor};
    use std::collections::BTreeMap;

    #[test]
    fn one_path_per_method_with_problem_errors() {
        let d = ServiceDescriptor {
            service: "greeting_service".into(),
            instance: "i".into(),
            version: "0.1.0".into(),
            sent_at_ms: 0,
            started_at_ms: 0,
            heartbeat_ms: 5000,
            state: InstanceState::Up,
            methods: vec![MethodDescriptor {
                name: "hello".into(),
                description: Some("Greets someone.".into()),
                request: json!({"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}),
                response: json!({"type": "string"}),
                idempotent: false,
            }],
            components: BTreeMap::new(),
            subscriptions: vec![],
        };
        let doc = document(&[d], &DocumentInfo::default());
        assert_eq!(doc["openapi"], "3.1.0");
        let op = &doc["paths"]["/rpc/greeting_service/hello"]["post"];
        assert_eq!(op["operationId"], "greeting_service_hello");
        assert_eq!(op["summary"], "Greets someone.");
        assert_eq!(op["requestBody"]["required"], true);
        let schema = &op["requestBody"]["content"]["application/json"]["schema"];
        assert_eq!(schema["additionalProperties"], false);
        assert_eq!(
            op["responses"]["200"]["content"]["application/json"]["schema"]["type"],
            "string"
        );
        for status in [
            "400", "404", "408", "409", "413", "415", "429", "500", "502", "503", "504",
        ] {
            assert!(op["responses"][status]["$ref"].is_string(), "{status}");
        }
        let limited = &doc["components"]["responses"]["TooManyRequests"]["headers"];
        for name in ["Retry-After", "RateLimit-Policy", "RateLimit"] {
            let reference = format!("#/components/headers/{name}");
            assert_eq!(limited[name]["$ref"], reference.as_str());
            assert!(doc["components"]["headers"][name].is_object(), "{name}");
        }
        let ok = &op["responses"]["200"]["headers"];
        assert_eq!(ok["RateLimit"]["$ref"], "#/components/headers/RateLimit");
        assert!(doc["paths"]["/healthz"]["get"].is_object());
        assert_eq!(doc["info"]["license"]["identifier"], "MIT OR Apache-2.0");
    }
}
