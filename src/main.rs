//! `warren`: run the gateway and the bundled services, or call a service. Built on
//! `warren-runtime`, as a team's own service binary is; each subcommand is a file of `cmd/`.

mod bundled;
mod cmd;
mod shell;

use clap::{Parser, Subcommand};
use std::process::ExitCode;
use warren_runtime::LogFormat;

/// mimalloc: the gateway's hot path allocates per request (HTTP, JSON, AMQP frames), and glibc's
/// malloc/free were a tenth of its CPU in a profile under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "warren",
    version,
    about = "HTTP/JSON gateway and services on a nameko-compatible AMQP RPC mesh"
)]
struct Cli {
    /// Log format: `pretty` for people, `json` for log collectors (filter with RUST_LOG).
    #[arg(long, global = true, env = "WARREN_LOG_FORMAT", default_value = "pretty", value_parser = ["pretty", "json"])]
    log_format: String,
    /// Threads running requests and handlers [default: one per CPU core]. On a small machine
    /// shared with the broker, fewer threads mean fewer cross-thread wake-ups.
    #[arg(long, global = true, env = "WARREN_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..))]
    worker_threads: Option<u16>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway and every bundled service in one process: in-process (no broker needed)
    /// unless --amqp or AMQP_URL names a RabbitMQ.
    Dev(cmd::dev::Dev),
    /// Run the HTTP gateway.
    Gateway(cmd::gateway::Gateway),
    /// Run one or more bundled services (greeting_service, kv, library, indexer).
    Run(cmd::run::Run),
    /// Print the OpenAPI document of the bundled services (what `openapi/openapi.json` holds).
    Openapi(cmd::openapi::Openapi),
    /// Dispatch an event from SOURCE, as that service would.
    Dispatch(cmd::dispatch::Dispatch),
    /// Call a method and print its result as JSON.
    Call(cmd::call::Call),
    /// A REPL over AMQP, as `nameko shell` (on a pipe: runs each line, prints each result).
    Shell(cmd::shell::Shell),
    /// List, replay or purge the events subscriptions gave up on (`<queue>.dead-letter`).
    DeadLetters(cmd::dead_letters::DeadLetters),
}

impl Command {
    /// What the process is called in exported traces (unless `OTEL_SERVICE_NAME` says).
    fn process_name(&self) -> String {
        match self {
            Self::Gateway(_) => "warren-gateway".to_owned(),
            Self::Run(run) => run.process_name(),
            _ => "warren".to_owned(),
        }
    }

    /// The log filter when `RUST_LOG` is not set.
    fn default_log_filter(&self) -> &'static str {
        match self {
            Self::Shell(_) => cmd::shell::Shell::default_log_filter(),
            _ => "info",
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = LogFormat::parse(&cli.log_format);
    // Before the async runtime: a span exporter's blocking HTTP client must not be made in it.
    let command = &cli.command;
    let telemetry = warren_runtime::init_logging_with(
        format,
        &command.process_name(),
        command.default_log_filter(),
    );
    let code = run_cli(cli, format);
    if let Some(telemetry) = telemetry {
        telemetry.finish();
    }
    code
}

fn run_cli(cli: Cli, format: LogFormat) -> ExitCode {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = cli.worker_threads {
        builder.worker_threads(usize::from(threads));
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, format)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, format: LogFormat) -> anyhow::Result<ExitCode> {
    match command {
        Command::Dev(dev) => dev.run(format).await?,
        Command::Gateway(gateway) => gateway.run(format).await?,
        Command::Run(run) => run.run(format).await?,
        Command::Openapi(openapi) => openapi.run()?,
        Command::Dispatch(dispatch) => dispatch.run().await?,
        Command::Call(call) => return call.run().await,
        Command::Shell(shell) => return shell.run().await,
        Command::DeadLetters(dead_letters) => dead_letters.run().await?,
    }
    Ok(ExitCode::SUCCESS)
}
