//! Steps of shutting down that wait for the broker, each with a limit.
//!
//! A cancel, a channel's close or the connection's close waits for the broker's answer; on a
//! connection that died half-way through closing, lapin never resolves it, and a process
//! stopping on SIGTERM would wait for good (seen: gateways that never exited, holding up
//! whatever waited for them). Past the limit the step is given up and shutdown goes on.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

/// How long one step of shutting down may wait for the broker.
pub(crate) const STEP_LIMIT: Duration = Duration::from_secs(5);

/// Runs `step` (named `what` in logs) for at most [`STEP_LIMIT`]; an error or the limit is
/// logged, never returned: shutting down goes on either way.
pub(crate) async fn step<T, E: Display>(what: &str, step: impl Future<Output = Result<T, E>>) {
    step_within(STEP_LIMIT, what, step).await;
}

async fn step_within<T, E: Display>(
    limit: Duration,
    what: &str,
    step: impl Future<Output = Result<T, E>>,
) {
    match tokio::time::timeout(limit, step).await {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => tracing::debug!(%error, "{what}"),
        Err(_) => tracing::warn!("{what}: no answer from the broker within {limit:?}; going on"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_step_that_never_ends_is_given_up_at_the_limit() {
        let limit = Duration::from_millis(50);
        let started = std::time::Instant::now();
        step_within(limit, "never", std::future::pending::<Result<(), String>>()).await;
        let waited = started.elapsed();
        assert!(waited >= limit && waited < limit * 20, "{waited:?}");
        let started = std::time::Instant::now();
        step_within(limit, "refused", async { Err::<(), _>("refused") }).await;
        assert!(started.elapsed() < limit);
    }
}
