//! What Warren reaches of the physical limit: per concurrency, the ratio of a Warren target's
//! rate (and p99) to a raw routing's in the same round, as medians over the rounds with their
//! spread. A ratio is taken within a round only, since the machine's rate drifts between
//! rounds by more than the differences measured.

use super::Routing;
use super::levels::one_process_target;
use crate::report::Row;
use serde::Serialize;
use std::fmt::Write as _;

/// The target name of `warren dev --amqp`'s rows.
pub const DEV: &str = "warren dev";

/// One ratio over the rounds.
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    /// `numerator / denominator`, by target names.
    pub what: String,
    /// Concurrency of both rows.
    pub concurrency: usize,
    /// The median over the rounds.
    pub median: f64,
    /// The lowest and the highest round.
    pub min: f64,
    /// See `min`.
    pub max: f64,
    /// The p99 ratio's median (numerator's p99 over the denominator's).
    pub p99_median: f64,
    /// Rounds with both rows.
    pub rounds: usize,
}

/// Every ratio the rows allow: the gateway and mesh's ceiling over each two-process routing,
/// the gateway with direct requests over the direct routing, `warren dev` over each
/// one-process routing.
pub fn of(rows: &[Row]) -> Vec<Ratio> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for numerator in ["gateway", "ceiling"] {
        for routing in Routing::ALL {
            pairs.push((numerator.to_owned(), routing.target().to_owned()));
        }
    }
    // Direct requests go through the default exchange both ways, as the `direct` routing.
    pairs.push((
        crate::GATEWAY_DIRECT.to_owned(),
        Routing::Direct.target().to_owned(),
    ));
    for routing in Routing::ALL {
        pairs.push((DEV.to_owned(), one_process_target(routing)));
    }
    let mut levels: Vec<usize> = rows.iter().map(|r| r.concurrency).collect();
    levels.sort_unstable();
    levels.dedup();
    let mut ratios = Vec::new();
    for n in levels {
        for (numerator, denominator) in &pairs {
            if let Some(ratio) = ratio(rows, n, numerator, denominator) {
                ratios.push(ratio);
            }
        }
    }
    ratios
}

fn ratio(rows: &[Row], n: usize, numerator: &str, denominator: &str) -> Option<Ratio> {
    let find = |target: &str, round: usize| {
        rows.iter()
            .find(|r| r.target == target && r.concurrency == n && r.round == round)
    };
    let mut rates = Vec::new();
    let mut p99s = Vec::new();
    for top in rows
        .iter()
        .filter(|r| r.target == numerator && r.concurrency == n)
    {
        let Some(bottom) = find(denominator, top.round) else {
            continue;
        };
        if bottom.figures.rps > 0.0 && bottom.figures.p99_ms > 0.0 {
            rates.push(top.figures.rps / bottom.figures.rps);
            p99s.push(top.figures.p99_ms / bottom.figures.p99_ms);
        }
    }
    rates.sort_by(f64::total_cmp);
    p99s.sort_by(f64::total_cmp);
    Some(Ratio {
        what: format!("{numerator} / {denominator}"),
        concurrency: n,
        median: median(&rates)?,
        min: *rates.first()?,
        max: *rates.last()?,
        p99_median: median(&p99s)?,
        rounds: rates.len(),
    })
}

fn median(sorted: &[f64]) -> Option<f64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some(f64::midpoint(sorted[n / 2 - 1], sorted[n / 2])),
    }
}

/// The ratios as a Markdown table.
pub fn markdown(ratios: &[Ratio]) -> String {
    let mut md = String::from(
        "Against the physical limit (a minimal lapin client and responder; each ratio taken within a round, then the median over the rounds):\n\n| conc. | ratio | median | min - max | p99 ratio | rounds |\n|---|---|---|---|---|---|\n",
    );
    for r in ratios {
        let _ = writeln!(
            md,
            "| {} | {} | {:.2} | {:.2} - {:.2} | {:.2} | {} |",
            r.concurrency, r.what, r.median, r.min, r.max, r.p99_median, r.rounds
        );
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Figures;

    fn row(target: &str, round: usize, rps: f64) -> Row {
        let figures = Figures {
            rps,
            p99_ms: 2.0,
            ..Figures::default()
        };
        Row::measured(target, 64, &figures, None, None).in_round(round)
    }

    #[test]
    fn ratios_are_taken_within_a_round_then_the_median() {
        let topic = Routing::Topic.target();
        let rows = [
            row("gateway", 1, 90.0),
            row(topic, 1, 100.0),
            row("gateway", 2, 160.0),
            row(topic, 2, 200.0),
            row("gateway", 3, 95.0),
            row(topic, 3, 100.0),
        ];
        let ratios = of(&rows);
        assert_eq!(ratios.len(), 1, "{ratios:?}");
        let r = &ratios[0];
        assert_eq!(r.what, format!("gateway / {topic}"));
        assert_eq!((r.median, r.min, r.max, r.rounds), (0.9, 0.8, 0.95, 3));
        assert_eq!(r.p99_median, 1.0);
    }
}
