//! wrk as the HTTP load generator, when it is installed (`--load wrk`, or `auto`, the default).
//!
//! wrk is C on epoll: per request it costs a fraction of the built-in hyper client, which on a
//! two-core machine takes its CPU from the gateway and the broker it is measuring. One wrk
//! thread (`-t1`) drives all connections of a level, closed loop and keep-alive like the built-in
//! generator; a Lua `done` hook prints the figures on one line, which this module reads.

use super::load::Figures;
use anyhow::{Context, Result, bail};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// The line prefix of the figures the Lua hook prints.
const MARK: &str = "warren-wrk";

/// Whether `wrk` runs here.
pub fn installed() -> bool {
    Command::new("wrk")
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("wrk"))
}

/// A Lua script that POSTs `body` as JSON and prints the figures when done; written under
/// `dir`.
pub fn script(dir: &Path, body: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("wrk-post.lua");
    let lua = format!(
        r#"wrk.method = "POST"
wrk.body = [[{body}]]
wrk.headers["Content-Type"] = "application/json"
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("{MARK} %d %d %d %d %.0f %.0f %.0f\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
"#
    );
    std::fs::write(&path, lua)?;
    Ok(path)
}

/// Loads `http://address/path` over `connections` connections for `warmup` (not measured) and
/// then `measured`, with `script`.
pub async fn level(
    address: SocketAddr,
    path: &str,
    script: &Path,
    connections: usize,
    warmup: Duration,
    measured: Duration,
) -> Result<Figures> {
    let url = format!("http://{address}{path}");
    let mut warmed = 0.0;
    if !warmup.is_zero() {
        warmed = run(&url, script, connections, warmup)
            .await?
            .requests_in_all;
    }
    let mut figures = run(&url, script, connections, measured).await?;
    figures.requests_in_all += warmed;
    Ok(figures)
}

/// How long past its `-d` a wrk run may take before it counts as hung: wrk stops sending at
/// its duration and exits once its thread has stopped.
const EXIT_GRACE: Duration = Duration::from_secs(15);

/// One wrk run, killed if it has not exited [`EXIT_GRACE`] after its duration.
async fn run(url: &str, script: &Path, connections: usize, span: Duration) -> Result<Figures> {
    let seconds = span.as_secs().max(1);
    let mut command = Command::new("wrk");
    command
        .args(["-t1", "--timeout", "30s"])
        .arg(format!("-c{}", connections.max(1)))
        .arg(format!("-d{seconds}s"))
        .arg("-s")
        .arg(script)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let limit = Duration::from_secs(seconds) + EXIT_GRACE;
    let output = tokio::task::spawn_blocking(move || -> Result<Output> {
        let mut child = command.spawn().context("starting wrk")?;
        let exited = warren_procs::wait_within(&mut child, limit);
        if exited.is_none() {
            let _ = child.kill();
        }
        // wrk writes a few hundred bytes, well within a pipe's buffer, so reading after the
        // exit cannot block it (and the status was already reaped: it is returned as is).
        let output = child.wait_with_output()?;
        if exited.is_none() {
            bail!(
                "wrk did not exit within {limit:?} (killed); its output: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(output)
    })
    .await??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "wrk failed: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    parse(&stdout).with_context(|| format!("no figures in wrk's output: {stdout}"))
}

/// The figures from the hook's line in `stdout`.
fn parse(stdout: &str) -> Option<Figures> {
    let line = stdout.lines().find_map(|l| l.strip_prefix(MARK))?;
    let v: Vec<f64> = line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let [
        requests,
        duration_us,
        socket_errors,
        status_errors,
        p50,
        p99,
        p999,
    ] = v[..]
    else {
        return None;
    };
    let errors = socket_errors + status_errors;
    Some(Figures {
        rps: (requests - status_errors).max(0.0) / (duration_us / 1e6).max(1e-9),
        p50_ms: p50 / 1000.0,
        p99_ms: p99 / 1000.0,
        p999_ms: p999 / 1000.0,
        errors: errors as u64,
        first_error: (errors > 0.0).then(|| {
            format!("wrk: {socket_errors} socket errors, {status_errors} answers of 400 or above")
        }),
        requests_in_all: requests,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hook_line_becomes_figures() {
        let out = "Running 1s test\nwarren-wrk 5000 1000000 0 10 1500 4200 9000\n";
        let f = parse(out).expect("figures");
        assert_eq!(f.rps, 4990.0);
        assert_eq!((f.p50_ms, f.p99_ms, f.p999_ms), (1.5, 4.2, 9.0));
        assert_eq!(f.errors, 10);
        assert!(f.first_error.is_some());
        assert!(parse("no hook output").is_none());
    }
}
