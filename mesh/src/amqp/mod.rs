//! The AMQP transport, on lapin: the [`Broker`] connection, the [`RpcClient`] and the service
//! runtime ([`serve`]).

mod broker;
mod client;
mod headers;
mod server;

pub use broker::Broker;
pub use client::{ClientStats, RpcClient};
pub use server::{RunningService, ServiceStats, serve};
