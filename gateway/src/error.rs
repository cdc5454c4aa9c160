//! [`GatewayError`]: every way a request can fail, and the one place that maps each to an HTTP
//! status (docs/architecture.md §3). Remote errors map by `exc_type` through an [`ErrorMap`], which
//! configuration can extend.

use crate::auth::{self, AuthError};
use crate::problem::Problem;
use axum::http::StatusCode;
use mesh::CallError;
use mesh::{NameError, RemoteError};
use std::collections::HashMap;

/// Why the gateway could not answer a call with the method's result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GatewayError {
    /// A service or method name that could widen or break a routing key.
    #[error("invalid {what} name `{name}`: {reason}")]
    InvalidName {
        /// `service` or `method`.
        what: &'static str,
        /// The name as given (after percent-decoding).
        name: String,
        /// Why it was refused.
        reason: NameError,
    },
    /// A path under `/rpc/` that is not `/rpc/<service>/<method>`.
    #[error("expected a path of the form /rpc/<service>/<method>")]
    BadRpcPath,
    /// The body is not valid JSON.
    #[error("the body is not valid JSON: {0}")]
    MalformedJson(String),
    /// The body is JSON, but neither an object (keyword arguments) nor an array (positional).
    #[error(
        "the body must be a JSON object (keyword arguments) or array (positional arguments), not {0}"
    )]
    NotArguments(&'static str),
    /// A request header has an unusable value.
    #[error("invalid {header} header: {reason}")]
    InvalidHeader {
        /// The header's name.
        header: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The body could not be read.
    #[error("the body could not be read: {0}")]
    BodyRead(String),
    /// The body did not arrive within the call's deadline (a slow client).
    #[error("the body was not received within the deadline of {0} ms")]
    BodyTimeout(u64),
    /// The body is larger than the configured limit.
    #[error("the body is larger than the limit of {0} bytes")]
    PayloadTooLarge(usize),
    /// The content type is not JSON.
    #[error("the content type must be application/json, not `{0}`")]
    UnsupportedMediaType(String),
    /// Another HTTP method than POST on `/rpc/...`.
    #[error("method {0} is not allowed here; use POST")]
    MethodNotAllowed(String),
    /// No route matches the path.
    #[error("no route for {0}")]
    NoRoute(String),
    /// No queue is bound for the service.
    #[error("unknown service `{0}`")]
    UnknownService(String),
    /// Authentication is on and the request has no valid credential.
    #[error("{0}")]
    Unauthenticated(AuthError),
    /// The caller is authenticated, but its key does not allow this method.
    #[error("user `{user}` may not call `{service}.{method}`")]
    Forbidden {
        /// The caller's user id.
        user: String,
        /// The service called.
        service: String,
        /// The method called.
        method: String,
    },
    /// The exposure policy does not serve this method.
    #[error("`{0}.{1}` is not exposed by this gateway")]
    NotExposed(String, String),
    /// The gateway is at its in-flight limit.
    #[error("the gateway is at its limit of {0} calls in flight; retry shortly")]
    Overloaded(usize),
    /// The caller used up a rate limit (`--rate-limit`, `--rate-limit-for`).
    #[error("too many requests for the rate limit `{policy}`; retry in {retry_after_secs} s")]
    RateLimited {
        /// The limit's name: `default`, or the pattern of a per-method limit.
        policy: String,
        /// Whole seconds until a call would be let through.
        retry_after_secs: u32,
    },
    /// The service is known, but no instance of it is live.
    #[error("no live instance of service `{0}`")]
    NoLiveInstance(String),
    /// The service answered with an error.
    #[error("{}: {}", .0.exc_type, .0.message())]
    Remote(RemoteError),
    /// The service's reply could not be decoded.
    #[error("the service sent an invalid reply: {0}")]
    BadGateway(String),
    /// The broker is unreachable or the gateway is not ready.
    #[error("the message broker is unavailable: {0}")]
    Unavailable(String),
    /// The deadline passed.
    #[error("no reply within the deadline of {0} ms")]
    DeadlineExceeded(u64),
    /// The gateway holds as many event streams as it may.
    #[error("the gateway is at its limit of {0} event streams; retry shortly")]
    TooManyStreams(usize),
    /// The gateway holds as many asynchronous calls as it may.
    #[error("the gateway is at its limit of {0} asynchronous calls; retry shortly")]
    TooManyAsyncCalls(usize),
    /// `GET /calls/{id}` names no result: unknown, expired, malformed, or another caller's.
    #[error("no asynchronous call `{0}` (unknown, expired, or not yours)")]
    NoSuchCall(String),
}

impl From<CallError> for GatewayError {
    fn from(error: CallError) -> Self {
        match error {
            CallError::UnknownService(service) => Self::UnknownService(service),
            CallError::InvalidName { name, reason } => Self::InvalidName {
                what: "service or method",
                name,
                reason,
            },
            CallError::DeadlineExceeded(ms) => Self::DeadlineExceeded(ms),
            CallError::Remote(wire) => Self::Remote(wire),
            CallError::InvalidArguments(detail) => Self::MalformedJson(detail),
            CallError::MalformedReply(detail) => Self::BadGateway(detail),
            CallError::Unavailable(detail) => Self::Unavailable(detail),
        }
    }
}

/// HTTP statuses of remote errors, by `exc_type`. Types not listed are 500.
#[derive(Debug, Clone)]
pub struct ErrorMap(HashMap<String, StatusCode>);

impl Default for ErrorMap {
    fn default() -> Self {
        let mut map = HashMap::new();
        for (exc_type, status) in [
            ("BadRequest", StatusCode::BAD_REQUEST),
            ("ValidationError", StatusCode::BAD_REQUEST),
            ("IncorrectSignature", StatusCode::BAD_REQUEST),
            ("MalformedRequest", StatusCode::BAD_REQUEST),
            ("MethodNotFound", StatusCode::NOT_FOUND),
            ("NotFound", StatusCode::NOT_FOUND),
            ("Conflict", StatusCode::CONFLICT),
            ("Unavailable", StatusCode::SERVICE_UNAVAILABLE),
            ("DeadlineExceeded", StatusCode::GATEWAY_TIMEOUT),
        ] {
            map.insert(exc_type.to_owned(), status);
        }
        Self(map)
    }
}

impl ErrorMap {
    /// Maps `exc_type` to `status`, replacing any earlier mapping.
    pub fn insert(&mut self, exc_type: impl Into<String>, status: StatusCode) {
        self.0.insert(exc_type.into(), status);
    }

    /// Parses `ExcType=status`, as given on the command line.
    pub fn parse_entry(entry: &str) -> Result<(String, StatusCode), String> {
        let (exc_type, status) = entry
            .split_once('=')
            .ok_or_else(|| format!("`{entry}`: expected ExcType=STATUS"))?;
        let code: u16 = status
            .trim()
            .parse()
            .map_err(|_| format!("`{entry}`: `{status}` is not a status code"))?;
        let status = StatusCode::from_u16(code)
            .ok()
            .filter(|s| s.is_client_error() || s.is_server_error())
            .ok_or_else(|| format!("`{entry}`: {code} is not a 4xx or 5xx status"))?;
        Ok((exc_type.trim().to_owned(), status))
    }

    /// The status of a remote error of type `exc_type`.
    pub fn status(&self, exc_type: &str) -> StatusCode {
        self.0
            .get(exc_type)
            .copied()
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl GatewayError {
    /// A call's error, its deadline reported as the one the client asked for (`requested_ms`:
    /// the call's own budget may be shorter by the time it was published).
    pub fn of_call(error: CallError, requested_ms: u64) -> Self {
        match error {
            CallError::DeadlineExceeded(_) => Self::DeadlineExceeded(requested_ms),
            other => other.into(),
        }
    }

    /// The status, slug and title of this error: the whole mapping, in one place.
    pub fn classify(&self, map: &ErrorMap) -> (StatusCode, &'static str, &'static str) {
        use StatusCode as S;
        match self {
            Self::InvalidName { .. } => (S::BAD_REQUEST, "invalid-name", "Invalid name"),
            Self::BadRpcPath => (S::BAD_REQUEST, "invalid-path", "Invalid RPC path"),
            Self::Unauthenticated(_) => (S::UNAUTHORIZED, "unauthenticated", "Unauthenticated"),
            Self::Forbidden { .. } => (S::FORBIDDEN, "forbidden", "Forbidden"),
            Self::NotExposed(..) => (S::FORBIDDEN, "not-exposed", "Not exposed"),
            Self::Overloaded(_) => (S::SERVICE_UNAVAILABLE, "overloaded", "Overloaded"),
            Self::RateLimited { .. } => (S::TOO_MANY_REQUESTS, "rate-limited", "Too many requests"),
            Self::MalformedJson(_) => (S::BAD_REQUEST, "malformed-json", "Malformed JSON"),
            Self::NotArguments(_) => (S::BAD_REQUEST, "invalid-arguments", "Invalid arguments"),
            Self::InvalidHeader { .. } => (S::BAD_REQUEST, "invalid-header", "Invalid header"),
            Self::BodyRead(_) => (S::BAD_REQUEST, "unreadable-body", "Unreadable body"),
            Self::BodyTimeout(_) => (S::REQUEST_TIMEOUT, "request-timeout", "Request timeout"),
            Self::PayloadTooLarge(_) => (
                S::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Payload too large",
            ),
            Self::UnsupportedMediaType(_) => (
                S::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            ),
            Self::MethodNotAllowed(_) => (
                S::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
            ),
            Self::NoRoute(_) => (S::NOT_FOUND, "no-route", "Not found"),
            Self::UnknownService(_) => (S::NOT_FOUND, "unknown-service", "Unknown service"),
            Self::NoLiveInstance(_) => (
                S::SERVICE_UNAVAILABLE,
                "no-live-instance",
                "No live instance",
            ),
            Self::Remote(wire) => {
                let status = map.status(&wire.exc_type);
                let (slug, title) = match status {
                    S::BAD_REQUEST => ("bad-request", "Bad request"),
                    S::NOT_FOUND => ("not-found", "Not found"),
                    S::CONFLICT => ("conflict", "Conflict"),
                    S::SERVICE_UNAVAILABLE => ("unavailable", "Service unavailable"),
                    S::GATEWAY_TIMEOUT => ("deadline-exceeded", "Deadline exceeded"),
                    s if s.is_client_error() => ("remote-client-error", "Rejected by the service"),
                    _ => ("remote-error", "Remote error"),
                };
                (status, slug, title)
            }
            Self::BadGateway(_) => (S::BAD_GATEWAY, "bad-reply", "Bad reply from the service"),
            Self::Unavailable(_) => (
                S::SERVICE_UNAVAILABLE,
                "broker-unavailable",
                "Broker unavailable",
            ),
            Self::DeadlineExceeded(_) => {
                (S::GATEWAY_TIMEOUT, "deadline-exceeded", "Deadline exceeded")
            }
            Self::TooManyStreams(_) => (
                S::SERVICE_UNAVAILABLE,
                "too-many-streams",
                "Too many event streams",
            ),
            Self::TooManyAsyncCalls(_) => (
                S::SERVICE_UNAVAILABLE,
                "too-many-async-calls",
                "Too many asynchronous calls",
            ),
            Self::NoSuchCall(_) => (S::NOT_FOUND, "no-such-call", "No such call"),
        }
    }

    /// The problem document for this error.
    pub fn to_problem(&self, map: &ErrorMap, call: &CallInfo) -> Problem {
        let (status, slug, title) = self.classify(map);
        Problem {
            kind: format!("urn:warren:problem:{slug}"),
            title,
            status: status.as_u16(),
            detail: self.to_string(),
            service: call.service.clone(),
            method: call.method.clone(),
            exc_type: match self {
                Self::Remote(wire) => Some(wire.exc_type.clone()),
                _ => None,
            },
            request_id: call.request_id.clone(),
            retry_after: match self {
                Self::Unavailable(_)
                | Self::NoLiveInstance(_)
                | Self::Overloaded(_)
                | Self::TooManyStreams(_)
                | Self::TooManyAsyncCalls(_) => Some(1),
                Self::RateLimited {
                    retry_after_secs, ..
                } => Some(*retry_after_secs),
                _ => None,
            },
            allow: match self {
                Self::MethodNotAllowed(_) => Some("POST"),
                _ => None,
            },
            www_authenticate: match self {
                Self::Unauthenticated(error) => Some(error.challenge()),
                Self::Forbidden { .. } => Some(auth::insufficient_scope()),
                _ => None,
            },
        }
    }
}

/// What is known of the call an error concerns.
#[derive(Debug, Clone, Default)]
pub struct CallInfo {
    /// The service, when the path named one.
    pub service: Option<String>,
    /// The method, when the path named one.
    pub method: Option<String>,
    /// The request id.
    pub request_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(exc_type: &str) -> GatewayError {
        GatewayError::Remote(RemoteError {
            exc_type: exc_type.into(),
            exc_path: None,
            exc_args: vec![],
            value: Some("m".into()),
        })
    }

    #[test]
    fn every_row_of_the_status_table() {
        let map = ErrorMap::default();
        let status = |e: GatewayError| e.classify(&map).0.as_u16();
        let name = GatewayError::InvalidName {
            what: "service",
            name: "a.b".into(),
            reason: NameError::BadCharacter,
        };
        assert_eq!(status(name), 400);
        assert_eq!(status(GatewayError::MalformedJson("x".into())), 400);
        assert_eq!(status(GatewayError::NotArguments("a number")), 400);
        for t in [
            "IncorrectSignature",
            "BadRequest",
            "ValidationError",
            "MalformedRequest",
        ] {
            assert_eq!(status(remote(t)), 400, "{t}");
        }
        assert_eq!(
            status(GatewayError::Unauthenticated(AuthError::Missing)),
            401
        );
        let forbidden = GatewayError::Forbidden {
            user: "u".into(),
            service: "kv".into(),
            method: "put".into(),
        };
        assert_eq!(status(forbidden), 403);
        assert_eq!(
            status(GatewayError::NotExposed("a".into(), "b".into())),
            403
        );
        assert_eq!(status(GatewayError::UnknownService("x".into())), 404);
        assert_eq!(status(remote("MethodNotFound")), 404);
        assert_eq!(status(remote("NotFound")), 404);
        assert_eq!(status(GatewayError::MethodNotAllowed("GET".into())), 405);
        assert_eq!(status(remote("Conflict")), 409);
        assert_eq!(status(GatewayError::BodyTimeout(5)), 408);
        let limited = GatewayError::RateLimited {
            policy: "default".into(),
            retry_after_secs: 2,
        };
        assert_eq!(status(limited.clone()), 429);
        assert_eq!(
            limited.to_problem(&map, &CallInfo::default()).retry_after,
            Some(2)
        );
        assert_eq!(status(GatewayError::PayloadTooLarge(1)), 413);
        assert_eq!(
            status(GatewayError::UnsupportedMediaType("text/plain".into())),
            415
        );
        assert_eq!(status(remote("ValueError")), 500);
        assert_eq!(status(GatewayError::BadGateway("x".into())), 502);
        assert_eq!(status(GatewayError::Unavailable("x".into())), 503);
        assert_eq!(status(GatewayError::DeadlineExceeded(5)), 504);
        assert_eq!(status(GatewayError::TooManyStreams(1)), 503);
        assert_eq!(status(GatewayError::TooManyAsyncCalls(1)), 503);
        assert_eq!(status(GatewayError::NoSuchCall("x".into())), 404);
    }

    #[test]
    fn the_map_is_extensible() {
        let mut map = ErrorMap::default();
        let (t, s) = ErrorMap::parse_entry("InsufficientFunds=402").expect("entry");
        map.insert(t, s);
        assert_eq!(remote("InsufficientFunds").classify(&map).0.as_u16(), 402);
        assert!(ErrorMap::parse_entry("X").is_err());
        assert!(ErrorMap::parse_entry("X=abc").is_err());
        assert!(ErrorMap::parse_entry("X=200").is_err());
    }

    #[test]
    fn problems_carry_the_call() {
        let call = CallInfo {
            service: Some("kv".into()),
            method: Some("get".into()),
            request_id: Some("r1".into()),
        };
        let p = remote("NotFound").to_problem(&ErrorMap::default(), &call);
        assert_eq!(p.status, 404);
        assert_eq!(p.exc_type.as_deref(), Some("NotFound"));
        assert_eq!(p.kind, "urn:warren:problem:not-found");
        assert_eq!(p.detail, "NotFound: m");
        let p =
            GatewayError::MethodNotAllowed("GET".into()).to_problem(&ErrorMap::default(), &call);
        assert_eq!(p.allow, Some("POST"));
        let p = GatewayError::Unavailable("x".into()).to_problem(&ErrorMap::default(), &call);
        assert_eq!(p.retry_after, Some(1));
        let p = GatewayError::Unauthenticated(AuthError::Missing)
            .to_problem(&ErrorMap::default(), &call);
        assert_eq!(
            p.www_authenticate.as_deref(),
            Some("Bearer realm=\"warren\"")
        );
    }
}
