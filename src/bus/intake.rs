//! Subscription threads: one per pattern, each moving messages from the client onto the main
//! loop's message channel.
//!
//! A core subscription has no flow control: what the worker does not take, the NATS client
//! queues, counted in messages only (docs/nats.md pitfall 6), so a flood of large bodies would
//! be bounded by nothing but `max_payload` × the count. So each thread empties the client's
//! queue as fast as it fills, into a hold of its own that [`MAX_HELD_BYTES`] bounds over the
//! whole process, and drops (and counts) what arrives when the hold is full. Messages leave
//! the hold, decoded, as the message channel has room ([`Permit`]).

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError, after, never, select, tick};

use crate::channels::{ByteBound, Delivery, Permit, ROOM_POLL};
use crate::counters::Counters;
use crate::envelope::{Envelope, Inbound};
use crate::logging::{Throttle, clip};

/// How many messages the client may hold for one subscription. The subscription thread
/// empties the client's queue continuously, so this is a backstop for a thread starved of
/// CPU, not the bound that normally holds ([`MAX_HELD_BYTES`] is).
pub const CLIENT_QUEUE_LIMIT: usize = 8192;

/// The most message bytes (as on the wire) the subscription threads hold, all together,
/// while the main loop is behind. Beyond it a new message is dropped and counted.
pub const MAX_HELD_BYTES: usize = 32 << 20;

/// The bytes now held by every subscription thread.
static HELD: ByteBound = ByteBound::new(MAX_HELD_BYTES);

/// Malformed messages are logged at most once per period, over every subscription.
static MALFORMED_WARNINGS: Throttle = Throttle::new(Duration::from_secs(10));

/// How often a forwarder reports what it and the client dropped.
const DROP_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// Starts the thread that forwards `subscription` to `messages` until `stop` closes.
pub fn spawn_forwarder(
    pattern: &'static str,
    subscription: nats::Subscription,
    messages: Sender<Delivery>,
    stop: Receiver<()>,
    counters: Arc<Counters>,
) -> io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name(format!("sub {pattern}"))
        .spawn(move || {
            let mut forwarder = Forwarder {
                pattern,
                held: Hold::default(),
                next: None,
                client_drops_reported: 0,
                last_report: None,
                counters,
            };
            forwarder.run(&subscription, &messages, &stop);
            forwarder.report_drops(&subscription);
            if let Err(err) = subscription.unsubscribe() {
                log::debug!("unsubscribing from {pattern}: {err}");
            }
        })
}

struct Forwarder {
    pattern: &'static str,
    held: Hold,
    /// The oldest held message, decoded, waiting for room on the message channel.
    next: Option<Inbound>,
    client_drops_reported: usize,
    /// When drops were last reported: the first is reported at once, later ones every
    /// [`DROP_CHECK_INTERVAL`] at most.
    last_report: Option<Instant>,
    counters: Arc<Counters>,
}

impl Forwarder {
    fn run(
        &mut self,
        subscription: &nats::Subscription,
        messages: &Sender<Delivery>,
        stop: &Receiver<()>,
    ) {
        let drop_check = tick(DROP_CHECK_INTERVAL);
        loop {
            if !self.forward(subscription, messages) {
                return;
            }
            if self.held.dropped > 0 {
                self.report_drops_when_due(subscription);
            }
            // Behind: look again for room soon. Caught up: wait for the client alone.
            let retry = if self.next.is_some() || !self.held.is_empty() {
                after(ROOM_POLL)
            } else {
                never()
            };
            select! {
                recv(subscription.receiver()) -> message => match message {
                    Ok(message) => self.held.push(message, &self.counters),
                    Err(_) => return,
                },
                recv(retry) -> _ => {}
                recv(drop_check) -> _ => self.report_drops_when_due(subscription),
                recv(stop) -> _ => return,
            }
        }
    }

    /// Empties the client's queue into the hold and moves held messages to the main loop
    /// while there is room; `false` once the main loop is gone.
    fn forward(&mut self, subscription: &nats::Subscription, messages: &Sender<Delivery>) -> bool {
        loop {
            while let Ok(message) = subscription.receiver().try_recv() {
                self.held.push(message, &self.counters);
            }
            let inbound = match self.next.take() {
                Some(inbound) => inbound,
                None => {
                    let Some(message) = self.held.pop() else {
                        return true;
                    };
                    // A malformed one is counted and gone; on to the next.
                    let Some(inbound) = decode(&message, &self.counters) else {
                        continue;
                    };
                    inbound
                }
            };
            let Some(permit) = Permit::try_take(inbound.bytes) else {
                self.next = Some(inbound);
                return true;
            };
            let delivery = Delivery {
                permit: Some(permit),
                ..Delivery::unacked(inbound)
            };
            match messages.try_send(delivery) {
                Ok(()) => {}
                Err(TrySendError::Full(delivery)) => {
                    self.next = Some(delivery.message);
                    return true;
                }
                Err(TrySendError::Disconnected(_)) => return false,
            }
        }
    }

    /// [`Forwarder::report_drops`] unless drops were reported less than
    /// [`DROP_CHECK_INTERVAL`] ago.
    fn report_drops_when_due(&mut self, subscription: &nats::Subscription) {
        if self
            .last_report
            .is_none_or(|at| at.elapsed() >= DROP_CHECK_INTERVAL)
        {
            self.report_drops(subscription);
        }
    }

    /// Counts and logs what was dropped since the last report: by the hold when full, and
    /// by the client past its own limit.
    fn report_drops(&mut self, subscription: &nats::Subscription) {
        let held_drops = std::mem::take(&mut self.held.dropped);
        if held_drops > 0 {
            self.last_report = Some(Instant::now());
            log::warn!(
                "dropped {held_drops} messages on {}: the worker fell more than {} MiB of messages behind",
                self.pattern,
                MAX_HELD_BYTES >> 20
            );
        }
        let Ok(dropped) = subscription.dropped_messages() else {
            return;
        };
        if dropped > self.client_drops_reported {
            self.last_report = Some(Instant::now());
            let new = dropped - self.client_drops_reported;
            Counters::add(&self.counters.client_dropped, new as u64);
            log::warn!(
                "the NATS client dropped {new} messages on {}: the worker fell more than {CLIENT_QUEUE_LIMIT} messages behind",
                self.pattern
            );
            self.client_drops_reported = dropped;
        }
    }
}

/// Raw messages a subscription thread took from the client and the main loop has no room
/// for yet, their bytes counted in [`HELD`].
#[derive(Default)]
struct Hold {
    messages: VecDeque<nats::Message>,
    /// Dropped because the hold was full, since the last report.
    dropped: usize,
}

impl Hold {
    fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Keeps `message` if the process holds room for it (one message always fits when nothing
    /// is held), else drops and counts it.
    fn push(&mut self, message: nats::Message, counters: &Counters) {
        if HELD.try_take(message.data.len()) {
            self.messages.push_back(message);
        } else {
            Counters::bump(&counters.client_dropped);
            self.dropped += 1;
        }
    }

    fn pop(&mut self) -> Option<nats::Message> {
        let message = self.messages.pop_front()?;
        HELD.give_back(message.data.len());
        Some(message)
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        HELD.give_back(self.messages.iter().map(|m| m.data.len()).sum());
    }
}

/// Counts the message and decodes it; a malformed one is logged once and dropped here, so
/// the main loop only ever sees envelopes.
pub fn decode(message: &nats::Message, counters: &Counters) -> Option<Inbound> {
    Counters::bump(&counters.received);
    match Envelope::decode(&message.data) {
        Ok(envelope) => Some(Inbound {
            subject: message.subject.clone(),
            bytes: envelope.weight(message.data.len()),
            envelope,
        }),
        Err(reason) => {
            Counters::bump(&counters.malformed);
            // A flood of garbage must not become a flood of log lines: one per 10 s, saying
            // how many more there were (all of them are counted).
            if let Some(held_back) = MALFORMED_WARNINGS.pass() {
                let more = MALFORMED_WARNINGS.held_back_note(held_back, "malformed messages");
                log::warn!(
                    "dropped a malformed message on {} ({} bytes): {reason}{more}",
                    clip(&message.subject),
                    message.data.len()
                );
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::{HELD, Hold, MAX_HELD_BYTES};
    use crate::counters::{Counters, Mode};

    fn message(bytes: usize) -> nats::Message {
        nats::Message::new("attacker.session.ended", None, vec![b'x'; bytes], None)
    }

    /// The only test that touches the process-wide gauge, so it can read it exactly.
    #[test]
    fn a_hold_keeps_bytes_up_to_its_bound_counts_the_rest_and_gives_them_back() {
        let counters = Counters::new(Mode::Core);
        let mut hold = Hold::default();
        // The first message fits even when it alone is over the bound: nothing else is held.
        hold.push(message(MAX_HELD_BYTES + 1), &counters);
        assert_eq!(HELD.used(), MAX_HELD_BYTES + 1);
        hold.push(message(1), &counters);
        assert_eq!((hold.messages.len(), hold.dropped), (1, 1));
        assert!(hold.pop().is_some());
        assert_eq!(HELD.used(), 0);

        let mib = 1 << 20;
        for _ in 0..40 {
            hold.push(message(mib), &counters);
        }
        assert_eq!(hold.messages.len(), MAX_HELD_BYTES / mib);
        assert_eq!(hold.dropped, 1 + 40 - MAX_HELD_BYTES / mib);
        assert_eq!(
            counters.client_dropped.load(Ordering::SeqCst),
            hold.dropped as u64
        );
        drop(hold);
        assert_eq!(HELD.used(), 0);
    }
}
