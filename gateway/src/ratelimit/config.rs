//! The rate limits' configuration: [`Rate`] (`RATE/BURST`), [`PatternLimit`]
//! (`PATTERN=RATE/BURST`), [`RateLimits`] (all of them) and [`TrustedProxies`] (whose
//! `X-Forwarded-For` names the client), each parsed from its command-line form with an error
//! that says what is wrong.

use crate::policy;
use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

/// Why a rate limit or a trusted proxy could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateLimitError {
    /// Not of the form `RATE/BURST`.
    #[error("`{0}`: expected RATE/BURST (requests per second / burst), e.g. 10/20")]
    NotRateBurst(String),
    /// The rate is not a positive number.
    #[error(
        "`{0}`: the rate must be a positive number of requests per second (at most 1000000000)"
    )]
    Rate(String),
    /// The burst is not a whole number of at least 1.
    #[error("`{0}`: the burst must be a whole number of requests, at least 1")]
    Burst(String),
    /// Not of the form `PATTERN=RATE/BURST`.
    #[error("`{0}`: expected PATTERN=RATE/BURST, e.g. kv.*=5/10")]
    NotPatternLimit(String),
    /// The pattern is not a `<service>.<method>` pattern.
    #[error("{0}")]
    Pattern(String),
    /// Not an IP address or a CIDR block.
    #[error("`{0}`: expected an IP address or a CIDR block, e.g. 10.0.0.0/8 or fd00::/8")]
    Cidr(String),
}

/// The highest rate: one request a nanosecond, the finest period the limiter keeps.
const MAX_PER_SECOND: f64 = 1e9;

/// A limit: requests per second on average, and how many may come at once (GCRA, the
/// generic cell rate algorithm: a bucket of `burst` requests that refills at `per_second`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    per_second: f64,
    burst: NonZeroU32,
}

impl Rate {
    /// `per_second` requests a second on average, `burst` at once.
    pub fn new(per_second: f64, burst: u32) -> Result<Self, RateLimitError> {
        let shown = || format!("{per_second}/{burst}");
        if !usable_rate(per_second) {
            return Err(RateLimitError::Rate(shown()));
        }
        let burst = NonZeroU32::new(burst).ok_or_else(|| RateLimitError::Burst(shown()))?;
        Ok(Self { per_second, burst })
    }

    /// Requests per second on average.
    pub fn per_second(&self) -> f64 {
        self.per_second
    }

    /// Requests that may come at once.
    pub fn burst(&self) -> u32 {
        self.burst.get()
    }

    /// The time one request's share takes to come back: 1 / rate.
    pub(crate) fn interval(&self) -> Duration {
        // At most 1e9 per second, so at least one nanosecond: never zero.
        Duration::from_secs_f64(1.0 / self.per_second).max(Duration::from_nanos(1))
    }

    /// The seconds an empty bucket takes to fill again (at least 1): the `w` of
    /// `RateLimit-Policy`.
    pub(crate) fn window_secs(&self) -> u64 {
        let seconds = (f64::from(self.burst.get()) / self.per_second).ceil();
        // A float to integer cast saturates; the window is at least a second.
        (seconds as u64).max(1)
    }

    /// The quota governor enforces.
    pub(crate) fn quota(&self) -> governor::Quota {
        governor::Quota::with_period(self.interval())
            .unwrap_or_else(|| governor::Quota::per_second(NonZeroU32::MIN))
            .allow_burst(self.burst)
    }
}

/// Whether `per_second` is a rate the limiter can keep: positive, finite, at most one request
/// a nanosecond (`inf` and `NaN` parse as numbers too).
fn usable_rate(per_second: f64) -> bool {
    per_second.is_finite() && per_second > 0.0 && per_second <= MAX_PER_SECOND
}

impl FromStr for Rate {
    type Err = RateLimitError;

    /// `RATE/BURST`, e.g. `10/20` or `0.5/5`.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let value = value.trim();
        let (rate, burst) = value
            .split_once('/')
            .ok_or_else(|| RateLimitError::NotRateBurst(value.to_owned()))?;
        let per_second: f64 = rate
            .trim()
            .parse()
            .map_err(|_| RateLimitError::Rate(value.to_owned()))?;
        if !usable_rate(per_second) {
            return Err(RateLimitError::Rate(value.to_owned()));
        }
        let burst = burst
            .trim()
            .parse::<u32>()
            .ok()
            .and_then(NonZeroU32::new)
            .ok_or_else(|| RateLimitError::Burst(value.to_owned()))?;
        Ok(Self { per_second, burst })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.per_second, self.burst)
    }
}

/// A limit for the calls whose `service.method` matches a pattern (the `--expose` syntax:
/// `kv.*`, `*.get`).
#[derive(Debug, Clone, PartialEq)]
pub struct PatternLimit {
    pattern: String,
    service: String,
    method: String,
    rate: Rate,
}

impl PatternLimit {
    /// The limit `rate` for calls matching `pattern`.
    pub fn new(pattern: &str, rate: Rate) -> Result<Self, RateLimitError> {
        let (service, method) = policy::parse_pattern(pattern).map_err(RateLimitError::Pattern)?;
        Ok(Self {
            pattern: format!("{service}.{method}"),
            service,
            method,
            rate,
        })
    }

    /// The pattern, as given (trimmed).
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The limit.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Whether `service.method` matches the pattern.
    pub(crate) fn matches(&self, service: &str, method: &str) -> bool {
        policy::glob(self.service.as_bytes(), service.as_bytes())
            && policy::glob(self.method.as_bytes(), method.as_bytes())
    }
}

impl FromStr for PatternLimit {
    type Err = RateLimitError;

    /// `PATTERN=RATE/BURST`, e.g. `kv.*=5/10`.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let (pattern, rate) = value
            .trim()
            .split_once('=')
            .ok_or_else(|| RateLimitError::NotPatternLimit(value.trim().to_owned()))?;
        Self::new(pattern, rate.parse()?)
    }
}

/// The gateway's rate limits, per client (docs/http.md, "Rate limits"): off by default.
///
/// A call is checked against the first pattern limit its `service.method` matches, if any,
/// and against the global limit, if set: each is a bucket of its own per client, and the call
/// passes only when both have room.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimits {
    /// The limit every call counts against, per client.
    pub global: Option<Rate>,
    /// Limits for some methods, per client; the first whose pattern matches applies.
    pub patterns: Vec<PatternLimit>,
    /// The most clients each limit tracks one by one; new clients beyond it share one bucket
    /// until the ones that went quiet are dropped (see `RateLimiter`).
    pub max_clients: usize,
}

impl RateLimits {
    /// The default number of clients each limit tracks one by one.
    pub const DEFAULT_MAX_CLIENTS: usize = 100_000;

    /// No limit (the default).
    pub fn off() -> Self {
        Self {
            global: None,
            patterns: Vec::new(),
            max_clients: Self::DEFAULT_MAX_CLIENTS,
        }
    }

    /// Whether any limit is set.
    pub fn is_on(&self) -> bool {
        self.global.is_some() || !self.patterns.is_empty()
    }
}

impl Default for RateLimits {
    fn default() -> Self {
        Self::off()
    }
}

/// The proxies whose `X-Forwarded-For` is believed: IP addresses and CIDR blocks. None by
/// default: the client is the connection's peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    blocks: Vec<Cidr>,
}

impl TrustedProxies {
    /// Parses addresses and CIDR blocks such as `10.0.0.0/8`, `192.168.1.7`, `fd00::/8`.
    pub fn parse<S: AsRef<str>>(blocks: &[S]) -> Result<Self, RateLimitError> {
        let blocks = blocks
            .iter()
            .map(|b| b.as_ref().trim())
            .filter(|b| !b.is_empty())
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        Ok(Self { blocks })
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Whether `ip` is a trusted proxy's address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.blocks.iter().any(|block| block.contains(ip))
    }
}

/// An IP network: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = RateLimitError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let error = || RateLimitError::Cidr(value.to_owned());
        let (address, prefix) = match value.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (value, None),
        };
        // An IPv4-mapped IPv6 block is matched as the IPv4 block it stands for.
        let parsed: IpAddr = address.parse().map_err(|_| error())?;
        let canonical = parsed.to_canonical();
        let bits = if canonical.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(prefix) => {
                let prefix: u8 = prefix.parse().map_err(|_| error())?;
                let mapped = parsed.is_ipv6() && canonical.is_ipv4();
                // `::ffff:10.0.0.0/104` is `10.0.0.0/8`.
                let prefix = if mapped {
                    prefix.checked_sub(96).ok_or_else(error)?
                } else {
                    prefix
                };
                if prefix > bits {
                    return Err(error());
                }
                prefix
            }
        };
        Ok(Self {
            network: canonical,
            prefix,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_and_bad_ones_say_why() {
        let rate: Rate = "10/20".parse().expect("rate");
        assert_eq!((rate.per_second(), rate.burst()), (10.0, 20));
        assert_eq!(rate.window_secs(), 2);
        let slow: Rate = " 0.5 / 5 ".parse().expect("fractional rate");
        assert_eq!(slow.interval(), Duration::from_secs(2));
        assert_eq!(slow.window_secs(), 10);
        assert_eq!("100/100".parse::<Rate>().map(|r| r.window_secs()), Ok(1));
        for (value, error) in [
            ("10/0", RateLimitError::Burst("10/0".into())),
            ("10/-1", RateLimitError::Burst("10/-1".into())),
            ("10/1.5", RateLimitError::Burst("10/1.5".into())),
            ("0/5", RateLimitError::Rate("0/5".into())),
            ("-1/5", RateLimitError::Rate("-1/5".into())),
            ("inf/5", RateLimitError::Rate("inf/5".into())),
            ("NaN/5", RateLimitError::Rate("NaN/5".into())),
            ("2e9/5", RateLimitError::Rate("2e9/5".into())),
            ("abc", RateLimitError::NotRateBurst("abc".into())),
            ("10", RateLimitError::NotRateBurst("10".into())),
            ("abc/5", RateLimitError::Rate("abc/5".into())),
        ] {
            assert_eq!(value.parse::<Rate>(), Err(error), "{value}");
        }
        let message = "10/0".parse::<Rate>().map_err(|e| e.to_string());
        assert_eq!(
            message,
            Err("`10/0`: the burst must be a whole number of requests, at least 1".into())
        );
        assert!(Rate::new(0.0, 1).is_err());
        assert!(Rate::new(1.0, 0).is_err());
    }

    #[test]
    fn pattern_limits_use_the_exposure_syntax() {
        let limit: PatternLimit = "kv.*=5/10".parse().expect("pattern limit");
        assert_eq!(limit.pattern(), "kv.*");
        assert_eq!(limit.rate().burst(), 10);
        assert!(limit.matches("kv", "get"));
        assert!(!limit.matches("kvx", "get"));
        let get: PatternLimit = "*.get=1/1".parse().expect("pattern limit");
        assert!(get.matches("library", "get"));
        assert!(!get.matches("library", "get_all"));
        assert!(matches!(
            "kv.*".parse::<PatternLimit>(),
            Err(RateLimitError::NotPatternLimit(_))
        ));
        assert!(matches!(
            "kv=5/10".parse::<PatternLimit>(),
            Err(RateLimitError::Pattern(_))
        ));
        assert!(matches!(
            "kv.*=5/0".parse::<PatternLimit>(),
            Err(RateLimitError::Burst(_))
        ));
    }

    #[test]
    fn trusted_proxies_are_addresses_and_blocks() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let trusted = TrustedProxies::parse(&["10.0.0.0/8", "192.168.1.7", "fd00::/8", " "])
            .expect("proxies");
        assert!(trusted.contains(ip("10.1.2.3")));
        assert!(trusted.contains(ip("::ffff:10.1.2.3")), "IPv4-mapped");
        assert!(!trusted.contains(ip("11.0.0.1")));
        assert!(trusted.contains(ip("192.168.1.7")));
        assert!(!trusted.contains(ip("192.168.1.8")));
        assert!(trusted.contains(ip("fd12::1")));
        assert!(!trusted.contains(ip("fe80::1")));
        let all = TrustedProxies::parse(&["0.0.0.0/0"]).expect("everything");
        assert!(all.contains(ip("8.8.8.8")));
        assert!(
            !all.contains(ip("::1")),
            "an IPv4 block holds no IPv6 address"
        );
        let mapped = TrustedProxies::parse(&["::ffff:10.0.0.0/104"]).expect("mapped");
        assert!(mapped.contains(ip("10.9.9.9")));
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "proxy",
            "10.0.0.0/x",
            "::ffff:1.2.3.4/8",
        ] {
            assert_eq!(
                TrustedProxies::parse(&[bad]),
                Err(RateLimitError::Cidr(bad.into())),
                "{bad}"
            );
        }
        assert!(TrustedProxies::default().is_empty());
    }
}
