//! The benchmark's table: printed, and written as JSON and Markdown.

use super::cpu::CpuSplit;
use super::load::Figures;
use super::pending::PendingOutcome;
use super::raw::ratios::Ratio;
use super::soak::SoakOutcome;
use super::streams::StreamsOutcome;
use super::{BenchArgs, FLOOR, IDEAL};
use anyhow::Result;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;

/// One measured line.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// `ceiling`, `gateway`, `nameko`, or a scaling case.
    pub target: String,
    /// Calls in flight (ceiling) or HTTP connections.
    pub concurrency: usize,
    /// Rate, latencies and errors.
    #[serde(flatten)]
    pub figures: Figures,
    /// The server process's (gateway's, or nameko's) peak RSS, MB.
    pub gateway_peak_rss_mb: Option<f64>,
    /// The server process's CPU seconds per 10,000 requests.
    pub gateway_cpu_s_per_10k: Option<f64>,
    /// Server rate / ceiling rate at the same concurrency.
    pub ratio_to_ceiling: Option<f64>,
    /// Server p99 / ceiling p99 at the same concurrency.
    pub p99_ratio_to_ceiling: Option<f64>,
    /// The highest `ratio_to_ceiling` an HTTP front could reach here: `F / (ceiling + F)`, where
    /// `F` is the HTTP floor's rate at the same concurrency (see `bench::floor`).
    pub ratio_bound: Option<f64>,
    /// The same bound from the machine's CPU per request, `C / (C + F)` with `C` and `F` the
    /// ceiling's and the floor's busy µs a request: the tighter figure where the machine is
    /// saturated (the floor's one wrk thread leaves some of it idle).
    pub ratio_bound_cpu: Option<f64>,
    /// The ideal front's rate over the ceiling's at the same concurrency (see `bench::floor`):
    /// the ratio an HTTP front with no work of its own reached here, measured.
    pub ideal_bound: Option<f64>,
    /// Server rate / the ideal front's rate: what the gateway's own work costs.
    pub ratio_to_ideal: Option<f64>,
    /// The machine's CPU per request, by process.
    pub cpu: Option<CpuSplit>,
    /// Which round of the levels (from 1; see `--rounds`).
    pub round: usize,
}

impl Row {
    /// A row from a level's figures.
    pub fn measured(
        target: &str,
        concurrency: usize,
        sample: &Figures,
        rss: Option<u64>,
        cpu_per_10k: Option<f64>,
    ) -> Self {
        Self {
            target: target.to_owned(),
            concurrency,
            figures: sample.clone(),
            gateway_peak_rss_mb: rss.map(|b| b as f64 / (1024.0 * 1024.0)),
            gateway_cpu_s_per_10k: cpu_per_10k,
            ratio_to_ceiling: None,
            p99_ratio_to_ceiling: None,
            ratio_bound: None,
            ratio_bound_cpu: None,
            ideal_bound: None,
            ratio_to_ideal: None,
            cpu: None,
            round: 1,
        }
    }

    /// The row as measured in `round`.
    pub fn in_round(self, round: usize) -> Self {
        Self { round, ..self }
    }

    /// The row with its CPU split.
    pub fn with_cpu(self, cpu: CpuSplit) -> Self {
        Self {
            cpu: Some(cpu),
            ..self
        }
    }
}

/// All rows of a run and how it was made.
#[derive(Debug, Serialize)]
pub struct Report {
    seconds_per_level: u64,
    /// The HTTP load generator of the levels.
    pub load_generator: &'static str,
    service_workers: u16,
    cores: usize,
    rows: Vec<Row>,
    /// Rounds of the levels; with more than one, `summary` holds the medians.
    rounds: usize,
    /// Per level, over the rounds: the medians and the spread of the ratio.
    summary: Vec<LevelSummary>,
    /// The `--pending` run, if any.
    pub pending: Option<PendingOutcome>,
    /// The `--soak` run, if any.
    pub soak: Option<SoakOutcome>,
    /// The `--streams` run, if any.
    pub streams: Option<StreamsOutcome>,
    /// Warren's targets over the raw round trips (see [`Report::finish`]).
    raw_ratios: Vec<Ratio>,
}

impl Report {
    /// An empty report for `args`.
    pub fn new(args: &BenchArgs) -> Self {
        Self {
            seconds_per_level: args.seconds,
            load_generator: "",
            service_workers: args.service_workers,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            rows: Vec::new(),
            rounds: args.rounds.max(1),
            summary: Vec::new(),
            pending: None,
            soak: None,
            streams: None,
            raw_ratios: Vec::new(),
        }
    }

    /// Fills what is computed from all rows: the ratios to the raw round trips.
    pub fn finish(&mut self) {
        self.raw_ratios = super::raw::ratios::of(&self.rows);
    }

    /// Adds a row, filling the gateway's ratios from the ceiling row at the same concurrency
    /// measured last (in the same round: each level's ceiling runs just before its gateway),
    /// and its bounds from the HTTP floor's and the ideal front's rows measured last at that
    /// concurrency.
    pub fn push(&mut self, mut row: Row) {
        let last = |target: &str| {
            self.rows
                .iter()
                .rfind(|r| r.target == target && r.concurrency == row.concurrency)
        };
        let ceiling = last("ceiling");
        if let Some(ceiling) =
            ceiling.filter(|_| matches!(row.target.as_str(), "gateway" | "nameko"))
        {
            row.ratio_to_ceiling = Some(ratio(row.figures.rps, ceiling.figures.rps));
            row.p99_ratio_to_ceiling = Some(ratio(row.figures.p99_ms, ceiling.figures.p99_ms));
            // The bounds are the gateway's: nameko's rows have only their ratios.
            let gateway = row.target == "gateway";
            if let Some(floor) = last(FLOOR).filter(|_| gateway) {
                row.ratio_bound = Some(ratio_bound(ceiling.figures.rps, floor.figures.rps));
                // Rates are requests per unit of time, CPU figures time per request.
                row.ratio_bound_cpu = ceiling
                    .cpu
                    .zip(floor.cpu)
                    .map(|(c, f)| ratio_bound(ratio(1.0, c.total_us()), ratio(1.0, f.total_us())));
            }
            if let Some(ideal) = last(IDEAL).filter(|_| gateway) {
                row.ideal_bound = Some(ratio(ideal.figures.rps, ceiling.figures.rps));
                row.ratio_to_ideal = Some(ratio(row.figures.rps, ideal.figures.rps));
            }
        }
        println!("  {}", line(&row));
        self.rows.push(row);
    }

    /// Fills the per-level medians over the rounds (with more than one round).
    pub fn summarize(&mut self) {
        if self.rounds < 2 {
            return;
        }
        let mut levels: Vec<usize> = self.rows.iter().map(|r| r.concurrency).collect();
        levels.sort_unstable();
        levels.dedup();
        self.summary = levels
            .into_iter()
            .filter_map(|n| {
                let of = |target: &str, f: fn(&Row) -> Option<f64>| {
                    let mut v: Vec<f64> = self
                        .rows
                        .iter()
                        .filter(|r| r.target == target && r.concurrency == n)
                        .filter_map(f)
                        .collect();
                    v.sort_by(f64::total_cmp);
                    v
                };
                let ratios = of("gateway", |r| r.ratio_to_ceiling);
                let bounds = of("gateway", |r| r.ratio_bound);
                let cpu_bounds = of("gateway", |r| r.ratio_bound_cpu);
                let ideal_bounds = of("gateway", |r| r.ideal_bound);
                let to_ideal = of("gateway", |r| r.ratio_to_ideal);
                Some(LevelSummary {
                    concurrency: n,
                    ceiling_rps: median(&of("ceiling", |r| Some(r.figures.rps)))?,
                    gateway_rps: median(&of("gateway", |r| Some(r.figures.rps)))?,
                    ratio: median(&ratios)?,
                    ratio_min: *ratios.first()?,
                    ratio_max: *ratios.last()?,
                    p99_ratio: median(&of("gateway", |r| r.p99_ratio_to_ceiling))?,
                    floor_rps: median(&of(FLOOR, |r| Some(r.figures.rps))),
                    ratio_bound: median(&bounds),
                    ratio_bound_cpu: median(&cpu_bounds),
                    ideal_rps: median(&of(IDEAL, |r| Some(r.figures.rps))),
                    ideal_bound: median(&ideal_bounds),
                    ratio_to_ideal: median(&to_ideal),
                })
            })
            .collect();
    }

    /// Prints the whole table.
    pub fn print(&self) {
        println!("{}", self.markdown());
    }

    /// The tables as Markdown.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        if !self.rows.is_empty() {
            md.push_str(self.rows_markdown().as_str());
            let _ = writeln!(md, "\nHTTP load generator: {}.", self.load_generator);
        }
        if !self.summary.is_empty() {
            md.push('\n');
            md.push_str(self.summary_markdown().as_str());
        }
        if !self.raw_ratios.is_empty() {
            md.push('\n');
            md.push_str(super::raw::ratios::markdown(&self.raw_ratios).as_str());
        }
        if self.rows.iter().any(|r| r.cpu.is_some()) {
            md.push('\n');
            md.push_str(self.cpu_markdown().as_str());
        }
        for extra in [
            self.pending.as_ref().map(PendingOutcome::markdown),
            self.soak.as_ref().map(SoakOutcome::markdown),
            self.streams.as_ref().map(StreamsOutcome::markdown),
        ]
        .into_iter()
        .flatten()
        {
            if !md.is_empty() {
                md.push('\n');
            }
            md.push_str(&extra);
        }
        md
    }

    /// The rows by target (ceiling, gateway, nameko, others), round and concurrency.
    fn sorted_rows(&self) -> Vec<&Row> {
        let rank = |t: &str| match t {
            "ceiling" => 0,
            "gateway" => 1,
            IDEAL => 2,
            FLOOR => 3,
            "nameko" => 4,
            _ => 5,
        };
        let mut rows: Vec<&Row> = self.rows.iter().collect();
        rows.sort_by_key(|r| (rank(&r.target), r.round, r.concurrency));
        rows
    }

    /// The target as a table shows it: with its round when there are several.
    fn label(&self, r: &Row) -> String {
        if self.rounds > 1 {
            format!("{} #{}", r.target, r.round)
        } else {
            r.target.clone()
        }
    }

    fn summary_markdown(&self) -> String {
        let mut md = format!(
            "Medians over {} rounds (each level's ceiling measured just before its gateway; the bounds are the highest ratio an HTTP front could reach: from the HTTP floor's rate and CPU, and measured, the ideal front's):\n\n| conc. | ceiling req/s | gateway req/s | /ceiling req/s | min - max | /ceiling p99 | HTTP floor req/s | bound: rates | bound: CPU | ideal front req/s | bound: ideal front | gateway / ideal |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
            self.rounds
        );
        for l in &self.summary {
            let _ = writeln!(
                md,
                "| {} | {:.0} | {:.0} | {:.3} | {:.3} - {:.3} | {:.2} | {} | {} | {} | {} | {} | {} |",
                l.concurrency,
                l.ceiling_rps,
                l.gateway_rps,
                l.ratio,
                l.ratio_min,
                l.ratio_max,
                l.p99_ratio,
                opt(l.floor_rps, 0),
                opt(l.ratio_bound, 3),
                opt(l.ratio_bound_cpu, 3),
                opt(l.ideal_rps, 0),
                opt(l.ideal_bound, 3),
                opt(l.ratio_to_ideal, 3),
            );
        }
        md
    }

    fn rows_markdown(&self) -> String {
        let mut md = String::from(
            "| target | conc. | req/s | p50 ms | p99 ms | p99.9 ms | errors | server peak RSS MB | server CPU s / 10k req | /ceiling req/s | /ceiling p99 | bound | ideal bound | /ideal req/s |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
        );
        for r in self.sorted_rows() {
            let _ = writeln!(
                md,
                "| {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {} | {} | {} | {} | {} |",
                self.label(r),
                r.concurrency,
                r.figures.rps,
                r.figures.p50_ms,
                r.figures.p99_ms,
                r.figures.p999_ms,
                r.figures.errors,
                opt(r.gateway_peak_rss_mb, 1),
                opt(r.gateway_cpu_s_per_10k, 3),
                opt(r.ratio_to_ceiling, 3),
                opt(r.p99_ratio_to_ceiling, 2),
                opt(r.ratio_bound, 3),
                opt(r.ideal_bound, 3),
                opt(r.ratio_to_ideal, 3),
            );
        }
        md
    }

    /// CPU per request by process (µs), for the rows that measured it.
    fn cpu_markdown(&self) -> String {
        let mut md = String::from(
            "| target | conc. | bench process µs/req | server µs/req | greeter µs/req | broker µs/req | rest µs/req | total µs/req | machine idle % |\n|---|---|---|---|---|---|---|---|---|\n",
        );
        for r in self.sorted_rows() {
            let Some(c) = r.cpu else { continue };
            let total = c.total_us();
            let _ = writeln!(
                md,
                "| {} | {} | {:.0} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} |",
                self.label(r),
                r.concurrency,
                c.bench_us,
                c.server_us.map_or("-".to_owned(), |us| format!("{us:.0}")),
                c.service_us,
                c.broker_us,
                c.rest_us,
                total,
                c.idle_pct,
            );
        }
        md
    }

    /// Writes `bench.json` and `bench.md` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("bench.json"), serde_json::to_vec_pretty(self)?)?;
        std::fs::write(dir.join("bench.md"), self.markdown())?;
        Ok(())
    }
}

/// One level over the rounds.
#[derive(Debug, Serialize)]
struct LevelSummary {
    concurrency: usize,
    /// Median requests/s of the ceiling.
    ceiling_rps: f64,
    /// Median requests/s through the gateway.
    gateway_rps: f64,
    /// Median of the rounds' gateway/ceiling ratios.
    ratio: f64,
    /// The lowest and highest of them.
    ratio_min: f64,
    ratio_max: f64,
    /// Median of the rounds' p99 ratios.
    p99_ratio: f64,
    /// Median requests/s of the HTTP floor.
    floor_rps: Option<f64>,
    /// Median of the rounds' bounds on the ratio.
    ratio_bound: Option<f64>,
    /// Median of the rounds' bounds from the CPU per request.
    ratio_bound_cpu: Option<f64>,
    /// Median requests/s of the ideal front.
    ideal_rps: Option<f64>,
    /// Median of the rounds' ideal front/ceiling ratios.
    ideal_bound: Option<f64>,
    /// Median of the rounds' gateway/ideal front ratios.
    ratio_to_ideal: Option<f64>,
}

/// The highest gateway/ceiling ratio when a gateway request costs a ceiling request plus the
/// HTTP floor's exchange: `1 / gateway >= 1 / ceiling + 1 / floor`, so the gateway's rate is
/// at most `floor / (ceiling + floor)` of the ceiling's.
fn ratio_bound(ceiling_rps: f64, floor_rps: f64) -> f64 {
    ratio(floor_rps, ceiling_rps + floor_rps)
}

/// `a / b`, with `b` kept off zero (a level that measured nothing).
fn ratio(a: f64, b: f64) -> f64 {
    a / b.max(1e-9)
}

/// `v` with `digits` decimals, or `-`.
fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".to_owned(), |v| format!("{v:.digits$}"))
}

/// The median of sorted `values`.
fn median(values: &[f64]) -> Option<f64> {
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

fn line(r: &Row) -> String {
    format!(
        "{:<28} {:>4}  {:>8.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  p99.9 {:>6.2} ms  errors {}{}",
        r.target,
        r.concurrency,
        r.figures.rps,
        r.figures.p50_ms,
        r.figures.p99_ms,
        r.figures.p999_ms,
        r.figures.errors,
        r.figures
            .first_error
            .as_deref()
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[1.0, 2.0, 9.0]), Some(2.0));
        assert_eq!(median(&[1.0, 2.0, 4.0, 9.0]), Some(3.0));
    }

    #[test]
    fn the_bound_adds_the_two_legs_per_request_times() {
        // 8,000 calls/s alone and 40,000 bare HTTP exchanges/s: 125 + 25 µs a request through
        // a gateway, 6,667/s at best, 0.833 of the ceiling.
        assert!((ratio_bound(8_000.0, 40_000.0) - 40.0 / 48.0).abs() < 1e-12);
        // A free HTTP leg bounds nothing; a floor as slow as the ceiling halves it.
        assert!((ratio_bound(8_000.0, 1e12) - 1.0).abs() < 1e-6);
        assert!((ratio_bound(8_000.0, 8_000.0) - 0.5).abs() < 1e-12);
    }
}
