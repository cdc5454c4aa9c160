//! Closed-loop load: `n` workers, each sending its next request as soon as the previous one is
//! answered, for a fixed time. Latencies are kept whole (a few hundred thousand u32s) and sorted
//! once for the percentiles.

use std::future::Future;
use std::time::{Duration, Instant};

/// What one load run measured.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Latencies of successful requests, microseconds, sorted.
    pub latencies_us: Vec<u32>,
    /// Failed requests.
    pub errors: u64,
    /// The first error seen, for the report.
    pub first_error: Option<String>,
    /// How long the run took.
    pub elapsed: Duration,
}

impl Sample {
    /// Successful requests per second.
    pub fn rate(&self) -> f64 {
        self.latencies_us.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The `q` quantile (0..=1) in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let last = self.latencies_us.len() - 1;
        let index = ((last as f64) * q).round() as usize;
        f64::from(self.latencies_us[index.min(last)]) / 1000.0
    }
}

/// What a load level reports, from whichever load generator ran it.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Figures {
    /// Successful requests per second.
    pub rps: f64,
    /// Latency percentiles of successful requests, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// 99.9th percentile, ms.
    pub p999_ms: f64,
    /// Failed requests.
    pub errors: u64,
    /// The first error seen, if known.
    pub first_error: Option<String>,
    /// Requests sent over warm-up and measurement together (for CPU per request).
    #[serde(skip)]
    pub requests_in_all: f64,
}

impl Sample {
    /// The sample's figures; `warmup` was not measured but ran at about the same rate.
    pub fn figures(&self, warmup: Duration) -> Figures {
        Figures {
            rps: self.rate(),
            p50_ms: self.quantile_ms(0.50),
            p99_ms: self.quantile_ms(0.99),
            p999_ms: self.quantile_ms(0.999),
            errors: self.errors,
            first_error: self.first_error.clone(),
            requests_in_all: self.rate() * (warmup + self.elapsed).as_secs_f64(),
        }
    }
}

/// Runs `workers` closed loops of `request` for `duration` (after `warmup`, which is not
/// measured). `request(worker)` builds the future for one request of that worker.
pub async fn closed_loop<F, Fut>(
    workers: usize,
    warmup: Duration,
    duration: Duration,
    request: F,
) -> Sample
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    let start = Instant::now() + warmup;
    let end = start + duration;
    let tasks: Vec<_> = (0..workers)
        .map(|worker| {
            let request = request.clone();
            tokio::spawn(async move {
                let mut part = Sample::default();
                loop {
                    let sent = Instant::now();
                    if sent >= end {
                        break;
                    }
                    let outcome = request(worker).await;
                    if sent < start {
                        continue;
                    }
                    match outcome {
                        Ok(()) => {
                            let us = sent.elapsed().as_micros();
                            part.latencies_us
                                .push(u32::try_from(us).unwrap_or(u32::MAX));
                        }
                        Err(e) => {
                            part.errors += 1;
                            part.first_error.get_or_insert(e);
                        }
                    }
                }
                part
            })
        })
        .collect();
    let mut total = Sample::default();
    for task in tasks {
        if let Ok(part) = task.await {
            total.latencies_us.extend(part.latencies_us);
            total.errors += part.errors;
            if total.first_error.is_none() {
                total.first_error = part.first_error;
            }
        }
    }
    total.elapsed = duration;
    total.latencies_us.sort_unstable();
    total
}
