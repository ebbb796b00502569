//! One backoff for everything in the bridge that is tried again: connections to either side
//! and publishes.

use std::time::Duration;

use crossbeam_channel::{Receiver, select};

/// Pauses between attempts of anything that failed (a connection to either side, a publish):
/// doubling up to the last.
const RETRY: [Duration; 5] = [
    Duration::from_millis(100),
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
];

/// Waits the pause after `failures` failed attempts (1 or more); false when `stop` closed
/// meanwhile.
pub fn pause(failures: usize, stop: &Receiver<()>) -> bool {
    let pause = RETRY[failures.saturating_sub(1).min(RETRY.len() - 1)];
    select! {
        recv(stop) -> _ => false,
        default(pause) => true,
    }
}
