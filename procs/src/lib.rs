//! Child processes as Warren's end-to-end tests and its benchmark run them (a `warren` command,
//! an example program, nameko's gateway), with a limit on every wait, so that a child that hangs
//! fails the run that waits for it instead of holding it until CI's own limit:
//!
//! - [`Child::start`]: starts a long-running child and reads its first line (where it listens)
//!   within a limit;
//! - [`Child::terminate`]: SIGTERM, then the exit within a limit, killed past it; dropping a
//!   [`Child`] does the same, so a failing test or an interrupted benchmark leaves no process
//!   behind (and a child started from the main thread gets SIGTERM when its parent dies);
//! - [`run`]: a command to its end within a limit, its output kept even when it hangs.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// How long a dropped [`Child`] may take to stop after SIGTERM before it is killed.
const DROP_LIMIT: Duration = Duration::from_secs(15);

/// Why a child could not be started or run.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The program could not be started.
    #[error("cannot start {what}: {source}")]
    Spawn {
        /// What it is.
        what: String,
        /// Why.
        source: std::io::Error,
    },
    /// It printed no line within the limit (it was stopped).
    #[error("{what} printed nothing within {limit:?}")]
    Silent {
        /// What it is.
        what: String,
        /// The limit.
        limit: Duration,
    },
    /// It exited before printing a line.
    #[error("{what} exited before starting")]
    Exited {
        /// What it is.
        what: String,
    },
    /// It did not finish within the limit (it and all it started were killed).
    #[error("{what} did not finish within {limit:?} (killed); it printed:\n{stdout}\n{stderr}")]
    Hung {
        /// What it is.
        what: String,
        /// The limit.
        limit: Duration,
        /// What it wrote to standard output until then.
        stdout: String,
        /// What it wrote to standard error until then.
        stderr: String,
    },
}

/// A long-running child, stopped with SIGTERM when dropped (killed if it does not stop within
/// 15 s).
pub struct Child {
    child: Option<std::process::Child>,
    what: String,
}

impl Child {
    /// Starts `command` (its standard output piped; standard error as the command says) and
    /// waits at most `limit` for its first line, which it returns. Started from the main thread,
    /// the child gets SIGTERM when this process dies.
    pub fn start(
        mut command: Command,
        what: &str,
        limit: Duration,
    ) -> Result<(Self, String), ProcessError> {
        // The kernel sends the death signal when the *thread* that forked the child ends, not
        // the process: a child started from a pool thread (tokio's blocking pool ends idle
        // threads after 10 s) would be stopped under a test's feet. Only a child started from
        // the main thread, which lives as long as the process, gets it.
        if is_main_thread() {
            // SAFETY: the closure runs between fork and exec and only calls prctl, which is
            // async-signal-safe and touches no memory of this process.
            unsafe {
                command.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                    Ok(())
                });
            }
        }
        let mut child =
            command
                .stdout(Stdio::piped())
                .spawn()
                .map_err(|source| ProcessError::Spawn {
                    what: what.to_owned(),
                    source,
                })?;
        let stdout = child.stdout.take();
        // Made before the wait, so that giving up stops the child (its Drop).
        let started = Self {
            child: Some(child),
            what: what.to_owned(),
        };
        // The line is read on a thread of its own, so that a child that never prints is given
        // up on at the limit.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let read = match stdout {
                Some(out) => BufReader::new(out).read_line(&mut line).map(|_| line),
                None => Ok(line),
            };
            let _ = tx.send(read);
        });
        match rx.recv_timeout(limit) {
            Ok(Ok(line)) if !line.is_empty() => Ok((started, line)),
            Ok(_) => Err(ProcessError::Exited {
                what: what.to_owned(),
            }),
            Err(_) => Err(ProcessError::Silent {
                what: what.to_owned(),
                limit,
            }),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, std::process::Child::id)
    }

    /// Its standard error, when the command piped it (once).
    pub fn take_stderr(&mut self) -> Option<std::process::ChildStderr> {
        self.child.as_mut()?.stderr.take()
    }

    /// Sends SIGTERM and waits for the exit, at most `limit`; `None` (and the child killed)
    /// past it.
    pub fn terminate(mut self, limit: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        signal(child.id(), libc::SIGTERM);
        let status = wait_within(child, limit);
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.child = None;
        status
    }

    /// Sends SIGKILL: the child gets no chance to clean up.
    pub fn kill(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        signal(child.id(), libc::SIGTERM);
        if wait_within(&mut child, DROP_LIMIT).is_none() {
            eprintln!(
                "{} did not stop within {DROP_LIMIT:?} of SIGTERM; killed it",
                self.what
            );
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether this is the process's main thread (its thread id is the process id).
fn is_main_thread() -> bool {
    // SAFETY: gettid and getpid have no preconditions and cannot fail.
    unsafe { libc::gettid() == libc::getpid() }
}

fn signal(pid: u32, signal: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill only sends a signal; the pid is our own unreaped child, so it cannot
        // have been reused by another process.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

/// `child`'s exit status once it exits, or `None` if it still runs after `limit`.
pub fn wait_within(child: &mut std::process::Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => return None,
        }
    }
}

/// Runs `command` to its end, at most `limit`, with its output. Its output goes to files, not
/// pipes: a pipe is only done when every process holding it has exited, so a grandchild that
/// outlived the command would hang the wait, and what a hung run printed could not be read back.
/// It runs in a process group of its own, killed whole when it hangs.
pub fn run(mut command: Command, what: &str, limit: Duration) -> Result<Output, ProcessError> {
    let spawn_error = |source| ProcessError::Spawn {
        what: what.to_owned(),
        source,
    };
    let files = OutputFiles::new().map_err(spawn_error)?;
    let (out, err) = files.open().map_err(spawn_error)?;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(spawn_error)?;
    let status = wait_within(&mut child, limit);
    let Some(status) = status else {
        if let Ok(group) = libc::pid_t::try_from(child.id()) {
            // SAFETY: as in `signal`, for the child's own process group.
            unsafe {
                libc::kill(-group, libc::SIGKILL);
            }
        }
        let _ = child.wait();
        let (stdout, stderr) = files.take();
        return Err(ProcessError::Hung {
            what: what.to_owned(),
            limit,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        });
    };
    let (stdout, stderr) = files.take();
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// Two files in the temporary directory for a command's output, removed when read.
struct OutputFiles {
    out: PathBuf,
    err: PathBuf,
}

impl OutputFiles {
    fn new() -> std::io::Result<Self> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("warren-run-{}-{n}", std::process::id());
        let dir = std::env::temp_dir();
        Ok(Self {
            out: dir.join(format!("{name}.out")),
            err: dir.join(format!("{name}.err")),
        })
    }

    fn open(&self) -> std::io::Result<(std::fs::File, std::fs::File)> {
        Ok((
            std::fs::File::create(&self.out)?,
            std::fs::File::create(&self.err)?,
        ))
    }

    fn take(&self) -> (Vec<u8>, Vec<u8>) {
        let read = |path: &PathBuf| {
            let bytes = std::fs::read(path).unwrap_or_default();
            let _ = std::fs::remove_file(path);
            bytes
        };
        (read(&self.out), read(&self.err))
    }
}

/// The `host:port` of the first `http://` URL in `line` (a started gateway's first line).
pub fn http_address(line: &str) -> Option<String> {
    line.split("http://")
        .nth(1)?
        .split_whitespace()
        .next()
        .map(|address| address.trim_end_matches([';', ',']).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_read_from_first_lines() {
        let line = "warren: gateway on http://127.0.0.1:8080 over AMQP; services: kv";
        assert_eq!(http_address(line).as_deref(), Some("127.0.0.1:8080"));
        let line = "warren: serving kv over AMQP x; ops on http://127.0.0.1:9090\n";
        assert_eq!(http_address(line).as_deref(), Some("127.0.0.1:9090"));
        assert_eq!(http_address("no address"), None);
    }

    #[test]
    fn a_hung_command_is_killed_at_its_limit_with_what_it_printed() {
        let mut command = Command::new("sh");
        command.args(["-c", "echo started; sleep 30"]);
        let started = Instant::now();
        let outcome = run(command, "a sleeper", Duration::from_millis(300));
        assert!(started.elapsed() < Duration::from_secs(10));
        match outcome {
            Err(ProcessError::Hung { stdout, .. }) => assert_eq!(stdout.trim(), "started"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_child_is_started_read_and_terminated() {
        let mut command = Command::new("sh");
        command.args(["-c", "echo ready; exec sleep 30"]);
        let (child, line) = Child::start(command, "a sleeper", Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(line.trim(), "ready");
        let status = child.terminate(Duration::from_secs(10));
        assert!(status.is_some_and(|s| !s.success()), "{status:?}");
    }
}
