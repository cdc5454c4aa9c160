//! The gateway's HTTP contract (docs/architecture.md §3), row by row, over a real socket.

use crate::common::{Harness, Kind, assert_problem, unique, wait_until};
use mesh::{Args, Ctx, RpcError, Service};
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use warren_gateway::{GatewayConfig, StatusCode};

async fn ping() -> Result<&'static str, RpcError> {
    Ok("pong")
}

async fn stack(ctx: Ctx) -> Result<Vec<String>, RpcError> {
    Ok(ctx.call_id_stack().to_vec())
}

async fn caller(ctx: Ctx) -> Result<Value, RpcError> {
    Ok(json!({"language": ctx.language(), "user_agent": ctx.user_agent()}))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct Fail {
    exc_type: String,
}

/// Fails with the kind named by `exc_type`; unknown names fail as that custom type.
async fn fail(Args(f): Args<Fail>) -> Result<(), RpcError> {
    Err(match f.exc_type.as_str() {
        "BadRequest" => RpcError::bad_request("bad"),
        "NotFound" => RpcError::not_found("missing"),
        "Conflict" => RpcError::conflict("stale version"),
        "Unavailable" => RpcError::unavailable("db down"),
        other => RpcError::internal("boom").with_exc_type(other.to_owned()),
    })
}

/// A harness with a test service `t_contract_*` (ping, stack, fail), greeter and kv.
async fn harness(kind: Kind, config: GatewayConfig) -> (Harness, String, String) {
    let mut h = Harness::on(kind, config).await;
    let svc = unique("contract");
    let greeter = unique("greeter");
    h.serve(
        Service::new(svc.clone())
            .rpc("ping", ping)
            .rpc("stack", stack)
            .rpc("caller", caller)
            .rpc("fail", fail),
    )
    .await;
    h.serve(greeter::service_named(&greeter)).await;
    (h, svc, greeter)
}

pub async fn ok_with_object_array_and_empty_bodies(kind: Kind) {
    let (h, svc, greeter) = harness(kind, GatewayConfig::default()).await;
    let r = h.post(&greeter, "hello", json!({"name": "Matt"})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert!(r.headers().contains_key("x-request-id"));
    assert_eq!(
        r.json::<Value>().await.expect("json"),
        json!("Hello, Matt!")
    );

    let r = h.post(&greeter, "hello", json!(["Ann"])).await;
    assert_eq!(r.json::<Value>().await.expect("json"), json!("Hello, Ann!"));

    let url = format!("{}/rpc/{svc}/ping", h.base);
    let r = h.http.post(&url).send().await.expect("send");
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.expect("json"), json!("pong"));
}

pub async fn request_id_is_echoed_and_roots_the_call_id_stack(kind: Kind) {
    let (h, svc, _) = harness(kind, GatewayConfig::default()).await;
    let r = h
        .http
        .post(format!("{}/rpc/{svc}/stack", h.base))
        .header("x-request-id", "req-42")
        .send()
        .await
        .expect("send");
    assert_eq!(r.headers()["x-request-id"], "req-42");
    let stack: Vec<String> = r.json().await.expect("json");
    assert_eq!(stack.len(), 2, "{stack:?}");
    assert_eq!(stack[0], "req-42");
    assert!(stack[1].starts_with(&format!("{svc}.stack.")), "{stack:?}");

    // A missing request id is made, and the problem body carries it too.
    let r = h.post(&svc, "nope", json!({})).await;
    let made = r.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let body = assert_problem(r, 404, "not-found").await;
    assert_eq!(body["request_id"], made);
}

pub async fn accept_language_and_user_agent_reach_the_service(kind: Kind) {
    let (h, svc, _) = harness(kind, GatewayConfig::default()).await;
    let url = format!("{}/rpc/{svc}/caller", h.base);
    let r = h
        .http
        .post(&url)
        .header("accept-language", "de-CH, de;q=0.9")
        .header("user-agent", "curl/8.5.0")
        .send()
        .await
        .expect("send");
    assert_eq!(
        r.json::<Value>().await.expect("json"),
        json!({"language": "de-CH, de;q=0.9", "user_agent": "curl/8.5.0"})
    );
    // Absent, or too long to be a real one (over 512 bytes): nothing is passed on.
    let r = h
        .http
        .post(&url)
        .header("user-agent", "x".repeat(513))
        .send()
        .await
        .expect("send");
    assert_eq!(
        r.json::<Value>().await.expect("json"),
        json!({"language": null, "user_agent": null})
    );
}

pub async fn bad_requests_are_400(kind: Kind) {
    let (h, svc, greeter) = harness(kind, GatewayConfig::default()).await;
    // Two names of 128 bytes each: valid apart, too long together for a routing key.
    let r = h.post(&"s".repeat(128), &"m".repeat(128), json!({})).await;
    assert_problem(r, 400, "invalid-name").await;
    let raw = |path: String, body: &'static str| {
        h.http
            .post(format!("{}{path}", h.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    // Malformed JSON, and JSON that is neither object nor array.
    let r = raw(format!("/rpc/{greeter}/hello"), "{\"name\": ")
        .await
        .expect("send");
    assert_problem(r, 400, "malformed-json").await;
    for scalar in ["42", "\"x\"", "true", "null"] {
        let r = raw(format!("/rpc/{greeter}/hello"), scalar)
            .await
            .expect("send");
        assert_problem(r, 400, "invalid-arguments").await;
    }
    // Bad names never reach the broker: `.`, `*`, `#`, percent-encoded dots, leading digits.
    for path in [
        "/rpc/a.b/hello",
        "/rpc/kv/in*c",
        "/rpc/%23/x",
        "/rpc/a%2eb/x",
        "/rpc/9kv/get",
    ] {
        let r = raw(path.to_owned(), "{}").await.expect("send");
        let body = assert_problem(r, 400, "invalid-name").await;
        assert!(
            body["detail"].as_str().unwrap_or("").contains("must match"),
            "{body}"
        );
    }
    let long = "a".repeat(129);
    let r = raw(format!("/rpc/{long}/x"), "{}").await.expect("send");
    assert_problem(r, 400, "invalid-name").await;
    for path in ["/rpc/onlyservice", "/rpc/a/b/c", "/rpc/a/b/", "/rpc"] {
        let r = raw(path.to_owned(), "{}").await.expect("send");
        assert_problem(r, 400, "invalid-path").await;
    }
    // A percent-escaped name is decoded (plain names skip the router; these go through it).
    let r = raw(format!("/rpc/{greeter}/%68ello"), r#"{"name": "escaped"}"#)
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.expect("json"),
        json!("Hello, escaped!")
    );
    // IncorrectSignature from the service.
    let r = h.post(&greeter, "hello", json!({"nam": "x"})).await;
    let body = assert_problem(r, 400, "bad-request").await;
    assert_eq!(body["exc_type"], "IncorrectSignature");
    assert_eq!(body["service"], greeter.as_str());
    assert_eq!(body["method"], "hello");
    // Remote BadRequest and ValidationError.
    for exc_type in ["BadRequest", "ValidationError"] {
        let r = h.post(&svc, "fail", json!({"exc_type": exc_type})).await;
        let body = assert_problem(r, 400, "bad-request").await;
        assert_eq!(body["exc_type"], exc_type);
    }
    // A bad X-Timeout-Ms.
    let r = h
        .http
        .post(format!("{}/rpc/{svc}/ping", h.base))
        .header("x-timeout-ms", "soon")
        .send()
        .await
        .expect("send");
    assert_problem(r, 400, "invalid-header").await;
}

pub async fn not_found_unknown_service_and_method(kind: Kind) {
    let (h, svc, _) = harness(kind, GatewayConfig::default()).await;
    let started = Instant::now();
    let r = h.post(&unique("nobody"), "x", json!({})).await;
    let elapsed = started.elapsed();
    assert_problem(r, 404, "unknown-service").await;
    assert!(
        elapsed < Duration::from_secs(1),
        "unknown service took {elapsed:?}"
    );

    let r = h.post(&svc, "no_such_method", json!({})).await;
    let body = assert_problem(r, 404, "not-found").await;
    assert_eq!(body["exc_type"], "MethodNotFound");

    let r = h.post(&svc, "fail", json!({"exc_type": "NotFound"})).await;
    let body = assert_problem(r, 404, "not-found").await;
    assert_eq!(body["exc_type"], "NotFound");

    let r = h
        .http
        .get(format!("{}/nowhere", h.base))
        .send()
        .await
        .expect("send");
    assert_problem(r, 404, "no-route").await;
}

pub async fn other_methods_are_405_with_allow(kind: Kind) {
    let (h, svc, _) = harness(kind, GatewayConfig::default()).await;
    let url = format!("{}/rpc/{svc}/ping", h.base);
    for method in [
        reqwest::Method::GET,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
        reqwest::Method::PATCH,
    ] {
        let r = h
            .http
            .request(method.clone(), &url)
            .send()
            .await
            .expect("send");
        assert_eq!(r.headers()["allow"], "POST", "{method}");
        assert_problem(r, 405, "method-not-allowed").await;
    }
}

pub async fn conflict_is_409_and_other_remote_errors_500_or_503(kind: Kind) {
    let (h, svc, _) = harness(kind, GatewayConfig::default()).await;
    let r = h.post(&svc, "fail", json!({"exc_type": "Conflict"})).await;
    let body = assert_problem(r, 409, "conflict").await;
    assert_eq!(body["detail"], "Conflict: stale version");

    let r = h
        .post(&svc, "fail", json!({"exc_type": "ValueError"}))
        .await;
    let body = assert_problem(r, 500, "remote-error").await;
    assert_eq!(body["exc_type"], "ValueError");
    assert_eq!(body["detail"], "ValueError: boom");

    let r = h
        .post(&svc, "fail", json!({"exc_type": "Unavailable"}))
        .await;
    assert_problem(r, 503, "unavailable").await;
}

pub async fn configured_error_statuses_extend_the_table(kind: Kind) {
    let mut config = GatewayConfig::default();
    config
        .error_map
        .insert("InsufficientFunds", StatusCode::PAYMENT_REQUIRED);
    let (h, svc, _) = harness(kind, config).await;
    let r = h
        .post(&svc, "fail", json!({"exc_type": "InsufficientFunds"}))
        .await;
    let body = assert_problem(r, 402, "remote-client-error").await;
    assert_eq!(body["exc_type"], "InsufficientFunds");
}

pub async fn body_limit_is_413_and_content_type_415(kind: Kind) {
    let config = GatewayConfig {
        max_body_bytes: 1024,
        ..GatewayConfig::default()
    };
    let (h, _, greeter) = harness(kind, config).await;
    let r = h
        .post(&greeter, "hello", json!({"name": "x".repeat(2000)}))
        .await;
    assert_problem(r, 413, "payload-too-large").await;
    // A streamed body without Content-Length is cut off too.
    let chunks =
        futures_util::stream::iter((0..4).map(|_| Ok::<_, std::io::Error>(vec![b' '; 512])));
    let r = h
        .http
        .post(format!("{}/rpc/{greeter}/hello", h.base))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .expect("send");
    assert_problem(r, 413, "payload-too-large").await;

    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/xml",
    ] {
        let r = h
            .http
            .post(format!("{}/rpc/{greeter}/hello", h.base))
            .header("content-type", content_type)
            .body("{\"name\": \"x\"}")
            .send()
            .await
            .expect("send");
        assert_problem(r, 415, "unsupported-media-type").await;
    }
}

pub async fn transport_closed_is_503_and_not_ready(kind: Kind) {
    let (h, svc, _) = harness(kind, GatewayConfig::default()).await;
    let ready = h
        .http
        .get(format!("{}/readyz", h.base))
        .send()
        .await
        .expect("send");
    assert_eq!(ready.status(), 200);
    h.mesh.close().await;
    let r = h.post(&svc, "ping", json!({})).await;
    let retry_after = r.headers().get("retry-after").cloned();
    assert_problem(r, 503, "broker-unavailable").await;
    assert_eq!(
        retry_after.as_ref().and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let ready = h
        .http
        .get(format!("{}/readyz", h.base))
        .send()
        .await
        .expect("send");
    assert_eq!(ready.status(), 503);
    let health = h
        .http
        .get(format!("{}/healthz", h.base))
        .send()
        .await
        .expect("send");
    assert_eq!(health.status(), 200);
}

pub async fn deadline_passed_is_504_and_the_late_reply_is_dropped(kind: Kind) {
    let (h, _, greeter) = harness(kind, GatewayConfig::default()).await;
    let started = Instant::now();
    let r = h
        .http
        .post(format!("{}/rpc/{greeter}/slow", h.base))
        .header("x-timeout-ms", "300")
        .json(&json!({"ms": 800}))
        .send()
        .await
        .expect("send");
    let elapsed = started.elapsed();
    let body = assert_problem(r, 504, "deadline-exceeded").await;
    assert_eq!(body["service"], greeter.as_str());
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_millis(800),
        "{elapsed:?}"
    );
    assert_eq!(h.client.stats().pending, 0);
    assert_eq!(h.client.stats().timeouts, 1);
    // The service still finishes and replies; the reply finds nobody and is counted.
    let client = h.client.clone();
    assert!(
        wait_until(Duration::from_secs(5), || {
            let client = client.clone();
            async move { client.stats().unmatched_replies == 1 }
        })
        .await,
        "late reply not seen: {:?}",
        h.client.stats()
    );
}

pub async fn x_timeout_ms_is_capped_by_the_maximum(kind: Kind) {
    let config = GatewayConfig {
        max_timeout: Duration::from_millis(300),
        ..GatewayConfig::default()
    };
    let (h, _, greeter) = harness(kind, config).await;
    let started = Instant::now();
    let r = h
        .http
        .post(format!("{}/rpc/{greeter}/slow", h.base))
        .header("x-timeout-ms", "100000")
        .json(&json!({"ms": 2000}))
        .send()
        .await
        .expect("send");
    assert_problem(r, 504, "deadline-exceeded").await;
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
}

async fn private() -> Result<&'static str, RpcError> {
    Ok("secret")
}

pub async fn only_exposed_methods_are_served_and_documented(kind: Kind) {
    let greeter = unique("greeter");
    let config = GatewayConfig {
        exposure: warren_gateway::Exposure::parse(&[
            format!("{greeter}.hello"),
            "*.ping".to_owned(),
        ])
        .expect("patterns"),
        ..GatewayConfig::default()
    };
    let mut h = Harness::on(kind, config).await;
    h.serve(greeter::service_named(&greeter)).await;
    let svc = unique("private");
    h.serve(
        Service::new(svc.clone())
            .rpc("ping", ping)
            .rpc("_ping", private),
    )
    .await;

    assert_eq!(
        h.post(&greeter, "hello", json!({"name": "x"}))
            .await
            .status(),
        200
    );
    let body = assert_problem(
        h.post(&greeter, "slow", json!({"ms": 1})).await,
        403,
        "not-exposed",
    )
    .await;
    assert_eq!(body["method"], "slow");
    assert_eq!(h.post(&svc, "ping", json!({})).await.status(), 200);
    // Names starting with `_` are never served, whatever the patterns.
    assert_problem(h.post(&svc, "_ping", json!({})).await, 403, "not-exposed").await;

    let client = h.client.clone();
    let documented = wait_until(Duration::from_secs(5), || {
        let (http, base, greeter) = (h.http.clone(), h.base.clone(), greeter.clone());
        async move {
            let doc: serde_json::Value = match http.get(format!("{base}/openapi.json")).send().await
            {
                Ok(r) => r.json().await.unwrap_or_default(),
                Err(_) => return false,
            };
            doc["paths"][format!("/rpc/{greeter}/hello")].is_object()
        }
    })
    .await;
    assert!(documented, "{:?}", client.stats());
    let doc: serde_json::Value = h
        .http
        .get(format!("{}/openapi.json", h.base))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert!(doc["paths"][format!("/rpc/{greeter}/slow")].is_null());
    assert!(doc["paths"][format!("/rpc/{svc}/_ping")].is_null());
}

pub async fn above_max_in_flight_the_gateway_answers_503_at_once(kind: Kind) {
    let config = GatewayConfig {
        max_in_flight: 2,
        ..GatewayConfig::default()
    };
    let (h, _, greeter) = harness(kind, config).await;
    let url = format!("{}/rpc/{greeter}/slow", h.base);
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let (http, url) = (h.http.clone(), url.clone());
            tokio::spawn(async move { http.post(url).json(&json!({"ms": 1000})).send().await })
        })
        .collect();
    let client = h.client.clone();
    assert!(
        wait_until(Duration::from_secs(5), || {
            let c = client.clone();
            async move { c.stats().pending == 2 }
        })
        .await
    );
    let started = Instant::now();
    let r = h.post(&greeter, "hello", json!({"name": "x"})).await;
    let retry_after = r.headers().get("retry-after").cloned();
    assert_problem(r, 503, "overloaded").await;
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    assert!(retry_after.is_some());
    for call in slow {
        assert_eq!(call.await.expect("task").expect("send").status(), 200);
    }
    assert_eq!(
        h.post(&greeter, "hello", json!({"name": "x"}))
            .await
            .status(),
        200
    );
}

pub async fn a_one_millisecond_deadline_is_504_not_an_outage(kind: Kind) {
    let (h, _, greeter) = harness(kind, GatewayConfig::default()).await;
    for _ in 0..20 {
        let r = h
            .http
            .post(format!("{}/rpc/{greeter}/slow", h.base))
            .header("x-timeout-ms", "1")
            .json(&json!({"ms": 5}))
            .send()
            .await
            .expect("send");
        let body = assert_problem(r, 504, "deadline-exceeded").await;
        assert_eq!(body["detail"], "no reply within the deadline of 1 ms");
    }
}
