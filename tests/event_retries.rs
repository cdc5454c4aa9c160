//! Event retries and dead letters on the real RabbitMQ: a quorum subscription's retry queues
//! (the arguments RabbitMQ 3.10 needs for at-least-once dead-lettering), and `warren
//! dead-letters` through the real binary: list, replay (each dead letter handled exactly once)
//! and purge, with their dry runs. The schedule itself is in the conformance suite
//! (tests/conformance/events.rs), on both transports.

mod common;

use common::process::run;
use common::{QueueCleanup, mesh_config, raw_channel, unique, wait_until};
use mesh::amqp::{QueueType, dead_letter_queue, retry_queue};
use mesh::{
    Client, Mesh, MeshConfig, Payload, RetrySchedule, RpcError, RunningService, Service, State,
    Subscription,
};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the handler saw (the `id` of each event it handled), and whether it fails: while
/// `failing`, or for its next `fail_times` attempts.
#[derive(Clone, Default)]
struct Sink {
    handled: Arc<Mutex<Vec<i64>>>,
    failing: Arc<AtomicBool>,
    fail_times: Arc<AtomicUsize>,
}

impl Sink {
    fn handled(&self) -> Vec<i64> {
        self.handled.lock().expect("handled").clone()
    }
}

async fn handle(State(sink): State<Sink>, Payload(p): Payload<Value>) -> Result<(), RpcError> {
    let fail_once = sink
        .fail_times
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if fail_once || sink.failing.load(Ordering::SeqCst) {
        return Err(RpcError::internal("the index is down"));
    }
    sink.handled
        .lock()
        .expect("handled")
        .push(p["id"].as_i64().unwrap_or(-1));
    Ok(())
}

/// How many messages `queue` holds.
async fn depth(queue: &str) -> u32 {
    let channel = raw_channel().await;
    let passive = lapin::options::QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let declared = channel
        .queue_declare(queue.into(), passive, Default::default())
        .await
        .expect("the queue exists");
    let _ = channel.close(200, "done".into()).await;
    declared.message_count()
}

/// Runs `warren dead-letters ARGS` against the test broker.
async fn run_dead_letters(args: &[&str]) -> std::process::Output {
    let url = common::broker_url();
    let mut all = vec!["dead-letters"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--amqp", &url]);
    run(&all).await
}

/// Runs `warren dead-letters ARGS`, which must succeed; returns what it printed.
async fn dead_letters(args: &[&str]) -> String {
    let output = run_dead_letters(args).await;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "warren dead-letters {args:?}: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Runs `warren dead-letters ARGS`, which must fail; returns what it printed on stderr.
async fn dead_letters_failing(args: &[&str]) -> String {
    let output = run_dead_letters(args).await;
    assert!(
        !output.status.success(),
        "warren dead-letters {args:?} succeeded"
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A service named `name` handling `subscription` with a failing [`Sink`], on a mesh of
/// `config`, and a client of the subscription's source.
async fn failing_sink(
    config: MeshConfig,
    name: &str,
    subscription: Subscription,
) -> (Mesh, RunningService, Sink, Client) {
    let source = subscription.source.clone();
    let mesh = Mesh::amqp(config).await.expect("RabbitMQ must be running");
    let sink = Sink::default();
    sink.failing.store(true, Ordering::SeqCst);
    let running = mesh
        .serve(
            Service::new(name)
                .subscribe(subscription, handle)
                .with_state(sink.clone()),
        )
        .await
        .expect("serve (RabbitMQ takes the queues' arguments)");
    let client = mesh.client(&source).await.expect("client");
    (mesh, running, sink, client)
}

/// Dispatches `event_type` with `{"id": id}` for each of `ids`.
async fn dispatch(client: &Client, event_type: &str, ids: std::ops::RangeInclusive<i64>) {
    for id in ids {
        client
            .dispatch(event_type, json!({"id": id}))
            .await
            .expect("dispatch");
    }
}

#[tokio::test]
async fn quorum_retry_queues_bring_an_event_back_to_its_own_queue() {
    let source = unique("src");
    let name = unique("qsink");
    let subscription =
        Subscription::new(&source, "flaky").retry_after([Duration::from_millis(100)]);
    let queue = subscription.queue(&name, "");
    let mut cleanup = QueueCleanup::new();
    cleanup.events_of(&source);
    cleanup.queue(&queue);
    cleanup.queue_alone(&retry_queue(&queue, 100));
    let mut config = mesh_config();
    config.amqp.queue_type = QueueType::Quorum;
    let (mesh, running, sink, client) = failing_sink(config, &name, subscription).await;
    // The first attempt fails, the retry (back from the retry queue) succeeds.
    sink.failing.store(false, Ordering::SeqCst);
    sink.fail_times.store(1, Ordering::SeqCst);
    dispatch(&client, "flaky", 1..=1).await;
    assert!(
        wait_until(Duration::from_secs(10), || {
            let sink = sink.clone();
            async move { sink.handled() == [1] }
        })
        .await,
        "the retry never came back"
    );
    assert_eq!(running.stats().events_retried(), 1);
    assert_eq!(
        depth(&retry_queue(&queue, 100)).await,
        0,
        "declared, and empty"
    );
    assert_eq!(running.stats().events_dead_lettered(), 0);
    running.stop().await;
    mesh.close().await;
}

#[tokio::test]
async fn dead_letters_are_listed_replayed_once_and_purged() {
    let source = unique("src");
    let name = unique("dlsink");
    let subscription = Subscription::new(&source, "indexed").retry(RetrySchedule::never());
    let queue = subscription.queue(&name, "");
    let dlq = dead_letter_queue(&queue);
    let mut cleanup = QueueCleanup::new();
    cleanup.events_of(&source);
    cleanup.queue(&queue);
    // One worker: a replayed dead letter and a later event are handled in queue order.
    let config = MeshConfig {
        max_workers: 1,
        heartbeat: Duration::from_millis(200),
        ..mesh_config()
    };
    let (mesh, running, sink, client) = failing_sink(config, &name, subscription).await;
    dispatch(&client, "indexed", 1..=3).await;
    assert!(
        wait_until(Duration::from_secs(10), || {
            let n = running.stats().events_dead_lettered();
            async move { n == 3 }
        })
        .await
    );

    // Listed, and left where they are.
    let listed = dead_letters(&["list", "--queue", &queue]).await;
    assert!(
        listed.contains(&format!("{dlq}: 3 dead letter(s)")),
        "{listed}"
    );
    assert!(
        listed.contains(&format!("#1 {source}.indexed attempts=1")),
        "{listed}"
    );
    assert!(listed.contains("Internal: the index is down"), "{listed}");
    assert!(listed.contains(r#"{"id":1}"#), "{listed}");
    assert_eq!(depth(&dlq).await, 3);
    // Without a queue: the dead-letter queues live services announce.
    let all = dead_letters(&["list", "--listen-ms", "1500"]).await;
    assert!(all.contains(&format!("3  {dlq}")), "{all}");

    let dry = dead_letters(&["replay", "--queue", &dlq, "--dry-run"]).await;
    assert!(
        dry.contains(&format!(
            "would replay 3 of 3 dead letter(s) from {dlq} to {queue}"
        )),
        "{dry}"
    );
    assert_eq!(depth(&dlq).await, 3);
    assert!(sink.handled().is_empty());

    sink.failing.store(false, Ordering::SeqCst);
    let replayed = dead_letters(&["replay", "--queue", &dlq]).await;
    assert!(replayed.contains("replayed 3 of 3"), "{replayed}");
    assert_eq!(depth(&dlq).await, 0);
    // A later event comes behind the replayed ones: once it is handled, a duplicate would have
    // been too.
    dispatch(&client, "indexed", 4..=4).await;
    assert!(
        wait_until(Duration::from_secs(10), || {
            let sink = sink.clone();
            async move { sink.handled().contains(&4) }
        })
        .await
    );
    let mut handled = sink.handled();
    handled.sort_unstable();
    assert_eq!(
        handled,
        [1, 2, 3, 4],
        "each dead letter handled exactly once"
    );

    sink.failing.store(true, Ordering::SeqCst);
    dispatch(&client, "indexed", 5..=6).await;
    assert!(
        wait_until(Duration::from_secs(10), || {
            let n = running.stats().events_dead_lettered();
            async move { n == 5 }
        })
        .await
    );
    let dry = dead_letters(&["purge", "--queue", &dlq, "--dry-run"]).await;
    assert!(dry.contains("would purge 2 dead letter(s)"), "{dry}");
    assert_eq!(depth(&dlq).await, 2);
    let purged = dead_letters(&["purge", "--queue", &dlq]).await;
    assert!(purged.contains("purged 2 dead letter(s)"), "{purged}");
    assert_eq!(depth(&dlq).await, 0);
    running.stop().await;
    mesh.close().await;
}

#[tokio::test]
async fn missing_queues_are_refused_and_nothing_moves() {
    let absent = unique("absent");
    let stderr = dead_letters_failing(&["purge", "--queue", &absent]).await;
    assert!(
        stderr.contains(&format!("there is no queue `{absent}.dead-letter`")),
        "{stderr}"
    );

    // A dead letter whose subscription queue is gone stays where it is.
    let queue = unique("gone");
    let dlq = dead_letter_queue(&queue);
    let mut cleanup = QueueCleanup::new();
    cleanup.queue(&queue);
    let channel = raw_channel().await;
    channel
        .queue_declare(dlq.as_str().into(), Default::default(), Default::default())
        .await
        .expect("declare");
    channel
        .basic_publish(
            "".into(),
            dlq.as_str().into(),
            Default::default(),
            br#"{"id":1}"#,
            Default::default(),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    assert!(wait_until(Duration::from_secs(5), || async { depth(&dlq).await == 1 }).await);
    let stderr = dead_letters_failing(&["replay", "--queue", &dlq]).await;
    assert!(
        stderr.contains(&format!("there is no queue `{queue}`")),
        "{stderr}"
    );
    assert_eq!(depth(&dlq).await, 1);
}
