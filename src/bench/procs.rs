//! Child `warren` processes for the benchmark, and what `/proc` says of them: resident memory
//! and CPU time.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a child may take to print its first line (a service or gateway connecting to
/// RabbitMQ, nameko's gateway importing its modules).
const START_LIMIT: Duration = Duration::from_secs(60);

/// How long a child may take to stop after SIGTERM before it is killed. Warren's graceful
/// shutdown takes well under a second when nothing is in flight; a child past this is hung.
const STOP_LIMIT: Duration = Duration::from_secs(15);

/// A child process of the benchmark (`warren`, or nameko's gateway), stopped with SIGTERM when
/// dropped (and killed if it does not stop within [`STOP_LIMIT`]).
pub struct Process {
    child: Child,
    /// What it is, for messages.
    what: String,
    /// The first line it printed.
    pub first_line: String,
}

impl Process {
    /// Starts `warren ARGS...` and waits for its first line.
    pub fn start(args: &[&str]) -> anyhow::Result<Self> {
        let mut command = Command::new(std::env::current_exe()?);
        command.args(args).env("RUST_LOG", "warn");
        Self::spawn(command, &format!("warren {args:?}"))
    }

    /// Starts `command` (stdout piped, stderr inherited) and waits for its first line. The child
    /// gets SIGTERM when the bench dies, so an interrupted bench leaves no process behind.
    pub fn spawn(mut command: Command, what: &str) -> anyhow::Result<Self> {
        // SAFETY: the closure runs between fork and exec and only calls prctl, which is
        // async-signal-safe and touches no memory of this process.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start {what}: {e}"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        // The first line is read on its own thread so that a child that never prints is given
        // up on at a deadline instead of blocking the bench for good.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let read = BufReader::new(stdout).read_line(&mut line).map(|_| line);
            let _ = tx.send(read);
        });
        // Made before the wait, so that giving up stops the child (its Drop).
        let mut process = Self {
            child,
            what: what.to_owned(),
            first_line: String::new(),
        };
        match rx.recv_timeout(START_LIMIT) {
            Ok(Ok(line)) if !line.is_empty() => {
                process.first_line = line;
                Ok(process)
            }
            Ok(Ok(_)) => anyhow::bail!("{what} exited before starting"),
            Ok(Err(e)) => anyhow::bail!("reading {what}'s first line: {e}"),
            Err(_) => anyhow::bail!("{what} printed nothing within {START_LIMIT:?}"),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The `http://ADDR` the first line names.
    pub fn http_address(&self) -> Option<std::net::SocketAddr> {
        self.first_line
            .split("http://")
            .nth(1)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if stop(&mut self.child, STOP_LIMIT).is_none() {
            eprintln!(
                "warren bench: {} did not stop within {STOP_LIMIT:?} of SIGTERM; killed it",
                self.what
            );
        }
    }
}

/// Sends `child` SIGTERM and waits for it to exit, at most `limit`; past that kills it and
/// returns `None`.
pub fn stop(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill only sends a signal; the pid is our own unreaped child, so it cannot
        // have been reused by another process.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
    wait_at_most(child, limit)
}

/// Waits for `child` to exit, at most `limit`; past that kills it and returns `None`.
pub fn wait_at_most(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    None
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
