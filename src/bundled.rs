//! The services shipped with Warren, by name, for `warren run` and `warren dev`.

use mesh::{Broker, ConnectError, RunningService, serve};

/// The bundled services: (name, aliases).
pub const BUNDLED: &[(&str, &[&str])] = &[(greeter::NAME, &["greeter"]), (kv::NAME, &[])];

/// The canonical name of a bundled service, accepting aliases.
pub fn canonical(name: &str) -> Option<&'static str> {
    BUNDLED
        .iter()
        .find(|(canonical, aliases)| *canonical == name || aliases.contains(&name))
        .map(|(canonical, _)| *canonical)
}

/// Starts the bundled service `name` on `broker`.
pub async fn start(broker: &Broker, name: &str) -> Result<RunningService, ConnectError> {
    match canonical(name) {
        Some(greeter::NAME) => serve(broker, greeter::service()).await,
        Some(kv::NAME) => serve(broker, kv::service()).await,
        _ => Err(ConnectError::Setup {
            url: broker.config().redacted_url(),
            reason: format!("no bundled service `{name}`"),
        }),
    }
}
