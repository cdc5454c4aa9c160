//! `tail source.event_type [N]`: a transient, in-order subscription for as long as the command
//! runs, as the gateway's event streams have (docs/architecture.md §3); its queue goes away with
//! it.

use super::catalogue::SHELL;
use mesh::{Mesh, Payload, RpcError, Service, State, Subscription};
use serde_json::Value;
use std::future::Future;
use tokio::sync::mpsc;

/// Events received but not printed yet; beyond it the subscription waits (it handles events in
/// order, one at a time), so the broker holds the rest.
const BUFFER: usize = 256;

/// What `tail` is to follow.
pub struct Tail<'a> {
    /// The dispatching service.
    pub source: &'a str,
    /// The event type.
    pub event_type: &'a str,
    /// How many events to print, or all until interrupted.
    pub count: Option<u64>,
    /// Names this subscription's queue, distinct from the session's other tails.
    pub number: u64,
}

/// Why a tail ended early.
#[derive(Debug, thiserror::Error)]
pub enum TailError {
    /// The subscription could not be made.
    #[error("cannot follow {0}: {1}")]
    Subscribe(String, mesh::ConnectError),
    /// Standard output is gone.
    #[error(transparent)]
    Output(#[from] std::io::Error),
}

impl Tail<'_> {
    /// Prints each event's payload as one line of JSON until `count` have come or `interrupted`
    /// resolves, then unsubscribes. `started` is told once the queue is bound.
    pub async fn run(
        self,
        mesh: &Mesh,
        interrupted: impl Future<Output = ()>,
        started: impl FnOnce(),
    ) -> Result<(), TailError> {
        let (sender, events) = mpsc::channel(BUFFER);
        let subscription = Subscription::new(self.source, self.event_type)
            .method(format!("tail_{}", self.number))
            .transient()
            .in_order();
        let service = Service::new(SHELL)
            .subscribe(subscription, forward)
            .with_state(sender);
        let topic = format!("{}.{}", self.source, self.event_type);
        let running = mesh
            .serve(service)
            .await
            .map_err(|e| TailError::Subscribe(topic, e))?;
        started();
        // The receiver goes with `print`: a handler still waiting to hand an event over then
        // fails at once instead of holding up the stop for its grace period.
        let printed = print(events, self.count, interrupted).await;
        running.stop().await;
        Ok(printed?)
    }
}

/// Prints events until `count` or `interrupted`.
async fn print(
    mut events: mpsc::Receiver<Value>,
    count: Option<u64>,
    interrupted: impl Future<Output = ()>,
) -> std::io::Result<()> {
    tokio::pin!(interrupted);
    let mut printed = 0;
    while count.is_none_or(|count| printed < count) {
        tokio::select! {
            event = events.recv() => match event {
                Some(payload) => super::show::out(&payload.to_string())?,
                None => break,
            },
            () = &mut interrupted => break,
        }
        printed += 1;
    }
    Ok(())
}

async fn forward(
    State(sender): State<mpsc::Sender<Value>>,
    Payload(payload): Payload<Value>,
) -> Result<(), RpcError> {
    // The tail has ended when no one receives: the event is dropped with its subscription.
    let _ = sender.send(payload).await;
    Ok(())
}
