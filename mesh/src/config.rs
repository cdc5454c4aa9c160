//! [`MeshConfig`]: where the broker is and how services and clients behave.

use std::path::PathBuf;
use std::time::Duration;

/// The AMQP URL used when none is given.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Settings shared by clients and services.
#[derive(Debug, Clone)]
pub struct MeshConfig {
    /// The broker's URL. Its password never appears in logs or errors (see [`redact_url`]).
    pub amqp_url: String,
    /// The RPC exchange (nameko's `nameko-rpc` unless changed).
    pub rpc_exchange: String,
    /// Handlers run at once per service; also the consumer's prefetch. nameko's default is 10.
    pub max_workers: u16,
    /// How long connecting may take before it is reported as failed.
    pub connect_timeout: Duration,
    /// How long a stopping service waits for in-flight handlers.
    pub shutdown_grace: Duration,
    /// The deadline of a call whose caller set none.
    pub default_timeout: Duration,
    /// This process's instance id; it names broadcast event queues. Give a stable one (a pod
    /// name, say) for an instance to get the broadcasts it missed while restarting.
    pub instance_id: String,
    /// How often each service instance announces its descriptor.
    pub heartbeat: Duration,
    /// CA certificates (PEM) trusted for an `amqps://` broker besides the system's, e.g. a
    /// private CA's. The server's name is always verified.
    pub tls_ca_file: Option<PathBuf>,
}

impl Default for MeshConfig {
    fn default() -> Self {
        Self {
            amqp_url: DEFAULT_AMQP_URL.to_owned(),
            rpc_exchange: crate::protocol::DEFAULT_RPC_EXCHANGE.to_owned(),
            max_workers: 10,
            connect_timeout: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(10),
            default_timeout: Duration::from_secs(30),
            instance_id: uuid::Uuid::new_v4().simple().to_string(),
            heartbeat: Duration::from_secs(5),
            tls_ca_file: None,
        }
    }
}

impl MeshConfig {
    /// The defaults with another broker URL.
    pub fn with_url(amqp_url: impl Into<String>) -> Self {
        Self {
            amqp_url: amqp_url.into(),
            ..Self::default()
        }
    }

    /// The defaults, with `AMQP_URL` and `AMQP_CA_FILE` taken from the environment when set.
    pub fn from_env() -> Self {
        let set = |name| std::env::var(name).ok().filter(|value| !value.is_empty());
        let mut config = match set("AMQP_URL") {
            Some(url) => Self::with_url(url),
            None => Self::default(),
        };
        config.tls_ca_file = set("AMQP_CA_FILE").map(PathBuf::from);
        config
    }

    /// The URL with its password hidden, for logs and errors.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.amqp_url)
    }
}

/// Hides the password of a URL's user info: `amqp://user:secret@host/` → `amqp://user:***@host/`.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    match rest[..at].find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &url[..scheme_end],
            &rest[..colon],
            &rest[at..]
        ),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            redact_url("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(
            redact_url("amqps://u:p@ss@host/vh"),
            "amqps://u:***@host/vh"
        );
        assert_eq!(redact_url("amqp://host:5672"), "amqp://host:5672");
        assert_eq!(redact_url("amqp://user@host"), "amqp://user@host");
        assert_eq!(redact_url("not a url"), "not a url");
    }
}
