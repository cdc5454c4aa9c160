//! The announcer: a task per running service that dispatches its descriptor at start, on every
//! heartbeat, and once more as `down` when the service stops, so gateways know which services
//! have live instances.

use crate::context::CallContext;
use crate::describe::{DESCRIPTOR_EVENT, DESCRIPTOR_SOURCE, InstanceState};
use crate::service::Routes;
use crate::shutdown::Shutdown;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Starts announcing `routes` (which must carry their outbound) as instance `instance`.
pub(crate) fn spawn(
    routes: Routes,
    instance: String,
    heartbeat: Duration,
    stop: Shutdown,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let heartbeat_ms = u64::try_from(heartbeat.as_millis()).unwrap_or(u64::MAX);
        let incarnation = crate::deadline::epoch_ms_now();
        let announce = |state| announce(&routes, &instance, heartbeat_ms, incarnation, state);
        loop {
            announce(InstanceState::Up).await;
            tokio::select! {
                () = stop.triggered() => break,
                () = tokio::time::sleep(heartbeat) => {}
            }
        }
        announce(InstanceState::Down).await;
    })
}

async fn announce(
    routes: &Routes,
    instance: &str,
    heartbeat_ms: u64,
    incarnation: u64,
    state: InstanceState,
) {
    let Some(outbound) = routes.outbound() else {
        return;
    };
    let mut descriptor = routes.descriptor(instance, heartbeat_ms, state);
    descriptor.started_at_ms = incarnation;
    let payload = match serde_json::to_value(&descriptor) {
        Ok(payload) => payload,
        Err(error) => {
            tracing::error!(%error, "cannot encode a descriptor");
            return;
        }
    };
    let sent = outbound
        .dispatch(
            DESCRIPTOR_SOURCE,
            DESCRIPTOR_EVENT,
            payload,
            CallContext::default(),
        )
        .await;
    if let Err(error) = sent {
        tracing::debug!(service = %routes.service(), %error, "cannot announce the descriptor");
    }
}
