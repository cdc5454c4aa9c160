//! [`RetrySchedule`]: how often, and how long after, a subscription's failed event is tried
//! again before it is dead-lettered (docs/architecture.md §6).

use std::time::Duration;

/// The longest delay a schedule keeps: the broker holds a delayed event in a queue with that
/// message TTL, and a retry a day away is a dead letter in all but name.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(24 * 60 * 60);

/// The delays before each retry of a failed event handler: `[1 s, 10 s, 60 s]` runs the
/// handler up to four times, the second attempt a second after the first failed, and so on;
/// after the last failure the event is dead-lettered.
///
/// The default is one retry at once (two attempts), as nameko users expect of a failed
/// handler that a redelivery may fix. Delays are whole milliseconds, at most
/// [`MAX_RETRY_DELAY`]; a zero delay retries at once.
///
/// ```
/// use mesh::{RetrySchedule, Subscription};
/// use std::time::Duration;
///
/// let schedule = RetrySchedule::after([1, 10, 60].map(Duration::from_secs));
/// assert_eq!(schedule.attempts(), 4);
/// let subscription = Subscription::new("library", "book_added").retry(schedule);
/// assert_eq!(subscription.retry.delay_after(1), Some(Duration::from_secs(1)));
/// assert_eq!(subscription.retry.delay_after(4), None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule {
    delays: Vec<Duration>,
}

impl Default for RetrySchedule {
    fn default() -> Self {
        Self::after([Duration::ZERO])
    }
}

impl RetrySchedule {
    /// A retry after each of `delays`, in order (rounded down to whole milliseconds, capped at
    /// [`MAX_RETRY_DELAY`]).
    pub fn after(delays: impl IntoIterator<Item = Duration>) -> Self {
        let delays = delays
            .into_iter()
            .map(|delay| {
                let capped = delay.min(MAX_RETRY_DELAY);
                Duration::from_millis(u64::try_from(capped.as_millis()).unwrap_or(u64::MAX))
            })
            .collect();
        Self { delays }
    }

    /// No retry: a failed event is dead-lettered at once.
    pub fn never() -> Self {
        Self { delays: Vec::new() }
    }

    /// The delays before each retry.
    pub fn delays(&self) -> &[Duration] {
        &self.delays
    }

    /// How many times the handler may run for one event: the first attempt and each retry.
    pub fn attempts(&self) -> u32 {
        u32::try_from(self.delays.len())
            .unwrap_or(u32::MAX)
            .saturating_add(1)
    }

    /// How long to wait before trying again after attempt `attempt` (1 for the first) failed;
    /// `None` when that was the last one.
    pub fn delay_after(&self, attempt: u32) -> Option<Duration> {
        let index = usize::try_from(attempt.checked_sub(1)?).ok()?;
        self.delays.get(index).copied()
    }

    /// The distinct non-zero delays, in milliseconds, ascending: one retry queue each on AMQP.
    pub fn delayed_millis(&self) -> Vec<u64> {
        let mut millis: Vec<u64> = self
            .delays
            .iter()
            .filter(|d| !d.is_zero())
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .collect();
        millis.sort_unstable();
        millis.dedup();
        millis
    }
}

/// The queue holding `queue`'s events waiting `delay_ms` for their retry:
/// `<queue>.retry.<delay_ms>`.
pub fn retry_queue(queue: &str, delay_ms: u64) -> String {
    format!("{queue}.retry.{delay_ms}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_retries_once_at_once() {
        let schedule = RetrySchedule::default();
        assert_eq!(schedule.attempts(), 2);
        assert_eq!(schedule.delay_after(1), Some(Duration::ZERO));
        assert_eq!(schedule.delay_after(2), None);
        assert_eq!(schedule.delay_after(0), None);
        assert!(schedule.delayed_millis().is_empty());
    }

    #[test]
    fn delays_are_whole_capped_milliseconds_and_queues_distinct() {
        let schedule = RetrySchedule::after([
            Duration::from_micros(1_500),
            Duration::from_secs(10),
            Duration::ZERO,
            Duration::from_secs(10),
            Duration::from_secs(10 * 24 * 3600),
        ]);
        assert_eq!(schedule.delays()[0], Duration::from_millis(1));
        assert_eq!(schedule.delays()[4], MAX_RETRY_DELAY);
        assert_eq!(schedule.attempts(), 6);
        assert_eq!(schedule.delayed_millis(), vec![1, 10_000, 86_400_000]);
        assert_eq!(RetrySchedule::never().attempts(), 1);
        assert_eq!(retry_queue("q", 200), "q.retry.200");
    }
}
