//! `warren call`: one call over RabbitMQ, its result printed as JSON.

use anyhow::{Context, Result};
use clap::Args;
use mesh::{Arguments, CallContext, CallError, Client, Deadline, IntoArguments, Mesh};
use serde_json::Value;
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
        let timeout = Duration::from_millis(self.timeout_ms);
        let outcome = call_within(&client, &self.service, &self.method, arguments, timeout).await;
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

/// Calls `service.method` with `arguments` through `client`, waiting at most `timeout` (at
/// least a millisecond) for the reply: the call of `warren call` and `warren shell`.
pub async fn call_within(
    client: &Client,
    service: &str,
    method: &str,
    arguments: Arguments,
    timeout: Duration,
) -> Result<Value, CallError> {
    let deadline = Deadline::after(timeout.max(Duration::from_millis(1)));
    client
        .rpc(service)
        .with_context(CallContext::default().with_deadline(deadline))
        .call(method, arguments)
        .await
}
