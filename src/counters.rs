//! Live counters shared by every thread and reported in each heartbeat.
//!
//! Plain relaxed atomics: each counter is independent, readers only want a recent value, and
//! the subscription threads must never wait on a lock to count a message.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde_json::{Map, Value, json};

/// How the worker consumes the bus; reported in the heartbeat so operators can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Plain NATS subscriptions: at-most-once, like DECNET.
    Core,
    /// JetStream pull consumers: at-least-once.
    Durable,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Core => "core",
            Mode::Durable => "durable",
        }
    }
}

#[derive(Debug)]
pub struct Counters {
    started: Instant,
    mode: Mode,
    /// Messages taken off the bus, well-formed or not.
    pub received: AtomicU64,
    /// Messages dropped because their body was not an envelope.
    pub malformed: AtomicU64,
    /// Messages the main loop handled.
    pub processed: AtomicU64,
    /// Tagger events built from messages (a session gives one per command, plus its own).
    pub events: AtomicU64,
    /// Tags the engine produced at or above the confidence floor.
    pub tags: AtomicU64,
    /// Messages no tagger event could be built from (no anchor at all, or no source kind).
    pub untaggable: AtomicU64,
    /// Lifter failures: that lifter's tags for that event are lost, nothing else.
    pub lifter_warnings: AtomicU64,
    /// Tagger events that lost every tag because a rule's evidence broke the kind's schema
    /// (each problem is logged once per rule load; this counts every event).
    pub events_discarded: AtomicU64,
    /// Messages held for rows DECNET's database does not have yet (docs/decnet-db.md §8).
    pub held: AtomicU64,
    /// Held messages written to DECNET's database once their row appeared.
    pub released: AtomicU64,
    /// Tag rows the store really added (replays and redeliveries add none).
    pub tags_inserted: AtomicU64,
    /// Tags the store refused as malformed (logged one by one).
    pub tags_skipped: AtomicU64,
    /// Batches the store could not commit (each is held and retried, not lost).
    pub store_errors: AtomicU64,
    /// `ttp.tagged` announcements sent.
    pub tagged_published: AtomicU64,
    /// Messages the NATS client discarded because a subscription fell too far behind.
    pub client_dropped: AtomicU64,
    /// Our own publishes (heartbeats, announcements) that failed.
    pub publish_errors: AtomicU64,
    /// Times the client re-established a lost connection.
    pub reconnects: AtomicU64,
    /// Durable-mode acknowledgements that could not be sent (the message comes back).
    pub ack_errors: AtomicU64,
    /// Messages over the limits on one message: work or id length (`tagging/budget.rs`).
    pub over_budget: AtomicU64,
    /// Session commands past the budget, not tagged.
    pub cut_commands: AtomicU64,
    /// Events not tagged because their message's text or tag budget was spent.
    pub cut_events: AtomicU64,
    /// Tags dropped at a message's tag budget.
    pub cut_tags: AtomicU64,
}

impl Counters {
    pub fn new(mode: Mode) -> Counters {
        Counters {
            started: Instant::now(),
            mode,
            received: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
            processed: AtomicU64::new(0),
            events: AtomicU64::new(0),
            tags: AtomicU64::new(0),
            untaggable: AtomicU64::new(0),
            lifter_warnings: AtomicU64::new(0),
            events_discarded: AtomicU64::new(0),
            held: AtomicU64::new(0),
            released: AtomicU64::new(0),
            tags_inserted: AtomicU64::new(0),
            tags_skipped: AtomicU64::new(0),
            store_errors: AtomicU64::new(0),
            tagged_published: AtomicU64::new(0),
            client_dropped: AtomicU64::new(0),
            publish_errors: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            ack_errors: AtomicU64::new(0),
            over_budget: AtomicU64::new(0),
            cut_commands: AtomicU64::new(0),
            cut_events: AtomicU64::new(0),
            cut_tags: AtomicU64::new(0),
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Adds one to a counter; a helper so call sites read as intent, not atomics.
    pub fn bump(counter: &AtomicU64) {
        Counters::add(counter, 1);
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// The heartbeat's extra members (docs/bus.md §5.1), in a stable order.
    pub fn to_health_members(&self) -> Map<String, Value> {
        let mut members = Map::new();
        members.insert(
            "uptime_sec".into(),
            json!(round_millis(self.started.elapsed().as_secs_f64())),
        );
        members.insert("mode".into(), json!(self.mode.as_str()));
        for (name, counter) in [
            ("received", &self.received),
            ("malformed", &self.malformed),
            ("processed", &self.processed),
            ("events", &self.events),
            ("tags", &self.tags),
            ("untaggable", &self.untaggable),
            ("lifter_warnings", &self.lifter_warnings),
            ("events_discarded", &self.events_discarded),
            ("tags_inserted", &self.tags_inserted),
            ("held", &self.held),
            ("released", &self.released),
            ("tags_skipped", &self.tags_skipped),
            ("store_errors", &self.store_errors),
            ("tagged_published", &self.tagged_published),
            ("client_dropped", &self.client_dropped),
            ("publish_errors", &self.publish_errors),
            ("reconnects", &self.reconnects),
            ("ack_errors", &self.ack_errors),
            ("over_budget", &self.over_budget),
            ("cut_commands", &self.cut_commands),
            ("cut_events", &self.cut_events),
            ("cut_tags", &self.cut_tags),
        ] {
            members.insert(name.into(), json!(Counters::get(counter)));
        }
        members
    }
}

/// Keeps heartbeat payloads short: milliseconds are all anyone reads from an uptime.
fn round_millis(secs: f64) -> f64 {
    (secs * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_members_report_every_counter() {
        let counters = Counters::new(Mode::Core);
        Counters::bump(&counters.received);
        Counters::add(&counters.malformed, 2);
        let members = counters.to_health_members();
        assert_eq!(members["mode"], "core");
        assert_eq!(members["received"], 1);
        assert_eq!(members["malformed"], 2);
        assert_eq!(members["reconnects"], 0);
        assert_eq!(members["events_discarded"], 0);
        assert!(members["uptime_sec"].as_f64().unwrap() >= 0.0);
    }
}
