//! [`Transport`]: what carries calls and events between services. Two transports implement it
//! with the same observable behaviour (one conformance suite runs against both): AMQP on
//! RabbitMQ (the production path, nameko-compatible) and in-process channels (zero setup, and
//! unit tests). A process holds one through a [`crate::Mesh`].

use crate::client::Client;
use crate::config::MeshConfig;
use crate::error::ConnectError;
use crate::future::BoxFuture;
use crate::routes::Routes;
use crate::running::RunningService;
use std::sync::Arc;

/// A way to serve services and reach them.
pub(crate) trait Transport: Send + Sync + 'static {
    /// Serves `routes` (already validated) until the returned service is stopped.
    fn serve(&self, routes: Routes) -> BoxFuture<Result<RunningService, ConnectError>>;

    /// A client that calls as `owner`, ready to call when this returns (for AMQP its callback
    /// queue is consumed).
    fn client(&self, owner: &str) -> BoxFuture<Result<Client, ConnectError>>;

    /// Whether the transport can carry calls now.
    fn is_ready(&self) -> bool;

    /// A one-line description for logs: `in-process`, or the broker URL without its password.
    fn describe(&self) -> String;

    /// Closes the transport: calls fail with `Unavailable` from now on.
    fn close(&self) -> BoxFuture<()>;

    /// Another instance joining the same mesh with its own `config` (for AMQP: a new
    /// connection to the same broker), as a second process would.
    fn another_instance(
        &self,
        config: MeshConfig,
    ) -> BoxFuture<Result<Arc<dyn Transport>, ConnectError>>;
}
