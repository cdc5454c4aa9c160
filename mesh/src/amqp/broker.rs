//! [`Broker`]: one AMQP connection with automatic recovery, shared by the clients and services
//! of a process.

use super::outbound::AmqpOutbound;
use super::publisher::Publisher;
use crate::config::MeshConfig;
use crate::context::CallContext;
use crate::error::{CallError, ConnectError};
use crate::outbound::Client;
use lapin::options::ExchangeDeclareOptions;
use lapin::types::FieldTable;
use lapin::uri::AMQPUri;
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;
use tokio::time::timeout;

/// A connection to RabbitMQ. Cheap to clone.
///
/// The connection recovers by itself (lapin's auto-recovery): after a broker restart it
/// reconnects with backoff and replays the exchanges, queues, bindings and consumers that were
/// declared through it. TCP_NODELAY is set on the socket (by lapin's tokio runtime layer), so
/// small requests are not held back by Nagle's algorithm.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    connection: Connection,
    config: MeshConfig,
    publisher: OnceCell<Publisher>,
}

impl Broker {
    /// Connects, failing within `config.connect_timeout` with a one-line error that names the URL
    /// (password hidden) when the broker cannot be reached.
    pub async fn connect(config: MeshConfig) -> Result<Self, ConnectError> {
        let url = config.redacted_url();
        let uri: AMQPUri =
            config
                .amqp_url
                .parse()
                .map_err(|reason: String| ConnectError::InvalidUrl {
                    url: url.clone(),
                    reason,
                })?;
        let unreachable = |reason: String| ConnectError::Unreachable {
            url: url.clone(),
            reason,
        };

        // With auto-recovery on, lapin keeps retrying a refused connection instead of failing.
        // A plain TCP connect first turns "nothing listens there" into an immediate error.
        let address = (uri.authority.host.clone(), uri.authority.port);
        match timeout(
            config.connect_timeout,
            tokio::net::TcpStream::connect(address),
        )
        .await
        {
            Ok(Ok(_probe)) => {}
            Ok(Err(e)) => return Err(unreachable(e.to_string())),
            Err(_) => return Err(unreachable(timed_out(config.connect_timeout))),
        }

        let properties = ConnectionProperties::default()
            .with_connection_name(format!("warren-{}", std::process::id()).into())
            .enable_auto_recover()
            .configure_backoff(|b| {
                b.with_min_delay(Duration::from_millis(200))
                    .with_max_delay(Duration::from_secs(5))
                    .without_max_times()
            });
        let connection = match timeout(
            config.connect_timeout,
            Connection::connect_uri(uri, properties),
        )
        .await
        {
            Ok(Ok(connection)) => connection,
            Ok(Err(e)) => return Err(unreachable(e.to_string())),
            Err(_) => return Err(unreachable(timed_out(config.connect_timeout))),
        };
        tracing::info!(url = %url, "connected to RabbitMQ");
        Ok(Self {
            inner: Arc::new(Inner {
                connection,
                config,
                publisher: OnceCell::new(),
            }),
        })
    }

    /// The configuration this broker was connected with.
    pub fn config(&self) -> &MeshConfig {
        &self.inner.config
    }

    /// Whether the connection is up (false while it recovers).
    pub fn is_connected(&self) -> bool {
        self.inner.connection.status().connected()
    }

    /// The underlying connection, for its events.
    pub(crate) fn connection(&self) -> &Connection {
        &self.inner.connection
    }

    /// The process's publisher of events and dead letters, opened on first use.
    pub async fn publisher(&self) -> Result<&Publisher, CallError> {
        self.inner
            .publisher
            .get_or_try_init(|| Publisher::open(self))
            .await
            .map_err(|e| CallError::Unavailable(e.to_string()))
    }

    /// Dispatches event `event_type` from `source` outside any handler (a root context);
    /// returns once the broker has confirmed it.
    pub async fn dispatch(
        &self,
        source: &str,
        event_type: &str,
        payload: &Value,
    ) -> Result<(), CallError> {
        self.dispatch_in(source, event_type, payload, &CallContext::default())
            .await
    }

    /// Dispatches event `event_type` from `source` with `context` (the one path every AMQP
    /// dispatch takes: clients, handlers and the announcer).
    pub(crate) async fn dispatch_in(
        &self,
        source: &str,
        event_type: &str,
        payload: &Value,
        context: &CallContext,
    ) -> Result<(), CallError> {
        self.publisher()
            .await?
            .dispatch(source, event_type, payload, context)
            .await
    }

    /// A [`Client`] for calls and dispatches as `owner` (its callback queue is made on the
    /// first call).
    pub fn client(&self, owner: &str) -> Client {
        Client::new(Arc::new(AmqpOutbound::new(self.clone(), owner)), owner)
    }

    /// Opens a channel.
    pub(crate) async fn channel(&self) -> Result<Channel, ConnectError> {
        self.inner
            .connection
            .create_channel()
            .await
            .map_err(|e| self.setup_error(e))
    }

    /// Declares the RPC exchange exactly as nameko does, so nameko peers declaring it too never
    /// meet a PRECONDITION_FAILED.
    pub(crate) async fn declare_rpc_exchange(&self, channel: &Channel) -> Result<(), ConnectError> {
        declare_topic_exchange(channel, &self.config().rpc_exchange)
            .await
            .map_err(|e| self.setup_error(e))
    }

    pub(crate) fn setup_error(&self, error: impl std::fmt::Display) -> ConnectError {
        ConnectError::Setup {
            url: self.config().redacted_url(),
            reason: error.to_string(),
        }
    }

    /// Closes the connection.
    pub async fn close(&self) {
        if let Err(e) = self.inner.connection.close(200, "bye".into()).await {
            tracing::debug!(error = %e, "closing the AMQP connection");
        }
    }
}

/// Declares a durable topic exchange with no arguments: nameko's declaration of both
/// `nameko-rpc` and `<service>.events`.
pub(crate) async fn declare_topic_exchange(channel: &Channel, name: &str) -> lapin::Result<()> {
    channel
        .exchange_declare(
            name.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
}

/// A broker error as a caller sees it.
pub(crate) fn unavailable(error: lapin::Error) -> CallError {
    CallError::Unavailable(error.to_string())
}

fn timed_out(after: Duration) -> String {
    format!("no answer within {} ms", after.as_millis())
}
