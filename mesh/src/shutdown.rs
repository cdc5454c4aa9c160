//! [`Shutdown`]: a stop signal that any number of tasks can wait on.

use tokio::sync::watch;

/// A one-way, many-listener stop signal. Cloning gives another handle to the same signal.
#[derive(Debug, Clone)]
pub(crate) struct Shutdown {
    tx: watch::Sender<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A signal not yet triggered.
    pub(crate) fn new() -> Self {
        Self {
            tx: watch::channel(false).0,
        }
    }

    /// Triggers the signal; every current and future waiter returns.
    pub(crate) fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// Whether the signal was triggered.
    pub(crate) fn is_triggered(&self) -> bool {
        *self.tx.borrow()
    }

    /// Waits until the signal is triggered.
    pub(crate) async fn triggered(&self) {
        let mut rx = self.tx.subscribe();
        // `wait_for` returns at once when the value already matches; an error means every
        // sender is gone, which cannot happen while `self` holds one.
        let _ = rx.wait_for(|stopped| *stopped).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiters_return_after_trigger() {
        let shutdown = Shutdown::new();
        let waiter = {
            let s = shutdown.clone();
            tokio::spawn(async move { s.triggered().await })
        };
        assert!(!shutdown.is_triggered());
        shutdown.trigger();
        waiter.await.expect("waiter");
        shutdown.triggered().await;
        assert!(shutdown.is_triggered());
    }
}
