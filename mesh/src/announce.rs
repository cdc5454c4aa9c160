//! The announcer: a task per running service that dispatches its descriptor at start, on every
//! heartbeat, and once more as `down` when the service stops, so gateways know which services
//! have live instances.

use crate::call_context::CallContext;
use crate::describe::{DESCRIPTOR_EVENT, DESCRIPTOR_SOURCE, InstanceState};
use crate::routes::Routes;
use crate::shutdown::Shutdown;
use std::time::Duration;
use tokio::task::JoinHandle;

/// How soon to announce again after a failed announcement.
const RETRY: Duration = Duration::from_millis(250);
/// When to announce again after the first announcement that went out after failures.
const AFTER_RECOVERY: Duration = Duration::from_secs(1);

/// Starts announcing `routes` (which must carry their outbound) as instance `instance`.
///
/// A service of transient subscriptions alone (a gateway's descriptor feed, its event streams'
/// feeds) is a listener, not a service anyone calls or should list: it is not announced.
pub(crate) fn spawn(
    routes: Routes,
    instance: String,
    heartbeat: Duration,
    stop: Shutdown,
) -> JoinHandle<()> {
    let subscriptions = routes.subscriptions();
    let listener = !routes.has_methods()
        && routes.timers().is_empty()
        && !subscriptions.is_empty()
        && subscriptions.iter().all(|(s, _)| s.transient);
    if listener {
        return tokio::spawn(std::future::ready(()));
    }
    tokio::spawn(async move {
        let heartbeat_ms = u64::try_from(heartbeat.as_millis()).unwrap_or(u64::MAX);
        let incarnation = crate::deadline::epoch_ms_now();
        let announce = |state| announce(&routes, &instance, heartbeat_ms, incarnation, state);
        let mut failed = false;
        loop {
            // After the broker was lost, announce as soon as it takes the dispatch, and once
            // more a moment later: a gateway that lost the broker too may re-attach its
            // descriptor queue after the first one went out.
            let next = match (announce(InstanceState::Up).await, failed) {
                (false, _) => RETRY,
                (true, true) => AFTER_RECOVERY,
                (true, false) => heartbeat,
            };
            failed = next == RETRY;
            tokio::select! {
                () = stop.triggered() => break,
                () = tokio::time::sleep(next.min(heartbeat)) => {}
            }
        }
        announce(InstanceState::Down).await;
    })
}

/// Dispatches the descriptor; returns whether it went out.
async fn announce(
    routes: &Routes,
    instance: &str,
    heartbeat_ms: u64,
    incarnation: u64,
    state: InstanceState,
) -> bool {
    let Some(outbound) = routes.outbound() else {
        return true;
    };
    let mut descriptor = routes.descriptor(instance, heartbeat_ms, state);
    descriptor.started_at_ms = incarnation;
    let payload = match serde_json::to_value(&descriptor) {
        Ok(payload) => payload,
        Err(error) => {
            tracing::error!(%error, "cannot encode a descriptor");
            return true;
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
    if let Err(error) = &sent {
        tracing::debug!(service = %routes.service(), %error, "cannot announce the descriptor");
    }
    sent.is_ok()
}
