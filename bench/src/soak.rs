//! `--soak SECONDS --rate R`: `hello` through a fresh gateway at a fixed rate (open loop: request
//! k is due at k/R seconds whatever happened before; its latency counts from then) over
//! keep-alive connections, sampling the gateway's RSS and its pending and in-flight calls
//! (from its `/metrics`) every `--sample-seconds`. Flat RSS and pending calls mean nothing
//! accumulates per call.

use super::http::{self, Connection, prometheus_value};
use super::load::Sample;
use super::procs::rss_bytes;
use super::{BenchArgs, address_of, hello_args, start_gateway};
use anyhow::Result;
use bytes::Bytes;
use serde::Serialize;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One sample of the gateway during the soak.
#[derive(Debug, Clone, Serialize)]
pub struct SoakSample {
    /// Seconds since the soak started.
    pub at_s: f64,
    /// The gateway's RSS, MB.
    pub rss_mb: f64,
    /// `warren_gateway_pending_calls`.
    pub pending: f64,
    /// `warren_gateway_in_flight`.
    pub in_flight: f64,
    /// Answers per second since the previous sample.
    pub rps: f64,
}

/// What the soak measured.
#[derive(Debug, Clone, Serialize)]
pub struct SoakOutcome {
    /// Seconds of load.
    pub seconds: u64,
    /// The rate asked for, per second.
    pub target_rps: u64,
    /// Successful answers per second over the whole run.
    pub rps: f64,
    /// Keep-alive connections.
    pub connections: usize,
    /// Latency from each request's due time, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// 99.9th percentile, ms.
    pub p999_ms: f64,
    /// Failed requests.
    pub errors: u64,
    /// The first error, if any.
    pub first_error: Option<String>,
    /// Lowest sampled RSS, MB.
    pub rss_min_mb: f64,
    /// Highest sampled RSS, MB.
    pub rss_max_mb: f64,
    /// (max - min) / min of the samples, percent.
    pub rss_spread_pct: f64,
    /// (last - first) / first sample, percent.
    pub rss_drift_pct: f64,
    /// Most pending calls sampled.
    pub pending_max: f64,
    /// Pending calls at the last sample.
    pub pending_last: f64,
    /// The samples.
    pub samples: Vec<SoakSample>,
}

/// Runs the soak against its own gateway process.
pub async fn run(args: &BenchArgs) -> Result<SoakOutcome> {
    let gateway = start_gateway(&args.amqp_url, &[])?;
    let (address, pid) = (address_of(&gateway)?, gateway.pid());
    let rate = args.rate.max(1);
    println!(
        "soak: {} s at {rate} req/s over {} connections, sampling every {} s",
        args.soak, args.soak_connections, args.sample_seconds
    );
    let connections = Arc::new(
        http::open_many(address, args.soak_connections.max(1))
            .await
            .map_err(anyhow::Error::msg)?,
    );
    let body = Bytes::from(serde_json::to_vec(&hello_args())?);
    let results = Arc::new(Mutex::new(Sample::default()));
    let answered = Arc::new(AtomicU64::new(0));
    let outstanding = Arc::new(AtomicU64::new(0));

    let start = Instant::now();
    let end = start + Duration::from_secs(args.soak);
    let every = Duration::from_secs(args.sample_seconds.max(1));
    let (mut next_sample, mut last_answered, mut last_at) = (start + every, 0, start);
    let mut samples = Vec::new();
    for k in 0u64.. {
        let due = start + Duration::from_secs_f64(k as f64 / rate as f64);
        if due >= end {
            break;
        }
        if due > Instant::now() {
            tokio::time::sleep_until(due.into()).await;
        }
        if Instant::now() >= next_sample {
            let now = Instant::now();
            let done = answered.load(Ordering::Relaxed);
            let rps = (done - last_answered) as f64 / (now - last_at).as_secs_f64();
            samples.push(sample(address, pid, start, rps).await);
            (last_answered, last_at, next_sample) = (done, now, next_sample + every);
        }
        let connection = connections.clone();
        let (body, results, answered) = (body.clone(), results.clone(), answered.clone());
        let outstanding = outstanding.clone();
        outstanding.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let index = usize::try_from(k).unwrap_or(0) % connection.len();
            let outcome = connection[index]
                .post_json("/rpc/greeting_service/hello", body)
                .await;
            let us = u32::try_from(due.elapsed().as_micros()).unwrap_or(u32::MAX);
            let mut results = results.lock().unwrap_or_else(|e| e.into_inner());
            match outcome {
                Ok(()) => {
                    results.latencies_us.push(us);
                    answered.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    results.errors += 1;
                    results.first_error.get_or_insert(e);
                }
            }
            outstanding.fetch_sub(1, Ordering::Relaxed);
        });
    }
    let wait_until = Instant::now() + Duration::from_secs(30);
    while outstanding.load(Ordering::Relaxed) > 0 && Instant::now() < wait_until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut results = std::mem::take(&mut *results.lock().unwrap_or_else(|e| e.into_inner()));
    results.elapsed = start.elapsed();
    results.latencies_us.sort_unstable();
    let now = Instant::now();
    let rps = (answered.load(Ordering::Relaxed) - last_answered) as f64
        / (now - last_at).as_secs_f64().max(1e-3);
    samples.push(sample(address, pid, start, rps).await);
    let outcome = summarize(args, rate, &results, samples);
    println!("{}", outcome.markdown());
    Ok(outcome)
}

/// One sample of the gateway at `address`; over a connection of its own, since a kept one would
/// sit idle between samples for longer than the gateway keeps idle connections.
async fn sample(address: SocketAddr, pid: u32, start: Instant, rps: f64) -> SoakSample {
    let text = match Connection::open(address).await {
        Ok(control) => control.get("/metrics").await.unwrap_or_default(),
        Err(_) => Bytes::new(),
    };
    let text = String::from_utf8_lossy(&text);
    let value = |name| prometheus_value(&text, name).unwrap_or(f64::NAN);
    SoakSample {
        at_s: start.elapsed().as_secs_f64(),
        rss_mb: rss_bytes(pid) as f64 / (1024.0 * 1024.0),
        pending: value("warren_gateway_pending_calls"),
        in_flight: value("warren_gateway_in_flight"),
        rps,
    }
}

fn summarize(
    args: &BenchArgs,
    rate: u64,
    results: &Sample,
    samples: Vec<SoakSample>,
) -> SoakOutcome {
    let rss: Vec<f64> = samples.iter().map(|s| s.rss_mb).collect();
    let min = rss.iter().copied().fold(f64::INFINITY, f64::min);
    let max = rss.iter().copied().fold(0.0, f64::max);
    let first = rss.first().copied().unwrap_or(0.0);
    let last = rss.last().copied().unwrap_or(0.0);
    let pending = samples.iter().map(|s| s.pending).filter(|p| p.is_finite());
    SoakOutcome {
        seconds: args.soak,
        target_rps: rate,
        rps: results.rate(),
        connections: args.soak_connections,
        p50_ms: results.quantile_ms(0.50),
        p99_ms: results.quantile_ms(0.99),
        p999_ms: results.quantile_ms(0.999),
        errors: results.errors,
        first_error: results.first_error.clone(),
        rss_min_mb: min,
        rss_max_mb: max,
        rss_spread_pct: (max - min) / min.max(1e-9) * 100.0,
        rss_drift_pct: (last - first) / first.max(1e-9) * 100.0,
        pending_max: pending.clone().fold(0.0, f64::max),
        pending_last: samples.last().map_or(0.0, |s| s.pending),
        samples,
    }
}

impl SoakOutcome {
    /// The run as Markdown: a summary row, then the samples.
    pub fn markdown(&self) -> String {
        let mut md = String::from(
            "| soak s | target req/s | req/s | conns | p50 ms | p99 ms | p99.9 ms | errors | RSS min MB | RSS max MB | RSS spread % | RSS drift % | pending max | pending last |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
        );
        let _ = writeln!(
            md,
            "| {} | {} | {:.0} | {} | {:.2} | {:.2} | {:.2} | {} | {:.1} | {:.1} | {:.1} | {:+.1} | {:.0} | {:.0} |",
            self.seconds,
            self.target_rps,
            self.rps,
            self.connections,
            self.p50_ms,
            self.p99_ms,
            self.p999_ms,
            self.errors,
            self.rss_min_mb,
            self.rss_max_mb,
            self.rss_spread_pct,
            self.rss_drift_pct,
            self.pending_max,
            self.pending_last,
        );
        md.push_str("\n| at s | RSS MB | pending | in flight | req/s |\n|---|---|---|---|---|\n");
        for s in &self.samples {
            let _ = writeln!(
                md,
                "| {:.0} | {:.1} | {:.0} | {:.0} | {:.0} |",
                s.at_s, s.rss_mb, s.pending, s.in_flight, s.rps
            );
        }
        if let Some(error) = &self.first_error {
            let _ = writeln!(md, "\nFirst error: {error}");
        }
        md
    }
}
