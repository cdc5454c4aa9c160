//! The one-process layout, what a user meets first: `warren dev --amqp` (the gateway and every
//! bundled service in one process, on one connection) loaded over HTTP, against the raw round
//! trips with their client and responders on one connection in this process; interleaved,
//! `--rounds` times at each level.

use super::levels::{Load, http_level};
use super::procs::Process;
use super::raw::levels::RawTargets;
use super::raw::ratios::DEV;
use super::report::Report;
use super::{BenchArgs, http};
use anyhow::{Context, Result, bail};
use bytes::Bytes;
use std::time::{Duration, Instant};

/// Runs the one-process levels into `report`.
pub async fn levels(
    args: &BenchArgs,
    load: &Load,
    report: &mut Report,
    warmup: Duration,
    measured: Duration,
) -> Result<()> {
    println!(
        "{DEV}: HTTP keep-alive -> warren dev --amqp (the gateway and the services in one process) -> RabbitMQ"
    );
    let amqp = args.amqp_url.as_str();
    let data = args.out.join("dev-data");
    std::fs::create_dir_all(&data).with_context(|| format!("cannot make {}", data.display()))?;
    let data = data.to_string_lossy().into_owned();
    let workers = args.service_workers.to_string();
    let dev = Process::warren(&[
        "dev",
        "--amqp",
        amqp,
        "--listen",
        "127.0.0.1:0",
        "--max-workers",
        &workers,
        "--data-dir",
        &data,
    ])?;
    wait_for_hello(&dev).await?;
    let raw = RawTargets::one_process(amqp).await?;
    for round in 1..=args.rounds.max(1) {
        for &n in &args.connections {
            for row in raw.levels(n, warmup, measured, round).await {
                report.push(row);
            }
            let row = http_level(DEV, &dev, &dev, load, n, warmup, measured).await?;
            report.push(row.in_round(round));
        }
    }
    raw.close().await;
    Ok(())
}

/// Waits until `dev`'s gateway answers `hello` (its greeter consuming, its registry fed).
async fn wait_for_hello(dev: &Process) -> Result<()> {
    let address = dev
        .http_address()
        .with_context(|| format!("no address in {:?}", dev.first_line))?;
    let body = Bytes::from(serde_json::to_vec(&super::levels::hello_args())?);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answered = match http::Connection::open(address).await {
            Ok(connection) => {
                connection
                    .post_json("/rpc/greeting_service/hello", body.clone())
                    .await
            }
            Err(e) => Err(e),
        };
        match answered {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() > deadline => bail!("warren dev never answered hello: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
