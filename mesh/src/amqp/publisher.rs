//! [`Dispatcher`]: the process's confirm channel for events and dead letters ([`Publisher`]),
//! opened on first use and again on each new connection. Every publish waits for the broker's
//! confirm, so a dispatch that returns has reached the broker.

use super::broker::{Broker, declare_topic_exchange, unavailable};
use super::headers;
use crate::call_context::CallContext;
use crate::deadline::Deadline;
use crate::error::CallError;
use crate::protocol::events_exchange;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation};
use serde_json::Value;
use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// The process's publisher of events and dead letters, on a broker. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Dispatcher {
    broker: Broker,
    slot: Arc<Mutex<Slot>>,
}

/// How long a dispatch without a deadline keeps trying (a broker between nodes, a quorum queue
/// between leaders).
pub(crate) const DISPATCH_LIMIT: Duration = Duration::from_secs(10);

/// How long to wait after the broker refused a message before publishing it again.
const AFTER_REFUSAL: Duration = Duration::from_millis(50);

/// How long to wait after the connection was lost before trying the next one.
const AFTER_LOSS: Duration = Duration::from_millis(100);

/// How many refusals in a row before the channel is replaced.
const NACKS_BEFORE_RENEWAL: u32 = 8;

/// The publisher and the generation of the connection it lives on, once opened.
type Slot = Option<(u64, Arc<Publisher>)>;

impl Dispatcher {
    /// A dispatcher on `broker`; its channel is opened on the first publish.
    pub(crate) fn new(broker: Broker) -> Self {
        Self {
            broker,
            slot: Arc::default(),
        }
    }

    /// The publisher on the connection of the moment.
    pub(crate) async fn publisher(&self) -> Result<Arc<Publisher>, CallError> {
        let mut slot = self.slot.lock().await;
        let link = self.broker.link();
        if let Some((generation, publisher)) = slot.as_ref()
            && *generation == link.generation
            && publisher.is_open()
        {
            return Ok(publisher.clone());
        }
        let (generation, channel) = self
            .broker
            .open_channel()
            .await
            .map_err(|e| CallError::Unavailable(e.to_string()))?;
        let publisher = Arc::new(Publisher::open(channel).await.map_err(unavailable)?);
        *slot = Some((generation, publisher.clone()));
        Ok(publisher)
    }

    /// Dispatches event `event_type` from `source` with `context` (the one path every AMQP
    /// dispatch takes: clients, handlers and the announcer); returns once the broker has
    /// confirmed it. Tried again (see [`Dispatcher::until_confirmed`]) until the context's
    /// deadline, or [`DISPATCH_LIMIT`] without one.
    pub(crate) async fn dispatch(
        &self,
        source: &str,
        event_type: &str,
        payload: &Value,
        context: &CallContext,
    ) -> Result<(), CallError> {
        self.until_confirmed(context.deadline, |publisher| async move {
            publisher
                .dispatch(source, event_type, payload, context)
                .await
        })
        .await
    }

    /// Publishes `body` with `properties` to `queue` through the default exchange (a copy of a
    /// delivery for its retry queue or its dead-letter queue); returns once the broker has
    /// confirmed that the queue took it. Tried again as a dispatch is, for up to
    /// [`DISPATCH_LIMIT`].
    pub(crate) async fn to_queue(
        &self,
        queue: &str,
        body: &[u8],
        properties: &BasicProperties,
    ) -> Result<(), CallError> {
        self.until_confirmed(None, |publisher| async move {
            publisher.to_queue(queue, body, properties.clone()).await
        })
        .await
    }

    /// Runs `publish` on the publisher of the moment until the broker confirms, until
    /// `deadline` (or [`DISPATCH_LIMIT`] from now). A refused message (the broker's nack: a
    /// quorum queue between leaders) or one lost with its connection is published again: an
    /// event may then arrive twice, and handlers take events at least once anyway. A channel
    /// refused again and again is replaced, as a request channel is (a channel that first met
    /// a quorum queue without a leader can go on being refused after the election).
    async fn until_confirmed<F, Fut>(
        &self,
        deadline: Option<Deadline>,
        publish: F,
    ) -> Result<(), CallError>
    where
        F: Fn(Arc<Publisher>) -> Fut,
        Fut: Future<Output = Result<(), CallError>>,
    {
        let until = deadline.map_or_else(|| Instant::now() + DISPATCH_LIMIT, |d| d.instant());
        let mut refused = 0u32;
        loop {
            let (publisher, outcome) = match self.publisher().await {
                Ok(publisher) => (Some(publisher.clone()), publish(publisher).await),
                Err(error) => (None, Err(error)),
            };
            let Err(error) = outcome else {
                return Ok(());
            };
            if Instant::now() >= until {
                return Err(error);
            }
            match publisher.filter(|p| p.is_open()) {
                Some(publisher) => {
                    refused += 1;
                    if refused.is_multiple_of(NACKS_BEFORE_RENEWAL) {
                        self.forget(&publisher).await;
                    }
                    tokio::time::sleep(AFTER_REFUSAL).await;
                }
                None => tokio::time::sleep(AFTER_LOSS).await,
            }
        }
    }

    /// Drops `stale` from the slot (the next publish opens a channel), and closes it a moment
    /// later, once what it still waits for is settled.
    async fn forget(&self, stale: &Arc<Publisher>) {
        let mut slot = self.slot.lock().await;
        if slot.as_ref().is_some_and(|(_, p)| Arc::ptr_eq(p, stale)) {
            *slot = None;
            tracing::info!(
                "the broker refused message after message on the event channel; replacing it"
            );
            let stale = stale.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let close = stale.channel.close(200, "replaced".into());
                super::closing::step("closing a replaced event channel", close).await;
            });
        }
    }
}

/// Publishes events and dead letters on one confirm channel.
pub(crate) struct Publisher {
    channel: Channel,
    /// Event exchanges already declared through this channel (a new connection gets a new
    /// publisher).
    declared: Mutex<HashSet<String>>,
}

impl Publisher {
    /// Puts `channel` in confirm mode and publishes through it.
    async fn open(channel: Channel) -> lapin::Result<Self> {
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Self {
            channel,
            declared: Mutex::new(HashSet::new()),
        })
    }

    /// Whether its channel still works (not once its connection dropped or the broker closed it).
    pub(crate) fn is_open(&self) -> bool {
        self.channel.status().connected()
    }

    /// Declares `<source>.events` as nameko does (topic, durable), once per process.
    pub(crate) async fn declare_events_exchange(&self, source: &str) -> Result<String, CallError> {
        let exchange = events_exchange(source);
        let mut declared = self.declared.lock().await;
        if !declared.contains(&exchange) {
            declare_topic_exchange(&self.channel, &exchange)
                .await
                .map_err(unavailable)?;
            declared.insert(exchange.clone());
        }
        Ok(exchange)
    }

    /// Publishes event `event_type` from `source`: persistent, JSON, with the context headers.
    pub(crate) async fn dispatch(
        &self,
        source: &str,
        event_type: &str,
        payload: &Value,
        context: &CallContext,
    ) -> Result<(), CallError> {
        let exchange = self.declare_events_exchange(source).await?;
        let body =
            serde_json::to_vec(payload).map_err(|e| CallError::InvalidArguments(e.to_string()))?;
        let properties = json_properties(2).with_headers(headers::write(context));
        self.publish(&exchange, event_type, &body, properties).await
    }

    /// Publishes a message to `queue` through the default exchange, mandatory: a queue that is
    /// not there fails the publish instead of dropping the message.
    pub(crate) async fn to_queue(
        &self,
        queue: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), CallError> {
        self.publish_with("", queue, body, properties, true).await
    }

    async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), CallError> {
        self.publish_with(exchange, routing_key, body, properties, false)
            .await
    }

    async fn publish_with(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
        mandatory: bool,
    ) -> Result<(), CallError> {
        let options = BasicPublishOptions {
            mandatory,
            ..BasicPublishOptions::default()
        };
        let confirmation = self
            .channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                options,
                body,
                properties,
            )
            .await
            .map_err(unavailable)?
            .await
            .map_err(unavailable)?;
        match confirmation {
            Confirmation::Nack(_) => Err(CallError::Unavailable(
                "the broker refused the message".into(),
            )),
            Confirmation::Ack(Some(_)) => Err(CallError::Unavailable(format!(
                "no queue `{routing_key}` took the message"
            ))),
            Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
        }
    }
}

/// The properties of a copy of a delivery with `original`'s: persistent, JSON unless the
/// original said otherwise, with `headers`.
pub(crate) fn copy_properties(original: &BasicProperties, headers: FieldTable) -> BasicProperties {
    let mut properties = json_properties(2).with_headers(headers);
    if let Some(content_type) = original.content_type().clone() {
        properties = properties.with_content_type(content_type);
    }
    properties
}

/// JSON properties with `delivery_mode` (1 transient, 2 persistent).
pub(crate) fn json_properties(delivery_mode: u8) -> BasicProperties {
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_content_encoding("utf-8".into())
        .with_delivery_mode(delivery_mode)
}
