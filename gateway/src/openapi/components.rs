//! The document's shared components: the problem and status schemas, the header parameters
//! every call takes, and the error responses every RPC path refers to.

use super::{AUTH_ERRORS, DocumentSecurity, RPC_ERRORS, long_lived};
use serde_json::{Map, Value, json};

pub(super) fn base_schemas() -> Map<String, Value> {
    let mut schemas = Map::new();
    schemas.insert(
        "Problem".to_owned(),
        json!({
            "type": "object",
            "description": "An RFC 9457 problem document",
            "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": {"type": "string", "description": "urn:warren:problem:<slug>"},
                "title": {"type": "string"},
                "status": {"type": "integer", "minimum": 400, "maximum": 599},
                "detail": {"type": "string"},
                "service": {"type": "string"},
                "method": {"type": "string"},
                "exc_type": {"type": "string", "description": "The remote error's type"},
                "request_id": {"type": "string"},
            },
        }),
    );
    schemas.insert(
        "ServiceOverview".to_owned(),
        json!({
            "type": "object",
            "required": ["name", "methods", "instances"],
            "properties": {
                "name": {"type": "string"},
                "version": {"type": ["string", "null"]},
                "methods": {"type": "array", "items": {"type": "string"}},
                "instances": {"type": "array", "items": {
                    "type": "object",
                    "required": ["id", "version"],
                    "properties": {"id": {"type": "string"}, "version": {"type": "string"}},
                }},
            },
        }),
    );
    schemas.insert(
        "Status".to_owned(),
        json!({
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"type": "string"}, "detail": {"type": "string"}},
        }),
    );
    schemas
}

pub(super) fn parameters() -> Value {
    json!({
        "X-Request-Id": {
            "name": "X-Request-Id",
            "in": "header",
            "required": false,
            "description": "Kept when it is 1-128 visible ASCII characters, replaced by a new id otherwise; echoed back and used as the root of the call id stack",
            "schema": {"type": "string"},
        },
        "Prefer": long_lived::prefer_parameter(),
        "X-Timeout-Ms": {
            "name": "X-Timeout-Ms",
            "in": "header",
            "required": false,
            "description": "This call's deadline in milliseconds; larger values are capped at the gateway's maximum",
            "schema": {"type": "integer", "minimum": 1},
        },
    })
}

pub(super) fn responses(security: &DocumentSecurity) -> Value {
    let mut responses = Map::new();
    let auth_errors = if security.is_on() { AUTH_ERRORS } else { &[] };
    for (_, component, description) in RPC_ERRORS.iter().chain(auth_errors) {
        let mut response = json!({
            "description": description,
            "headers": {"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}},
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
        });
        if auth_errors.iter().any(|(_, c, _)| c == component) {
            response["headers"]["WWW-Authenticate"] = json!({
                "description": "The challenge, e.g. `Bearer realm=\"warren\", error=\"invalid_token\"`",
                "schema": {"type": "string"},
            });
        }
        if *component == "TooManyRequests" {
            for name in ["Retry-After", "RateLimit-Policy", "RateLimit"] {
                response["headers"][name] = json!({"$ref": format!("#/components/headers/{name}")});
            }
        }
        responses.insert((*component).to_owned(), response);
    }
    Value::Object(responses)
}
