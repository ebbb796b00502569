//! The relay's counters, shared by its threads and reported in its heartbeat.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use serde_json::{Map, Value, json};

/// Kinds of refused input, each counted and logged once (the first time it is seen).
pub const REFUSAL_KINDS: [&str; 5] = [
    "oversized",
    "not_ascii",
    "bad_header",
    "truncated",
    "not_json",
];

#[derive(Debug)]
pub struct BridgeCounters {
    started: Instant,
    /// Publishing into JetStream (asked for, or the stream was there).
    pub durable: AtomicBool,
    /// Events DECNET's broker delivered to the bridge.
    pub from_decnet: AtomicU64,
    /// Of those, events NATS (or JetStream, with its acknowledgement) took.
    pub to_nats: AtomicU64,
    /// Events from DECNET dropped oldest-first because the NATS side could not keep up or was
    /// down and the queue was full.
    pub dropped_to_nats: AtomicU64,
    /// JetStream publishes that failed and were tried again.
    pub nats_retries: AtomicU64,
    /// Messages taken from NATS for DECNET's bus.
    pub from_nats: AtomicU64,
    /// Of those, messages written to DECNET's broker.
    pub to_decnet: AtomicU64,
    /// Messages from NATS dropped oldest-first while DECNET's broker was away.
    pub dropped_to_decnet: AtomicU64,
    /// Messages from NATS DECNET's broker would refuse (not a JSON object, too large, a
    /// subject that is not ASCII): not sent, so that the connection is not dropped for them.
    pub unrelayable: AtomicU64,
    /// Connections to DECNET's broker made after the first.
    pub decnet_reconnects: AtomicU64,
    /// Reconnections of the NATS client.
    pub nats_reconnects: AtomicU64,
    /// Refused frames from DECNET's side, by [`REFUSAL_KINDS`].
    refused: [AtomicU64; REFUSAL_KINDS.len()],
    refused_logged: [AtomicBool; REFUSAL_KINDS.len()],
}

impl BridgeCounters {
    pub fn new(durable: bool) -> BridgeCounters {
        BridgeCounters {
            started: Instant::now(),
            durable: AtomicBool::new(durable),
            from_decnet: AtomicU64::new(0),
            to_nats: AtomicU64::new(0),
            dropped_to_nats: AtomicU64::new(0),
            nats_retries: AtomicU64::new(0),
            from_nats: AtomicU64::new(0),
            to_decnet: AtomicU64::new(0),
            dropped_to_decnet: AtomicU64::new(0),
            unrelayable: AtomicU64::new(0),
            decnet_reconnects: AtomicU64::new(0),
            nats_reconnects: AtomicU64::new(0),
            refused: Default::default(),
            refused_logged: Default::default(),
        }
    }

    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts a refused input of `kind`; true the first time that kind is seen, when the
    /// caller logs it (a hostile peer must not be able to flood the log).
    pub fn refuse(&self, kind: &str) -> bool {
        let Some(at) = REFUSAL_KINDS.iter().position(|k| *k == kind) else {
            return false;
        };
        self.refused[at].fetch_add(1, Ordering::Relaxed);
        !self.refused_logged[at].swap(true, Ordering::Relaxed)
    }

    /// The heartbeat's counters, plus the queues' depths the caller adds.
    pub fn to_health_members(&self) -> Map<String, Value> {
        let load = |c: &AtomicU64| json!(c.load(Ordering::Relaxed));
        let mut out = Map::new();
        out.insert(
            "mode".into(),
            json!(if self.durable.load(Ordering::Relaxed) {
                "durable"
            } else {
                "core"
            }),
        );
        out.insert(
            "uptime_sec".into(),
            json!((self.started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0),
        );
        for (name, counter) in [
            ("from_decnet", &self.from_decnet),
            ("to_nats", &self.to_nats),
            ("dropped_to_nats", &self.dropped_to_nats),
            ("nats_retries", &self.nats_retries),
            ("from_nats", &self.from_nats),
            ("to_decnet", &self.to_decnet),
            ("dropped_to_decnet", &self.dropped_to_decnet),
            ("unrelayable", &self.unrelayable),
            ("decnet_reconnects", &self.decnet_reconnects),
            ("nats_reconnects", &self.nats_reconnects),
        ] {
            out.insert(name.into(), load(counter));
        }
        let refused: Map<String, Value> = REFUSAL_KINDS
            .iter()
            .zip(&self.refused)
            .map(|(kind, n)| ((*kind).to_owned(), load(n)))
            .collect();
        out.insert("refused".into(), Value::Object(refused));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_kind_is_reported_for_logging_once_and_counted_always() {
        let counters = BridgeCounters::new(false);
        assert!(counters.refuse("truncated"));
        assert!(!counters.refuse("truncated"));
        assert!(counters.refuse("oversized"));
        let members = counters.to_health_members();
        assert_eq!(members["refused"]["truncated"], 2);
        assert_eq!(members["refused"]["not_json"], 0);
        assert_eq!(members["mode"], "core");
    }
}
