//! The heartbeat thread: `system.ttp.health` every interval, so DECNET's dashboard lists the
//! worker as alive, with live counters operators can read off the same message (docs/bus.md §5.1).

use std::io;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{Receiver, select, tick};
use serde_json::{Map, json};

use super::publish::Publisher;
use crate::counters::Counters;
use crate::envelope::{Envelope, now_epoch_secs};
use crate::topics::{HEALTH, WORKER_NAME};

/// Builds one beat: DECNET's `worker` and `ts`, then our counters.
pub fn health_envelope(counters: &Counters) -> Envelope {
    let mut payload = Map::new();
    payload.insert("worker".into(), json!(WORKER_NAME));
    payload.insert("ts".into(), json!(now_epoch_secs()));
    payload.extend(counters.to_health_members());
    Envelope::new("health", payload)
}

/// Starts the thread: one beat at once (the dashboard should not wait a whole interval to see
/// us), then one per `interval`, until `stop` closes.
pub fn spawn(
    publisher: Publisher,
    interval: Duration,
    counters: Arc<Counters>,
    stop: Receiver<()>,
) -> io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name("heartbeat".into())
        .spawn(move || {
            let ticker = tick(interval);
            loop {
                publisher.publish(HEALTH, &health_envelope(&counters));
                select! {
                    recv(ticker) -> _ => {}
                    recv(stop) -> _ => break,
                }
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::Mode;
    use serde_json::Value;

    fn counter(beat: &Map<String, Value>, name: &str) -> Option<u64> {
        beat.get(name).and_then(Value::as_u64)
    }

    #[test]
    fn a_beat_carries_worker_ts_and_counters() {
        let counters = Counters::new(Mode::Core);
        Counters::add(&counters.received, 5);
        let before = now_epoch_secs();
        let beat = health_envelope(&counters);
        assert_eq!(beat.kind, "health");
        let keys: Vec<&str> = beat.payload.keys().map(String::as_str).collect();
        assert_eq!(&keys[..2], ["worker", "ts"]);
        assert_eq!(beat.payload["worker"], "ttp");
        assert!(beat.payload["ts"].as_f64().unwrap() >= before);
        assert_eq!(counter(&beat.payload, "received"), Some(5));
        assert_eq!(beat.payload["mode"], "core");
        let bytes = beat.encode(HEALTH).unwrap();
        assert!(bytes.starts_with(br#"{"v":1,"id":""#));
    }
}
