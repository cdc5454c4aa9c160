//! [`Lease`]: what lets a once-per-service timer run in one instance of its service at a time
//! (docs/architecture.md §10). Each transport has one: on AMQP an exclusive consumer on a queue
//! of the lease's own, in process an entry in the mesh's registry.

use crate::protocol::NameError;
use std::future::Future;
use std::pin::Pin;

/// A future borrowing its lease.
pub(crate) type LeaseFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One instance's hold on a named lease, which at most one instance holds at a time.
pub(crate) trait Lease: Send + Sync {
    /// Whether this instance holds the lease now: it keeps it when it held it, takes it when it
    /// is free, and holds it until [`Lease::release`] or until its connection goes away.
    fn hold(&self) -> LeaseFuture<'_, bool>;

    /// Gives the lease up, so that another instance takes it at its next attempt.
    fn release(&self) -> LeaseFuture<'_, ()>;
}

/// Makes the lease named by [`lease_queue`] for a timer of a service being served.
pub(crate) type Leases<'a> = &'a (dyn Fn(String) -> Box<dyn Lease> + Sync);

/// The prefix of a lease's name, before `<service>.<timer>`.
const PREFIX: &str = "warren.lease.";

/// The longest `service` plus `timer` a once-per-service timer may have: its lease queue
/// `warren.lease.<service>.<timer>` is an AMQP short string (255 bytes).
pub const MAX_LEASE_NAMES_LEN: usize = 255 - PREFIX.len() - 1;

/// The name of the lease of `service`'s once-per-service timer `timer`, on the broker the queue
/// `warren.lease.<service>.<timer>`.
pub fn lease_queue(service: &str, timer: &str) -> String {
    format!("{PREFIX}{service}.{timer}")
}

/// Checks that a once-per-service timer's lease name fits a queue name.
pub(crate) fn validate_lease_names(service: &str, timer: &str) -> Result<(), NameError> {
    let len = service.len() + timer.len();
    if len > MAX_LEASE_NAMES_LEN {
        return Err(NameError::TooLongTogether(len, MAX_LEASE_NAMES_LEN));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_names_allowed_make_a_queue_name_that_fits() {
        let service = "s".repeat(128);
        let timer = "t".repeat(MAX_LEASE_NAMES_LEN - 128);
        assert!(validate_lease_names(&service, &timer).is_ok());
        assert_eq!(lease_queue(&service, &timer).len(), 255);
        let longer = format!("{timer}t");
        assert!(validate_lease_names(&service, &longer).is_err());
    }
}
