//! Two gateway replicas on one broker, as a deployment runs them: an asynchronous call accepted
//! by a `warren gateway` process is collected from another gateway (docs/http.md,
//! "Asynchronous calls").

mod common;

use common::process::{http_address, spawn, terminate};
use common::{Harness, unique};
use serde_json::{Value, json};
use std::time::Duration;

#[tokio::test]
async fn an_async_call_accepted_by_one_gateway_process_is_collected_from_another() {
    let mut h = Harness::start().await;
    let greeter = unique("greeter");
    h.serve(greeter::service_named(&greeter)).await;
    let amqp = common::broker_url();
    let (gateway, first) = tokio::task::spawn_blocking(move || {
        spawn(&["gateway", "--listen", "127.0.0.1:0", "--amqp", &amqp])
    })
    .await
    .expect("spawn");
    let other = format!("http://{}", http_address(&first));

    // Accepted by the process, collected here.
    let r = h
        .http
        .post(format!("{other}/rpc/{greeter}/slow"))
        .header("prefer", "respond-async")
        .json(&json!({"ms": 300}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().expect("ascii").to_owned();
    let answer = common::collect_call(&h.http, &h.base, &location, &[]).await;
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.expect("body"), "300");
    // The process that took it answers the same, and so again does this one.
    for base in [&other, &h.base] {
        let r = h
            .http
            .get(format!("{base}{location}"))
            .send()
            .await
            .expect("send");
        assert_eq!(r.json::<Value>().await.expect("json"), json!(300));
    }
    let status = tokio::task::spawn_blocking(move || terminate(gateway, Duration::from_secs(10)))
        .await
        .expect("terminate");
    assert!(status.success(), "{status:?}");
}
