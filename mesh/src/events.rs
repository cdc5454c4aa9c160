//! Events (pub-sub), as nameko has them: a service dispatches `event_type` with a JSON payload
//! from its `<service>.events` exchange; other services subscribe with one of three
//! [`HandlerType`]s, each its own queue naming.

use crate::protocol::{NameError, validate_name};
use crate::retry::RetrySchedule;
use std::time::Duration;

/// How instances of a handling service share an event stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HandlerType {
    /// One instance of the handling service gets each event (a queue per service and method).
    #[default]
    ServicePool,
    /// One instance of any service gets each event (a queue per source and event type).
    Singleton,
    /// Every instance gets each event (a queue per instance).
    Broadcast,
}

/// How long a broadcast queue outlives its instance. An instance restarted under the same
/// instance id within this time gets the events it missed; a queue whose instance is gone for
/// good is removed by the broker.
pub const BROADCAST_QUEUE_EXPIRES_MS: i64 = 30 * 60 * 1000;

/// A subscription: which events, how they are shared, and the handler's method name (which
/// names its queue, as in nameko).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The dispatching service.
    pub source: String,
    /// The event type (the routing key).
    pub event_type: String,
    /// How instances share the stream.
    pub handler_type: HandlerType,
    /// The handler's method name; `on_<event_type>` unless set.
    pub method: String,
    /// A broadcast queue that lives only as long as its consumer (exclusive, auto-deleted):
    /// for instances that only care about events while they run, like a gateway's registry.
    pub transient: bool,
    /// Handled one at a time, in the order the queue delivers them (otherwise up to
    /// `max_workers` at once, which may finish out of order).
    pub in_order: bool,
    /// When a failed event is tried again before it is dead-lettered (by default once, at
    /// once).
    pub retry: RetrySchedule,
}

impl Subscription {
    /// A service-pool subscription to `source`'s `event_type`, handled by `on_<event_type>`.
    pub fn new(source: impl Into<String>, event_type: impl Into<String>) -> Self {
        let event_type = event_type.into();
        Self {
            source: source.into(),
            method: format!("on_{event_type}"),
            event_type,
            handler_type: HandlerType::ServicePool,
            transient: false,
            in_order: false,
            retry: RetrySchedule::default(),
        }
    }

    /// A broadcast subscription whose queue goes away with its instance.
    pub fn transient(mut self) -> Self {
        self.handler_type = HandlerType::Broadcast;
        self.transient = true;
        self
    }

    /// Handles one event at a time, in delivery order: for a handler that forwards events
    /// somewhere their order matters (a gateway's event streams), at the cost of parallelism.
    pub fn in_order(mut self) -> Self {
        self.in_order = true;
        self
    }

    /// Tries a failed event again on `schedule` before dead-lettering it; the broker keeps the
    /// event while it waits (one `<queue>.retry.<ms>` queue per delay, see docs/services.md).
    pub fn retry(mut self, schedule: RetrySchedule) -> Self {
        self.retry = schedule;
        self
    }

    /// Tries a failed event again after each of `delays` (see [`RetrySchedule::after`]).
    pub fn retry_after(self, delays: impl IntoIterator<Item = Duration>) -> Self {
        self.retry(RetrySchedule::after(delays))
    }

    /// Every instance of the service gets each event.
    pub fn broadcast(mut self) -> Self {
        self.handler_type = HandlerType::Broadcast;
        self
    }

    /// One instance of any subscribing service gets each event.
    pub fn singleton(mut self) -> Self {
        self.handler_type = HandlerType::Singleton;
        self
    }

    /// Names the handler's method (and so its queue).
    pub fn method(mut self, method: impl Into<String>) -> Self {
        self.method = method.into();
        self
    }

    /// The queue this subscription consumes, for `service` running as `instance_id`:
    /// `evt-<source>-<event>--<service>.<method>` (service pool), `evt-<source>-<event>`
    /// (singleton), or the service-pool name plus `-<instance id>` (broadcast).
    pub fn queue(&self, service: &str, instance_id: &str) -> String {
        let base = format!("evt-{}-{}", self.source, self.event_type);
        match self.handler_type {
            HandlerType::Singleton => base,
            HandlerType::ServicePool => format!("{base}--{service}.{}", self.method),
            HandlerType::Broadcast => format!("{base}--{service}.{}-{instance_id}", self.method),
        }
    }

    /// Checks the source, event type and method names.
    pub fn validate(&self) -> Result<(), (String, NameError)> {
        for name in [&self.source, &self.event_type, &self.method] {
            validate_name(name).map_err(|e| (name.clone(), e))?;
        }
        Ok(())
    }
}

/// The queue where events whose handler failed on every attempt of its schedule are kept:
/// `<queue>.dead-letter`.
pub fn dead_letter_queue(queue: &str) -> String {
    format!("{queue}{DEAD_LETTER_SUFFIX}")
}

/// What names a dead-letter queue: its subscription's queue and this suffix.
pub const DEAD_LETTER_SUFFIX: &str = ".dead-letter";

/// The subscription queue whose dead-letter queue is `dead_letter_queue`; `None` when the
/// name is not one of a dead-letter queue.
pub fn subscription_queue_of(dead_letter_queue: &str) -> Option<&str> {
    dead_letter_queue
        .strip_suffix(DEAD_LETTER_SUFFIX)
        .filter(|queue| !queue.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_follow_nameko() {
        let s = Subscription::new("library", "book_added");
        assert_eq!(s.method, "on_book_added");
        assert_eq!(
            s.queue("indexer", "i1"),
            "evt-library-book_added--indexer.on_book_added"
        );
        assert_eq!(
            s.clone().singleton().queue("indexer", "i1"),
            "evt-library-book_added"
        );
        assert_eq!(
            s.clone().broadcast().method("index").queue("indexer", "i1"),
            "evt-library-book_added--indexer.index-i1"
        );
        assert_eq!(dead_letter_queue("q"), "q.dead-letter");
        assert_eq!(subscription_queue_of("q.dead-letter"), Some("q"));
        assert_eq!(subscription_queue_of(".dead-letter"), None);
        assert_eq!(subscription_queue_of("q"), None);
        assert!(s.validate().is_ok());
        assert!(Subscription::new("a.b", "x").validate().is_err());
    }
}
