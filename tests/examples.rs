//! The example programs (`examples/`), each run as a user runs it (`cargo run --example NAME`
//! builds the same binary) on both transports: in process with no broker named, and over the
//! real RabbitMQ with `AMQP_URL`. Each serves its services and the gateway on `WARREN_LISTEN`,
//! `/docs` and `/openapi.json` included, and stops on SIGTERM with exit code 0.

mod common;

use common::Kind;
use common::process::{Spawned, start, terminate};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// An example's binary, built beside the `warren` binary (`cargo test` builds the examples).
fn binary(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_warren"))
        .with_file_name("examples")
        .join(name);
    assert!(
        path.exists(),
        "{} is not built: cargo build --examples",
        path.display()
    );
    path
}

/// A started example: its process and its gateway's base URL.
struct Example {
    child: Spawned,
    base: String,
    http: reqwest::Client,
}

impl Example {
    /// Starts `name` on `kind` with `env`, and checks its first line names the transport.
    async fn start(name: &str, kind: Kind, env: &[(&str, String)]) -> Self {
        let mut command = Command::new(binary(name));
        command
            .env("WARREN_LISTEN", "127.0.0.1:0")
            .env("RUST_LOG", "warn")
            .env_remove("AMQP_URL")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        if kind == Kind::Amqp {
            command.env("AMQP_URL", common::broker_url());
        }
        let what = format!("example {name}");
        let (child, first) = tokio::task::spawn_blocking(move || start(command, &what))
            .await
            .expect("task");
        let transport = match kind {
            Kind::Amqp => "over AMQP amqp://",
            Kind::InProcess => "over the in-process transport",
        };
        assert!(first.contains(transport), "{first}");
        let base = format!("http://{}", common::process::http_address(&first));
        Self {
            child,
            base,
            http: reqwest::Client::new(),
        }
    }

    /// `POST /rpc/{service}/{method}`: its status and JSON body.
    async fn call(&self, service: &str, method: &str, body: Value) -> (u16, Value) {
        self.call_with(service, method, body, &[]).await
    }

    async fn call_with(
        &self,
        service: &str,
        method: &str,
        body: Value,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut request = self
            .http
            .post(format!("{}/rpc/{service}/{method}", self.base))
            .json(&body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("send");
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON body"))
    }

    /// `/docs` is the Swagger UI page and `/openapi.json` documents `paths` (the services'
    /// descriptors have reached the gateway).
    async fn documents(&self, paths: &[&str]) {
        let docs = self
            .http
            .get(format!("{}/docs/", self.base))
            .send()
            .await
            .expect("docs");
        assert_eq!(docs.status(), 200);
        assert!(docs.text().await.expect("html").contains("swagger-ui"));
        let all_there = common::wait_until(Duration::from_secs(10), || async {
            let Ok(r) = self
                .http
                .get(format!("{}/openapi.json", self.base))
                .send()
                .await
            else {
                return false;
            };
            let document: Value = r.json().await.unwrap_or_default();
            paths.iter().all(|p| document["paths"].get(*p).is_some())
        })
        .await;
        assert!(all_there, "/openapi.json lacks one of {paths:?}");
    }

    /// SIGTERM; the example exits with 0.
    async fn stop(self) {
        let child = self.child;
        let status = tokio::task::spawn_blocking(move || terminate(child, Duration::from_secs(20)))
            .await
            .expect("task");
        assert!(status.success(), "{status:?}");
    }
}

pub async fn hello_greets(kind: Kind) {
    let example = Example::start("hello", kind, &[]).await;
    let (status, body) = example
        .call("greeting_service", "hello", json!({"name": "Matt"}))
        .await;
    assert_eq!((status, body), (200, json!("Hello, Matt!")));
    example.documents(&["/rpc/greeting_service/hello"]).await;
    example.stop().await;
}

pub async fn stateful_opens_and_closes_its_dependency(kind: Kind) {
    let dir = std::env::temp_dir().join(common::unique("stateful"));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("visits.count");
    let env = [("COUNTER_FILE", file.to_string_lossy().into_owned())];
    let example = Example::start("stateful", kind, &env).await;
    for n in 1..=3 {
        let (status, body) = example.call("visits", "visit", json!({})).await;
        assert_eq!((status, body), (200, json!(n)));
    }
    example.documents(&["/rpc/visits/visit"]).await;
    example.stop().await;
    // Closed on shutdown: the count was written back...
    assert_eq!(std::fs::read_to_string(&file).expect("saved"), "3");
    // ...and opened again at the next start.
    let example = Example::start("stateful", kind, &env).await;
    let (status, body) = example.call("visits", "visit", json!({})).await;
    assert_eq!((status, body), (200, json!(4)));
    example.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

pub async fn events_reach_their_handler(kind: Kind) {
    let example = Example::start("events", kind, &[]).await;
    let item = common::unique("teapot");
    let (status, body) = example.call("shop", "order", json!({"item": item})).await;
    assert_eq!((status, body), (200, json!(format!("ordered {item}"))));
    let expected = json!(format!("Your {item} is on its way"));
    let delivered = common::wait_until(Duration::from_secs(10), || async {
        let (_, sent) = example.call("mailer", "sent", json!({})).await;
        sent.as_array().is_some_and(|s| s.contains(&expected))
    })
    .await;
    assert!(delivered, "the mailer never handled the order");
    example
        .documents(&["/rpc/shop/order", "/rpc/mailer/sent"])
        .await;
    example.stop().await;
}

pub async fn calls_carry_the_callers_context(kind: Kind) {
    let example = Example::start("calls", kind, &[]).await;
    let (status, body) = example
        .call_with(
            "frontdesk",
            "welcome",
            json!({"name": "Ada"}),
            &[("x-request-id", "r-calls-1")],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["message"], "Welcome, Ada: desk 3");
    let stack: Vec<String> =
        serde_json::from_value(body["call_id_stack"].clone()).expect("a stack");
    assert_eq!(stack.len(), 3, "{stack:?}");
    assert_eq!(stack[0], "r-calls-1");
    assert!(stack[1].starts_with("frontdesk.welcome."), "{stack:?}");
    assert!(stack[2].starts_with("directory.lookup."), "{stack:?}");
    example
        .documents(&["/rpc/frontdesk/welcome", "/rpc/directory/lookup"])
        .await;
    example.stop().await;
}

pub async fn jobs_run_once_per_service_and_compute_on_the_pool(kind: Kind) {
    let example = Example::start("jobs", kind, &[]).await;
    let (status, body) = example
        .call("reports", "primes", json!({"below": 100}))
        .await;
    assert_eq!((status, body), (200, json!(25)));
    let ran = common::wait_until(Duration::from_secs(10), || async {
        let (_, tallies) = example.call("reports", "tallies", json!({})).await;
        tallies.as_u64().is_some_and(|n| n >= 2)
    })
    .await;
    assert!(ran, "the job never ran twice");
    example
        .documents(&["/rpc/reports/primes", "/rpc/reports/tallies"])
        .await;
    example.stop().await;
}

/// Each example on both transports: `<example>::{amqp, in_process}`.
macro_rules! on_both_transports {
    ($($example:ident),* $(,)?) => {
        $(
            mod $example {
                use crate::common::Kind;

                #[tokio::test]
                async fn amqp() {
                    crate::$example(Kind::Amqp).await
                }

                #[tokio::test]
                async fn in_process() {
                    crate::$example(Kind::InProcess).await
                }
            }
        )*
    };
}

on_both_transports!(
    hello_greets,
    stateful_opens_and_closes_its_dependency,
    events_reach_their_handler,
    calls_carry_the_callers_context,
    jobs_run_once_per_service_and_compute_on_the_pool,
);
