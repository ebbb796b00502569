//! Publishing envelopes: encode exactly, send, count failures, never fail the caller's work.

use std::io;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, bounded};

use crate::counters::Counters;
use crate::envelope::Envelope;

/// Bound on one flush's socket write; the wait for the server's answer has none while the
/// server is away (docs/nats.md pitfall 5), which is why flushing happens on its own thread.
const FLUSH_WRITE_TIMEOUT: Duration = Duration::from_millis(500);

#[derive(Clone)]
pub struct Publisher {
    connection: nats::Connection,
    counters: Arc<Counters>,
    flush_soon: Sender<()>,
}

impl Publisher {
    /// A publisher and the thread that pushes its messages out at once (see [`spawn_flusher`]).
    pub fn new(
        connection: nats::Connection,
        counters: Arc<Counters>,
    ) -> io::Result<(Publisher, JoinHandle<()>)> {
        let (flush_soon, flush_wanted) = bounded(1);
        let flusher = spawn_flusher(connection.clone(), flush_wanted)?;
        let publisher = Publisher {
            connection,
            counters,
            flush_soon,
        };
        Ok((publisher, flusher))
    }

    /// Publishes `envelope` on `subject`. A failure is logged and counted and reported as
    /// `false`: by the time we publish, the work is done and must not be undone (docs/bus.md §5.8).
    pub fn publish(&self, subject: &str, envelope: &Envelope) -> bool {
        match envelope.encode(subject) {
            Ok(bytes) => self.publish_bytes(subject, bytes),
            Err(err) => self.failed(err.to_string()),
        }
    }

    /// Publishes bytes already encoded.
    pub fn publish_bytes(&self, subject: &str, bytes: Vec<u8>) -> bool {
        match self.connection.publish(subject, bytes) {
            Ok(()) => {
                // Full means a flush is already due; it will carry this message too.
                let _ = self.flush_soon.try_send(());
                true
            }
            Err(err) => self.failed(format!("publishing on {subject} failed: {err}")),
        }
    }

    fn failed(&self, reason: String) -> bool {
        Counters::bump(&self.counters.publish_errors);
        log::warn!("{reason}");
        false
    }
}

/// The client writes buffered messages out at most every 5 ms on its own; under light traffic
/// that is most of a `ttp.tagged`'s latency. This thread flushes as soon as something was
/// published, coalescing bursts, and ends when every [`Publisher`] clone is gone.
fn spawn_flusher(
    connection: nats::Connection,
    flush_wanted: Receiver<()>,
) -> io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name("nats-flush".into())
        .spawn(move || {
            while flush_wanted.recv().is_ok() {
                if let Err(err) = connection.flush_timeout(FLUSH_WRITE_TIMEOUT) {
                    log::debug!("flush: {err}");
                }
            }
        })
}
