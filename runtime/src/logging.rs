//! The process's logs, and with the `otel` feature its span export, set up once.
//!
//! Logs go to standard error, filtered by `RUST_LOG` (`info` by default), as text for people or
//! JSON for collectors. Whatever `RUST_LOG` says, lapin's log of a message the broker returned
//! is off: it prints the whole message, headers included, and a request's headers carry the
//! caller's bearer token (`nameko.auth_token`). The client logs a returned request itself, as
//! one line naming the service, the method and the request id.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Directive;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// lapin's target that logs returned messages whole.
const RETURNED_MESSAGES: &str = "lapin::returned_messages=off";

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Text for people.
    Pretty,
    /// One JSON object a line, for log collectors.
    Json,
}

impl LogFormat {
    /// `pretty` or `json` (anything else is `pretty`).
    pub fn parse(name: &str) -> Self {
        if name.eq_ignore_ascii_case("json") {
            Self::Json
        } else {
            Self::Pretty
        }
    }
}

/// The process's telemetry, kept until it exits: [`Telemetry::finish`] flushes what is left.
pub struct Telemetry {
    #[cfg(feature = "otel")]
    export: Option<crate::otel::Export>,
}

impl Telemetry {
    /// Exports the spans still buffered (`otel` feature). Blocks: call it outside the async
    /// runtime, or from a blocking task.
    pub fn finish(self) {
        #[cfg(feature = "otel")]
        if let Some(export) = self.export {
            export.shutdown();
        }
    }
}

/// The log filter: `RUST_LOG`, or `default`, with lapin's returned-message log off.
fn filter(default: &str) -> EnvFilter {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    match RETURNED_MESSAGES.parse::<Directive>() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    }
}

/// Installs the process's logging in `format` (and span export when the environment asks for
/// it and the `otel` feature is on, naming the process `process_name` unless
/// `OTEL_SERVICE_NAME` does). `None` when the program installed a subscriber of its own first.
///
/// Call it before the async runtime starts when spans may be exported: the exporter's
/// blocking HTTP client must not be made inside one.
pub fn init(format: LogFormat, process_name: &str) -> Option<Telemetry> {
    init_with(format, process_name, "info")
}

/// [`init`] with `default` as the filter when `RUST_LOG` is not set (`info` in [`init`]): a
/// command whose output is its whole point, like a shell on a pipe, may want none.
pub fn init_with(format: LogFormat, process_name: &str, default: &str) -> Option<Telemetry> {
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = match format {
        LogFormat::Json => logs.json().boxed(),
        LogFormat::Pretty => logs.boxed(),
    };
    let registry = tracing_subscriber::registry().with(logs.with_filter(filter(default)));
    #[cfg(feature = "otel")]
    {
        let (spans, export) = match crate::otel::layer(process_name) {
            Ok(Some((layer, export))) => (Some(layer), Some(export)),
            Ok(None) => (None, None),
            Err(error) => {
                eprintln!("warning: no OpenTelemetry export: {error}");
                (None, None)
            }
        };
        registry.with(spans).try_init().ok()?;
        Some(Telemetry { export })
    }
    #[cfg(not(feature = "otel"))]
    {
        let _ = process_name;
        registry.try_init().ok()?;
        Some(Telemetry {})
    }
}
