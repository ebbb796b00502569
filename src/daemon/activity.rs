//! One info line a minute while the worker works, none while it idles: at the default level
//! the log otherwise says nothing between start and stop, and an operator (or a newcomer
//! publishing the sample events) cannot tell a working worker from a deaf one. The heartbeat
//! carries the same counters for machines; this is the line for people.

use std::time::{Duration, Instant};

use crate::counters::Counters;

/// How often at most the line is written.
pub const EVERY: Duration = Duration::from_secs(60);

/// The counters the line reports, at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Totals {
    messages: u64,
    events: u64,
    tags: u64,
    new_rows: u64,
    malformed: u64,
}

impl Totals {
    fn of(counters: &Counters) -> Totals {
        Totals {
            messages: Counters::get(&counters.processed),
            events: Counters::get(&counters.events),
            tags: Counters::get(&counters.tags),
            new_rows: Counters::get(&counters.tags_inserted),
            malformed: Counters::get(&counters.malformed),
        }
    }
}

/// What was reported last, and when.
#[derive(Debug)]
pub struct Activity {
    since: Instant,
    last: Totals,
}

impl Activity {
    pub fn new(counters: &Counters, now: Instant) -> Activity {
        Activity {
            since: now,
            last: Totals::of(counters),
        }
    }

    /// The line to log when [`EVERY`] has passed since the last one and messages came in the
    /// meantime; `None` otherwise (the next line then covers the whole spell).
    pub fn due(&mut self, counters: &Counters, now: Instant) -> Option<String> {
        let elapsed = now.duration_since(self.since);
        if elapsed < EVERY {
            return None;
        }
        let totals = Totals::of(counters);
        let last = std::mem::replace(&mut self.last, totals);
        self.since = now;
        if totals.messages == last.messages && totals.malformed == last.malformed {
            return None;
        }
        let messages = totals.messages - last.messages;
        Some(format!(
            "in the last {} s: {messages} messages ({} events), {} tags, {} new rows, {} malformed; {:.1} messages/s",
            elapsed.as_secs(),
            totals.events - last.events,
            totals.tags - last.tags,
            totals.new_rows - last.new_rows,
            totals.malformed - last.malformed,
            messages as f64 / elapsed.as_secs_f64(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::Mode;

    #[test]
    fn a_line_a_minute_while_messages_come_and_none_while_idle() {
        let counters = Counters::new(Mode::Core);
        let start = Instant::now();
        let mut activity = Activity::new(&counters, start);
        Counters::add(&counters.processed, 120);
        Counters::add(&counters.events, 300);
        Counters::add(&counters.tags, 50);
        Counters::add(&counters.tags_inserted, 40);
        Counters::bump(&counters.malformed);
        // Not before a minute is up.
        assert_eq!(activity.due(&counters, start + EVERY / 2), None);
        let line = activity.due(&counters, start + EVERY).unwrap();
        assert_eq!(
            line,
            "in the last 60 s: 120 messages (300 events), 50 tags, 40 new rows, 1 malformed; 2.0 messages/s"
        );
        // Idle: nothing, however long.
        assert_eq!(activity.due(&counters, start + EVERY * 2), None);
        assert_eq!(activity.due(&counters, start + EVERY * 30), None);
        // Work again: the line covers what came since the last look.
        Counters::add(&counters.processed, 6);
        let line = activity.due(&counters, start + EVERY * 31).unwrap();
        assert!(line.starts_with("in the last 60 s: 6 messages"), "{line}");
    }
}
