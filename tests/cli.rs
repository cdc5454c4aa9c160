//! The `warren` binary: its commands, its exit codes, its errors and its shutdown on SIGTERM.

mod common;

use common::process::{run, spawn, terminate, warren};
use common::{Harness, unique, wait_until};
use mesh::{Payload, RpcError, Service, State, Subscription};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[tokio::test]
async fn an_unreachable_broker_is_one_clear_line_not_a_hang() {
    let started = Instant::now();
    let output = run(&[
        "call",
        "kv",
        "get",
        "--amqp",
        "amqp://guest:s3cret@127.0.0.1:1/%2f",
    ])
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stderr.lines().last().unwrap_or("");
    assert!(
        line.starts_with("error: cannot reach RabbitMQ at amqp://guest:***@127.0.0.1:1/%2f"),
        "{stderr}"
    );
    assert!(line.contains("rabbitmq-server -detached"), "{stderr}");
    assert!(!stderr.contains("s3cret"), "password leaked: {stderr}");
}

#[tokio::test]
async fn call_prints_results_and_fails_on_errors() {
    let mut h = Harness::start().await;
    let kv = unique("kv");
    h.serve(kv::service_named(&kv).with_state(kv::Store::default()))
        .await;

    let output = run(&["call", &kv, "inc", r#"{"key": "a", "by": 5}"#]).await;
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "5");

    let output = run(&["call", &kv, "inc", r#"["a"]"#]).await;
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "6");

    let output = run(&["call", &kv, "get", r#"{"key": "nope"}"#]).await;
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("error: NotFound: no such key: nope"),
        "{stderr}"
    );

    let output = run(&["call", &kv, "get", "{not json"]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not valid JSON"));

    let output = run(&["call", &unique("nobody"), "x"]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown service"));
}

#[tokio::test]
async fn run_refuses_unknown_services() {
    let output = run(&["run", "nosuch"]).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("unknown service `nosuch`") && stderr.contains("greeting_service, kv"),
        "{stderr}"
    );
}

/// `warren dev` with `args`: checks its first line names `transport`, calls greeter over HTTP,
/// then stops it with SIGTERM.
async fn dev_round_trip(args: &'static [&'static str], transport: &str) {
    // Its own data directory: two `warren dev` at once would contend for one index's lock.
    let data = std::env::temp_dir().join(unique("dev-data"));
    let data_arg = data.to_string_lossy().into_owned();
    let (child, first) = tokio::task::spawn_blocking(move || {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--data-dir", &data_arg]);
        spawn(&all)
    })
    .await
    .expect("task");
    assert!(first.contains(transport), "{first}");
    let address = common::process::http_address(&first);
    assert!(first.contains("greeting_service, kv"), "{first}");
    let http = reqwest::Client::new();
    let r = http
        .post(format!("http://{address}/rpc/greeting_service/hello"))
        .json(&serde_json::json!({"name": "dev"}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.expect("text"), "\"Hello, dev!\"");
    let ready = http
        .get(format!("http://{address}/readyz"))
        .send()
        .await
        .expect("send");
    assert_eq!(ready.status(), 200);
    let status = tokio::task::spawn_blocking(move || terminate(child, Duration::from_secs(15)))
        .await
        .expect("task");
    assert!(status.success(), "{status:?}");
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test]
async fn dev_runs_in_process_by_default_and_stops_on_sigterm() {
    dev_round_trip(
        &["dev", "--listen", "127.0.0.1:0"],
        "over the in-process transport",
    )
    .await;
}

#[tokio::test]
async fn dev_uses_rabbitmq_when_given_a_url() {
    dev_round_trip(
        &[
            "dev",
            "--listen",
            "127.0.0.1:0",
            "--amqp",
            "amqp://guest:guest@127.0.0.1:5672/%2f",
        ],
        "over AMQP amqp://guest:***@127.0.0.1:5672/%2f",
    )
    .await;
}

#[tokio::test]
async fn gateway_never_falls_back_to_in_process() {
    let started = Instant::now();
    let output = run(&[
        "gateway",
        "--listen",
        "127.0.0.1:0",
        "--amqp",
        "amqp://guest:guest@127.0.0.1:1/%2f",
    ])
    .await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot reach RabbitMQ"));
}

#[tokio::test]
async fn run_serves_a_bundled_service_until_sigterm() {
    let (child, first) = tokio::task::spawn_blocking(|| spawn(&["run", "greeter"]))
        .await
        .expect("task");
    assert!(
        first.starts_with("warren: serving greeting_service"),
        "{first}"
    );
    let output = run(&["call", "greeting_service", "hello", r#"{"name": "run"}"#]).await;
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "\"Hello, run!\""
    );
    let status = tokio::task::spawn_blocking(move || terminate(child, Duration::from_secs(15)))
        .await
        .expect("task");
    assert!(status.success(), "{status:?}");
}

async fn remember(
    State(seen): State<Arc<Mutex<Vec<serde_json::Value>>>>,
    Payload(p): Payload<serde_json::Value>,
) -> Result<(), RpcError> {
    seen.lock().expect("seen").push(p);
    Ok(())
}

#[tokio::test]
async fn dispatch_publishes_an_event_subscribers_receive() {
    let mut h = Harness::start().await;
    let source = unique("src");
    let listener = unique("listener");
    h.cleanup.events_of(&source);
    h.cleanup
        .queue(&Subscription::new(&source, "poked").queue(&listener, ""));
    let seen = Arc::new(Mutex::new(Vec::new()));
    h.serve(
        Service::new(listener)
            .on_event(&source, "poked", remember)
            .with_state(seen.clone()),
    )
    .await;

    let output = run(&["dispatch", &source, "poked", r#"{"n": 1}"#]).await;
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("dispatched poked from {source}")
    );
    let seen2 = seen.clone();
    assert!(
        wait_until(Duration::from_secs(5), || {
            let seen = seen2.clone();
            async move { !seen.lock().expect("seen").is_empty() }
        })
        .await
    );
    assert_eq!(
        *seen.lock().expect("seen"),
        vec![serde_json::json!({"n": 1})]
    );

    let output = run(&["dispatch", "bad.name", "poked"]).await;
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("invalid name `bad.name`"));
}

#[tokio::test]
async fn run_serves_probes_and_metrics_on_its_ops_port_and_logs_json() {
    let mut command = warren();
    command
        .env("RUST_LOG", "info")
        .args([
            "run",
            "kv",
            "--ops-listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ])
        .stderr(Stdio::piped());
    let (mut child, first) =
        tokio::task::spawn_blocking(move || common::process::start(command, "warren run kv"))
            .await
            .expect("task");
    let stderr = child.take_stderr().expect("stderr");
    let ops = first
        .split("ops on http://")
        .nth(1)
        .map(str::trim)
        .unwrap_or_else(|| panic!("{first}"))
        .to_owned();
    let http = reqwest::Client::new();
    for path in ["/healthz", "/readyz"] {
        let r = http
            .get(format!("http://{ops}{path}"))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 200, "{path}");
    }
    // `kv` is a bundled name other tests may serve at the same time: of 50 calls, this instance
    // gets its share.
    let mesh = mesh::Mesh::amqp(common::mesh_config())
        .await
        .expect("broker");
    let client = mesh.client("test").await.expect("client");
    for _ in 0..50 {
        let inc = client
            .rpc("kv")
            .call("inc", serde_json::json!({"key": "ops"}))
            .await;
        assert!(inc.is_ok(), "{inc:?}");
    }
    let text = http
        .get(format!("http://{ops}/metrics"))
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("text");
    assert!(
        text.contains(
            "warren_service_requests_total{service=\"kv\",method=\"inc\",outcome=\"ok\"}"
        ),
        "{text}"
    );
    // The busy gauge drops once each worker task has finished, a moment after its reply.
    let idle = wait_until(Duration::from_secs(5), || {
        let (http, ops) = (http.clone(), ops.clone());
        async move {
            let Ok(r) = http.get(format!("http://{ops}/metrics")).send().await else {
                return false;
            };
            r.text()
                .await
                .unwrap_or_default()
                .contains("warren_service_busy_workers{service=\"kv\"} 0")
        }
    })
    .await;
    assert!(idle, "busy workers never went back to 0");
    let (status, logs) =
        common::process::terminate_and_read(child, stderr, Duration::from_secs(15)).await;
    assert!(status.success());
    let line = logs
        .lines()
        .find(|l| l.contains("serving"))
        .unwrap_or_else(|| panic!("{logs}"));
    let parsed: serde_json::Value = serde_json::from_str(line).expect("a JSON log line");
    assert_eq!(parsed["level"], "INFO", "{line}");
}

#[tokio::test]
async fn dev_in_process_serves_the_elibrary_with_data_under_its_data_dir() {
    let data = std::env::temp_dir().join(unique("dev-data"));
    let data_arg = data.to_string_lossy().into_owned();
    let args = ["dev", "--listen", "127.0.0.1:0", "--data-dir", &data_arg];
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let (child, first) = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        spawn(&args)
    })
    .await
    .expect("task");
    assert!(
        first.contains("in-process") && first.contains("library, indexer"),
        "{first}"
    );
    let address = common::process::http_address(&first);
    let http = reqwest::Client::new();
    let added: serde_json::Value = http
        .post(format!("http://{address}/rpc/library/add_book"))
        .json(&serde_json::json!({"title": "Moby-Dick", "author": "Herman Melville", "text": "Call me Ishmael. The whale!"}))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let id = added["id"].clone();
    let found = wait_until(Duration::from_secs(10), || {
        let (http, address, id) = (http.clone(), address.clone(), id.clone());
        async move {
            let Ok(r) = http
                .post(format!("http://{address}/rpc/indexer/search"))
                .json(&serde_json::json!({"query": "whale"}))
                .send()
                .await
            else {
                return false;
            };
            let hits: serde_json::Value = r.json().await.unwrap_or_default();
            hits["hits"]
                .as_array()
                .is_some_and(|h| h.iter().any(|hit| hit["id"] == id))
        }
    })
    .await;
    assert!(found, "the book never became searchable");
    let status = tokio::task::spawn_blocking(move || terminate(child, Duration::from_secs(15)))
        .await
        .expect("task");
    assert!(status.success());
    assert!(
        data.join("library.sqlite3").exists(),
        "no SQLite file under {}",
        data.display()
    );
    assert!(data.join("indexer").is_dir());
    let _ = std::fs::remove_dir_all(&data);
}

/// A fresh directory for a test's files.
fn scratch_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(unique("warren-cli"));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

#[tokio::test]
async fn dev_with_an_api_key_file_requires_a_key() {
    let dir = scratch_dir();
    let keys = dir.join("api-keys");
    std::fs::write(&keys, "# user key\ncli-user cli-key-0123456789abcdef\n").expect("write");
    let keys = keys.to_string_lossy().into_owned();
    // Its own data directory: other `dev` tests run at the same time.
    let data = dir.join("data").to_string_lossy().into_owned();
    let args = [
        "dev",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data.as_str(),
        "--api-key-file",
        keys.as_str(),
    ]
    .map(str::to_owned);
    let (child, first) = tokio::task::spawn_blocking(move || {
        spawn(&args.iter().map(String::as_str).collect::<Vec<_>>())
    })
    .await
    .expect("task");
    let address = first
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .to_owned();
    let http = reqwest::Client::new();
    let url = format!("http://{address}/rpc/greeting_service/hello");
    let body = serde_json::json!({"name": "key"});
    let r = http.post(&url).json(&body).send().await.expect("send");
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"warren\"");
    let r = http
        .post(&url)
        .header("x-api-key", "cli-key-0123456789abcdef")
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let health = http
        .get(format!("http://{address}/healthz"))
        .send()
        .await
        .expect("send");
    assert_eq!(health.status(), 200);
    let status = tokio::task::spawn_blocking(move || terminate(child, Duration::from_secs(15)))
        .await
        .expect("task");
    assert!(status.success(), "{status:?}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn unusable_key_files_are_one_clear_error_without_their_contents() {
    let dir = scratch_dir();
    let file = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path.to_string_lossy().into_owned()
    };
    let bad_line = file("bad-line", "alice\tdo-not-print-me\n");
    let weak = file("weak", "do-not-print-me\n");
    let private = file(
        "private.pem",
        &String::from_utf8_lossy(
            &std::fs::read(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/jwt-rs256-private.pem"
            ))
            .expect("fixture"),
        ),
    );
    let missing = dir.join("missing").to_string_lossy().into_owned();
    for (flag, path, expected) in [
        ("--api-key-file", &missing, "cannot read"),
        (
            "--api-key-file",
            &bad_line,
            "line 1: the key must be 16-512",
        ),
        ("--jwt-hs256-secret-file", &weak, "at least 32 are required"),
        (
            "--jwt-rs256-public-key-file",
            &private,
            "this is a private key",
        ),
    ] {
        let started = Instant::now();
        let output = run(&["dev", "--listen", "127.0.0.1:0", flag, path]).await;
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(output.status.code(), Some(1), "{flag} {path}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let line = stderr.lines().last().unwrap_or("");
        assert!(
            line.starts_with(&format!("error: {flag} {path}")),
            "{stderr}"
        );
        assert!(line.contains(expected), "{stderr}");
        assert!(!stderr.contains("do-not-print-me"), "{stderr}");
        assert!(!stderr.contains("BEGIN RSA PRIVATE KEY"), "{stderr}");
    }
    let output = run(&["gateway", "--jwt-issuer", "https://issuer.test"]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("--jwt-issuer and --jwt-audience need"),
        "{output:?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A gateway stopped with SIGTERM after serving a call logs no error on the way out: its
/// callback queue's channels are closed before the connection is (closed the other way round,
/// lapin reported a connection error on most shutdowns).
#[tokio::test]
async fn a_gateway_stops_on_sigterm_without_an_error() {
    let mut h = Harness::start().await;
    let greeter = unique("greeter");
    h.serve(greeter::service_named(&greeter)).await;
    let mut command = warren();
    command
        .args(["gateway", "--listen", "127.0.0.1:0"])
        .stderr(Stdio::piped());
    let (mut child, first) =
        tokio::task::spawn_blocking(move || common::process::start(command, "warren gateway"))
            .await
            .expect("task");
    let stderr = child.take_stderr().expect("stderr");
    let address = common::process::http_address(&first);
    let url = format!("http://{address}/rpc/{greeter}/hello");
    let http = reqwest::Client::new();
    let answered = wait_until(Duration::from_secs(10), || {
        let request = http.post(&url).json(&serde_json::json!({"name": "x"}));
        async move { request.send().await.is_ok_and(|r| r.status() == 200) }
    })
    .await;
    assert!(answered, "the gateway never answered a call");
    let (status, log) =
        common::process::terminate_and_read(child, stderr, Duration::from_secs(15)).await;
    assert!(status.success(), "{status:?}");
    assert!(!log.contains("ERROR"), "{log}");
}

/// A call to an unknown service with a JWT: the broker returns the request, with the token in
/// its `nameko.auth_token` header. At the default log level the gateway logs the return as one
/// line of its own (service, method, request id) and the token appears nowhere in its log
/// (lapin logs a returned message whole, headers included, at WARN).
#[tokio::test]
async fn a_returned_request_is_logged_without_the_callers_token() {
    let dir = scratch_dir();
    let secret = "0123456789abcdef0123456789abcdef-returned";
    let secret_file = dir.join("secret");
    std::fs::write(&secret_file, secret).expect("write");
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 600;
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"sub": "alice", "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("token");
    let mut command = warren();
    command
        .env("RUST_LOG", "info")
        .args([
            "gateway",
            "--listen",
            "127.0.0.1:0",
            "--jwt-hs256-secret-file",
        ])
        .arg(&secret_file)
        .stderr(Stdio::piped());
    let (mut child, first) =
        tokio::task::spawn_blocking(move || common::process::start(command, "warren gateway"))
            .await
            .expect("task");
    let stderr = child.take_stderr().expect("stderr");
    let address = common::process::http_address(&first);
    let nobody = unique("nobody");
    let r = reqwest::Client::new()
        .post(format!("http://{address}/rpc/{nobody}/anything"))
        .bearer_auth(&token)
        .header("x-request-id", "req-returned-1")
        .json(&serde_json::json!({}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 404);
    let (status, log) =
        common::process::terminate_and_read(child, stderr, Duration::from_secs(15)).await;
    assert!(status.success(), "{status:?}");
    let signature = token.rsplit('.').next().unwrap_or(&token);
    assert!(
        !log.contains(signature),
        "the token reached the log:\n{log}"
    );
    assert!(!log.contains("auth_token"), "{log}");
    let line = log
        .lines()
        .find(|l| l.contains("returned a request"))
        .unwrap_or_else(|| panic!("no line about the returned request:\n{log}"));
    assert!(line.contains(&nobody), "{line}");
    assert!(line.contains("anything"), "{line}");
    assert!(line.contains("req-returned-1"), "{line}");
    let _ = std::fs::remove_dir_all(dir);
}

/// `warren openapi` documents the bundled services from their declarations alone: run from a
/// working directory it cannot write to, with `WARREN_DATA_DIR` naming a path that does not
/// exist, it prints exactly the committed document and logs nothing about a store, an index or
/// SQLite (it opens none).
#[tokio::test]
async fn openapi_opens_nothing_and_prints_the_committed_document() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let dir = scratch_dir();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).expect("chmod");
    // As root every directory is writable: the command runs as `nobody` then.
    // SAFETY: geteuid has no preconditions and cannot fail.
    let nobody = (unsafe { libc::geteuid() } == 0).then_some(65534u32);
    let command = |program: &str| {
        let mut command = std::process::Command::new(program);
        command.current_dir(&dir).env("RUST_LOG", "info");
        if let Some(uid) = nobody {
            command.uid(uid).gid(uid);
        }
        command
    };
    let mut probe = command("sh");
    probe.args(["-c", "touch probe"]);
    let probed = probe.output().expect("sh");
    assert!(
        !probed.status.success(),
        "the working directory must be unwritable for the test to mean anything"
    );
    let mut openapi = command(env!("CARGO_BIN_EXE_warren"));
    openapi
        .arg("openapi")
        .env("WARREN_DATA_DIR", dir.join("missing/data"))
        .env_remove("AMQP_URL");
    let output = tokio::task::spawn_blocking(move || openapi.output().expect("warren openapi"))
        .await
        .expect("task");
    let stderr = String::from_utf8_lossy(&output.stderr).to_lowercase();
    assert!(output.status.success(), "{stderr}");
    let committed = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json"))
        .expect("openapi/openapi.json");
    assert!(
        output.stdout == committed,
        "warren openapi differs from openapi/openapi.json"
    );
    for word in ["store", "index", "sqlite"] {
        assert!(!stderr.contains(word), "{word} in the log: {stderr}");
    }
    assert!(!dir.join("missing").exists());
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let _ = std::fs::remove_dir_all(dir);
}
