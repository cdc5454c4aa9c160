//! OpenTelemetry export (the `otel` cargo feature): when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, the gateway's span of each request and each
//! service's span of each call are exported over OTLP/HTTP (protobuf) by a batch processor.
//!
//! The spans join one trace across processes: the gateway's span is the child of the caller's
//! `traceparent` (or a new root), the `traceparent` it sends in the AMQP headers names its own
//! span, and a service's span is the child of that (see [`warren_telemetry::trace::SpanLinker`]). The
//! standard `OTEL_*` variables apply: `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_BSP_*`, `OTEL_SDK_DISABLED`.
//! Only Warren's spans are exported (targets `mesh` and `warren_gateway`, level INFO), whatever
//! `RUST_LOG` lets through to the logs.

use opentelemetry::Context;
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::registry::LookupSpan;
use warren_telemetry::trace::TraceParent;

/// The exporter of a process; [`Export::shutdown`] flushes what is left.
pub(crate) struct Export {
    provider: SdkTracerProvider,
}

impl Export {
    /// Exports the spans still buffered and stops; call it outside the async runtime.
    pub(crate) fn shutdown(self) {
        if let Err(error) = self.provider.shutdown() {
            eprintln!("warning: OpenTelemetry export did not finish: {error}");
        }
    }
}

fn set(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.trim().is_empty())
}

/// Whether the environment asks for export.
fn requested() -> bool {
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// The tracing layer that exports Warren's spans, with its [`Export`], when the environment
/// asks for export (`None` otherwise); installs the span linker. `service_name` names the
/// process unless `OTEL_SERVICE_NAME` does. Call it outside the async runtime: the exporter's
/// blocking HTTP client must not be made inside one.
pub(crate) fn layer<S>(
    service_name: &str,
) -> Result<Option<(impl Layer<S>, Export)>, opentelemetry_otlp::ExporterBuildError>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    if !requested() {
        return Ok(None);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()?;
    let mut resource = Resource::builder();
    if !set("OTEL_SERVICE_NAME") {
        resource = resource.with_service_name(service_name.to_owned());
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    let tracer = provider.tracer("warren");
    warren_telemetry::trace::set_span_linker(link);
    let only_warren = Targets::new()
        .with_target("mesh", LevelFilter::INFO)
        .with_target("warren_gateway", LevelFilter::INFO);
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(only_warren);
    Ok(Some((layer, Export { provider })))
}

/// The [`warren_telemetry::trace::SpanLinker`]: `span` becomes the child of `parent` (a remote span), and
/// its own context, as the exporter records it, is what the call passes on.
fn link(span: &tracing::Span, parent: Option<&TraceParent>) -> Option<TraceParent> {
    if let Some(parent) = parent {
        let ids = (
            TraceId::from_hex(parent.trace_id()),
            SpanId::from_hex(parent.parent_id()),
        );
        if let (Ok(trace_id), Ok(span_id)) = ids {
            let flags = if parent.sampled() {
                TraceFlags::SAMPLED
            } else {
                TraceFlags::default()
            };
            let remote = SpanContext::new(trace_id, span_id, flags, true, TraceState::default());
            // Fails only for a span that is disabled or already started: it then keeps its own.
            let _ = span.set_parent(Context::new().with_remote_span_context(remote));
        }
    }
    let context = span.context();
    let own = context.span().span_context().clone();
    if !own.is_valid() {
        return None;
    }
    TraceParent::from_ids(
        &format!("{:032x}", own.trace_id()),
        &format!("{:016x}", own.span_id()),
        own.is_sampled(),
    )
}
