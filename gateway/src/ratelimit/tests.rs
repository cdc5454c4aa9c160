//! The limiter on a clock the tests move: bursts, refusals, refills, patterns, and memory
//! under a flood of made-up clients.

use super::limiter::Limited;
use super::*;
use crate::error::{ErrorMap, GatewayError};
use axum::http::HeaderMap;
use governor::clock::FakeRelativeClock;
use std::time::Duration;

fn limits(global: Option<&str>, patterns: &[&str]) -> RateLimits {
    RateLimits {
        global: global.map(|g| g.parse().expect("rate")),
        patterns: patterns
            .iter()
            .map(|p| p.parse().expect("pattern limit"))
            .collect(),
        ..RateLimits::off()
    }
}

fn client(n: u32) -> ClientKey {
    ClientKey::Ip(std::net::Ipv4Addr::from(n).into())
}

/// The `RateLimit-Policy` and `RateLimit` a state writes.
fn headers(state: &RateState) -> (String, String) {
    let mut headers = HeaderMap::new();
    state.write_to(&mut headers);
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    (text("ratelimit-policy"), text("ratelimit"))
}

fn allowed(result: Result<Option<RateState>, Limited>) -> (String, String) {
    match result {
        Ok(Some(state)) => headers(&state),
        other => panic!("expected the call to be let through, got {other:?}"),
    }
}

#[test]
fn a_burst_passes_then_429_until_the_bucket_refills() {
    let clock = FakeRelativeClock::default();
    let limiter = RateLimiter::with_clock(&limits(Some("1/3"), &[]), clock.clone());
    let alice = client(1);
    for left in [2, 1, 0] {
        let (policy, remaining) = allowed(limiter.check(&alice, "kv", "get"));
        assert_eq!(policy, r#""default";q=3;w=3"#);
        assert_eq!(remaining, format!(r#""default";r={left};t=1"#));
    }
    let limited = limiter
        .check(&alice, "kv", "get")
        .expect_err("over the limit");
    assert_eq!(limited.retry_after_secs, 1);
    assert_eq!(limited.policy, "default");
    assert_eq!(
        headers(&limited.state),
        (r#""default";q=3;w=3"#.into(), r#""default";r=0;t=1"#.into())
    );
    let (error, _) = limited.into_error();
    let problem = error.to_problem(&ErrorMap::default(), &Default::default());
    assert_eq!(problem.status, 429);
    assert_eq!(problem.kind, "urn:warren:problem:rate-limited");
    assert_eq!(problem.retry_after, Some(1));
    // Another client has a bucket of its own.
    allowed(limiter.check(&client(2), "kv", "get"));
    // A refusal used nothing: half a second on, still refused, and Retry-After rounds up.
    clock.advance(Duration::from_millis(500));
    let limited = limiter.check(&alice, "kv", "get").expect_err("still over");
    assert_eq!(limited.retry_after_secs, 1);
    clock.advance(Duration::from_millis(500));
    assert_eq!(
        allowed(limiter.check(&alice, "kv", "get")).1,
        r#""default";r=0;t=1"#
    );
    // Three seconds refill the whole burst.
    clock.advance(Duration::from_secs(3));
    assert_eq!(
        allowed(limiter.check(&alice, "kv", "get")).1,
        r#""default";r=2;t=1"#
    );
}

#[test]
fn slow_rates_wait_longer_than_a_second() {
    let clock = FakeRelativeClock::default();
    let limiter = RateLimiter::with_clock(&limits(Some("0.1/1"), &[]), clock.clone());
    let (policy, remaining) = allowed(limiter.check(&client(1), "a", "b"));
    assert_eq!(
        (policy.as_str(), remaining.as_str()),
        (r#""default";q=1;w=10"#, r#""default";r=0;t=10"#)
    );
    clock.advance(Duration::from_millis(2500));
    let limited = limiter.check(&client(1), "a", "b").expect_err("over");
    assert_eq!(limited.retry_after_secs, 8, "7.5 s rounded up");
}

#[test]
fn the_first_matching_pattern_and_the_global_limit_both_count() {
    let clock = FakeRelativeClock::default();
    let limiter =
        RateLimiter::with_clock(&limits(Some("100/100"), &["kv.get=5/5", "kv.*=1/1"]), clock);
    let alice = client(1);
    let (policy, remaining) = allowed(limiter.check(&alice, "kv", "put"));
    assert_eq!(policy, r#""kv.*";q=1;w=1, "default";q=100;w=1"#);
    assert_eq!(remaining, r#""kv.*";r=0;t=1, "default";r=99;t=1"#);
    let limited = limiter
        .check(&alice, "kv", "delete")
        .expect_err("kv.* is spent");
    assert_eq!(limited.policy, "kv.*");
    assert_eq!(headers(&limited.state).1, r#""kv.*";r=0;t=1"#);
    // `kv.get` matches the first pattern, with a bucket of its own.
    let (policy, remaining) = allowed(limiter.check(&alice, "kv", "get"));
    assert_eq!(policy, r#""kv.get";q=5;w=1, "default";q=100;w=1"#);
    // The refused call left the global bucket alone: 99 before it, 98 after `kv.get`.
    assert_eq!(remaining, r#""kv.get";r=4;t=1, "default";r=98;t=1"#);
    // A call no pattern matches counts against the global limit alone.
    assert_eq!(
        allowed(limiter.check(&alice, "greeter", "hello")),
        (
            r#""default";q=100;w=1"#.into(),
            r#""default";r=97;t=1"#.into()
        )
    );
}

#[test]
fn without_a_global_limit_only_matching_calls_are_limited() {
    let limiter =
        RateLimiter::with_clock(&limits(None, &["*.slow=1/1"]), FakeRelativeClock::default());
    assert!(limiter.is_on());
    for _ in 0..10 {
        assert_eq!(limiter.check(&client(1), "greeter", "hello"), Ok(None));
    }
    allowed(limiter.check(&client(1), "greeter", "slow"));
    let limited = limiter
        .check(&client(1), "greeter", "slow")
        .expect_err("over");
    assert_eq!(
        limited.into_error().0,
        GatewayError::RateLimited {
            policy: "*.slow".into(),
            retry_after_secs: 1
        }
    );
    let off = RateLimiter::with_clock(&RateLimits::off(), FakeRelativeClock::default());
    assert!(!off.is_on());
    assert_eq!(off.check(&client(1), "kv", "get"), Ok(None));
}

#[test]
fn a_million_made_up_clients_stay_within_the_cap() {
    const CAP: usize = 10_000;
    let clock = FakeRelativeClock::default();
    let config = RateLimits {
        max_clients: CAP,
        ..limits(Some("1/2"), &["kv.*=1/1"])
    };
    let limiter = RateLimiter::with_clock(&config, clock.clone());
    let tracked = |limiter: &RateLimiter<FakeRelativeClock>| -> Vec<usize> {
        limiter
            .tracked_clients()
            .into_iter()
            .map(|(_, n)| n)
            .collect()
    };
    // A client known before the flood keeps its own bucket through it.
    let alice = ClientKey::User("alice".into());
    allowed(limiter.check(&alice, "greeter", "hello"));
    for n in 0..1_000_000u32 {
        let _ = limiter.check(&client(n), "kv", "get");
        if n % 100_000 == 0 {
            assert!(
                tracked(&limiter).iter().all(|&len| len <= CAP),
                "{n}: {:?}",
                tracked(&limiter)
            );
        }
    }
    assert!(
        tracked(&limiter).iter().all(|&len| len <= CAP),
        "{:?}",
        tracked(&limiter)
    );
    assert!(
        tracked(&limiter).iter().all(|&len| len >= CAP / 2),
        "the cap is used"
    );
    // Alice still has one request of her burst of two: hers, not the flood's.
    assert_eq!(
        allowed(limiter.check(&alice, "greeter", "hello")).1,
        r#""default";r=0;t=1"#
    );
    // A new client shares the overflow bucket the flood emptied.
    let limited = limiter.check(&client(2_000_000), "kv", "get");
    assert_eq!(limited.map_err(|l| l.policy), Err("kv.*".to_owned()));
    // Once the flood's buckets are full again, a sweep drops them all.
    clock.advance(Duration::from_secs(5));
    limiter.sweep(true);
    assert_eq!(tracked(&limiter), vec![0, 0]);
    allowed(limiter.check(&client(2_000_000), "greeter", "hello"));
}

#[test]
fn a_full_store_sweeps_the_quiet_clients_to_make_room() {
    let clock = FakeRelativeClock::default();
    let config = RateLimits {
        max_clients: 100,
        ..limits(Some("1/1"), &[])
    };
    let limiter = RateLimiter::with_clock(&config, clock.clone());
    // Ten times the cap: every shard is full.
    for n in 0..1000 {
        let _ = limiter.check(&client(n), "a", "b");
    }
    let full = limiter.tracked_clients()[0].1;
    clock.advance(Duration::from_secs(2));
    assert!(full <= 100);
    // The first new client finds its shard full and shares the overflow bucket, and has the
    // quiet clients swept; the next ones find room.
    let _ = limiter.check(&client(5000), "a", "b");
    assert_eq!(limiter.tracked_clients()[0].1, 0, "swept");
    for n in 5001..5010 {
        allowed(limiter.check(&client(n), "a", "b"));
    }
}
