//! Faults against the real RabbitMQ (docs/architecture.md §6): the broker killed under load,
//! a service instance killed mid-request, graceful stops of a service and of the gateway.
//!
//! These restart the broker, so `scripts/test.sh` runs them on their own, one at a time, after
//! the other suites (`cargo nextest run --test faults --test-threads 1`). They act on the node
//! `rabbitmqctl` reaches (RABBITMQ_NODENAME) and call through AMQP_URL: point both at a second
//! node to run them while other suites use the first.

mod common;

use common::process::{kill, spawn, terminate};
use common::{Harness, unique, wait_until};
use serde_json::json;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::time::sleep;

/// One answered (or failed) HTTP request of a load loop.
#[derive(Debug, Clone)]
struct Outcome {
    status: Option<u16>,
    elapsed: Duration,
    error: Option<String>,
    /// The problem's type, for failures.
    kind: Option<String>,
}

/// HTTP load on `url` from `workers` loops until `stop`; every outcome is kept.
fn load(
    url: String,
    timeout_ms: u64,
    workers: usize,
    stop: Arc<AtomicBool>,
) -> Arc<Mutex<Vec<Outcome>>> {
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    for _ in 0..workers {
        let (url, stop, outcomes) = (url.clone(), stop.clone(), outcomes.clone());
        tokio::spawn(async move {
            // Generous client timeout: a request the gateway never answers shows up as an error.
            let http = reqwest::Client::builder()
                .timeout(Duration::from_millis(timeout_ms + 5_000))
                .build()
                .expect("client");
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let r = http
                    .post(&url)
                    .header("x-timeout-ms", timeout_ms.to_string())
                    .json(&json!({"name": "load"}))
                    .send()
                    .await;
                let outcome = match r {
                    Ok(r) => {
                        let status = Some(r.status().as_u16());
                        let body: serde_json::Value = r.json().await.unwrap_or_default();
                        Outcome {
                            status,
                            elapsed: started.elapsed(),
                            error: None,
                            kind: body["type"].as_str().map(str::to_owned),
                        }
                    }
                    Err(e) => Outcome {
                        status: None,
                        elapsed: started.elapsed(),
                        error: Some(e.to_string()),
                        kind: None,
                    },
                };
                let failed = outcome.status != Some(200);
                outcomes.lock().expect("outcomes").push(outcome);
                if failed {
                    // Do not spin on instant 503s during the outage.
                    sleep(Duration::from_millis(20)).await;
                }
            }
        });
    }
    outcomes
}

fn count(outcomes: &Mutex<Vec<Outcome>>, f: impl Fn(&Outcome) -> bool) -> usize {
    outcomes
        .lock()
        .expect("outcomes")
        .iter()
        .filter(|o| f(o))
        .count()
}

/// Waits until the broker accepts AMQP connections again.
async fn broker_back() {
    let url = common::broker_url();
    let back = wait_until(Duration::from_secs(90), || {
        let url = url.clone();
        async move {
            match lapin::Connection::connect(&url, lapin::ConnectionProperties::default()).await {
                Ok(c) => {
                    let _ = c.close(200, "probe".into()).await;
                    true
                }
                Err(_) => false,
            }
        }
    })
    .await;
    assert!(back, "the broker did not come back");
}

async fn ready(h: &Harness) -> bool {
    match h.http.get(format!("{}/readyz", h.base)).send().await {
        Ok(r) => r.status() == 200,
        Err(_) => false,
    }
}

/// The whole outage story under load, with `outage` taking the broker down and `restore`
/// bringing it back.
async fn survive_broker_loss(
    outage: impl FnOnce() + Send + 'static,
    restore: impl FnOnce() + Send + 'static,
) {
    // Logs (RUST_LOG, warnings by default) explain a failure here.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
    let mut h = Harness::start().await;
    let greeter = unique("greeter");
    h.serve(greeter::service_named(&greeter)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let timeout_ms = 2_000;
    let outcomes = load(
        format!("{}/rpc/{greeter}/hello", h.base),
        timeout_ms,
        8,
        stop.clone(),
    );
    assert!(
        wait_until(Duration::from_secs(10), || async {
            count(&outcomes, |o| o.status == Some(200)) >= 100
        })
        .await
    );

    // On a blocking thread: rabbitmqctl takes seconds, and the gateway under test shares this
    // test's runtime.
    tokio::task::spawn_blocking(outage).await.expect("outage");
    assert!(
        wait_until(Duration::from_secs(10), || async { !ready(&h).await }).await,
        "/readyz stayed ready"
    );
    assert!(
        wait_until(Duration::from_secs(10), || async {
            count(&outcomes, |o| matches!(o.status, Some(503 | 504))) >= 20
        })
        .await,
        "no 503/504 during the outage"
    );
    let failures_before = count(&outcomes, |o| o.status != Some(200));
    tokio::task::spawn_blocking(restore).await.expect("restore");
    broker_back().await;
    let restored = Instant::now();

    // Recovered by itself: 100 successes in a row, within 10 s of the broker's return.
    let recovered = wait_until(Duration::from_secs(10), || async {
        let all = outcomes.lock().expect("outcomes");
        all.len() > 100 && all[all.len() - 100..].iter().all(|o| o.status == Some(200))
    })
    .await;
    let recovery = restored.elapsed();
    stop.store(true, Ordering::Relaxed);
    assert!(
        recovered,
        "no recovery: {:?}",
        outcomes.lock().expect("outcomes").last()
    );
    assert!(
        wait_until(Duration::from_secs(10), || async { ready(&h).await }).await,
        "/readyz never came back"
    );

    let all = outcomes.lock().expect("outcomes").clone();
    // Every request was answered, in time, with 200, 503 or 504: no hang, no reset.
    for o in &all {
        assert!(o.error.is_none(), "a request got no answer: {o:?}");
        assert!(matches!(o.status, Some(200 | 503 | 504)), "{o:?}");
        assert!(
            o.elapsed <= Duration::from_millis(timeout_ms + 1_000),
            "answered late: {o:?}"
        );
    }
    assert!(
        wait_until(Duration::from_secs(5), || async {
            h.client.stats().pending == 0
        })
        .await
    );
    // The reconnection is counted on /metrics.
    let reconnects = metric(&h.http, &h.base, "warren_broker_reconnects_total").await;
    assert!(reconnects >= 1.0, "no reconnection counted: {reconnects}");
    let mut kinds: Vec<&str> = all.iter().filter_map(|o| o.kind.as_deref()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    println!(
        "broker loss: {} requests, {} failed during the outage ({kinds:?}), recovered {:?} after the broker returned",
        all.len(),
        failures_before,
        recovery
    );
}

/// Runs `rabbitmqctl` with `args` (on the node RABBITMQ_NODENAME names, the local broker by
/// default) and returns its output.
fn rabbitmqctl(args: &[&str]) -> String {
    let output = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl");
    assert!(
        output.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The broker is killed (SIGKILL of its Erlang VM) under load, then started again.
#[tokio::test]
async fn the_broker_killed_under_load() {
    survive_broker_loss(
        || {
            // The pid of the node's VM, e.g. `"4242"`: only this broker dies, not any other
            // node on the machine.
            let pid = rabbitmqctl(&["eval", "os:getpid()."]);
            let pid = pid.trim().trim_matches('"');
            let status = Command::new("kill")
                .args(["-9", pid])
                .status()
                .expect("kill");
            assert!(status.success(), "cannot kill the broker (pid {pid})");
        },
        || {
            let status = Command::new("rabbitmq-server")
                .arg("-detached")
                .status()
                .expect("rabbitmq-server");
            assert!(status.success());
        },
    )
    .await;
}

/// The broker's application is stopped under load (`rabbitmqctl stop_app`: every connection
/// is closed with CONNECTION_FORCED, the port closes), then started again.
#[tokio::test]
async fn the_broker_stopped_under_load() {
    survive_broker_loss(
        || {
            rabbitmqctl(&["stop_app"]);
        },
        || {
            rabbitmqctl(&["start_app"]);
        },
    )
    .await;
}

/// A `warren run greeting_service` child with an ops port; returns it and its ops address.
fn greeter_process(workers: &str) -> (common::process::Spawned, String) {
    let amqp = common::broker_url();
    let (child, first) = spawn(&[
        "run",
        "greeting_service",
        "--max-workers",
        workers,
        "--ops-listen",
        "127.0.0.1:0",
        "--amqp",
        &amqp,
    ]);
    let ops = first
        .split("ops on http://")
        .nth(1)
        .map(str::trim)
        .unwrap_or_else(|| panic!("{first}"))
        .to_owned();
    (child, ops)
}

async fn busy_workers(http: &reqwest::Client, ops: &str) -> u64 {
    let series = "warren_service_busy_workers{service=\"greeting_service\"}";
    metric(http, &format!("http://{ops}"), series).await as u64
}

/// The value of `series` on `base`'s `/metrics` (0 when it cannot be read or is absent).
async fn metric(http: &reqwest::Client, base: &str, series: &str) -> f64 {
    let Ok(r) = http.get(format!("{base}/metrics")).send().await else {
        return 0.0;
    };
    let text = r.text().await.unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
}

/// Starts `count` calls of `greeting_service.slow(ms)`, each with a 30 s deadline.
fn slow_calls(
    client: &mesh::Client,
    count: usize,
    ms: u64,
) -> Vec<tokio::task::JoinHandle<Result<serde_json::Value, mesh::CallError>>> {
    (0..count)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                let deadline = mesh::Deadline::after(Duration::from_secs(30));
                let context = mesh::CallContext::default().with_deadline(deadline);
                let args = common::kwargs(json!({"ms": ms}));
                client
                    .rpc("greeting_service")
                    .with_context(context)
                    .call("slow", args)
                    .await
            })
        })
        .collect()
}

#[tokio::test]
async fn a_service_killed_mid_request_loses_nothing() {
    let mesh = mesh::Mesh::amqp(common::mesh_config())
        .await
        .expect("broker");
    let client = mesh.client("faults").await.expect("client");
    let (a, a_ops) = greeter_process("2");
    let (b, _) = greeter_process("2");
    let http = reqwest::Client::new();
    let calls = slow_calls(&client, 6, 1500);
    assert!(
        wait_until(Duration::from_secs(10), || async {
            busy_workers(&http, &a_ops).await >= 1
        })
        .await,
        "instance A never got work"
    );
    kill(a);
    // A's unacknowledged requests go back to the queue and B answers them.
    for call in calls {
        assert_eq!(call.await.expect("task"), Ok(json!(1500)));
    }
    assert_eq!(client.stats().pending, 0);
    terminate(b, Duration::from_secs(15));
    mesh.close().await;
}

#[tokio::test]
async fn a_service_stopped_under_load_loses_nothing() {
    let mesh = mesh::Mesh::amqp(common::mesh_config())
        .await
        .expect("broker");
    let client = mesh.client("faults").await.expect("client");
    let (a, a_ops) = greeter_process("4");
    let http = reqwest::Client::new();
    let calls = slow_calls(&client, 40, 200);
    assert!(
        wait_until(Duration::from_secs(10), || async {
            busy_workers(&http, &a_ops).await >= 1
        })
        .await
    );
    // SIGTERM: A finishes what it started and returns the rest to the queue; B serves it.
    let status = tokio::task::spawn_blocking(move || terminate(a, Duration::from_secs(15)))
        .await
        .expect("task");
    assert!(status.success());
    let (b, _) = greeter_process("4");
    for call in calls {
        assert_eq!(call.await.expect("task"), Ok(json!(200)));
    }
    terminate(b, Duration::from_secs(15));
    mesh.close().await;
}

#[tokio::test]
async fn a_stopped_gateway_drains_in_flight_calls() {
    let mut h = Harness::start().await;
    let greeter = unique("greeter");
    h.serve(greeter::service_named(&greeter)).await;
    let amqp = common::broker_url();
    let (gateway, first) = spawn(&["gateway", "--listen", "127.0.0.1:0", "--amqp", &amqp]);
    let address = common::process::http_address(&first);
    let http = reqwest::Client::new();
    let calls: Vec<_> = (0..3)
        .map(|_| {
            let (http, url) = (http.clone(), format!("http://{address}/rpc/{greeter}/slow"));
            tokio::spawn(async move {
                http.post(url)
                    .json(&json!({"ms": 1000}))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    let pending = wait_until(Duration::from_secs(10), || {
        let (http, address) = (http.clone(), address.clone());
        async move {
            let text = match http.get(format!("http://{address}/metrics")).send().await {
                Ok(r) => r.text().await.unwrap_or_default(),
                Err(_) => return false,
            };
            text.lines().any(|l| l == "warren_gateway_pending_calls 3")
        }
    })
    .await;
    assert!(pending, "the calls never became pending");
    let stopping = tokio::task::spawn_blocking(move || terminate(gateway, Duration::from_secs(20)));
    // It stops accepting at once...
    assert!(
        wait_until(Duration::from_secs(5), || {
            let (http, address) = (reqwest::Client::new(), address.clone());
            async move {
                http.get(format!("http://{address}/healthz"))
                    .send()
                    .await
                    .is_err()
            }
        })
        .await,
        "the gateway kept accepting"
    );
    // ...and answers what it had.
    for call in calls {
        assert_eq!(call.await.expect("task").expect("answered"), 200);
    }
    assert!(stopping.await.expect("task").success());
}

/// Drains `queue` with basic.get and returns the routing keys of its messages.
async fn routing_keys_in(channel: &lapin::Channel, queue: &str) -> Vec<String> {
    let mut keys = Vec::new();
    while let Some(message) = channel
        .basic_get(
            queue.into(),
            lapin::options::BasicGetOptions { no_ack: true },
        )
        .await
        .expect("basic.get")
    {
        keys.push(message.delivery.routing_key.to_string());
    }
    keys
}

/// A spy queue bound with `#` to the RPC exchange sees everything the gateway publishes while
/// a battery of bad requests goes through it: nothing but the one valid call's
/// `<service>.<method>` (and replies to callback queues). It binds `#`, so it would see every
/// other suite's calls too: it belongs here, in the phase that runs alone.
#[tokio::test]
async fn bad_input_never_reaches_the_broker() {
    let mut h = Harness::start().await;
    let greeter = unique("greeter");
    h.cleanup.service(&greeter);
    h.serve(greeter::service_named(&greeter)).await;
    let channel = common::raw_channel().await;
    let spy = unique("spy");
    channel
        .queue_declare(
            spy.as_str().into(),
            lapin::options::QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .expect("declare the spy");
    channel
        .queue_bind(
            spy.as_str().into(),
            mesh::amqp::DEFAULT_RPC_EXCHANGE.into(),
            "#".into(),
            Default::default(),
            Default::default(),
        )
        .await
        .expect("bind the spy");

    let post = |path: String, content_type: &'static str, body: Vec<u8>| {
        h.http
            .post(format!("{}{path}", h.base))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let hello = format!("/rpc/{greeter}/hello");
    let mut statuses = Vec::new();
    // Names that are not names: wildcards, dots (plain and encoded), slashes, spaces, unicode,
    // empty, too long, a leading digit.
    let long = "a".repeat(129);
    for path in [
        format!("/rpc/{greeter}/*"),
        format!("/rpc/{greeter}/%23"),
        format!("/rpc/#/{greeter}"),
        format!("/rpc/{greeter}.hello/x"),
        format!("/rpc/{greeter}/hello.x"),
        format!("/rpc/{greeter}%2ehello/x"),
        format!("/rpc/{greeter}/hel%2Flo"),
        format!("/rpc/{greeter}/hel%20lo"),
        format!("/rpc/{greeter}/h%C3%A9llo"),
        format!("/rpc//{greeter}"),
        format!("/rpc/{greeter}/"),
        format!("/rpc/{long}/hello"),
        format!("/rpc/9{greeter}/hello"),
        format!("/rpc/{greeter}/hello/extra"),
    ] {
        let r = post(path.clone(), "application/json", b"{}".to_vec())
            .await
            .expect("send");
        statuses.push((path, r.status().as_u16()));
    }
    // Bodies that are not arguments, on a valid name. (An empty body is a call without
    // arguments, so it is not among them.)
    let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("application/json", b"{\"name\": ".to_vec()),
        ("application/json", b"42".to_vec()),
        ("application/json", vec![b'"', 0xff, 0xfe, b'"']),
        ("application/json", nested.into_bytes()),
        ("application/json", b"{\"name\": 1e999999}".to_vec()),
        ("text/plain", b"{\"name\": \"x\"}".to_vec()),
        ("application/json", vec![b' '; 17 * 1024 * 1024]),
    ];
    for (content_type, body) in bodies {
        let r = post(hello.clone(), content_type, body).await.expect("send");
        let status = r.status().as_u16();
        let problem: serde_json::Value = r.json().await.unwrap_or_default();
        let what = format!("{hello} ({content_type}): {}", problem["type"]);
        statuses.push((what, status));
    }
    for (what, status) in &statuses {
        assert!((400..500).contains(status), "{what}: {status}");
    }
    // Then one valid call, which the spy must see exactly once.
    let r = h.post(&greeter, "hello", json!({"name": "spy"})).await;
    assert_eq!(r.status(), 200);

    // The gateway publishes with confirms, and the broker confirms a message once it is in every
    // queue it routes to: by the time of the 200, the spy holds everything.
    let keys = routing_keys_in(&channel, &spy).await;
    let requests: Vec<&String> = keys
        .iter()
        .filter(|k| !k.starts_with("rpc.reply-"))
        .collect();
    assert_eq!(
        requests,
        [&format!("{greeter}.hello")],
        "routing keys seen: {keys:?}"
    );
    println!(
        "bad input: {} requests answered 4xx, none published; the spy saw {keys:?}",
        statuses.len()
    );
    println!("{statuses:#?}");
}

/// An event stream stays open through a broker restart: its subscription is declared again on
/// the new connection, and events dispatched after that reach the same client.
#[tokio::test]
async fn an_event_stream_resubscribes_after_a_broker_restart() {
    let h = Harness::start().await;
    let source = unique("src");
    let response = h
        .http
        .get(format!("{}/events/{source}/tick", h.base))
        .send()
        .await
        .expect("send");
    let mut stream = common::sse::Sse::new(response);
    let dispatch = |n: u64| {
        let (mesh, source) = (h.mesh.clone(), source.clone());
        async move {
            let client = mesh.client(&source).await.ok()?;
            client.dispatch("tick", json!({"n": n})).await.ok()
        }
    };
    dispatch(0).await.expect("dispatch");
    let first = stream.next_event(Duration::from_secs(10)).await;
    assert_eq!(first.map(|f| f.json()), Some(json!({"n": 0})));

    rabbitmqctl(&["stop_app"]);
    rabbitmqctl(&["start_app"]);
    broker_back().await;
    // Events dispatched while the gateway's queue is being declared again are not its to see
    // (the queue is transient); the first one after it is.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut resubscribed = false;
    for n in 1.. {
        if Instant::now() > deadline {
            break;
        }
        if dispatch(n).await.is_none() {
            sleep(Duration::from_millis(100)).await;
            continue;
        }
        if let Some(frame) = stream.next_event(Duration::from_millis(500)).await {
            // One sent after the restart (a late one of an earlier round counts too).
            let got = frame.json()["n"].as_u64().unwrap_or(0);
            assert!((1..=n).contains(&got), "{frame:?}");
            resubscribed = true;
            break;
        }
    }
    assert!(
        resubscribed,
        "no event through the same stream after the restart"
    );
}
