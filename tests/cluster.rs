//! Warren on a three-node RabbitMQ cluster with quorum queues, a node lost under load.
//!
//! The cluster (`rabbit1-3@localhost` on 127.0.0.1:5701-5703) is the test script's
//! (`scripts/lib/rabbitmq-cluster.sh`, which exports `WARREN_CLUSTER_URLS`); these tests run
//! alone, after the others, since they kill its nodes. Each fault is a scenario of its own on
//! the same processes' layout, configured by the environment alone (`AMQP_URL` naming the three
//! nodes, `WARREN_QUEUE_TYPE=quorum`): `warren run greeting_service` twice, `warren run library
//! indexer`, `warren gateway`; under HTTP load (8 clients calling `greeting_service.hello` with
//! 2 s deadlines) while `add_book` writes every 0.2 s and this process dispatches events to a
//! service-pool handler of its own every 0.05 s. After the fault: every request answered by its
//! deadline with 200, 503 or 504; 100 successes in a row within 10 s; never more than 10 s
//! without a success; every acknowledged book present and searchable; every confirmed event
//! handled. Each scenario prints its figures.

mod common;

use common::process::{Spawned, spawn_with_env, terminate};
use common::{unique, wait_until};
use mesh::{Mesh, MeshConfig, Payload, RpcError, Service, State};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A call's deadline, as the clients ask for it.
const DEADLINE: Duration = Duration::from_secs(2);
/// What an answer may take beyond its deadline before it counts as not answered in time.
const SLACK: Duration = Duration::from_millis(500);
/// How soon after a fault the gateway must answer 100 calls in a row.
const RECOVERY_LIMIT: Duration = Duration::from_secs(10);
/// The longest time without a successful answer.
const GAP_LIMIT: Duration = Duration::from_secs(10);

/// The cluster's nodes, and what `rabbitmqctl` and the test script's library do to them.
struct Cluster;

impl Cluster {
    fn urls() -> String {
        std::env::var("WARREN_CLUSTER_URLS").unwrap_or_else(|_| {
            panic!(
                "WARREN_CLUSTER_URLS is not set: run the cluster tests through scripts/test.sh, \
                 which starts the cluster (scripts/lib/rabbitmq-cluster.sh)"
            )
        })
    }

    /// Runs `script` with the cluster library sourced.
    fn shell(script: &str) -> String {
        let lib = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/lib/rabbitmq-cluster.sh"
        );
        let output = Command::new("bash")
            .args(["-c", &format!("source {lib}; {script}")])
            .output()
            .expect("bash");
        assert!(
            output.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn ctl(node: u8, args: &[&str]) -> String {
        let output = Command::new("rabbitmqctl")
            .args(["-n", &format!("rabbit{node}@localhost"), "-q"])
            .args(args)
            .output()
            .expect("rabbitmqctl");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn is_up(node: u8) -> bool {
        Command::new("rabbitmqctl")
            .args([
                "-n",
                &format!("rabbit{node}@localhost"),
                "-q",
                "await_startup",
            ])
            .args(["--timeout", "5"])
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// Every node up (a node a scenario left down is started again).
    fn restore() {
        for node in 1..=3 {
            if !Self::is_up(node) {
                Self::shell(&format!("start_cluster_node {node}"));
            }
        }
    }

    /// `kill -9` of node `node`'s VM.
    fn kill(node: u8) {
        let pid = Self::shell(&format!("cluster_node_pid {node}"));
        let pid = pid.trim();
        assert!(!pid.is_empty(), "no pid for rabbit{node}");
        let killed = Command::new("kill")
            .args(["-9", pid])
            .status()
            .expect("kill");
        assert!(killed.success());
    }

    /// A node that is up, other than those in `not`.
    fn up_other_than(not: &[u8]) -> u8 {
        (1..=3)
            .find(|n| !not.contains(n) && Self::is_up(*n))
            .expect("a node up")
    }

    /// The node (1-3) process `pid`'s connection is on, from the AMQP port it connected to.
    fn node_of_process(pid: u32) -> u8 {
        let asking = Self::up_other_than(&[]);
        let name = format!("\"warren-{pid}\"");
        let listing = Self::ctl(
            asking,
            &[
                "list_connections",
                "port",
                "client_properties",
                "--no-table-headers",
            ],
        );
        listing
            .lines()
            .find(|line| line.contains(&name))
            .and_then(|line| line.split_whitespace().next())
            .and_then(|port| port.parse::<u16>().ok())
            .and_then(|port| u8::try_from(port.checked_sub(5700)?).ok())
            .unwrap_or_else(|| panic!("no connection of warren-{pid}:\n{listing}"))
    }

    /// The node (1-3) holding the leader of quorum queue `queue`.
    fn leader_of(queue: &str) -> u8 {
        let asking = Self::up_other_than(&[]);
        let listing = Self::ctl(
            asking,
            &["list_queues", "name", "leader", "--no-table-headers"],
        );
        listing
            .lines()
            .find_map(|line| {
                let mut fields = line.split_whitespace();
                (fields.next() == Some(queue)).then(|| fields.next())?
            })
            .and_then(|leader| leader.strip_prefix("rabbit")?.chars().next()?.to_digit(10))
            .and_then(|n| u8::try_from(n).ok())
            .unwrap_or_else(|| panic!("no leader of {queue}:\n{listing}"))
    }
}

/// The processes of a scenario.
struct Processes {
    greeters: Vec<Spawned>,
    elibrary: Spawned,
    gateway: Spawned,
    base: String,
    data: std::path::PathBuf,
}

impl Processes {
    async fn start() -> Self {
        let urls = Cluster::urls();
        let data = std::env::temp_dir().join(unique("cluster-data"));
        let data_dir = data.to_string_lossy().into_owned();
        tokio::task::spawn_blocking(move || {
            let env = |extra: &[(&'static str, String)]| {
                let mut env = vec![
                    ("AMQP_URL", urls.clone()),
                    ("WARREN_QUEUE_TYPE", "quorum".to_owned()),
                    // The processes' log level (warn unless told otherwise, to find a failure).
                    (
                        "RUST_LOG",
                        std::env::var("CLUSTER_RUST_LOG").unwrap_or_else(|_| "warn".into()),
                    ),
                ];
                env.extend_from_slice(extra);
                env
            };
            let start = |args: &[&str], env: Vec<(&'static str, String)>| {
                let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
                spawn_with_env(args, &env)
            };
            let greeters = (0..2)
                .map(|_| start(&["run", "greeting_service"], env(&[])).0)
                .collect();
            let (elibrary, _) = start(
                &["run", "library", "indexer"],
                env(&[("WARREN_DATA_DIR", data_dir.clone())]),
            );
            let (gateway, first) = start(
                &["gateway"],
                env(&[("WARREN_LISTEN", "127.0.0.1:0".to_owned())]),
            );
            Self {
                greeters,
                elibrary,
                gateway,
                base: format!("http://{}", common::process::http_address(&first)),
                data,
            }
        })
        .await
        .expect("task")
    }

    async fn stop(self) {
        let Self {
            greeters,
            elibrary,
            gateway,
            data,
            ..
        } = self;
        tokio::task::spawn_blocking(move || {
            for child in std::iter::once(gateway)
                .chain(std::iter::once(elibrary))
                .chain(greeters)
            {
                let status = terminate(child, Duration::from_secs(20));
                assert!(status.success(), "{status:?}");
            }
        })
        .await
        .expect("task");
        let _ = std::fs::remove_dir_all(data);
    }
}

/// One call's fate.
#[derive(Debug, Clone, Copy)]
struct Outcome {
    sent: Instant,
    took: Duration,
    /// The HTTP status, or `None` when no answer came.
    status: Option<u16>,
}

impl Outcome {
    fn answered_at(&self) -> Instant {
        self.sent + self.took
    }
}

/// The load: 8 clients calling `hello`, a writer adding books, and events dispatched to a
/// service-pool handler of this process.
struct Load {
    running: Arc<AtomicBool>,
    calls: Arc<Mutex<Vec<Outcome>>>,
    books: Arc<Mutex<Vec<(i64, i64, String)>>>,
    confirmed: Arc<Mutex<BTreeSet<u64>>>,
    handled: Handled,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    mesh: Mesh,
    sink: mesh::RunningService,
}

/// The events the service-pool handler got.
#[derive(Clone, Default)]
struct Handled(Arc<Mutex<BTreeSet<u64>>>);

async fn on_tick(State(h): State<Handled>, Payload(n): Payload<u64>) -> Result<(), RpcError> {
    h.0.lock().expect("handled").insert(n);
    Ok(())
}

impl Load {
    async fn start(base: &str) -> Self {
        let running = Arc::new(AtomicBool::new(true));
        let calls = Arc::new(Mutex::new(Vec::new()));
        let http = reqwest::Client::builder()
            .timeout(DEADLINE + SLACK + Duration::from_secs(1))
            .build()
            .expect("client");
        let mut tasks = Vec::new();
        for client in 0..8 {
            let (running, calls, http) = (running.clone(), calls.clone(), http.clone());
            let url = format!("{base}/rpc/greeting_service/hello");
            tasks.push(tokio::spawn(async move {
                while running.load(Ordering::Relaxed) {
                    let sent = Instant::now();
                    let answer = http
                        .post(&url)
                        .header("x-timeout-ms", DEADLINE.as_millis().to_string())
                        .json(&json!({"name": format!("c{client}")}))
                        .send()
                        .await;
                    let outcome = Outcome {
                        sent,
                        took: sent.elapsed(),
                        status: answer.ok().map(|r| r.status().as_u16()),
                    };
                    if outcome.status != Some(200) {
                        // A refusal comes at once: no hot loop while the broker is away.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    calls.lock().expect("calls").push(outcome);
                }
            }));
        }
        let books = Arc::new(Mutex::new(Vec::new()));
        {
            let (running, books, http) = (running.clone(), books.clone(), http.clone());
            let url = format!("{base}/rpc/library/add_book");
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                while running.load(Ordering::Relaxed) {
                    n += 1;
                    let word = format!("w{}x{n}", &unique("b")[2..]).replace('_', "");
                    let book = json!({"title": format!("Book {word}"), "author": "Cluster",
                                      "text": format!("the word is {word}")});
                    let answer = http
                        .post(&url)
                        .header("x-timeout-ms", DEADLINE.as_millis().to_string())
                        .json(&book)
                        .send()
                        .await;
                    if let Ok(r) = answer
                        && r.status() == 200
                        && let Ok(written) = r.json::<Value>().await
                    {
                        let (id, version) = (written["id"].as_i64(), written["version"].as_i64());
                        if let (Some(id), Some(version)) = (id, version) {
                            books.lock().expect("books").push((id, version, word));
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }));
        }
        let mut config = MeshConfig::with_url(Cluster::urls());
        config.amqp.queue_type = mesh::amqp::QueueType::Quorum;
        let mesh = Mesh::amqp(config).await.expect("the cluster");
        let source = unique("src");
        let handled = Handled::default();
        let sink = mesh
            .serve(
                Service::new(unique("sink"))
                    .on_event(&source, "tick", on_tick)
                    .with_state(handled.clone()),
            )
            .await
            .expect("serve the sink");
        let confirmed = Arc::new(Mutex::new(BTreeSet::new()));
        {
            let (running, confirmed) = (running.clone(), confirmed.clone());
            let client = mesh.client(&source).await.expect("client");
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                while running.load(Ordering::Relaxed) {
                    n += 1;
                    if client.dispatch("tick", json!(n)).await.is_ok() {
                        confirmed.lock().expect("confirmed").insert(n);
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }));
        }
        Self {
            running,
            calls,
            books,
            confirmed,
            handled,
            tasks,
            mesh,
            sink,
        }
    }

    /// Whether the calls answered since `since` end in 100 successes in a row.
    fn recovered_since(&self, since: Instant) -> bool {
        let calls = self.calls.lock().expect("calls");
        let mut answered: Vec<&Outcome> =
            calls.iter().filter(|c| c.answered_at() > since).collect();
        answered.sort_by_key(|c| c.answered_at());
        answered.len() >= 100
            && answered
                .iter()
                .rev()
                .take(100)
                .all(|c| c.status == Some(200))
    }

    /// Waits until 100 calls in a row have succeeded since `since`.
    async fn wait_recovered(&self, since: Instant, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.recovered_since(since) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    async fn stop(
        self,
    ) -> (
        Vec<Outcome>,
        Vec<(i64, i64, String)>,
        BTreeSet<u64>,
        Handled,
    ) {
        self.running.store(false, Ordering::Relaxed);
        for task in self.tasks {
            let _ = task.await;
        }
        let calls = self.calls.lock().expect("calls").clone();
        let books = self.books.lock().expect("books").clone();
        let confirmed = self.confirmed.lock().expect("confirmed").clone();
        // The events confirmed last are handled a moment later.
        let handled = self.handled.clone();
        let all = wait_until(Duration::from_secs(20), || {
            let (handled, confirmed) = (handled.clone(), confirmed.clone());
            async move { confirmed.is_subset(&handled.0.lock().expect("handled")) }
        })
        .await;
        if !all {
            eprintln!("not every confirmed event was handled within 20 s");
        }
        self.sink.stop().await;
        self.mesh.close().await;
        (calls, books, confirmed, handled)
    }
}

/// What a scenario measured after its fault.
#[derive(Debug)]
struct Figures {
    sent: usize,
    in_time: usize,
    statuses: std::collections::BTreeMap<String, usize>,
    worst: Duration,
    recovery: Duration,
    longest_gap: Duration,
    books_acked: usize,
    books_present: usize,
    books_searchable_without_resync: usize,
    events_confirmed: usize,
    events_handled: usize,
}

/// Runs `fault` under load and checks what is asked of every fault. `fault` returns the moment
/// of its last action (a scenario of several steps waits for recovery between them); the
/// recovery is timed from then, everything else from its first action.
async fn scenario(name: &str, fault: impl AsyncFnOnce(&Processes, &Load) -> Instant) {
    Cluster::restore();
    let processes = Processes::start().await;
    let load = Load::start(&processes.base).await;
    let started = Instant::now();
    assert!(
        load.wait_recovered(started, Duration::from_secs(60)).await,
        "{name}: the load never reached 100 successes in a row before the fault"
    );
    let fault_at = Instant::now();
    let last_fault = fault(&processes, &load).await;
    let recovered = load
        .wait_recovered(last_fault, Duration::from_secs(60))
        .await;
    let recovered_at = Instant::now();
    // A moment of steady state after the recovery.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (calls, books, confirmed, handled) = load.stop().await;

    let mut figures = figures(&calls, fault_at, last_fault, recovered_at);
    figures.events_confirmed = confirmed.len();
    figures.events_handled = confirmed
        .iter()
        .filter(|n| handled.0.lock().expect("handled").contains(n))
        .count();
    check_books(&processes.base, &books, &mut figures).await;
    eprintln!("cluster scenario {name}: {figures:#?}");
    processes.stop().await;

    assert!(
        recovered,
        "{name}: no 100 successes in a row after the fault"
    );
    assert_eq!(figures.in_time, figures.sent, "{name}: {figures:#?}");
    assert!(figures.worst <= DEADLINE + SLACK, "{name}: {figures:#?}");
    for status in figures.statuses.keys() {
        assert!(
            ["200", "503", "504"].contains(&status.as_str()),
            "{name}: status {status}: {figures:#?}"
        );
    }
    assert!(figures.recovery <= RECOVERY_LIMIT, "{name}: {figures:#?}");
    assert!(figures.longest_gap <= GAP_LIMIT, "{name}: {figures:#?}");
    assert_eq!(
        figures.books_present, figures.books_acked,
        "{name}: {figures:#?}"
    );
    assert_eq!(
        figures.events_handled, figures.events_confirmed,
        "{name}: {figures:#?}"
    );
}

/// The calls' figures from the fault on.
fn figures(
    calls: &[Outcome],
    fault_at: Instant,
    last_fault: Instant,
    recovered_at: Instant,
) -> Figures {
    let after: Vec<&Outcome> = calls.iter().filter(|c| c.sent >= fault_at).collect();
    let mut statuses = std::collections::BTreeMap::new();
    for call in &after {
        let key = call
            .status
            .map_or("no answer".to_owned(), |s| s.to_string());
        *statuses.entry(key).or_insert(0) += 1;
    }
    let in_time = after
        .iter()
        .filter(|c| c.status.is_some() && c.took <= DEADLINE + SLACK)
        .count();
    let worst = after.iter().map(|c| c.took).max().unwrap_or_default();
    // Successes in the order they were answered, from the last one before the fault.
    let mut successes: Vec<Instant> = calls
        .iter()
        .filter(|c| c.status == Some(200))
        .map(Outcome::answered_at)
        .collect();
    successes.sort();
    let from = successes
        .iter()
        .rposition(|at| *at <= fault_at)
        .unwrap_or(0);
    let longest_gap = successes[from..]
        .windows(2)
        .map(|w| w[1].duration_since(w[0]))
        .max()
        .unwrap_or_default();
    Figures {
        sent: after.len(),
        in_time,
        statuses,
        worst,
        recovery: recovered_at.saturating_duration_since(last_fault),
        longest_gap,
        books_acked: 0,
        books_present: 0,
        books_searchable_without_resync: 0,
        events_confirmed: 0,
        events_handled: 0,
    }
}

/// Every acknowledged book is in the library, and searchable once the indexer converged (on
/// its own within 10 s, or after a `resync`, its catch-up on demand).
async fn check_books(base: &str, books: &[(i64, i64, String)], figures: &mut Figures) {
    let http = reqwest::Client::new();
    let call = |method: &str, body: Value| {
        let request = http
            .post(format!("{base}/rpc/{method}"))
            .header("x-timeout-ms", "5000")
            .json(&body);
        async move {
            let r = request.send().await.ok()?;
            (r.status() == 200).then_some(())?;
            r.json::<Value>().await.ok()
        }
    };
    figures.books_acked = books.len();
    let mut present = 0;
    for (id, _, _) in books {
        let got = wait_until(Duration::from_secs(10), || async {
            call("library/get_book", json!({"id": id})).await.is_some()
        })
        .await;
        present += usize::from(got);
    }
    figures.books_present = present;
    let searchable = async |books: &[(i64, i64, String)]| {
        let mut found = 0;
        for (id, _, word) in books {
            let hits = call("indexer/search", json!({"query": word})).await;
            let ids: Vec<i64> = hits
                .map(|h| h["hits"].as_array().cloned().unwrap_or_default())
                .unwrap_or_default()
                .iter()
                .filter_map(|hit| hit["id"].as_i64())
                .collect();
            found += usize::from(ids.contains(id));
        }
        found
    };
    let newest = books.iter().map(|(_, v, _)| *v).max().unwrap_or(0);
    let converged = wait_until(Duration::from_secs(10), || async {
        call("indexer/stats", json!({}))
            .await
            .and_then(|s| s["last_applied_version"].as_i64())
            .is_some_and(|v| v >= newest)
    })
    .await;
    figures.books_searchable_without_resync = if converged {
        searchable(books).await
    } else {
        0
    };
    if figures.books_searchable_without_resync < books.len() {
        let resynced = call("indexer/resync", json!({})).await;
        assert!(resynced.is_some(), "indexer.resync failed");
    }
    assert_eq!(searchable(books).await, books.len(), "books not searchable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_node_the_gateway_is_connected_to_is_killed() {
    scenario("kill the gateway's node", async |processes, _load| {
        let node = Cluster::node_of_process(processes.gateway.pid());
        Cluster::kill(node);
        Instant::now()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_leader_of_the_service_queue_is_killed_restarted_then_another_node_lost() {
    scenario(
        "kill the leader, restart it, lose another",
        async |_processes, load| {
            let leader = Cluster::leader_of("rpc-greeting_service");
            Cluster::kill(leader);
            assert!(
                load.wait_recovered(Instant::now(), RECOVERY_LIMIT * 2)
                    .await,
                "no recovery after the leader's loss"
            );
            Cluster::shell(&format!("start_cluster_node {leader}"));
            assert!(
                load.wait_recovered(Instant::now(), RECOVERY_LIMIT * 2)
                    .await,
                "no recovery after the leader came back"
            );
            let other = Cluster::up_other_than(&[leader]);
            Cluster::kill(other);
            Instant::now()
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_stops_its_application_and_starts_it_again() {
    scenario("stop_app, start_app", async |processes, load| {
        let node = Cluster::node_of_process(processes.gateway.pid());
        Cluster::ctl(node, &["stop_app"]);
        assert!(
            load.wait_recovered(Instant::now(), RECOVERY_LIMIT * 2)
                .await,
            "no recovery while the node's application was stopped"
        );
        Cluster::ctl(node, &["start_app"]);
        Instant::now()
    })
    .await;
}
