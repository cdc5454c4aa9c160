//! The runtime's order, on both transports: dependencies opened in order when their services
//! start and closed in reverse once the services have stopped, after the calls in flight were
//! answered; a failure at start stops what had started; services alone in process are refused.

mod common;

use common::{Kind, QueueCleanup, mesh_config, unique, wait_until};
use mesh::{BoxError, Dependency, RpcError, Service, State};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, oneshot};
use warren_runtime::{LogFormat, RunError, Runner, Settings, Transport};

/// What happened, in order.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn push(&self, event: impl Into<String>) {
        self.0.lock().expect("log").push(event.into());
    }

    fn events(&self) -> Vec<String> {
        self.0.lock().expect("log").clone()
    }
}

/// A dependency that logs its opening and closing (and fails to open when told to).
struct Logged {
    name: &'static str,
    log: Log,
    release: Arc<Notify>,
    fails: bool,
}

/// What the handlers get: the log and what releases a waiting call.
#[derive(Clone)]
struct Handles {
    log: Log,
    release: Arc<Notify>,
}

impl Dependency for Logged {
    type State = Handles;

    async fn open(&self) -> Result<Handles, BoxError> {
        if self.fails {
            return Err(format!("{} cannot open", self.name).into());
        }
        self.log.push(format!("open {}", self.name));
        Ok(Handles {
            log: self.log.clone(),
            release: self.release.clone(),
        })
    }

    async fn close(&self, _: Handles) {
        self.log.push(format!("close {}", self.name));
    }
}

/// Logs its start, waits until released, logs its end.
async fn wait(State(h): State<Handles>) -> Result<(), RpcError> {
    h.log.push("wait started");
    h.release.notified().await;
    h.log.push("wait done");
    Ok(())
}

/// A port free a moment ago (the runner binds it).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn settings(kind: Kind, listen: String) -> Settings {
    Settings {
        mesh: mesh_config(),
        transport: match kind {
            Kind::Amqp => Transport::Amqp,
            Kind::InProcess => Transport::InProcess,
        },
        listen,
        gateway: warren_gateway::GatewayConfig::default(),
        http: warren_gateway::ServeConfig::default(),
        ops_listen: None,
        log_format: LogFormat::Pretty,
        process_name: "runtime-test".to_owned(),
    }
}

fn logged(name: &'static str, log: &Log, release: &Arc<Notify>, fails: bool) -> Logged {
    Logged {
        name,
        log: log.clone(),
        release: release.clone(),
        fails,
    }
}

pub async fn dependencies_open_in_order_and_close_in_reverse_after_calls_in_flight(kind: Kind) {
    let (first, second) = (unique("first"), unique("second"));
    let mut cleanup = QueueCleanup::for_kind(kind);
    cleanup.service(&first);
    cleanup.service(&second);
    let (log, release) = (Log::default(), Arc::new(Notify::new()));
    let port = free_port();
    let (stop, stopped) = oneshot::channel::<()>();
    let runner = Runner::new(settings(kind, format!("127.0.0.1:{port}")))
        .with_gateway()
        .serve_with(
            Service::new(first.clone()).rpc("wait", wait),
            logged("first", &log, &release, false),
        )
        .serve_with(
            Service::new(second.clone()).rpc("wait", wait),
            logged("second", &log, &release, false),
        );
    let running = tokio::spawn(runner.try_run_until(async move {
        let _ = stopped.await;
    }));
    let url = format!("http://127.0.0.1:{port}/rpc/{first}/wait");
    // The call is in flight (its handler waits) when the shutdown begins.
    let call = tokio::spawn(async move {
        let http = reqwest::Client::new();
        loop {
            match http.post(&url).json(&json!({})).send().await {
                Ok(r) => return r.status().as_u16(),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    });
    let started = wait_until(Duration::from_secs(10), || {
        let log = log.clone();
        async move { log.events().contains(&"wait started".to_owned()) }
    })
    .await;
    assert!(started, "{:?}", log.events());
    let _ = stop.send(());
    release.notify_one();
    assert_eq!(call.await.expect("call"), 200, "answered while draining");
    running.await.expect("task").expect("a clean run");
    assert_eq!(
        log.events(),
        [
            "open first",
            "open second",
            "wait started",
            "wait done",
            "close second",
            "close first"
        ]
    );
}

pub async fn a_failure_at_start_stops_what_had_started(kind: Kind) {
    let (first, second) = (unique("first"), unique("second"));
    let mut cleanup = QueueCleanup::for_kind(kind);
    cleanup.service(&first);
    let (log, release) = (Log::default(), Arc::new(Notify::new()));
    let runner = Runner::new(settings(kind, "127.0.0.1:0".to_owned()))
        .with_gateway()
        .serve_with(
            Service::new(first.clone()).rpc("wait", wait),
            logged("first", &log, &release, false),
        )
        .serve_with(
            Service::new(second.clone()).rpc("wait", wait),
            logged("second", &log, &release, true),
        );
    let error = runner
        .try_run_until(std::future::pending())
        .await
        .expect_err("the second service cannot start");
    assert!(matches!(error, RunError::Dependency { .. }), "{error:?}");
    assert_eq!(
        warren_runtime::one_line(&error),
        format!("cannot start {second}: second cannot open")
    );
    assert_eq!(log.events(), ["open first", "close first"]);
    if kind == Kind::Amqp {
        // The first service no longer consumes its queue.
        let channel = common::raw_channel().await;
        let passive = lapin::options::QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let queue = channel
            .queue_declare(
                mesh::amqp::service_queue(&first).as_str().into(),
                passive,
                Default::default(),
            )
            .await
            .expect("the queue stays");
        assert_eq!(queue.consumer_count(), 0);
    }
}

#[tokio::test]
async fn services_alone_in_process_are_refused() {
    let service: Service =
        Service::new(unique("alone")).rpc("ping", || async { Ok::<_, RpcError>(()) });
    let runner = Runner::new(settings(Kind::InProcess, "127.0.0.1:0".to_owned())).serve(service);
    let error = runner
        .try_run_until(std::future::pending())
        .await
        .expect_err("refused");
    assert!(matches!(error, RunError::NoBroker), "{error:?}");
    assert!(error.to_string().contains("--amqp URL"), "{error}");
}

/// Each scenario on both transports: `<scenario>::{amqp, in_process}`.
macro_rules! on_both_transports {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                use crate::common::Kind;

                #[tokio::test]
                async fn amqp() {
                    crate::$scenario(Kind::Amqp).await
                }

                #[tokio::test]
                async fn in_process() {
                    crate::$scenario(Kind::InProcess).await
                }
            }
        )*
    };
}

on_both_transports!(
    dependencies_open_in_order_and_close_in_reverse_after_calls_in_flight,
    a_failure_at_start_stops_what_had_started,
);
