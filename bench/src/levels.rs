//! The levels of a run: one closed-loop load of `hello` against one target (the ceiling, an
//! HTTP server, the scaling cases), and the HTTP load generator they use.

use super::cpu::CpuMeter;
use super::load::closed_loop;
use super::procs::{Process, RssPeak};
use super::report::{Report, Row};
use super::{BenchArgs, http, wrk};
use anyhow::{Context, Result, bail};
use bytes::Bytes;
use mesh::Arguments;
use serde_json::json;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
pub enum Load {
    Hyper,
    /// wrk with its Lua script.
    Wrk(PathBuf),
}

impl Load {
    /// The load generator `args` ask for, ready to go.
    pub fn choose(args: &BenchArgs) -> Result<Self> {
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

    /// The load generator's name, for the report.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Hyper => "hyper (built in)",
            Self::Wrk(_) => "wrk -t1",
        }
    }
}

/// One closed-loop level of `hello` from mesh's RPC client, `n` calls in flight, with the
/// machine's CPU split.
pub async fn ceiling_level(
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
pub fn start_service(service: &str, amqp: &str, workers: u16) -> Result<Process> {
    let workers = workers.to_string();
    Process::warren(&["run", service, "--amqp", amqp, "--max-workers", &workers])
}

/// Starts a `warren gateway` on a free local port, with `extra` flags.
pub fn start_gateway(amqp: &str, extra: &[&str]) -> Result<Process> {
    let mut args = vec!["gateway", "--listen", "127.0.0.1:0", "--amqp", amqp];
    args.extend_from_slice(extra);
    Process::warren(&args)
}

/// The `http://ADDR` a started gateway printed.
pub fn address_of(server: &Process) -> Result<SocketAddr> {
    server
        .http_address()
        .with_context(|| format!("no address in {:?}", server.first_line))
}

/// One closed-loop level of `hello` over `n` keep-alive connections to `server`, with the
/// server process's peak RSS and CPU per 10,000 requests, and the machine's CPU split.
pub async fn http_level(
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

/// The arguments of every `hello` the bench sends: `{"name": "Matt"}`.
pub fn hello_args() -> serde_json::Map<String, serde_json::Value> {
    json!({"name": "Matt"})
        .as_object()
        .cloned()
        .unwrap_or_default()
}

/// Waits until the greeter answers `client`.
pub async fn wait_for_greeter(client: &mesh::Client) -> Result<()> {
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
pub async fn scaling(
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
