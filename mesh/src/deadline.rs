//! [`Deadline`]: the instant by which a call must be answered, and its two wire forms.

use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// The instant by which a call must be answered.
///
/// Inside a process it is a monotonic [`Instant`]. On the wire it travels twice: as the AMQP
/// `expiration` (milliseconds left, so the broker drops a request nobody waits for) and as the
/// `warren.deadline` header (unix epoch milliseconds, so a service skips a request that expired
/// while it sat in the queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Deadline(Instant);

impl Deadline {
    /// A deadline `timeout` from now.
    pub fn after(timeout: Duration) -> Self {
        Self(Instant::now() + timeout)
    }

    /// The deadline as a monotonic instant.
    pub fn instant(self) -> Instant {
        self.0
    }

    /// Time left, zero once passed.
    pub fn remaining(self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    /// Whether the deadline has passed.
    pub fn expired(self) -> bool {
        Instant::now() >= self.0
    }

    /// Milliseconds left, rounded up so a live call never reads as zero.
    pub fn remaining_ms(self) -> u64 {
        let left = self.remaining();
        let ms = left.as_millis();
        let rounded = if left > Duration::from_millis(ms as u64) {
            ms + 1
        } else {
            ms
        };
        u64::try_from(rounded).unwrap_or(u64::MAX)
    }

    /// The deadline as unix epoch milliseconds (the `warren.deadline` header).
    pub fn to_epoch_ms(self) -> u64 {
        epoch_ms_now().saturating_add(self.remaining_ms())
    }

    /// A deadline from unix epoch milliseconds; one in the past is already expired.
    pub fn from_epoch_ms(epoch_ms: u64) -> Self {
        let left = epoch_ms.saturating_sub(epoch_ms_now());
        Self(Instant::now() + Duration::from_millis(left))
    }
}

/// Now, as unix epoch milliseconds.
pub(crate) fn epoch_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_epoch_ms() {
        let d = Deadline::after(Duration::from_secs(5));
        let back = Deadline::from_epoch_ms(d.to_epoch_ms());
        let diff = if back > d {
            back.instant() - d.instant()
        } else {
            d.instant() - back.instant()
        };
        assert!(diff <= Duration::from_millis(5), "{diff:?}");
        assert!(!d.expired());
        assert!((4_990..=5_000).contains(&d.remaining_ms()));
    }

    #[test]
    fn past_deadlines_are_expired() {
        let d = Deadline::from_epoch_ms(epoch_ms_now().saturating_sub(1_000));
        assert!(d.expired());
        assert_eq!(d.remaining_ms(), 0);
        assert!(Deadline::from_epoch_ms(0).expired());
    }
}
