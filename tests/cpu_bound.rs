//! CPU-bound handlers on the blocking pool (`Ctx::blocking`), in `warren dev --amqp` as a user
//! runs it: while ten `fib(44)` calls occupy the greeter (seconds of CPU each), `kv` served by
//! the same process and `/healthz` answer at once (p95 under 50 ms, the acceptance
//! bound), and every `fib` call answers 200 within its 60 s deadline, none redelivered.

mod common;

use common::process::{http_address, spawn, terminate};
use common::{unique, wait_until};
use serde_json::json;
use std::time::{Duration, Instant};

/// The bound on `kv.inc` and `/healthz` while the greeter computes.
const P95_LIMIT: Duration = Duration::from_millis(50);

/// Latencies sorted, and the one at `fraction` of them (nearest rank).
fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let rank = ((sorted.len() as f64) * fraction).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `p50/p95/max` in milliseconds, for the figures in docs/performance.md.
fn figures(sorted: &[Duration]) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms",
        ms(percentile(sorted, 0.5)),
        ms(percentile(sorted, 0.95)),
        ms(percentile(sorted, 1.0))
    )
}

/// The value of the sample of `/metrics` whose line starts with `series`, if any.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|line| line.starts_with(series))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

#[tokio::test]
async fn kv_and_healthz_answer_at_once_while_fib_computes_on_the_blocking_pool() {
    let data = std::env::temp_dir().join(unique("dev-data"));
    let data_arg = data.to_string_lossy().into_owned();
    let url = common::broker_url();
    let (child, first) = tokio::task::spawn_blocking(move || {
        spawn(&[
            "dev",
            "--listen",
            "127.0.0.1:0",
            "--amqp",
            &url,
            "--data-dir",
            &data_arg,
        ])
    })
    .await
    .expect("task");
    let base = format!("http://{}", http_address(&first));
    let http = reqwest::Client::new();
    let key = unique("cpu");
    let inc = || async {
        let r = http
            .post(format!("{base}/rpc/kv/inc"))
            .json(&json!({"key": key}))
            .send()
            .await
            .expect("kv.inc");
        assert_eq!(r.status(), 200);
    };
    // A GET answered 200, and its body.
    let get = |path: &'static str| {
        let request = http.get(format!("{base}{path}"));
        async move {
            let r = request.send().await.expect(path);
            assert_eq!(r.status(), 200, "{path}");
            r.text().await.expect(path)
        }
    };
    let healthz = || get("/healthz");
    let metrics = || get("/metrics");
    // Connections made and everything warm before the measure.
    inc().await;
    healthz().await;

    let fibs: Vec<_> = (0..10)
        .map(|_| {
            let (http, base) = (http.clone(), base.clone());
            tokio::spawn(async move {
                let r = http
                    .post(format!("{base}/rpc/greeting_service/fib"))
                    .header("X-Timeout-Ms", "60000")
                    .json(&json!({"n": 44}))
                    .send()
                    .await
                    .expect("fib");
                (r.status().as_u16(), r.text().await.unwrap_or_default())
            })
        })
        .collect();
    // The measure starts once the pool computes and the other calls wait in it.
    let busy = wait_until(Duration::from_secs(20), || async {
        let now = metrics().await;
        sample(&now, "warren_blocking_running").unwrap_or(0.0) >= 1.0
            && sample(&now, "warren_blocking_queued").unwrap_or(0.0) >= 1.0
    })
    .await;
    assert!(busy, "the fib calls never filled the blocking pool");

    let (mut kv, mut health) = (Vec::new(), Vec::new());
    for _ in 0..40 {
        let started = Instant::now();
        inc().await;
        kv.push(started.elapsed());
        let started = Instant::now();
        healthz().await;
        health.push(started.elapsed());
    }
    // Handlers waiting behind the computation would have answered only once it was over.
    let unanswered = fibs.iter().filter(|fib| !fib.is_finished()).count();
    assert!(
        unanswered > 0,
        "every fib call ended before the measure did"
    );
    kv.sort_unstable();
    health.sort_unstable();
    eprintln!("while ten fib(44) compute: kv.inc {}", figures(&kv));
    eprintln!("while ten fib(44) compute: /healthz {}", figures(&health));

    let started = Instant::now();
    for fib in fibs {
        let (status, body) = fib.await.expect("fib task");
        assert_eq!((status, body.as_str()), (200, "701408733"));
    }
    eprintln!(
        "ten fib(44) answered, the last {:.1} s after the measure",
        started.elapsed().as_secs_f64()
    );
    let after = metrics().await;
    assert!(
        !after.contains("warren_amqp_redelivered_total"),
        "a request was redelivered"
    );
    assert!(
        !after.contains("warren_broker_reconnects_total"),
        "the connection to the broker dropped"
    );
    assert!(percentile(&kv, 0.95) < P95_LIMIT, "kv.inc {}", figures(&kv));
    assert!(
        percentile(&health, 0.95) < P95_LIMIT,
        "/healthz {}",
        figures(&health)
    );
    let status = tokio::task::spawn_blocking(move || terminate(child, Duration::from_secs(30)))
        .await
        .expect("task");
    assert!(status.success(), "{status:?}");
    let _ = std::fs::remove_dir_all(&data);
}
