//! The callback queue of an [`RpcClient`](super::client::RpcClient): `rpc.reply-<owner>-<uuid>`,
//! bound to the RPC exchange under its own name, declared on every connection the broker gets,
//! and consumed by one task that hands each reply to its waiting caller.
//!
//! When the connection drops, the pending calls fail at once (their replies cannot arrive on a
//! dead connection: callers get a 503 now rather than a 504 later), and the queue is declared
//! and consumed again on the next connection. The queue keeps its name across reconnections and
//! outlives an idle process by [`REPLY_QUEUE_EXPIRES_MS`], as nameko's reply queues do.

use super::broker::{Broker, ChannelTask};
use super::known_routes::KnownRoutes;
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
pub(crate) struct Shared {
    pub(crate) pending: PendingCalls,
    /// The confirm channel requests go out on, with the generation of its connection; `None`
    /// while the connection is down. (An `Arc`: every call takes a handle, and a lapin
    /// `Channel` is several `Arc`s to clone.)
    publisher: RwLock<Option<Publisher>>,
    /// The generation of the last connection a publisher was attached on: a request that could
    /// not go out waits for a newer one.
    attached: tokio::sync::watch::Sender<u64>,
    consuming: AtomicBool,
    pub(crate) calls: AtomicU64,
    pub(crate) timeouts: AtomicU64,
    pub(crate) unknown_service: AtomicU64,
    pub(crate) broker_lost: AtomicU64,
    /// Requests published again after the first attempt provably did not reach a queue (or
    /// may not have, for an idempotent method).
    pub(crate) republished: AtomicU64,
    pub(crate) publishing: PublishWindow,
    /// The services whose requests need no confirm (see [`super::known_routes`]).
    pub(crate) routes: KnownRoutes,
    /// Requests published without a confirm.
    pub(crate) unconfirmed: AtomicU64,
    /// Held while the publisher channel is replaced (one caller replaces it, the others then
    /// find the new one).
    renewing: tokio::sync::Mutex<()>,
}

/// The channels requests go out on, and the generation of the connection they are on.
#[derive(Clone)]
pub(crate) struct Publisher {
    pub(crate) generation: u64,
    /// In confirm mode: requests to services not known routed, and every detached call's.
    pub(crate) channel: Arc<Channel>,
    /// Without confirms: requests to services known routed (see [`super::known_routes`]).
    pub(crate) unconfirmed: Arc<Channel>,
}

/// The generation [`Shared::attached_generation`] reads once the client is closed for good:
/// above every connection's, so whoever waits for a newer connection stops waiting.
const CLOSED: u64 = u64::MAX;

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

impl Default for Shared {
    fn default() -> Self {
        Self {
            pending: PendingCalls::default(),
            publisher: RwLock::new(None),
            attached: tokio::sync::watch::channel(0).0,
            consuming: AtomicBool::new(false),
            calls: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            unknown_service: AtomicU64::new(0),
            broker_lost: AtomicU64::new(0),
            republished: AtomicU64::new(0),
            publishing: PublishWindow::default(),
            routes: KnownRoutes::default(),
            unconfirmed: AtomicU64::new(0),
            renewing: tokio::sync::Mutex::new(()),
        }
    }
}

impl Shared {
    /// The channel requests go out on, when connected.
    pub(crate) fn publisher(&self) -> Option<Publisher> {
        self.publisher.read().ok().and_then(|slot| slot.clone())
    }

    /// Waits until a publisher is attached on a connection newer than `generation` (a
    /// request's retry); the caller races it against the request's deadline.
    pub(crate) async fn attached_after(&self, generation: u64) {
        let mut attached = self.attached.subscribe();
        let _ = attached.wait_for(|newest| *newest > generation).await;
    }

    /// The generation of the last connection a publisher was attached on.
    pub(crate) fn attached_generation(&self) -> u64 {
        *self.attached.borrow()
    }

    /// Whether the client will never attach again (it, or its broker, was closed).
    pub(crate) fn is_closed(&self) -> bool {
        *self.attached.borrow() == CLOSED
    }

    /// Replaces `stale`, the publisher channel, with a new confirm channel on the same
    /// connection, unless another caller did already.
    ///
    /// A channel whose first request to a quorum queue came while the queue had no leader
    /// (its node had just been lost) can go on being refused after the election, while a new
    /// channel on the same connection is taken at once (seen with RabbitMQ 3.10 on a node that
    /// had stopped and started its application before): a publisher refused again and again
    /// is replaced. The old channel is closed a moment later, once what it still waits for is
    /// settled.
    pub(crate) async fn renew_publisher(&self, broker: &Broker, stale: &Publisher) {
        let _renewing = self.renewing.lock().await;
        let current = self.publisher();
        if !current.is_some_and(|p| Arc::ptr_eq(&p.channel, &stale.channel)) {
            return;
        }
        let opened = match broker.open_channel().await {
            Ok((generation, channel)) if generation == stale.generation => {
                match channel
                    .confirm_select(ConfirmSelectOptions::default())
                    .await
                {
                    Ok(()) => Some(channel),
                    Err(error) => {
                        tracing::debug!(%error, "cannot renew the publisher channel");
                        None
                    }
                }
            }
            Ok(_) => None,
            Err(error) => {
                tracing::debug!(%error, "cannot renew the publisher channel");
                None
            }
        };
        let Some(channel) = opened else {
            return;
        };
        tracing::info!(
            generation = stale.generation,
            "the broker refused request after request on the publisher channel; replaced it"
        );
        self.set_publisher(Some(Publisher {
            generation: stale.generation,
            channel: Arc::new(channel),
            unconfirmed: stale.unconfirmed.clone(),
        }));
        let old = stale.channel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            let close = old.close(200, "replaced".into());
            super::closing::step("closing a replaced publisher channel", close).await;
        });
    }

    /// No channel to publish on ever again: requests waiting for one fail at once.
    fn close_for_good(&self) {
        self.detach();
        self.attached.send_replace(CLOSED);
    }

    /// Whether replies are being consumed.
    pub(crate) fn is_consuming(&self) -> bool {
        self.consuming.load(Ordering::Acquire)
    }

    fn set_publisher(&self, publisher: Option<Publisher>) {
        if let Ok(mut slot) = self.publisher.write() {
            *slot = publisher;
        }
    }

    /// Calls go out on `attached` and its replies are consumed: the client is ready.
    fn attach(&self, attached: &Attached) {
        self.set_publisher(Some(Publisher {
            generation: attached.generation,
            channel: Arc::new(attached.publisher.clone()),
            unconfirmed: Arc::new(attached.unconfirmed.clone()),
        }));
        self.consuming.store(true, Ordering::Release);
        self.attached.send_replace(attached.generation);
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
    unconfirmed: Channel,
}

/// Declares the callback queue on the connection of the moment, bound to the RPC exchange under
/// its own name, starts consuming it, and opens the channels requests go out on.
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
    let (_, unconfirmed) = broker.open_channel().await?;
    Ok(Attached {
        generation,
        consumer,
        consuming: channel,
        publisher,
        unconfirmed,
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
            shared.close_for_good();
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
            shared.close_for_good();
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
    shared.close_for_good();
    shared.pending.fail_all(&CallError::Unavailable(
        "the client's broker connection was closed".into(),
    ));
    let Attached {
        consuming,
        publisher,
        unconfirmed,
        ..
    } = attached;
    for channel in [&consuming, &publisher, &unconfirmed] {
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
