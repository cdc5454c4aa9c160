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
mod levels;
mod load;
mod nameko;
mod one_process;
mod pending;
mod procs;
mod raw;
mod report;
mod soak;
mod streams;
mod wrk;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use levels::{Load, ceiling_level, http_level, scaling, wait_for_greeter};
pub use levels::{LoadGenerator, address_of, hello_args, start_gateway, start_service};
use mesh::{Mesh, MeshConfig};
use procs::Process;
use raw::levels::RawTargets;
use report::Report;
use std::path::PathBuf;
use std::time::Duration;

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
    /// The bench's minimal responders (one per raw routing), for the two-process raw levels.
    #[command(hide = true)]
    RawResponder {
        /// The RabbitMQ URL.
        #[arg(long)]
        amqp: String,
        /// The run whose queues to serve.
        #[arg(long)]
        run: String,
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
    /// Skip the one-process levels (`warren dev --amqp` against the raw round trips in one
    /// process), which run after the others, with the greeter of the others stopped.
    #[arg(long)]
    skip_one_process: bool,
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
            Some(Hidden::RawResponder { amqp, run }) => raw::serve_until_stopped(&amqp, &run).await,
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
        let mut direct_extra = extra.clone();
        direct_extra.push("--direct-requests");
        let gateway_direct = start_gateway(amqp, &direct_extra)?;
        let floor = Process::bench(&["http-floor", "--listen", "127.0.0.1:0"])?;
        let ideal =
            Process::bench(&["http-floor", "--listen", "127.0.0.1:0", "--call-over", amqp])?;
        let raw = RawTargets::two_processes(amqp).await?;
        for round in 1..=args.rounds.max(1) {
            for &n in &args.connections {
                let row = http_level(FLOOR, &floor, &service, &load, n, warmup, measured);
                report.push(row.await?.in_round(round));
                let row = http_level(IDEAL, &ideal, &service, &load, n, warmup, measured);
                report.push(row.await?.in_round(round));
                for row in raw.levels(n, warmup, measured, round).await {
                    report.push(row);
                }
                let row = ceiling_level(&client, &service, n, warmup, measured).await;
                report.push(row.in_round(round));
                let row = http_level("gateway", &gateway, &service, &load, n, warmup, measured);
                report.push(row.await?.in_round(round));
                let row = http_level(
                    GATEWAY_DIRECT,
                    &gateway_direct,
                    &service,
                    &load,
                    n,
                    warmup,
                    measured,
                );
                report.push(row.await?.in_round(round));
            }
        }
        raw.close().await;
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
    if !args.no_levels && !args.skip_one_process {
        // `warren dev` serves its own greeter: the other one must not take its requests.
        drop(service);
        one_process::levels(&args, &load, &mut report, warmup, measured).await?;
    }
    report.finish();
    report.print();
    report.write(&args.out)?;
    println!("wrote {}", args.out.display());
    mesh.close().await;
    Ok(())
}

/// The target name of the HTTP floor's rows ([`floor`]).
pub const FLOOR: &str = "http floor";

/// The target name of the rows of a gateway run with `--direct-requests`.
pub const GATEWAY_DIRECT: &str = "gateway (direct requests)";

/// The target name of the ideal front's rows ([`floor`] with mesh's call).
pub const IDEAL: &str = "ideal front";
