//! The `warren` binary as a child process: run to completion, or start and stop with SIGTERM.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary without `AMQP_URL` in its environment: `dev` runs in process unless a test passes
/// `--amqp`, and the other commands use the default broker, as the harness does.
pub fn warren() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_warren"));
    command.env("RUST_LOG", "warn").env_remove("AMQP_URL");
    command
}

/// How long one `warren` command may run in a test (the longest is a short benchmark) before
/// it counts as hung: it and everything it started are killed and the test fails with what it
/// printed so far, instead of holding the suite until CI's own limit.
const RUN_LIMIT: Duration = Duration::from_secs(180);

/// Runs `warren` to completion on a blocking thread, at most [`RUN_LIMIT`].
///
/// Its output goes to files, not pipes: a pipe is only done when every process holding it has
/// exited, so a grandchild that outlived `warren` would hang the wait, and what a hung run
/// printed could not be read back.
pub async fn run(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || run_blocking(&args, RUN_LIMIT))
        .await
        .expect("task")
}

fn run_blocking(args: &[String], limit: Duration) -> Output {
    let dir = std::env::temp_dir();
    let name = format!("warren-run-{}-{}", std::process::id(), super::unique("out"));
    let (out_path, err_path) = (
        dir.join(format!("{name}.out")),
        dir.join(format!("{name}.err")),
    );
    let out = std::fs::File::create(&out_path).expect("stdout file");
    let err = std::fs::File::create(&err_path).expect("stderr file");
    let mut child = warren()
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        // Its own process group, so that a hung run is killed with all it started.
        .process_group(0)
        .spawn()
        .expect("run warren");
    let status = wait_within(&mut child, limit);
    let read = |path: &std::path::Path| {
        let bytes = std::fs::read(path).unwrap_or_default();
        let _ = std::fs::remove_file(path);
        bytes
    };
    let Some(status) = status else {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", child.id())])
            .status();
        let _ = child.wait();
        panic!(
            "warren {args:?} did not finish within {limit:?} (killed); it printed:\n{}\n{}",
            String::from_utf8_lossy(&read(&out_path)),
            String::from_utf8_lossy(&read(&err_path)),
        );
    };
    Output {
        status,
        stdout: read(&out_path),
        stderr: read(&err_path),
    }
}

/// Starts a long-running `warren` and returns it with the first line it printed.
/// A child process that is killed when dropped, so a failing test leaves no process behind.
pub struct Spawned(Option<Child>);

impl Spawned {
    /// Guards `child`.
    pub fn new(child: Child) -> Self {
        Self(Some(child))
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.0.as_ref().map_or(0, Child::id)
    }

    /// The child, no longer guarded.
    fn take(mut self) -> Child {
        self.0.take().expect("a guarded child")
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn spawn(args: &[&str]) -> (Spawned, String) {
    spawn_with_env(args, &[])
}

/// [`spawn`] with extra environment variables.
pub fn spawn_with_env(args: &[&str], env: &[(&str, &str)]) -> (Spawned, String) {
    let mut child = warren()
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn warren");
    let stdout = child.stdout.take().expect("stdout");
    let mut first = String::new();
    BufReader::new(stdout)
        .read_line(&mut first)
        .expect("first line");
    (Spawned::new(child), first)
}

/// The `host:port` of the first `http://` URL in `line` (a started gateway's first line).
pub fn http_address(line: &str) -> String {
    line.split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned()
}

/// Sends SIGTERM and waits for the exit, at most `limit`.
pub fn terminate(child: Spawned, limit: Duration) -> std::process::ExitStatus {
    let mut child = child.take();
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    wait_within(&mut child, limit).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("warren did not exit within {limit:?} of SIGTERM");
    })
}

/// `child`'s exit status once it exits, or `None` if it is still running after `limit`.
fn wait_within(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return Some(status);
        }
        if started.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sends SIGKILL: the process gets no chance to clean up.
pub fn kill(child: Spawned) {
    let mut child = child.take();
    let _ = child.kill();
    let _ = child.wait();
}
