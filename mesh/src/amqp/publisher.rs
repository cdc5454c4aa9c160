//! [`Dispatcher`]: the process's confirm channel for events and dead letters ([`Publisher`]),
//! opened on first use and again on each new connection. Every publish waits for the broker's
//! confirm, so a dispatch that returns has reached the broker.

use super::broker::{Broker, declare_topic_exchange, unavailable};
use super::headers;
use crate::call_context::CallContext;
use crate::error::CallError;
use crate::protocol::events_exchange;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Confirmation};
use serde_json::Value;
use std::collections::HashSet;
use std::sync::Arc;
use tokio::sync::Mutex;

/// The process's publisher of events and dead letters, on a broker. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Dispatcher {
    broker: Broker,
    slot: Arc<Mutex<Slot>>,
}

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
    /// confirmed it.
    pub(crate) async fn dispatch(
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

    /// Copies a message to `queue` (through the default exchange), persistent, with extra
    /// headers saying why.
    pub(crate) async fn dead_letter(
        &self,
        queue: &str,
        body: &[u8],
        original: &BasicProperties,
        reason: &str,
    ) -> Result<(), CallError> {
        let mut headers = original.headers().clone().unwrap_or_default();
        headers.insert(
            "x-warren-error".into(),
            lapin::types::AMQPValue::LongString(reason.into()),
        );
        let mut properties = json_properties(2).with_headers(headers);
        if let Some(content_type) = original.content_type().clone() {
            properties = properties.with_content_type(content_type);
        }
        self.publish("", queue, body, properties).await
    }

    async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), CallError> {
        let confirmation = self
            .channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions::default(),
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
            Confirmation::Ack(_) | Confirmation::NotRequested => Ok(()),
        }
    }
}

/// JSON properties with `delivery_mode` (1 transient, 2 persistent).
pub(crate) fn json_properties(delivery_mode: u8) -> BasicProperties {
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_content_encoding("utf-8".into())
        .with_delivery_mode(delivery_mode)
}
