//! `GET /events/{source}/{event_type}`: the mesh's events, pushed to HTTP clients as
//! server-sent events (docs/http.md, "Events to browsers").
//!
//! One subscription per gateway process per `(source, event_type)`, whatever the number of
//! clients: the first client's request makes it (a transient broadcast queue, exclusive and
//! auto-deleted, bound to `<source>.events` with the event type as the routing key), the last
//! client's departure stops it, and every event is fanned out in process through a
//! [`broadcast`] channel. The channel's ring is the only buffer: a client that falls more than
//! its length behind is ended (with a closing comment) rather than buffered for, so the
//! gateway's memory does not grow with a slow reader. The subscription is a mesh service like
//! any other, so its queue is declared again on a new connection after a broker restart.
//!
//! The response's headers are sent only once the subscription's queue is bound: an event
//! dispatched after a client saw the headers reaches it.

use crate::AppState;
use crate::error::GatewayError;
use crate::rpc;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use mesh::describe::DESCRIPTOR_SOURCE;
use mesh::{Mesh, Payload, RpcError, RunningService, Service, Subscription, validate_name};
use serde_json::Value;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, watch};

/// The longest source plus event type a stream may name (its queue's name holds them, a feed
/// number and the instance id within 255 bytes).
const MAX_STREAM_NAMES_LEN: usize = 150;

/// Which events: the dispatching service and the event type.
type Topic = (String, String);

/// One event as every client's stream writes it.
#[derive(Debug)]
struct StreamEvent {
    /// Its number in this gateway process's subscription (the SSE `id:`).
    id: u64,
    /// The payload as compact JSON (one `data:` line).
    data: String,
}

/// The subscription of one topic and what its clients share.
struct Feed {
    sender: broadcast::Sender<Arc<StreamEvent>>,
    running: RunningService,
    clients: usize,
}

/// Every event stream of one gateway process.
pub(crate) struct EventStreams {
    mesh: Mesh,
    /// Open feeds by topic. The async lock is held while a feed's queue is declared, so two
    /// first clients of a topic make one subscription.
    feeds: tokio::sync::Mutex<HashMap<Topic, Feed>>,
    /// Feeds made so far: numbers each one's queue, so a feed made while its predecessor's
    /// queue is still being deleted never shares that queue.
    made: AtomicU64,
    /// Places for open streams (`GatewayConfig::max_event_streams`).
    places: Arc<Semaphore>,
    max_streams: usize,
    buffer: usize,
    /// Turns true when the gateway shuts down: every stream ends.
    closing: watch::Sender<bool>,
}

impl EventStreams {
    /// Streams on `mesh`, at most `max_streams` at once, each client at most `buffer` events
    /// behind.
    pub(crate) fn new(mesh: Mesh, max_streams: usize, buffer: usize) -> Arc<Self> {
        Arc::new(Self {
            mesh,
            feeds: tokio::sync::Mutex::default(),
            made: AtomicU64::new(0),
            places: Arc::new(Semaphore::new(max_streams)),
            max_streams,
            buffer: buffer.max(1),
            closing: watch::Sender::new(false),
        })
    }

    /// Ends every stream (each with a closing comment) and refuses new ones.
    pub(crate) fn close(&self) {
        self.closing.send_replace(true);
        self.places.close();
    }

    /// Streams open now.
    pub(crate) fn open(&self) -> usize {
        self.max_streams - self.places.available_permits()
    }

    /// Stops every feed (the gateway stops).
    pub(crate) async fn stop(&self) {
        self.close();
        let feeds: Vec<Feed> = self.feeds.lock().await.drain().map(|(_, f)| f).collect();
        for feed in feeds {
            feed.running.stop().await;
        }
    }

    /// A client of `topic`: its receiver, once the topic's queue is bound.
    async fn join(
        self: &Arc<Self>,
        topic: Topic,
        place: OwnedSemaphorePermit,
    ) -> Result<Client, GatewayError> {
        let mut feeds = self.feeds.lock().await;
        // Closed while this waited for the lock: `stop` has drained the feeds, and would never
        // see a new one.
        if *self.closing.borrow() {
            return Err(GatewayError::Unavailable(
                "the gateway is shutting down".to_owned(),
            ));
        }
        if let Some(feed) = feeds.get_mut(&topic) {
            feed.clients += 1;
            let receiver = feed.sender.subscribe();
            return Ok(self.client(topic, receiver, place));
        }
        let (sender, receiver) = broadcast::channel(self.buffer);
        let n = self.made.fetch_add(1, Ordering::Relaxed);
        let forward = Arc::new(Forward {
            sender: sender.clone(),
            next_id: AtomicU64::new(1),
        });
        // The method names the queue: `evt-<source>-<type>--gateway.stream_<n>-<instance>`.
        let subscription = Subscription::new(topic.0.clone(), topic.1.clone())
            .method(format!("stream_{n}"))
            .transient()
            .in_order();
        let service = Service::new("gateway")
            .subscribe(subscription, forward_event)
            .with_state(forward);
        let running = self
            .mesh
            .serve(service)
            .await
            .map_err(|e| GatewayError::Unavailable(e.to_string()))?;
        feeds.insert(
            topic.clone(),
            Feed {
                sender,
                running,
                clients: 1,
            },
        );
        Ok(self.client(topic, receiver, place))
    }

    fn client(
        self: &Arc<Self>,
        topic: Topic,
        receiver: broadcast::Receiver<Arc<StreamEvent>>,
        place: OwnedSemaphorePermit,
    ) -> Client {
        Client {
            receiver,
            closing: self.closing.subscribe(),
            _membership: Membership {
                streams: self.clone(),
                topic,
                _place: place,
            },
        }
    }

    /// One client of `topic` left; the last one's departure stops the feed (its queue is
    /// deleted with its consumer).
    async fn leave(&self, topic: Topic) {
        let mut feeds = self.feeds.lock().await;
        let Some(feed) = feeds.get_mut(&topic) else {
            return;
        };
        feed.clients = feed.clients.saturating_sub(1);
        if feed.clients > 0 {
            return;
        }
        let feed = feeds.remove(&topic);
        drop(feeds);
        if let Some(feed) = feed {
            feed.running.stop().await;
        }
    }
}

/// A client's place in a feed, given back when its stream is dropped (the client went away,
/// fell behind, or the gateway shut down).
struct Membership {
    streams: Arc<EventStreams>,
    topic: Topic,
    _place: OwnedSemaphorePermit,
}

impl Drop for Membership {
    fn drop(&mut self) {
        // A drop cannot await: the count is settled by a task (none once the runtime is
        // gone, when the feeds go with it).
        let (streams, topic) = (self.streams.clone(), std::mem::take(&mut self.topic));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { streams.leave(topic).await });
        }
    }
}

/// One client's end of a feed.
struct Client {
    receiver: broadcast::Receiver<Arc<StreamEvent>>,
    closing: watch::Receiver<bool>,
    _membership: Membership,
}

/// What the feed's subscription hands its events to.
struct Forward {
    sender: broadcast::Sender<Arc<StreamEvent>>,
    next_id: AtomicU64,
}

/// The feed's event handler (one at a time, in delivery order): numbers the event and hands it
/// to every client. No client is not an error; the feed stops soon after.
async fn forward_event(
    mesh::State(forward): mesh::State<Arc<Forward>>,
    Payload(payload): Payload<Value>,
) -> Result<(), RpcError> {
    let data = serde_json::to_string(&payload).map_err(|e| RpcError::internal(e.to_string()))?;
    let id = forward.next_id.fetch_add(1, Ordering::Relaxed);
    let _ = forward.sender.send(Arc::new(StreamEvent { id, data }));
    Ok(())
}

/// What the stream says before it ends.
enum Ending {
    /// The client fell more than the buffer behind.
    Lagged(u64),
    /// The gateway is shutting down.
    Closing,
}

impl Ending {
    /// The closing comment (`: ended: ...`), so a client can tell why the stream ended.
    fn comment(&self) -> Event {
        Event::default().comment(match self {
            Self::Lagged(missed) => {
                format!("ended: this client fell {missed} events behind; reconnect to follow again")
            }
            Self::Closing => "ended: the gateway is shutting down".to_owned(),
        })
    }
}

/// A client's events as SSE events, until it falls behind or the gateway closes; then one
/// closing comment, and the end.
fn sse_events(
    client: Client,
    event_type: String,
) -> impl Stream<Item = Result<Event, Infallible>> + Send {
    futures_util::stream::unfold(Some((client, event_type)), |state| async move {
        let (mut client, event_type) = state?;
        let received = tokio::select! {
            biased;
            _ = client.closing.wait_for(|closing| *closing) => Err(Ending::Closing),
            received = client.receiver.recv() => received.map_err(|e| match e {
                RecvError::Lagged(missed) => Ending::Lagged(missed),
                RecvError::Closed => Ending::Closing,
            }),
        };
        let ending = match received {
            Ok(event) => {
                let sse = Event::default()
                    .event(&event_type)
                    .id(event.id.to_string())
                    .data(&event.data);
                return Some((Ok(sse), Some((client, event_type))));
            }
            Err(ending) => ending,
        };
        Some((Ok(ending.comment()), None))
    })
}

/// `GET /events/{source}/{event_type}`: `text/event-stream` of `source`'s `event_type` events.
pub(crate) async fn stream(
    State(app): State<AppState>,
    Path((source, event_type)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    match open(&app, source, event_type, &headers).await {
        Ok(events) => {
            let keep_alive = KeepAlive::new().interval(app.config.event_keep_alive);
            let mut response = Sse::new(events).keep_alive(keep_alive).into_response();
            // A buffering proxy (nginx) would hold the events back.
            response.headers_mut().insert(
                "x-accel-buffering",
                axum::http::HeaderValue::from_static("no"),
            );
            response
        }
        Err(error) => rpc::problem(&app, error, &headers),
    }
}

/// Checks a stream's request, in the order of a call's (credentials, names, exposure,
/// permissions, the limit), and joins its feed.
async fn open(
    app: &AppState,
    source: String,
    event_type: String,
    headers: &HeaderMap,
) -> Result<impl Stream<Item = Result<Event, Infallible>> + Send + use<>, GatewayError> {
    let identity = app
        .config
        .auth
        .authenticate(headers)
        .map_err(GatewayError::Unauthenticated)?;
    for (what, name) in [("source", &source), ("event type", &event_type)] {
        validate_name(name).map_err(|reason| GatewayError::InvalidName {
            what,
            name: name.chars().take(200).collect(),
            reason,
        })?;
    }
    // The feed's queue, `evt-<source>-<type>--gateway.stream_<n>-<instance>`, is an AMQP short
    // string: the two names get what its 255 bytes leave.
    let len = source.len() + event_type.len();
    if len > MAX_STREAM_NAMES_LEN {
        return Err(GatewayError::InvalidName {
            what: "source and event type",
            name: format!("{source}.{event_type}").chars().take(200).collect(),
            reason: mesh::NameError::TooLongTogether(len, MAX_STREAM_NAMES_LEN),
        });
    }
    // Descriptors are the gateway's own traffic, not an event of the mesh's.
    if source == DESCRIPTOR_SOURCE || !app.config.exposure.allows(&source, &event_type) {
        return Err(GatewayError::NotExposed(source, event_type));
    }
    if let Some(identity) = identity.filter(|i| !i.allows(&source, &event_type)) {
        return Err(GatewayError::Forbidden {
            user: identity.user_id().to_owned(),
            service: source,
            method: event_type,
        });
    }
    let streams = &app.events;
    let place = streams
        .places
        .clone()
        .try_acquire_owned()
        .map_err(|e| match e {
            tokio::sync::TryAcquireError::Closed => {
                GatewayError::Unavailable("the gateway is shutting down".to_owned())
            }
            tokio::sync::TryAcquireError::NoPermits => {
                GatewayError::TooManyStreams(streams.max_streams)
            }
        })?;
    let client = streams.join((source, event_type.clone()), place).await?;
    Ok(sse_events(client, event_type))
}
