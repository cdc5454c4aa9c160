//! `warren dev`: the gateway and every bundled service in one process, in process unless a
//! broker is named.

use crate::bundled::{self, ServiceArgs};
use clap::Args;
use warren_runtime::args::{GatewayArgs, MeshArgs};
use warren_runtime::{LogFormat, RunError, Runner, Transport};

/// Flags of `warren dev`.
#[derive(Args)]
pub struct Dev {
    #[command(flatten)]
    mesh: MeshArgs,
    #[command(flatten)]
    gateway: GatewayArgs,
    #[command(flatten)]
    services: ServiceArgs,
}

impl Dev {
    /// Runs until SIGINT or SIGTERM.
    pub async fn run(self, log_format: LogFormat) -> Result<(), RunError> {
        // Zero setup: in process unless a broker is named; never a silent fallback.
        let transport = if self.mesh.names_a_broker() {
            Transport::Amqp
        } else {
            Transport::InProcess
        };
        let mut settings = super::settings(&self.mesh, transport, log_format);
        settings.listen = self.gateway.listen.clone();
        settings.gateway = self.gateway.config()?;
        settings.http = self.gateway.serve_config();
        let mut runner = Runner::new(settings).with_gateway();
        for name in bundled::names() {
            runner = bundled::serve(runner, name, &self.services);
        }
        runner.try_run().await
    }
}
