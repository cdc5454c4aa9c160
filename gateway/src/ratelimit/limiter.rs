//! [`RateLimiter`]: the configured limits as governor GCRA limiters, one bucket per client per
//! limit, and what a check answers: a [`RateState`] for the response's headers, or [`Limited`].

use super::store::CappedStore;
use super::{ClientKey, PatternLimit, Rate, RateLimits};
use crate::error::GatewayError;
use crate::headers::{RATELIMIT, RATELIMIT_POLICY};
use axum::http::{HeaderMap, HeaderValue};
use governor::clock::{Clock, MonotonicClock, Reference};
use governor::middleware::StateInformationMiddleware;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// The least time between two sweeps that a full store asks for: a flood of new clients makes
/// every check ask, and a sweep walks every client.
const SWEEP_ON_OVERFLOW_AT_MOST_EVERY: Duration = Duration::from_secs(1);

/// How often the background task drops the clients whose buckets are full again and gives
/// the memory back.
pub(crate) const SWEEP_EVERY: Duration = Duration::from_secs(10);

type Governor<C> = governor::RateLimiter<ClientKey, CappedStore, C, StateInformationMiddleware>;

/// One limit: governor's limiter and what the headers and metrics say of it.
struct Bucket<C: Clock> {
    /// The policy's name in the headers: `default` for the global limit, else the pattern.
    name: Box<str>,
    /// The calls it applies to; `None` for the global limit (every call).
    pattern: Option<PatternLimit>,
    rate: Rate,
    governor: Governor<C>,
    /// Seconds until a request's share of the bucket comes back (the `t` of a success).
    refill_secs: u64,
    /// Set by the store when a new client had to share the overflow bucket.
    overflowed: Arc<AtomicBool>,
    /// `warren_gateway_rate_limited_total{policy}`.
    refused: metrics::Counter,
}

impl<C: Clock + Clone> Bucket<C> {
    fn new(pattern: Option<PatternLimit>, rate: Rate, max_clients: usize, clock: &C) -> Self {
        let name = pattern.as_ref().map_or("default", PatternLimit::pattern);
        let overflowed = Arc::new(AtomicBool::new(false));
        let store = CappedStore::new(max_clients, overflowed.clone());
        let refused =
            metrics::counter!("warren_gateway_rate_limited_total", "policy" => name.to_owned());
        // Registered at 0, so the series exists before the first refusal.
        refused.increment(0);
        Self {
            name: name.into(),
            governor: governor::RateLimiter::new(rate.quota(), store, clock.clone()),
            refill_secs: ceil_secs(rate.interval()).max(1),
            pattern,
            rate,
            overflowed,
            refused,
        }
    }

    /// `"name";q=BURST;w=WINDOW`: the bucket holds BURST requests and an empty one fills again
    /// in WINDOW seconds.
    fn policy_item(&self) -> String {
        let (burst, window) = (self.rate.burst(), self.rate.window_secs());
        format!("\"{}\";q={burst};w={window}", self.name)
    }
}

/// The gateway's rate limits (see [`RateLimits`] for how a call is checked), with memory
/// bounded per limit by [`RateLimits::max_clients`] (see `super::store`).
pub(crate) struct RateLimiter<C: Clock = MonotonicClock> {
    global: Option<Bucket<C>>,
    patterns: Vec<Bucket<C>>,
    /// `RateLimit-Policy` of a call matching no pattern (`[0]`) or pattern `i` (`[i + 1]`).
    policies: Vec<Option<HeaderValue>>,
    clock: C,
    start: C::Instant,
    /// When the last sweep asked for by an overflow ran, ns after `start`.
    last_sweep: AtomicU64,
}

impl RateLimiter {
    /// The limiter of `limits`, on the monotonic clock.
    pub(crate) fn new(limits: &RateLimits) -> Self {
        Self::with_clock(limits, MonotonicClock)
    }
}

impl<C: Clock + Clone> RateLimiter<C> {
    /// The limiter of `limits`, on `clock` (tests advance a fake one).
    pub(crate) fn with_clock(limits: &RateLimits, clock: C) -> Self {
        let max = limits.max_clients;
        let global = limits
            .global
            .map(|rate| Bucket::new(None, rate, max, &clock));
        let patterns: Vec<Bucket<C>> = limits
            .patterns
            .iter()
            .map(|p| Bucket::new(Some(p.clone()), p.rate(), max, &clock))
            .collect();
        // The pattern's policy first, then the global one: the order they are checked in.
        let global_item = global.as_ref().map(Bucket::policy_item);
        let header = |items: &[Option<String>]| {
            let items: Vec<&str> = items.iter().flatten().map(String::as_str).collect();
            (!items.is_empty())
                .then(|| HeaderValue::from_str(&items.join(", ")).ok())
                .flatten()
        };
        let mut policies = vec![header(std::slice::from_ref(&global_item))];
        for bucket in &patterns {
            policies.push(header(&[Some(bucket.policy_item()), global_item.clone()]));
        }
        let start = clock.now();
        Self {
            global,
            patterns,
            policies,
            clock,
            start,
            last_sweep: AtomicU64::new(0),
        }
    }

    /// Whether any limit is set (else every check answers `Ok(None)` at once).
    pub(crate) fn is_on(&self) -> bool {
        self.global.is_some() || !self.patterns.is_empty()
    }

    /// Counts a call of `service.method` by `client` against its limits: the first pattern
    /// limit that matches, then the global limit (a call its pattern refuses leaves the global
    /// bucket alone; one the global limit refuses has used its share of the pattern's).
    ///
    /// `Ok(None)` when no limit applies to the call; `Ok(Some(state))` when it may go on, the
    /// state being what its response's headers tell; [`Limited`] when it must be refused.
    pub(crate) fn check(
        &self,
        client: &ClientKey,
        service: &str,
        method: &str,
    ) -> Result<Option<RateState>, Limited> {
        let matched = self.patterns.iter().position(|b| {
            b.pattern
                .as_ref()
                .is_some_and(|p| p.matches(service, method))
        });
        let Some(Some(policy)) = self.policies.get(matched.map_or(0, |i| i + 1)) else {
            return Ok(None);
        };
        let buckets = matched
            .map(|i| &self.patterns[i])
            .into_iter()
            .chain(&self.global);
        let mut remaining = String::with_capacity(40);
        for bucket in buckets {
            let decision = bucket.governor.check_key(client);
            self.sweep_if_overflowed(bucket);
            if !remaining.is_empty() {
                remaining.push_str(", ");
            }
            match decision {
                Ok(snapshot) => {
                    let left = snapshot.remaining_burst_capacity();
                    let _ = write!(
                        remaining,
                        "\"{}\";r={left};t={}",
                        bucket.name, bucket.refill_secs
                    );
                }
                Err(not_until) => {
                    let wait = not_until.wait_time_from(bucket.governor.clock().now());
                    let retry_after_secs =
                        u32::try_from(ceil_secs(wait).max(1)).unwrap_or(u32::MAX);
                    let _ = write!(remaining, "\"{}\";r=0;t={retry_after_secs}", bucket.name);
                    bucket.refused.increment(1);
                    return Err(Limited {
                        state: RateState::new(policy, &remaining),
                        policy: bucket.name.to_string(),
                        retry_after_secs,
                    });
                }
            }
        }
        Ok(Some(RateState::new(policy, &remaining)))
    }

    /// [`Self::check`] for a handler: the headers go to `rate` whether the call may go on or
    /// not, and the error to answer with comes back when it may not.
    pub(crate) fn count(
        &self,
        client: &ClientKey,
        service: &str,
        method: &str,
        rate: &mut Option<RateState>,
    ) -> Result<(), GatewayError> {
        match self.check(client, service, method) {
            Ok(state) => {
                *rate = state;
                Ok(())
            }
            Err(limited) => {
                let (error, state) = limited.into_error();
                *rate = Some(state);
                Err(error)
            }
        }
    }

    /// Drops, in every limit, the clients whose buckets are full again (their state is the same
    /// as a new client's, so nothing is lost), and with `give_memory_back` shrinks the maps.
    pub(crate) fn sweep(&self, give_memory_back: bool) {
        for bucket in self.global.iter().chain(&self.patterns) {
            bucket.governor.retain_recent();
            if give_memory_back {
                bucket.governor.shrink_to_fit();
            }
            bucket.overflowed.store(false, Ordering::Relaxed);
        }
    }

    /// Sweeps when `bucket`'s store had to send a new client to the overflow bucket, at most
    /// once a second: the clients gone quiet make room for the new ones.
    fn sweep_if_overflowed(&self, bucket: &Bucket<C>) {
        // A load first: the flag is read by every check and seldom set.
        if !bucket.overflowed.load(Ordering::Relaxed) {
            return;
        }
        let now = nanos(self.clock.now().duration_since(self.start));
        let last = self.last_sweep.load(Ordering::Relaxed);
        let due = now.saturating_sub(last) >= nanos(SWEEP_ON_OVERFLOW_AT_MOST_EVERY.into());
        // One check sweeps; the others racing it go on.
        if due
            && self
                .last_sweep
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.sweep(false);
        }
    }

    /// How many clients each limit tracks one by one, by policy name (for `/metrics`).
    pub(crate) fn tracked_clients(&self) -> Vec<(&str, usize)> {
        self.global
            .iter()
            .chain(&self.patterns)
            .map(|b| (&*b.name, b.governor.len()))
            .collect()
    }
}

impl<C> RateLimiter<C>
where
    C: Clock + Clone + Send + Sync + 'static,
    C::Instant: Send + Sync,
{
    /// Sweeps (giving memory back) every `every` from a task of the current tokio runtime,
    /// until the limiter is dropped. Nothing to do when no limit is set.
    pub(crate) fn sweep_in_background(self: &Arc<Self>, every: Duration) {
        if !self.is_on() {
            return;
        }
        let limiter: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let Some(limiter) = limiter.upgrade() else {
                    return;
                };
                limiter.sweep(true);
            }
        });
    }
}

/// What a call's limits said, for its response: `RateLimit-Policy` (the limits that apply)
/// and `RateLimit` (what is left of each it was counted against), as
/// draft-ietf-httpapi-ratelimit-headers defines them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RateState {
    policy: HeaderValue,
    remaining: HeaderValue,
}

impl RateState {
    fn new(policy: &HeaderValue, remaining: &str) -> Self {
        Self {
            policy: policy.clone(),
            // Names are patterns (letters, digits, `_-*.`) and numbers: always a valid value.
            remaining: HeaderValue::from_str(remaining)
                .unwrap_or_else(|_| HeaderValue::from_static("")),
        }
    }

    /// Adds `RateLimit-Policy` and `RateLimit` to a response's headers.
    pub(crate) fn write_to(&self, headers: &mut HeaderMap) {
        headers.insert(RATELIMIT_POLICY, self.policy.clone());
        headers.insert(RATELIMIT, self.remaining.clone());
    }
}

/// A call refused by a rate limit: 429 with `Retry-After` and the limits' headers.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Limited {
    /// The headers of the refusal (the refusing policy with `r=0`).
    pub(crate) state: RateState,
    /// The name of the limit that refused the call.
    pub(crate) policy: String,
    /// Whole seconds until the call would be let through, at least 1.
    pub(crate) retry_after_secs: u32,
}

impl Limited {
    /// The error to answer with, and the headers to add to its response.
    pub(crate) fn into_error(self) -> (GatewayError, RateState) {
        let error = GatewayError::RateLimited {
            policy: self.policy,
            retry_after_secs: self.retry_after_secs,
        };
        (error, self.state)
    }
}

/// A duration in whole seconds, rounded up.
fn ceil_secs(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// A governor duration in nanoseconds.
fn nanos(duration: governor::nanos::Nanos) -> u64 {
    duration.as_u64()
}
