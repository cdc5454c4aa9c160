//! The committer: the background thread that commits the index's changes within
//! [`COMMIT_DELAY`] of the first uncommitted one (group commit), and the commit itself with the
//! payload it records. Separate because it runs on its own thread, apart from the async front.

use super::error::IndexError;
use super::{Inner, State};
use serde::{Deserialize, Serialize};
use std::sync::Weak;
use std::time::Duration;

/// How long after the first uncommitted change the index commits (and searches see it).
pub const COMMIT_DELAY: Duration = Duration::from_millis(50);

/// What the index records in each commit.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct CommitPayload {
    pub(super) last_applied_version: i64,
    pub(super) catalog_id: Option<String>,
}

impl Inner {
    pub(super) fn commit(&self, state: &mut State) -> Result<(), IndexError> {
        if !state.dirty {
            return Ok(());
        }
        let payload = serde_json::to_string(&CommitPayload {
            last_applied_version: state.last_applied_version,
            catalog_id: state.catalog_id.clone(),
        })
        .map_err(|e| IndexError::Task(e.to_string()))?;
        let writer = state.writer.as_mut().ok_or(IndexError::Closed)?;
        let mut prepared = writer.prepare_commit()?;
        prepared.set_payload(&payload);
        prepared.commit()?;
        state.dirty = false;
        self.reader.reload()?;
        Ok(())
    }
}

/// Commits in the background: waits for a change, lets more gather for [`COMMIT_DELAY`], then
/// commits them all. Ends when the index is closed or dropped.
pub(super) fn committer(index: Weak<Inner>) {
    loop {
        let Some(inner) = index.upgrade() else { return };
        {
            let state = inner.lock();
            let (state, _) = inner
                .wake
                .wait_timeout_while(state, Duration::from_millis(500), |s| {
                    !s.dirty && s.writer.is_some()
                })
                .unwrap_or_else(|e| e.into_inner());
            if state.writer.is_none() {
                return;
            }
            if !state.dirty {
                // Woke by the timeout: let go of the index, so dropping it ends this thread.
                continue;
            }
        }
        std::thread::sleep(COMMIT_DELAY);
        let outcome = {
            let mut state = inner.lock();
            inner.commit(&mut state)
        };
        if let Err(error) = outcome {
            tracing::error!(%error, dir = %inner.dir.display(), "index commit failed; retrying");
            drop(inner);
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}
