//! # mesh
//!
//! Warren's framework for writing services, in the spirit of Python's nameko: RPC methods,
//! events, timers, calls between services, injected dependencies, bounded concurrency and a
//! graceful stop. It speaks nameko's AMQP wire protocol, so Warren services and nameko services
//! call each other, and it runs the same services in process when there is no broker.
//!
//! A service is a name plus handlers; handlers are plain async functions whose arguments are
//! extractors ([`Args`], [`State`], [`Ctx`], [`Payload`]). Here is nameko's hello service,
//! served in process and called:
//!
//! ```
//! use mesh::{Args, Mesh, MeshConfig, RpcError, Service};
//! use serde::Deserialize;
//! use serde_json::json;
//! use utoipa::ToSchema;
//!
//! /// Greets someone.
//! #[derive(Deserialize, ToSchema)]
//! struct Hello {
//!     name: String,
//! }
//!
//! async fn hello(Args(h): Args<Hello>) -> Result<String, RpcError> {
//!     Ok(format!("Hello, {}!", h.name))
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let mesh = Mesh::in_process(MeshConfig::default());
//! let service = mesh.serve(Service::new("greeting_service").rpc("hello", hello)).await?;
//!
//! let client = mesh.client("readme").await?;
//! let greeting = client.rpc("greeting_service").call("hello", json!({"name": "Matt"})).await?;
//! assert_eq!(greeting, json!("Hello, Matt!"));
//! service.stop().await;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! A program runs its services with the `warren-runtime` crate's builder, which picks the
//! transport from its configuration (in process, or RabbitMQ when `AMQP_URL` names one),
//! can serve the HTTP gateway in the same process, opens and closes the services'
//! dependencies, and shuts down in order on SIGINT or SIGTERM.
//!
//! ## The parts
//!
//! - [`Service`]: declared without its state, so its descriptor (methods and their JSON
//!   Schemas) exists before anything is opened; given its state by [`Service::with_state`] or
//!   by a [`Dependency`] when it is served.
//! - Handlers take [`Args<T>`] (the arguments, bound as Python binds them: positional fill
//!   fields in order, keyword by name; a mismatch is nameko's `IncorrectSignature`),
//!   [`State<S>`], [`Ctx`] (the call's context: call id stack, deadline, caller identity) and,
//!   for events, [`Payload<T>`]. They return `Result<T, E>` with `T: Serialize` and `E:
//!   Into<RpcError>`.
//! - [`RpcError`]: what a handler fails with, a kind ([`ErrorKind`]) and an `exc_type`, sent in
//!   nameko's error shape (the gateway maps it to an HTTP status).
//! - Calls to other services: [`Ctx::rpc`] in a handler (the caller's deadline and context
//!   travel on), [`Client::rpc`] outside one; both give a [`ServiceProxy`].
//! - Events: [`Ctx::dispatch`] or [`Client::dispatch`]; subscriptions with
//!   [`Service::on_event`] and [`Service::subscribe`] ([`Subscription`], nameko's three handler
//!   types); a handler that fails gets the event again on the subscription's
//!   [`RetrySchedule`] (by default once, at once), then it is dead-lettered.
//! - Timers: [`Service::timer`] with a [`Timer`], in every instance or
//!   [`Timer::once_per_service`].
//! - CPU-bound work: [`Ctx::blocking`] runs it on a bounded pool, off the async runtime.
//! - [`Mesh`]: a process's transport, where services are served ([`Mesh::serve`]) and clients
//!   made ([`Mesh::client`]). AMQP's own settings and names are in [`amqp`].
//! - `mesh::testing` (feature `testing`): call a handler directly, or run whole services in
//!   process, send them events and wait for their handlers.
//!
//! The architecture, the wire protocol and why it is so are in the repository's
//! `docs/architecture.md`; a guide to writing services in `docs/services.md`.

pub mod amqp;
mod announce;
mod args;
mod blocking;
mod call_context;
mod client;
mod config;
mod ctx;
mod deadline;
mod dependency;
pub mod describe;
mod detached;
mod error;
mod events;
mod future;
#[cfg(test)]
mod fuzz;
mod handle;
pub mod handler;
mod lease;
mod local;
mod pending;
mod protocol;
mod redact;
mod retry;
mod routes;
mod running;
mod service;
mod shutdown;
mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
mod ticking;
mod timer;
mod transport;

pub use blocking::{DEADLINE_EXCEEDED, default_blocking_threads};
pub use call_context::CallContext;
pub use client::{Client, ClientStats, IntoArguments, ServiceProxy};
pub use config::MeshConfig;
pub use ctx::Ctx;
pub use deadline::Deadline;
pub use dependency::{BoxError, Dependency};
pub use detached::{Collected, ResultQueue};
pub use error::{CallError, ConnectError, ErrorKind, RpcError};
pub use events::{HandlerType, Subscription};
pub use handle::Mesh;
pub use handler::{Args, Payload, State};
pub use protocol::{
    Arguments, MAX_CALL_NAMES_LEN, MAX_NAME_LEN, NameError, RemoteError, validate_call_names,
    validate_name,
};
pub use redact::redact_url;
pub use retry::{MAX_RETRY_DELAY, RetrySchedule};
pub use running::{RunningService, ServiceStats};
pub use service::Service;
pub use timer::Timer;
