//! Opening the NATS connection, with the guards the sync client lacks.

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use crossbeam_channel::bounded;

use super::BusError;
use crate::counters::Counters;
use crate::redact::redact_url;
use crate::topics::WORKER_NAME;

/// What the bus needs from the configuration.
#[derive(Debug, Clone)]
pub struct BusSettings {
    pub urls: Vec<String>,
    pub enabled: bool,
    pub heartbeat_interval: Duration,
    /// How long one connection attempt may take before we call the bus unavailable.
    pub connect_timeout: Duration,
    /// Consume `TOPICS` through JetStream instead of core subscriptions.
    pub durable: bool,
    pub stream: crate::config::StreamConfig,
}

/// Longest pause between two reconnect attempts after the server went away.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(2);

/// Connects once, bounded by `settings.connect_timeout`.
///
/// The client's `connect` has no handshake timeout: a peer that accepts TCP but never speaks
/// NATS would block it forever (nats.md pitfall 1). So the attempt runs on its own thread and
/// we stop waiting at the deadline; that thread ends whenever the peer gives up.
///
/// `closing` is set by whoever closes the connection on purpose, so that the disconnect it
/// causes is not reported as a lost connection.
pub fn open(
    settings: &BusSettings,
    counters: &Arc<Counters>,
    closing: &Arc<AtomicBool>,
) -> Result<nats::Connection, BusError> {
    let urls = settings.urls.join(",");
    let shown = redact_url(&urls);
    let options = options(counters, closing);
    let (result_tx, result_rx) = bounded(1);
    let attempt_urls = urls.clone();
    thread::Builder::new()
        .name("nats-connect".into())
        .spawn(move || {
            // If we stopped waiting, the send fails and the late connection is dropped here.
            let _ = result_tx.send(options.connect(attempt_urls.as_str()));
        })
        .map_err(BusError::Spawn)?;
    match result_rx.recv_timeout(settings.connect_timeout) {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(source)) => Err(BusError::Connect {
            urls: shown,
            source,
        }),
        Err(_) => Err(BusError::ConnectTimedOut {
            urls: shown,
            timeout: settings.connect_timeout,
        }),
    }
}

fn options(counters: &Arc<Counters>, closing: &Arc<AtomicBool>) -> nats::Options {
    let reconnect_counters = counters.clone();
    let closing = closing.clone();
    nats::Options::new()
        .with_name(WORKER_NAME)
        .no_echo()
        // The first connect is tried once (our poll-only loop retries it); after that the
        // client itself retries for as long as it takes (nats.md pitfalls 2 and 3).
        .max_reconnects(None)
        .reconnect_delay_callback(reconnect_delay)
        .disconnect_callback(move || {
            if !closing.load(Ordering::SeqCst) {
                log::warn!("lost the connection to NATS; reconnecting");
            }
        })
        .reconnect_callback(move || {
            Counters::bump(&reconnect_counters.reconnects);
            log::info!("reconnected to NATS");
        })
        // The default callback prints with eprintln!; route it through the logger.
        .error_callback(|err| log::warn!("NATS client: {err}"))
        .close_callback(|| log::debug!("NATS connection closed by the client"))
}

/// No pause before the first try of a server, then 100 ms doubling up to 2 s, plus up to
/// 250 ms of jitter so a fleet of appliances does not reconnect in lockstep.
fn reconnect_delay(attempt: usize) -> Duration {
    if attempt == 0 {
        return Duration::ZERO;
    }
    let doublings = (attempt - 1).min(5) as u32;
    let base = Duration::from_millis(100 * 2u64.pow(doublings)).min(MAX_RECONNECT_DELAY);
    let jitter_ms = RandomState::new().hash_one(attempt) % 250;
    base + Duration::from_millis(jitter_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_delay_starts_at_zero_and_stays_bounded() {
        assert_eq!(reconnect_delay(0), Duration::ZERO);
        for attempt in 1..100 {
            let delay = reconnect_delay(attempt);
            assert!(delay >= Duration::from_millis(100), "{attempt}: {delay:?}");
            assert!(delay < MAX_RECONNECT_DELAY + Duration::from_millis(250));
        }
    }
}
