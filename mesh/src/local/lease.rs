//! [`LocalLease`]: a once-per-service timer's lease in process, one holder among the instances
//! of one in-process mesh, as the broker keeps one exclusive consumer on the lease queue
//! (docs/architecture.md §10).

use super::{Registry, lock};
use crate::lease::{Lease, LeaseFuture};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Tells the holders of a registry apart.
static NEXT_HOLDER: AtomicU64 = AtomicU64::new(1);

/// One instance's hold on the lease `name` of a registry.
pub(crate) struct LocalLease {
    registry: Arc<Registry>,
    name: String,
    holder: u64,
}

impl LocalLease {
    /// The lease `name` of `registry`, not held yet.
    pub(crate) fn new(registry: Arc<Registry>, name: String) -> Self {
        Self {
            registry,
            name,
            holder: NEXT_HOLDER.fetch_add(1, Ordering::Relaxed),
        }
    }

    fn try_hold(&self) -> bool {
        let mut leases = lock(&self.registry.leases);
        if self.registry.is_closed() {
            // A closed mesh is a connection gone: its holder let go.
            leases.retain(|_, holder| *holder != self.holder);
            return false;
        }
        *leases.entry(self.name.clone()).or_insert(self.holder) == self.holder
    }

    fn give_up(&self) {
        let mut leases = lock(&self.registry.leases);
        if leases.get(&self.name) == Some(&self.holder) {
            leases.remove(&self.name);
        }
    }
}

impl Lease for LocalLease {
    fn hold(&self) -> LeaseFuture<'_, bool> {
        Box::pin(std::future::ready(self.try_hold()))
    }

    fn release(&self) -> LeaseFuture<'_, ()> {
        self.give_up();
        Box::pin(std::future::ready(()))
    }
}

impl Drop for LocalLease {
    fn drop(&mut self) {
        // A ticking task aborted before it released still lets go, as a closed channel does.
        self.give_up();
    }
}
