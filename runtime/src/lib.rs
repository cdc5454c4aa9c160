//! # warren-runtime
//!
//! What makes a process that serves Warren services production-grade, as a library a team's
//! `main.rs` uses: the [`Runner`].
//!
//! - **Services with their state.** [`Runner::serve`] takes a service whose state is given;
//!   [`Runner::serve_with`] takes one with a [`mesh::Dependency`], opened when the service
//!   starts and closed after it stopped, last opened first (nameko's dependency providers).
//! - **The transport from configuration.** In process when no broker is named, RabbitMQ when
//!   `--amqp` / `AMQP_URL` names one. A process that serves services but no gateway needs a
//!   broker (nothing else could reach them) and says so.
//! - **The gateway in the same process**, optionally ([`Runner::with_gateway`]): `POST
//!   /rpc/<service>/<method>`, `/docs`, `/openapi.json`, the probes and `/metrics` on
//!   `--listen` / `WARREN_LISTEN` (default `127.0.0.1:8080`).
//! - **An ops listener** for a process without a gateway: `--ops-listen` /
//!   `WARREN_OPS_LISTEN` serves `/healthz`, `/readyz` and `/metrics`. Off by default, so a
//!   program started with defaults binds only the gateway's address.
//! - **Order.** A failure at start stops whatever had started and exits non-zero with one
//!   line; SIGINT or SIGTERM stops HTTP intake, answers the calls in flight, stops the services
//!   within their grace period, closes the dependencies, then the broker connection.
//! - **Logs** to standard error (`RUST_LOG`, `--log-format json`), and with the `otel` feature
//!   span export over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
//!
//! ```no_run
//! use mesh::{Args, RpcError, Service};
//! use serde::Deserialize;
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
//! #[tokio::main]
//! async fn main() -> std::process::ExitCode {
//!     let service = Service::new("greeting_service").rpc("hello", hello);
//!     warren_runtime::Runner::from_args().serve(service).with_gateway().run().await
//! }
//! ```
//!
//! The flags are clap arguments ([`args`]) a program with a command line of its own can
//! flatten into it, and build [`Settings`] from.

pub mod args;
mod error;
mod logging;
mod ops;
#[cfg(feature = "otel")]
mod otel;
mod runner;
mod signal;
mod unit;

pub use error::{ConfigError, RunError, one_line};
pub use logging::{LogFormat, Telemetry, init as init_logging, init_with as init_logging_with};
pub use runner::{Runner, Settings, Transport};
pub use signal::terminate_signal;
