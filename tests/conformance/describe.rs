//! Descriptors and what the gateway makes of them: `/services`, liveness (a known service with
//! no live instance is 503 at once), the live `/openapi.json`, `/docs`, and CORS.

use crate::common::{Harness, Kind, assert_problem, mesh_config, unique, wait_until};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use warren_gateway::GatewayConfig;

async fn get_json(h: &Harness, path: &str) -> Value {
    let r = h
        .http
        .get(format!("{}{path}", h.base))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.expect("json")
}

/// Waits until `/services` shows `service` with `instances` live instances.
async fn wait_for_instances(h: &Harness, service: &str, instances: usize) -> bool {
    wait_until(Duration::from_secs(5), || async {
        let services = get_json(h, "/services").await;
        services
            .as_array()
            .and_then(|all| all.iter().find(|s| s["name"] == service))
            .and_then(|s| s["instances"].as_array())
            .is_some_and(|i| i.len() == instances)
    })
    .await
}

pub async fn services_are_listed_with_methods_and_live_instances(kind: Kind) {
    let mut h = Harness::on(kind, GatewayConfig::default()).await;
    let greeter = unique("greeter");
    h.serve(greeter::service_named(&greeter)).await;
    let second = h.instance(crate::common::mesh_config()).await;
    let _two = h.serve_on(&second, greeter::service_named(&greeter)).await;
    assert!(
        wait_for_instances(&h, &greeter, 2).await,
        "two instances never showed"
    );

    let services = get_json(&h, "/services").await;
    let entry = services
        .as_array()
        .and_then(|all| all.iter().find(|s| s["name"] == greeter.as_str()))
        .cloned()
        .unwrap_or_default();
    assert_eq!(entry["methods"], json!(["fib", "hello", "slow"]));
    assert_eq!(entry["version"], env!("CARGO_PKG_VERSION"));
}

async fn tick() -> Result<(), mesh::RpcError> {
    Ok(())
}

/// A service of timers alone is announced like any other; only listeners (transient
/// subscriptions and nothing else, like the gateway's own feeds) are not.
pub async fn a_service_of_timers_alone_is_announced_and_listeners_are_not(kind: Kind) {
    let mut h = Harness::on(kind, GatewayConfig::default()).await;
    let ticker = unique("ticker");
    let every = mesh::Timer::every("tick", std::time::Duration::from_secs(3600));
    h.serve(mesh::Service::new(ticker.clone()).timer(every, tick))
        .await;
    assert!(
        wait_for_instances(&h, &ticker, 1).await,
        "the timer-only service never showed"
    );
    // The gateway's event-stream feed (a listener) while a stream is open: never listed.
    let stream = h
        .http
        .get(format!("{}/events/{}/e", h.base, unique("src")))
        .send()
        .await
        .expect("send");
    assert_eq!(stream.status(), 200);
    let services = get_json(&h, "/services").await;
    let names: Vec<&str> = services
        .as_array()
        .map(|all| all.iter().filter_map(|s| s["name"].as_str()).collect())
        .unwrap_or_default();
    assert!(!names.contains(&"gateway"), "{names:?}");
}

pub async fn a_known_service_with_no_live_instance_is_503_at_once(kind: Kind) {
    let mut h = Harness::on(kind, GatewayConfig::default()).await;
    let listening = tokio::time::Instant::now();
    let greeter = unique("greeter");
    // A short heartbeat: the gateway knows no instance is live only once it has listened for a
    // whole one (before that, an instance it has not heard from yet may be live).
    let mut config = mesh_config();
    config.heartbeat = Duration::from_millis(300);
    let instance = h.instance(config).await;
    let running = h
        .serve_on(&instance, greeter::service_named(&greeter))
        .await;
    assert!(wait_for_instances(&h, &greeter, 1).await);
    running.stop().await;
    // The instance said `down`; the gateway knows before any deadline could pass.
    assert!(
        wait_for_instances(&h, &greeter, 0).await,
        "the stop was never seen"
    );
    // The rule is about time: the gateway must have listened for a heartbeat (it usually has
    // by now; this only guarantees it).
    tokio::time::sleep_until(listening + Duration::from_millis(300)).await;
    let started = Instant::now();
    let r = h
        .http
        .post(format!("{}/rpc/{greeter}/hello", h.base))
        .header("x-timeout-ms", "10000")
        .json(&json!({"name": "x"}))
        .send()
        .await
        .expect("send");
    let retry_after = r.headers().get("retry-after").cloned();
    let body = assert_problem(r, 503, "no-live-instance").await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(body["service"], greeter.as_str());
    assert!(retry_after.is_some());
    // A service that never sent a descriptor (a nameko service, say) is still called.
    let r = h.post(&unique("nobody"), "x", json!({})).await;
    assert_problem(r, 404, "unknown-service").await;
}

pub async fn the_openapi_document_is_built_live_from_descriptors(kind: Kind) {
    let mut h = Harness::on(kind, GatewayConfig::default()).await;
    let greeter = unique("greeter");
    let kv = unique("kv");
    h.serve(greeter::service_named(&greeter)).await;
    h.serve(kv::service_named(&kv).with_state(kv::Store::default()))
        .await;
    assert!(wait_for_instances(&h, &kv, 1).await && wait_for_instances(&h, &greeter, 1).await);

    let doc = get_json(&h, "/openapi.json").await;
    assert_eq!(doc["openapi"], "3.1.0");
    let hello = &doc["paths"][format!("/rpc/{greeter}/hello")]["post"];
    assert_eq!(hello["operationId"], format!("{greeter}_hello"));
    let request = &hello["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(request["properties"]["name"]["type"], "string");
    assert_eq!(request["required"], json!(["name"]));
    assert_eq!(request["additionalProperties"], false);
    assert_eq!(
        hello["responses"]["200"]["content"]["application/json"]["schema"]["type"],
        "string"
    );
    assert_eq!(
        hello["responses"]["504"]["$ref"],
        "#/components/responses/DeadlineExceeded"
    );
    let inc = &doc["paths"][format!("/rpc/{kv}/inc")]["post"];
    assert_eq!(
        inc["requestBody"]["content"]["application/json"]["schema"]["properties"]["by"]["type"],
        "integer"
    );
    assert_eq!(
        inc["responses"]["200"]["content"]["application/json"]["schema"]["type"],
        "integer"
    );
    assert!(doc["components"]["schemas"]["Problem"].is_object());

    // A stopped service leaves the document.
    let running = h.services.remove(0);
    running.stop().await;
    assert!(wait_for_instances(&h, &greeter, 0).await);
    let doc = get_json(&h, "/openapi.json").await;
    assert!(doc["paths"][format!("/rpc/{greeter}/hello")].is_null());
    assert!(doc["paths"][format!("/rpc/{kv}/inc")].is_object());
}

pub async fn the_docs_page_is_served_from_the_binary(kind: Kind) {
    let h = Harness::on(kind, GatewayConfig::default()).await;
    let page = h
        .http
        .get(format!("{}/docs/", h.base))
        .send()
        .await
        .expect("send");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    assert!(html.contains("swagger-ui"), "{html}");
    let init = h
        .http
        .get(format!("{}/docs/swagger-initializer.js", h.base))
        .send()
        .await
        .expect("send");
    let init = init.text().await.expect("js");
    assert!(init.contains("/openapi.json"), "{init}");
    // No badge from an external validator.
    assert!(
        init.replace(' ', "").contains(r#""validatorUrl":"none""#),
        "{init}"
    );
    let bundle = h
        .http
        .get(format!("{}/docs/swagger-ui-bundle.js", h.base))
        .send()
        .await
        .expect("send");
    assert_eq!(bundle.status(), 200);
    assert!(bundle.bytes().await.expect("bytes").len() > 100_000);
}

pub async fn cors_allows_only_configured_origins(kind: Kind) {
    let config = GatewayConfig {
        cors_origins: vec!["http://app.example".to_owned()],
        ..GatewayConfig::default()
    };
    let mut h = Harness::on(kind, config).await;
    let greeter = unique("greeter");
    h.serve(greeter::service_named(&greeter)).await;
    let url = format!("{}/rpc/{greeter}/hello", h.base);
    let preflight = h
        .http
        .request(reqwest::Method::OPTIONS, &url)
        .header("origin", "http://app.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type,x-request-id",
        )
        .send()
        .await
        .expect("send");
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "http://app.example"
    );
    let allowed = preflight.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap_or("");
    assert!(
        allowed.contains("content-type") && allowed.contains("x-request-id"),
        "{allowed}"
    );

    let r = h
        .http
        .post(&url)
        .header("origin", "http://app.example")
        .json(&json!({"name": "cors"}))
        .send()
        .await
        .expect("send");
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "http://app.example"
    );
    let exposed = r.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap_or("");
    assert!(exposed.contains("x-request-id"), "{exposed}");

    let other = h
        .http
        .post(&url)
        .header("origin", "http://evil.example")
        .json(&json!({"name": "x"}))
        .send()
        .await
        .expect("send");
    assert!(other.headers().get("access-control-allow-origin").is_none());

    // Without configuration there is no CORS at all.
    let plain = Harness::on(kind, GatewayConfig::default()).await;
    let r = plain
        .http
        .get(format!("{}/healthz", plain.base))
        .header("origin", "http://app.example")
        .send()
        .await
        .expect("send");
    assert!(r.headers().get("access-control-allow-origin").is_none());
}

pub async fn metrics_count_calls_by_service_method_and_status(kind: Kind) {
    let mut h = Harness::on(kind, GatewayConfig::default()).await;
    let greeter = unique("greeter");
    h.serve(greeter::service_named(&greeter)).await;
    assert_eq!(
        h.post(&greeter, "hello", json!({"name": "m"}))
            .await
            .status(),
        200
    );
    assert_eq!(
        h.post(&greeter, "hello", json!({"nope": 1})).await.status(),
        400
    );
    assert_eq!(
        h.post(&unique("nobody"), "x", json!({})).await.status(),
        404
    );
    // A made-up name refused before any service saw it (415 here) never becomes a label.
    let made_up = unique("madeup");
    let refused = h
        .http
        .post(format!("{}/rpc/{made_up}/x", h.base))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .expect("send");
    assert_eq!(refused.status(), 415);
    let r = h
        .http
        .get(format!("{}/metrics", h.base))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let text = r.text().await.expect("text");
    let has = |needle: &str| text.lines().any(|l| l.contains(needle));
    let ok = format!(
        "warren_gateway_requests_total{{service=\"{greeter}\",method=\"hello\",status=\"200\"}} 1"
    );
    assert!(has(&ok), "{ok} missing in:\n{text}");
    assert!(has(&format!(
        "warren_gateway_requests_total{{service=\"{greeter}\",method=\"hello\",status=\"400\"}} 1"
    )));
    assert!(
        has("service=\"_unknown\",method=\"_unknown\",status=\"404\""),
        "{text}"
    );
    assert!(has("warren_gateway_request_duration_seconds_bucket"));
    assert!(has("warren_gateway_pending_calls 0"));
    assert!(
        !text.contains(&made_up),
        "a made-up name became a label:\n{text}"
    );
    assert!(
        has("service=\"_unknown\",method=\"_unknown\",status=\"415\""),
        "{text}"
    );
    // The service's own measurements (same process here).
    assert!(
        has(&format!(
            "warren_service_requests_total{{service=\"{greeter}\",method=\"hello\",outcome=\"ok\"}}"
        )),
        "{text}"
    );

    // In flight: a call counts from admission to answer.
    assert!(has("warren_gateway_in_flight 0"), "{text}");
    let slow = tokio::spawn({
        let (http, url) = (h.http.clone(), format!("{}/rpc/{greeter}/slow", h.base));
        async move { http.post(url).json(&json!({"ms": 1500})).send().await }
    });
    let scrape = || {
        let (http, url) = (h.http.clone(), format!("{}/metrics", h.base));
        async move {
            let text = http.get(url).send().await.ok()?.text().await.ok()?;
            text.lines()
                .find_map(|l| l.strip_prefix("warren_gateway_in_flight "))
                .map(str::to_owned)
        }
    };
    assert!(
        wait_until(Duration::from_secs(5), || async {
            scrape().await.as_deref() == Some("1")
        })
        .await,
        "the slow call was never counted in flight: {:?}",
        scrape().await
    );
    let answered = slow.await.expect("task").expect("answered");
    assert_eq!(answered.status(), 200);
    assert_eq!(scrape().await.as_deref(), Some("0"));
}
