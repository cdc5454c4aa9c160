//! `warren dispatch`: one event, as its source would dispatch it.

use anyhow::{Context, Result};
use clap::Args;
use mesh::Mesh;
use warren_runtime::args::MeshArgs;

/// Flags of `warren dispatch`.
#[derive(Args)]
pub struct Dispatch {
    /// The dispatching service (the event goes out on `<source>.events`).
    source: String,
    /// The event type.
    event_type: String,
    /// The payload, any JSON value (`null` when omitted).
    payload: Option<String>,
    #[command(flatten)]
    mesh: MeshArgs,
}

impl Dispatch {
    /// Publishes the event and returns once the broker has confirmed it.
    pub async fn run(self) -> Result<()> {
        let payload: serde_json::Value = match &self.payload {
            None => serde_json::Value::Null,
            Some(text) => serde_json::from_str(text).context("the payload is not valid JSON")?,
        };
        for name in [&self.source, &self.event_type] {
            mesh::validate_name(name).with_context(|| format!("invalid name `{name}`"))?;
        }
        let mesh = Mesh::amqp(self.mesh.config()).await?;
        let outcome = match mesh.client(&self.source).await {
            Ok(client) => client
                .dispatch(&self.event_type, payload)
                .await
                .map_err(Into::into),
            Err(error) => Err(anyhow::Error::from(error)),
        };
        mesh.close().await;
        outcome?;
        println!("dispatched {} from {}", self.event_type, self.source);
        Ok(())
    }
}
