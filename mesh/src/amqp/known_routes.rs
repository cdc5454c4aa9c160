//! Which services' requests go out without a publisher confirm.
//!
//! A confirm per request costs the broker a good part of its rate (docs/performance.md), and
//! what it tells a caller is mostly known already: once the broker has confirmed a `mandatory`
//! request to a service without returning it, that service's queue exists, and being durable
//! it stays. So a client confirms a service's requests until one is confirmed routed, then
//! publishes the rest on a channel without confirms (and without `mandatory`: lapin surfaces
//! `basic.return` only through a confirm, so returns on that channel would pile up unseen),
//! and confirms one again every [`RECONFIRM`]: if the queue was deleted since, that request
//! comes back returned, the service is forgotten, and its calls are `UnknownService` again
//! within that time (those sent unconfirmed meanwhile wait for their deadline).
//!
//! Only where the broker would never refuse a routed request: with quorum queues it nacks
//! requests while a queue has no leader, and those must be published again (see
//! [`super::publish`]), so under `--queue-type quorum` every request is confirmed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often a known service's requests are confirmed again.
pub(crate) const RECONFIRM: Duration = Duration::from_secs(1);

/// The services whose queue the broker confirmed a request was routed to, and when.
#[derive(Default)]
pub(crate) struct KnownRoutes {
    confirmed: Mutex<HashMap<Box<str>, Instant>>,
}

impl KnownRoutes {
    /// Whether a request to `service` is to be confirmed now. A service whose last confirm is
    /// older than [`RECONFIRM`] is confirmed once more, by this request alone: the time is
    /// taken at once, so the requests after it go out unconfirmed meanwhile.
    pub(crate) fn needs_confirm(&self, service: &str) -> bool {
        let Ok(mut confirmed) = self.confirmed.lock() else {
            return true;
        };
        let now = Instant::now();
        match confirmed.get_mut(service) {
            Some(at) if now.duration_since(*at) < RECONFIRM => false,
            Some(at) => {
                *at = now;
                true
            }
            None => true,
        }
    }

    /// The broker confirmed a request to `service` routed.
    pub(crate) fn routed(&self, service: &str) {
        if let Ok(mut confirmed) = self.confirmed.lock() {
            let now = Instant::now();
            match confirmed.get_mut(service) {
                Some(at) => *at = now,
                None => {
                    confirmed.insert(service.into(), now);
                }
            }
        }
    }

    /// The broker returned a request to `service`: no queue is bound for it.
    pub(crate) fn returned(&self, service: &str) {
        if let Ok(mut confirmed) = self.confirmed.lock() {
            confirmed.remove(service);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirmed_until_routed_then_once_a_period() {
        let routes = KnownRoutes::default();
        assert!(routes.needs_confirm("a"));
        assert!(routes.needs_confirm("a"), "still unknown");
        routes.routed("a");
        assert!(!routes.needs_confirm("a"));
        assert!(routes.needs_confirm("b"));
        routes.returned("a");
        assert!(routes.needs_confirm("a"));
    }

    #[test]
    fn a_stale_service_is_confirmed_by_one_request() {
        let routes = KnownRoutes::default();
        routes.routed("a");
        if let Ok(mut confirmed) = routes.confirmed.lock()
            && let Some(at) = confirmed.get_mut("a")
            && let Some(earlier) = at.checked_sub(RECONFIRM * 2)
        {
            *at = earlier;
        }
        assert!(routes.needs_confirm("a"));
        assert!(!routes.needs_confirm("a"), "the next ones go unconfirmed");
    }
}
