//! Serving RPC requests: declare `rpc-<service>` as nameko does, run the handler unless the
//! caller's deadline passed while the request waited, publish the reply (straight to the
//! caller's queue when the request allows it), then ack.
//!
//! A request is acked only after its reply is published on the same channel (AMQP keeps their
//! order), so a request whose instance dies is redelivered to another. Every request is acked,
//! decodable or not: one that cannot be handled is answered with an error, never left to poison
//! the queue.

use super::broker::{Broker, declare_error, queue_arguments};
use super::consumer::{DeliveryHandler, HandleDelivery, into_handler};
use super::headers;
use super::publisher::json_properties;
use crate::error::{ConnectError, ErrorKind, RpcError};
use crate::protocol::{
    Arguments, ReplyBody, method_of_routing_key, service_binding, service_queue,
};
use crate::routes::Routes;
use crate::running::ServiceStats;
use crate::telemetry;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicPublishOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel};
use std::sync::Arc;

/// Opens a channel, declares `rpc-<service>` and binds it with `<service>.*`. As a classic queue
/// it is durable with no x-arguments, exactly nameko's (a nameko peer declaring it otherwise
/// gets PRECONDITION_FAILED); as a quorum queue it has `x-queue-type: quorum` too.
/// Returns the generation of the connection the channel is on, the channel and the queue.
pub(crate) async fn declare(
    broker: &Broker,
    service: &str,
) -> Result<(u64, Channel, String), ConnectError> {
    let queue = service_queue(service);
    let (generation, channel) = broker.open_channel().await?;
    broker.declare_rpc_exchange(&channel).await?;
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            queue_arguments(broker.queue_type()),
        )
        .await
        .map_err(|e| declare_error(broker, &queue, e))?;
    channel
        .queue_bind(
            queue.as_str().into(),
            broker.rpc_exchange().into(),
            service_binding(service).into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| broker.setup_error(e))?;
    Ok((generation, channel, queue))
}

/// The delivery handler of a service's RPC queue.
pub(crate) fn handler(
    channel: Channel,
    routes: Routes,
    broker: &Broker,
    stats: Arc<ServiceStats>,
) -> DeliveryHandler {
    into_handler(Worker {
        channel,
        routes,
        exchange: broker.rpc_exchange().into(),
        stats,
    })
}

struct Worker {
    channel: Channel,
    routes: Routes,
    exchange: ShortString,
    stats: Arc<ServiceStats>,
}

impl HandleDelivery for Worker {
    async fn handle(&self, delivery: Delivery) {
        let properties = &delivery.properties;
        let header_table = properties.headers().as_ref();
        let context = headers::read(header_table);
        // A direct request names its method in a header; nameko's, in its routing key.
        let method = headers::method(header_table)
            .unwrap_or_else(|| method_of_routing_key(delivery.routing_key.as_str()).to_owned());
        let service = self.routes.service();

        if context.deadline.is_some_and(|d| d.expired()) {
            telemetry::expired(&self.routes, &self.stats);
            tracing::debug!(%service, %method, "skipping an expired request");
            ack(&delivery, service).await;
            return;
        }

        let body = Arguments::decode(&delivery.data)
            .map_err(|message| RpcError::new(ErrorKind::MalformedRequest, message));
        let outcome = telemetry::run_rpc(&self.routes, &self.stats, &method, context, body).await;
        let reply = match outcome {
            Ok(result) => ReplyBody::ok(result),
            Err(error) => {
                tracing::debug!(%service, %method, %error, "handler failed");
                ReplyBody::err(error.to_wire())
            }
        };
        self.reply(properties, reply).await;
        ack(&delivery, service).await;
    }
}

impl Worker {
    async fn reply(&self, request: &BasicProperties, reply: ReplyBody) {
        let service = self.routes.service();
        let Some(reply_to) = request.reply_to().clone() else {
            tracing::debug!(%service, "request without reply_to; not replying");
            return;
        };
        let payload = match serde_json::to_vec(&reply) {
            Ok(payload) => payload,
            Err(error) => {
                tracing::error!(%service, %error, "cannot encode a reply");
                return;
            }
        };
        let mut properties = json_properties(1);
        if let Some(correlation_id) = request.correlation_id().clone() {
            properties = properties.with_correlation_id(correlation_id);
        }
        // Straight to the caller's queue when it says its reply_to names one; through the RPC
        // exchange (nameko's way, which reaches the same queue by its binding) otherwise.
        let exchange = if headers::reply_direct(request.headers().as_ref()) {
            ShortString::from("")
        } else {
            self.exchange.clone()
        };
        let published = self
            .channel
            .basic_publish(
                exchange,
                reply_to,
                BasicPublishOptions::default(),
                &payload,
                properties,
            )
            .await;
        if let Err(error) = published {
            tracing::warn!(%service, %error, "cannot publish a reply");
        }
    }
}

pub(crate) async fn ack(delivery: &Delivery, label: &str) {
    if let Err(error) = delivery.acker.ack(BasicAckOptions::default()).await {
        tracing::warn!(%label, %error, "cannot ack a delivery");
    }
}
