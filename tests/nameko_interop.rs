//! Interop with a real nameko 2.14, both ways: the gateway fronts a nameko service, and nameko's
//! `ClusterRpcProxy` calls Warren services. The Python side lives in `tests/interop/`; the venv
//! is made (once, then reused) by `scripts/nameko-venv.sh`.

mod common;

use common::{Harness, QueueCleanup, assert_problem, unique, wait_until};
use mesh::Arguments;
use mesh::{CallContext, Ctx, Payload, RpcError, Service, State, Subscription};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The venv's python, made by `scripts/nameko-venv.sh` on first use.
fn python() -> &'static PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let output = Command::new("bash")
            .arg(repo().join("scripts/nameko-venv.sh"))
            .stderr(Stdio::inherit())
            .output()
            .expect("run scripts/nameko-venv.sh");
        assert!(output.status.success(), "scripts/nameko-venv.sh failed");
        let stdout = String::from_utf8_lossy(&output.stdout);
        PathBuf::from(stdout.lines().last().expect("the venv's python").trim())
    })
}

/// nameko's spelling of the broker URL (kombu wants `//` for the default vhost).
fn amqp_uri() -> String {
    common::broker_url()
        .replace("/%2f", "//")
        .replace("/%2F", "//")
}

/// A nameko service process, stopped with SIGTERM when dropped.
struct NamekoService(Child);

impl NamekoService {
    fn start(name: &str) -> Self {
        Self::start_with(name, &[])
    }

    /// Starts it with extra environment (`WARREN_EVENT_SOURCE`, `WARREN_RPC_TARGET`).
    fn start_with(name: &str, env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(python())
            .arg(repo().join("tests/interop/nameko_service.py"))
            .arg(name)
            .env("AMQP_URI", amqp_uri())
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start nameko");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        // The service prints READY once its queue is consumed; it exits (EOF) if it cannot start.
        let ready = lines.any(|line| line.map(|l| l.trim() == "READY").unwrap_or(false));
        assert!(ready, "nameko service {name} did not start");
        Self(child)
    }
}

impl Drop for NamekoService {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_gateway_fronts_a_nameko_service() {
    let name = unique("nameko");
    let mut cleanup = QueueCleanup::new();
    cleanup.service(&name);
    let _service = NamekoService::start(&name);
    let h = Harness::start().await;

    let r = h.post(&name, "echo", json!({"value": {"a": [1, 2]}})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.expect("json"), json!({"a": [1, 2]}));

    let r = h.post(&name, "add", json!([2, 3])).await;
    assert_eq!(r.json::<Value>().await.expect("json"), json!(5));

    // A Python exception: 500 with its type and message, no traceback.
    let r = h.post(&name, "fail", json!({"message": "kaput"})).await;
    let body = assert_problem(r, 500, "remote-error").await;
    assert_eq!(body["exc_type"], "ValueError");
    assert_eq!(body["detail"], "ValueError: kaput");

    // A Python exception named NotFound maps like Warren's own.
    let r = h.post(&name, "missing", json!({"key": "k"})).await;
    let body = assert_problem(r, 404, "not-found").await;
    assert_eq!(body["exc_type"], "NotFound");

    // nameko's own protocol errors.
    let r = h.post(&name, "no_such_method", json!({})).await;
    let body = assert_problem(r, 404, "not-found").await;
    assert_eq!(body["exc_type"], "MethodNotFound");
    let r = h.post(&name, "add", json!({"a": 1})).await;
    let body = assert_problem(r, 400, "bad-request").await;
    assert_eq!(body["exc_type"], "IncorrectSignature");

    // The request id roots nameko's call id stack.
    let r = h
        .http
        .post(format!("{}/rpc/{name}/context", h.base))
        .header("x-request-id", "req-nameko-1")
        .send()
        .await
        .expect("send");
    let context: Value = r.json().await.expect("json");
    let stack = context["call_id_stack"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(stack.first(), Some(&json!("req-nameko-1")), "{context}");
    assert!(
        stack
            .last()
            .and_then(Value::as_str)
            .is_some_and(|id| id.starts_with(&format!("{name}.context."))),
        "{context}"
    );

    // Deadlines hold against nameko too.
    let r = h
        .http
        .post(format!("{}/rpc/{name}/slow", h.base))
        .header("x-timeout-ms", "200")
        .json(&json!({"ms": 1000}))
        .send()
        .await
        .expect("send");
    assert_problem(r, 504, "deadline-exceeded").await;
}

#[tokio::test]
async fn a_nameko_service_sees_the_authenticated_user() {
    let name = unique("nameko");
    let mut cleanup = QueueCleanup::new();
    cleanup.service(&name);
    let _service = NamekoService::start(&name);
    let secret = b"nameko-interop-secret-0123456789abcdef";
    let key = "nameko-interop-key-0123456789";
    let auth = warren_gateway::Auth::off()
        .with_api_keys(warren_gateway::ApiKeys::parse(&format!("key-user {key}\n")).expect("keys"))
        .with_jwt(
            warren_gateway::JwtVerifier::new()
                .hs256_secret(secret)
                .expect("secret"),
        );
    let h = Harness::with_config(warren_gateway::GatewayConfig {
        auth,
        ..warren_gateway::GatewayConfig::default()
    })
    .await;
    let url = format!("{}/rpc/{name}/context", h.base);

    let r = h.http.post(&url).send().await.expect("send");
    assert_problem(r, 401, "unauthenticated").await;

    // An API key: nameko sees the user id, and no token.
    let r = h
        .http
        .post(&url)
        .header("x-api-key", key)
        .send()
        .await
        .expect("send");
    let context: Value = r.json().await.expect("json");
    assert_eq!(context["user_id"], "key-user", "{context}");
    assert!(context["auth_token"].is_null(), "{context}");

    // A JWT: nameko sees its `sub` as the user id and the token as `auth_token`.
    let exp = jsonwebtoken::get_current_timestamp() + 60;
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": "jwt-user", "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .expect("encode");
    let r = h
        .http
        .post(&url)
        .bearer_auth(&token)
        .send()
        .await
        .expect("send");
    let context: Value = r.json().await.expect("json");
    assert_eq!(context["user_id"], "jwt-user", "{context}");
    assert_eq!(context["auth_token"], token.as_str(), "{context}");
}

#[tokio::test]
async fn a_nameko_service_sees_the_callers_language_and_user_agent() {
    let name = unique("nameko");
    let mut cleanup = QueueCleanup::new();
    cleanup.service(&name);
    let _service = NamekoService::start(&name);
    let h = Harness::start().await;
    let url = format!("{}/rpc/{name}/context", h.base);
    let r = h
        .http
        .post(&url)
        .header("accept-language", "fr-CH, fr;q=0.9, en;q=0.8")
        .header("user-agent", "warren-interop/1.0")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let context: Value = r.json().await.expect("json");
    // Read through nameko's own Language and UserAgent dependency providers.
    assert_eq!(
        context["providers"],
        json!({"language": "fr-CH, fr;q=0.9, en;q=0.8", "user_agent": "warren-interop/1.0"}),
        "{context}"
    );

    // Without the headers (reqwest sends no User-Agent by default), the providers see none.
    let r = h.http.post(&url).send().await.expect("send");
    let context: Value = r.json().await.expect("json");
    assert_eq!(
        context["providers"],
        json!({"language": null, "user_agent": null}),
        "{context}"
    );
}

#[tokio::test]
async fn nameko_calls_warren_services() {
    let mut h = Harness::start().await;
    let greeter = unique("greeter");
    let kv = unique("kv");
    h.serve(greeter::service_named(&greeter)).await;
    h.serve(kv::service_named(&kv).with_state(kv::Store::default()))
        .await;

    let script = repo().join("tests/interop/call_warren.py");
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python())
            .arg(script)
            .args(["--greeter", &greeter, "--kv", &kv])
            .env("AMQP_URI", amqp_uri())
            .output()
    })
    .await
    .expect("task")
    .expect("run call_warren.py");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "call_warren.py failed:\n{stdout}\n{stderr}"
    );
    let summary = stdout.lines().last().unwrap_or("");
    assert!(summary.ends_with(" 0 failed"), "{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
    // Every check touched Warren: the services answered the proxy's calls.
    let handled: u64 = h.services.iter().map(|s| s.stats().handled()).sum();
    assert!(
        handled >= 55,
        "only {handled} calls reached Warren:\n{stdout}"
    );
}

/// One event as a Warren handler saw it: the payload and the call id stack.
type Sighting = (Value, Vec<String>);

/// The events a Warren handler saw.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Sighting>>>);

async fn on_greeted(
    ctx: Ctx,
    State(seen): State<Seen>,
    Payload(p): Payload<Value>,
) -> Result<(), RpcError> {
    seen.0
        .lock()
        .expect("seen")
        .push((p, ctx.call_id_stack().to_vec()));
    Ok(())
}

fn kwargs(value: Value) -> Arguments {
    Arguments::kwargs(value.as_object().cloned().unwrap_or_default())
}

#[tokio::test]
async fn a_nameko_event_reaches_a_warren_handler() {
    let nameko = unique("nameko");
    let listener = unique("listener");
    let mut h = Harness::start().await;
    h.cleanup.service(&nameko);
    h.cleanup.events_of(&nameko);
    h.cleanup
        .queue(&Subscription::new(&nameko, "greeted").queue(&listener, ""));
    let seen = Seen::default();
    h.serve(
        Service::new(listener.clone())
            .on_event(&nameko, "greeted", on_greeted)
            .with_state(seen.clone()),
    )
    .await;
    let _service = NamekoService::start(&nameko);

    // nameko's EventDispatcher, inside a nameko RPC handler.
    let args = kwargs(json!({"event_type": "greeted", "payload": {"name": "py"}}));
    h.client
        .rpc(&nameko)
        .with_context(CallContext::rooted_at("req-py-evt"))
        .call("emit", args)
        .await
        .expect("emit");
    let seen2 = seen.clone();
    assert!(
        wait_until(Duration::from_secs(10), || {
            let seen = seen2.clone();
            async move { !seen.0.lock().expect("seen").is_empty() }
        })
        .await
    );
    let (payload, stack) = seen.0.lock().expect("seen").remove(0);
    assert_eq!(payload, json!({"name": "py"}));
    // Warren's stack holds nameko's: the caller's root, nameko's emit worker, then our handler.
    assert_eq!(
        stack.first().map(String::as_str),
        Some("req-py-evt"),
        "{stack:?}"
    );
    assert!(
        stack
            .iter()
            .any(|id| id.starts_with(&format!("{nameko}.emit."))),
        "{stack:?}"
    );
    assert!(
        stack
            .last()
            .is_some_and(|id| id.starts_with(&format!("{listener}.on_greeted."))),
        "{stack:?}"
    );
}

/// Fails the first time it is called, then counts what it handled.
#[derive(Clone, Default)]
struct FailsOnce(Arc<Mutex<usize>>);

async fn fails_once(State(calls): State<FailsOnce>) -> Result<(), RpcError> {
    let mut calls = calls.0.lock().expect("calls");
    *calls += 1;
    if *calls == 1 {
        return Err(RpcError::internal("first attempt"));
    }
    Ok(())
}

#[tokio::test]
async fn a_warren_event_reaches_a_nameko_handler_once_while_a_warren_handler_retries() {
    let source = unique("src");
    let nameko = unique("nameko");
    let retrying = unique("retrying");
    let subscription =
        Subscription::new(&source, "greeted").retry_after([Duration::from_millis(100)]);
    let retrying_queue = subscription.queue(&retrying, "");
    let mut cleanup = QueueCleanup::new();
    cleanup.service(&nameko);
    cleanup.events_of(&source);
    cleanup.queue(&Subscription::new(&source, "greeted").queue(&nameko, ""));
    cleanup.queue(&retrying_queue);
    cleanup.queue_alone(&mesh::amqp::retry_queue(&retrying_queue, 100));
    let _service = NamekoService::start_with(&nameko, &[("WARREN_EVENT_SOURCE", &source)]);
    let mut h = Harness::start().await;
    let calls = FailsOnce::default();
    h.serve(
        Service::new(retrying)
            .subscribe(subscription, fails_once)
            .with_state(calls.clone()),
    )
    .await;

    let client = h.mesh.client(&source).await.expect("client");
    client
        .dispatch("greeted", json!({"name": "rs"}))
        .await
        .expect("dispatch");
    let running = &h.services[0];
    assert!(
        wait_until(Duration::from_secs(10), || {
            let n = running.stats().events_handled();
            async move { n == 1 }
        })
        .await,
        "the Warren handler's retry never came back"
    );
    // Dispatched after the retry: once nameko has it, a retry that leaked to the events
    // exchange would have reached nameko too.
    client
        .dispatch("greeted", json!({"name": "after"}))
        .await
        .expect("dispatch");
    let received = Arc::new(Mutex::new(Value::Null));
    let got = wait_until(Duration::from_secs(10), || {
        let (client, nameko, received) = (h.client.clone(), nameko.clone(), received.clone());
        async move {
            let value = client
                .rpc(&nameko)
                .call("received", Arguments::default())
                .await;
            let done = matches!(&value, Ok(Value::Array(items)) if items.len() >= 2);
            *received.lock().expect("received") = value.unwrap_or(Value::Null);
            done
        }
    })
    .await;
    assert!(
        got,
        "nameko received {:?}",
        received.lock().expect("received")
    );
    assert_eq!(
        *received.lock().expect("received"),
        json!([{"name": "rs"}, {"name": "after"}]),
        "nameko saw the Warren handler's retry"
    );
    assert_eq!(
        *calls.0.lock().expect("calls"),
        3,
        "failed, retried, sentinel"
    );
}

async fn warren_stack(ctx: Ctx) -> Result<Vec<String>, RpcError> {
    Ok(ctx.call_id_stack().to_vec())
}

#[derive(serde::Deserialize, utoipa::ToSchema)]
struct Key {
    key: String,
}

async fn count(
    State(n): State<Arc<Mutex<u64>>>,
    mesh::Args(k): mesh::Args<Key>,
) -> Result<u64, RpcError> {
    let mut n = n.lock().expect("count");
    *n += 1;
    let _ = k.key;
    Ok(*n)
}

#[tokio::test]
async fn a_nameko_service_calls_warren_through_its_rpc_proxy() {
    let warren = unique("warren");
    let nameko = unique("nameko");
    let mut h = Harness::start().await;
    h.cleanup.service(&nameko);
    h.serve(
        Service::new(warren.clone())
            .rpc("stack", warren_stack)
            .rpc("inc", count)
            .with_state(Arc::new(Mutex::new(0u64))),
    )
    .await;
    let _service = NamekoService::start_with(&nameko, &[("WARREN_RPC_TARGET", &warren)]);

    let relayed = h
        .client
        .rpc(&nameko)
        .with_context(CallContext::rooted_at("req-relay"))
        .call("relay_stack", Arguments::default())
        .await
        .expect("relay_stack");
    let own: Vec<String> = serde_json::from_value(relayed["own_stack"].clone()).expect("own stack");
    let seen: Vec<String> =
        serde_json::from_value(relayed["warren_stack"].clone()).expect("warren stack");
    // nameko's stack, then Warren's own call id.
    assert_eq!(seen.len(), own.len() + 1, "{relayed}");
    assert_eq!(&seen[..own.len()], &own[..], "{relayed}");
    assert_eq!(
        own.first().map(String::as_str),
        Some("req-relay"),
        "{relayed}"
    );
    assert!(
        own.last()
            .is_some_and(|id| id.starts_with(&format!("{nameko}.relay_stack."))),
        "{relayed}"
    );
    assert!(
        seen.last()
            .is_some_and(|id| id.starts_with(&format!("{warren}.stack."))),
        "{relayed}"
    );

    let n = h
        .client
        .rpc(&nameko)
        .call("relay_inc", kwargs(json!({"key": "k"})))
        .await;
    assert_eq!(n, Ok(json!(1)));
}

/// Declares `rpc-<service>` on the broker as a durable quorum queue bound to the RPC exchange,
/// as a Warren process run with `--queue-type quorum` does.
async fn declare_quorum(service: &str) {
    let queue = mesh::amqp::service_queue(service);
    let queue = queue.as_str();
    let channel = common::raw_channel().await;
    let mut arguments = lapin::types::FieldTable::default();
    arguments.insert(
        "x-queue-type".into(),
        lapin::types::AMQPValue::LongString("quorum".into()),
    );
    let durable = lapin::options::QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .queue_declare(queue.into(), durable, arguments)
        .await
        .expect("declare a quorum queue");
    channel
        .queue_bind(
            queue.into(),
            mesh::amqp::DEFAULT_RPC_EXCHANGE.into(),
            format!("{service}.*").as_str().into(),
            Default::default(),
            Default::default(),
        )
        .await
        .expect("bind");
}

/// A service's queue declared as a quorum queue (a Warren process run with `--queue-type
/// quorum` made it): a nameko service of that name declares it without `x-queue-type`, the
/// broker refuses it (PRECONDITION_FAILED, "received none but current is the value 'quorum'"),
/// and nameko's consumer retries and never consumes. What docs/operations.md says of mixing
/// nameko and quorum queues rests on this.
#[tokio::test]
async fn a_nameko_service_cannot_consume_a_quorum_queue() {
    let name = unique("nameko_qq");
    let mut cleanup = QueueCleanup::new();
    cleanup.service(&name);
    declare_quorum(&name).await;
    let log = std::env::temp_dir().join(format!("{name}.log"));
    let mut child = Command::new(python())
        .arg(repo().join("tests/interop/nameko_service.py"))
        .arg(&name)
        .env("AMQP_URI", amqp_uri())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("start nameko");
    let refused = wait_until(Duration::from_secs(30), || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        async move {
            text.contains("PRECONDITION_FAILED - inequivalent arg 'x-queue-type'")
                && text.contains("received none but current is the value 'quorum'")
        }
    })
    .await;
    // It never consumes the queue: a call through the gateway finds nobody.
    let h = Harness::start().await;
    let r = h
        .http
        .post(format!("{}/rpc/{name}/echo", h.base))
        .header("x-timeout-ms", "1000")
        .json(&json!({"value": 1}))
        .send()
        .await
        .expect("send");
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    assert!(
        refused,
        "nameko declared the quorum queue without an error:\n{text}"
    );
    assert_eq!(r.status(), 504);
}

/// The other way round: nameko (or a classic Warren process) declared `rpc-<service>` as a
/// classic queue, and a Warren process declaring quorum queues refuses to start with an error
/// that says what to do; and a classic Warren process meeting a quorum queue says so too.
#[tokio::test]
async fn a_queue_of_the_other_type_is_an_error_that_says_what_to_do() {
    let name = unique("nameko_cl");
    let mut cleanup = QueueCleanup::new();
    cleanup.service(&name);
    let _nameko = NamekoService::start(&name);
    let mut quorum = common::mesh_config();
    quorum.amqp.queue_type = mesh::amqp::QueueType::Quorum;
    let mesh = mesh::Mesh::amqp(quorum).await.expect("broker");
    let service: Service = Service::new(name.clone()).rpc("echo", echo);
    let error = mesh
        .serve(service)
        .await
        .err()
        .expect("a quorum declaration of a classic queue is refused")
        .to_string();
    assert!(error.contains("exists as a classic queue"), "{error}");
    assert!(error.contains("--queue-type classic"), "{error}");
    assert!(!error.contains('\n'), "{error}");
    mesh.close().await;

    let other = unique("quorum");
    cleanup.service(&other);
    declare_quorum(&other).await;
    let mesh = mesh::Mesh::amqp(common::mesh_config())
        .await
        .expect("broker");
    let service: Service = Service::new(other).rpc("echo", echo);
    let error = mesh
        .serve(service)
        .await
        .err()
        .expect("a classic declaration of a quorum queue is refused")
        .to_string();
    assert!(error.contains("exists as a quorum queue"), "{error}");
    assert!(error.contains("--queue-type quorum"), "{error}");
    mesh.close().await;
}

async fn echo(mesh::Args(value): mesh::Args<Value>) -> Result<Value, RpcError> {
    Ok(value)
}

#[tokio::test]
async fn a_nameko_event_reaches_an_event_stream() {
    let name = unique("nameko");
    let mut cleanup = QueueCleanup::new();
    cleanup.service(&name);
    let _service = NamekoService::start(&name);
    let h = Harness::start().await;
    let response = h
        .http
        .get(format!("{}/events/{name}/greeted", h.base))
        .send()
        .await
        .expect("send");
    let mut stream = common::sse::Sse::new(response);
    let r = h
        .post(
            &name,
            "emit",
            json!({"event_type": "greeted", "payload": {"who": "nameko"}}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let frame = stream
        .next_event(std::time::Duration::from_secs(10))
        .await
        .expect("the nameko event");
    assert_eq!(frame.event.as_deref(), Some("greeted"));
    assert_eq!(frame.json(), json!({"who": "nameko"}));
}
