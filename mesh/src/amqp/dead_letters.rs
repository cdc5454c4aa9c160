//! [`DeadLetterQueues`]: what an operator does with the events a subscription gave up on
//! (`warren dead-letters`, docs/operations.md): count and look at them, replay them to their
//! subscription's queue, or purge them.
//!
//! A replay publishes each dead letter to its subscription's queue through the default
//! exchange, waits for the broker's confirm, and only then acks it from the dead-letter queue:
//! a replay stopped at any point has lost nothing (a dead letter confirmed but not yet acked is
//! in both queues, and handled at least once, as every event is).

use super::broker::{Broker, unavailable};
use super::headers::{self, ATTEMPT_HEADER, ERROR_HEADER, EVENT_TYPE_HEADER, SOURCE_HEADER};
use crate::config::MeshConfig;
use crate::error::ConnectError;
use crate::events::subscription_queue_of;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions, QueuePurgeOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation};

/// How many bytes of a dead letter's body a listing shows.
pub const PREVIEW_BYTES: usize = 120;

/// The headers a replay takes off: the copy starts its subscription's schedule again.
const RESET_HEADERS: [&str; 8] = [
    ATTEMPT_HEADER,
    ERROR_HEADER,
    SOURCE_HEADER,
    EVENT_TYPE_HEADER,
    "x-death",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-first-death-exchange",
];

/// What can go wrong with a dead-letter queue.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    /// The name does not end in `.dead-letter`: these commands touch nothing else.
    #[error("`{0}` is not a dead-letter queue (its name ends in `.dead-letter`)")]
    NotADeadLetterQueue(String),
    /// The broker has no queue of that name.
    #[error("there is no queue `{0}` on the broker")]
    NoSuchQueue(String),
    /// Connecting failed.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The broker refused an operation or the connection dropped.
    #[error("on `{queue}`: {reason}")]
    Broker {
        /// The queue it was about.
        queue: String,
        /// What the broker or the connection said.
        reason: String,
    },
    /// The broker did not take a replayed dead letter; it is still in its dead-letter queue.
    #[error(
        "replay stopped after {replayed} dead letter(s): `{to}` did not take the next one \
         ({reason}); it is still in the dead-letter queue"
    )]
    ReplayStopped {
        /// How many were replayed before.
        replayed: u32,
        /// The subscription queue.
        to: String,
        /// What the broker said.
        reason: String,
    },
}

/// One dead letter, as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterSummary {
    /// The dispatching service, when Warren dead-lettered it.
    pub source: Option<String>,
    /// The event type, when Warren dead-lettered it.
    pub event_type: Option<String>,
    /// The handler's last error.
    pub error: Option<String>,
    /// How many times its handler ran.
    pub attempts: u32,
    /// The body's size, bytes.
    pub size: usize,
    /// The first [`PREVIEW_BYTES`] of the body, as text.
    pub preview: String,
}

/// A dead-letter queue's count and its first dead letters, left in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterListing {
    /// How many dead letters the queue holds.
    pub count: u32,
    /// The first of them, oldest first, up to the limit asked for.
    pub letters: Vec<DeadLetterSummary>,
}

/// What a replay did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    /// The subscription queue the dead letters went back to.
    pub to: String,
    /// How many went back (or, for a dry run, would).
    pub replayed: u32,
    /// How many the dead-letter queue held before.
    pub count: u32,
}

/// The dead-letter queues of a broker, for an operator.
pub struct DeadLetterQueues {
    broker: Broker,
}

impl DeadLetterQueues {
    /// Connects to the broker of `config`.
    pub async fn connect(config: MeshConfig) -> Result<Self, ConnectError> {
        Ok(Self {
            broker: Broker::connect(config).await?,
        })
    }

    /// How many dead letters `queue` holds.
    pub async fn count(&self, queue: &str) -> Result<u32, DeadLetterError> {
        let queue = checked(queue)?;
        let channel = self.channel(queue).await?;
        let count = passive_count(&channel, queue).await;
        close(channel).await;
        count
    }

    /// The count of `queue` and its first `limit` dead letters. They stay in the queue: each is
    /// taken unacked and all are put back at the end (the broker requeues them in their
    /// places; they are marked redelivered).
    pub async fn list(
        &self,
        queue: &str,
        limit: u32,
    ) -> Result<DeadLetterListing, DeadLetterError> {
        let queue = checked(queue)?;
        let channel = self.channel(queue).await?;
        let outcome = list_on(&channel, queue, limit).await;
        // Closing the channel requeues whatever was taken, whatever happened.
        close(channel).await;
        outcome
    }

    /// Replays up to `limit` dead letters of `queue` to their subscription's queue (the name
    /// without `.dead-letter`) with their schedule started again; with `dry_run`, only says how
    /// many it would. Only the dead letters there when it starts are replayed, so one that
    /// fails again meanwhile is not taken twice.
    pub async fn replay(
        &self,
        queue: &str,
        limit: u32,
        dry_run: bool,
    ) -> Result<Replay, DeadLetterError> {
        let queue = checked(queue)?;
        let to = subscription_queue_of(queue)
            .ok_or_else(|| DeadLetterError::NotADeadLetterQueue(queue.to_owned()))?
            .to_owned();
        let channel = self.channel(queue).await?;
        let outcome = replay_on(&channel, queue, to, limit, dry_run).await;
        close(channel).await;
        outcome
    }

    /// Removes every dead letter of `queue` and says how many there were; with `dry_run`, only
    /// counts them.
    pub async fn purge(&self, queue: &str, dry_run: bool) -> Result<u32, DeadLetterError> {
        let queue = checked(queue)?;
        let channel = self.channel(queue).await?;
        let outcome = match passive_count(&channel, queue).await {
            Ok(count) if dry_run => Ok(count),
            Ok(_) => channel
                .queue_purge(queue.into(), QueuePurgeOptions::default())
                .await
                .map_err(|e| broker_error(queue, e)),
            Err(error) => Err(error),
        };
        close(channel).await;
        outcome
    }

    /// Closes the connection.
    pub async fn close(&self) {
        self.broker.close().await;
    }

    async fn channel(&self, queue: &str) -> Result<Channel, DeadLetterError> {
        let (_, channel) = self.broker.open_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| broker_error(queue, e))?;
        Ok(channel)
    }
}

async fn list_on(
    channel: &Channel,
    queue: &str,
    limit: u32,
) -> Result<DeadLetterListing, DeadLetterError> {
    let count = passive_count(channel, queue).await?;
    let mut letters = Vec::new();
    while letters.len() < usize::try_from(limit.min(count)).unwrap_or(usize::MAX) {
        let Some(message) = get(channel, queue).await? else {
            break;
        };
        letters.push(summary(&message));
    }
    Ok(DeadLetterListing { count, letters })
}

async fn replay_on(
    channel: &Channel,
    queue: &str,
    to: String,
    limit: u32,
    dry_run: bool,
) -> Result<Replay, DeadLetterError> {
    // A subscription queue that is not there would take nothing: refuse before touching any.
    passive_count(channel, &to).await?;
    let count = passive_count(channel, queue).await?;
    let planned = count.min(limit);
    if dry_run {
        return Ok(Replay {
            to,
            replayed: planned,
            count,
        });
    }
    let mut replayed = 0;
    while replayed < planned {
        let Some(letter) = get(channel, queue).await? else {
            break;
        };
        if let Err(reason) = republish(channel, &to, &letter).await {
            let requeue = BasicNackOptions {
                requeue: true,
                ..BasicNackOptions::default()
            };
            let _ = letter.acker.nack(requeue).await;
            return Err(DeadLetterError::ReplayStopped {
                replayed,
                to,
                reason,
            });
        }
        letter
            .acker
            .ack(BasicAckOptions::default())
            .await
            .map_err(|e| broker_error(queue, e))?;
        replayed += 1;
    }
    Ok(Replay {
        to,
        replayed,
        count,
    })
}

/// Publishes `letter` to `queue` (default exchange, mandatory) and waits for the confirm.
async fn republish(channel: &Channel, queue: &str, letter: &Delivery) -> Result<(), String> {
    let options = BasicPublishOptions {
        mandatory: true,
        ..BasicPublishOptions::default()
    };
    let confirmation = channel
        .basic_publish(
            "".into(),
            queue.into(),
            options,
            &letter.data,
            reset(&letter.properties),
        )
        .await
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())?;
    match confirmation {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(_)) => Err("no such queue".into()),
        Confirmation::Nack(_) => Err("the broker refused it".into()),
        Confirmation::NotRequested => Err("no confirm".into()),
    }
}

/// `original` without the headers of its earlier attempts.
fn reset(original: &BasicProperties) -> BasicProperties {
    let mut headers = FieldTable::default();
    if let Some(old) = original.headers() {
        for (name, value) in old.inner() {
            if !RESET_HEADERS.contains(&name.as_str()) {
                headers.insert(name.clone(), value.clone());
            }
        }
    }
    original.clone().with_headers(headers)
}

fn summary(letter: &Delivery) -> DeadLetterSummary {
    let table = letter.properties.headers().as_ref();
    let shown = &letter.data[..letter.data.len().min(PREVIEW_BYTES)];
    let preview = String::from_utf8_lossy(shown)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    DeadLetterSummary {
        source: headers::text(table, SOURCE_HEADER),
        event_type: headers::text(table, EVENT_TYPE_HEADER),
        error: headers::text(table, ERROR_HEADER),
        attempts: headers::attempt(table),
        size: letter.data.len(),
        preview,
    }
}

async fn get(channel: &Channel, queue: &str) -> Result<Option<Delivery>, DeadLetterError> {
    channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: false })
        .await
        .map(|got| got.map(|message| message.delivery))
        .map_err(|e| broker_error(queue, e))
}

/// How many messages `queue` holds, by declaring it passively (which creates nothing).
async fn passive_count(channel: &Channel, queue: &str) -> Result<u32, DeadLetterError> {
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    match channel
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await
    {
        Ok(declared) => Ok(declared.message_count()),
        Err(e) if e.to_string().contains("NOT_FOUND") => {
            Err(DeadLetterError::NoSuchQueue(queue.to_owned()))
        }
        Err(e) => Err(broker_error(queue, e)),
    }
}

fn checked(queue: &str) -> Result<&str, DeadLetterError> {
    subscription_queue_of(queue)
        .map(|_| queue)
        .ok_or_else(|| DeadLetterError::NotADeadLetterQueue(queue.to_owned()))
}

fn broker_error(queue: &str, error: lapin::Error) -> DeadLetterError {
    DeadLetterError::Broker {
        queue: queue.to_owned(),
        reason: unavailable(error).to_string(),
    }
}

async fn close(channel: Channel) {
    if channel.status().connected() {
        let _ = channel.close(200, "done".into()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::AMQPValue;

    #[test]
    fn a_replay_starts_the_schedule_again_and_keeps_the_context() {
        let mut table = FieldTable::default();
        for name in RESET_HEADERS {
            table.insert(name.into(), AMQPValue::LongString("x".into()));
        }
        table.insert("nameko.user_id".into(), AMQPValue::LongString("u1".into()));
        let original = BasicProperties::default()
            .with_headers(table)
            .with_content_type("application/json".into());
        let replayed = reset(&original);
        let headers = replayed.headers().clone().unwrap_or_default();
        let names: Vec<&str> = headers.inner().keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["nameko.user_id"]);
        assert_eq!(
            replayed.content_type().as_ref().map(|c| c.as_str()),
            Some("application/json")
        );
    }

    #[test]
    fn only_dead_letter_queues_are_touched() {
        assert!(checked("q.dead-letter").is_ok());
        assert!(matches!(
            checked("rpc-kv"),
            Err(DeadLetterError::NotADeadLetterQueue(_))
        ));
    }
}
