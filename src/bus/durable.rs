//! Durable mode: JetStream pull consumers instead of core subscriptions, so events published
//! while the worker is down, restarting or cut off are delivered when it is back.
//!
//! One stream captures every `TOPICS` pattern; one durable pull consumer per pattern (the
//! server we target, 2.9, takes a single filter subject per consumer). Consumers are created
//! explicitly and then bound, never created implicitly by a subscribe call, because the client
//! deletes implicitly created consumers when the subscription goes (docs/nats.md pitfall 7).

use std::io;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError, select};
use nats::jetstream::{
    AckKind, AckPolicy, BatchOptions, ConsumerConfig, DeliverPolicy, DiscardPolicy, JetStream,
    PullSubscribeOptions, PullSubscription, ReplayPolicy, RetentionPolicy, StorageType,
    StreamConfig,
};

use super::error::BusError;
use super::intake::decode;
use crate::channels::{Ack, Delivery, Permit};
use crate::counters::Counters;
use crate::topics::TOPICS;

/// Messages in flight per consumer; with nine consumers this bounds our memory the way the
/// message channel's capacity does in core mode.
const MAX_ACK_PENDING: i64 = 1024;

/// Messages asked for per pull request.
const FETCH_BATCH: usize = 64;

/// Lifetime of one pull request; also how long a fetcher may take to notice a stop.
const FETCH_EXPIRY: Duration = Duration::from_millis(500);

/// Grace after a pull request expires before we stop waiting for its last messages.
const FETCH_GRACE: Duration = Duration::from_millis(50);

/// Creates the stream when it is missing; an existing stream is used exactly as it is, so
/// an operator may size it, replicate it or share it with other consumers.
pub fn ensure_stream(js: &JetStream, stream: &super::StreamConfig) -> Result<(), BusError> {
    match js.stream_info(&stream.name) {
        Ok(info) => {
            log::info!(
                "using JetStream stream {} ({} messages held)",
                stream.name,
                info.state.messages
            );
            Ok(())
        }
        Err(err) if is_not_found(&err) => {
            let max_bytes = i64::try_from(stream.max_bytes).unwrap_or(i64::MAX);
            js.add_stream(StreamConfig {
                name: stream.name.clone(),
                subjects: TOPICS.iter().map(|s| s.to_string()).collect(),
                storage: StorageType::File,
                retention: RetentionPolicy::Limits,
                discard: DiscardPolicy::Old,
                max_age: stream.max_age,
                max_bytes,
                max_msgs: -1,
                max_msgs_per_subject: -1,
                max_consumers: -1,
                max_msg_size: -1,
                num_replicas: 1,
                ..Default::default()
            })
            .map_err(|source| BusError::JetStream {
                what: format!("create stream {}", stream.name),
                source,
            })?;
            log::info!(
                "created JetStream stream {} for {} subjects (max age {:?}, max {} bytes)",
                stream.name,
                TOPICS.len(),
                stream.max_age,
                max_bytes
            );
            Ok(())
        }
        Err(source) => Err(BusError::JetStream {
            what: format!("look up stream {}", stream.name),
            source,
        }),
    }
}

/// The durable consumer's name for a pattern: `ttp-attacker_session_ended`, `ttp-canary_all`.
/// JetStream names may not contain `.`, `*` or `>`.
pub fn consumer_name(pattern: &str) -> String {
    let token = pattern
        .replace('.', "_")
        .replace('>', "all")
        .replace('*', "any");
    format!("ttp-{token}")
}

/// Creates the pattern's durable consumer if it does not exist yet, then binds to it.
pub fn bind_consumer(
    js: &JetStream,
    stream: &str,
    ack_wait: Duration,
    pattern: &str,
) -> Result<PullSubscription, BusError> {
    let name = consumer_name(pattern);
    let failed = |what: &str, source: io::Error| BusError::JetStream {
        what: format!("{what} consumer {name} on stream {stream}"),
        source,
    };
    match js.consumer_info(stream, &name) {
        Ok(_) => {}
        Err(err) if is_not_found(&err) => {
            js.add_consumer(
                stream,
                ConsumerConfig {
                    durable_name: Some(name.clone()),
                    deliver_policy: DeliverPolicy::All,
                    ack_policy: AckPolicy::Explicit,
                    ack_wait,
                    // Unlimited: a message is held back only while the store cannot be
                    // written, and giving up on it then would lose it. Malformed messages
                    // are acked at once, so nothing loops forever.
                    max_deliver: -1,
                    max_ack_pending: MAX_ACK_PENDING,
                    filter_subject: pattern.to_owned(),
                    replay_policy: ReplayPolicy::Instant,
                    ..Default::default()
                },
            )
            .map_err(|source| failed("create", source))?;
            log::info!("created durable consumer {name} for {pattern}");
        }
        Err(source) => return Err(failed("look up", source)),
    }
    js.pull_subscribe_with_options(
        pattern,
        &PullSubscribeOptions::new()
            .bind_stream(stream.to_owned())
            .durable_name(name.clone()),
    )
    .map_err(|source| failed("bind to", source))
}

fn is_not_found(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::NotFound || err.to_string().contains("not found")
}

/// Acknowledges a JetStream message after its batch is done.
struct JetStreamAck {
    message: nats::Message,
    counters: Arc<Counters>,
}

impl Ack for JetStreamAck {
    fn ack(self: Box<Self>) {
        // Plain ack, not double_ack: the latter retries forever, even after close (docs/nats.md
        // pitfall 9). A lost ack only means one harmless redelivery.
        if let Err(err) = self.message.ack() {
            Counters::bump(&self.counters.ack_errors);
            log::warn!(
                "acknowledging a message on {} failed: {err}",
                crate::logging::clip(&self.message.subject)
            );
        }
    }

    fn nak(self: Box<Self>) {
        if let Err(err) = self.message.ack_kind(AckKind::Nak) {
            log::debug!(
                "handing back a message on {} failed: {err}",
                self.message.subject
            );
        }
    }
}

/// Starts the thread that pulls from one consumer into `messages` until `stop` closes.
///
/// The client offers no channel to select on for pull subscriptions, so the thread waits on
/// short-lived pull requests and looks at `stop` between messages; a stop is noticed within
/// [`FETCH_EXPIRY`]. A message fetched but not yet handed over when we stop stays unacked and
/// is delivered again later.
pub fn spawn_fetcher(
    pattern: &'static str,
    subscription: PullSubscription,
    messages: Sender<Delivery>,
    stop: Receiver<()>,
    counters: Arc<Counters>,
) -> io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name(format!("pull {pattern}"))
        .spawn(move || {
            let request = BatchOptions {
                batch: FETCH_BATCH,
                expires: Some(FETCH_EXPIRY.as_nanos() as usize),
                no_wait: false,
            };
            'requests: while !stopped(&stop) {
                if let Err(err) = subscription.request_batch(request) {
                    log::debug!("pull request on {pattern} failed: {err}");
                    // Disconnected, most likely; wait a request's lifetime or for a stop.
                    if stop.recv_timeout(FETCH_EXPIRY).is_ok() {
                        break;
                    }
                    continue;
                }
                let deadline = Instant::now() + FETCH_EXPIRY + FETCH_GRACE;
                for _ in 0..FETCH_BATCH {
                    let remaining = deadline.saturating_duration_since(Instant::now());
                    let Ok(message) = subscription.next_timeout(remaining) else {
                        break;
                    };
                    if !forward(message, &messages, &stop, &counters) || stopped(&stop) {
                        break 'requests;
                    }
                }
            }
        })
}

/// Hands one fetched message to the main loop; returns false when told to stop meanwhile.
fn forward(
    mut message: nats::Message,
    messages: &Sender<Delivery>,
    stop: &Receiver<()>,
    counters: &Arc<Counters>,
) -> bool {
    // Status messages (no reply subject) are the server talking about the pull, not events.
    if message.reply.is_none() {
        return true;
    }
    let Some(inbound) = decode(&message, counters) else {
        // Malformed: no redelivery will ever make it well-formed.
        if let Err(err) = message.ack() {
            log::debug!("acknowledging a malformed message failed: {err}");
        }
        return true;
    };
    message.data = Vec::new(); // decoded already; keep only what the ack needs
    // Held here while the queue is full: the stream keeps the rest.
    let Some(permit) = Permit::wait(inbound.bytes, stop) else {
        return false;
    };
    let delivery = Delivery {
        message: inbound,
        ack: Some(Box::new(JetStreamAck {
            message,
            counters: counters.clone(),
        })),
        permit: Some(permit),
    };
    select! {
        send(messages, delivery) -> sent => sent.is_ok(),
        recv(stop) -> _ => false,
    }
}

fn stopped(stop: &Receiver<()>) -> bool {
    matches!(stop.try_recv(), Err(TryRecvError::Disconnected))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_names_are_valid_and_distinct() {
        let names: Vec<String> = TOPICS.iter().map(|p| consumer_name(p)).collect();
        for name in &names {
            assert!(crate::topics::validate_segment(name).is_ok(), "{name}");
        }
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len());
        assert_eq!(consumer_name("canary.>"), "ttp-canary_all");
        assert_eq!(
            consumer_name("attacker.session.ended"),
            "ttp-attacker_session_ended"
        );
    }
}
