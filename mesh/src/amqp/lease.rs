//! [`AmqpLease`]: a once-per-service timer's lease on RabbitMQ (docs/architecture.md §10).
//!
//! The lease is an exclusive consumer on the queue `warren.lease.<service>.<timer>`, which
//! carries no messages. The broker lets one consumer be exclusive on a queue and ends it with
//! its channel or connection, so the holder is whoever consumes, and an instance that dies lets
//! go of the lease as soon as the broker sees its connection close (at once for a process that
//! exits, one heartbeat timeout for a host that vanishes). AMQP 0-9-1 never tells a consumer it
//! became the active one of a single-active-consumer queue, and an unacked token would have to
//! be rotated before `consumer_timeout` reclaims it; an exclusive consumer needs neither.
//!
//! An attempt first declares the queue, which succeeds whoever holds it and says how many
//! consume it: an instance that finds a consumer does not try, so a standby instance makes no
//! channel error at each tick. Two instances finding none at the same moment both try; the
//! broker refuses the second (ACCESS_REFUSED closes its channel, a new one is opened next time).

use super::broker::Broker;
use crate::lease::{Lease, LeaseFuture};
use futures_util::{FutureExt, StreamExt};
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Consumer};
use tokio::sync::Mutex;

/// How long a lease queue nobody consumes or declares is kept, ms: the queues of timers no
/// longer served go away by themselves. Every instance declares it at each tick and the holder
/// consumes it, so a live one never expires. The same in every process: a queue declared with
/// another value is refused (PRECONDITION_FAILED).
const UNUSED_FOR_MS: u32 = 30 * 60 * 1000;

/// One instance's hold on a lease queue.
pub(crate) struct AmqpLease {
    broker: Broker,
    queue: String,
    state: Mutex<Attempt>,
}

/// The channel attempts are made on, and the exclusive consumer while the lease is held.
#[derive(Default)]
struct Attempt {
    channel: Option<(u64, Channel)>,
    held: Option<Consumer>,
}

impl AmqpLease {
    /// The lease `queue` (see [`crate::lease::lease_queue`]) on `broker`, not held yet.
    pub(crate) fn new(broker: Broker, queue: String) -> Self {
        Self {
            broker,
            queue,
            state: Mutex::new(Attempt::default()),
        }
    }

    async fn try_hold(&self) -> bool {
        let mut state = self.state.lock().await;
        let generation = self.broker.link().generation;
        // What was attached to a connection that went away went with it: the broker ended the
        // consumer, and another instance may hold the lease by now.
        let current = state
            .channel
            .as_ref()
            .is_some_and(|(g, channel)| *g == generation && channel.status().connected());
        if !current {
            *state = Attempt::default();
            match self.broker.open_channel().await {
                Ok(opened) => state.channel = Some(opened),
                Err(error) => {
                    tracing::debug!(lease = %self.queue, %error, "cannot try the lease now");
                    return false;
                }
            }
        }
        let Some((_, channel)) = state.channel.clone() else {
            return false;
        };
        let consumers = match self.declare(&channel).await {
            Ok(consumers) => consumers,
            Err(error) => {
                tracing::warn!(lease = %self.queue, %error, "cannot declare the lease queue");
                *state = Attempt::default();
                return false;
            }
        };
        if let Some(consumer) = state.held.as_mut() {
            // A consumer the broker cancelled (its queue deleted) ends its stream.
            if !matches!(consumer.next().now_or_never(), Some(None)) {
                return true;
            }
            state.held = None;
        }
        if consumers > 0 {
            return false;
        }
        let tag = format!("{}-{}", self.queue, uuid::Uuid::new_v4().simple());
        let options = BasicConsumeOptions {
            exclusive: true,
            no_ack: true,
            ..BasicConsumeOptions::default()
        };
        match channel
            .basic_consume(
                self.queue.as_str().into(),
                tag.as_str().into(),
                options,
                FieldTable::default(),
            )
            .await
        {
            Ok(consumer) => {
                state.held = Some(consumer);
                true
            }
            Err(error) => {
                tracing::debug!(lease = %self.queue, %error, "another instance took the lease first");
                state.channel = None;
                false
            }
        }
    }

    /// Declares the lease queue and returns how many consume it. Durable and classic whatever
    /// the vhost's defaults: RabbitMQ 4 deprecates transient queues that are not exclusive,
    /// and the queue only ever needs to be on one node.
    async fn declare(&self, channel: &Channel) -> lapin::Result<u32> {
        let mut arguments = FieldTable::default();
        arguments.insert("x-expires".into(), AMQPValue::LongUInt(UNUSED_FOR_MS));
        arguments.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("classic".into()),
        );
        let options = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        let queue = channel
            .queue_declare(self.queue.as_str().into(), options, arguments)
            .await?;
        Ok(queue.consumer_count())
    }

    async fn give_up(&self) {
        let mut state = self.state.lock().await;
        let Some((_, channel)) = state.channel.take() else {
            return;
        };
        if let Some(consumer) = state.held.take()
            && channel.status().connected()
        {
            let cancel = channel.basic_cancel(consumer.tag(), BasicCancelOptions::default());
            super::closing::step("releasing a timer's lease", cancel).await;
        }
        if channel.status().connected() {
            let close = channel.close(200, "lease released".into());
            super::closing::step("closing a timer's lease channel", close).await;
        }
    }
}

impl Lease for AmqpLease {
    fn hold(&self) -> LeaseFuture<'_, bool> {
        Box::pin(self.try_hold())
    }

    fn release(&self) -> LeaseFuture<'_, ()> {
        Box::pin(self.give_up())
    }
}
