//! What only the AMQP transport has: a broker between the parts. Peers played by hand with raw
//! AMQP (a responder sending garbage, a request published with an expired deadline, garbage
//! requests), and the dead-letter queue on the broker.

mod common;
// Its service of a once-per-service timer, here to lose its connection rather than stop.
#[allow(dead_code)]
#[path = "conformance/timers.rs"]
mod timer_scenarios;

use common::{Harness, QueueCleanup, assert_problem, kwargs, mesh_config, unique, wait_until};
use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use mesh::Arguments;
use mesh::{CallContext, Deadline, Mesh, MeshConfig, RpcError, Service, State, Subscription};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

#[tokio::test]
async fn a_reply_that_is_not_reply_json_is_502() {
    let mut h = Harness::start().await;
    let svc = unique("garbage");
    h.cleanup.service(&svc);
    // A raw responder on `rpc-<svc>` that answers every request with bytes that are not JSON.
    let channel = common::raw_channel().await;
    let queue = mesh::amqp::service_queue(&svc);
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    common::declare_rpc_queue(&channel, &queue, durable, &format!("{svc}.*")).await;
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "garbage".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let responder = tokio::spawn(async move {
        while let Some(Ok(delivery)) = consumer.next().await {
            let p = &delivery.properties;
            let (Some(reply_to), Some(correlation_id)) =
                (p.reply_to().clone(), p.correlation_id().clone())
            else {
                continue;
            };
            let properties = lapin::BasicProperties::default().with_correlation_id(correlation_id);
            let _ = channel
                .basic_publish(
                    "nameko-rpc".into(),
                    reply_to,
                    BasicPublishOptions::default(),
                    b"<html>not json",
                    properties,
                )
                .await;
        }
    });
    let r = h.post(&svc, "anything", json!({})).await;
    let body = assert_problem(r, 502, "bad-reply").await;
    assert_eq!(body["service"], svc.as_str());
    responder.abort();
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

/// Serves a `busy` service named `name` with `config`; returns its gauge, mesh and handle.
async fn serve_busy(name: &str, config: MeshConfig) -> (Gauge, Mesh, mesh::RunningService) {
    let gauge = Gauge::default();
    let mesh = Mesh::amqp(config).await.expect("broker");
    let service = Service::new(name.to_owned())
        .rpc("busy", busy)
        .with_state(gauge.clone());
    let running = mesh.serve(service).await.expect("serve");
    (gauge, mesh, running)
}

#[tokio::test]
async fn a_request_that_expired_in_the_queue_is_never_executed() {
    let name = unique("busy");
    let mut cleanup = QueueCleanup::new();
    cleanup.service(&name);
    let (gauge, mesh, running) = serve_busy(&name, mesh_config()).await;
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
    let client = mesh.client("test").await.expect("client");
    let ok = client.rpc(&name).call("busy", Arguments::default()).await;
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
        .rpc(&greeter)
        .call("hello", Arguments::args(vec![json!("x")]))
        .await;
    assert_eq!(ok, Ok(json!("Hello, x!")));
}

/// Ready messages in `queue` (a passive declare).
async fn ready_in(channel: &lapin::Channel, queue: &str) -> u32 {
    let options = lapin::options::QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    channel
        .queue_declare(queue.into(), options, Default::default())
        .await
        .map(|q| q.message_count())
        .unwrap_or(u32::MAX)
}

#[derive(Clone, Default)]
struct Attempts(Arc<AtomicUsize>);

async fn always_fails(State(a): State<Attempts>) -> Result<(), RpcError> {
    a.0.fetch_add(1, Ordering::SeqCst);
    Err(RpcError::internal("cannot index this"))
}

#[tokio::test]
async fn a_failing_handler_is_retried_once_then_dead_lettered() {
    let source = unique("src");
    let name = unique("sink");
    let subscription = Subscription::new(&source, "doomed");
    let queue = subscription.queue(&name, "");
    let mut cleanup = QueueCleanup::new();
    cleanup.events_of(&source);
    cleanup.queue(&queue);
    let attempts = Attempts::default();
    let mesh = Mesh::amqp(mesh_config()).await.expect("broker");
    let service = Service::new(name.clone())
        .subscribe(subscription, always_fails)
        .with_state(attempts.clone());
    let running = mesh.serve(service).await.expect("serve");

    mesh.client(&source)
        .await
        .expect("client")
        .dispatch("doomed", json!({"id": 7}))
        .await
        .expect("dispatch");
    assert!(
        wait_until(Duration::from_secs(10), || {
            let n = running.stats().events_dead_lettered();
            async move { n == 1 }
        })
        .await
    );
    assert_eq!(
        attempts.0.load(Ordering::SeqCst),
        2,
        "one try and one retry"
    );
    assert_eq!(running.stats().events_retried(), 1);

    let channel = common::raw_channel().await;
    assert_eq!(
        ready_in(&channel, &queue).await,
        0,
        "nothing left to loop on"
    );
    let dead = channel
        .basic_get(
            mesh::amqp::dead_letter_queue(&queue).as_str().into(),
            Default::default(),
        )
        .await
        .expect("get")
        .expect("the dead letter");
    assert_eq!(
        serde_json::from_slice::<Value>(&dead.delivery.data).expect("json"),
        json!({"id": 7})
    );
    let headers = dead
        .delivery
        .properties
        .headers()
        .clone()
        .unwrap_or_default();
    let reason = match headers.inner().get("x-warren-error") {
        Some(lapin::types::AMQPValue::LongString(s)) => {
            String::from_utf8_lossy(s.as_bytes()).into_owned()
        }
        other => panic!("no x-warren-error header: {other:?}"),
    };
    assert!(reason.contains("cannot index this"), "{reason}");
}

/// mesh asks for 16 KiB AMQP frames (lapin keeps 32-frame send and receive buffers per
/// connection): the broker agrees to them, and a message several frames long still goes through,
/// out and back.
#[tokio::test]
async fn connections_use_16_kib_frames_and_bigger_messages_span_several() {
    let mut h = Harness::start().await;
    let greeter = unique("greeter");
    h.serve(greeter::service_named(&greeter)).await;
    let name = "x".repeat(60_000);
    let r = h.post(&greeter, "hello", json!({ "name": name })).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.expect("json"),
        json!(format!("Hello, {name}!"))
    );

    // This process's connections, as the broker sees them.
    let me = format!("\"connection_name\",\"warren-{}\"", std::process::id());
    let listing = tokio::task::spawn_blocking(|| {
        std::process::Command::new("rabbitmqctl")
            .args(["-q", "list_connections", "--no-table-headers"])
            .args(["frame_max", "client_properties"])
            .output()
            .expect("rabbitmqctl")
    })
    .await
    .expect("task");
    let listing = String::from_utf8_lossy(&listing.stdout);
    let frames: Vec<&str> = listing
        .lines()
        .filter(|l| l.contains(&me))
        .filter_map(|l| l.split('\t').next())
        .collect();
    assert!(
        !frames.is_empty(),
        "no connection of this process in:\n{listing}"
    );
    assert!(frames.iter().all(|f| *f == "16384"), "{frames:?}");
}

/// Requests wait for a turn in a window of 1,024 publishes awaiting the broker's confirm (the
/// publish futures are made only at their turn). A burst three times wider is all answered,
/// and a turn is given back on every path: 1,100 calls the broker returns unroutable (more than
/// the window) leave the next burst unhindered.
#[tokio::test]
async fn bursts_wider_than_the_publish_window_are_all_answered() {
    let mut h = Harness::start().await;
    let greeter = unique("greeter");
    h.serve(greeter::service_named(&greeter)).await;
    let client = h.mesh.client(&unique("burst")).await.expect("client");
    let call = |service: String, name: String| {
        let client = client.clone();
        async move {
            let body = kwargs(json!({ "name": name }));
            let context =
                CallContext::default().with_deadline(Deadline::after(Duration::from_secs(30)));
            client
                .rpc(&service)
                .with_context(context)
                .call("hello", body)
                .await
        }
    };

    let nobody = unique("nobody");
    let refused =
        futures_util::future::join_all((0..1_100).map(|i| call(nobody.clone(), i.to_string())))
            .await;
    assert!(
        refused
            .iter()
            .all(|r| matches!(r, Err(mesh::CallError::UnknownService(_)))),
        "{:?}",
        refused
            .iter()
            .find(|r| !matches!(r, Err(mesh::CallError::UnknownService(_))))
    );

    let answers =
        futures_util::future::join_all((0..3_000).map(|i| call(greeter.clone(), i.to_string())))
            .await;
    for (i, answer) in answers.into_iter().enumerate() {
        assert_eq!(answer.expect("answered"), json!(format!("Hello, {i}!")));
    }
    assert_eq!(client.stats().pending, 0);
}

/// The broker's queues whose name holds `part` (`rabbitmqctl list_queues`).
fn queues_named(part: &str) -> Vec<String> {
    let output = std::process::Command::new("rabbitmqctl")
        .args(["-q", "list_queues", "name"])
        .output()
        .expect("rabbitmqctl");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| l.contains(part))
        .map(str::to_owned)
        .collect()
}

/// An event stream's feed leaves nothing on the broker once its last client left: its queue
/// goes with its consumer, and it has no dead-letter queue to linger on the gateway's
/// connection (one more for every feed a gateway would make).
#[tokio::test]
async fn an_event_streams_feed_leaves_no_queue_behind() {
    let h = Harness::start().await;
    let source = unique("src");
    let url = format!("{}/events/{source}/e", h.base);
    let response = h.http.get(&url).send().await.expect("send");
    assert_eq!(response.status(), 200);
    assert!(
        !queues_named(&source).is_empty(),
        "the feed's queue is bound while the stream is open"
    );
    drop(response);
    let gone = wait_until(Duration::from_secs(10), || async {
        queues_named(&source).is_empty()
    })
    .await;
    assert!(gone, "left behind: {:?}", queues_named(&source));
}

#[tokio::test]
async fn a_once_per_service_timer_moves_when_its_instance_loses_the_connection() {
    use timer_scenarios::{Runs, reconciler, wait_for_runs};
    let name = unique("reconciler");
    let mut cleanup = QueueCleanup::new();
    cleanup.queue(&mesh::amqp::lease_queue(&name, "reconcile"));
    let runs = Runs::default();
    let mut instances = Vec::new();
    for instance in 0..2 {
        let mesh = Mesh::amqp(mesh_config()).await.expect("RabbitMQ");
        let running = mesh
            .serve(reconciler(&name, instance, &runs))
            .await
            .expect("serve");
        instances.push((mesh, running));
    }
    assert!(wait_for_runs(&runs, 0, 5).await, "the timer never ran");
    let holder = runs.all()[0].0;
    // The holder's connection goes away as a dead process's would, its service never
    // stopped: the broker ends its consumer, so the lease is free.
    instances[holder].0.close().await;
    let lost_at = runs.count();
    assert!(
        wait_for_runs(&runs, lost_at, 5).await,
        "no instance took over"
    );
    let after: Vec<usize> = runs.all()[lost_at..].iter().map(|(i, _)| *i).collect();
    // A run the holder started before the close may be recorded just after it.
    assert!(after[1..].iter().all(|i| *i != holder), "{after:?}");
    // The closed instance is left as it is (a stop would wait for a broker it cannot reach).
    let (mesh, running) = instances.swap_remove(1 - holder);
    running.stop().await;
    mesh.close().await;
}

/// `rabbitmqctl -q ARGS --no-table-headers`: its lines, split at tabs.
async fn rabbitmqctl(args: &[&str]) -> Vec<Vec<String>> {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("rabbitmqctl")
            .arg("-q")
            .args(&args)
            .arg("--no-table-headers")
            .output()
            .expect("rabbitmqctl")
    })
    .await
    .expect("task");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| line.split('\t').map(str::to_owned).collect())
        .collect()
}

/// The broker's pid of the connection whose channel consumes `queue`, if one does.
async fn connection_consuming(queue: &str) -> Option<String> {
    let consumers = rabbitmqctl(&["list_consumers", "queue_name", "channel_pid"]).await;
    let channel = consumers.iter().find(|c| c[0] == queue)?.get(1)?.clone();
    let channels = rabbitmqctl(&["list_channels", "pid", "connection"]).await;
    channels.iter().find(|c| c[0] == channel)?.get(1).cloned()
}

#[tokio::test]
async fn a_once_per_service_timer_takes_its_lease_again_after_a_reconnection() {
    use timer_scenarios::{Runs, reconciler, wait_for_runs};
    let name = unique("reconciler");
    let lease = mesh::amqp::lease_queue(&name, "reconcile");
    let mut cleanup = QueueCleanup::new();
    cleanup.queue(&lease);
    let runs = Runs::default();
    let mesh = Mesh::amqp(mesh_config()).await.expect("RabbitMQ");
    let running = mesh
        .serve(reconciler(&name, 0, &runs))
        .await
        .expect("serve");
    assert!(wait_for_runs(&runs, 0, 3).await, "the timer never ran");
    // The broker closes the holder's connection; its consumer, the lease, goes with it.
    let holder = connection_consuming(&lease)
        .await
        .expect("the lease's holder");
    let close = holder.clone();
    let closed = tokio::task::spawn_blocking(move || {
        std::process::Command::new("rabbitmqctl")
            .args(["-q", "close_connection", &close, "a test cuts it"])
            .status()
            .expect("rabbitmqctl")
    })
    .await
    .expect("task");
    assert!(closed.success(), "rabbitmqctl close_connection: {closed:?}");
    let reconnected = wait_until(Duration::from_secs(15), || async {
        connection_consuming(&lease)
            .await
            .is_some_and(|now| now != holder)
    })
    .await;
    assert!(
        reconnected,
        "the lease was never taken again on a new connection"
    );
    let again = runs.count();
    assert!(
        wait_for_runs(&runs, again, 3).await,
        "no run after the reconnection"
    );
    running.stop().await;
    mesh.close().await;
}
