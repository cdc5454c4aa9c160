//! The `warren` subcommands, one file each.

pub mod call;
pub mod dead_letters;
pub mod dev;
pub mod dispatch;
pub mod gateway;
pub mod openapi;
pub mod run;
pub mod shell;

use mesh::MeshConfig;
use warren_runtime::args::MeshArgs;
use warren_runtime::{LogFormat, Settings, Transport};

/// The runtime's settings of a `warren` command: the mesh from `mesh`, the gateway's defaults
/// unless the command fills them in.
fn settings(mesh: &MeshArgs, transport: Transport, log_format: LogFormat) -> Settings {
    let config: MeshConfig = mesh.config();
    Settings {
        mesh: config,
        transport,
        listen: warren_gateway::DEFAULT_LISTEN.to_owned(),
        gateway: warren_gateway::GatewayConfig::default(),
        http: warren_gateway::ServeConfig::default(),
        ops_listen: None,
        log_format,
        process_name: "warren".to_owned(),
    }
}
