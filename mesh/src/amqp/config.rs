//! [`AmqpConfig`]: where the broker is and how to reach it.

use std::path::PathBuf;
use std::time::Duration;

/// The AMQP URL used when none is given.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// How a process reaches RabbitMQ.
#[derive(Debug, Clone)]
pub struct AmqpConfig {
    /// The broker's URL. Its password never appears in logs or errors (see
    /// [`crate::redact_url`]).
    pub url: String,
    /// The RPC exchange (nameko's `nameko-rpc` unless changed).
    pub rpc_exchange: String,
    /// How long connecting may take before it is reported as failed.
    pub connect_timeout: Duration,
    /// CA certificates (PEM) trusted for an `amqps://` broker besides the system's, e.g. a
    /// private CA's. The server's name is always verified.
    pub tls_ca_file: Option<PathBuf>,
}

impl Default for AmqpConfig {
    fn default() -> Self {
        Self::with_url(DEFAULT_AMQP_URL)
    }
}

impl AmqpConfig {
    /// The defaults with the broker at `url`.
    pub fn with_url(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            rpc_exchange: crate::protocol::DEFAULT_RPC_EXCHANGE.to_owned(),
            connect_timeout: Duration::from_secs(5),
            tls_ca_file: None,
        }
    }

    /// The URL with its password hidden, for logs and errors.
    pub fn redacted_url(&self) -> String {
        crate::redact::redact_url(&self.url)
    }
}
