//! [`PendingCalls`]: the correlation map of calls waiting for their replies.
//!
//! Correlation ids are UUIDs, kept as their 16 bytes (the map, the caller) and written as text
//! only on the wire: a reply whose id is no UUID is nobody's.
//!
//! A caller registers before it publishes and gets a [`PendingCall`]; the reply consumer hands
//! each reply to the caller with its correlation id. The entry belongs to the caller: dropping the
//! [`PendingCall`] (the caller returned, timed out, or its future was dropped because the HTTP
//! client went away) removes it, so no entry outlives its caller.

use crate::error::CallError;
use foldhash::HashMap;
use futures_util::FutureExt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use tokio::sync::oneshot;
use uuid::Uuid;

/// What a waiting caller receives: the raw reply body, or why none will come.
pub(crate) type ReplyOutcome = Result<Vec<u8>, CallError>;

/// A [`ReplyOutcome`] as its channel carries it, the rare error boxed: the channel's shared
/// state, allocated for every call and kept while it waits, holds one in place (80 bytes in
/// all, against 160 with a `CallError` in place).
type Delivered = Result<Vec<u8>, Box<CallError>>;

/// Calls waiting for a reply, by correlation id.
#[derive(Debug, Default)]
pub(crate) struct PendingCalls {
    calls: Mutex<HashMap<Uuid, oneshot::Sender<Delivered>>>,
    unmatched: AtomicU64,
}

impl PendingCalls {
    fn lock(&self) -> MutexGuard<'_, HashMap<Uuid, oneshot::Sender<Delivered>>> {
        // A panic while holding this lock cannot leave the map half-updated (every operation is a
        // single insert or remove), so a poisoned lock is safe to keep using.
        self.calls.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a call under `correlation_id`.
    pub(crate) fn register(&self, correlation_id: Uuid) -> PendingCall<'_> {
        let (tx, rx) = oneshot::channel();
        self.lock().insert(correlation_id, tx);
        PendingCall {
            pending: self,
            correlation_id,
            rx,
        }
    }

    /// Hands a reply to its caller, by the correlation id on the wire. Returns `false`, and
    /// counts it, when no caller waits for it (a late reply, a duplicate, or a stranger's).
    pub(crate) fn complete(&self, correlation_id: &str, outcome: ReplyOutcome) -> bool {
        let sender = Uuid::try_parse(correlation_id)
            .ok()
            .and_then(|id| self.lock().remove(&id));
        let delivered = sender.is_some_and(|tx| tx.send(outcome.map_err(Box::new)).is_ok());
        if !delivered {
            self.unmatched.fetch_add(1, Ordering::Relaxed);
        }
        delivered
    }

    /// Fails every waiting call with `error` (the broker connection was lost).
    pub(crate) fn fail_all(&self, error: &CallError) -> usize {
        let drained: Vec<_> = self.lock().drain().collect();
        let count = drained.len();
        for (_, tx) in drained {
            let _ = tx.send(Err(Box::new(error.clone())));
        }
        count
    }

    /// How many calls are waiting.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Replies that found no waiting caller, since start.
    pub(crate) fn unmatched(&self) -> u64 {
        self.unmatched.load(Ordering::Relaxed)
    }
}

/// One registered call. Await [`PendingCall::reply`]; drop it to give up.
#[derive(Debug)]
pub(crate) struct PendingCall<'a> {
    pending: &'a PendingCalls,
    correlation_id: Uuid,
    rx: oneshot::Receiver<Delivered>,
}

impl PendingCall<'_> {
    /// The correlation id.
    pub(crate) fn correlation_id(&self) -> Uuid {
        self.correlation_id
    }

    /// Waits for the reply. (A plain future over the channel, `Unpin`, a few bytes: a caller
    /// can race it against its deadline without pinning or boxing it.)
    pub(crate) fn reply(&mut self) -> impl Future<Output = ReplyOutcome> + Unpin + Send + '_ {
        (&mut self.rx).map(|received| match received {
            Ok(delivered) => delivered.map_err(|error| *error),
            Err(_) => Err(CallError::Unavailable("reply channel closed".into())),
        })
    }
}

impl Drop for PendingCall<'_> {
    fn drop(&mut self) {
        self.pending.lock().remove(&self.correlation_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reply_reaches_its_caller() {
        let pending = PendingCalls::default();
        let id = Uuid::new_v4();
        let mut call = pending.register(id);
        assert_eq!(pending.len(), 1);
        assert!(pending.complete(&id.to_string(), Ok(b"x".to_vec())));
        assert_eq!(call.reply().await, Ok(b"x".to_vec()));
        drop(call);
        assert_eq!(pending.len(), 0);
    }

    #[test]
    fn dropped_callers_leave_nothing_and_late_replies_are_counted() {
        let pending = PendingCalls::default();
        let id = Uuid::new_v4();
        let call = pending.register(id);
        drop(call);
        assert_eq!(pending.len(), 0);
        assert!(!pending.complete(&id.to_string(), Ok(Vec::new())));
        assert!(!pending.complete(&Uuid::new_v4().to_string(), Ok(Vec::new())));
        assert!(!pending.complete("stranger", Ok(Vec::new())));
        assert_eq!(pending.unmatched(), 3);
    }

    #[tokio::test]
    async fn fail_all_wakes_everyone() {
        let pending = PendingCalls::default();
        let mut a = pending.register(Uuid::new_v4());
        let mut b = pending.register(Uuid::new_v4());
        let err = CallError::Unavailable("gone".into());
        assert_eq!(pending.fail_all(&err), 2);
        assert_eq!(a.reply().await, Err(err.clone()));
        assert_eq!(b.reply().await, Err(err));
        assert_eq!(pending.len(), 0);
    }
}
