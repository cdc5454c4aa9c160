//! The headers of the gateway's HTTP contract, named once.

use axum::http::HeaderName;

/// `X-Request-Id`: kept when the client sends a usable one, made otherwise; echoed back and
/// used as the root of the call id stack.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// `X-Timeout-Ms`: this call's deadline in milliseconds, capped by the configured maximum.
pub const TIMEOUT_MS: HeaderName = HeaderName::from_static("x-timeout-ms");

/// `traceparent` (W3C trace context): the caller's trace, joined by the call.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers): the rate limits a call counts
/// against, e.g. `"default";q=100;w=1`.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// `RateLimit` (draft-ietf-httpapi-ratelimit-headers): what is left of each, e.g.
/// `"default";r=42;t=1`.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
