//! `warren shell`: nameko's `nameko shell` for a Warren mesh, over AMQP. On a terminal a REPL
//! with completion from the live descriptors and a history; on a pipe a script runner that
//! prints only each result or error.

use crate::shell::{Input, Session, default_history_file};
use anyhow::{Context, Result};
use clap::Args;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use warren_runtime::args::MeshArgs;

/// Flags of `warren shell`.
#[derive(Args)]
pub struct Shell {
    #[command(flatten)]
    mesh: MeshArgs,
    /// How long each call waits for its reply, in milliseconds.
    #[arg(long, env = "WARREN_TIMEOUT_MS", default_value_t = 30_000)]
    timeout_ms: u64,
    /// Where the history is kept [default: $XDG_STATE_HOME/warren/shell_history when
    /// XDG_STATE_HOME is set, else ~/.warren_history].
    #[arg(long, env = "WARREN_SHELL_HISTORY", value_name = "PATH")]
    history_file: Option<PathBuf>,
}

impl Shell {
    /// The log filter when `RUST_LOG` is not set: nothing but each result or error on a pipe,
    /// warnings on a terminal (the line editor's own logs never).
    pub fn default_log_filter() -> &'static str {
        if std::io::stdin().is_terminal() {
            "warn,rustyline=off"
        } else {
            "off"
        }
    }

    /// Runs lines from the terminal or standard input until their end or `exit`; exits 0 then,
    /// whatever the calls returned, and 1 only when the broker cannot be reached.
    pub async fn run(self) -> Result<ExitCode> {
        let interactive = std::io::stdin().is_terminal();
        let timeout = Duration::from_millis(self.timeout_ms);
        let mut session = Session::open(self.mesh.config(), timeout, interactive).await?;
        let input = if interactive {
            let history = self.history_file.or_else(default_history_file);
            session
                .terminal(history)
                .context("cannot set up the terminal")
        } else {
            Ok(Input::pipe())
        };
        let outcome = match input {
            Ok(input) => {
                session.run(input).await;
                Ok(ExitCode::SUCCESS)
            }
            Err(error) => Err(error),
        };
        session.close().await;
        outcome
    }
}
