//! [`AmqpConfig`]: where the brokers are, how to reach them, and which kind of queue to declare.

use crate::error::ConnectError;
use crate::redact::redact_url;
use lapin::uri::AMQPUri;
use std::path::PathBuf;
use std::time::Duration;

/// The AMQP URL used when none is given.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// The kind of queue a process declares for its own services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueType {
    /// Classic queues, declared exactly as nameko declares them (no `x-queue-type`), so nameko
    /// peers declare the same queues. A classic queue lives on one node of a cluster.
    #[default]
    Classic,
    /// Quorum queues (`x-queue-type: quorum`), replicated over a cluster's nodes: a service's
    /// queue and what waits in it survive the loss of a node. A nameko peer cannot declare them
    /// (see docs/operations.md, "Running on a RabbitMQ cluster").
    Quorum,
}

impl QueueType {
    /// `classic` or `quorum`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Classic => "classic",
            Self::Quorum => "quorum",
        }
    }
}

impl std::str::FromStr for QueueType {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        match name.trim().to_ascii_lowercase().as_str() {
            "classic" => Ok(Self::Classic),
            "quorum" => Ok(Self::Quorum),
            other => Err(format!("`{other}` is not a queue type: classic or quorum")),
        }
    }
}

/// How a process reaches RabbitMQ.
#[derive(Debug, Clone)]
pub struct AmqpConfig {
    /// The brokers' URLs: one, or the nodes of a cluster. A process connects to one of them, in
    /// an order shuffled per process so that instances spread over the nodes, and when it loses
    /// it, to the next. Their passwords never appear in logs or errors (see [`redact_url`]).
    pub urls: Vec<String>,
    /// The kind of queue declared for the process's own services.
    pub queue_type: QueueType,
    /// The RPC exchange (nameko's `nameko-rpc` unless changed).
    pub rpc_exchange: String,
    /// Publish requests straight to `rpc-<service>` through the default exchange, the method
    /// in a header, instead of through the RPC exchange's topic routing: less work for the
    /// broker, but only for services whose every consumer is a Warren process (a nameko
    /// instance consuming the same queue answers such a request `MethodNotFound`). Off unless
    /// set (`--direct-requests`). See docs/architecture.md §2.
    pub direct_requests: bool,
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
    /// The defaults with the broker at `urls`: one URL, or several separated by commas or by
    /// `;` (as nameko's `AMQP_URI` writes them). The list is checked when connecting.
    pub fn with_url(urls: impl AsRef<str>) -> Self {
        Self {
            urls: split_urls(urls.as_ref()),
            queue_type: QueueType::default(),
            rpc_exchange: crate::protocol::DEFAULT_RPC_EXCHANGE.to_owned(),
            direct_requests: false,
            connect_timeout: Duration::from_secs(5),
            tls_ca_file: None,
        }
    }

    /// The URLs with their passwords hidden, for logs and errors.
    pub fn redacted_url(&self) -> String {
        let urls: Vec<String> = self.urls.iter().map(|url| redact_url(url)).collect();
        urls.join(", ")
    }

    /// The URLs parsed and checked as one cluster: at least one, none empty, every one
    /// `amqp://` or `amqps://` and all the same scheme, all naming the same virtual host.
    pub(crate) fn uris(&self) -> Result<Vec<(String, AMQPUri)>, ConnectError> {
        let invalid = |reason: String| ConnectError::InvalidUrl {
            url: self.redacted_url(),
            reason,
        };
        if self.urls.is_empty() {
            return Err(invalid("no URL given".into()));
        }
        let mut parsed: Vec<(String, AMQPUri)> = Vec::with_capacity(self.urls.len());
        for (n, url) in self.urls.iter().enumerate() {
            let shown = redact_url(url);
            if url.trim().is_empty() {
                return Err(invalid(format!(
                    "entry {} of {} is empty",
                    n + 1,
                    self.urls.len()
                )));
            }
            let scheme = url.split("://").next().unwrap_or_default();
            if !matches!(scheme, "amqp" | "amqps") {
                return Err(invalid(format!(
                    "`{shown}` is not an amqp:// or amqps:// URL"
                )));
            }
            let uri: AMQPUri = url
                .parse()
                .map_err(|reason: String| invalid(format!("`{shown}`: {reason}")))?;
            if let Some((first_url, first)) = parsed.first() {
                if first.scheme != uri.scheme {
                    return Err(invalid("the URLs mix amqp:// and amqps://".into()));
                }
                if first.vhost != uri.vhost {
                    return Err(invalid(format!(
                        "`{}` and `{shown}` name different virtual hosts (`{}` and `{}`): a \
                         cluster's nodes serve the same ones",
                        redact_url(first_url),
                        first.vhost,
                        uri.vhost
                    )));
                }
            }
            parsed.push((url.clone(), uri));
        }
        Ok(parsed)
    }
}

/// A list of URLs as `AMQP_URL` or `--amqp` gives them: separated by commas or by `;`, each
/// trimmed (an empty entry is kept, to be refused when the list is checked).
pub fn split_urls(list: &str) -> Vec<String> {
    list.split([',', ';'])
        .map(|url| url.trim().to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(list: &str) -> Result<usize, String> {
        AmqpConfig::with_url(list)
            .uris()
            .map(|uris| uris.len())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn lists_are_split_on_commas_and_semicolons() {
        assert_eq!(
            split_urls("amqp://a:1/%2f, amqp://b:2/%2f;amqp://c:3/%2f"),
            ["amqp://a:1/%2f", "amqp://b:2/%2f", "amqp://c:3/%2f"]
        );
        assert_eq!(check("amqp://u:p@a:5701/%2f,amqp://u:p@b:5702/%2f"), Ok(2));
        assert_eq!(check(DEFAULT_AMQP_URL), Ok(1));
    }

    #[test]
    fn bad_lists_are_refused_with_one_line_and_no_password() {
        for (list, expected) in [
            (
                "amqp://u:secret@a/%2f,,amqp://u:secret@b/%2f",
                "entry 2 of 3 is empty",
            ),
            ("amqp://u:secret@a/%2f,", "entry 2 of 2 is empty"),
            (
                "http://u:secret@a/%2f",
                "`http://u:***@a/%2f` is not an amqp://",
            ),
            (
                "amqp://u:secret@a/%2f,amqps://u:secret@b/%2f",
                "mix amqp:// and amqps://",
            ),
            (
                "amqp://u:secret@a/%2f,amqp://u:secret@b/other",
                "different virtual hosts",
            ),
        ] {
            let error = check(list).expect_err(list);
            assert!(error.contains(expected), "{list}: {error}");
            assert!(!error.contains("secret"), "{error}");
            assert!(!error.contains('\n'), "{error}");
        }
    }

    #[test]
    fn queue_types_are_read_by_name() {
        assert_eq!("quorum".parse(), Ok(QueueType::Quorum));
        assert_eq!(" Classic ".parse(), Ok(QueueType::Classic));
        assert!("mirrored".parse::<QueueType>().is_err());
    }
}
