//! The AMQP transport, on lapin, speaking nameko's wire protocol: one connection per process
//! (the broker), replaced by a new one whenever it drops; a callback queue per client; a confirm
//! channel for events; each service's queues consumed with bounded concurrency.
//!
//! What a user of the crate sees of it is [`AmqpConfig`] (given to [`crate::Mesh::amqp`]), the
//! names of what it declares on the broker and the headers it sets, and [`DeadLetterQueues`]
//! for operators.

mod broker;
mod callback_queue;
mod client;
mod closing;
mod config;
mod consumer;
mod dead_letters;
mod detached;
mod event_queues;
mod events;
mod headers;
mod known_routes;
mod lease;
mod link;
mod outbound;
mod publish;
mod publisher;
mod rpc;
mod server;
mod transport;

pub use crate::events::{DEAD_LETTER_SUFFIX, dead_letter_queue, subscription_queue_of};
pub use crate::lease::{MAX_LEASE_NAMES_LEN, lease_queue};
pub use crate::protocol::{DEFAULT_RPC_EXCHANGE, events_exchange, service_queue};
pub use crate::retry::retry_queue;
pub use config::{AmqpConfig, DEFAULT_AMQP_URL, QueueType, split_urls};
pub use dead_letters::{
    DeadLetterError, DeadLetterListing, DeadLetterQueues, DeadLetterSummary, PREVIEW_BYTES, Replay,
};
pub use headers::{ATTEMPT_HEADER, ERROR_HEADER, EVENT_TYPE_HEADER, SOURCE_HEADER};
pub(crate) use transport::AmqpTransport;
