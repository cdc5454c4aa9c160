//! The RPC path under load and at its edges, against the real RabbitMQ: no lost increments,
//! instances sharing a queue, the concurrency bound, callers that give up, graceful shutdown and
//! requests that expired in the queue.

mod common;

use common::{Harness, QueueCleanup, mesh_config, unique, wait_until};
use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldTable};
use mesh::protocol::RequestBody;
use mesh::{Broker, CallContext, Deadline, MeshConfig, RpcClient, Service, State};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

#[tokio::test]
async fn five_clients_times_1000_increments_end_at_5000() {
    let mut h = Harness::start().await;
    let kv = unique("kv");
    h.serve(kv::service_named(&kv, kv::Store::default())).await;
    let key = "counter";
    let clients: Vec<_> = (0..5)
        .map(|_| {
            // Each client its own HTTP connection pool, as five separate programs would be.
            let http = reqwest::Client::new();
            let url = format!("{}/rpc/{kv}/inc", h.base);
            tokio::spawn(async move {
                for _ in 0..1000 {
                    let r = http
                        .post(&url)
                        .json(&json!({"key": key}))
                        .send()
                        .await
                        .expect("send");
                    assert_eq!(r.status(), 200);
                }
            })
        })
        .collect();
    for client in clients {
        client.await.expect("client");
    }
    let r = h.post(&kv, "get", json!({"key": key})).await;
    assert_eq!(r.json::<Value>().await.expect("json"), json!(5000));
}

#[tokio::test]
async fn two_instances_share_the_load() {
    let name = unique("greeter");
    let mut cleanup = QueueCleanup::new();
    cleanup.service(&name);
    let mut instances = Vec::new();
    for _ in 0..2 {
        // Separate connections, as separate processes would have.
        let broker = Broker::connect(mesh_config()).await.expect("broker");
        instances.push(
            mesh::serve(&broker, greeter::service_named(&name))
                .await
                .expect("serve"),
        );
    }
    let broker = Broker::connect(mesh_config()).await.expect("broker");
    let client = RpcClient::start(&broker, "test").await.expect("client");
    let calls: Vec<_> = (0..200)
        .map(|i| {
            let client = client.clone();
            let name = name.clone();
            tokio::spawn(async move {
                let body = RequestBody::args(vec![json!(format!("n{i}"))]);
                client
                    .call(&name, "hello", &body, CallContext::default())
                    .await
            })
        })
        .collect();
    for call in calls {
        assert!(call.await.expect("task").is_ok());
    }
    let handled: Vec<u64> = instances.iter().map(|i| i.stats().handled()).collect();
    assert_eq!(handled.iter().sum::<u64>(), 200, "{handled:?}");
    assert!(
        handled.iter().all(|&n| n > 0),
        "one instance got nothing: {handled:?}"
    );
}

#[derive(Clone, Default)]
struct Gauge {
    current: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    started: Arc<AtomicUsize>,
}

async fn busy(State(g): State<Gauge>) -> Result<(), mesh::RpcError> {
    g.started.fetch_add(1, Ordering::SeqCst);
    let now = g.current.fetch_add(1, Ordering::SeqCst) + 1;
    g.peak.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(50)).await;
    g.current.fetch_sub(1, Ordering::SeqCst);
    Ok(())
}

/// Serves a `busy` service named `name` with `config`; returns its gauge, broker and handle.
async fn serve_busy(name: &str, config: MeshConfig) -> (Gauge, Broker, mesh::RunningService) {
    let gauge = Gauge::default();
    let broker = Broker::connect(config).await.expect("broker");
    let service = Service::new(name.to_owned())
        .with_state(gauge.clone())
        .rpc("busy", busy);
    let running = mesh::serve(&broker, service).await.expect("serve");
    (gauge, broker, running)
}

fn config_with_workers(max_workers: u16) -> MeshConfig {
    MeshConfig {
        max_workers,
        ..mesh_config()
    }
}

#[tokio::test]
async fn at_most_max_workers_handlers_run_at_once() {
    let name = unique("busy");
    let mut cleanup = QueueCleanup::new();
    cleanup.service(&name);
    let (gauge, broker, _running) = serve_busy(&name, config_with_workers(3)).await;
    let client = RpcClient::start(&broker, "test").await.expect("client");
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let (client, name) = (client.clone(), name.clone());
            tokio::spawn(async move {
                client
                    .call(
                        &name,
                        "busy",
                        &RequestBody::default(),
                        CallContext::default(),
                    )
                    .await
            })
        })
        .collect();
    for call in calls {
        assert!(call.await.expect("task").is_ok());
    }
    assert_eq!(gauge.peak.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_caller_that_disconnects_leaves_no_pending_entry() {
    let mut h = Harness::start().await;
    let greeter = unique("greeter");
    h.serve(greeter::service_named(&greeter)).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .expect("client");
    let url = format!("{}/rpc/{greeter}/slow", h.base);
    let request =
        tokio::spawn(async move { http.post(url).json(&json!({"ms": 3000})).send().await });
    let client = h.client.clone();
    assert!(
        wait_until(Duration::from_secs(5), || {
            let c = client.clone();
            async move { c.stats().pending == 1 }
        })
        .await,
        "the call never became pending"
    );
    // The HTTP client gives up at 300 ms and closes its connection; the gateway must drop the
    // call's entry then, long before the 3 s reply or the 30 s deadline.
    assert!(request.await.expect("task").is_err());
    assert!(
        wait_until(Duration::from_secs(2), || {
            let c = client.clone();
            async move { c.stats().pending == 0 }
        })
        .await,
        "pending entry left behind: {:?}",
        h.client.stats()
    );
    assert_eq!(h.client.stats().timeouts, 0);
}

#[tokio::test]
async fn stopping_a_service_finishes_in_flight_work_and_requeues_the_rest() {
    let name = unique("greeter");
    let mut cleanup = QueueCleanup::new();
    cleanup.service(&name);
    // One worker: one request runs, the others wait in the broker's queue.
    let broker = Broker::connect(config_with_workers(1))
        .await
        .expect("broker");
    let first = mesh::serve(&broker, greeter::service_named(&name))
        .await
        .expect("serve");
    let client_broker = Broker::connect(mesh_config()).await.expect("broker");
    let client = RpcClient::start(&client_broker, "test")
        .await
        .expect("client");
    let calls: Vec<_> = (0..3)
        .map(|_| {
            let (client, name) = (client.clone(), name.clone());
            tokio::spawn(async move {
                let body = RequestBody::kwargs(
                    json!({"ms": 300}).as_object().cloned().unwrap_or_default(),
                );
                client
                    .call(&name, "slow", &body, CallContext::default())
                    .await
            })
        })
        .collect();
    assert!(
        wait_until(Duration::from_secs(5), || {
            let c = client.clone();
            async move { c.stats().pending == 3 }
        })
        .await
    );
    // Stop the instance while its one request runs.
    assert!(
        wait_until(Duration::from_secs(5), || {
            let busy = first.stats().busy();
            async move { busy == 1 }
        })
        .await
    );
    first.stop().await;
    // A second instance takes over what the first had not started.
    let second = mesh::serve(&broker, greeter::service_named(&name))
        .await
        .expect("serve");
    for call in calls {
        assert_eq!(call.await.expect("task"), Ok(json!(300)));
    }
    assert_eq!(second.stats().handled(), 2);
}

#[tokio::test]
async fn a_request_that_expired_in_the_queue_is_never_executed() {
    let name = unique("busy");
    let mut cleanup = QueueCleanup::new();
    cleanup.service(&name);
    let (gauge, broker, running) = serve_busy(&name, mesh_config()).await;
    // Publish by hand a request whose warren.deadline passed a second ago.
    let channel = common::raw_channel().await;
    let past = Deadline::after(Duration::ZERO).to_epoch_ms() - 1000;
    let mut headers = FieldTable::default();
    headers.insert(
        "warren.deadline".into(),
        AMQPValue::LongLongInt(past as i64),
    );
    let properties = lapin::BasicProperties::default()
        .with_content_type("application/json".into())
        .with_headers(headers);
    channel
        .basic_publish(
            "nameko-rpc".into(),
            format!("{name}.busy").into(),
            BasicPublishOptions::default(),
            br#"{"args":[],"kwargs":{}}"#,
            properties,
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    assert!(
        wait_until(Duration::from_secs(5), || {
            let expired = running.stats().expired();
            async move { expired == 1 }
        })
        .await
    );
    assert_eq!(gauge.started.load(Ordering::SeqCst), 0);
    // A live request still runs.
    let client = RpcClient::start(&broker, "test").await.expect("client");
    let ok = client
        .call(
            &name,
            "busy",
            &RequestBody::default(),
            CallContext::default(),
        )
        .await;
    assert_eq!(ok, Ok(Value::Null));
    assert_eq!(gauge.started.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn garbage_from_the_broker_is_answered_acked_and_survived() {
    let mut h = Harness::start().await;
    let greeter = unique("greeter");
    h.serve(greeter::service_named(&greeter)).await;
    // A reply queue of our own, bound to the RPC exchange under its own name, as nameko's are.
    let channel = common::raw_channel().await;
    let reply_queue = unique("replies");
    let exclusive = lapin::options::QueueDeclareOptions {
        exclusive: true,
        ..Default::default()
    };
    common::declare_rpc_queue(&channel, &reply_queue, exclusive, &reply_queue).await;
    let cases: [&[u8]; 4] = [b"not json", br#"{"args": []}"#, br#"[1, 2]"#, b"\xff\xfe"];
    for (i, body) in cases.iter().enumerate() {
        let properties = lapin::BasicProperties::default()
            .with_reply_to(reply_queue.as_str().into())
            .with_correlation_id(format!("c{i}").into());
        channel
            .basic_publish(
                "nameko-rpc".into(),
                format!("{greeter}.hello").into(),
                BasicPublishOptions::default(),
                body,
                properties,
            )
            .await
            .expect("publish");
    }
    // A request without reply_to is handled and acked too; nobody can be answered.
    channel
        .basic_publish(
            "nameko-rpc".into(),
            format!("{greeter}.hello").into(),
            BasicPublishOptions::default(),
            b"junk",
            lapin::BasicProperties::default(),
        )
        .await
        .expect("publish");
    // Poll the reply queue until all four replies are in, or five seconds pass.
    let mut replies = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while replies.len() < 4 && tokio::time::Instant::now() < deadline {
        let options = lapin::options::BasicGetOptions { no_ack: true };
        match channel
            .basic_get(reply_queue.as_str().into(), options)
            .await
            .expect("get")
        {
            Some(message) => replies
                .push(serde_json::from_slice::<Value>(&message.delivery.data).unwrap_or_default()),
            None => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    let got_all = replies.len() == 4;
    assert!(got_all, "replies: {replies:?}");
    for reply in &replies {
        assert_eq!(reply["error"]["exc_type"], "MalformedRequest", "{reply}");
        assert_eq!(
            reply["error"]["exc_path"], "nameko.exceptions.MalformedRequest",
            "{reply}"
        );
    }
    let running = &h.services[0];
    assert!(
        wait_until(Duration::from_secs(5), || {
            let handled = running.stats().handled();
            async move { handled == 5 }
        })
        .await
    );
    // The queue is not poisoned: the service keeps serving.
    let ok = h
        .client
        .call(
            &greeter,
            "hello",
            &RequestBody::args(vec![json!("x")]),
            CallContext::default(),
        )
        .await;
    assert_eq!(ok, Ok(json!("Hello, x!")));
}
