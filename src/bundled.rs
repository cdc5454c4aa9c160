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

/// The descriptors of every bundled service, as one instance of each would announce them
/// (for `warren openapi`: no transport, no timestamps, the same output every time).
pub fn descriptors() -> Vec<mesh::describe::ServiceDescriptor> {
    use mesh::describe::InstanceState;
    let mut descriptors = vec![
        greeter::service().descriptor("document", 0, InstanceState::Up),
        kv::service().descriptor("document", 0, InstanceState::Up),
    ];
    for d in &mut descriptors {
        d.sent_at_ms = 0;
    }
    descriptors
}
