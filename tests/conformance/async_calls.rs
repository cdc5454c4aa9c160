//! Asynchronous calls: `Prefer: respond-async` answers 202 with a `Location`, and
//! `GET /calls/{id}` answers 202 while the call runs, then exactly what the synchronous call
//! answers (docs/http.md, "Asynchronous calls").

use crate::common::{Harness, Kind, assert_problem, collect_call, unique, wait_until};
use serde_json::{Value, json};
use std::time::Duration;
use warren_gateway::GatewayConfig;

/// Posts `args` to `service.method` asking for an asynchronous answer, with `headers`.
pub async fn post_async(
    h: &Harness,
    service: &str,
    method: &str,
    args: Value,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = h
        .http
        .post(format!("{}/rpc/{service}/{method}", h.base))
        .header("prefer", "respond-async")
        .json(&args);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("send")
}

/// The `Location` of a 202.
pub async fn accepted(response: reqwest::Response) -> String {
    assert_eq!(response.status(), 202, "{:?}", response.text().await);
    assert_eq!(response.headers()["preference-applied"], "respond-async");
    let location = response.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(location.starts_with("/calls/"), "{location}");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["location"], location.as_str());
    location
}

/// GETs `location` on `h` until it is no longer 202; returns that answer.
async fn outcome(h: &Harness, location: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    collect_call(&h.http, &h.base, location, headers).await
}

pub async fn an_accepted_call_answers_as_the_synchronous_one_would(kind: Kind) {
    let mut h = Harness::on(kind, GatewayConfig::default()).await;
    let greeter = unique("greeter");
    h.serve(greeter::service_named(&greeter)).await;

    let location = accepted(post_async(&h, &greeter, "slow", json!({"ms": 800}), &[]).await).await;
    // Running: 202, again and again.
    let r = h
        .http
        .get(format!("{}{location}", h.base))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 202);
    let r = outcome(&h, &location, &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.text().await.expect("body"), "800");
    // Served again on every GET until it expires.
    let r = h
        .http
        .get(format!("{}{location}", h.base))
        .send()
        .await
        .expect("send");
    assert_eq!(r.text().await.expect("body"), "800");

    // An error: the problem document of the synchronous call, byte for byte.
    let id = [("x-request-id", "req-async-1")];
    let sync = h
        .http
        .post(format!("{}/rpc/{greeter}/hello", h.base))
        .header("x-request-id", "req-async-1")
        .json(&json!({"nobody": 1}))
        .send()
        .await
        .expect("send");
    let (sync_status, sync_body) = (sync.status(), sync.bytes().await.expect("body"));
    let location =
        accepted(post_async(&h, &greeter, "hello", json!({"nobody": 1}), &id).await).await;
    let r = outcome(&h, &location, &[]).await;
    assert_eq!(r.status(), sync_status);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    assert_eq!(r.bytes().await.expect("body"), sync_body);

    // A deadline passed without a reply: the synchronous call's 504.
    let short = [("x-timeout-ms", "200")];
    let location =
        accepted(post_async(&h, &greeter, "slow", json!({"ms": 5000}), &short).await).await;
    let r = outcome(&h, &location, &[]).await;
    let body = assert_problem(r, 504, "deadline-exceeded").await;
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("200 ms")),
        "{body}"
    );
}

pub async fn refusals_come_before_the_202(kind: Kind) {
    let config = GatewayConfig {
        max_async_calls: 1,
        max_async_timeout: Duration::from_secs(2),
        ..GatewayConfig::default()
    };
    let mut h = Harness::on(kind, config).await;
    let greeter = unique("greeter");
    h.serve(greeter::service_named(&greeter)).await;
    // An unknown service is 404 at once, and holds no place.
    let r = post_async(&h, &unique("nobody"), "x", json!({}), &[]).await;
    assert_problem(r, 404, "unknown-service").await;
    let r = post_async(&h, &greeter, "bad name", json!({}), &[]).await;
    assert_eq!(r.status(), 400);
    // The async cap applies to X-Timeout-Ms (2 s here): the call's 504 names it.
    let long = [("x-timeout-ms", "600000")];
    let location =
        accepted(post_async(&h, &greeter, "slow", json!({"ms": 3000}), &long).await).await;
    // The one place is taken until that result expires: the next is 503 with Retry-After.
    let r = post_async(&h, &greeter, "hello", json!({"name": "x"}), &[]).await;
    assert_eq!(r.headers()["retry-after"], "1");
    assert_problem(r, 503, "too-many-async-calls").await;
    let r = outcome(&h, &location, &[]).await;
    let body = assert_problem(r, 504, "deadline-exceeded").await;
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("2000 ms")),
        "{body}"
    );
    // Ids that name nothing: 404.
    for id in ["nope", "eyJ1IjoiMTIzIn0", &"A".repeat(5000)] {
        let r = h
            .http
            .get(format!("{}/calls/{id}", h.base))
            .send()
            .await
            .expect("send");
        assert_problem(r, 404, "no-such-call").await;
    }
}

pub async fn a_result_expires_after_its_ttl(kind: Kind) {
    let config = GatewayConfig {
        async_result_ttl: Duration::from_millis(500),
        ..GatewayConfig::default()
    };
    let mut h = Harness::on(kind, config).await;
    let greeter = unique("greeter");
    h.serve(greeter::service_named(&greeter)).await;
    // Kept until the TTL after the call's deadline (300 ms here): 800 ms from now.
    let short = [("x-timeout-ms", "300")];
    let location =
        accepted(post_async(&h, &greeter, "hello", json!({"name": "A"}), &short).await).await;
    let r = outcome(&h, &location, &[]).await;
    assert_eq!(r.json::<Value>().await.expect("json"), json!("Hello, A!"));
    let gone = wait_until(Duration::from_secs(10), || async {
        let r = h.http.get(format!("{}{location}", h.base)).send().await;
        r.is_ok_and(|r| r.status() == 404)
    })
    .await;
    assert!(gone, "the result expired");
    let r = h
        .http
        .get(format!("{}{location}", h.base))
        .send()
        .await
        .expect("send");
    assert_problem(r, 404, "no-such-call").await;
}

pub async fn only_the_caller_collects_its_result(kind: Kind) {
    let keys = "alice k-alice-0123456789abcdef\nbob k-bob-0123456789abcdef00\n";
    let config = GatewayConfig {
        auth: warren_gateway::Auth::off()
            .with_api_keys(warren_gateway::ApiKeys::parse(keys).expect("keys")),
        ..GatewayConfig::default()
    };
    let mut h = Harness::on(kind, config).await;
    let greeter = unique("greeter");
    h.serve(greeter::service_named(&greeter)).await;
    let alice = [("x-api-key", "k-alice-0123456789abcdef")];
    let bob = [("x-api-key", "k-bob-0123456789abcdef00")];
    let r = post_async(&h, &greeter, "hello", json!({"name": "A"}), &[]).await;
    assert_problem(r, 401, "unauthenticated").await;
    let location =
        accepted(post_async(&h, &greeter, "hello", json!({"name": "A"}), &alice).await).await;
    let r = outcome(&h, &location, &alice).await;
    assert_eq!(r.json::<Value>().await.expect("json"), json!("Hello, A!"));
    // Without credentials: 401; as another caller: no such call.
    let r = h
        .http
        .get(format!("{}{location}", h.base))
        .send()
        .await
        .expect("send");
    assert_problem(r, 401, "unauthenticated").await;
    let r = outcome(&h, &location, &bob).await;
    assert_problem(r, 404, "no-such-call").await;
}
