//! Detached calls: a request whose reply waits in a queue of its own, named by the caller,
//! for whichever instance of the mesh collects it, once or many times, until the queue expires.
//! A gateway's asynchronous calls (`Prefer: respond-async`) are made of these: the replica that
//! takes the request need not be the one that answers for its result.

use crate::error::CallError;
use serde_json::Value;
use std::time::Duration;

/// Where a detached call's reply waits: a queue (over AMQP, bound on the RPC exchange with its
/// name as the routing key, the name the request carries as its `reply_to`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultQueue {
    name: String,
    keep_for: Duration,
}

impl ResultQueue {
    /// The queue `name`, kept `keep_for` from its declaration (over AMQP its `x-expires`,
    /// which counts idle time: each collect starts it again, so a caller that must not serve
    /// a result past a moment checks that moment itself).
    pub fn new(name: impl Into<String>, keep_for: Duration) -> Self {
        Self {
            name: name.into(),
            keep_for,
        }
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How long the queue is kept.
    pub fn keep_for(&self) -> Duration {
        self.keep_for
    }
}

/// What [`crate::Client::collect`] found in a result queue.
#[derive(Debug, Clone, PartialEq)]
pub enum Collected {
    /// The queue exists and holds no reply yet: the call runs (or its reply was lost, or its
    /// deadline passed without one: the caller compares with the call's deadline).
    Running,
    /// The call's outcome, exactly as [`crate::ServiceProxy::call`] would have returned it.
    /// It stays in the queue for the next collect.
    Done(Result<Value, CallError>),
    /// No such queue: never made, expired, or deleted.
    Gone,
}
