//! Subscription threads: one per pattern, each moving messages from the client onto the main
//! loop's message channel.

use std::io;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, select, tick};

use crate::channels::{Delivery, Permit};
use crate::counters::Counters;
use crate::envelope::{Envelope, Inbound};
use crate::logging::Throttle;

/// How many messages the client may hold for one subscription while we are behind. The
/// client's queues are otherwise unbounded (docs/nats.md pitfall 6); past this it drops and counts.
pub const CLIENT_QUEUE_LIMIT: usize = 8192;

/// Malformed messages are logged at most once per period, over every subscription.
static MALFORMED_WARNINGS: Throttle = Throttle::new(Duration::from_secs(10));

/// How often a forwarder reads the client's drop counter.
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
            let drop_check = tick(DROP_CHECK_INTERVAL);
            let mut drops_reported = 0;
            loop {
                select! {
                    recv(subscription.receiver()) -> message => {
                        let Ok(message) = message else { break };
                        let Some(inbound) = decode(&message, &counters) else { continue };
                        // Neither a full queue nor a full channel may keep us from stopping.
                        let Some(permit) = Permit::wait(inbound.bytes, &stop) else { break };
                        let delivery = Delivery { permit: Some(permit), ..Delivery::unacked(inbound) };
                        select! {
                            send(messages, delivery) -> sent => {
                                if sent.is_err() { break }
                            }
                            recv(stop) -> _ => break,
                        }
                    }
                    recv(drop_check) -> _ => {
                        report_client_drops(pattern, &subscription, &mut drops_reported, &counters);
                    }
                    recv(stop) -> _ => break,
                }
            }
            report_client_drops(pattern, &subscription, &mut drops_reported, &counters);
            if let Err(err) = subscription.unsubscribe() {
                log::debug!("unsubscribing from {pattern}: {err}");
            }
        })
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
                    message.subject,
                    message.data.len()
                );
            }
            None
        }
    }
}

fn report_client_drops(
    pattern: &str,
    subscription: &nats::Subscription,
    reported: &mut usize,
    counters: &Counters,
) {
    let Ok(dropped) = subscription.dropped_messages() else {
        return;
    };
    if dropped > *reported {
        let new = dropped - *reported;
        Counters::add(&counters.client_dropped, new as u64);
        log::warn!(
            "the NATS client dropped {new} messages on {pattern}: the worker fell more than {CLIENT_QUEUE_LIMIT} messages behind"
        );
        *reported = dropped;
    }
}
