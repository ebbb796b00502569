//! The NATS side: the worker's announcements are taken from NATS for DECNET's bus, and DECNET's
//! events are published on NATS, into JetStream with a `Nats-Msg-Id` in durable mode.
//!
//! The client reconnects by itself (docs/nats.md pitfalls 2 and 3); while it is away the
//! publisher holds the event in hand and DECNET's events wait in the bounded queue, so what is
//! dropped when the outage outlasts the queue is the oldest, and it is counted.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use std::collections::HashMap;
use std::time::Instant;

use crossbeam_channel::{Receiver, never, select};
use nats::header::{HeaderMap, NATS_MSG_ID};
use serde_json::Value;

use super::counters::BridgeCounters;
use super::queue::{DropOldest, Pushed};
use super::relayed::Relayed;
use super::retry::pause;
use crate::bus::{StreamConfig, ensure_stream};
use crate::topics::{TO_DECNET, TOPICS, matches};

/// The most messages the client holds for one subscription while DECNET's side is behind
/// (its queues are otherwise unbounded, docs/nats.md pitfall 6).
const CLIENT_QUEUE_LIMIT: usize = 8192;
/// How long one JetStream publish waits for the stream's acknowledgement.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);

/// Subscribes to [`TO_DECNET`], one thread per pattern, each queuing what it hears for DECNET.
pub fn spawn_subscribers(
    connection: &nats::Connection,
    to_decnet: &DropOldest<Relayed>,
    counters: &Arc<BridgeCounters>,
    stop: &Receiver<()>,
) -> io::Result<Vec<JoinHandle<()>>> {
    let mut threads = Vec::new();
    for pattern in TO_DECNET {
        let subscription = connection.subscribe(pattern)?;
        subscription.set_message_limits(CLIENT_QUEUE_LIMIT);
        let to_decnet = to_decnet.clone();
        let counters = counters.clone();
        let stop = stop.clone();
        threads.push(
            thread::Builder::new()
                .name(format!("sub {pattern}"))
                .spawn(move || {
                    loop {
                        select! {
                            recv(subscription.receiver()) -> message => {
                                let Ok(message) = message else { break };
                                BridgeCounters::bump(&counters.from_nats);
                                match Relayed::from_nats(message.subject, message.data) {
                                    Ok(relayed) => {
                                        if let Pushed::DroppedOldest(n) = to_decnet.push(relayed) {
                                            BridgeCounters::add(&counters.dropped_to_decnet, n);
                                        }
                                    }
                                    Err(why) => {
                                        BridgeCounters::bump(&counters.unrelayable);
                                        log::debug!("not relayed to DECNET's bus: {why}");
                                    }
                                }
                            }
                            recv(stop) -> _ => break,
                        }
                    }
                    if let Err(err) = subscription.unsubscribe() {
                        log::debug!("unsubscribing from {pattern}: {err}");
                    }
                })?,
        );
    }
    Ok(threads)
}

/// Where DECNET's events go on NATS.
pub struct Publisher {
    pub connection: nats::Connection,
    /// False while the client is reconnecting (set by its callbacks).
    pub up: Arc<AtomicBool>,
    /// In durable mode, the stream the worker reads; created when it is missing.
    pub stream: Option<StreamConfig>,
    pub counters: Arc<BridgeCounters>,
}

impl Publisher {
    /// Publishes every event of `events` until `stop` closes.
    pub fn spawn(
        self,
        events: Receiver<Relayed>,
        stop: Receiver<()>,
    ) -> io::Result<JoinHandle<()>> {
        thread::Builder::new()
            .name("publish".into())
            .spawn(move || match self.stream.clone() {
                Some(stream) => self.run_durable(&stream, &events, &stop),
                None => self.run_core(&events, &stop),
            })
    }

    fn run_core(&self, events: &Receiver<Relayed>, stop: &Receiver<()>) {
        loop {
            select! {
                recv(events) -> event => {
                    let Ok(event) = event else { return };
                    if !self.publish_core(&event, stop) {
                        return;
                    }
                }
                recv(stop) -> _ => return,
            }
        }
    }

    /// Publishes one event on core NATS, holding it while the client is away; false when the
    /// bridge stops first.
    fn publish_core(&self, event: &Relayed, stop: &Receiver<()>) -> bool {
        let mut failures = 0usize;
        loop {
            let result = if self.up.load(Ordering::SeqCst) {
                self.connection
                    .publish(&event.subject, &event.body)
                    .map_err(|e| e.to_string())
            } else {
                Err("not connected to NATS".to_owned())
            };
            match result {
                Ok(()) => {
                    BridgeCounters::bump(&self.counters.to_nats);
                    if failures > 0 {
                        log::info!("publishing on NATS again after {failures} failed attempts");
                    }
                    return true;
                }
                Err(why) => {
                    if failures == 0 {
                        log::warn!(
                            "cannot publish {} on NATS ({why}); holding it and trying again",
                            event.subject
                        );
                    }
                    failures += 1;
                    if !pause(failures, stop) {
                        return false;
                    }
                }
            }
        }
    }

    /// Durable mode: the stream first, then up to [`WINDOW`] events in flight at once, each
    /// published with its own reply subject and held until the stream acknowledges it.
    fn run_durable(&self, stream: &StreamConfig, events: &Receiver<Relayed>, stop: &Receiver<()>) {
        let js = nats::jetstream::new(self.connection.clone());
        let mut failures = 0usize;
        let mut window = loop {
            let ready = ensure_stream(&js, stream)
                .map_err(|e| e.to_string())
                .and_then(|()| Window::open(&self.connection).map_err(|e| e.to_string()));
            match ready {
                Ok(window) => break window,
                Err(why) => {
                    if failures == 0 {
                        log::warn!(
                            "cannot use JetStream stream {} ({why}); trying again",
                            stream.name
                        );
                    }
                    failures += 1;
                    if !pause(failures, stop) {
                        return;
                    }
                }
            }
        };
        let full = never();
        loop {
            let intake = if window.in_flight.len() < WINDOW {
                events
            } else {
                &full
            };
            select! {
                recv(intake) -> event => {
                    let Ok(event) = event else { break };
                    if TOPICS.iter().any(|p| matches(p, &event.subject)) {
                        window.send(&self.connection, event);
                    } else if !self.publish_core(&event, stop) {
                        break;
                    }
                }
                recv(window.acks.receiver()) -> ack => {
                    if let Ok(ack) = ack {
                        window.acknowledged(&ack, &self.counters);
                    }
                }
                recv(stop) -> _ => break,
                default(RESEND_CHECK) => {}
            }
            window.resend_due(&self.connection, &self.counters);
        }
        window.drain(&self.counters);
    }
}

/// Events published into the stream and not yet acknowledged.
const WINDOW: usize = 512;
/// How often unacknowledged events are looked at while nothing else happens.
const RESEND_CHECK: Duration = Duration::from_millis(100);
/// After a refusal from the stream, the pause before the event goes again.
const REFUSED_PAUSE: Duration = Duration::from_millis(500);
/// How long stopping waits for the acknowledgements of events in flight.
const DRAIN: Duration = Duration::from_secs(1);

/// The events in flight in durable mode, by the sequence number their reply subject ends in.
struct Window {
    prefix: String,
    acks: nats::Subscription,
    in_flight: HashMap<u64, InFlight>,
    next: u64,
    /// Set while publishes fail, so that an outage is logged when it starts and when it ends.
    failing: bool,
    /// When [`Window::resend_due`] looks at the window next.
    next_check: Instant,
}

struct InFlight {
    event: Relayed,
    headers: Option<HeaderMap>,
    /// When it goes again if no acknowledgement came.
    due: Instant,
}

impl Window {
    fn open(connection: &nats::Connection) -> io::Result<Window> {
        let prefix = connection.new_inbox();
        let acks = connection.subscribe(&format!("{prefix}.*"))?;
        Ok(Window {
            prefix,
            acks,
            in_flight: HashMap::new(),
            next: 0,
            failing: false,
            next_check: Instant::now(),
        })
    }

    fn send(&mut self, connection: &nats::Connection, event: Relayed) {
        let seq = self.next;
        self.next += 1;
        let headers = event.id.as_ref().map(|id| {
            let mut headers = HeaderMap::new();
            headers.insert(NATS_MSG_ID, id.clone());
            headers
        });
        let entry = InFlight {
            event,
            headers,
            due: Instant::now() + PUBLISH_TIMEOUT,
        };
        publish(connection, &self.prefix, seq, &entry);
        self.in_flight.insert(seq, entry);
    }

    /// The stream's answer: an acknowledgement (a duplicate one too) ends the event's flight;
    /// an error or a no-responders status (no stream) sends it again after a pause.
    fn acknowledged(&mut self, ack: &nats::Message, counters: &BridgeCounters) {
        let Some(seq) = ack
            .subject
            .rsplit('.')
            .next()
            .and_then(|s| s.parse::<u64>().ok())
        else {
            return;
        };
        // An acknowledgement of an event sent twice arrives twice; the second finds nothing.
        let Some(entry) = self.in_flight.get_mut(&seq) else {
            return;
        };
        match serde_json::from_slice::<PubAck>(&ack.data) {
            Ok(PubAck {
                error: None,
                stream: Some(_),
            }) => {
                self.in_flight.remove(&seq);
                BridgeCounters::bump(&counters.to_nats);
                if self.failing {
                    self.failing = false;
                    log::info!("JetStream takes DECNET's events again");
                }
            }
            refused => {
                let why = match refused {
                    Ok(PubAck {
                        error: Some(error), ..
                    }) => error.to_string(),
                    _ => "no stream answered".to_owned(),
                };
                if !self.failing {
                    self.failing = true;
                    log::warn!(
                        "JetStream refused {} ({why}); holding it and publishing again",
                        entry.event.subject
                    );
                }
                entry.due = Instant::now() + REFUSED_PAUSE;
            }
        }
    }

    /// Publishes again what is due: no acknowledgement in time, or refused a while ago. The same
    /// `Nats-Msg-Id` goes with it, so the stream keeps one copy whichever attempt arrives.
    fn resend_due(&mut self, connection: &nats::Connection, counters: &BridgeCounters) {
        // Looked at every RESEND_CHECK, not after every event: the scan covers the window.
        let now = Instant::now();
        if now < self.next_check {
            return;
        }
        self.next_check = now + RESEND_CHECK;
        let mut resent = 0usize;
        for (seq, entry) in self.in_flight.iter_mut().filter(|(_, e)| e.due <= now) {
            entry.due = now + PUBLISH_TIMEOUT;
            publish(connection, &self.prefix, *seq, entry);
            resent += 1;
        }
        if resent == 0 {
            return;
        }
        BridgeCounters::add(&counters.nats_retries, resent as u64);
        if !self.failing {
            self.failing = true;
            log::warn!(
                "no acknowledgement from JetStream within {PUBLISH_TIMEOUT:?} for {resent} events; \
                 holding them and publishing again"
            );
        }
    }

    /// At a stop: the acknowledgements still on their way, for a moment.
    fn drain(&mut self, counters: &BridgeCounters) {
        let deadline = Instant::now() + DRAIN;
        while !self.in_flight.is_empty() {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            match self.acks.next_timeout(left) {
                Ok(ack) => self.acknowledged(&ack, counters),
                Err(_) => break,
            }
        }
        if !self.in_flight.is_empty() {
            log::warn!(
                "stopping with {} events published into JetStream but not acknowledged",
                self.in_flight.len()
            );
        }
    }
}

/// One attempt of an event in flight, answered on `prefix.seq`. A failed publish (the
/// client's reconnect buffer full) is not an error here: without an acknowledgement the event
/// goes again when it is due.
fn publish(connection: &nats::Connection, prefix: &str, seq: u64, entry: &InFlight) {
    let reply = format!("{prefix}.{seq}");
    if let Err(err) = connection.publish_with_reply_or_headers(
        &entry.event.subject,
        Some(&reply),
        entry.headers.as_ref(),
        &entry.event.body,
    ) {
        log::debug!("publish of {} failed: {err}", entry.event.subject);
    }
}

/// What the stream answers a publish with.
#[derive(serde::Deserialize)]
struct PubAck {
    stream: Option<String>,
    error: Option<Value>,
}
