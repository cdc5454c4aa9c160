//! Per-call metrics whose handles are looked up once.
//!
//! `metrics::histogram!(name, &labels)` builds a key (allocating every label value), hashes it
//! and finds it in the recorder's registry on every call. Recording a request's duration and
//! count that way cost the gateway about 4,900 instructions per request, 5% of all it ran
//! (callgrind, release build); through handles kept here it is a few hundred. The label set is
//! bounded by the callers (services' and methods' real names only), so the cache is too.

use foldhash::HashMap;
use metrics::{Counter, Histogram};
use std::sync::RwLock;

/// A duration histogram labelled `{service, method}` and a counter labelled
/// `{service, method, <outcome>}`, with their handles kept per `service.method` once our
/// Prometheus recorder is installed (before that, every record goes through the macros, so
/// none is lost to a handle of no recorder).
pub struct CallMetrics {
    duration: &'static str,
    total: &'static str,
    outcome: &'static str,
    services: RwLock<HashMap<Box<str>, Methods>>,
}

/// One service's methods and their handles.
type Methods = HashMap<Box<str>, MethodHandles>;

/// The handles of one `service.method`.
#[derive(Clone)]
struct MethodHandles {
    duration: Histogram,
    /// By outcome; a method has a handful.
    totals: Vec<(Box<str>, Counter)>,
}

impl CallMetrics {
    /// Metrics named `duration` (a histogram, seconds) and `total` (a counter whose outcome
    /// label is named `outcome`).
    pub fn new(duration: &'static str, total: &'static str, outcome: &'static str) -> Self {
        Self {
            duration,
            total,
            outcome,
            services: RwLock::new(HashMap::default()),
        }
    }

    /// Records one call of `service.method` that took `seconds` and ended in `outcome`.
    pub fn record(&self, service: &str, method: &str, outcome: &str, seconds: f64) {
        if crate::installed().is_none() {
            self.histogram(service, method).record(seconds);
            self.counter(service, method, outcome).increment(1);
            return;
        }
        let known = self.services.read().ok().and_then(|services| {
            let handles = services.get(service)?.get(method)?;
            let total = handles.totals.iter().find(|(o, _)| &**o == outcome)?;
            Some((handles.duration.clone(), total.1.clone()))
        });
        let (duration, total) = known.unwrap_or_else(|| self.resolve(service, method, outcome));
        duration.record(seconds);
        total.increment(1);
    }

    /// Looks up and keeps the handles of `service.method` ending in `outcome`.
    fn resolve(&self, service: &str, method: &str, outcome: &str) -> (Histogram, Counter) {
        let counter = self.counter(service, method, outcome);
        let Ok(mut services) = self.services.write() else {
            return (self.histogram(service, method), counter);
        };
        let handles = services
            .entry(service.into())
            .or_default()
            .entry(method.into())
            .or_insert_with(|| MethodHandles {
                duration: self.histogram(service, method),
                totals: Vec::new(),
            });
        if !handles.totals.iter().any(|(o, _)| &**o == outcome) {
            handles.totals.push((outcome.into(), counter.clone()));
        }
        (handles.duration.clone(), counter)
    }

    fn histogram(&self, service: &str, method: &str) -> Histogram {
        let labels = [
            ("service", service.to_owned()),
            ("method", method.to_owned()),
        ];
        metrics::histogram!(self.duration, &labels)
    }

    fn counter(&self, service: &str, method: &str, outcome: &str) -> Counter {
        let labels = [
            ("service", service.to_owned()),
            ("method", method.to_owned()),
            (self.outcome, outcome.to_owned()),
        ];
        metrics::counter!(self.total, &labels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_counted_and_timed_by_service_method_and_outcome() {
        let _ = crate::prometheus();
        let calls = CallMetrics::new(
            "test_call_metrics_seconds",
            "test_call_metrics_total",
            "outcome",
        );
        for (method, outcome) in [("a", "ok"), ("a", "ok"), ("a", "error"), ("b", "ok")] {
            calls.record("svc", method, outcome, 0.002);
        }
        let text = crate::render();
        let line = |needle: &str| {
            text.lines()
                .find(|l| l.starts_with(needle))
                .map(|l| l.rsplit(' ').next().unwrap_or("").to_owned())
        };
        let total = "test_call_metrics_total{service=\"svc\",method=";
        assert_eq!(
            line(&format!("{total}\"a\",outcome=\"ok\"}}")).as_deref(),
            Some("2"),
            "{text}"
        );
        assert_eq!(
            line(&format!("{total}\"a\",outcome=\"error\"}}")).as_deref(),
            Some("1")
        );
        assert_eq!(
            line(&format!("{total}\"b\",outcome=\"ok\"}}")).as_deref(),
            Some("1")
        );
        let count = "test_call_metrics_seconds_count{service=\"svc\",method=";
        assert_eq!(line(&format!("{count}\"a\"}}")).as_deref(), Some("3"));
        assert_eq!(line(&format!("{count}\"b\"}}")).as_deref(), Some("1"));
    }
}
