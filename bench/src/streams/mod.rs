//! `--streams`: the gateway's server-sent event streams (`GET /events/{source}/{event_type}`),
//! each figure with its baseline from the same run.
//!
//! - **Idle streams**: a fresh `warren gateway`'s RSS (from `/proc`), settled, then with
//!   `--streams-idle` streams open on one topic (each its own HTTP/1.1 connection, all with their
//!   `200` headers, so the subscription's queue is bound), settled again: the difference, and
//!   per stream. The baseline is the idle gateway itself (after one stream opened and closed, so
//!   the first subscription's one-time setup is not counted per stream).
//! - **Fan-out**: `--streams-events` events (~100 bytes of JSON each) dispatched by mesh's client
//!   in this process as fast as the broker's confirms allow (`--streams-in-flight` dispatches at
//!   once), delivered to `--streams-clients` streams of one topic, each counting its `event:`
//!   frames: deliveries/s = clients x events / the time until the last client has them all. The
//!   baseline, just before in every round, is the same dispatch with one raw AMQP consumer
//!   (no-ack, on an exclusive queue bound to `bench.events` with the round's event type) in
//!   place of the gateway: what the broker delivers to one consumer at that dispatch rate.
//!
//! Every round (`--rounds`) starts its own gateway; the medians and the spread over the rounds
//! are the figures to quote. A client the gateway ended early (its `: ended: ...` comment: it
//! fell more than `--event-buffer` events behind) is counted, as is one that never had them all
//! (no event arrived for [`STALL`]).

mod fanout;
mod figures;
mod sse_client;

use super::http::Connection;
use super::procs::{Process, rss_bytes};
use super::{BenchArgs, address_of, start_gateway};
use anyhow::{Context, Result, bail};
use fanout::*;
pub use figures::*;
use futures_util::StreamExt;
use mesh::{Mesh, MeshConfig};

use serde_json::json;
use sse_client::*;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The dispatching service: the bench's mesh client (`<source>.events` is its exchange).
const SOURCE: &str = "bench";

/// The idle streams' event type (nothing is dispatched to it).
const IDLE_TYPE: &str = "idle";

/// A fan-out run ends when no client counted an event for this long.
const STALL: Duration = Duration::from_secs(10);

/// How long the gateway's RSS is given to settle.
const SETTLE_LIMIT: Duration = Duration::from_secs(20);

/// RSS samples in the window that must agree (100 ms apart: one second).
const SETTLE_WINDOW: usize = 10;

/// Idle streams opened at once.
const OPENING_AT_ONCE: usize = 64;

/// Bytes per MiB.
const MB: f64 = 1024.0 * 1024.0;

/// Runs the streams measurement.
pub async fn run(args: &BenchArgs, service: &Process) -> Result<StreamsOutcome> {
    let amqp = args.amqp_url.as_str();
    let rounds = args.rounds.max(1);
    let (idle_n, clients, events, in_flight) = (
        args.streams_idle,
        args.streams_clients.max(1),
        args.streams_events.max(1),
        args.streams_in_flight.max(1),
    );
    let payload_bytes = payload(rounds, events - 1).to_string().len();
    println!(
        "streams: {idle_n} idle streams; {events} events (~{payload_bytes} B of JSON) dispatched \
         {in_flight} at once, to 1 raw AMQP consumer (baseline) and to {clients} streams \
         (gateway); {rounds} rounds"
    );
    let mesh = Mesh::amqp(MeshConfig::with_url(amqp)).await?;
    let dispatcher = mesh.client(SOURCE).await?;
    // The publisher's channel and `bench.events`, before anything is timed.
    dispatcher
        .dispatch("warm", payload(0, 0))
        .await
        .map_err(|e| anyhow::anyhow!("dispatch: {e}"))?;
    let max_streams = (idle_n.max(clients) + 16).to_string();
    let mut idle = Vec::new();
    let mut fanout = Vec::new();
    for round in 1..=rounds {
        let gateway = start_gateway(amqp, &["--max-event-streams", &max_streams])?;
        let address = address_of(&gateway)?;
        wait_ready(address).await?;
        if idle_n > 0 {
            let r = idle_round(&gateway, address, idle_n, round).await?;
            println!(
                "  idle streams #{round:<3} {:>6}  RSS {:>6.1} -> {:>6.1} MB  extra {:>6.2} MB  \
                 {:>6.2} KiB/stream  failed {}  ended {}{}",
                r.streams,
                r.rss_before_mb,
                r.rss_after_mb,
                r.extra_mb,
                r.kib_per_stream,
                r.failed,
                r.ended,
                if r.settled { "" } else { "  (RSS not settled)" }
            );
            idle.push(r);
        }
        let flood = Flood {
            dispatcher: &dispatcher,
            service: service.pid(),
            event_type: format!("flood_{round}"),
            events,
            in_flight,
            round,
        };
        let base = baseline_run(amqp, &flood).await?;
        println!("  {}", line(&base));
        fanout.push(base);
        let run = gateway_run(&gateway, address, clients, &flood).await?;
        println!("  {}", line(&run));
        fanout.push(run);
    }
    mesh.close().await;
    let summary = summarize(rounds, &idle, &fanout);
    let outcome = StreamsOutcome {
        idle_streams: idle_n,
        clients,
        events,
        in_flight,
        payload_bytes,
        idle,
        fanout,
        summary,
    };
    println!("{}", outcome.markdown());
    Ok(outcome)
}

/// Event `seq` of `round`: about 100 bytes of JSON.
fn payload(round: usize, seq: usize) -> serde_json::Value {
    json!({"round": round, "seq": seq, "pad": "x".repeat(72)})
}

/// Waits for the gateway's `/readyz` to answer 200 (connected to the broker).
async fn wait_ready(address: SocketAddr) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let outcome = match Connection::open(address).await {
            Ok(connection) => connection.get("/readyz").await.map(|_| ()),
            Err(e) => Err(e),
        };
        match outcome {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() > deadline => bail!("the gateway never got ready: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// The process's RSS once it holds still: [`SETTLE_WINDOW`] samples 100 ms apart within 64 KiB
/// (or 0.25%) of each other; the last sample, and whether it settled before [`SETTLE_LIMIT`].
async fn settled_rss(pid: u32) -> (u64, bool) {
    let deadline = Instant::now() + SETTLE_LIMIT;
    let mut window = std::collections::VecDeque::with_capacity(SETTLE_WINDOW);
    loop {
        let rss = rss_bytes(pid);
        if window.len() == SETTLE_WINDOW {
            window.pop_front();
        }
        window.push_back(rss);
        if window.len() == SETTLE_WINDOW {
            let low = window.iter().copied().min().unwrap_or(0);
            let high = window.iter().copied().max().unwrap_or(0);
            if high - low <= (64 * 1024).max(high / 400) {
                return (rss, true);
            }
        }
        if Instant::now() > deadline {
            return (rss, false);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One round's idle streams on the fresh `gateway`.
async fn idle_round(
    gateway: &Process,
    address: SocketAddr,
    n: usize,
    round: usize,
) -> Result<IdleRound> {
    let pid = gateway.pid();
    // One stream opened and closed first: the first subscription's one-time setup (its code
    // paths, the gateway's first AMQP channel for events) is not a per-stream cost.
    let path = format!("/events/{SOURCE}/{IDLE_TYPE}");
    let warm = SseStream::open(address, &path, u64::MAX)
        .await
        .map_err(anyhow::Error::msg)
        .context("the warm-up stream")?;
    drop(warm);
    let (before, settled_before) = settled_rss(pid).await;
    let start = Instant::now();
    let opened: Vec<Result<SseStream, String>> = futures_util::stream::iter(0..n)
        .map(|_| SseStream::open(address, &path, u64::MAX))
        .buffer_unordered(OPENING_AT_ONCE)
        .collect()
        .await;
    let open_seconds = start.elapsed().as_secs_f64();
    let (mut streams, mut failed, mut first_error) = (Vec::with_capacity(n), 0, None);
    for stream in opened {
        match stream {
            Ok(stream) => streams.push(stream),
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    let (after, settled_after) = settled_rss(pid).await;
    let ended = streams.iter().filter(|s| s.tally.is_over()).count();
    let extra = after.saturating_sub(before);
    drop(streams);
    Ok(IdleRound {
        round,
        streams: n - failed,
        failed,
        first_error,
        open_seconds,
        rss_before_mb: before as f64 / MB,
        rss_after_mb: after as f64 / MB,
        extra_mb: extra as f64 / MB,
        kib_per_stream: extra as f64 / 1024.0 / (n - failed).max(1) as f64,
        settled: settled_before && settled_after,
        ended,
    })
}

fn summarize(rounds: usize, idle: &[IdleRound], fanout: &[FanoutRun]) -> StreamsSummary {
    let of = |target: &str, f: fn(&FanoutRun) -> f64| {
        Spread::of(fanout.iter().filter(|r| r.target == target).map(f))
    };
    let ratios = (1..=rounds).filter_map(|round| {
        let find = |target: &str| {
            fanout
                .iter()
                .find(|r| r.round == round && r.target == target)
        };
        let (base, gateway) = (find("baseline")?, find("gateway")?);
        Some(gateway.events_per_s / base.events_per_s.max(1e-9))
    });
    let gateways = fanout.iter().filter(|r| r.target == "gateway");
    StreamsSummary {
        rounds,
        idle_rss_before_mb: Spread::of(idle.iter().map(|r| r.rss_before_mb)),
        idle_rss_after_mb: Spread::of(idle.iter().map(|r| r.rss_after_mb)),
        idle_extra_mb: Spread::of(idle.iter().map(|r| r.extra_mb)),
        idle_kib_per_stream: Spread::of(idle.iter().map(|r| r.kib_per_stream)),
        baseline_events_per_s: of("baseline", |r| r.events_per_s),
        baseline_dispatched_per_s: of("baseline", |r| r.dispatched_per_s),
        gateway_dispatched_per_s: of("gateway", |r| r.dispatched_per_s),
        gateway_events_per_s: of("gateway", |r| r.events_per_s),
        gateway_deliveries_per_s: of("gateway", |r| r.deliveries_per_s),
        gateway_to_baseline: Spread::of(ratios),
        gateway_bench_cpu_us_per_event: of("gateway", |r| split(r, |c| Some(c.bench_us))),
        gateway_cpu_us_per_event: of("gateway", |r| split(r, |c| c.server_us)),
        gateway_broker_cpu_us_per_event: of("gateway", |r| split(r, |c| Some(c.broker_us))),
        gateway_idle_pct: of("gateway", |r| split(r, |c| Some(c.idle_pct))),
        baseline_bench_cpu_us_per_event: of("baseline", |r| split(r, |c| Some(c.bench_us))),
        baseline_broker_cpu_us_per_event: of("baseline", |r| split(r, |c| Some(c.broker_us))),
        baseline_idle_pct: of("baseline", |r| split(r, |c| Some(c.idle_pct))),
        ended: gateways.clone().map(|r| r.ended).sum::<usize>()
            + idle.iter().map(|r| r.ended).sum::<usize>(),
        incomplete: gateways.map(|r| r.incomplete).sum(),
        idle_failed: idle.iter().map(|r| r.failed).sum(),
    }
}

impl StreamsOutcome {
    /// The run as Markdown: the rounds, then the medians (min - max).
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        if !self.idle.is_empty() {
            md.push_str(
                "| idle streams | round | open s | gateway RSS idle MB | with the streams MB | extra MB | KiB / stream | failed | ended | settled |\n|---|---|---|---|---|---|---|---|---|---|\n",
            );
            for r in &self.idle {
                let _ = writeln!(
                    md,
                    "| {} | {} | {:.2} | {:.1} | {:.1} | {:.2} | {:.2} | {} | {} | {} |",
                    r.streams,
                    r.round,
                    r.open_seconds,
                    r.rss_before_mb,
                    r.rss_after_mb,
                    r.extra_mb,
                    r.kib_per_stream,
                    r.failed,
                    r.ended,
                    if r.settled { "yes" } else { "no" },
                );
            }
            md.push('\n');
        }
        md.push_str(
            "| fan-out | round | clients | dispatched ev/s | deliveries/s | ev/s per client | all delivered s | ended | incomplete | dispatch errors | bench µs / event | gateway µs / event | broker µs / event | rest µs / event | machine idle % | gateway RSS MB |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
        );
        for r in &self.fanout {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                r.target,
                r.round,
                r.clients,
                r.dispatched_per_s,
                r.deliveries_per_s,
                r.events_per_s,
                r.all_delivered_seconds
                    .map_or("never".to_owned(), |s| format!("{s:.2}")),
                r.ended,
                r.incomplete,
                r.dispatch_errors,
                cpu(r, |c| Some(c.bench_us), 1),
                cpu(r, |c| c.server_us, 1),
                cpu(r, |c| Some(c.broker_us), 1),
                cpu(r, |c| Some(c.rest_us), 1),
                cpu(r, |c| Some(c.idle_pct), 1),
                r.gateway_rss_mb
                    .map_or("-".to_owned(), |mb| format!("{mb:.1}")),
            );
        }
        let s = &self.summary;
        let _ = write!(
            md,
            "\nMedians (min - max) over {} rounds:\n\n| figure | median (min - max) |\n|---|---|\n",
            s.rounds
        );
        if !self.idle.is_empty() {
            let _ = writeln!(
                md,
                "| gateway RSS idle, MB | {} |\n| with {} idle streams, MB | {} |\n| extra, MB | {} |\n| KiB per idle stream | {} |",
                s.idle_rss_before_mb.show(1),
                self.idle_streams,
                s.idle_rss_after_mb.show(1),
                s.idle_extra_mb.show(2),
                s.idle_kib_per_stream.show(2),
            );
        }
        let _ = writeln!(
            md,
            "| baseline: events/s to 1 raw consumer | {} |\n| baseline: events/s dispatched | {} |\n| gateway: events/s dispatched | {} |\n| gateway: events/s per stream ({} streams) | {} |\n| gateway: deliveries/s | {} |\n| streams / baseline, events/s | {} |\n| baseline CPU µs per event: bench process / broker, machine idle % | {} / {}, {} |\n| gateway CPU µs per event: bench process / gateway / broker, machine idle % | {} / {} / {}, {} |",
            s.baseline_events_per_s.show(0),
            s.baseline_dispatched_per_s.show(0),
            s.gateway_dispatched_per_s.show(0),
            self.clients,
            s.gateway_events_per_s.show(0),
            s.gateway_deliveries_per_s.show(0),
            s.gateway_to_baseline.show(3),
            s.baseline_bench_cpu_us_per_event.show(1),
            s.baseline_broker_cpu_us_per_event.show(1),
            s.baseline_idle_pct.show(1),
            s.gateway_bench_cpu_us_per_event.show(1),
            s.gateway_cpu_us_per_event.show(1),
            s.gateway_broker_cpu_us_per_event.show(1),
            s.gateway_idle_pct.show(1),
        );
        let _ = writeln!(
            md,
            "\n{} events of {} B, {} dispatches in flight; streams ended early: {}; incomplete: {}; idle streams not opened: {}.",
            self.events, self.payload_bytes, self.in_flight, s.ended, s.incomplete, s.idle_failed,
        );
        md
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_and_the_closing_comment_are_counted_across_chunks() {
        let mut lines = Lines::default();
        assert_eq!(lines.feed(b"event: a\nid: 1\ndata: {}\n\nev"), (1, false));
        assert_eq!(
            lines.feed(b"ent: a\nid: 2\ndata: {\"event:\": 1}\n\n:\n\n"),
            (1, false)
        );
        assert_eq!(lines.feed(b"event: a\n"), (1, false));
        assert_eq!(
            lines.feed(b": ended: this client fell 3 events behind\n\n"),
            (0, true)
        );
        let mut split = Lines::default();
        assert_eq!(split.feed(b":"), (0, false));
        assert_eq!(split.feed(b" end"), (0, false));
        assert_eq!(split.feed(b"ed: the gateway is shutting down\n"), (0, true));
    }

    #[test]
    fn chunked_bodies_are_decoded_across_reads() {
        let wire = b"7\r\nevent: \r\n3;ext=1\r\na\n\n\r\n0\r\n\r\n";
        for split in 0..wire.len() {
            let (mut body, mut data) = (Body::new(true), Vec::new());
            let first = body.feed(&wire[..split], |d| data.extend_from_slice(d));
            let done = body.feed(&wire[split..], |d| data.extend_from_slice(d));
            assert_eq!(data, b"event: a\n\n", "split at {split}");
            // Over once the last chunk's size line is in.
            assert_eq!(first, split >= wire.len() - 2, "split at {split}");
            assert!(done, "split at {split}");
        }
        let (mut identity, mut data) = (Body::new(false), Vec::new());
        assert!(!identity.feed(b"event: a\n", |d| data.extend_from_slice(d)));
        assert_eq!(data, b"event: a\n");
    }

    #[test]
    fn spreads_are_medians_with_their_extremes() {
        let s = Spread::of([3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        let s = Spread::of([4.0, 1.0]);
        assert_eq!((s.median, s.min, s.max), (2.5, 1.0, 4.0));
        assert_eq!(Spread::of([]).median, 0.0);
    }
}
