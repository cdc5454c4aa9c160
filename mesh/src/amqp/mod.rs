//! The AMQP transport, on lapin: the [`Broker`] connection, the [`RpcClient`], the event
//! [`Publisher`] and the service runtime ([`serve`]).

mod broker;
mod client;
mod closing;
mod consumer;
mod events;
mod headers;
mod link;
mod outbound;
mod publisher;
mod rpc;
mod server;

pub use broker::Broker;
pub use client::RpcClient;
pub use publisher::Publisher;
pub use server::serve;
pub(crate) use server::serve_routes;
