//! Publishing envelopes: encode exactly, send, count failures, never fail the caller's work.

use std::sync::Arc;

use crate::counters::Counters;
use crate::envelope::Envelope;

#[derive(Clone)]
pub struct Publisher {
    connection: nats::Connection,
    counters: Arc<Counters>,
}

impl Publisher {
    pub fn new(connection: nats::Connection, counters: Arc<Counters>) -> Publisher {
        Publisher {
            connection,
            counters,
        }
    }

    /// Publishes `envelope` on `subject`. A failure is logged and counted and reported as
    /// `false`: by the time we publish, the work is done and must not be undone (bus.md §5.8).
    pub fn publish(&self, subject: &str, envelope: &Envelope) -> bool {
        match envelope.encode(subject) {
            Ok(bytes) => self.publish_bytes(subject, bytes),
            Err(err) => self.failed(err.to_string()),
        }
    }

    /// Publishes bytes already encoded.
    pub fn publish_bytes(&self, subject: &str, bytes: Vec<u8>) -> bool {
        match self.connection.publish(subject, bytes) {
            Ok(()) => true,
            Err(err) => self.failed(format!("publishing on {subject} failed: {err}")),
        }
    }

    fn failed(&self, reason: String) -> bool {
        Counters::bump(&self.counters.publish_errors);
        log::warn!("{reason}");
        false
    }
}
