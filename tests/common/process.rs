//! The `warren` binary (and the example programs) as child processes, on the helpers the
//! benchmark uses too (`warren-procs`): run to completion, or start and stop with SIGTERM.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

pub use warren_procs::Child as Spawned;

/// The binary without `AMQP_URL` in its environment: `dev` runs in process unless a test passes
/// `--amqp`, and the other commands use the default broker, as the harness does.
pub fn warren() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_warren"));
    command.env("RUST_LOG", "warn").env_remove("AMQP_URL");
    command
}

/// How long one `warren` command may run in a test before it counts as hung: it and
/// everything it started are killed and the test fails with what it printed so far, instead
/// of holding the suite until CI's own limit.
const RUN_LIMIT: Duration = Duration::from_secs(180);

/// How long a long-running child may take to print its first line.
const START_LIMIT: Duration = Duration::from_secs(60);

/// Runs `warren ARGS` to completion on a blocking thread, at most [`RUN_LIMIT`].
pub async fn run(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let mut command = warren();
        command.args(&args);
        warren_procs::run(command, &format!("warren {args:?}"), RUN_LIMIT)
            .unwrap_or_else(|e| panic!("{e}"))
    })
    .await
    .expect("task")
}

/// Starts a long-running `warren ARGS` and returns it with the first line it printed.
pub fn spawn(args: &[&str]) -> (Spawned, String) {
    spawn_with_env(args, &[])
}

/// [`spawn`] with extra environment variables.
pub fn spawn_with_env(args: &[&str], env: &[(&str, &str)]) -> (Spawned, String) {
    let mut command = warren();
    command
        .args(args)
        .envs(env.iter().copied())
        .stderr(Stdio::inherit());
    start(command, &format!("warren {args:?}"))
}

/// Starts `command`, reading its first line within [`START_LIMIT`].
pub fn start(command: Command, what: &str) -> (Spawned, String) {
    Spawned::start(command, what, START_LIMIT).unwrap_or_else(|e| panic!("{e}"))
}

/// The `host:port` of the first `http://` URL in `line` (a started gateway's first line).
pub fn http_address(line: &str) -> String {
    warren_procs::http_address(line).unwrap_or_else(|| panic!("no address in {line:?}"))
}

/// Sends SIGTERM and waits for the exit, at most `limit`.
pub fn terminate(child: Spawned, limit: Duration) -> std::process::ExitStatus {
    child
        .terminate(limit)
        .unwrap_or_else(|| panic!("the child did not exit within {limit:?} of SIGTERM"))
}

/// Sends SIGKILL: the process gets no chance to clean up.
pub fn kill(child: Spawned) {
    child.kill();
}

/// Sends SIGTERM, waits for the exit (at most `limit`), then reads everything the child wrote
/// to its piped standard error: its exit status and its log.
pub async fn terminate_and_read(
    child: Spawned,
    mut stderr: std::process::ChildStderr,
    limit: Duration,
) -> (std::process::ExitStatus, String) {
    tokio::task::spawn_blocking(move || {
        let status = terminate(child, limit);
        let mut log = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut log).expect("stderr");
        (status, log)
    })
    .await
    .expect("task")
}
