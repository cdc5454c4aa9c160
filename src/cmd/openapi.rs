//! `warren openapi`: the OpenAPI document of the bundled services, from their declarations
//! alone (nothing is opened, connected or written).

use crate::bundled;
use anyhow::Result;
use clap::Args;
use std::io::Write;

/// Flags of `warren openapi`.
#[derive(Args)]
pub struct Openapi {
    /// The server URL the document names.
    #[arg(long, default_value = "/")]
    public_url: String,
}

impl Openapi {
    /// Writes the document to standard output.
    pub fn run(self) -> Result<()> {
        let info = warren_gateway::DocumentInfo {
            server_url: self.public_url,
            ..warren_gateway::DocumentInfo::default()
        };
        let document = warren_gateway::document(&bundled::descriptors(), &info);
        let text = serde_json::to_string_pretty(&document)?;
        // A reader that stops early (`| head`) is not an error.
        match writeln!(std::io::stdout(), "{text}") {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
            _ => Ok(()),
        }
    }
}
