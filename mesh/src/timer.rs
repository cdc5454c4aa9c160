//! Timers: a handler run on a schedule in every instance of a service (nameko's `@timer`), on
//! either transport.
//!
//! The schedule is fixed-rate: ticks come every interval from the start, whatever a run takes.
//! A tick that comes while the last run still runs is skipped and counted, never queued, so a
//! slow run cannot pile up work. With [`Timer::eager`] the first tick comes at once, as the
//! service starts (after its consumers are attached), instead of one interval later. A stopping
//! service stops ticking and waits for a run in progress within its grace period.

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
}

impl Timer {
    /// A timer named `name` (its handler's method name in spans, metrics and logs) ticking every
    /// `interval` (at least a millisecond), the first tick one interval after the start.
    pub fn every(name: impl Into<String>, interval: Duration) -> Self {
        Self {
            name: name.into(),
            interval: interval.max(Duration::from_millis(1)),
            eager: false,
        }
    }

    /// The first tick comes as the service starts.
    pub fn eager(mut self) -> Self {
        self.eager = true;
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
}
