//! W3C Trace Context: the `traceparent` a call carries (`00-<trace id>-<parent id>-<flags>`), so
//! one trace crosses the gateway and every service of a request. Each call is a span of its own:
//! it keeps the trace id and takes a new parent id, which the calls it makes inherit.

//!
//! An exporter (the runtime's OpenTelemetry export, behind its `otel` feature) records
//! these spans through a [`SpanLinker`]: the gateway's span of a request and a service's span of
//! a call are linked to their parent in the trace, and the `traceparent` passed on names the
//! exporter's own span, so spans of every hop join one trace. Without a linker nothing changes.

use std::fmt;
use std::sync::OnceLock;

/// Links `span` into the W3C trace it belongs to: makes it a child of `parent` (or the root of
/// a new trace when `None`) and returns the `traceparent` naming `span` itself, which the calls
/// it makes carry. `None` leaves the context as it was.
pub type SpanLinker = fn(&tracing::Span, Option<&TraceParent>) -> Option<TraceParent>;

static LINKER: OnceLock<SpanLinker> = OnceLock::new();

/// Installs the process's span linker; `false` when one was installed already.
pub fn set_span_linker(linker: SpanLinker) -> bool {
    LINKER.set(linker).is_ok()
}

/// Whether a span linker is installed (spans are exported).
pub fn linking() -> bool {
    LINKER.get().is_some()
}

/// Links `span` under `parent` with the installed linker; `None` when there is none.
pub fn link_span(span: &tracing::Span, parent: Option<&TraceParent>) -> Option<TraceParent> {
    LINKER.get().and_then(|link| link(span, parent))
}

/// A parsed `traceparent` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent {
    trace_id: String,
    parent_id: String,
    flags: String,
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

fn random_hex(bytes: usize) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    id[..bytes * 2].to_owned()
}

impl TraceParent {
    /// Parses a `traceparent` value; `None` for anything that is not a valid version-00 one
    /// (an all-zero trace or parent id included), which callers then replace with a new trace.
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.trim().split('-');
        let (version, trace_id, parent_id, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let valid = version == "00"
            && parts.next().is_none()
            && is_hex(trace_id, 32)
            && is_hex(parent_id, 16)
            && is_hex(flags, 2)
            && trace_id.bytes().any(|b| b != b'0')
            && parent_id.bytes().any(|b| b != b'0');
        valid.then(|| Self {
            trace_id: trace_id.to_owned(),
            parent_id: parent_id.to_owned(),
            flags: flags.to_owned(),
        })
    }

    /// A new trace (sampled).
    pub fn new_root() -> Self {
        Self {
            trace_id: uuid::Uuid::new_v4().simple().to_string(),
            parent_id: random_hex(8),
            flags: "01".to_owned(),
        }
    }

    /// A span inside this one: same trace, new parent id.
    pub fn child(&self) -> Self {
        Self {
            trace_id: self.trace_id.clone(),
            parent_id: random_hex(8),
            flags: self.flags.clone(),
        }
    }

    /// A `traceparent` from its parts: a 32-hex-digit trace id, a 16-hex-digit span id
    /// (lower case, not all zero) and whether the trace is sampled.
    pub fn from_ids(trace_id: &str, span_id: &str, sampled: bool) -> Option<Self> {
        let flags = if sampled { "01" } else { "00" };
        Self::parse(&format!("00-{trace_id}-{span_id}-{flags}"))
    }

    /// The trace id (32 hex digits).
    pub fn trace_id(&self) -> &str {
        &self.trace_id
    }

    /// The id of the span this names, the parent of the spans it is passed to (16 hex digits).
    pub fn parent_id(&self) -> &str {
        &self.parent_id
    }

    /// Whether the caller sampled (records) this trace: bit 0 of the flags.
    pub fn sampled(&self) -> bool {
        u8::from_str_radix(&self.flags, 16).is_ok_and(|f| f & 1 == 1)
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "00-{}-{}-{}", self.trace_id, self.parent_id, self.flags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_formats_and_derives_children() {
        let v = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let t = TraceParent::parse(v).expect("valid");
        assert_eq!(t.to_string(), v);
        let c = t.child();
        assert_eq!(c.trace_id(), t.trace_id());
        assert_ne!(c.to_string(), v);
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
        assert!(TraceParent::parse(&TraceParent::new_root().to_string()).is_some());
        assert_eq!(t.parent_id(), "00f067aa0ba902b7");
        assert!(t.sampled());
        let rebuilt = TraceParent::from_ids(t.trace_id(), t.parent_id(), true);
        assert_eq!(rebuilt, Some(t));
        let unsampled = TraceParent::from_ids("4bf92f3577b34da6a3ce929d0e0e4736", "1", false);
        assert_eq!(unsampled, None);
    }
}
