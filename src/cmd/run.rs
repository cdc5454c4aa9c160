//! `warren run`: bundled services over RabbitMQ, with an optional ops listener.

use crate::bundled::{self, ServiceArgs};
use anyhow::{Result, bail};
use clap::Args;
use warren_runtime::args::MeshArgs;
use warren_runtime::{LogFormat, Runner, Transport};

/// Flags of `warren run`.
#[derive(Args)]
pub struct Run {
    /// The services to run.
    #[arg(required = true, value_name = "SERVICE")]
    services: Vec<String>,
    /// Where to serve /healthz, /readyz and /metrics for probes (none when not given).
    #[arg(long, env = "WARREN_OPS_LISTEN")]
    ops_listen: Option<String>,
    #[command(flatten)]
    mesh: MeshArgs,
    #[command(flatten)]
    settings: ServiceArgs,
}

impl Run {
    /// What the process is called in exported traces: its services' names.
    pub fn process_name(&self) -> String {
        self.services.join("+")
    }

    /// Runs until SIGINT or SIGTERM.
    pub async fn run(self, log_format: LogFormat) -> Result<()> {
        let mut names = Vec::with_capacity(self.services.len());
        for name in &self.services {
            match bundled::canonical(name) {
                Some(name) => names.push(name),
                None => bail!(
                    "unknown service `{name}`; bundled services: {}",
                    bundled::names().join(", ")
                ),
            }
        }
        let mut settings = super::settings(&self.mesh, Transport::Amqp, log_format);
        settings.ops_listen = self.ops_listen.clone();
        let mut runner = Runner::new(settings);
        for name in names {
            runner = bundled::serve(runner, name, &self.settings);
        }
        Ok(runner.try_run().await?)
    }
}
