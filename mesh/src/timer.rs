//! Timers: a handler run on a schedule (nameko's `@timer`), on either transport, in every
//! instance of a service or, with [`Timer::once_per_service`], in one instance at a time.
//!
//! The schedule is fixed-rate: ticks come every interval from the start, whatever a run takes.
//! A tick that comes while the last run still runs is skipped and counted, never queued, so a
//! slow run cannot pile up work. With [`Timer::eager`] the first tick comes at once, as the
//! service starts (after its consumers are attached), instead of one interval later. A stopping
//! service stops ticking and waits for a run in progress within its grace period.
//!
//! A once-per-service timer ticks in every instance, but only the instance holding the timer's
//! lease runs the handler (docs/architecture.md §10): at each tick an instance takes the lease
//! if it is free, or keeps it if it holds it already. On AMQP the lease is an exclusive queue,
//! held for as long as its holder's connection lives.

use std::time::Duration;

/// When a timer's handler runs.
///
/// ```
/// use mesh::Timer;
/// use std::time::Duration;
/// let every_minute = Timer::every("reconcile", Duration::from_secs(60)).eager();
/// assert_eq!(every_minute.name(), "reconcile");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    name: String,
    interval: Duration,
    eager: bool,
    once_per_service: bool,
}

impl Timer {
    /// A timer named `name` (its handler's method name in spans, metrics and logs) ticking every
    /// `interval` (at least a millisecond), the first tick one interval after the start.
    pub fn every(name: impl Into<String>, interval: Duration) -> Self {
        Self {
            name: name.into(),
            interval: interval.max(Duration::from_millis(1)),
            eager: false,
            once_per_service: false,
        }
    }

    /// The first tick comes as the service starts.
    pub fn eager(mut self) -> Self {
        self.eager = true;
        self
    }

    /// The handler runs in one instance of the service at a time, whichever holds the timer's
    /// lease, rather than in every instance. The other instances take over at their next tick
    /// once the holder stops or its connection to the broker goes away.
    ///
    /// ```
    /// use mesh::Timer;
    /// use std::time::Duration;
    /// let reconcile = Timer::every("reconcile", Duration::from_secs(600)).once_per_service();
    /// assert!(reconcile.is_once_per_service());
    /// ```
    pub fn once_per_service(mut self) -> Self {
        self.once_per_service = true;
        self
    }

    /// The timer's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The interval between ticks.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Whether the first tick comes as the service starts.
    pub fn is_eager(&self) -> bool {
        self.eager
    }

    /// Whether the handler runs in one instance of the service at a time.
    pub fn is_once_per_service(&self) -> bool {
        self.once_per_service
    }
}
