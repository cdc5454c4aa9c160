//! Publishing one request: `mandatory`, on the client's confirm channel, until the broker has
//! confirmed it, published again where that is safe; or, to a service whose queue the broker
//! has confirmed routing to, without a confirm (see [`super::known_routes`]).
//!
//! A request is published again, within its deadline (the caller races this against it), when
//! it provably never reached a queue: no live connection took the frame (the connection was
//! down, or its channel closed before the frame went out), or the broker nacked it. It waits
//! for the client's next connection when its own is gone. A request lost after it was written
//! and before its confirm came may have been routed and run: it is published again only for a
//! method its service declares idempotent, and otherwise fails `Unavailable`. A request the
//! broker returned (no queue bound for it) is `UnknownService` at once.
//!
//! A request sent without a confirm keeps the same rule: it is published again only when no
//! live connection took it; once written, it is the broker's, and if the connection goes
//! before its reply comes the call fails `Unavailable` with the other calls waiting on that
//! connection (an idempotent one too: what it loses is the republishing of a request lost in
//! the millisecond between its write and its confirm).

use super::broker::{Broker, unavailable};
use super::callback_queue::{Publisher, Shared};
use super::config::QueueType;
use super::headers;
use crate::call_context::CallContext;
use crate::deadline::Deadline;
use crate::error::CallError;
use crate::protocol::{METHOD_HEADER, REPLY_DIRECT_HEADER, service_queue};
use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, LongString, ShortString};
use lapin::{BasicProperties, Confirmation};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// How long to wait before publishing again on the same connection after the broker refused a
/// request (a queue between leaders, a node running short of resources).
const AFTER_NACK: Duration = Duration::from_millis(50);

/// How many refusals in a row on one publisher channel before it is replaced (see
/// [`Shared::renew_publisher`]): a leader election takes longer than this, so a channel that
/// would recover is rarely replaced, and one that would not is within half a second.
const NACKS_BEFORE_RENEWAL: u32 = 8;

/// What goes to the broker, but for the properties made from it at the last moment.
pub(crate) struct Message {
    pub(crate) deadline: Deadline,
    /// `<service>.<method>`.
    pub(crate) routing_key: String,
    /// Where the service's name ends in the routing key (for the error and the log line when
    /// no queue takes the request).
    pub(crate) service_len: usize,
    pub(crate) payload: Vec<u8>,
    /// Written as the message's headers (call id stack, deadline, identity, trace).
    pub(crate) context: CallContext,
    /// Whether the method is safe to run twice (its service says so).
    pub(crate) idempotent: bool,
}

/// A request with what its publishing needs of its client.
pub(crate) struct Request {
    pub(crate) exchange: ShortString,
    pub(crate) reply_to: ShortString,
    pub(crate) correlation_id: uuid::Uuid,
    pub(crate) message: Message,
    /// Whether it may go without a confirm to a service known routed: a call waiting for its
    /// reply may, a detached call may not (its 202 promises the broker has the request).
    pub(crate) may_skip_confirm: bool,
}

/// Why one attempt did not publish the request.
enum Unpublished {
    /// No queue is bound for its routing key: the broker returned it (mandatory).
    Returned,
    /// It never reached a queue: no live connection took it, or the broker refused it.
    NotTaken(CallError),
    /// It was written, and its confirm was lost with the connection: it may have been routed.
    Unconfirmed(CallError),
}

impl Request {
    /// Publishes the request, again while that is safe, until the broker confirmed it.
    pub(crate) async fn publish(self, shared: &Shared, broker: &Broker) -> Result<(), CallError> {
        let mut refused = 0u32;
        loop {
            let Some(publisher) = shared.publisher() else {
                if shared.is_closed() {
                    return Err(CallError::Unavailable("the client is closed".into()));
                }
                // Not connected: the next connection takes it.
                shared.attached_after(shared.attached_generation()).await;
                continue;
            };
            let confirm = self.needs_confirm(shared, broker);
            let error = match self.attempt(&publisher, confirm, broker).await {
                Ok(()) if confirm => {
                    shared.routes.routed(self.service());
                    return Ok(());
                }
                Ok(()) => {
                    shared.unconfirmed.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                Err(Unpublished::Returned) => {
                    shared.routes.returned(self.service());
                    return Err(self.returned(shared));
                }
                Err(Unpublished::NotTaken(error)) => error,
                Err(Unpublished::Unconfirmed(error)) if self.message.idempotent => error,
                Err(Unpublished::Unconfirmed(error)) => return Err(error),
            };
            shared.republished.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                routing_key = %self.message.routing_key,
                %error,
                "publishing the request again"
            );
            if publisher.channel.status().connected() {
                refused += 1;
                if refused.is_multiple_of(NACKS_BEFORE_RENEWAL) {
                    shared.renew_publisher(broker, &publisher).await;
                }
                tokio::time::sleep(AFTER_NACK).await;
            } else {
                refused = 0;
                shared.attached_after(publisher.generation).await;
            }
        }
    }

    /// The service the request is for.
    fn service(&self) -> &str {
        &self.message.routing_key[..self.message.service_len]
    }

    /// Whether this attempt waits for the broker's confirm: always with quorum queues (the
    /// broker nacks what a queue without a leader cannot take) and for detached calls, and
    /// otherwise until the service is known routed.
    fn needs_confirm(&self, shared: &Shared, broker: &Broker) -> bool {
        !self.may_skip_confirm
            || broker.queue_type() == QueueType::Quorum
            || shared.routes.needs_confirm(self.service())
    }

    /// One attempt on `publisher`: `mandatory` on its confirm channel, waiting for the
    /// broker's confirmation, or on its channel without confirms when `confirm` is false.
    async fn attempt(
        &self,
        publisher: &Publisher,
        confirm: bool,
        broker: &Broker,
    ) -> Result<(), Unpublished> {
        let message = &self.message;
        let mut headers = headers::write(&message.context);
        // Every mesh caller's reply_to names its own queue (a callback queue or a detached
        // call's result queue): a Warren service may reply to it directly.
        headers.insert(REPLY_DIRECT_HEADER.into(), AMQPValue::Boolean(true));
        let direct = broker.config().amqp.direct_requests;
        let (exchange, routing_key): (ShortString, ShortString) = if direct {
            let method = &message.routing_key[message.service_len + 1..];
            headers.insert(
                METHOD_HEADER.into(),
                AMQPValue::LongString(LongString::from(method)),
            );
            ("".into(), service_queue(self.service()).into())
        } else {
            (self.exchange.clone(), message.routing_key.as_str().into())
        };
        let properties = BasicProperties::default()
            .with_reply_to(self.reply_to.clone())
            .with_correlation_id(self.correlation_id.to_string().into())
            .with_content_type("application/json".into())
            .with_content_encoding("utf-8".into())
            .with_delivery_mode(1)
            .with_expiration(message.deadline.remaining_ms().to_string().into())
            .with_headers(headers);
        let (channel, options) = if confirm {
            let mandatory = BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            };
            (&publisher.channel, mandatory)
        } else {
            (&publisher.unconfirmed, BasicPublishOptions::default())
        };
        let pending_confirm = channel
            .basic_publish(exchange, routing_key, options, &message.payload, properties)
            .await
            .map_err(|e| Unpublished::NotTaken(unavailable(e)))?;
        if !confirm {
            return Ok(());
        }
        let confirmation = pending_confirm
            .await
            .map_err(|e| Unpublished::Unconfirmed(unavailable(e)))?;
        match confirmation {
            Confirmation::Ack(Some(_returned)) => Err(Unpublished::Returned),
            Confirmation::Nack(_) => Err(Unpublished::NotTaken(CallError::Unavailable(
                "the broker refused the request".into(),
            ))),
            Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
        }
    }

    /// The error of a request the broker returned, and its log line: one line of our own, for
    /// lapin's log of a returned message (off in Warren's logging) shows its headers, a caller's
    /// token among them.
    fn returned(&self, shared: &Shared) -> CallError {
        shared.unknown_service.fetch_add(1, Ordering::Relaxed);
        let message = &self.message;
        let (service, method) = message.routing_key.split_at(message.service_len);
        let method = method.strip_prefix('.').unwrap_or(method);
        let request_id = message
            .context
            .call_id_stack
            .first()
            .map_or("", String::as_str);
        tracing::info!(
            %service,
            %method,
            %request_id,
            "the broker returned a request: no queue is bound for its service"
        );
        CallError::UnknownService(service.to_owned())
    }
}
