//! Retry schedules: a handler failing twice on a schedule of delays is handled on its third
//! attempt, each attempt no earlier than its delay, and the retries reach no other subscriber
//! (on AMQP they go through the subscription's retry queues, never `<source>.events`).

use crate::common::{Harness, Kind, unique, wait_until};
use mesh::{RpcError, Service, State, Subscription};
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use warren_gateway::GatewayConfig;

/// How many events a handler got.
#[derive(Clone, Default)]
struct Seen(Arc<AtomicUsize>);

async fn count(State(seen): State<Seen>) -> Result<(), RpcError> {
    seen.0.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

/// When each attempt of the flaky handler started, and how many times it fails first.
#[derive(Clone)]
struct Flaky {
    started: Arc<Mutex<Vec<Instant>>>,
    failures: usize,
}

async fn flaky(State(f): State<Flaky>) -> Result<(), RpcError> {
    let mut started = f.started.lock().expect("started");
    started.push(Instant::now());
    if started.len() <= f.failures {
        return Err(RpcError::internal("not yet"));
    }
    Ok(())
}

pub async fn a_handler_failing_twice_is_handled_on_the_third_attempt_after_its_delays(kind: Kind) {
    let mut h = Harness::on(kind, GatewayConfig::default()).await;
    let source = unique("src");
    let name = unique("sink");
    let delays = [Duration::from_millis(200), Duration::from_millis(400)];
    let subscription = Subscription::new(&source, "flaky").retry_after(delays);
    let queue = subscription.queue(&name, "");
    h.cleanup.events_of(&source);
    h.cleanup.queue(&queue);
    for ms in [200, 400] {
        h.cleanup.queue_alone(&mesh::amqp::retry_queue(&queue, ms));
    }
    // Another service on the same events, as a nameko peer would be: it must see the event
    // once, however often the flaky one retries.
    let other = unique("other");
    h.cleanup
        .queue(&Subscription::new(&source, "flaky").queue(&other, ""));
    let flaky_state = Flaky {
        started: Arc::default(),
        failures: 2,
    };
    h.serve(
        Service::new(name.clone())
            .subscribe(subscription, flaky)
            .with_state(flaky_state.clone()),
    )
    .await;
    let seen = Seen::default();
    h.serve(
        Service::new(other)
            .on_event(&source, "flaky", count)
            .with_state(seen.clone()),
    )
    .await;

    let client = h.mesh.client(&source).await.expect("client");
    client
        .dispatch("flaky", json!({"id": 1}))
        .await
        .expect("dispatch");
    let running = &h.services[0];
    assert!(
        wait_until(Duration::from_secs(15), || {
            let n = running.stats().events_handled();
            async move { n == 1 }
        })
        .await,
        "not handled: {} attempts",
        flaky_state.started.lock().expect("started").len()
    );
    let started = flaky_state.started.lock().expect("started").clone();
    assert_eq!(started.len(), 3, "handled on the third attempt");
    for (n, delay) in delays.iter().enumerate() {
        let waited = started[n + 1] - started[n];
        assert!(waited >= *delay, "attempt {} after {waited:?}", n + 2);
        assert!(waited < *delay + Duration::from_secs(5), "{waited:?}");
    }
    assert_eq!(running.stats().events_retried(), 2);
    assert_eq!(running.stats().events_dead_lettered(), 0);
    assert_eq!(
        seen.0.load(Ordering::SeqCst),
        1,
        "the other subscriber saw a retry"
    );
}
