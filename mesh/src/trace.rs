//! W3C Trace Context: the `traceparent` a call carries (`00-<trace id>-<parent id>-<flags>`), so
//! one trace crosses the gateway and every service of a request. Each call is a span of its own:
//! it keeps the trace id and takes a new parent id, which the calls it makes inherit.

use std::fmt;

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

    /// The trace id (32 hex digits).
    pub fn trace_id(&self) -> &str {
        &self.trace_id
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
    }
}
