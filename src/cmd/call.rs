//! `warren call`: one call over RabbitMQ, its result printed as JSON.

use anyhow::{Context, Result};
use clap::Args;
use mesh::{Arguments, CallContext, Deadline, IntoArguments, Mesh};
use std::process::ExitCode;
use std::time::Duration;
use warren_runtime::args::MeshArgs;

/// Flags of `warren call`.
#[derive(Args)]
pub struct Call {
    /// The service.
    service: String,
    /// The method.
    method: String,
    /// The arguments: a JSON object (keyword) or array (positional). None when omitted.
    args: Option<String>,
    #[command(flatten)]
    mesh: MeshArgs,
    /// How long to wait for the reply, in milliseconds.
    #[arg(long, env = "WARREN_TIMEOUT_MS", default_value_t = 30_000)]
    timeout_ms: u64,
}

impl Call {
    /// Prints the result as JSON; on an error prints it and exits 1.
    pub async fn run(self) -> Result<ExitCode> {
        let arguments = match &self.args {
            None => Arguments::default(),
            Some(text) => {
                let value: serde_json::Value =
                    serde_json::from_str(text).context("the arguments are not valid JSON")?;
                value.into_arguments().map_err(|_| {
                    anyhow::anyhow!("the arguments must be a JSON object or array, not `{text}`")
                })?
            }
        };
        let mesh = Mesh::amqp(self.mesh.config()).await?;
        let client = mesh.client("cli").await?;
        let deadline = Deadline::after(Duration::from_millis(self.timeout_ms.max(1)));
        let outcome = client
            .rpc(&self.service)
            .with_context(CallContext::default().with_deadline(deadline))
            .call(&self.method, arguments)
            .await;
        mesh.close().await;
        match outcome {
            Ok(result) => {
                println!("{}", serde_json::to_string_pretty(&result)?);
                Ok(ExitCode::SUCCESS)
            }
            Err(error) => {
                eprintln!("error: {error}");
                Ok(ExitCode::FAILURE)
            }
        }
    }
}
