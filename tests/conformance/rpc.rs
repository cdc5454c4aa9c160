//! The RPC path under load and at its edges: no lost increments, instances sharing a queue, the
//! concurrency bound, callers that give up, and graceful stop.

use crate::common::{Harness, Kind, kwargs, mesh_config, unique, wait_until};
use mesh::Arguments;
use mesh::{MeshConfig, RpcError, Service, State};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use warren_gateway::GatewayConfig;

fn config_with_workers(max_workers: u16) -> MeshConfig {
    MeshConfig {
        max_workers,
        ..mesh_config()
    }
}

pub async fn five_clients_times_1000_increments_end_at_5000(kind: Kind) {
    let mut h = Harness::on(kind, GatewayConfig::default()).await;
    let kv = unique("kv");
    h.serve(kv::service_named(&kv).with_state(kv::Store::default()))
        .await;
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

pub async fn two_instances_share_the_load(kind: Kind) {
    let mut h = Harness::on(kind, GatewayConfig::default()).await;
    let name = unique("greeter");
    let mut instances = Vec::new();
    for _ in 0..2 {
        let mesh = h.instance(mesh_config()).await;
        instances.push(h.serve_on(&mesh, greeter::service_named(&name)).await);
    }
    let calls: Vec<_> = (0..200)
        .map(|i| {
            let (client, name) = (h.client.clone(), name.clone());
            tokio::spawn(async move {
                let body = Arguments::args(vec![json!(format!("n{i}"))]);
                client.rpc(&name).call("hello", body).await
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
pub struct Gauge {
    current: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    pub started: Arc<AtomicUsize>,
}

pub async fn busy(State(g): State<Gauge>) -> Result<(), RpcError> {
    g.started.fetch_add(1, Ordering::SeqCst);
    let now = g.current.fetch_add(1, Ordering::SeqCst) + 1;
    g.peak.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(50)).await;
    g.current.fetch_sub(1, Ordering::SeqCst);
    Ok(())
}

pub async fn at_most_max_workers_handlers_run_at_once(kind: Kind) {
    let mut h = Harness::on(kind, GatewayConfig::default()).await;
    let name = unique("busy");
    let gauge = Gauge::default();
    let mesh = h.instance(config_with_workers(3)).await;
    let service = Service::new(name.clone())
        .rpc("busy", busy)
        .with_state(gauge.clone());
    let _running = h.serve_on(&mesh, service).await;
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let (client, name) = (h.client.clone(), name.clone());
            tokio::spawn(async move { client.rpc(&name).call("busy", Arguments::default()).await })
        })
        .collect();
    for call in calls {
        assert!(call.await.expect("task").is_ok());
    }
    assert_eq!(gauge.peak.load(Ordering::SeqCst), 3);
}

pub async fn a_caller_that_disconnects_leaves_no_pending_entry(kind: Kind) {
    let mut h = Harness::on(kind, GatewayConfig::default()).await;
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

pub async fn stopping_a_service_finishes_in_flight_work_and_requeues_the_rest(kind: Kind) {
    let mut h = Harness::on(kind, GatewayConfig::default()).await;
    let name = unique("greeter");
    // One worker: one request runs, the others wait in the queue.
    let mesh = h.instance(config_with_workers(1)).await;
    let first = h.serve_on(&mesh, greeter::service_named(&name)).await;
    let calls: Vec<_> = (0..3)
        .map(|_| {
            let (client, name) = (h.client.clone(), name.clone());
            tokio::spawn(async move {
                let body = kwargs(json!({"ms": 300}));
                client.rpc(&name).call("slow", body).await
            })
        })
        .collect();
    let client = h.client.clone();
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
    let second = h.serve_on(&mesh, greeter::service_named(&name)).await;
    for call in calls {
        assert_eq!(call.await.expect("task"), Ok(json!(300)));
    }
    assert_eq!(second.stats().handled(), 2);
}
