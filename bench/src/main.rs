//! `warren-bench`: the broker's own RPC ceiling and the gateway on top of it, measured in one
//! run against the same RabbitMQ and the same greeter service, with the ratio between them.
//!
//! Process layout, the same for both: the greeter runs in its own process (`warren run`); the
//! ceiling is mesh's RPC client in this process calling it over AMQP; the gateway runs in its own
//! process (`warren gateway`) and this process loads it over HTTP/1.1 keep-alive connections.
//!
//! Each level also loads the HTTP floor ([`floor`]), a bare HTTP server in its own process, with
//! the same load: what the HTTP exchange alone costs here, and so the highest ratio any HTTP
//! front could reach on this machine; and the ideal front, the same bare server making mesh's call
//! for every request: a gateway with no work of its own, measured. Per level and round: floor,
//! ideal front, ceiling, gateway.
//!
//! Optional runs: `--with-nameko` (nameko's own `@http` gateway at the same levels), `--pending`
//! (many slow calls pending at once: the gateway's memory and time to drain, [`pending`]),
//! `--soak` (a fixed rate for minutes: RSS and pending calls over time, [`soak`]), `--streams`
//! (server-sent event streams: the RSS of idle streams and the fan-out's rate, each with its
//! baseline, [`streams`]) and `--scaling`.

mod cpu;
mod floor;
mod http;
mod load;
mod nameko;
mod pending;
mod procs;
mod report;
mod soak;
mod streams;
mod wrk;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use cpu::CpuMeter;
use load::closed_loop;
use mesh::{Arguments, Mesh, MeshConfig};
use procs::{Process, RssPeak};
use report::{Report, Row};
use serde_json::json;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `warren-bench`: measure the broker's RPC ceiling and the gateway on top of it (needs
/// RabbitMQ and a built `warren`).
#[derive(Debug, Parser)]
#[command(name = "warren-bench", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Hidden>,
    #[command(flatten)]
    bench: BenchArgs,
}

/// What the benchmark starts of itself.
#[derive(Debug, Subcommand)]
enum Hidden {
    /// The bench's HTTP floor: a bare HTTP/1.1 server answering every request at once.
    #[command(hide = true)]
    HttpFloor {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
        /// Make mesh's call of `greeting_service.hello` over this RabbitMQ for every request and
        /// answer with its reply (the bench's ideal front).
        #[arg(long)]
        call_over: Option<String>,
    },
}

/// Options of `warren-bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// The RabbitMQ URL.
    #[arg(long = "amqp", env = "AMQP_URL", default_value = mesh::amqp::DEFAULT_AMQP_URL, hide_env_values = true)]
    amqp_url: String,
    /// Measured seconds per load level.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Unmeasured warm-up seconds before each level.
    #[arg(long, default_value_t = 1)]
    warmup_seconds: u64,
    /// Concurrency levels: calls in flight (ceiling) and HTTP connections (gateway).
    #[arg(long, value_delimiter = ',', default_value = "8,64,256")]
    connections: Vec<usize>,
    /// Rounds of the levels (and of `--streams`); with more than one, the report adds the
    /// medians. The broker's own
    /// rate drifts by 10% or more within minutes on a shared machine: each level's ceiling runs
    /// just before its gateway, and the median over rounds is the figure to quote.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// The HTTP load generator of the levels: `wrk` (needs it installed), the built-in `hyper`
    /// client, or `auto` (wrk when installed).
    #[arg(long, value_enum, default_value_t = LoadGenerator::Auto)]
    load: LoadGenerator,
    /// Skip the ceiling and gateway levels (run only the optional runs asked for).
    #[arg(long)]
    no_levels: bool,
    /// The greeter's max_workers (its prefetch).
    #[arg(long, default_value_t = 64)]
    service_workers: u16,
    /// The gateway's runtime threads (`warren --worker-threads`; its default when not given).
    #[arg(long)]
    gateway_worker_threads: Option<u16>,
    /// Also load nameko's `@http` gateway (from the interop venv) at the same levels.
    #[arg(long)]
    with_nameko: bool,
    /// Calls to keep pending in the gateway at once (`greeting_service.slow`); 0: no such run.
    #[arg(long, default_value_t = 0)]
    pending: usize,
    /// Pending calls per HTTP/2 connection (and the gateway's stream limit for the run).
    #[arg(long, default_value_t = 1_000)]
    pending_streams: usize,
    /// Send the pending calls over HTTP/1.1, one connection per call, instead of HTTP/2.
    #[arg(long)]
    pending_http1: bool,
    /// How long the pending calls sleep, counted from the first one sent (default: 1 s + 0.5 ms
    /// per call, enough to get them all out first; 1 s more than sending takes at
    /// `--pending-rate`).
    #[arg(long)]
    pending_hold_ms: Option<u64>,
    /// Send the pending calls at this many per second, spread over the connections, instead of
    /// all at once (0). A burst measures the receive queues' high-water marks too: each
    /// connection's whole share arrives within a read or two, and h2 keeps the largest queue it
    /// ever held.
    #[arg(long, default_value_t = 0)]
    pending_rate: u64,
    /// Seconds of the soak run (a fixed rate through the gateway); 0: no soak.
    #[arg(long, default_value_t = 0)]
    soak: u64,
    /// The soak's request rate, per second (open loop).
    #[arg(long, default_value_t = 2000)]
    rate: u64,
    /// The soak's keep-alive connections.
    #[arg(long, default_value_t = 64)]
    soak_connections: usize,
    /// Seconds between the soak's samples of the gateway's RSS and pending calls.
    #[arg(long, default_value_t = 10)]
    sample_seconds: u64,
    /// Also measure the gateway's event streams (`GET /events/...`): the RSS of idle streams and
    /// the events/s fanned out to many, each against its baseline, `--rounds` times.
    #[arg(long)]
    streams: bool,
    /// Idle event streams whose memory is measured (one HTTP/1.1 connection each); 0: none.
    #[arg(long, default_value_t = 1_000)]
    streams_idle: usize,
    /// Event streams the fan-out's events are delivered to.
    #[arg(long, default_value_t = 100)]
    streams_clients: usize,
    /// Events dispatched per fan-out run.
    #[arg(long, default_value_t = 20_000)]
    streams_events: usize,
    /// Dispatches in flight at once (each waits for the broker's confirm).
    #[arg(long, default_value_t = 64)]
    streams_in_flight: usize,
    /// Also run the scaling runs (kv.inc and fib with 1 and 2 instances).
    #[arg(long)]
    scaling: bool,
    /// Where the JSON and Markdown tables go.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// The `warren` binary to start services and gateways with [default: the one beside this
    /// binary].
    #[arg(long)]
    warren: Option<PathBuf>,
}

/// mimalloc, as the `warren` binary has: the floor and the ideal front allocate per request as
/// the gateway does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async move {
        match cli.command {
            Some(Hidden::HttpFloor { listen, call_over }) => {
                floor::serve(listen, call_over.as_deref()).await
            }
            None => run(cli.bench).await,
        }
    });
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Which program sends the HTTP load of the levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LoadGenerator {
    /// wrk when installed, else hyper.
    Auto,
    /// The built-in hyper client, in this process.
    Hyper,
    /// wrk, one thread, in its own process.
    Wrk,
}

/// The load generator a run uses, ready to go.
enum Load {
    Hyper,
    /// wrk with its Lua script.
    Wrk(PathBuf),
}

impl Load {
    fn choose(args: &BenchArgs) -> Result<Self> {
        let wrk = match args.load {
            LoadGenerator::Hyper => false,
            LoadGenerator::Auto => wrk::installed(),
            LoadGenerator::Wrk if wrk::installed() => true,
            LoadGenerator::Wrk => bail!("--load wrk: wrk is not installed (apt-get install wrk)"),
        };
        if !wrk {
            return Ok(Self::Hyper);
        }
        let body = serde_json::to_string(&hello_args())?;
        Ok(Self::Wrk(wrk::script(&args.out, &body)?))
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Hyper => "hyper (built in)",
            Self::Wrk(_) => "wrk -t1",
        }
    }
}

/// Runs the benchmark and writes its report.
async fn run(args: BenchArgs) -> Result<()> {
    if let Some(warren) = &args.warren {
        procs::use_warren(warren.clone());
    }
    let open_files = procs::raise_open_files_limit();
    let warmup = Duration::from_secs(args.warmup_seconds);
    let measured = Duration::from_secs(args.seconds.max(1));
    let amqp = args.amqp_url.as_str();
    let mut report = Report::new(&args);
    let load = Load::choose(&args)?;
    report.load_generator = load.name();

    let service = start_service("greeting_service", amqp, args.service_workers)?;
    let mesh = Mesh::amqp(MeshConfig::with_url(amqp)).await?;
    let client = mesh.client("bench").await?;
    wait_for_greeter(&client).await?;

    if !args.no_levels {
        println!("ceiling: mesh's RPC client -> RabbitMQ -> greeter (no HTTP)");
        println!(
            "gateway: HTTP keep-alive ({}) -> warren gateway -> RabbitMQ -> greeter",
            load.name()
        );
        println!("{FLOOR}: the same HTTP load -> a bare hyper server answering at once");
        println!(
            "{IDEAL}: the same HTTP load -> the bare server making mesh's call -> RabbitMQ -> greeter"
        );
        let threads = args.gateway_worker_threads.map(|t| t.to_string());
        let extra: Vec<&str> = match &threads {
            Some(threads) => vec!["--worker-threads", threads],
            None => Vec::new(),
        };
        let gateway = start_gateway(amqp, &extra)?;
        let floor = Process::bench(&["http-floor", "--listen", "127.0.0.1:0"])?;
        let ideal =
            Process::bench(&["http-floor", "--listen", "127.0.0.1:0", "--call-over", amqp])?;
        for round in 1..=args.rounds.max(1) {
            for &n in &args.connections {
                let row = http_level(FLOOR, &floor, &service, &load, n, warmup, measured);
                report.push(row.await?.in_round(round));
                let row = http_level(IDEAL, &ideal, &service, &load, n, warmup, measured);
                report.push(row.await?.in_round(round));
                let row = ceiling_level(&client, &service, n, warmup, measured).await;
                report.push(row.in_round(round));
                let row = http_level("gateway", &gateway, &service, &load, n, warmup, measured);
                report.push(row.await?.in_round(round));
            }
        }
        report.summarize();
    }

    if args.with_nameko {
        println!("nameko: HTTP keep-alive -> nameko @http + RpcProxy -> RabbitMQ -> greeter");
        let nameko = nameko::start(amqp)?;
        for &n in &args.connections {
            report.push(http_level("nameko", &nameko, &service, &load, n, warmup, measured).await?);
        }
    }

    if args.pending > 0 {
        let outcome = pending::run(&args, open_files).await?;
        report.pending = Some(outcome);
    }
    if args.soak > 0 {
        let outcome = soak::run(&args).await?;
        report.soak = Some(outcome);
    }
    if args.streams {
        let outcome = streams::run(&args, &service).await?;
        report.streams = Some(outcome);
    }
    if args.scaling {
        scaling(&args, &mut report, warmup, measured).await?;
    }
    report.print();
    report.write(&args.out)?;
    println!("wrote {}", args.out.display());
    mesh.close().await;
    Ok(())
}

/// The target name of the HTTP floor's rows ([`floor`]).
pub const FLOOR: &str = "http floor";

/// The target name of the ideal front's rows ([`floor`] with mesh's call).
pub const IDEAL: &str = "ideal front";

/// One closed-loop level of `hello` from mesh's RPC client, `n` calls in flight, with the
/// machine's CPU split.
async fn ceiling_level(
    client: &mesh::Client,
    service: &Process,
    n: usize,
    warmup: Duration,
    measured: Duration,
) -> Row {
    let client = client.clone();
    let meter = CpuMeter::start(None, service.pid());
    let sample = closed_loop(n, warmup, measured, move |_| {
        let client = client.clone();
        async move {
            let body = Arguments::kwargs(hello_args());
            client
                .rpc("greeting_service")
                .call("hello", body)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    })
    .await
    .figures(warmup);
    let cpu = meter.stop(sample.requests_in_all);
    Row::measured("ceiling", n, &sample, None, None).with_cpu(cpu)
}

/// Starts `warren run SERVICE` with `workers` workers (its prefetch).
fn start_service(service: &str, amqp: &str, workers: u16) -> Result<Process> {
    let workers = workers.to_string();
    Process::warren(&["run", service, "--amqp", amqp, "--max-workers", &workers])
}

/// Starts a `warren gateway` on a free local port, with `extra` flags.
fn start_gateway(amqp: &str, extra: &[&str]) -> Result<Process> {
    let mut args = vec!["gateway", "--listen", "127.0.0.1:0", "--amqp", amqp];
    args.extend_from_slice(extra);
    Process::warren(&args)
}

/// The `http://ADDR` a started gateway printed.
fn address_of(server: &Process) -> Result<SocketAddr> {
    server
        .http_address()
        .with_context(|| format!("no address in {:?}", server.first_line))
}

/// One closed-loop level of `hello` over `n` keep-alive connections to `server`, with the
/// server process's peak RSS and CPU per 10,000 requests, and the machine's CPU split.
async fn http_level(
    target: &str,
    server: &Process,
    service: &Process,
    load: &Load,
    n: usize,
    warmup: Duration,
    measured: Duration,
) -> Result<Row> {
    const PATH: &str = "/rpc/greeting_service/hello";
    let address = address_of(server)?;
    let connections = match load {
        Load::Hyper => http::open_many(address, n)
            .await
            .map_err(anyhow::Error::msg)?,
        Load::Wrk(_) => Vec::new(),
    };
    let body = Bytes::from(serde_json::to_vec(&hello_args())?);
    let rss = RssPeak::start(server.pid());
    let meter = CpuMeter::start(Some(server.pid()), service.pid());
    let sample = match load {
        Load::Hyper => {
            let connections = Arc::new(connections);
            closed_loop(n, warmup, measured, move |worker| {
                let (connections, body) = (connections.clone(), body.clone());
                async move { connections[worker].post_json(PATH, body).await }
            })
            .await
            .figures(warmup)
        }
        Load::Wrk(script) => wrk::level(address, PATH, script, n, warmup, measured).await?,
    };
    // CPU over warm-up and measurement, over the requests of both; the server's seconds per
    // 10,000 requests are its µs per request / 100.
    let split = meter.stop(sample.requests_in_all);
    let cpu_per_10k = split.server_us.map(|us| us / 100.0);
    Ok(Row::measured(target, n, &sample, Some(rss.stop()), cpu_per_10k).with_cpu(split))
}

fn hello_args() -> serde_json::Map<String, serde_json::Value> {
    json!({"name": "Matt"})
        .as_object()
        .cloned()
        .unwrap_or_default()
}

async fn wait_for_greeter(client: &mesh::Client) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let body = Arguments::kwargs(hello_args());
        match client.rpc("greeting_service").call("hello", body).await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() > deadline => bail!("the greeter never answered: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Throughput of `kv.inc` and `greeting_service.fib` through the gateway at 64 connections,
/// with one and with two service processes.
async fn scaling(
    args: &BenchArgs,
    report: &mut Report,
    warmup: Duration,
    measured: Duration,
) -> Result<()> {
    let amqp = args.amqp_url.as_str();
    let gateway = start_gateway(amqp, &[])?;
    let address = address_of(&gateway)?;
    let cases: [(&str, &str, &str, serde_json::Value); 2] = [
        ("kv.inc", "kv", "/rpc/kv/inc", json!({"key": "bench"})),
        (
            "greeting_service.fib(22)",
            "greeting_service",
            "/rpc/greeting_service/fib",
            json!({"n": 22}),
        ),
    ];
    for (label, service, path, args_json) in cases {
        let mut instances = Vec::new();
        for count in 1..=2 {
            instances.push(start_service(service, amqp, args.service_workers)?);
            let n = 64;
            let connections = Arc::new(
                http::open_many(address, n)
                    .await
                    .map_err(anyhow::Error::msg)?,
            );
            let body = Bytes::from(serde_json::to_vec(&args_json)?);
            let sample = closed_loop(n, warmup, measured, move |worker| {
                let (connections, body) = (connections.clone(), body.clone());
                async move { connections[worker].post_json(path, body).await }
            })
            .await
            .figures(warmup);
            report.push(Row::measured(
                &format!("{label} x{count}"),
                n,
                &sample,
                None,
                None,
            ));
        }
    }
    Ok(())
}
