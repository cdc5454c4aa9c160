//! `warren gateway`: the HTTP gateway alone, over RabbitMQ.

use clap::Args;
use warren_runtime::args::{GatewayArgs, MeshArgs};
use warren_runtime::{LogFormat, RunError, Runner, Transport};

/// Flags of `warren gateway`.
#[derive(Args)]
pub struct Gateway {
    #[command(flatten)]
    mesh: MeshArgs,
    #[command(flatten)]
    gateway: GatewayArgs,
}

impl Gateway {
    /// Runs until SIGINT or SIGTERM. Never falls back to in process: without a broker there is
    /// nothing to front.
    pub async fn run(self, log_format: LogFormat) -> Result<(), RunError> {
        let mut settings = super::settings(&self.mesh, Transport::Amqp, log_format);
        settings.listen = self.gateway.listen.clone();
        settings.gateway = self.gateway.config()?;
        settings.http = self.gateway.serve_config();
        Runner::new(settings).with_gateway().try_run().await
    }
}
