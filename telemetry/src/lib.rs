//! # warren-telemetry
//!
//! What every Warren process measures and traces with, shared by the service framework
//! (`mesh`), the gateway and the runtime that composes them:
//!
//! - [`prometheus`]: the process's Prometheus recorder, installed once, with an upkeep thread so
//!   that histograms stay flat in memory whether or not anyone scrapes, and [`render`] for a
//!   `/metrics` endpoint;
//! - [`CallMetrics`]: a duration histogram and an outcome counter per `service.method`, with their
//!   handles looked up once;
//! - [`trace`]: W3C Trace Context (`traceparent`) and the hook an exporter links spans through.
//!
//! Service authors do not need this crate: the runtime serves the metrics and the framework
//! records them.

mod call_metrics;
mod recorder;
pub mod trace;

pub use call_metrics::CallMetrics;
pub use recorder::{installed, prometheus, render};
