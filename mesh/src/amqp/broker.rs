//! [`Broker`]: one AMQP connection shared by the clients and services of a process, replaced by
//! a new one whenever it drops (see [`super::link`]).

use super::config::QueueType;
use super::link::{Dialer, Link, Links};
use crate::config::MeshConfig;
use crate::error::{CallError, ConnectError};
use crate::shutdown::Shutdown;
use lapin::options::ExchangeDeclareOptions;
use lapin::tcp::OwnedTLSConfig;
use lapin::types::{AMQPValue, FieldTable};
use lapin::uri::AMQPUri;
use lapin::{Channel, ExchangeKind};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long to wait before attaching again on a connection that is up but refused the attempt.
const RETRY_ATTACH: Duration = Duration::from_millis(500);

/// A connection to RabbitMQ, shared by the clients and services of a process. Cheap to clone.
///
/// When the connection drops (a broker restart, a network cut), the broker dials again with
/// backoff, and every queue consumer, callback queue and publisher opened through it re-declares
/// its topology on the new connection by itself. Meanwhile calls fail at once with
/// `Unavailable`. TCP_NODELAY is set on the socket (by lapin's tokio runtime layer), so small
/// requests are not held back by Nagle's algorithm.
#[derive(Clone)]
pub(crate) struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    links: Arc<Links>,
    supervisor: JoinHandle<()>,
    config: MeshConfig,
    /// Tasks holding channels of their own (callback queues), stopped before the connection
    /// closes.
    channel_tasks: std::sync::Mutex<Vec<Arc<ChannelTask>>>,
}

/// A task that holds channels on this broker's connection (a callback queue's consumer and its
/// publisher). [`Broker::close`] stops it first, and it closes its channels while the
/// connection is still open. (Dropped after the connection began closing, lapin would close
/// them on a closing connection and log that as a connection error.)
pub(crate) struct ChannelTask {
    /// Tells the task to close its channels and end.
    stop: Shutdown,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
}

/// How long a task may take to close its channels on [`Broker::close`] before it is aborted.
const CHANNEL_CLOSE_LIMIT: Duration = Duration::from_secs(2);

impl ChannelTask {
    /// Tells the task to close its channels and end, without waiting (its owner is gone; a
    /// [`Broker::close`] meanwhile still waits for it).
    pub(crate) fn release(&self) {
        self.stop.trigger();
    }

    fn is_finished(&self) -> bool {
        self.task
            .lock()
            .map(|task| task.as_ref().is_none_or(JoinHandle::is_finished))
            .unwrap_or(true)
    }

    /// Asks the task to close its channels and waits until it is gone (at most
    /// [`CHANNEL_CLOSE_LIMIT`]).
    async fn stop(&self) {
        self.stop.trigger();
        if let Some(mut task) = self.take()
            && tokio::time::timeout(CHANNEL_CLOSE_LIMIT, &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }

    fn take(&self) -> Option<JoinHandle<()>> {
        self.task.lock().ok()?.take()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.supervisor.abort();
    }
}

/// The largest AMQP frame this process asks for, bytes, unless its URL names one.
pub(crate) const FRAME_MAX: u32 = 16 * 1024;

/// Asks for [`FRAME_MAX`] unless `uri` names a `frame_max`. lapin keeps a send and a receive
/// buffer of 32 frames each: at RabbitMQ's default frame_max (128 KiB) that is 8 MiB a
/// connection once touched, a third of a gateway's RSS. RPC messages are small; larger ones go
/// out as more frames.
fn ask_for_small_frames(uri: &mut AMQPUri) {
    uri.query.frame_max.get_or_insert(FRAME_MAX);
}

impl Broker {
    /// Connects, failing within `config.connect_timeout` with a one-line error that names the URL
    /// (password hidden) when the broker cannot be reached.
    pub(crate) async fn connect(config: MeshConfig) -> Result<Self, ConnectError> {
        let url = config.amqp.redacted_url();
        let mut nodes = config.amqp.uris()?;
        for (_, uri) in &mut nodes {
            ask_for_small_frames(uri);
        }
        let nodes = nodes
            .into_iter()
            .map(|(url, uri)| (crate::redact_url(&url), uri))
            .collect();
        let mut dialer = Dialer::new(
            nodes,
            format!("warren-{}", std::process::id()),
            config.amqp.connect_timeout,
            tls_config(&config)?,
        );
        let (connection, node) =
            dialer
                .dial_any()
                .await
                .map_err(|reason| ConnectError::Unreachable {
                    url: url.clone(),
                    reason,
                })?;
        tracing::info!(url = %node, "connected to RabbitMQ");
        let (links, supervisor) = Links::start(connection, dialer);
        Ok(Self {
            inner: Arc::new(Inner {
                links,
                supervisor,
                config,
                channel_tasks: std::sync::Mutex::new(Vec::new()),
            }),
        })
    }

    /// The configuration this broker was connected with.
    pub(crate) fn config(&self) -> &MeshConfig {
        &self.inner.config
    }

    /// The RPC exchange's name.
    pub(crate) fn rpc_exchange(&self) -> &str {
        &self.inner.config.amqp.rpc_exchange
    }

    /// The kind of queue declared for this process's services.
    pub(crate) fn queue_type(&self) -> QueueType {
        self.inner.config.amqp.queue_type
    }

    /// Whether the connection is up (false while it is being replaced).
    pub(crate) fn is_connected(&self) -> bool {
        self.inner.links.current().connected().is_some()
    }

    /// Whether [`Broker::close`] was called: a consumer ending now is the close, not a loss.
    pub(crate) fn is_closed(&self) -> bool {
        self.inner.links.is_closed()
    }

    /// The link of the moment.
    pub(crate) fn link(&self) -> Link {
        self.inner.links.current()
    }

    /// A receiver of every change of link.
    pub(crate) fn watch_links(&self) -> watch::Receiver<Link> {
        self.inner.links.watch()
    }

    /// Waits for a connected link of a generation after `after`; `None` once the broker closed.
    pub(crate) async fn next_link(&self, after: u64) -> Option<Link> {
        self.inner.links.next_after(after).await
    }

    /// Runs `attach` on the first connection of a generation after `after`; while it fails, again
    /// a moment later or on the next connection. `None` once `stop` fired or the broker closed.
    /// This is how consumers come back after the connection was replaced.
    pub(crate) async fn attach_again<T, Fut>(
        &self,
        mut after: u64,
        stop: &Shutdown,
        label: &str,
        attach: impl Fn() -> Fut,
    ) -> Option<T>
    where
        Fut: Future<Output = Result<T, ConnectError>>,
    {
        loop {
            let link = tokio::select! {
                () = stop.triggered() => return None,
                link = self.next_link(after) => link?,
            };
            match attach().await {
                Ok(attached) => {
                    tracing::info!(%label, generation = link.generation, "re-attached");
                    return Some(attached);
                }
                Err(error) => {
                    tracing::warn!(%label, %error, "cannot re-attach yet");
                    after = link.generation.saturating_sub(1);
                    tokio::select! {
                        () = stop.triggered() => return None,
                        () = tokio::time::sleep(RETRY_ATTACH) => {}
                    }
                }
            }
        }
    }

    /// Opens a channel on the connection of the moment, with that connection's generation.
    pub(crate) async fn open_channel(&self) -> Result<(u64, Channel), ConnectError> {
        let link = self.link();
        let Some(connection) = link.connected() else {
            return Err(self.setup_error("not connected to the broker"));
        };
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| self.setup_error(e))?;
        Ok((link.generation, channel))
    }

    /// Declares the RPC exchange exactly as nameko does, so nameko peers declaring it too never
    /// meet a PRECONDITION_FAILED.
    pub(crate) async fn declare_rpc_exchange(&self, channel: &Channel) -> Result<(), ConnectError> {
        declare_topic_exchange(channel, self.rpc_exchange())
            .await
            .map_err(|e| self.setup_error(e))
    }

    pub(crate) fn setup_error(&self, error: impl std::fmt::Display) -> ConnectError {
        ConnectError::Setup {
            url: self.config().amqp.redacted_url(),
            reason: error.to_string(),
        }
    }

    /// Keeps `task` (which holds channels of its own and ends, closing them, once `stop` is
    /// triggered) to stop before the connection closes.
    pub(crate) fn track(&self, stop: Shutdown, task: JoinHandle<()>) -> Arc<ChannelTask> {
        let tracked = Arc::new(ChannelTask {
            stop,
            task: std::sync::Mutex::new(Some(task)),
        });
        if let Ok(mut tasks) = self.inner.channel_tasks.lock() {
            tasks.retain(|t| !t.is_finished());
            tasks.push(tracked.clone());
        }
        tracked
    }

    /// Closes the connection, after the tasks holding channels of their own (callback queues)
    /// have stopped; the broker does not reconnect after this.
    pub(crate) async fn close(&self) {
        let tasks: Vec<Arc<ChannelTask>> = self
            .inner
            .channel_tasks
            .lock()
            .map(|mut tasks| tasks.drain(..).collect())
            .unwrap_or_default();
        for task in tasks {
            task.stop().await;
        }
        self.inner.links.close().await;
    }
}

/// The extra CA certificates of `config.tls_ca_file`, checked to hold at least one PEM
/// certificate so a wrong file fails at start rather than at the first TLS handshake.
fn tls_config(config: &MeshConfig) -> Result<OwnedTLSConfig, ConnectError> {
    let Some(path) = &config.amqp.tls_ca_file else {
        return Ok(OwnedTLSConfig::default());
    };
    let error = |reason: String| ConnectError::Tls {
        path: path.display().to_string(),
        reason,
    };
    let pem = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
    if !pem.contains("-----BEGIN CERTIFICATE-----") {
        return Err(error("no PEM certificate in it".into()));
    }
    Ok(OwnedTLSConfig {
        identity: None,
        cert_chain: Some(pem),
    })
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

/// The arguments of a service's durable queue: none for a classic queue (nameko's declaration),
/// `x-queue-type: quorum` for a quorum queue.
pub(crate) fn queue_arguments(queue_type: QueueType) -> FieldTable {
    let mut arguments = FieldTable::default();
    if queue_type == QueueType::Quorum {
        arguments.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
    }
    arguments
}

/// The error of declaring `queue`. A queue that exists as the other kind (classic or quorum)
/// cannot be declared as this one, and the broker's PRECONDITION_FAILED names only the
/// argument: the error says which kind the queue is and what to do.
pub(crate) fn declare_error(broker: &Broker, queue: &str, error: lapin::Error) -> ConnectError {
    let text = error.to_string();
    if !text.contains("inequivalent arg 'x-queue-type'") {
        return broker.setup_error(error);
    }
    let reason = match broker.queue_type() {
        QueueType::Quorum => format!(
            "`{queue}` exists as a classic queue and this process declares quorum queues \
             (--queue-type quorum): run it with --queue-type classic (WARREN_QUEUE_TYPE), or \
             delete the queue (rabbitmqctl delete_queue {queue}, losing what waits in it) so that \
             it is declared again as a quorum queue; nameko services cannot declare quorum queues"
        ),
        QueueType::Classic => format!(
            "`{queue}` exists as a quorum queue and this process declares classic queues: run it \
             with --queue-type quorum (WARREN_QUEUE_TYPE=quorum), as the processes that declared \
             it do"
        ),
    };
    ConnectError::Setup {
        url: broker.config().amqp.redacted_url(),
        reason,
    }
}

/// A broker error as a caller sees it.
pub(crate) fn unavailable(error: lapin::Error) -> CallError {
    CallError::Unavailable(error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_frames_are_asked_for_unless_the_url_names_a_size() {
        let mut uri: AMQPUri = "amqp://guest:guest@127.0.0.1:5672/%2f"
            .parse()
            .expect("uri");
        ask_for_small_frames(&mut uri);
        assert_eq!(uri.query.frame_max, Some(FRAME_MAX));
        let mut uri: AMQPUri = "amqp://guest:guest@127.0.0.1:5672/%2f?frame_max=65536"
            .parse()
            .expect("uri");
        ask_for_small_frames(&mut uri);
        assert_eq!(uri.query.frame_max, Some(65_536));
    }
}
