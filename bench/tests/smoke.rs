//! The benchmark's smoke tests: `warren-bench` runs its levels (with the built-in hyper client,
//! and with wrk), its pending, soak and streams runs, and writes its tables; every child it
//! started stops on SIGTERM. It starts the `warren` binary built beside it (`cargo test
//! --workspace` builds both).

use std::process::Command;
use std::time::Duration;

/// How long one benchmark run may take before it counts as hung (its children are killed).
const RUN_LIMIT: Duration = Duration::from_secs(180);

/// `warren-bench ARGS` to its end, at most [`RUN_LIMIT`], on a blocking thread.
async fn run(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_warren-bench"));
        command.args(&args).env("RUST_LOG", "warn");
        warren_procs::run(command, &format!("warren-bench {args:?}"), RUN_LIMIT)
            .unwrap_or_else(|e| panic!("{e}"))
    })
    .await
    .expect("task")
}

/// A name no other test uses.
fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("t_{prefix}_{}", &id[..8])
}

/// Runs `warren-bench ARGS --out DIR` in a fresh directory; asserts it succeeded and returns
/// its JSON report and the directory (removed by the caller).
async fn bench(args: &[&str]) -> (serde_json::Value, std::path::PathBuf) {
    let out = std::env::temp_dir().join(format!("warren-bench-{}", unique("bench")));
    let mut all: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    all.extend(["--out".to_owned(), out.to_string_lossy().into_owned()]);
    let output = run(all).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    // Every process it started stopped on SIGTERM, none had to be killed.
    assert!(!stderr.contains("did not stop"), "{stderr}");
    let report =
        serde_json::from_slice(&std::fs::read(out.join("bench.json")).expect("bench.json"))
            .expect("json");
    (report, out)
}

#[tokio::test]
async fn the_benchmark_runs_and_writes_its_table() {
    let (report, out) = bench(&[
        "--load",
        "hyper",
        "--seconds",
        "1",
        "--warmup-seconds",
        "0",
        "--connections",
        "2",
        "--rounds",
        "2",
        "--pending",
        "200",
        "--pending-rate",
        "1000",
        "--soak",
        "2",
        "--rate",
        "100",
        "--sample-seconds",
        "1",
    ])
    .await;
    let rows = report["rows"].as_array().cloned().unwrap_or_default();
    let targets: Vec<&str> = rows.iter().filter_map(|r| r["target"].as_str()).collect();
    let level = [
        "http floor",
        "ideal front",
        "raw topic",
        "raw topic+direct reply",
        "raw direct",
        "ceiling",
        "gateway",
        "gateway (direct requests)",
    ];
    // The one-process levels come last, with the greeter of the others stopped.
    let one_process = [
        "raw topic (1 process)",
        "raw topic+direct reply (1 process)",
        "raw direct (1 process)",
        "warren dev",
    ];
    assert_eq!(
        targets,
        [&level[..], &level[..], &one_process[..], &one_process[..]].concat()
    );
    let rounds: Vec<u64> = rows.iter().filter_map(|r| r["round"].as_u64()).collect();
    let round = |n: u64, len: usize| std::iter::repeat_n(n, len);
    let expected: Vec<u64> = round(1, 8)
        .chain(round(2, 8))
        .chain(round(1, 4))
        .chain(round(2, 4))
        .collect();
    assert_eq!(rounds, expected);
    // Every Warren target against every raw routing of its layout, over both rounds.
    let ratios = report["raw_ratios"].as_array().cloned().unwrap_or_default();
    let named: Vec<&str> = ratios.iter().filter_map(|r| r["what"].as_str()).collect();
    assert_eq!(ratios.len(), 10, "{named:?}");
    for what in [
        "gateway / raw topic",
        "gateway (direct requests) / raw direct",
        "ceiling / raw direct",
        "warren dev / raw direct (1 process)",
    ] {
        assert!(named.contains(&what), "{what}: {named:?}");
    }
    for ratio in &ratios {
        assert_eq!(ratio["rounds"], 2, "{ratio}");
        let median = ratio["median"].as_f64().unwrap_or(0.0);
        assert!(median > 0.0, "{ratio}");
        assert!(
            ratio["min"].as_f64().unwrap_or(f64::MAX) <= median,
            "{ratio}"
        );
    }
    // The medians over the two rounds.
    let summary = &report["summary"][0];
    assert_eq!(summary["concurrency"], 2, "{report}");
    let ratio = summary["ratio"].as_f64().unwrap_or(0.0);
    assert!(ratio > 0.0, "{summary}");
    assert!(
        summary["ratio_min"].as_f64().unwrap_or(f64::MAX) <= ratio
            && ratio <= summary["ratio_max"].as_f64().unwrap_or(0.0),
        "{summary}"
    );
    for row in &rows {
        assert_eq!(row["errors"], 0, "{row}");
        assert!(row["rps"].as_f64().unwrap_or(0.0) > 0.0, "{row}");
    }
    let gateway = &rows[6];
    assert!(gateway["gateway_peak_rss_mb"].as_f64().unwrap_or(0.0) > 0.0);
    assert!(gateway["ratio_to_ceiling"].is_number());
    // The bound from this round's floor and ceiling: floor / (ceiling + floor).
    let (floor, ceiling) = (rows[0]["rps"].as_f64(), rows[5]["rps"].as_f64());
    let expected = floor.zip(ceiling).map(|(f, c)| f / (c + f));
    let bound = gateway["ratio_bound"].as_f64();
    assert!(
        bound
            .zip(expected)
            .is_some_and(|(b, e)| (b - e).abs() < 1e-9),
        "{gateway}"
    );
    let cpu_bound = gateway["ratio_bound_cpu"].as_f64();
    assert!(cpu_bound.is_some_and(|b| b > 0.0 && b < 1.0), "{gateway}");
    assert!(rows[..6].iter().all(|r| r["ratio_bound"].is_null()));
    // The measured bound and the gateway against it, from this round's ideal front and ceiling.
    let ideal = rows[1]["rps"].as_f64();
    let close = |v: &serde_json::Value, e: Option<f64>| {
        v.as_f64().zip(e).is_some_and(|(v, e)| (v - e).abs() < 1e-9)
    };
    assert!(
        close(
            &gateway["ideal_bound"],
            ideal.zip(ceiling).map(|(i, c)| i / c)
        ),
        "{gateway}"
    );
    let gateway_rps = gateway["rps"].as_f64();
    assert!(
        close(
            &gateway["ratio_to_ideal"],
            gateway_rps.zip(ideal).map(|(g, i)| g / i)
        ),
        "{gateway}"
    );
    assert!(rows[..6].iter().all(|r| r["ideal_bound"].is_null()));
    for key in ["ideal_rps", "ideal_bound", "ratio_to_ideal"] {
        assert!(
            summary[key].as_f64().is_some_and(|v| v > 0.0),
            "{key}: {summary}"
        );
    }
    assert!(
        summary["ratio_bound"]
            .as_f64()
            .is_some_and(|b| b > 0.0 && b < 1.0),
        "{summary}"
    );
    assert!(
        summary["floor_rps"].as_f64().is_some_and(|r| r > 0.0),
        "{summary}"
    );
    assert_eq!(report["load_generator"], "hyper (built in)");
    for row in &rows {
        assert!(
            row["cpu"]["bench_us"].as_f64().unwrap_or(0.0) > 0.0,
            "{row}"
        );
    }
    // The broker's CPU is measured (a level's share can round to no clock tick on a loaded
    // machine, so over all of them); the floor's requests never reach the broker.
    let broker_us = |row: &serde_json::Value| row["cpu"]["broker_us"].as_f64().unwrap_or(0.0);
    assert!(
        rows.iter()
            .filter(|r| r["target"] != "http floor")
            .any(|r| broker_us(r) > 0.0)
    );
    assert!(gateway["cpu"]["server_us"].as_f64().unwrap_or(0.0) > 0.0);
    assert!(rows[0]["cpu"]["server_us"].as_f64().unwrap_or(0.0) > 0.0);
    // The ideal front is its own process.
    assert!(rows[1]["cpu"]["server_us"].as_f64().unwrap_or(0.0) > 0.0);
    assert!(rows[1]["gateway_peak_rss_mb"].as_f64().unwrap_or(0.0) > 0.0);
    let pending = &report["pending"];
    assert_eq!(pending["calls"], 200, "{pending}");
    assert_eq!(pending["http"], "HTTP/2", "{pending}");
    assert_eq!(pending["errors"], 0, "{pending}");
    assert_eq!(pending["sent_per_second"], 1000, "{pending}");
    // Paced, not a burst: the 200th call leaves 0.199 s after the first, so the gateway cannot
    // hold all 200 before then (sent all at once, the watch sees them all about 0.1 s in).
    let all_pending_after = pending["all_pending_after_seconds"].as_f64();
    assert!(all_pending_after.is_some_and(|s| s >= 0.19), "{pending}");
    assert!(
        pending["peak_rss_mb"].as_f64().unwrap_or(0.0) > 0.0,
        "{pending}"
    );
    let soak = &report["soak"];
    assert_eq!(soak["errors"], 0, "{soak}");
    assert!(
        !soak["samples"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .is_empty(),
        "{soak}"
    );
    let markdown = std::fs::read_to_string(out.join("bench.md")).expect("bench.md");
    assert!(markdown.starts_with("| target |"), "{markdown}");
    let _ = std::fs::remove_dir_all(&out);
}

/// The levels with wrk as the load generator (the test script installs wrk).
#[tokio::test]
async fn the_benchmark_loads_the_gateway_with_wrk() {
    let (report, out) = bench(&[
        "--load",
        "wrk",
        "--seconds",
        "1",
        "--warmup-seconds",
        "1",
        "--connections",
        "4",
        "--skip-one-process",
    ])
    .await;
    assert_eq!(report["load_generator"], "wrk -t1");
    let gateway = &report["rows"][6];
    assert_eq!(gateway["target"], "gateway", "{report}");
    assert_eq!(report["rows"][0]["target"], "http floor", "{report}");
    assert_eq!(report["rows"][0]["errors"], 0, "{report}");
    assert_eq!(gateway["errors"], 0, "{gateway}");
    assert!(gateway["rps"].as_f64().unwrap_or(0.0) > 0.0, "{gateway}");
    assert!(gateway["p99_ms"].as_f64().unwrap_or(0.0) > 0.0, "{gateway}");
    // wrk's CPU is counted with the bench process's once it has exited.
    assert!(
        gateway["cpu"]["bench_us"].as_f64().unwrap_or(0.0) > 0.0,
        "{gateway}"
    );
    let _ = std::fs::remove_dir_all(&out);
}

/// `--streams` with small numbers: idle streams' RSS against the idle gateway, and the fan-out
/// to streams against one raw consumer, in every round; every event reaches every client.
#[tokio::test]
async fn the_benchmark_measures_event_streams() {
    let (report, out) = bench(&[
        "--no-levels",
        "--streams",
        "--streams-idle",
        "20",
        "--streams-clients",
        "20",
        "--streams-events",
        "200",
        "--rounds",
        "2",
    ])
    .await;
    let streams = &report["streams"];
    let idle = streams["idle"].as_array().cloned().unwrap_or_default();
    assert_eq!(idle.len(), 2, "{streams}");
    for round in &idle {
        assert_eq!(round["streams"], 20, "{round}");
        assert_eq!(round["failed"], 0, "{round}");
        assert_eq!(round["ended"], 0, "{round}");
        assert!(
            round["rss_before_mb"].as_f64().unwrap_or(0.0) > 0.0,
            "{round}"
        );
        assert!(
            round["rss_after_mb"].as_f64().unwrap_or(0.0) > 0.0,
            "{round}"
        );
    }
    let fanout = streams["fanout"].as_array().cloned().unwrap_or_default();
    let targets: Vec<&str> = fanout.iter().filter_map(|r| r["target"].as_str()).collect();
    assert_eq!(targets, ["baseline", "gateway", "baseline", "gateway"]);
    for run in &fanout {
        let clients = run["clients"].as_u64().unwrap_or(0);
        assert_eq!(clients, if run["target"] == "gateway" { 20 } else { 1 });
        assert_eq!(run["dispatched"], 200, "{run}");
        assert_eq!(run["dispatch_errors"], 0, "{run}");
        assert_eq!(run["delivered"].as_u64(), Some(200 * clients), "{run}");
        assert_eq!(run["ended"], 0, "{run}");
        assert_eq!(run["incomplete"], 0, "{run}");
        assert!(run["all_delivered_seconds"].is_number(), "{run}");
        assert!(
            run["deliveries_per_s"].as_f64().unwrap_or(0.0) > 0.0,
            "{run}"
        );
    }
    let summary = &streams["summary"];
    let ratio = &summary["gateway_to_baseline"];
    assert!(ratio["median"].as_f64().unwrap_or(0.0) > 0.0, "{summary}");
    assert!(ratio["min"].as_f64() <= ratio["max"].as_f64(), "{summary}");
    let markdown = std::fs::read_to_string(out.join("bench.md")).expect("bench.md");
    assert!(markdown.contains("| fan-out |"), "{markdown}");
    let _ = std::fs::remove_dir_all(&out);
}
