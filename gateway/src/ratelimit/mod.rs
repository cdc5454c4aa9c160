//! Rate limits per client on `/rpc/...` (docs/http.md, "Rate limits"): `--rate-limit
//! RATE/BURST` for every call, `--rate-limit-for PATTERN=RATE/BURST` for some methods.
//!
//! - **Algorithm**: governor's GCRA, one bucket per client per limit: a bucket holds BURST
//!   requests and refills at RATE a second. A call is counted against the first pattern limit
//!   its `service.method` matches, then against the global limit; it goes on only when both
//!   let it (see [`RateLimits`]).
//! - **The client** ([`ClientKey::of`]): the authenticated user when authentication is on,
//!   else the peer's IP address, or the one `X-Forwarded-For` names when the peer is a
//!   `--trusted-proxy`.
//! - **Where**: `rpc::check`, on both paths a call takes (the router's and the fast one),
//!   after the credentials and the names, before the in-flight limit. Probes and documents are
//!   never limited; other routes call [`RateLimiter::check`] themselves.
//! - **Memory**: bounded per limit by [`RateLimits::max_clients`], whatever the number of
//!   clients (`store`); clients whose buckets are full again are dropped by a sweep every
//!   10 s, and as soon as a store is full (at most once a second).
//! - **Per replica**: each gateway process counts on its own; N replicas behind a load
//!   balancer let a client through up to N times the limit.

mod client;
mod config;
mod limiter;
mod store;
#[cfg(test)]
mod tests;

pub use client::ClientKey;
pub use config::{PatternLimit, Rate, RateLimitError, RateLimits, TrustedProxies};
pub(crate) use limiter::{RateLimiter, RateState, SWEEP_EVERY};
