//! The AMQP transport, on lapin, speaking nameko's wire protocol: one connection per process
//! (the broker), replaced by a new one whenever it drops; a callback queue per client; a confirm
//! channel for events; each service's queues consumed with bounded concurrency.
//!
//! What a user of the crate sees of it is [`AmqpConfig`] (given to [`crate::Mesh::amqp`]) and
//! the names of what it declares on the broker.

mod broker;
mod callback_queue;
mod client;
mod closing;
mod config;
mod consumer;
mod detached;
mod events;
mod headers;
mod lease;
mod link;
mod outbound;
mod publish;
mod publisher;
mod rpc;
mod server;
mod transport;

pub use crate::events::dead_letter_queue;
pub use crate::lease::{MAX_LEASE_NAMES_LEN, lease_queue};
pub use crate::protocol::{DEFAULT_RPC_EXCHANGE, events_exchange, service_queue};
pub use config::{AmqpConfig, DEFAULT_AMQP_URL, QueueType, split_urls};
pub(crate) use transport::AmqpTransport;
