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
        let sent = envelope
            .encode(subject)
            .map_err(|err| err.to_string())
            .and_then(|bytes| {
                self.connection
                    .publish(subject, bytes)
                    .map_err(|err| format!("publishing on {subject} failed: {err}"))
            });
        match sent {
            Ok(()) => true,
            Err(reason) => {
                Counters::bump(&self.counters.publish_errors);
                log::warn!("{reason}");
                false
            }
        }
    }
}
