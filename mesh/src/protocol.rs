//! nameko's AMQP RPC wire protocol: names, routing keys, and the JSON bodies of requests and replies.
//!
//! Everything here is pure data and is shared by both sides of a call. The shapes follow nameko 2.14
//! (`nameko/rpc.py`, `nameko/exceptions.py`) so Warren and nameko peers can call each other.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The default RPC exchange, a durable topic exchange shared by every service.
pub const DEFAULT_RPC_EXCHANGE: &str = "nameko-rpc";

/// Header prefix nameko uses for context data (`nameko.call_id_stack`, `nameko.user_id`, ...).
pub const CONTEXT_HEADER_PREFIX: &str = "nameko.";

/// Context key of the call id stack.
pub const CALL_ID_STACK_KEY: &str = "call_id_stack";

/// Context key of the caller's user id (nameko's `nameko.user_id`); the gateway sets it to the
/// authenticated identity.
pub const USER_ID_KEY: &str = "user_id";

/// Context key of the caller's bearer token (nameko's `nameko.auth_token`); the gateway passes
/// the JWT a client presented, so a service can verify it and read its claims itself.
pub const AUTH_TOKEN_KEY: &str = "auth_token";

/// Context key of the caller's preferred languages (nameko's `nameko.language`, read by its
/// `Language` dependency provider); the gateway passes `Accept-Language`.
pub const LANGUAGE_KEY: &str = "language";

/// Context key of the caller's user agent (nameko's `nameko.user_agent`, read by its
/// `UserAgent` dependency provider); the gateway passes `User-Agent`.
pub const USER_AGENT_KEY: &str = "user_agent";

/// Warren's own header: the caller's deadline as unix epoch milliseconds. nameko ignores it.
pub const DEADLINE_HEADER: &str = "warren.deadline";

/// Warren's own header on a request whose `reply_to` is also the name of the caller's reply
/// queue (every mesh caller's): the service may publish the reply straight to that queue
/// through the default exchange, which costs the broker less than the topic exchange's
/// routing. nameko ignores it (its services reply through `nameko-rpc`, which still reaches
/// the queue by its binding), and nameko's callers never send it (their `reply_to` is a
/// routing key, not a queue name). See docs/architecture.md §2.
pub const REPLY_DIRECT_HEADER: &str = "warren.reply_direct";

/// Warren's own header on a request published straight to `rpc-<service>` through the default
/// exchange (the opt-in direct requests of docs/architecture.md §2): the method, which the
/// routing key then does not carry. A nameko consumer of the same queue cannot read it.
pub const METHOD_HEADER: &str = "warren.method";

/// The W3C trace context header, as AMQP applications carry it (an application header).
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// How many entries a call id stack keeps: nameko's `parent_calls_tracked` (10) plus the call itself.
pub const CALL_ID_STACK_LIMIT: usize = 11;

/// The longest service or method name accepted.
pub const MAX_NAME_LEN: usize = 128;

/// The queue a service consumes its requests from: `rpc-<service>`.
pub fn service_queue(service: &str) -> String {
    format!("rpc-{service}")
}

/// The binding key of a service queue on the RPC exchange: `<service>.*`.
pub fn service_binding(service: &str) -> String {
    format!("{service}.*")
}

/// The exchange a service dispatches its events from: `<service>.events`.
pub fn events_exchange(service: &str) -> String {
    format!("{service}.events")
}

/// The routing key of a request: `<service>.<method>`.
pub fn request_routing_key(service: &str, method: &str) -> String {
    format!("{service}.{method}")
}

/// The method named by a request's routing key: its last dot-separated part (as nameko does).
pub fn method_of_routing_key(routing_key: &str) -> &str {
    routing_key.rsplit('.').next().unwrap_or(routing_key)
}

/// Why a service or method name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("name is empty")]
    Empty,
    /// The name is longer than [`MAX_NAME_LEN`] bytes.
    #[error("name is {0} bytes long; at most {MAX_NAME_LEN} are allowed")]
    TooLong(usize),
    /// The name holds a character outside `[A-Za-z0-9_-]`, or starts with a digit or `-`.
    #[error("name must match ^[A-Za-z_][A-Za-z0-9_-]{{0,127}}$")]
    BadCharacter,
    /// Names that are each valid but together too long for what the broker makes of them
    /// (an AMQP routing key or queue name holds at most 255 bytes).
    #[error("the names are {0} bytes together; at most {1} are allowed")]
    TooLongTogether(usize, usize),
}

/// The longest `service` plus `method` a call may name: its routing key `<service>.<method>`
/// is an AMQP short string (255 bytes).
pub const MAX_CALL_NAMES_LEN: usize = 254;

/// Checks that `service.method` fits a routing key (each name checked by [`validate_name`]).
pub fn validate_call_names(service: &str, method: &str) -> Result<(), NameError> {
    let len = service.len() + method.len();
    if len > MAX_CALL_NAMES_LEN {
        return Err(NameError::TooLongTogether(len, MAX_CALL_NAMES_LEN));
    }
    Ok(())
}

/// Checks a service or method name against `^[A-Za-z_][A-Za-z0-9_-]{0,127}$`.
///
/// Routing keys are built from these names, so anything that could widen a topic pattern (`*`, `#`)
/// or add a level (`.`) must never get through.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    let bytes = name.as_bytes();
    let Some(first) = bytes.first() else {
        return Err(NameError::Empty);
    };
    if bytes.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong(bytes.len()));
    }
    let first_ok = first.is_ascii_alphabetic() || *first == b'_';
    let rest_ok = bytes[1..]
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-');
    if first_ok && rest_ok {
        Ok(())
    } else {
        Err(NameError::BadCharacter)
    }
}

/// The body of an RPC request: `{"args": [...], "kwargs": {...}}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Arguments {
    /// Positional arguments.
    pub args: Vec<Value>,
    /// Keyword arguments.
    pub kwargs: Map<String, Value>,
}

impl Arguments {
    /// Keyword arguments only.
    pub fn kwargs(kwargs: Map<String, Value>) -> Self {
        Self {
            args: Vec::new(),
            kwargs,
        }
    }

    /// Positional arguments only.
    pub fn args(args: Vec<Value>) -> Self {
        Self {
            args,
            kwargs: Map::new(),
        }
    }

    /// The arguments an event payload binds to: an object is keyword arguments, an array
    /// positional ones, any other value the one positional argument.
    pub fn from_payload(payload: &Value) -> Self {
        match payload {
            Value::Object(kwargs) => Self::kwargs(kwargs.clone()),
            Value::Array(args) => Self::args(args.clone()),
            other => Self::args(vec![other.clone()]),
        }
    }

    /// Builds a request from one JSON value: an object is keyword arguments, an array positional
    /// ones, `null` none. Anything else is refused.
    pub fn from_json(value: Value) -> Result<Self, Value> {
        match value {
            Value::Object(kwargs) => Ok(Self::kwargs(kwargs)),
            Value::Array(args) => Ok(Self::args(args)),
            Value::Null => Ok(Self::default()),
            other => Err(other),
        }
    }

    /// Decodes a request as a service receives it. Both `args` and `kwargs` must be present, as
    /// nameko requires; a body without them is a `MalformedRequest`.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        #[derive(Deserialize)]
        struct Wire {
            args: Option<Vec<Value>>,
            kwargs: Option<Map<String, Value>>,
        }
        let wire: Wire =
            serde_json::from_slice(bytes).map_err(|e| format!("request is not valid JSON: {e}"))?;
        match (wire.args, wire.kwargs) {
            (Some(args), Some(kwargs)) => Ok(Self { args, kwargs }),
            _ => Err("message must contain `args` and `kwargs`".to_owned()),
        }
    }
}

/// An error as it travels in a reply, in nameko's shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteError {
    /// The exception's type name, e.g. `ValueError` or `NotFound`.
    pub exc_type: String,
    /// The exception's module path, e.g. `builtins.ValueError`.
    #[serde(default)]
    pub exc_path: Option<String>,
    /// The exception's constructor arguments.
    #[serde(default)]
    pub exc_args: Vec<Value>,
    /// The exception's message.
    #[serde(default)]
    pub value: Option<String>,
}

impl RemoteError {
    /// The message, or an empty string when the peer sent none.
    pub fn message(&self) -> &str {
        self.value.as_deref().unwrap_or("")
    }
}

/// The body of an RPC reply: `{"result": ..., "error": null}` or `{"result": null, "error": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplyBody {
    /// The result; `null` when the call failed.
    #[serde(default)]
    pub result: Value,
    /// The error, when the call failed.
    #[serde(default)]
    pub error: Option<RemoteError>,
}

impl ReplyBody {
    /// A successful reply.
    pub fn ok(result: Value) -> Self {
        Self {
            result,
            error: None,
        }
    }

    /// A failed reply.
    pub fn err(error: RemoteError) -> Self {
        Self {
            result: Value::Null,
            error: Some(error),
        }
    }

    /// The reply as a `Result`.
    pub fn into_result(self) -> Result<Value, RemoteError> {
        match self.error {
            Some(error) => Err(error),
            None => Ok(self.result),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_follow_the_pattern() {
        for ok in [
            "a",
            "_",
            "greeting_service",
            "kv",
            "A-b_9",
            &"x".repeat(128),
        ] {
            assert_eq!(validate_name(ok), Ok(()), "{ok}");
        }
        assert_eq!(validate_name(""), Err(NameError::Empty));
        assert_eq!(
            validate_name(&"x".repeat(129)),
            Err(NameError::TooLong(129))
        );
        for bad in [
            "9a", "-a", "a.b", "a*", "a#", "a b", "a/b", "ä", "a%2e", "a\0",
        ] {
            assert_eq!(validate_name(bad), Err(NameError::BadCharacter), "{bad:?}");
        }
    }

    #[test]
    fn routing_keys_and_queues() {
        assert_eq!(service_queue("kv"), "rpc-kv");
        assert_eq!(service_binding("kv"), "kv.*");
        assert_eq!(request_routing_key("kv", "inc"), "kv.inc");
        assert_eq!(method_of_routing_key("kv.inc"), "inc");
        assert_eq!(method_of_routing_key("a.b.c"), "c");
        assert_eq!(method_of_routing_key("plain"), "plain");
    }

    #[test]
    fn request_body_from_json() {
        assert_eq!(
            Arguments::from_json(json!({"a": 1})),
            Ok(Arguments::kwargs(
                json!({"a": 1}).as_object().cloned().unwrap_or_default()
            ))
        );
        assert_eq!(
            Arguments::from_json(json!([1, 2])),
            Ok(Arguments::args(vec![json!(1), json!(2)]))
        );
        assert_eq!(Arguments::from_json(Value::Null), Ok(Arguments::default()));
        assert_eq!(Arguments::from_json(json!(3)), Err(json!(3)));
    }

    #[test]
    fn request_body_round_trip_and_malformed() {
        let body = Arguments {
            args: vec![json!("x")],
            kwargs: json!({"by": 2}).as_object().cloned().unwrap_or_default(),
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        assert_eq!(Arguments::decode(&bytes), Ok(body));
        assert!(Arguments::decode(br#"{"args": []}"#).is_err());
        assert!(Arguments::decode(br#"{"kwargs": {}}"#).is_err());
        assert!(Arguments::decode(b"not json").is_err());
        assert!(Arguments::decode(br#"[1]"#).is_err());
    }

    #[test]
    fn reply_body_shapes() {
        let ok: ReplyBody = serde_json::from_value(json!({"result": 5, "error": null}))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ok.into_result(), Ok(json!(5)));
        let err: ReplyBody = serde_json::from_value(json!({
            "result": null,
            "error": {"exc_type": "ValueError", "exc_path": "builtins.ValueError",
                      "exc_args": ["boom"], "value": "boom"}
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let e = err
            .into_result()
            .err()
            .unwrap_or_else(|| panic!("expected error"));
        assert_eq!(e.exc_type, "ValueError");
        assert_eq!(e.message(), "boom");
        assert_eq!(
            serde_json::to_value(ReplyBody::ok(json!("hi"))).unwrap_or_default(),
            json!({"result": "hi", "error": null})
        );
    }
}
