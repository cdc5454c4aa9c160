//! The callback queue of an [`RpcClient`](super::client::RpcClient): `rpc.reply-<owner>-<uuid>`,
//! bound to the RPC exchange under its own name, declared on every connection the broker gets,
//! and consumed by one task that hands each reply to its waiting caller.
//!
//! When the connection drops, the pending calls fail at once (their replies cannot arrive on a
//! dead connection: callers get a 503 now rather than a 504 later), and the queue is declared
//! and consumed again on the next connection. The queue keeps its name across reconnections and
//! outlives an idle process by [`REPLY_QUEUE_EXPIRES_MS`], as nameko's reply queues do.

use super::broker::{Broker, ChannelTask};
use crate::error::{CallError, ConnectError};
use crate::pending::PendingCalls;
use crate::shutdown::Shutdown;
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicConsumeOptions, ConfirmSelectOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Consumer};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// How long an idle callback queue outlives its process (nameko uses the same).
const REPLY_QUEUE_EXPIRES_MS: i64 = 300_000;

/// Declares `reply_to` on `broker`'s connection, starts consuming it, and keeps it attached
/// across reconnections until the returned task is stopped.
pub(crate) async fn start(
    broker: &Broker,
    reply_to: &str,
) -> Result<(Arc<Shared>, Arc<ChannelTask>), ConnectError> {
    let attached = attach(broker, reply_to).await?;
    let shared = Arc::new(Shared::default());
    shared.attach(&attached);
    let stop = Shutdown::new();
    let replies = tokio::spawn(serve_replies(
        broker.clone(),
        reply_to.to_owned(),
        shared.clone(),
        attached,
        stop.clone(),
    ));
    let task = broker.track(stop, replies);
    tracing::debug!(%reply_to, "callback queue ready");
    Ok((shared, task))
}

/// What the callers of a client and its reply consumer share.
#[derive(Default)]
pub(crate) struct Shared {
    pub(crate) pending: PendingCalls,
    /// The confirm channel requests go out on; `None` while the connection is down.
    /// (An `Arc`: every call takes a handle, and a lapin `Channel` is several `Arc`s to clone.)
    publisher: RwLock<Option<Arc<Channel>>>,
    consuming: AtomicBool,
    pub(crate) calls: AtomicU64,
    pub(crate) timeouts: AtomicU64,
    pub(crate) unknown_service: AtomicU64,
    pub(crate) broker_lost: AtomicU64,
    pub(crate) publishing: PublishWindow,
}

/// How many requests may await the broker's confirmation at once; more wait their turn.
///
/// A publish in flight is the largest state a call has (lapin's publish future and confirm
/// bookkeeping, about 2.5 KiB); a burst of a hundred thousand requests would otherwise have them
/// all at once. Confirms come back within a millisecond or so, so at any real rate the window is
/// far from full.
const PUBLISH_WINDOW: usize = 1024;

/// The permits of [`PUBLISH_WINDOW`].
pub(crate) struct PublishWindow(pub(crate) tokio::sync::Semaphore);

impl Default for PublishWindow {
    fn default() -> Self {
        Self(tokio::sync::Semaphore::new(PUBLISH_WINDOW))
    }
}

impl Shared {
    /// The channel requests go out on, when connected.
    pub(crate) fn publisher(&self) -> Option<Arc<Channel>> {
        self.publisher.read().ok().and_then(|slot| slot.clone())
    }

    /// Whether replies are being consumed.
    pub(crate) fn is_consuming(&self) -> bool {
        self.consuming.load(Ordering::Acquire)
    }

    fn set_publisher(&self, channel: Option<Channel>) {
        if let Ok(mut slot) = self.publisher.write() {
            *slot = channel.map(Arc::new);
        }
    }

    /// Calls go out on `attached` and its replies are consumed: the client is ready.
    fn attach(&self, attached: &Attached) {
        self.set_publisher(Some(attached.publisher.clone()));
        self.consuming.store(true, Ordering::Release);
    }

    /// No channel to publish on, no replies consumed: calls fail at once until attached again.
    fn detach(&self) {
        self.consuming.store(false, Ordering::Release);
        self.set_publisher(None);
    }
}

/// The callback queue consumed on one connection, and the channel requests go out on.
struct Attached {
    generation: u64,
    consumer: Consumer,
    /// The consumer's channel.
    consuming: Channel,
    publisher: Channel,
}

/// Declares the callback queue on the connection of the moment, bound to the RPC exchange under
/// its own name, starts consuming it, and opens the confirm channel requests go out on.
async fn attach(broker: &Broker, reply_to: &str) -> Result<Attached, ConnectError> {
    let setup = |e: lapin::Error| broker.setup_error(e);
    let (generation, channel) = broker.open_channel().await?;
    broker.declare_rpc_exchange(&channel).await?;
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-expires".into(),
        AMQPValue::LongLongInt(REPLY_QUEUE_EXPIRES_MS),
    );
    channel
        .queue_declare(reply_to.into(), QueueDeclareOptions::default(), arguments)
        .await
        .map_err(setup)?;
    channel
        .queue_bind(
            reply_to.into(),
            broker.rpc_exchange().into(),
            reply_to.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(setup)?;
    let consumer = channel
        .basic_consume(
            reply_to.into(),
            format!("{reply_to}-consumer").into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(setup)?;
    let (_, publisher) = broker.open_channel().await?;
    publisher
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(setup)?;
    Ok(Attached {
        generation,
        consumer,
        consuming: channel,
        publisher,
    })
}

/// Hands each reply to its waiting caller, and when the connection drops, fails the pending
/// calls (their replies cannot arrive on a dead connection: callers get a 503 now rather than a
/// 504 later) and attaches again on the next connection.
///
/// Replies arrive with `no_ack`: a reply is worthless once its caller is gone, so there is
/// nothing to redeliver.
async fn serve_replies(
    broker: Broker,
    reply_to: String,
    shared: Arc<Shared>,
    mut attached: Attached,
    stop: Shutdown,
) {
    let mut links = broker.watch_links();
    loop {
        let lost = tokio::select! {
            () = stop.triggered() => {
                close(&shared, attached).await;
                return;
            }
            delivery = attached.consumer.next() => match delivery {
                Some(Ok(delivery)) => {
                    complete(&shared, delivery);
                    continue;
                }
                Some(Err(error)) => error.to_string(),
                None => "the reply consumer ended".to_owned(),
            },
            changed = links.changed() => {
                let gone = changed.is_err()
                        || links.borrow_and_update().left_behind(attached.generation);
                if !gone {
                    continue;
                }
                "the connection dropped".to_owned()
            }
        };
        shared.detach();
        if broker.is_closed() {
            // This process closed the connection: nothing was lost and nothing reattaches.
            tracing::debug!(error = %lost, "reply consumer stopped by close");
            fail_pending(&shared);
            return;
        }
        shared.broker_lost.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(error = %lost, "broker connection lost");
        fail_pending(&shared);
        let after = attached.generation;
        drop(attached);
        let again = broker
            .attach_again(after, &stop, &reply_to, || attach(&broker, &reply_to))
            .await;
        let Some(again) = again else {
            return;
        };
        attached = again;
        shared.attach(&attached);
    }
}

fn complete(shared: &Shared, delivery: Delivery) {
    let Some(correlation_id) = delivery.properties.correlation_id().as_ref() else {
        tracing::debug!("dropping a reply without correlation_id");
        return;
    };
    if !shared
        .pending
        .complete(correlation_id.as_str(), Ok(delivery.data))
    {
        tracing::debug!(%correlation_id, "dropping a reply nobody waits for");
    }
}

/// Stops consuming replies and closes the callback queue's channels while the connection is
/// still open (the broker is closing): calls still pending fail, no reply can come any more.
async fn close(shared: &Shared, attached: Attached) {
    shared.detach();
    shared.pending.fail_all(&CallError::Unavailable(
        "the client's broker connection was closed".into(),
    ));
    let Attached {
        consuming,
        publisher,
        ..
    } = attached;
    for channel in [&consuming, &publisher] {
        let close = channel.close(200, "closing".into());
        super::closing::step("closing a callback queue channel", close).await;
    }
}

fn fail_pending(shared: &Shared) {
    let failed = shared.pending.fail_all(&CallError::Unavailable(
        "connection to the broker was lost".into(),
    ));
    if failed > 0 {
        tracing::warn!(failed, "failed pending calls after losing the broker");
    }
}
