//! The errors of the mesh: [`RpcError`] is what a handler returns and a peer receives;
//! [`CallError`] is what a caller gets back; [`ConnectError`] is what connecting reports.

use crate::protocol::{NameError, RemoteError};
use serde_json::Value;
use std::borrow::Cow;
use std::fmt;

/// The kinds of error a handler can return. Each has an `exc_type` of the same name on the wire,
/// which the gateway maps to an HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The caller sent something the method cannot work with (HTTP 400).
    BadRequest,
    /// The thing asked for does not exist (HTTP 404).
    NotFound,
    /// The request conflicts with the current state, e.g. a stale version (HTTP 409).
    Conflict,
    /// A dependency of the service is unavailable (HTTP 503).
    Unavailable,
    /// Anything else (HTTP 500).
    Internal,
    /// The service has no such method (nameko's `MethodNotFound`).
    MethodNotFound,
    /// The arguments do not fit the method (nameko's `IncorrectSignature`).
    IncorrectSignature,
    /// The request could not be decoded (nameko's `MalformedRequest`).
    MalformedRequest,
}

impl ErrorKind {
    /// The `exc_type` this kind travels as.
    pub fn exc_type(self) -> &'static str {
        match self {
            Self::BadRequest => "BadRequest",
            Self::NotFound => "NotFound",
            Self::Conflict => "Conflict",
            Self::Unavailable => "Unavailable",
            Self::Internal => "Internal",
            Self::MethodNotFound => "MethodNotFound",
            Self::IncorrectSignature => "IncorrectSignature",
            Self::MalformedRequest => "MalformedRequest",
        }
    }

    /// The `exc_path` this kind travels as. nameko's own protocol errors use nameko's paths, so a
    /// nameko caller re-raises them as `nameko.exceptions.MethodNotFound` and so on; the others
    /// use a Warren path, which a nameko caller surfaces as a `RemoteError` with `exc_type` set.
    fn exc_path(self) -> Cow<'static, str> {
        match self {
            Self::MethodNotFound | Self::IncorrectSignature | Self::MalformedRequest => {
                Cow::Owned(format!("nameko.exceptions.{}", self.exc_type()))
            }
            _ => Cow::Owned(format!("warren.exceptions.{}", self.exc_type())),
        }
    }
}

/// An error returned by an RPC handler, sent to the caller in nameko's error shape.
///
/// ```
/// use mesh::{ErrorKind, RpcError};
/// let e = RpcError::not_found("no such key: x");
/// assert_eq!(e.kind(), ErrorKind::NotFound);
/// let e = RpcError::bad_request("too poor").with_exc_type("InsufficientFunds");
/// assert_eq!(e.exc_type(), "InsufficientFunds");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    kind: ErrorKind,
    exc_type: Cow<'static, str>,
    message: String,
}

impl RpcError {
    /// An error of `kind` with a message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            exc_type: Cow::Borrowed(kind.exc_type()),
            message: message.into(),
        }
    }

    /// `BadRequest`: the caller sent something the method cannot work with.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, message)
    }

    /// `NotFound`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// `Conflict`.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }

    /// `Unavailable`.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }

    /// `Internal`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// Sends this error under another `exc_type` (the kind stays for the service's own use).
    pub fn with_exc_type(mut self, exc_type: impl Into<Cow<'static, str>>) -> Self {
        self.exc_type = exc_type.into();
        self
    }

    /// The kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The `exc_type` sent on the wire.
    pub fn exc_type(&self) -> &str {
        &self.exc_type
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The error in nameko's wire shape.
    pub fn to_wire(&self) -> RemoteError {
        let exc_path = if self.exc_type == self.kind.exc_type() {
            self.kind.exc_path().into_owned()
        } else {
            format!("warren.exceptions.{}", self.exc_type)
        };
        RemoteError {
            exc_type: self.exc_type.to_string(),
            exc_path: Some(exc_path),
            exc_args: vec![Value::String(self.message.clone())],
            value: Some(self.message.clone()),
        }
    }
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.exc_type, self.message)
    }
}

impl std::error::Error for RpcError {}

impl From<CallError> for RpcError {
    /// A failed call made from inside a handler becomes that handler's error: a remote error
    /// passes through under its own type, anything else becomes `Unavailable`.
    fn from(error: CallError) -> Self {
        match error {
            CallError::Remote(wire) => {
                let kind = match wire.exc_type.as_str() {
                    "BadRequest" => ErrorKind::BadRequest,
                    "NotFound" => ErrorKind::NotFound,
                    "Conflict" => ErrorKind::Conflict,
                    "Unavailable" => ErrorKind::Unavailable,
                    _ => ErrorKind::Internal,
                };
                let message = wire.message().to_owned();
                RpcError::new(kind, message).with_exc_type(wire.exc_type)
            }
            // The caller's deadline passed further down: still a deadline, not an outage.
            CallError::DeadlineExceeded(ms) => {
                RpcError::unavailable(format!("deadline exceeded after {ms} ms"))
                    .with_exc_type("DeadlineExceeded")
            }
            other => RpcError::unavailable(other.to_string()),
        }
    }
}

/// Why a call ([`crate::ServiceProxy::call`]) failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    /// No queue is bound for the service: the broker returned the request as unroutable.
    #[error("unknown service `{0}`")]
    UnknownService(String),
    /// The service or method name is not a valid name.
    #[error("invalid name `{name}`: {reason}")]
    InvalidName {
        /// The offending name.
        name: String,
        /// Why it was refused.
        reason: NameError,
    },
    /// The arguments could not be turned into a request.
    #[error("invalid arguments: {0}")]
    InvalidArguments(String),
    /// The deadline passed before a reply arrived.
    #[error("deadline exceeded after {0} ms")]
    DeadlineExceeded(u64),
    /// The service replied with an error.
    #[error("{}: {}", .0.exc_type, .0.message())]
    Remote(RemoteError),
    /// The reply could not be decoded.
    #[error("malformed reply: {0}")]
    MalformedReply(String),
    /// The broker cannot be reached, or the client is not ready yet.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
}

/// Why connecting to the broker failed. Its message is one line that names the URL (without its
/// password) and says how to start RabbitMQ.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL could not be parsed.
    #[error("invalid AMQP URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL with its password hidden.
        url: String,
        /// What the parser said.
        reason: String,
    },
    /// Nothing answered, or the AMQP handshake failed.
    #[error(
        "cannot reach RabbitMQ at {url}: {reason} (is it running? start it with `rabbitmq-server -detached`, or pass --amqp / AMQP_URL)"
    )]
    Unreachable {
        /// The URL with its password hidden.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The TLS settings for an `amqps://` URL cannot be used.
    #[error("cannot use the CA certificates in {path}: {reason}")]
    Tls {
        /// The CA file given.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// Connected, but declaring the topology failed.
    #[error("AMQP setup failed at {url}: {reason}")]
    Setup {
        /// The URL with its password hidden.
        url: String,
        /// What went wrong.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_errors_use_nameko_paths() {
        let wire = RpcError::new(ErrorKind::MethodNotFound, "nope").to_wire();
        assert_eq!(wire.exc_type, "MethodNotFound");
        assert_eq!(
            wire.exc_path.as_deref(),
            Some("nameko.exceptions.MethodNotFound")
        );
        assert_eq!(wire.exc_args, vec![Value::String("nope".into())]);
        let wire = RpcError::not_found("k").to_wire();
        assert_eq!(wire.exc_path.as_deref(), Some("warren.exceptions.NotFound"));
        assert_eq!(wire.value.as_deref(), Some("k"));
    }

    #[test]
    fn custom_exc_type_travels() {
        let wire = RpcError::bad_request("x")
            .with_exc_type("ValidationError")
            .to_wire();
        assert_eq!(wire.exc_type, "ValidationError");
        assert_eq!(
            wire.exc_path.as_deref(),
            Some("warren.exceptions.ValidationError")
        );
    }

    #[test]
    fn remote_errors_pass_through_handlers() {
        let err: RpcError = CallError::Remote(RpcError::conflict("stale").to_wire()).into();
        assert_eq!(err.kind(), ErrorKind::Conflict);
        assert_eq!(err.message(), "stale");
        let err: RpcError = CallError::DeadlineExceeded(5).into();
        assert_eq!(err.kind(), ErrorKind::Unavailable);
    }
}
