//! Rate limits per client, end to end (docs/http.md, "Rate limits"): an in-process gateway on
//! a real socket, so the client's address is the connection's peer as in production. A burst
//! is answered with the `RateLimit` headers, the call past it is 429 problem+json with
//! `Retry-After`, the probes are never limited, a per-method limit applies to its methods
//! only, `X-Forwarded-For` counts only from a trusted proxy, and authenticated callers each
//! have their own bucket. The limits refill slowly (one call every 10 s), so no call of a test
//! gets a share back while it runs.

mod common;

use common::{Harness, Kind, assert_problem, unique};
use serde_json::json;
use warren_gateway::{ApiKeys, Auth, GatewayConfig, RateLimits, TrustedProxies};

/// A gateway with `config` and a greeter; returns the greeter's name.
async fn harness(config: GatewayConfig) -> (Harness, String) {
    let mut h = Harness::on(Kind::InProcess, config).await;
    let greeter = unique("greeter");
    h.serve(greeter::service_named(&greeter)).await;
    (h, greeter)
}

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

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// `POST /rpc/{greeter}/hello` with `headers`.
async fn hello(h: &Harness, greeter: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = h
        .http
        .post(format!("{}/rpc/{greeter}/hello", h.base))
        .json(&json!({"name": "Ann"}));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("HTTP request")
}

#[tokio::test]
async fn a_burst_is_answered_then_429_with_retry_after_and_probes_are_never_limited() {
    let config = GatewayConfig {
        rate_limits: limits(Some("0.1/3"), &[]),
        ..GatewayConfig::default()
    };
    let (h, greeter) = harness(config).await;
    for left in [2, 1, 0] {
        let r = hello(&h, &greeter, &[]).await;
        assert_eq!(r.status(), 200);
        assert_eq!(
            header(&r, "ratelimit-policy").as_deref(),
            Some(r#""default";q=3;w=30"#)
        );
        assert_eq!(
            header(&r, "ratelimit"),
            Some(format!(r#""default";r={left};t=10"#))
        );
        assert_eq!(r.json::<String>().await.expect("result"), "Hello, Ann!");
    }
    let r = hello(&h, &greeter, &[]).await;
    let retry_after: u64 = header(&r, "retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in whole seconds");
    assert!((1..=10).contains(&retry_after), "{retry_after}");
    assert_eq!(
        header(&r, "ratelimit"),
        Some(format!(r#""default";r=0;t={retry_after}"#))
    );
    assert_eq!(
        header(&r, "ratelimit-policy").as_deref(),
        Some(r#""default";q=3;w=30"#)
    );
    let body = assert_problem(r, 429, "rate-limited").await;
    assert_eq!(body["service"], greeter.as_str());
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("`default`")),
        "{body}"
    );
    // The probes, the metrics and the documents are never limited, nor carry the headers.
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/services",
    ] {
        for _ in 0..5 {
            let r = h
                .http
                .get(format!("{}{path}", h.base))
                .send()
                .await
                .expect("GET");
            assert!(r.status() != 429, "{path}");
            assert_eq!(header(&r, "ratelimit"), None, "{path}");
        }
    }
    let metrics = h
        .http
        .get(format!("{}/metrics", h.base))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(r#"warren_gateway_rate_limited_total{policy="default"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"warren_gateway_rate_limit_clients{policy="default"}"#),
        "{metrics}"
    );
    // Still limited after all that.
    assert_eq!(hello(&h, &greeter, &[]).await.status(), 429);
}

#[tokio::test]
async fn a_pattern_limit_applies_to_its_methods_only() {
    let greeter = unique("greeter");
    let pattern = format!("{greeter}.hello");
    let mut h = Harness::on(
        Kind::InProcess,
        GatewayConfig {
            rate_limits: limits(None, &[&format!("{pattern}=0.1/1")]),
            ..GatewayConfig::default()
        },
    )
    .await;
    h.serve(greeter::service_named(&greeter)).await;
    let r = hello(&h, &greeter, &[]).await;
    assert_eq!(r.status(), 200);
    let policy = format!(r#""{pattern}";q=1;w=10"#);
    assert_eq!(header(&r, "ratelimit-policy"), Some(policy.clone()));
    let r = hello(&h, &greeter, &[]).await;
    assert_eq!(header(&r, "ratelimit-policy"), Some(policy));
    let body = assert_problem(r, 429, "rate-limited").await;
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains(&pattern)),
        "{body}"
    );
    // Another method matches no limit: never refused, no headers.
    for _ in 0..5 {
        let r = h.post(&greeter, "fib", json!({"n": 3})).await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "ratelimit"), None);
        assert_eq!(header(&r, "ratelimit-policy"), None);
    }
}

#[tokio::test]
async fn x_forwarded_for_counts_only_from_a_trusted_proxy() {
    let first = [("x-forwarded-for", "198.51.100.1")];
    let second = [("x-forwarded-for", "198.51.100.2")];
    // No trusted proxy: the header is the client's say-so, and the peer is the client.
    let (h, greeter) = harness(GatewayConfig {
        rate_limits: limits(Some("0.1/1"), &[]),
        ..GatewayConfig::default()
    })
    .await;
    assert_eq!(hello(&h, &greeter, &first).await.status(), 200);
    assert_eq!(hello(&h, &greeter, &second).await.status(), 429);
    assert_eq!(hello(&h, &greeter, &[]).await.status(), 429);
    // The peer (127.0.0.1) a trusted proxy: each forwarded client has its own bucket.
    let (h, greeter) = harness(GatewayConfig {
        rate_limits: limits(Some("0.1/1"), &[]),
        trusted_proxies: TrustedProxies::parse(&["127.0.0.0/8"]).expect("proxies"),
        ..GatewayConfig::default()
    })
    .await;
    assert_eq!(hello(&h, &greeter, &first).await.status(), 200);
    assert_eq!(hello(&h, &greeter, &second).await.status(), 200);
    assert_eq!(hello(&h, &greeter, &first).await.status(), 429);
    // The rightmost address that is not a trusted proxy's is the client: what a client
    // prepends to the header changes nothing.
    let spoofed = [("x-forwarded-for", "203.0.113.50, 198.51.100.2")];
    assert_eq!(hello(&h, &greeter, &spoofed).await.status(), 429);
    // Without the header, the proxy itself is the client.
    assert_eq!(hello(&h, &greeter, &[]).await.status(), 200);
}

#[tokio::test]
async fn with_authentication_each_user_has_its_own_bucket() {
    const ALICE: &str = "ak-alice-7f3c9e1d2b4a6058";
    const BOB: &str = "ak-bob-0c1d2e3f4a5b6c7d8e";
    let keys = ApiKeys::parse(&format!("alice {ALICE}\nbob {BOB}\n")).expect("keys");
    let (h, greeter) = harness(GatewayConfig {
        rate_limits: limits(Some("0.1/1"), &[]),
        auth: Auth::off().with_api_keys(keys),
        ..GatewayConfig::default()
    })
    .await;
    let alice = [("x-api-key", ALICE)];
    let bob = [("authorization", "Bearer ak-bob-0c1d2e3f4a5b6c7d8e")];
    assert_eq!(hello(&h, &greeter, &alice).await.status(), 200);
    assert_eq!(hello(&h, &greeter, &alice).await.status(), 429);
    // Same address, another user: a bucket of its own.
    let r = hello(&h, &greeter, &bob).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "ratelimit").as_deref(),
        Some(r#""default";r=0;t=10"#)
    );
    assert_eq!(hello(&h, &greeter, &bob).await.status(), 429);
    // Without a credential: 401, checked first, and counted against no one.
    let r = hello(&h, &greeter, &[]).await;
    assert_eq!(r.status(), 401);
    assert_eq!(header(&r, "ratelimit"), None);
}

#[tokio::test]
async fn calls_through_the_router_are_limited_too() {
    // With CORS on, every call goes through the router rather than the fast path.
    let (h, greeter) = harness(GatewayConfig {
        rate_limits: limits(Some("0.1/1"), &[]),
        cors_origins: vec!["https://app.example".to_owned()],
        ..GatewayConfig::default()
    })
    .await;
    let origin = [("origin", "https://app.example")];
    let r = hello(&h, &greeter, &origin).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "ratelimit").as_deref(),
        Some(r#""default";r=0;t=10"#)
    );
    // A browser may read the headers.
    let exposed = header(&r, "access-control-expose-headers").unwrap_or_default();
    assert!(exposed.contains("ratelimit-policy"), "{exposed}");
    let r = hello(&h, &greeter, &origin).await;
    assert!(header(&r, "retry-after").is_some());
    assert_problem(r, 429, "rate-limited").await;
}
