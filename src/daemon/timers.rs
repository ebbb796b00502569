//! The main loop's two one-shot deadlines: settling after a burst, and retrying a held batch.
//!
//! Both are timestamps turned into `crossbeam_channel::at` receivers each time the loop
//! selects, so they cost nothing while unset and never fire late because of a tick.

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, at, never};

/// How long the message channel must stay quiet after work before the handler is told to
/// settle.
pub const SETTLE_AFTER: Duration = Duration::from_secs(2);

/// How soon a held batch is first tried again; each failure doubles the wait, up to
/// [`RETRY_MAX`]. Ticks retry too, but the poll interval (60 s by default) is too long to leave
/// a batch waiting after a brief failure: meanwhile no new work is taken, and in core mode the
/// client's queues overflow and drop.
pub const RETRY_FIRST: Duration = Duration::from_secs(1);
pub const RETRY_MAX: Duration = Duration::from_secs(30);

pub struct Timers {
    settle_after: Duration,
    /// When the handler settles unless more work comes first: set by each batch (and reload),
    /// cleared by settling. Ticks leave it alone, so a poll interval shorter than
    /// `settle_after` cannot put settling off for ever.
    settle_at: Option<Instant>,
    retry_first: Duration,
    retry_max: Duration,
    /// The wait after the next failure.
    retry_delay: Duration,
    retry_at: Option<Instant>,
}

impl Default for Timers {
    fn default() -> Timers {
        Timers::new(SETTLE_AFTER, RETRY_FIRST, RETRY_MAX)
    }
}

impl Timers {
    pub fn new(settle_after: Duration, retry_first: Duration, retry_max: Duration) -> Timers {
        Timers {
            settle_after,
            settle_at: None,
            retry_first,
            retry_max,
            retry_delay: retry_first,
            retry_at: None,
        }
    }

    /// Work was done: settle once nothing more has come for `settle_after`.
    pub fn worked(&mut self) {
        self.settle_at = Some(Instant::now() + self.settle_after);
    }

    pub fn settled(&mut self) {
        self.settle_at = None;
    }

    /// A batch went through: the next failure starts the backoff afresh.
    pub fn succeeded(&mut self) {
        self.worked();
        self.retry_at = None;
        self.retry_delay = self.retry_first;
    }

    /// A batch failed: schedules its retry and returns how long that is away.
    pub fn failed(&mut self) -> Duration {
        let wait = self.retry_delay;
        self.retry_at = Some(Instant::now() + wait);
        self.retry_delay = (wait * 2).min(self.retry_max);
        wait
    }

    /// The settle and retry receivers for one `select!`. While a batch is held only the retry
    /// can fire: a held batch is unfinished work, so there is nothing to settle yet.
    pub fn deadlines(&self, holding: bool) -> (Receiver<Instant>, Receiver<Instant>) {
        match (holding, self.settle_at, self.retry_at) {
            (false, Some(when), _) => (at(when), never()),
            (true, _, Some(when)) => (never(), at(when)),
            _ => (never(), never()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_and_start_afresh_after_a_success() {
        let mut timers = Timers::new(SETTLE_AFTER, Duration::from_secs(1), Duration::from_secs(5));
        let waits: Vec<u64> = (0..5).map(|_| timers.failed().as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 5, 5]);
        timers.succeeded();
        assert_eq!(timers.failed(), Duration::from_secs(1));
    }

    #[test]
    fn only_the_retry_can_fire_while_holding() {
        let mut timers = Timers::new(Duration::ZERO, Duration::ZERO, Duration::ZERO);
        timers.worked();
        timers.failed();
        let (settle, retry) = timers.deadlines(true);
        assert!(retry.recv_timeout(Duration::from_secs(1)).is_ok());
        assert!(settle.try_recv().is_err());
        let (settle, _) = timers.deadlines(false);
        assert!(settle.recv_timeout(Duration::from_secs(1)).is_ok());
        timers.settled();
        let (settle, retry) = timers.deadlines(false);
        assert!(settle.recv_timeout(Duration::from_millis(20)).is_err());
        assert!(retry.try_recv().is_err());
    }
}
