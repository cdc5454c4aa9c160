//! `--pending N`: N calls pending in the gateway at once, each `greeting_service.slow` with a
//! long `X-Timeout-Ms`, timed so that they all answer at the same moment ("release"): the
//! gateway's RSS idle, with N idle connections, and at its peak, then the time from release until
//! the last answer, and the errors. The calls go out all at once, or `--pending-rate` a second:
//! a burst also measures h2's receive queues at their high-water mark (a connection's whole
//! share read before its first stream is accepted), a paced run what the pending calls hold.
//!
//! The calls go over HTTP/2 (h2c, prior knowledge), `--pending-streams` of them per connection
//! (the gateway's `--http2-max-concurrent-streams` is set to the same), so 100,000 calls need a
//! hundred sockets. `--pending-http1` sends them over HTTP/1.1 instead, which carries one call
//! per connection at a time: N pending calls are N connections, and each end holds N sockets.
//! When the open-files limit (raised to the hard limit, which needs `CAP_SYS_RESOURCE` to go
//! higher) cannot hold N, that run measures as many calls as it can and extrapolates the memory
//! per call (connection included) to N, and says so.

use super::http::{self, Connection, prometheus_value};
use super::procs::{RssPeak, rss_bytes};
use super::{BenchArgs, address_of, start_gateway, start_service};
use anyhow::Result;
use bytes::Bytes;
use serde::Serialize;
use serde_json::json;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// File descriptors kept for everything but the connections (AMQP, listeners, /proc, stdio).
const FD_RESERVE: u64 = 200;

/// Bytes per MiB.
const MB: f64 = 1024.0 * 1024.0;

/// The most workers (and prefetch) one greeter process gets. AMQP's prefetch is 16 bits, but
/// the bound that matters is RabbitMQ's: a channel keeps its unacked deliveries in order, so an
/// ack that is not the oldest costs a walk over them. All calls answer at once, in no order, so
/// the broker's work to ack them grows with the square of the deliveries per channel: with
/// 50,000 per greeter it acked about 140 a second, took 51 s to drain the replies and still
/// held most of them unacked when the greeters stopped; with 10,000, 8 s.
const WORKERS_PER_GREETER: usize = 10_000;

/// What the pending run measured.
#[derive(Debug, Clone, Serialize)]
pub struct PendingOutcome {
    /// The HTTP version the calls went over.
    pub http: &'static str,
    /// Client connections the calls went over.
    pub connections: usize,
    /// Calls asked for.
    pub requested: usize,
    /// Calls made (fewer when the open-files limit is lower).
    pub calls: usize,
    /// The open-files limit, when it capped the run.
    pub capped_by_open_files: Option<u64>,
    /// The calls sent per second (`None`: all at once).
    pub sent_per_second: Option<u64>,
    /// How long each call slept, counted from the first one sent.
    pub hold_ms: u64,
    /// Seconds to open the connections.
    pub connect_seconds: f64,
    /// Seconds from the first call sent until the gateway counted them all pending (`None`:
    /// never all at once).
    pub all_pending_after_seconds: Option<f64>,
    /// The most calls the gateway's `/metrics` showed pending.
    pub peak_pending: u64,
    /// The gateway's RSS before the connections, MB.
    pub rss_idle_mb: f64,
    /// The gateway's RSS with the connections open and idle, MB.
    pub rss_connected_mb: f64,
    /// The gateway's RSS when it first counted all calls pending (before any answer), MB.
    pub rss_all_pending_mb: Option<f64>,
    /// The gateway's peak RSS (the answers arrive together, so usually during the drain), MB.
    pub peak_rss_mb: f64,
    /// The gateway's RSS after the drain (the connections still open), MB.
    pub rss_after_mb: f64,
    /// (peak - idle) / calls, KiB: a pending call with its connection.
    pub kib_per_call: f64,
    /// idle + per call x requested, MB, when fewer calls than requested were made.
    pub extrapolated_rss_mb: Option<f64>,
    /// Seconds from release until the last answer.
    pub drain_seconds: f64,
    /// Failed calls.
    pub errors: u64,
    /// The first error, if any.
    pub first_error: Option<String>,
}

/// Opens the connections for `calls` calls: one HTTP/1.1 connection per call (`streams` is
/// `None`), or HTTP/2 connections that each carry `streams`.
async fn open_callers(
    address: SocketAddr,
    calls: usize,
    streams: Option<usize>,
) -> Result<Vec<Connection>> {
    let Some(streams) = streams else {
        return http::open_many(address, calls)
            .await
            .map_err(anyhow::Error::msg);
    };
    let mut connections = Vec::new();
    for _ in 0..calls.div_ceil(streams.max(1)) {
        connections.push(
            Connection::open_h2(address)
                .await
                .map_err(anyhow::Error::msg)?,
        );
    }
    Ok(connections)
}

/// Runs the pending-calls measurement with its own greeter and gateway processes.
pub async fn run(args: &BenchArgs, open_files: u64) -> Result<PendingOutcome> {
    let requested = args.pending;
    let streams = (!args.pending_http1).then_some(args.pending_streams.max(1));
    let needed_fds = streams.map_or(requested, |s| requested.div_ceil(s));
    let room = usize::try_from(open_files.saturating_sub(FD_RESERVE)).unwrap_or(usize::MAX);
    let calls = if needed_fds <= room {
        requested
    } else {
        streams.map_or(room, |s| room.saturating_mul(s))
    }
    .max(1);
    let capped = (calls < requested).then_some(open_files);
    if capped.is_some() {
        println!(
            "pending: the open-files limit is {open_files} (the hard limit; raising it needs \
             CAP_SYS_RESOURCE): measuring {calls} pending calls and extrapolating to {requested}"
        );
    }
    // Paced: call i leaves i / rate seconds after the first.
    let rate = (args.pending_rate > 0).then_some(args.pending_rate as f64);
    let leaves_after = |i: usize| rate.map(|rate| Duration::from_secs_f64(i as f64 / rate));
    let sending_ms = leaves_after(calls).map_or(0, |d| d.as_millis() as u64);
    let hold_ms = args
        .pending_hold_ms
        .unwrap_or(1_000 + ((calls as u64) / 2).max(sending_ms));
    let timeout_ms = (hold_ms + 120_000).to_string();
    let pace = match args.pending_rate {
        0 => "all sent at once".to_owned(),
        rate => format!("sent at {rate}/s"),
    };
    println!(
        "pending: {calls} calls of greeting_service.slow ({pace}), all answering {hold_ms} ms after the first is sent"
    );

    let amqp = args.amqp_url.as_str();
    // More greeters with a worker (and prefetch) for every call, so none waits in the queue.
    let greeters = calls.div_ceil(WORKERS_PER_GREETER);
    let workers = u16::try_from(calls.div_ceil(greeters)).unwrap_or(u16::MAX);
    let _greeters = (0..greeters)
        .map(|_| start_service("greeting_service", amqp, workers))
        .collect::<Result<Vec<_>>>()?;
    let max_in_flight = (calls + 1_000).to_string();
    let max_streams = streams.unwrap_or(1).to_string();
    let gateway = start_gateway(
        amqp,
        &[
            "--max-in-flight",
            &max_in_flight,
            "--max-timeout-ms",
            &timeout_ms,
            // The connections are opened first and sit idle until every one is open; the
            // header read timeout would close them as idle keep-alive connections meanwhile.
            "--header-read-timeout-ms",
            &timeout_ms,
            "--http2-max-concurrent-streams",
            &max_streams,
        ],
    )?;
    let address = address_of(&gateway)?;
    let pid = gateway.pid();

    let control = Connection::open(address)
        .await
        .map_err(anyhow::Error::msg)?;
    for _ in 0..100 {
        control
            .post_json(
                "/rpc/greeting_service/hello",
                Bytes::from_static(br#"{"name":"warm"}"#),
            )
            .await
            .map_err(anyhow::Error::msg)?;
    }
    let rss_idle = rss_bytes(pid);
    let connect_start = Instant::now();
    let callers = Arc::new(open_callers(address, calls, streams).await?);
    let connect_seconds = connect_start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_connected = rss_bytes(pid);

    let rss = RssPeak::start(pid);
    let watch = PendingWatch::start(control, pid, calls as u64);
    let first_sent = Instant::now();
    let release = first_sent + Duration::from_millis(hold_ms);
    let failures = Arc::new(Mutex::new((0u64, None::<String>)));
    let mut tasks = Vec::with_capacity(calls);
    for i in 0..calls {
        let (callers, failures) = (callers.clone(), failures.clone());
        let timeout_ms = timeout_ms.clone();
        let leaves = leaves_after(i).map(|after| first_sent + after);
        tasks.push(tokio::spawn(async move {
            if let Some(leaves) = leaves {
                tokio::time::sleep_until(leaves.into()).await;
            }
            let ms = release
                .saturating_duration_since(Instant::now())
                .as_millis();
            let body = Bytes::from(json!({ "ms": ms }).to_string());
            let headers = [("x-timeout-ms", timeout_ms.as_str())];
            let outcome = callers[i % callers.len()]
                .post_json_with("/rpc/greeting_service/slow", body, &headers)
                .await;
            if let Err(e) = outcome {
                let mut failures = failures.lock().await;
                failures.0 += 1;
                failures.1.get_or_insert(e);
            }
            Instant::now()
        }));
    }
    let mut last_answer = release;
    for task in tasks {
        if let Ok(done) = task.await {
            last_answer = last_answer.max(done);
        }
    }
    let drain_seconds = last_answer.saturating_duration_since(release).as_secs_f64();
    let peak_rss = rss.stop();
    let (peak_pending, all_pending) = watch.stop().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = rss_bytes(pid);
    let (errors, first_error) = failures.lock().await.clone();

    let kib_per_call = peak_rss.saturating_sub(rss_idle) as f64 / 1024.0 / calls as f64;
    let outcome = PendingOutcome {
        http: if streams.is_some() {
            "HTTP/2"
        } else {
            "HTTP/1.1"
        },
        connections: callers.len(),
        requested,
        calls,
        capped_by_open_files: capped,
        sent_per_second: rate.map(|_| args.pending_rate),
        hold_ms,
        connect_seconds,
        all_pending_after_seconds: all_pending.map(|(t, _)| (t - first_sent).as_secs_f64()),
        rss_all_pending_mb: all_pending.map(|(_, rss)| rss as f64 / MB),
        peak_pending,
        rss_idle_mb: rss_idle as f64 / MB,
        rss_connected_mb: rss_connected as f64 / MB,
        peak_rss_mb: peak_rss as f64 / MB,
        rss_after_mb: rss_after as f64 / MB,
        kib_per_call,
        extrapolated_rss_mb: capped
            .map(|_| (rss_idle as f64 + kib_per_call * 1024.0 * requested as f64) / MB),
        drain_seconds,
        errors,
        first_error,
    };
    println!("{}", outcome.markdown());
    Ok(outcome)
}

impl PendingOutcome {
    /// The run as a Markdown table.
    pub fn markdown(&self) -> String {
        let mut md = String::from(
            "| pending calls | over | all pending after s | peak pending | gateway RSS idle MB | with idle conns MB | all pending MB | peak MB | after drain MB | KiB / call | drain s | errors |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
        );
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {:.1} | {:.1} | {} | {:.1} | {:.1} | {:.2} | {:.2} | {} |",
            self.calls,
            format_args!(
                "{} x {}{}",
                self.connections,
                self.http,
                self.sent_per_second
                    .map_or(String::new(), |rate| format!(", {rate}/s"))
            ),
            self.all_pending_after_seconds
                .map_or("never".to_owned(), |s| format!("{s:.2}")),
            self.peak_pending,
            self.rss_idle_mb,
            self.rss_connected_mb,
            self.rss_all_pending_mb
                .map_or("-".to_owned(), |mb| format!("{mb:.1}")),
            self.peak_rss_mb,
            self.rss_after_mb,
            self.kib_per_call,
            self.drain_seconds,
            self.errors,
        );
        if let (Some(limit), Some(mb)) = (self.capped_by_open_files, self.extrapolated_rss_mb) {
            let _ = writeln!(
                md,
                "\nCapped by the open-files limit ({limit}): {} calls measured; {} pending calls extrapolated at {:.2} KiB each: **{mb:.0} MB** (not measured).",
                self.calls, self.requested, self.kib_per_call
            );
        }
        if let Some(error) = &self.first_error {
            let _ = writeln!(md, "\nFirst error: {error}");
        }
        md
    }
}

/// When the target was first reached, and the gateway's RSS then.
type Reached = Option<(Instant, u64)>;

/// Polls the gateway's `/metrics` for `warren_gateway_pending_calls`: the peak, and when it
/// first reached the target (with the RSS at that moment).
struct PendingWatch {
    running: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(u64, Reached)>,
}

impl PendingWatch {
    fn start(control: Connection, pid: u32, target: u64) -> Self {
        let running = Arc::new(AtomicBool::new(true));
        let flag = running.clone();
        let task = tokio::spawn(async move {
            let (mut peak, mut reached) = (0, None);
            while flag.load(Ordering::Relaxed) {
                if let Ok(text) = control.get("/metrics").await {
                    let text = String::from_utf8_lossy(&text);
                    let now = prometheus_value(&text, "warren_gateway_pending_calls").unwrap_or(0.0)
                        as u64;
                    peak = peak.max(now);
                    if now >= target && reached.is_none() {
                        reached = Some((Instant::now(), rss_bytes(pid)));
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (peak, reached)
        });
        Self { running, task }
    }

    async fn stop(self) -> (u64, Reached) {
        self.running.store(false, Ordering::Relaxed);
        self.task.await.unwrap_or((0, None))
    }
}
