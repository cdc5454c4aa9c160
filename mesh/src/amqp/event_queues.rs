//! The queues of one event subscription, as declared on the broker: its own queue (bound to
//! `<source>.events`), its dead-letter queue, and one retry queue per delay of its schedule
//! (docs/architecture.md §6).
//!
//! A retry queue `<queue>.retry.<ms>` has no consumer: its `x-message-ttl` is the delay, and
//! when an event's time is up the broker dead-letters it through the default exchange to the
//! subscription's own queue, never to `<source>.events`, so no other subscriber (nameko's
//! included) sees a retry. A per-queue TTL expires messages in order, which a per-message TTL
//! would not (RabbitMQ expires those only at the head of a queue).

use super::broker::queue_arguments;
use super::config::QueueType;
use crate::events::{BROADCAST_QUEUE_EXPIRES_MS, HandlerType, Subscription, dead_letter_queue};
use crate::retry::retry_queue;
use lapin::Channel;
use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable};

/// How one queue is declared: the same name, options and arguments every time, so declaring
/// it again (after a reconnect, before each copy) is never inequivalent.
#[derive(Clone)]
pub(crate) struct QueueDeclaration {
    pub name: String,
    options: QueueDeclareOptions,
    arguments: FieldTable,
}

impl QueueDeclaration {
    /// Declares it on `channel`.
    pub(crate) async fn declare(&self, channel: &Channel) -> lapin::Result<()> {
        channel
            .queue_declare(
                self.name.as_str().into(),
                self.options,
                self.arguments.clone(),
            )
            .await
            .map(|_| ())
    }
}

/// A subscription's queues.
pub(crate) struct EventQueues {
    /// The queue it consumes.
    pub own: QueueDeclaration,
    /// Where its events go once every attempt failed; `None` for a transient subscription.
    pub dead_letter: Option<QueueDeclaration>,
    /// A retry queue per distinct non-zero delay, by delay in milliseconds; none for a
    /// transient subscription.
    pub retries: Vec<(u64, QueueDeclaration)>,
}

impl EventQueues {
    /// The queues of `subscription` consuming `queue`, declared as `queue_type`.
    ///
    /// A transient subscription keeps nothing past its consumer: no dead-letter queue (an
    /// exclusive queue no one consumes would stay until the connection closes, one more for
    /// every feed a gateway makes) and no retry queues (its retries wait on a timer in the
    /// process, which lives exactly as long as its queue).
    pub(crate) fn of(queue_type: QueueType, subscription: &Subscription, queue: &str) -> Self {
        let (options, arguments) = queue_declaration(queue_type, subscription);
        let own = QueueDeclaration {
            name: queue.to_owned(),
            options,
            arguments: arguments.clone(),
        };
        if subscription.transient {
            return Self {
                own,
                dead_letter: None,
                retries: Vec::new(),
            };
        }
        // The dead-letter queue lives as long as its queue: forever for a shared queue, until
        // expiry for a broadcast one.
        let dead_letter = QueueDeclaration {
            name: dead_letter_queue(queue),
            options,
            arguments: arguments.clone(),
        };
        let retries = subscription
            .retry
            .delayed_millis()
            .into_iter()
            .map(|ms| (ms, retry_declaration(queue_type, queue, ms, &arguments)))
            .collect();
        Self {
            own,
            dead_letter: Some(dead_letter),
            retries,
        }
    }

    /// The retry queue for a delay of `delay_ms`.
    pub(crate) fn retry(&self, delay_ms: u64) -> Option<&QueueDeclaration> {
        self.retries
            .iter()
            .find(|(ms, _)| *ms == delay_ms)
            .map(|(_, queue)| queue)
    }
}

/// How a subscription's queue (and its dead-letter queue) is declared.
///
/// Classic: service-pool and singleton queues exactly as nameko declares them (durable, no
/// x-arguments); a broadcast queue belongs to one instance and expires once its instance has
/// been gone a while. Quorum: the same, as quorum queues, so that they survive the loss of a
/// node; a broadcast queue too (quorum queues take `x-expires`), since a durable classic queue
/// whose node is lost cannot be declared again until the node is back. A transient
/// subscription's queue lives as long as its consumer's connection (exclusive, auto-deleted,
/// declared again on each new connection), whatever the type: exclusive queues cannot be
/// quorum queues, and need not be.
fn queue_declaration(
    queue_type: QueueType,
    subscription: &Subscription,
) -> (QueueDeclareOptions, FieldTable) {
    if subscription.transient {
        let options = QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..QueueDeclareOptions::default()
        };
        return (options, FieldTable::default());
    }
    let mut arguments = queue_arguments(queue_type);
    if subscription.handler_type == HandlerType::Broadcast {
        arguments.insert(
            "x-expires".into(),
            AMQPValue::LongLongInt(BROADCAST_QUEUE_EXPIRES_MS),
        );
    }
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    (durable, arguments)
}

/// The retry queue of `queue` for `delay_ms`: its queue's arguments (type, a broadcast
/// queue's expiry) plus the TTL and the way back. A quorum queue dead-letters at least once
/// (the broker keeps an expired event until its own queue confirmed it), which RabbitMQ
/// allows only with `x-overflow: reject-publish`; a classic queue dead-letters at most once,
/// so a node crash at the moment a delay ends can lose that event.
fn retry_declaration(
    queue_type: QueueType,
    queue: &str,
    delay_ms: u64,
    own_arguments: &FieldTable,
) -> QueueDeclaration {
    let mut arguments = own_arguments.clone();
    let ttl = i64::try_from(delay_ms).unwrap_or(i64::MAX);
    arguments.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl));
    arguments.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString("".into()),
    );
    arguments.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(queue.into()),
    );
    if queue_type == QueueType::Quorum {
        arguments.insert(
            "x-dead-letter-strategy".into(),
            AMQPValue::LongString("at-least-once".into()),
        );
        arguments.insert(
            "x-overflow".into(),
            AMQPValue::LongString("reject-publish".into()),
        );
    }
    QueueDeclaration {
        name: retry_queue(queue, delay_ms),
        options: QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        },
        arguments,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn argument<'a>(queue: &'a QueueDeclaration, name: &str) -> Option<&'a AMQPValue> {
        queue.arguments.inner().get(name)
    }

    #[test]
    fn a_retry_queue_per_delay_leads_back_to_the_own_queue() {
        let subscription = Subscription::new("src", "evt").retry_after([
            Duration::ZERO,
            Duration::from_secs(1),
            Duration::from_secs(1),
            Duration::from_secs(60),
        ]);
        let queues = EventQueues::of(QueueType::Classic, &subscription, "q");
        assert!(queues.own.arguments.inner().is_empty(), "as nameko has it");
        let names: Vec<&str> = queues
            .retries
            .iter()
            .map(|(_, q)| q.name.as_str())
            .collect();
        assert_eq!(names, ["q.retry.1000", "q.retry.60000"]);
        let retry = queues.retry(1000).expect("1 s");
        assert_eq!(
            argument(retry, "x-message-ttl"),
            Some(&AMQPValue::LongLongInt(1000))
        );
        assert_eq!(
            argument(retry, "x-dead-letter-exchange"),
            Some(&AMQPValue::LongString("".into()))
        );
        assert_eq!(
            argument(retry, "x-dead-letter-routing-key"),
            Some(&AMQPValue::LongString("q".into()))
        );
        assert_eq!(argument(retry, "x-dead-letter-strategy"), None);
        assert!(queues.retry(0).is_none());
    }

    #[test]
    fn quorum_retry_queues_dead_letter_at_least_once() {
        let subscription = Subscription::new("src", "evt")
            .broadcast()
            .retry_after([Duration::from_millis(200)]);
        let queues = EventQueues::of(QueueType::Quorum, &subscription, "q");
        let retry = queues.retry(200).expect("200 ms");
        for (name, value) in [
            ("x-queue-type", "quorum"),
            ("x-dead-letter-strategy", "at-least-once"),
            ("x-overflow", "reject-publish"),
        ] {
            assert_eq!(
                argument(retry, name),
                Some(&AMQPValue::LongString(value.into())),
                "{name}"
            );
        }
        assert!(
            argument(retry, "x-expires").is_some(),
            "gone with its instance"
        );
    }

    #[test]
    fn transient_subscriptions_keep_no_queue_but_their_own() {
        let subscription = Subscription::new("src", "evt")
            .transient()
            .retry_after([Duration::from_secs(1)]);
        let queues = EventQueues::of(QueueType::Quorum, &subscription, "q");
        assert!(queues.dead_letter.is_none());
        assert!(queues.retries.is_empty());
        assert!(queues.own.options.exclusive);
    }
}
