//! `warren shell` against services on the real RabbitMQ: through a pipe (only results and
//! errors, exit 0 at the end of input, `tail N`) and through a pseudo-terminal (completion from
//! the live descriptors, history).

mod common;

use common::{mesh_config, unique, wait_until};
use mesh::{Mesh, RunningService};
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a shell may take to do what a test waits for.
const LIMIT: Duration = Duration::from_secs(30);

/// `warren shell` at the default log level (no `RUST_LOG`), with no history of the user's.
fn shell(home: &std::path::Path) -> Command {
    let mut command = common::process::warren();
    command
        .arg("shell")
        .env_remove("RUST_LOG")
        .env_remove("XDG_STATE_HOME")
        .env_remove("WARREN_SHELL_HISTORY")
        .env("HOME", home);
    command
}

/// A greeter under a name of its own, on the broker.
async fn greeter(prefix: &str) -> (Mesh, RunningService, String, common::QueueCleanup) {
    let name = unique(prefix);
    let mut cleanup = common::QueueCleanup::new();
    cleanup.service(&name);
    let mesh = Mesh::amqp(mesh_config())
        .await
        .expect("RabbitMQ must be running");
    let running = mesh
        .serve(greeter::service_named(&name))
        .await
        .expect("serve");
    (mesh, running, name, cleanup)
}

/// `warren shell` reading `script` from a pipe (closed after it), its output piped.
fn piped(home: &std::path::Path, script: &str) -> Child {
    let mut child = shell(home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(script.as_bytes()).expect("write");
    child
}

/// Waits for `child` to exit, at most [`LIMIT`] (killing it then), and returns its status and
/// what it wrote.
fn finish(mut child: Child) -> (std::process::ExitStatus, String, String) {
    let status = warren_procs::wait_within(&mut child, LIMIT);
    if status.is_none() {
        let _ = child.kill();
    }
    let read = |pipe: Option<&mut dyn Read>| {
        let mut text = String::new();
        if let Some(pipe) = pipe {
            pipe.read_to_string(&mut text).expect("read");
        }
        text
    };
    let stdout = read(child.stdout.as_mut().map(|p| p as &mut dyn Read));
    let stderr = read(child.stderr.as_mut().map(|p| p as &mut dyn Read));
    let status =
        status.unwrap_or_else(|| panic!("still running after {LIMIT:?}: {stdout}{stderr}"));
    (status, stdout, stderr)
}

#[tokio::test]
async fn a_piped_script_prints_only_results_and_errors() {
    let (mesh, running, name, _cleanup) = greeter("shgreet").await;
    let home = std::env::temp_dir().join(unique("shell-home"));
    // Sent at once: the greeter's descriptor may not have been heard, and need not be.
    let script = format!(
        "{name}.hello(name=\"Matt\")\n\
         # a comment, then a blank line\n\n\
         {name}.hello('Pos')\n\
         {name}.hello(name=Matt)\n\
         {name}.hello {{\"name\": \"Json\"}}\n\
         {nobody}.anything()\n\
         {name}.hello({{'name': 'Dict'}})\n\
         n.rpc.{name}.hello(name=\"Nameko\")\n",
        nobody = unique("nobody"),
    );
    let output = tokio::task::spawn_blocking(move || finish(piped(&home, &script)))
        .await
        .expect("task");
    let (status, stdout, stderr) = output;
    assert_eq!(status.code(), Some(0), "{stdout}{stderr}");
    assert_eq!(
        stdout,
        "\"Hello, Matt!\"\n\"Hello, Pos!\"\n\"Hello, Json!\"\n\"Hello, Dict!\"\n\"Hello, Nameko!\"\n",
        "{stderr}"
    );
    // Standard error: the parse error's one line, then the problem document, nothing else.
    let (first, rest) = stderr.split_once('\n').unwrap_or_default();
    assert_eq!(
        first,
        format!(
            "error: column {}: unknown name `Matt` (a string needs quotes: \"Matt\")",
            name.len() + 13
        )
    );
    let problem: serde_json::Value =
        serde_json::from_str(rest).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert_eq!(
        problem["type"], "urn:warren:problem:unknown-service",
        "{problem}"
    );
    assert_eq!(problem["status"], 404);
    assert_eq!(problem["method"], "anything");
    running.stop().await;
    mesh.close().await;
}

#[tokio::test]
async fn a_piped_tail_prints_n_events_then_goes_on() {
    let (mesh, running, name, mut cleanup) = greeter("shtail").await;
    let source = unique("shsrc");
    cleanup.events_of(&source);
    let home = std::env::temp_dir().join(unique("shell-home"));
    let script = format!("tail {source}.poked 2\n{name}.hello(name=\"after\")\n");
    let mut child = piped(&home, &script);
    let stdout = child.stdout.take().expect("stdout");
    let printed = Arc::new(Mutex::new(String::new()));
    let reader = std::thread::spawn({
        let printed = printed.clone();
        move || {
            let mut stdout = stdout;
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = stdout.read(&mut chunk) {
                let text = String::from_utf8_lossy(&chunk[..n]).into_owned();
                printed.lock().expect("printed").push_str(&text);
            }
        }
    });
    // Events dispatched before the shell's queue is bound are lost: dispatch until two came.
    let dispatcher = mesh.client(&source).await.expect("client");
    let mut n = 0;
    let two = wait_until(LIMIT, || {
        n += 1;
        let dispatch = dispatcher.dispatch("poked", serde_json::json!({"n": n}));
        let printed = printed.clone();
        async move {
            dispatch.await.expect("dispatch");
            tokio::time::sleep(Duration::from_millis(50)).await;
            printed.lock().expect("printed").contains("Hello, after!")
        }
    })
    .await;
    let (status, _, stderr) = tokio::task::spawn_blocking(move || finish(child))
        .await
        .expect("task");
    reader.join().expect("reader");
    let printed = printed.lock().expect("printed").clone();
    assert!(two, "{printed}{stderr}");
    assert_eq!(status.code(), Some(0), "{printed}{stderr}");
    assert_eq!(stderr, "");
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines.len(), 3, "{printed}");
    for line in &lines[..2] {
        let event: serde_json::Value = serde_json::from_str(line).expect("an event a line");
        assert!(event["n"].is_u64(), "{line}");
    }
    assert_eq!(lines[2], "\"Hello, after!\"");
    running.stop().await;
    mesh.close().await;
}

/// A child on a pseudo-terminal, and everything it wrote there.
struct Terminal {
    child: Child,
    master: std::fs::File,
    screen: Arc<Mutex<String>>,
    /// How much of `screen` the test has looked at.
    seen: usize,
}

impl Terminal {
    /// Starts `command` with a new pseudo-terminal as its controlling terminal and standard
    /// streams.
    fn start(mut command: Command) -> Self {
        let (mut master, mut slave) = (0, 0);
        let size = libc::winsize {
            ws_row: 40,
            ws_col: 250,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: openpty writes two descriptors it opens into the two integers.
        let opened = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                &size,
            )
        };
        assert_eq!(opened, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: both descriptors were just opened and are owned here alone.
        let (master, slave) = unsafe {
            (
                std::fs::File::from_raw_fd(master),
                OwnedFd::from_raw_fd(slave),
            )
        };
        let stdio = || Stdio::from(slave.try_clone().expect("dup"));
        command.stdin(stdio()).stdout(stdio()).stderr(stdio());
        // SAFETY: between fork and exec only async-signal-safe calls are made.
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() == -1 || libc::ioctl(0, libc::TIOCSCTTY, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("spawn");
        drop(slave);
        let screen = Arc::new(Mutex::new(String::new()));
        let mut reader = master.try_clone().expect("dup");
        let mut answer = master.try_clone().expect("dup");
        let written = screen.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            // Ends with EIO once the child has exited.
            while let Ok(n @ 1..) = reader.read(&mut chunk) {
                let text = String::from_utf8_lossy(&chunk[..n]).into_owned();
                // The line editor asks where the cursor is before each prompt: at column 1.
                if text.contains("\x1b[6n") {
                    let _ = answer.write_all(b"\x1b[1;1R");
                }
                written.lock().expect("screen").push_str(&text);
            }
        });
        Self {
            child,
            master,
            screen,
            seen: 0,
        }
    }

    /// Types `keys`.
    fn send(&mut self, keys: &str) {
        self.master.write_all(keys.as_bytes()).expect("type");
    }

    /// Waits until `text` shows after what was seen so far, and moves past it; false after
    /// [`LIMIT`].
    fn expect(&mut self, text: &str) -> bool {
        let deadline = Instant::now() + LIMIT;
        loop {
            {
                let screen = self.screen.lock().expect("screen");
                if let Some(at) = screen[self.seen..].find(text) {
                    self.seen += at + text.len();
                    return true;
                }
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Everything the child wrote.
    fn screen(&self) -> String {
        self.screen.lock().expect("screen").clone()
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn on_a_terminal_tab_completes_from_descriptors_and_up_recalls() {
    let home = std::env::temp_dir().join(unique("shell-home"));
    std::fs::create_dir_all(&home).expect("home");
    let mut command = shell(&home);
    command.env("TERM", "xterm");
    let mut terminal = Terminal::start(command);
    assert!(
        terminal.expect("warren> "),
        "no prompt: {}",
        terminal.screen()
    );
    // Started after the shell follows descriptors: its first one is heard at once.
    let (mesh, running, name, mut cleanup) = greeter("shcomplete").await;
    cleanup.events_of(&name);
    let mut terminal = tokio::task::spawn_blocking(move || {
        // Heard at once, or at the latest with its next heartbeat (5 s).
        let deadline = Instant::now() + LIMIT;
        let heard = loop {
            terminal.send("services\r");
            if terminal.expect("warren> ") && terminal.screen().contains(&name) {
                break true;
            }
            if Instant::now() >= deadline {
                break false;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(heard, "never heard {name}: {}", terminal.screen());
        // The prefix and four characters of the name's random part, then Tab; the same for
        // the method.
        let typed = &name[..name.len() - 4];
        terminal.send(&format!("{typed}\t"));
        assert!(
            terminal.expect(&name),
            "{typed} not completed: {}",
            terminal.screen()
        );
        terminal.send(".he\t");
        assert!(terminal.expect("hello"), "{}", terminal.screen());
        terminal.send("(name=\"pty\")\r");
        assert!(terminal.expect("\"Hello, pty!\""), "{}", terminal.screen());
        assert!(terminal.expect("warren> "));
        // Up recalls the line just run.
        terminal.send("\x1b[A");
        assert!(terminal.expect(&format!("{name}.hello(name=\"pty\")")));
        terminal.send("\r");
        assert!(terminal.expect("\"Hello, pty!\""), "{}", terminal.screen());
        assert!(terminal.expect("warren> "));
        // Ctrl-C ends a tail and the prompt comes back.
        terminal.send(&format!("tail {name}.nothing\r"));
        assert!(terminal.expect(&format!("following {name}.nothing")));
        terminal.send("\x03");
        assert!(terminal.expect("warren> "), "{}", terminal.screen());
        terminal.send("\x04");
        terminal
    })
    .await
    .expect("task");
    let status = warren_procs::wait_within(&mut terminal.child, LIMIT);
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "{}",
        terminal.screen()
    );
    let history = std::fs::read_to_string(home.join(".warren_history")).unwrap_or_default();
    assert!(
        history.contains(&format!("{}.hello(name=\"pty\")", running.name())),
        "{history}"
    );
    let _ = std::fs::remove_dir_all(&home);
    running.stop().await;
    mesh.close().await;
}
