//! The services shipped with Warren, by name, for `warren run` and `warren dev`.

use mesh::{ConnectError, Mesh, RunningService};

/// The bundled services: (name, aliases).
pub const BUNDLED: &[(&str, &[&str])] = &[(greeter::NAME, &["greeter"]), (kv::NAME, &[])];

/// The canonical name of a bundled service, accepting aliases.
pub fn canonical(name: &str) -> Option<&'static str> {
    BUNDLED
        .iter()
        .find(|(canonical, aliases)| *canonical == name || aliases.contains(&name))
        .map(|(canonical, _)| *canonical)
}

/// Starts the bundled service `name` on `mesh`.
pub async fn start(mesh: &Mesh, name: &str) -> Result<RunningService, ConnectError> {
    match canonical(name) {
        Some(greeter::NAME) => mesh.serve(greeter::service()).await,
        Some(kv::NAME) => mesh.serve(kv::service()).await,
        _ => Err(ConnectError::Setup {
            url: mesh.describe(),
            reason: format!("no bundled service `{name}`"),
        }),
    }
}
