//! The document's parts for what outlives one request: event streams
//! (`GET /events/{source}/{event_type}`) and asynchronous calls (`Prefer: respond-async`,
//! `GET /calls/{id}`).

use super::DocumentSecurity;
use serde_json::{Map, Value, json};

/// The `Prefer` parameter of every RPC operation.
pub(super) fn prefer_parameter() -> Value {
    json!({
        "name": "Prefer",
        "in": "header",
        "required": false,
        "description": "`respond-async` (RFC 7240): answer 202 with `Location: /calls/{id}` once the broker has the request, and collect the answer there; the deadline is then capped by the gateway's asynchronous maximum",
        "schema": {"type": "string", "examples": ["respond-async"]},
    })
}

/// The 202 of an RPC operation asked to respond asynchronously.
pub(super) fn accepted_response() -> Value {
    json!({
        "description": "Accepted (with `Prefer: respond-async`): the broker has the request; its answer is at `Location`",
        "headers": {
            "Location": {"description": "`/calls/{id}`, relative to the gateway", "schema": {"type": "string"}},
            "Preference-Applied": {"description": "`respond-async`", "schema": {"type": "string"}},
            "X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"},
        },
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CallAccepted"}}},
    })
}

/// The schemas these parts use.
pub(super) fn schemas() -> Map<String, Value> {
    let mut schemas = Map::new();
    schemas.insert(
        "CallAccepted".to_owned(),
        json!({
            "type": "object",
            "required": ["id", "location"],
            "properties": {
                "id": {"type": "string", "description": "The call's id (opaque)"},
                "location": {"type": "string", "description": "`/calls/{id}`"},
            },
        }),
    );
    schemas.insert(
        "CallRunning".to_owned(),
        json!({
            "type": "object",
            "required": ["status", "service", "method"],
            "properties": {
                "status": {"const": "running"},
                "service": {"type": "string"},
                "method": {"type": "string"},
            },
        }),
    );
    schemas
}

/// `GET /events/{source}/{event_type}` and `GET /calls/{id}`.
pub(super) fn paths(security: &DocumentSecurity) -> Map<String, Value> {
    let problem = |description: &str| {
        json!({
            "description": description,
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
        })
    };
    let name = |name: &str, description: &str| {
        json!({
            "name": name, "in": "path", "required": true, "description": description,
            "schema": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_-]{0,127}$"},
        })
    };
    let mut streams = json!({
        "operationId": "gateway_events",
        "tags": ["gateway"],
        "summary": "Follow a service's events (server-sent events)",
        "description": "A `text/event-stream` of the events `source` dispatches of type `event_type` (Warren's and nameko's): each as `event: <event_type>`, `id: <n>` (counted per gateway process) and one `data:` line of compact JSON, with keep-alive comments. The headers are sent once the gateway's subscription is bound, so an event dispatched after them reaches the client. A client that falls behind by more than the gateway's buffer is ended with a comment `: ended: ...`; so are all streams when the gateway shuts down.",
        "parameters": [
            name("source", "The dispatching service"),
            name("event_type", "The event type"),
        ],
        "responses": {
            "200": {
                "description": "The stream",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            },
            "400": problem("An invalid source or event type name"),
            "403": problem("The exposure policy does not stream these events (names starting with `_`, and the source `warren`, never are), or the caller's API key does not allow them"),
            "503": problem("The gateway holds as many streams as it may, or cannot reach the broker"),
        },
    });
    let mut calls = json!({
        "operationId": "gateway_call",
        "tags": ["gateway"],
        "summary": "The answer of an asynchronous call",
        "description": "202 while the call runs; then exactly what the synchronous call would have answered (its result with 200, or its problem document), on every GET until the result expires. Any id that names no result of this caller's (unknown, expired, malformed, or another caller's) is 404.",
        "parameters": [{
            "name": "id", "in": "path", "required": true,
            "description": "The id from the 202's `Location`", "schema": {"type": "string"},
        }],
        "responses": {
            "200": {
                "description": "The method's result",
                "headers": {"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}},
                "content": {"application/json": {"schema": {}}},
            },
            "202": {
                "description": "The call runs",
                "headers": {"Retry-After": {"$ref": "#/components/headers/Retry-After"}},
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CallRunning"}}},
            },
            "404": problem("No such call of this caller's (unknown, expired, malformed), or the call's own 404"),
            "default": problem("The synchronous call's error, as its problem document"),
        },
    });
    if security.is_on() {
        for operation in [&mut streams, &mut calls] {
            operation["responses"]["401"] = json!({"$ref": "#/components/responses/Unauthorized"});
        }
    }
    let mut paths = Map::new();
    paths.insert(
        "/events/{source}/{event_type}".to_owned(),
        json!({"get": streams}),
    );
    paths.insert("/calls/{id}".to_owned(), json!({"get": calls}));
    paths
}
