//! [`Links`]: the broker connection of the moment, and the task that replaces it when it drops.
//!
//! Why not lapin's own auto-recovery: under load, after `rabbitmqctl stop_app`/`start_app` it
//! stayed `Reconnecting` for 20 s and more after the broker was back, every time, and after a
//! `kill -9` of the broker it stalled in one run of three. Recovery here is plain
//! instead: one task watches the connection and, once it drops, dials again with backoff and
//! publishes the new connection under a new *generation*. Every user of the connection (the
//! reply consumer, each consume loop, the publisher) watches the generation and re-declares its
//! own queues, bindings and consumers on the new connection, as kombu's consumers do for nameko.
//! There is no replayed state that can go stale.

use crate::shutdown::Shutdown;
use futures_util::StreamExt;
use lapin::tcp::OwnedTLSConfig;
use lapin::uri::AMQPUri;
use lapin::{Connection, ConnectionProperties};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::{Instant, timeout};

/// The first wait before dialling again after the connection dropped; it doubles per failed
/// attempt up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between two attempts: a broker that comes back is found within this.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// How often the watcher looks at the connection's state. lapin does not report every way a
/// connection ends as an event (a broker's `connection.close` only changes the state), so the
/// state is polled; the events only make the common case (a socket error) immediate.
const POLL: Duration = Duration::from_millis(50);

/// One connection to the broker and its generation: 1 for the first connection, one more for
/// each reconnection. `connection` is `None` while the broker is unreachable.
#[derive(Clone)]
pub(crate) struct Link {
    pub generation: u64,
    pub connection: Option<Arc<Connection>>,
}

impl Link {
    /// Whether something attached on connection `generation` lost it: the link is down, or
    /// is a newer connection.
    pub fn left_behind(&self, generation: u64) -> bool {
        self.generation != generation || self.connection.is_none()
    }

    /// The connection, when it is up.
    pub fn connected(&self) -> Option<&Connection> {
        self.connection
            .as_deref()
            .filter(|connection| connection.status().connected())
    }
}

/// How to dial the broker: its nodes, in this process's order, and which one comes next.
pub(crate) struct Dialer {
    /// Each node's URL with its password hidden (for logs) and its URI.
    nodes: Vec<(String, AMQPUri)>,
    /// The node the next attempt dials.
    next: usize,
    name: String,
    timeout: Duration,
    /// Extra trusted CA certificates for `amqps://`, besides the system's.
    tls: OwnedTLSConfig,
}

impl Dialer {
    /// A dialer of `nodes` (at least one), shuffled so that the instances of a service spread
    /// over a cluster's nodes rather than all connect to the first.
    pub fn new(
        mut nodes: Vec<(String, AMQPUri)>,
        name: String,
        timeout: Duration,
        tls: OwnedTLSConfig,
    ) -> Self {
        shuffle(&mut nodes);
        Self {
            nodes,
            next: 0,
            name,
            timeout,
            tls,
        }
    }

    /// One attempt on the next node, failing after `timeout`; the node after it is tried next
    /// time. Returns the connection and the node's URL (password hidden).
    pub async fn dial(&mut self) -> Result<(Connection, String), String> {
        let (shown, uri) = self
            .nodes
            .get(self.next % self.nodes.len().max(1))
            .cloned()
            .ok_or_else(|| "no broker to dial".to_owned())?;
        self.next = (self.next + 1) % self.nodes.len().max(1);
        let properties =
            ConnectionProperties::default().with_connection_name(self.name.as_str().into());
        let runtime = lapin::runtime::default_runtime().map_err(|e| e.to_string())?;
        let connect =
            Connection::connect_uri_with_config(uri, properties, self.tls.clone(), runtime);
        match timeout(self.timeout, connect).await {
            Ok(Ok(connection)) => Ok((connection, shown)),
            Ok(Err(e)) => Err(format!("{shown}: {e}")),
            Err(_) => Err(format!(
                "{shown}: no answer within {} ms",
                self.timeout.as_millis()
            )),
        }
    }

    /// Dials every node once, in turn from the next: the first that answers, or what each said.
    pub async fn dial_any(&mut self) -> Result<(Connection, String), String> {
        let mut failures = Vec::with_capacity(self.nodes.len());
        for _ in 0..self.nodes.len().max(1) {
            match self.dial().await {
                Ok(connected) => return Ok(connected),
                Err(error) => failures.push(error),
            }
        }
        Err(failures.join("; "))
    }
}

/// Shuffles `nodes` in place (Fisher-Yates, seeded per process from a random uuid).
fn shuffle<T>(nodes: &mut [T]) {
    let mut seed = uuid::Uuid::new_v4().as_u128();
    for i in (1..nodes.len()).rev() {
        let j = usize::try_from(seed % (i as u128 + 1)).unwrap_or(0);
        seed /= i as u128 + 1;
        nodes.swap(i, j);
    }
}

/// The current [`Link`], for anyone to read or wait on.
pub(crate) struct Links {
    tx: watch::Sender<Link>,
    closed: Shutdown,
}

impl Links {
    /// Links starting with `connection` as generation 1, and the task that keeps them up.
    pub fn start(
        connection: Connection,
        dialer: Dialer,
    ) -> (Arc<Self>, tokio::task::JoinHandle<()>) {
        let links = Arc::new(Self {
            tx: watch::channel(Link {
                generation: 1,
                connection: Some(Arc::new(connection)),
            })
            .0,
            closed: Shutdown::new(),
        });
        let task = tokio::spawn(supervise(links.clone(), dialer));
        (links, task)
    }

    /// The link of the moment.
    pub fn current(&self) -> Link {
        self.tx.borrow().clone()
    }

    /// A receiver that sees every change of link.
    pub fn watch(&self) -> watch::Receiver<Link> {
        self.tx.subscribe()
    }

    /// Whether [`Links::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed.is_triggered()
    }

    /// Waits for a connected link of a generation after `after`; `None` once closed.
    pub async fn next_after(&self, after: u64) -> Option<Link> {
        let mut rx = self.tx.subscribe();
        tokio::select! {
            () = self.closed.triggered() => None,
            link = rx.wait_for(|link| link.generation > after && link.connected().is_some()) => {
                link.ok().map(|link| link.clone())
            }
        }
    }

    /// Stops reconnecting and closes the current connection.
    pub async fn close(&self) {
        self.closed.trigger();
        if let Some(connection) = self.current().connected() {
            let close = connection.close(200, "bye".into());
            super::closing::step("closing the AMQP connection", close).await;
        }
    }
}

/// Watches the connection; when it drops, marks the link down and dials until the broker
/// answers, then publishes the new connection as the next generation.
async fn supervise(links: Arc<Links>, mut dialer: Dialer) {
    loop {
        let link = links.current();
        if let Some(connection) = &link.connection {
            tokio::select! {
                () = links.closed.triggered() => return,
                () = dropped(connection) => {}
            }
        }
        if links.is_closed() {
            return;
        }
        links.tx.send_modify(|link| link.connection = None);
        tracing::warn!("connection to RabbitMQ lost; reconnecting");
        let lost_at = Instant::now();
        let mut backoff = FIRST_BACKOFF;
        let mut attempts = 0u32;
        let (connection, node) = loop {
            tokio::select! {
                () = links.closed.triggered() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            attempts += 1;
            match dialer.dial().await {
                Ok(connected) => break connected,
                Err(error) => {
                    tracing::debug!(attempts, %error, "RabbitMQ not reachable yet");
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        };
        let generation = link.generation + 1;
        links.tx.send_modify(|link| {
            link.generation = generation;
            link.connection = Some(Arc::new(connection));
        });
        metrics::counter!("warren_broker_reconnects_total").increment(1);
        tracing::info!(
            generation,
            attempts,
            url = %node,
            down_ms = lost_at.elapsed().as_millis() as u64,
            "reconnected to RabbitMQ"
        );
    }
}

/// Returns once `connection` is no longer connected.
async fn dropped(connection: &Connection) {
    let mut events = connection.events_listener();
    let mut poll = tokio::time::interval(POLL);
    while connection.status().connected() {
        // Any event (an error, mostly) is a reason to look at the state at once.
        tokio::select! {
            Some(_) = events.next() => {}
            _ = poll.tick() => {}
        }
    }
}
