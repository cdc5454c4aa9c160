//! The physical limit: a minimal lapin client and responder making the gateway's round trip and
//! nothing else, so the bench can say what mesh and the gateway cost on top of the broker.
//!
//! The responder ([`responder`]) consumes a non-durable queue with prefetch 256 on one
//! channel, and per request publishes a constant nameko reply to the request's `reply_to`, then
//! acks it. The client ([`RawClient`]) publishes on one channel with no confirms, no
//! `mandatory`, no `expiration` and no headers, and consumes an exclusive server-named reply
//! queue with no-ack; a request's correlation id is a counter. Each [`Routing`] is one way of
//! routing requests and replies, so the figures show what the broker's routing itself costs:
//!
//! - `topic`: nameko's, requests through a topic exchange to a queue bound `<service>.*`, replies
//!   through it to the reply queue's binding (what mesh does with nameko peers);
//! - `topic+direct reply`: requests as nameko's, replies straight to the reply queue through the
//!   default exchange (mesh's direct replies);
//! - `direct`: requests and replies through the default exchange (mesh's direct requests between
//!   Warren peers).
//!
//! Two layouts: the responder in a process of its own (`warren-bench raw-responder`) and the
//! client in the bench's, as the greeter and the gateway are; or both on one connection in one
//! process, as `warren dev --amqp` has its gateway and services.

pub mod levels;
pub mod ratios;
mod responder;

pub use responder::{Responders, serve_responders, serve_until_stopped};

use anyhow::{Context, Result};
use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// The topic exchange of the raw round trips: not nameko's, so the bench's queues never meet a
/// real service's requests.
pub const EXCHANGE: &str = "warren-bench.raw";

/// The request body, the same as the gateway sends for `{"name": "Matt"}`.
const REQUEST: &[u8] = br#"{"args":[],"kwargs":{"name":"Matt"}}"#;

/// How requests and replies are routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    /// Requests and replies through the topic exchange (nameko's routing).
    Topic,
    /// Requests through the topic exchange, replies through the default exchange.
    TopicDirectReply,
    /// Requests and replies through the default exchange.
    Direct,
}

impl Routing {
    /// All of them, in the report's order.
    pub const ALL: [Routing; 3] = [Self::Topic, Self::TopicDirectReply, Self::Direct];

    /// The report's name of the routing's two-process rows.
    pub fn target(self) -> &'static str {
        match self {
            Self::Topic => "raw topic",
            Self::TopicDirectReply => "raw topic+direct reply",
            Self::Direct => "raw direct",
        }
    }

    /// The responder's queue for this routing: one per routing and bench run (`run` keeps
    /// concurrent runs apart).
    pub fn queue(self, run: &str) -> String {
        format!("warren-bench.raw.{}.{run}", self.short())
    }

    /// The routing key requests are published with (and the queue bound with, for topic).
    fn request_key(self, run: &str) -> String {
        match self {
            Self::Direct => self.queue(run),
            Self::Topic | Self::TopicDirectReply => format!("raw_{}_{run}.hello", self.short()),
        }
    }

    /// The binding of the responder's queue on [`EXCHANGE`], for the topic routings.
    fn binding(self, run: &str) -> Option<String> {
        match self {
            Self::Direct => None,
            Self::Topic | Self::TopicDirectReply => Some(format!("raw_{}_{run}.*", self.short())),
        }
    }

    /// The exchange requests go to.
    fn request_exchange(self) -> &'static str {
        match self {
            Self::Direct => "",
            Self::Topic | Self::TopicDirectReply => EXCHANGE,
        }
    }

    /// The exchange replies go to.
    fn reply_exchange(self) -> &'static str {
        match self {
            Self::Topic => EXCHANGE,
            Self::TopicDirectReply | Self::Direct => "",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Self::Topic => "topic",
            Self::TopicDirectReply => "reply",
            Self::Direct => "direct",
        }
    }
}

/// Declares [`EXCHANGE`] (durable, like nameko's, so a declare by a second run matches).
async fn declare_exchange(channel: &Channel) -> Result<()> {
    channel
        .exchange_declare(
            EXCHANGE.into(),
            lapin::ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .context("declaring the raw exchange")
}

/// Connects to `amqp` (the bench's own connections, no recovery: a lost broker ends the run).
pub async fn connect(amqp: &str) -> Result<Connection> {
    Connection::connect(amqp, lapin::ConnectionProperties::default())
        .await
        .context("the raw AMQP connection")
}

/// An exclusive, server-named queue on `channel`, consumed with no-ack under `tag`: a raw
/// client's reply queue, or a raw event consumer's.
pub async fn exclusive_queue(
    channel: &Channel,
    tag: &str,
) -> Result<(ShortString, lapin::Consumer)> {
    let exclusive = QueueDeclareOptions {
        exclusive: true,
        auto_delete: true,
        ..QueueDeclareOptions::default()
    };
    let queue = channel
        .queue_declare("".into(), exclusive, FieldTable::default())
        .await?;
    let name = queue.name().clone();
    let no_ack = BasicConsumeOptions {
        no_ack: true,
        ..BasicConsumeOptions::default()
    };
    let consumer = channel
        .basic_consume(name.clone(), tag.into(), no_ack, FieldTable::default())
        .await?;
    Ok((name, consumer))
}

/// A minimal RPC client of one routing: one channel, one reply queue, no confirms.
#[derive(Clone)]
pub struct RawClient {
    inner: Arc<Inner>,
}

struct Inner {
    channel: Channel,
    routing: Routing,
    request_key: ShortString,
    reply_to: ShortString,
    next: AtomicU64,
    waiting: Mutex<HashMap<u64, oneshot::Sender<()>>>,
}

impl RawClient {
    /// A client of `routing` on `connection`, calling the responder of run `run`.
    pub async fn start(connection: &Connection, routing: Routing, run: &str) -> Result<Self> {
        let channel = connection.create_channel().await?;
        declare_exchange(&channel).await?;
        let (reply_to, mut consumer) = exclusive_queue(&channel, "raw-client").await?;
        if routing.reply_exchange() == EXCHANGE {
            channel
                .queue_bind(
                    reply_to.clone(),
                    EXCHANGE.into(),
                    reply_to.clone(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        let inner = Arc::new(Inner {
            channel,
            routing,
            request_key: routing.request_key(run).into(),
            reply_to,
            next: AtomicU64::new(0),
            waiting: Mutex::new(HashMap::new()),
        });
        // The reply consumer ends with the channel (the client's last clone dropped, or the
        // connection closed).
        let replies = Arc::downgrade(&inner);
        tokio::spawn(async move {
            while let Some(Ok(delivery)) = consumer.next().await {
                let Some(inner) = replies.upgrade() else {
                    return;
                };
                let id = delivery
                    .properties
                    .correlation_id()
                    .as_ref()
                    .and_then(|id| id.as_str().parse::<u64>().ok());
                let waiter = id.and_then(|id| inner.waiting.lock().ok()?.remove(&id));
                if let Some(waiter) = waiter {
                    let _ = waiter.send(());
                }
            }
        });
        Ok(Self { inner })
    }

    /// One round trip: the request out, its reply back.
    pub async fn call(&self) -> Result<(), String> {
        let inner = &self.inner;
        let id = inner.next.fetch_add(1, Ordering::Relaxed);
        let (done, reply) = oneshot::channel();
        if let Ok(mut waiting) = inner.waiting.lock() {
            waiting.insert(id, done);
        }
        let properties = BasicProperties::default()
            .with_reply_to(inner.reply_to.clone())
            .with_correlation_id(id.to_string().into());
        inner
            .channel
            .basic_publish(
                inner.routing.request_exchange().into(),
                inner.request_key.clone(),
                BasicPublishOptions::default(),
                REQUEST,
                properties,
            )
            .await
            .map_err(|e| e.to_string())?;
        reply
            .await
            .map_err(|_| "the reply consumer ended".to_owned())
    }

    /// Closes the client's channel (and so its reply queue).
    pub async fn close(&self) {
        let _ = self.inner.channel.close(200, "done".into()).await;
    }
}
