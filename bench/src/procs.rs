//! The benchmark's child processes (`warren`, its HTTP floor, nameko's gateway), and what `/proc`
//! says of them: resident memory and CPU time.

use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// How long a child may take to print its first line (a service or gateway connecting to
/// RabbitMQ, nameko's gateway importing its modules).
const START_LIMIT: Duration = Duration::from_secs(60);

/// The `warren` binary the benchmark starts services and gateways with.
static WARREN: OnceLock<PathBuf> = OnceLock::new();

/// Sets the `warren` binary to start (once, at start).
pub fn use_warren(path: PathBuf) {
    let _ = WARREN.set(path);
}

/// The `warren` binary: as set, or the one beside this benchmark's binary.
fn warren() -> Result<PathBuf> {
    if let Some(path) = WARREN.get() {
        return Ok(path.clone());
    }
    let beside = std::env::current_exe()?.with_file_name("warren");
    anyhow::ensure!(
        beside.exists(),
        "no warren binary at {} (build it: cargo build --release --bins, or pass --warren PATH)",
        beside.display()
    );
    Ok(beside)
}

/// A child process of the benchmark (`warren`, its own HTTP floor, or nameko's gateway),
/// stopped with SIGTERM when dropped (see [`warren_procs::Child`]).
pub struct Process {
    child: warren_procs::Child,
    /// The first line it printed.
    pub first_line: String,
}

impl Process {
    /// Starts `warren ARGS...` and waits for its first line.
    pub fn warren(args: &[&str]) -> Result<Self> {
        let mut command = Command::new(warren()?);
        command.args(args).env("RUST_LOG", "warn");
        Self::spawn(command, &format!("warren {args:?}"))
    }

    /// Starts this benchmark's own binary with `args` (its HTTP floor) and waits for its first
    /// line.
    pub fn bench(args: &[&str]) -> Result<Self> {
        let mut command = Command::new(std::env::current_exe()?);
        command.args(args).env("RUST_LOG", "warn");
        Self::spawn(command, &format!("warren-bench {args:?}"))
    }

    /// Starts `command` (stdout piped, stderr inherited) and waits for its first line.
    pub fn spawn(command: Command, what: &str) -> Result<Self> {
        let (child, first_line) = warren_procs::Child::start(command, what, START_LIMIT)
            .with_context(|| format!("starting {what}"))?;
        Ok(Self { child, first_line })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// The `http://ADDR` the first line names.
    pub fn http_address(&self) -> Option<std::net::SocketAddr> {
        warren_procs::http_address(&self.first_line)?.parse().ok()
    }
}

/// CPU seconds (user + system) the process has used.
pub fn cpu_seconds(pid: u32) -> f64 {
    stat_seconds(pid, false)
}

/// CPU seconds (user + system) the process and its finished, waited-for children have used.
pub fn cpu_seconds_with_children(pid: u32) -> f64 {
    stat_seconds(pid, true)
}

fn stat_seconds(pid: u32, children: bool) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime, stime, cutime and cstime are fields 14 to 17 of the file: 11 to 14 after the ')'.
    let mut sum = ticks(11) + ticks(12);
    if children {
        sum += ticks(13) + ticks(14);
    }
    sum / clock_ticks_per_second()
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`, asked once).
pub fn clock_ticks_per_second() -> f64 {
    static HZ: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *HZ.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// Resident memory of the process, bytes.
pub fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Samples a process's RSS every 50 ms until stopped; keeps the peak.
pub struct RssPeak {
    peak: Arc<AtomicU64>,
    running: Arc<AtomicBool>,
}

impl RssPeak {
    /// Starts sampling `pid`.
    pub fn start(pid: u32) -> Self {
        let peak = Arc::new(AtomicU64::new(rss_bytes(pid)));
        let running = Arc::new(AtomicBool::new(true));
        let (p, r) = (peak.clone(), running.clone());
        tokio::spawn(async move {
            while r.load(Ordering::Relaxed) {
                p.fetch_max(rss_bytes(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        Self { peak, running }
    }

    /// Stops sampling; the peak in bytes.
    pub fn stop(self) -> u64 {
        self.running.store(false, Ordering::Relaxed);
        self.peak.load(Ordering::Relaxed)
    }
}

/// Raises this process's soft limit on open files to its hard limit (children inherit it) and
/// returns the new soft limit. Raising the hard limit needs `CAP_SYS_RESOURCE`, which a container
/// usually lacks, so the hard limit is what the machine allows.
pub fn raise_open_files_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read or write the struct passed by pointer, which
    // lives on this stack frame for the whole call.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    limit.rlim_cur
}
