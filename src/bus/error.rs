//! Why a connection attempt failed; the main loop logs it and tries again on the next tick.

use std::io;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("cannot reach NATS at {urls}: {source}")]
    Connect { urls: String, source: io::Error },
    #[error("no answer from NATS at {urls} within {timeout:?}")]
    ConnectTimedOut { urls: String, timeout: Duration },
    #[error("JetStream: cannot {what}: {source}")]
    JetStream { what: String, source: io::Error },
    #[error("cannot subscribe to {subject}: {source}")]
    Subscribe { subject: String, source: io::Error },
    #[error("cannot start a thread: {0}")]
    Spawn(io::Error),
}
