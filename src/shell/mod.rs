//! `warren shell`'s session: a client and a descriptor feed on one AMQP connection, and the loop
//! that reads a line, runs it and prints what came of it.
//!
//! On a terminal it is a REPL with completion and history; on a pipe it prints each result or
//! error and nothing else, and ends with its input.

mod catalogue;
mod complete;
mod input;
mod parse;
mod show;
mod tail;
mod value;

pub use input::{Input, default_history_file};

use catalogue::{Catalogue, SHELL};
use mesh::{Client, ConnectError, Mesh, MeshConfig, RunningService};
use parse::Command;
use std::time::Duration;

/// A shell's connection to the mesh and what it has heard.
pub struct Session {
    mesh: Mesh,
    client: Client,
    catalogue: Catalogue,
    feed: RunningService,
    /// Each call's deadline.
    timeout: Duration,
    /// On a terminal: a banner, Ctrl-C interrupts a command.
    interactive: bool,
    /// Tails run so far, naming each one's queue.
    tails: u64,
}

impl Session {
    /// Connects and starts following descriptors.
    pub async fn open(
        config: MeshConfig,
        timeout: Duration,
        interactive: bool,
    ) -> Result<Self, ConnectError> {
        let mesh = Mesh::amqp(config).await?;
        let opened = async {
            let client = mesh.client(SHELL).await?;
            let (catalogue, feed) = Catalogue::follow(&mesh).await?;
            Ok::<_, ConnectError>((client, catalogue, feed))
        }
        .await;
        match opened {
            Ok((client, catalogue, feed)) => Ok(Self {
                mesh,
                client,
                catalogue,
                feed,
                timeout: timeout.max(Duration::from_millis(1)),
                interactive,
                tails: 0,
            }),
            Err(error) => {
                mesh.close().await;
                Err(error)
            }
        }
    }

    /// The line editor for this session, completing from what it hears.
    pub fn terminal(&self, history: Option<std::path::PathBuf>) -> rustyline::Result<Input> {
        Input::terminal(self.catalogue.clone(), history)
    }

    /// Runs every line of `input`, until its end or `exit`.
    pub async fn run(&mut self, mut input: Input) {
        if self.interactive {
            eprintln!(
                "warren shell over {}: Tab completes, `help` lists the commands, Ctrl-D leaves",
                self.mesh.describe()
            );
        }
        while let Some(line) = input.next_line().await {
            let command = match parse::parse(&line) {
                Ok(Command::Exit) => break,
                Ok(command) => command,
                Err(error) => {
                    eprintln!("error: {error}");
                    continue;
                }
            };
            if self.execute(command).await.is_err() {
                // Standard output is gone: nothing more can be shown.
                break;
            }
        }
    }

    /// Stops following descriptors and closes the connection.
    pub async fn close(self) {
        self.feed.stop().await;
        self.mesh.close().await;
    }

    async fn execute(&mut self, command: Command) -> std::io::Result<()> {
        let interrupt = Interrupt::new(self.interactive);
        match command {
            Command::Nothing | Command::Exit => Ok(()),
            Command::Call {
                service,
                method,
                arguments,
            } => {
                let call = crate::cmd::call::call_within(
                    &self.client,
                    &service,
                    &method,
                    arguments,
                    self.timeout,
                );
                tokio::select! {
                    outcome = call => match outcome {
                        Ok(result) => show::out(&show::result(&result)),
                        Err(error) => {
                            let ms = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX);
                            eprintln!("{}", show::problem(error, &service, &method, ms));
                            Ok(())
                        }
                    },
                    () = interrupt.wait() => {
                        eprintln!("interrupted: the call is abandoned");
                        Ok(())
                    }
                }
            }
            Command::Help { service, method } => show::out(&show::help(
                &self.catalogue,
                service.as_deref(),
                method.as_deref(),
            )),
            Command::Services => show::out(&show::services(&self.catalogue.overview())),
            Command::Tail {
                source,
                event_type,
                count,
            } => {
                self.tails += 1;
                let tail = tail::Tail {
                    source: &source,
                    event_type: &event_type,
                    count,
                    number: self.tails,
                };
                let interactive = self.interactive;
                let started = || {
                    if interactive {
                        eprintln!("following {source}.{event_type}; Ctrl-C stops");
                    }
                };
                match tail.run(&self.mesh, interrupt.wait(), started).await {
                    Ok(()) => Ok(()),
                    Err(tail::TailError::Output(error)) => Err(error),
                    Err(error) => {
                        eprintln!("error: {error}");
                        Ok(())
                    }
                }
            }
        }
    }
}

/// Ctrl-C while a command runs, on a terminal; made before the command starts, so a Ctrl-C that
/// comes while it sets up is not missed. On a pipe never: SIGINT ends the process, as it ends
/// the rest of a script.
struct Interrupt(Option<tokio::signal::unix::Signal>);

impl Interrupt {
    fn new(interactive: bool) -> Self {
        let listen = || tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt());
        Self(interactive.then(listen).and_then(Result::ok))
    }

    /// Resolves at the first Ctrl-C.
    async fn wait(mut self) {
        match &mut self.0 {
            Some(signal) => {
                signal.recv().await;
            }
            None => std::future::pending().await,
        }
    }
}
