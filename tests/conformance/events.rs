//! Events and service-to-service calls: the three handler types with two instances, delivery
//! after a restart, one retry then dead-letter, context propagation through `ctx.rpc` and
//! `ctx.dispatch`, and deadlines carried along a call chain.

use crate::common::{Harness, Kind, assert_problem, mesh_config, unique, wait_until};
use mesh::{
    Args, Ctx, MeshConfig, Payload, RpcError, RunningService, Service, State, Subscription,
};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use warren_gateway::GatewayConfig;

/// What an instance's event handlers saw: (instance, event type, payload).
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<(String, String, Value)>>>);

impl Log {
    fn push(&self, instance: &str, event: &str, payload: Value) {
        self.0
            .lock()
            .expect("log")
            .push((instance.into(), event.into(), payload));
    }

    fn of(&self, event: &str) -> Vec<(String, Value)> {
        let log = self.0.lock().expect("log");
        log.iter()
            .filter(|(_, e, _)| e == event)
            .map(|(i, _, p)| (i.clone(), p.clone()))
            .collect()
    }
}

#[derive(Clone)]
struct Recorder {
    instance: String,
    log: Log,
}

async fn pooled(State(r): State<Recorder>, Payload(p): Payload<Value>) -> Result<(), RpcError> {
    r.log.push(&r.instance, "pooled", p);
    Ok(())
}

async fn broadcasted(
    State(r): State<Recorder>,
    Payload(p): Payload<Value>,
) -> Result<(), RpcError> {
    r.log.push(&r.instance, "broadcasted", p);
    Ok(())
}

async fn single(State(r): State<Recorder>, Payload(p): Payload<Value>) -> Result<(), RpcError> {
    r.log.push(&r.instance, "single", p);
    Ok(())
}

/// A sink instance (`instance` names its broadcast queue) subscribed to `source` with all
/// three handler types.
async fn sink(
    h: &mut Harness,
    source: &str,
    name: &str,
    instance: &str,
    log: &Log,
) -> RunningService {
    let config = MeshConfig {
        instance_id: instance.to_owned(),
        ..mesh_config()
    };
    let mesh = h.instance(config).await;
    let recorder = Recorder {
        instance: instance.to_owned(),
        log: log.clone(),
    };
    let service = Service::new(name)
        .on_event(source, "pooled", pooled)
        .subscribe(
            Subscription::new(source, "broadcasted").broadcast(),
            broadcasted,
        )
        .subscribe(Subscription::new(source, "single").singleton(), single)
        .with_state(recorder);
    h.serve_on(&mesh, service).await
}

/// Registers the sink's queues and the source's exchange for cleanup.
fn clean_up_sink(h: &mut Harness, source: &str, name: &str, instances: &[&str]) {
    h.cleanup.events_of(source);
    h.cleanup
        .queue(&Subscription::new(source, "pooled").queue(name, ""));
    h.cleanup.queue(
        &Subscription::new(source, "single")
            .singleton()
            .queue(name, ""),
    );
    for instance in instances {
        h.cleanup.queue(
            &Subscription::new(source, "broadcasted")
                .broadcast()
                .queue(name, instance),
        );
    }
}

/// Dispatches `event` from `source` with `payload`, as that service would.
async fn dispatch(h: &Harness, source: &str, event: &str, payload: Value) {
    let client = h.mesh.client(source).await.expect("client");
    client.dispatch(event, payload).await.expect("dispatch");
}

pub async fn pool_once_broadcast_per_instance_singleton_once(kind: Kind) {
    let mut h = Harness::on(kind, GatewayConfig::default()).await;
    let source = unique("src");
    let name = unique("sink");
    clean_up_sink(&mut h, &source, &name, &["a", "b"]);
    let log = Log::default();
    let a = sink(&mut h, &source, &name, "a", &log).await;
    let b = sink(&mut h, &source, &name, "b", &log).await;

    let client = h.mesh.client(&source).await.expect("client");
    for n in 0..10 {
        for event in ["pooled", "broadcasted", "single"] {
            client
                .dispatch(event, json!({"n": n}))
                .await
                .expect("dispatch");
        }
    }
    // Every dispatch has been accepted; once 40 deliveries are in and no handler runs, a
    // duplicate would have shown up among them.
    let settled = wait_until(Duration::from_secs(10), || {
        let log = log.clone();
        let idle = a.stats().busy() == 0 && b.stats().busy() == 0;
        async move {
            let total =
                log.of("pooled").len() + log.of("single").len() + log.of("broadcasted").len();
            idle && total >= 40
        }
    })
    .await;
    assert!(settled, "events did not settle");

    assert_eq!(log.of("pooled").len(), 10, "service pool: once in total");
    assert_eq!(log.of("single").len(), 10, "singleton: once in total");
    let broadcast = log.of("broadcasted");
    assert_eq!(broadcast.len(), 20, "broadcast: once per instance");
    for instance in ["a", "b"] {
        let mut seen: Vec<i64> = broadcast
            .iter()
            .filter(|(i, _)| i == instance)
            .filter_map(|(_, p)| p["n"].as_i64())
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..10).collect::<Vec<_>>(), "instance {instance}");
    }
    let mut pooled_ns: Vec<i64> = log
        .of("pooled")
        .iter()
        .filter_map(|(_, p)| p["n"].as_i64())
        .collect();
    pooled_ns.sort_unstable();
    assert_eq!(pooled_ns, (0..10).collect::<Vec<_>>());
}

pub async fn events_dispatched_while_a_service_is_down_arrive_after_restart(kind: Kind) {
    let mut h = Harness::on(kind, GatewayConfig::default()).await;
    let source = unique("src");
    let name = unique("sink");
    clean_up_sink(&mut h, &source, &name, &["a"]);
    let log = Log::default();
    let first = sink(&mut h, &source, &name, "a", &log).await;
    first.stop().await;

    for n in 0..20 {
        dispatch(&h, &source, "pooled", json!({"n": n})).await;
        dispatch(&h, &source, "broadcasted", json!({"n": n})).await;
    }
    assert!(log.of("pooled").is_empty());

    // Back under the same instance id: the durable queues kept everything.
    let _second = sink(&mut h, &source, &name, "a", &log).await;
    let log2 = log.clone();
    assert!(
        wait_until(Duration::from_secs(10), || {
            let log = log2.clone();
            async move { log.of("pooled").len() == 20 && log.of("broadcasted").len() == 20 }
        })
        .await,
        "pooled {} broadcast {}",
        log.of("pooled").len(),
        log.of("broadcasted").len()
    );
}

#[derive(Clone, Default)]
struct Attempts(Arc<AtomicUsize>);

async fn always_fails(State(a): State<Attempts>) -> Result<(), RpcError> {
    a.0.fetch_add(1, Ordering::SeqCst);
    Err(RpcError::internal("cannot index this"))
}

pub async fn a_failing_handler_is_retried_once_then_dead_lettered(kind: Kind) {
    let mut h = Harness::on(kind, GatewayConfig::default()).await;
    let source = unique("src");
    let name = unique("sink");
    let subscription = Subscription::new(&source, "doomed");
    h.cleanup.events_of(&source);
    h.cleanup.queue(&subscription.queue(&name, ""));
    let attempts = Attempts::default();
    let service = Service::new(name.clone())
        .subscribe(subscription, always_fails)
        .with_state(attempts.clone());
    h.serve(service).await;

    dispatch(&h, &source, "doomed", json!({"id": 7})).await;
    let running = &h.services[0];
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
    assert_eq!(running.stats().events_handled(), 0);
}

async fn stack(ctx: Ctx) -> Result<Vec<String>, RpcError> {
    Ok(ctx.call_id_stack().to_vec())
}

#[derive(Deserialize, utoipa::ToSchema)]
struct Target {
    target: String,
}

/// Calls `target.stack` and returns what it saw, with the typed proxy.
async fn relay(ctx: Ctx, Args(t): Args<Target>) -> Result<Vec<String>, RpcError> {
    Ok(ctx.rpc(&t.target).call_typed("stack", &json!({})).await?)
}

#[derive(Deserialize, utoipa::ToSchema)]
struct Chain {
    target: String,
    ms: u64,
}

/// Calls `target.slow(ms)` with this call's deadline.
async fn chain(ctx: Ctx, Args(c): Args<Chain>) -> Result<Value, RpcError> {
    Ok(ctx.rpc(&c.target).call("slow", json!({"ms": c.ms})).await?)
}

pub async fn a_call_through_two_services_carries_the_request_id_stack(kind: Kind) {
    let mut h = Harness::on(kind, GatewayConfig::default()).await;
    let front = unique("front");
    let back = unique("back");
    h.serve(Service::new(front.clone()).rpc("relay", relay))
        .await;
    h.serve(Service::new(back.clone()).rpc("stack", stack))
        .await;

    let r = h
        .http
        .post(format!("{}/rpc/{front}/relay", h.base))
        .header("x-request-id", "req-chain-1")
        .json(&json!({"target": back}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let stack: Vec<String> = r.json().await.expect("json");
    assert_eq!(stack.len(), 3, "{stack:?}");
    assert_eq!(stack[0], "req-chain-1");
    assert!(
        stack[1].starts_with(&format!("{front}.relay.")),
        "{stack:?}"
    );
    assert!(stack[2].starts_with(&format!("{back}.stack.")), "{stack:?}");

    // A failed inner call comes back through the outer service as its dependency failing.
    let r = h
        .post(&front, "relay", json!({"target": unique("nobody")}))
        .await;
    let body = assert_problem(r, 503, "unavailable").await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or("")
            .contains("unknown service"),
        "{body}"
    );
}

#[derive(Clone, Default)]
struct Work(Arc<AtomicUsize>);

async fn work(State(w): State<Work>) -> Result<(), RpcError> {
    w.0.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

#[derive(Deserialize, utoipa::ToSchema)]
struct Block {
    ms: u64,
}

async fn block(Args(b): Args<Block>) -> Result<(), RpcError> {
    tokio::time::sleep(Duration::from_millis(b.ms)).await;
    Ok(())
}

/// Calls `target.work` with this call's deadline.
async fn chain_work(ctx: Ctx, Args(t): Args<Target>) -> Result<Value, RpcError> {
    Ok(ctx.rpc(&t.target).call("work", json!({})).await?)
}

pub async fn the_deadline_travels_down_the_chain(kind: Kind) {
    let mut h = Harness::on(kind, GatewayConfig::default()).await;
    let front = unique("front");
    let greeter = unique("greeter");
    h.serve(
        Service::new(front.clone())
            .rpc("chain", chain)
            .rpc("chain_work", chain_work),
    )
    .await;
    h.serve(greeter::service_named(&greeter)).await;

    // gateway -> front -> greeter.slow(2000) with 300 ms: the gateway answers 504 in time.
    let started = Instant::now();
    let r = h
        .http
        .post(format!("{}/rpc/{front}/chain", h.base))
        .header("x-timeout-ms", "300")
        .json(&json!({"target": greeter, "ms": 2000}))
        .send()
        .await
        .expect("send");
    let elapsed = started.elapsed();
    assert_problem(r, 504, "deadline-exceeded").await;
    assert!(elapsed < Duration::from_millis(1000), "{elapsed:?}");

    // B skips work whose deadline passed while it waited: a one-worker back end is kept busy
    // past the deadline of a chained call queued behind it.
    let back = unique("back");
    let counter = Work::default();
    let one_worker = MeshConfig {
        max_workers: 1,
        ..mesh_config()
    };
    let back_mesh = h.instance(one_worker).await;
    let back_service = Service::new(back.clone())
        .rpc("block", block)
        .rpc("work", work)
        .with_state(counter.clone());
    let running = h.serve_on(&back_mesh, back_service).await;
    let blocker = {
        let (client, back) = (h.client.clone(), back.clone());
        tokio::spawn(async move {
            let args = mesh::Arguments::args(vec![json!(600)]);
            client.rpc(&back).call("block", args).await
        })
    };
    assert!(
        wait_until(Duration::from_secs(5), || {
            let busy = running.stats().busy();
            async move { busy == 1 }
        })
        .await
    );
    let r = h
        .http
        .post(format!("{}/rpc/{front}/chain_work", h.base))
        .header("x-timeout-ms", "200")
        .json(&json!({"target": back}))
        .send()
        .await
        .expect("send");
    assert_problem(r, 504, "deadline-exceeded").await;
    assert!(blocker.await.expect("task").is_ok());
    // A live call queued behind the expired one: when it returns, the expired one has been
    // taken from the queue (or dropped by the broker) before it, and only the live one ran.
    let r = h.post(&front, "chain_work", json!({"target": back})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        counter.0.load(Ordering::SeqCst),
        1,
        "expired work was executed"
    );
}

#[derive(Deserialize, utoipa::ToSchema)]
struct Greet {
    name: String,
}

async fn greet_and_tell(ctx: Ctx, Args(g): Args<Greet>) -> Result<String, RpcError> {
    ctx.dispatch("greeted", json!({"name": g.name})).await?;
    Ok(format!("Hello, {}!", g.name))
}

async fn on_greeted(
    ctx: Ctx,
    State(log): State<Log>,
    Args(g): Args<Greet>,
) -> Result<(), RpcError> {
    log.push(&ctx.call_id_stack().join(">"), "greeted", json!(g.name));
    Ok(())
}

pub async fn a_handler_dispatches_and_the_context_follows_the_event(kind: Kind) {
    let mut h = Harness::on(kind, GatewayConfig::default()).await;
    let source = unique("teller");
    let listener = unique("listener");
    h.cleanup.events_of(&source);
    h.cleanup
        .queue(&Subscription::new(&source, "greeted").queue(&listener, ""));
    let log = Log::default();
    h.serve(Service::new(source.clone()).rpc("greet", greet_and_tell))
        .await;
    h.serve(
        Service::new(listener.clone())
            .on_event(&source, "greeted", on_greeted)
            .with_state(log.clone()),
    )
    .await;

    let r = h
        .http
        .post(format!("{}/rpc/{source}/greet", h.base))
        .header("x-request-id", "req-evt-1")
        .json(&json!({"name": "Ada"}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let log2 = log.clone();
    assert!(
        wait_until(Duration::from_secs(5), || {
            let log = log2.clone();
            async move { log.of("greeted").len() == 1 }
        })
        .await
    );
    let (stack, name) = log.of("greeted").remove(0);
    assert_eq!(name, json!("Ada"));
    let ids: Vec<&str> = stack.split('>').collect();
    assert_eq!(ids.len(), 3, "{stack}");
    assert_eq!(ids[0], "req-evt-1");
    assert!(ids[1].starts_with(&format!("{source}.greet.")), "{stack}");
    assert!(
        ids[2].starts_with(&format!("{listener}.on_greeted.")),
        "{stack}"
    );
}

async fn trace(ctx: Ctx) -> Result<Option<String>, RpcError> {
    Ok(ctx.traceparent().map(str::to_owned))
}

/// Calls `target.trace` and returns its traceparent along with this call's own.
async fn relay_trace(ctx: Ctx, Args(t): Args<Target>) -> Result<Value, RpcError> {
    let theirs = ctx.rpc(&t.target).call("trace", json!({})).await?;
    Ok(json!({"mine": ctx.traceparent(), "theirs": theirs}))
}

pub async fn the_w3c_trace_crosses_the_gateway_and_services(kind: Kind) {
    let mut h = Harness::on(kind, GatewayConfig::default()).await;
    let front = unique("front");
    let back = unique("back");
    h.serve(Service::new(front.clone()).rpc("relay_trace", relay_trace))
        .await;
    h.serve(Service::new(back.clone()).rpc("trace", trace))
        .await;
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = h
        .http
        .post(format!("{}/rpc/{front}/relay_trace", h.base))
        .header("traceparent", incoming)
        .json(&json!({"target": back}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let spans: Value = r.json().await.expect("json");
    let (mine, theirs) = (
        spans["mine"].as_str().unwrap_or(""),
        spans["theirs"].as_str().unwrap_or(""),
    );
    for span in [mine, theirs] {
        assert!(
            span.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{spans}"
        );
        assert!(span.ends_with("-01"), "{spans}");
        assert_ne!(span, incoming, "each call is a span of its own");
    }
    assert_ne!(mine, theirs);

    // Without one, the gateway's call starts a trace that the next hop joins.
    let r = h.post(&front, "relay_trace", json!({"target": back})).await;
    let spans: Value = r.json().await.expect("json");
    let trace_id = |s: &Value| {
        s.as_str()
            .and_then(|t| t.split('-').nth(1))
            .map(str::to_owned)
    };
    assert!(trace_id(&spans["mine"]).is_some(), "{spans}");
    assert_eq!(
        trace_id(&spans["mine"]),
        trace_id(&spans["theirs"]),
        "{spans}"
    );
}
