//! The fan-out rounds of the streams run: the dispatcher, the raw-AMQP baseline, the gateway
//! run, and their figures.

use super::super::cpu::{CpuMeter, CpuSplit};
use super::super::procs::{Process, rss_bytes};
use super::sse_client::*;
use super::*;
use anyhow::{Context, Result};
use futures_util::StreamExt;
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions};
use lapin::types::FieldTable;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// What a dispatch did: events confirmed, failed, the first failure, when the last confirm
/// came.
pub(super) type Dispatched = (u64, u64, Option<String>, Instant);

/// Dispatches `events` events of `event_type`, `in_flight` at once.
pub(super) async fn dispatch_all(
    dispatcher: mesh::Client,
    event_type: String,
    events: usize,
    in_flight: usize,
    round: usize,
) -> Dispatched {
    let outcomes: Vec<Result<(), String>> = futures_util::stream::iter(0..events)
        .map(|seq| {
            let (dispatcher, event_type) = (dispatcher.clone(), event_type.clone());
            async move {
                dispatcher
                    .dispatch(&event_type, payload(round, seq))
                    .await
                    .map_err(|e| e.to_string())
            }
        })
        .buffer_unordered(in_flight)
        .collect()
        .await;
    let done = Instant::now();
    let (mut ok, mut failed, mut first) = (0, 0, None);
    for outcome in outcomes {
        match outcome {
            Ok(()) => ok += 1,
            Err(e) => {
                failed += 1;
                first.get_or_insert(e);
            }
        }
    }
    (ok, failed, first, done)
}

/// Waits until every tally is done or over, or none counted an event for [`STALL`] (and the
/// dispatch is over).
pub(super) async fn wait_for(tallies: &[Arc<Tally>], dispatch: &JoinHandle<impl Send>) {
    let total = || {
        tallies
            .iter()
            .map(|t| t.events.load(Ordering::Relaxed))
            .sum::<u64>()
    };
    let (mut seen, mut moved) = (total(), Instant::now());
    loop {
        let finished = tallies.iter().all(|t| t.done_at().is_some() || t.is_over());
        if finished && dispatch.is_finished() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = total();
        if now != seen {
            (seen, moved) = (now, Instant::now());
        } else if moved.elapsed() > STALL && dispatch.is_finished() {
            return;
        }
    }
}

/// The run's figures from its tallies and its dispatch.
pub(super) fn figures(
    target: &'static str,
    round: usize,
    start: Instant,
    tallies: &[Arc<Tally>],
    dispatch: Dispatched,
    want: u64,
) -> FanoutRun {
    let (dispatched, dispatch_errors, first_dispatch_error, dispatch_done) = dispatch;
    let dispatch_seconds = (dispatch_done - start).as_secs_f64();
    let delivered: u64 = tallies
        .iter()
        .map(|t| t.events.load(Ordering::Relaxed))
        .sum();
    let incomplete = tallies
        .iter()
        .filter(|t| t.events.load(Ordering::Relaxed) < want)
        .count();
    let ended = tallies
        .iter()
        .filter(|t| t.ended.load(Ordering::Relaxed))
        .count();
    let last = tallies
        .iter()
        .filter_map(|t| t.last_at())
        .max()
        .unwrap_or(start);
    let all_delivered_seconds = (incomplete == 0).then(|| {
        let done = tallies.iter().filter_map(|t| t.done_at()).max();
        (done.unwrap_or(last) - start).as_secs_f64()
    });
    let seconds = (last - start).as_secs_f64().max(1e-9);
    let deliveries_per_s = delivered as f64 / seconds;
    FanoutRun {
        round,
        target,
        clients: tallies.len(),
        dispatched,
        dispatch_errors,
        first_dispatch_error,
        dispatch_seconds,
        dispatched_per_s: dispatched as f64 / dispatch_seconds.max(1e-9),
        delivered,
        all_delivered_seconds,
        deliveries_per_s,
        events_per_s: deliveries_per_s / tallies.len().max(1) as f64,
        ended,
        incomplete,
        cpu: None,
        gateway_rss_mb: None,
    }
}

/// One fan-out run's dispatch: `events` events of `event_type`, `in_flight` at once.
pub(super) struct Flood<'a> {
    pub(super) dispatcher: &'a mesh::Client,
    /// The greeter's process (idle here; the CPU split names it).
    pub(super) service: u32,
    pub(super) event_type: String,
    pub(super) events: usize,
    pub(super) in_flight: usize,
    pub(super) round: usize,
}

impl Flood<'_> {
    /// Starts the dispatch and the CPU meter (with `server`'s process, the gateway): when it
    /// started, the meter, and the dispatch's task.
    pub(super) fn start(&self, server: Option<u32>) -> (Instant, CpuMeter, JoinHandle<Dispatched>) {
        let meter = CpuMeter::start(server, self.service);
        let start = Instant::now();
        let dispatch = tokio::spawn(dispatch_all(
            self.dispatcher.clone(),
            self.event_type.clone(),
            self.events,
            self.in_flight,
            self.round,
        ));
        (start, meter, dispatch)
    }
}

/// The baseline: the dispatch with one raw AMQP consumer (no-ack, an exclusive queue bound to
/// `bench.events` with `event_type`) on its own connection, closed after (the queue with it).
pub(super) async fn baseline_run(amqp: &str, flood: &Flood<'_>) -> Result<FanoutRun> {
    let connection = lapin::Connection::connect(amqp, lapin::ConnectionProperties::default())
        .await
        .context("the baseline's AMQP connection")?;
    let channel = connection.create_channel().await?;
    let exchange = mesh::amqp::events_exchange(SOURCE);
    channel
        .exchange_declare(
            exchange.as_str().into(),
            lapin::ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    let (queue, mut consumer) = crate::raw::exclusive_queue(&channel, "bench-baseline").await?;
    channel
        .queue_bind(
            queue,
            exchange.as_str().into(),
            flood.event_type.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let tally = Arc::new(Tally::default());
    let want = flood.events as u64;
    let counting = tally.clone();
    let reader = tokio::spawn(async move {
        while let Some(delivery) = consumer.next().await {
            if delivery.is_err() {
                break;
            }
            if counting.count(1, want, Instant::now()) {
                return;
            }
        }
        counting.closed.store(true, Ordering::Relaxed);
    });
    let (start, meter, dispatch) = flood.start(None);
    let tallies = [tally];
    wait_for(&tallies, &dispatch).await;
    let cpu = meter.stop(flood.events as f64);
    let dispatched = dispatch.await?;
    reader.abort();
    let _ = connection.close(200, "done".into()).await;
    let mut run = figures("baseline", flood.round, start, &tallies, dispatched, want);
    run.cpu = Some(cpu);
    Ok(run)
}

/// The gateway's run: `clients` streams of `event_type` (all with their headers, so the
/// subscription is bound), then the dispatch; each stream counts its events.
pub(super) async fn gateway_run(
    gateway: &Process,
    address: SocketAddr,
    clients: usize,
    flood: &Flood<'_>,
) -> Result<FanoutRun> {
    let path = format!("/events/{SOURCE}/{}", flood.event_type);
    let want = flood.events as u64;
    let mut streams = Vec::with_capacity(clients);
    for _ in 0..clients {
        let stream = SseStream::open(address, &path, want)
            .await
            .map_err(anyhow::Error::msg)?;
        streams.push(stream);
    }
    let tallies: Vec<Arc<Tally>> = streams.iter().map(|s| s.tally.clone()).collect();
    let pid = gateway.pid();
    let (start, meter, dispatch) = flood.start(Some(pid));
    wait_for(&tallies, &dispatch).await;
    let cpu = meter.stop(flood.events as f64);
    let rss = rss_bytes(pid);
    let dispatched = dispatch.await?;
    let mut run = figures("gateway", flood.round, start, &tallies, dispatched, want);
    run.cpu = Some(cpu);
    run.gateway_rss_mb = Some(rss as f64 / MB);
    drop(streams);
    Ok(run)
}

pub(super) fn line(r: &FanoutRun) -> String {
    format!(
        "{:<8} #{:<3} {:>4} clients  dispatched {:>7.0} ev/s  delivered {:>8.0} /s \
         ({:>7.0} ev/s each)  all in {}  ended {}  incomplete {}  dispatch errors {}{}",
        r.target,
        r.round,
        r.clients,
        r.dispatched_per_s,
        r.deliveries_per_s,
        r.events_per_s,
        r.all_delivered_seconds
            .map_or("never".to_owned(), |s| format!("{s:.2} s")),
        r.ended,
        r.incomplete,
        r.dispatch_errors,
        r.first_dispatch_error
            .as_deref()
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default()
    )
}

/// A part of a run's CPU split (NaN when not measured, which [`Spread::of`] leaves out).
pub(super) fn split(r: &FanoutRun, part: fn(&CpuSplit) -> Option<f64>) -> f64 {
    r.cpu.as_ref().and_then(part).unwrap_or(f64::NAN)
}

/// A part of a run's CPU split for a table: `digits` decimals, or `-`.
pub(super) fn cpu(r: &FanoutRun, part: fn(&CpuSplit) -> Option<f64>, digits: usize) -> String {
    let v = split(r, part);
    if v.is_finite() {
        format!("{v:.digits$}")
    } else {
        "-".to_owned()
    }
}
