//! The NATS side of the worker: one connection named `ttp`, one thread per subscription, the
//! control listener and the heartbeat, wired up together and torn down together.

// The sync `nats` client marks `Connection` deprecated in favour of async-nats; an async
// runtime is exactly what this daemon must not have, so the sync client stays (docs/nats.md).
#![allow(deprecated)]

mod connect;
mod control;
mod durable;
mod error;
mod heartbeat;
mod intake;
mod publish;
pub mod security;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, bounded};

pub use connect::{BusSettings, Hooks, StreamConfig, dial, open_with};
pub use durable::ensure_stream;
pub use error::BusError;
pub use publish::Publisher;

use crate::channels::{Bus, ControlSender, Delivery, Outbox};
use crate::counters::Counters;
use crate::envelope::MAX_MESSAGE_BYTES;
use crate::redact::redact_url;
use crate::topics::{CONTROL, TOPICS};

/// How long shutdown waits for the client to flush and close; its own flush has no bound
/// while disconnected (docs/nats.md pitfall 5).
const CLOSE_DEADLINE: Duration = Duration::from_secs(1);

/// The real bus: NATS through the sync client.
pub struct NatsBus {
    settings: BusSettings,
    messages: Sender<Delivery>,
    control: ControlSender,
    counters: Arc<Counters>,
    /// Set while we close the connection ourselves; read by the client's disconnect callback.
    closing: Arc<AtomicBool>,
    session: Option<Session>,
}

impl NatsBus {
    pub fn new(
        settings: BusSettings,
        messages: Sender<Delivery>,
        control: ControlSender,
        counters: Arc<Counters>,
    ) -> NatsBus {
        NatsBus {
            settings,
            messages,
            control,
            counters,
            closing: Arc::new(AtomicBool::new(false)),
            session: None,
        }
    }
}

impl Outbox for NatsBus {
    /// Without a connection (poll-only) nothing can be announced; the tags are kept anyway.
    fn publish(&self, subject: &str, bytes: Vec<u8>) -> bool {
        match &self.session {
            Some(session) => session.publisher.publish_bytes(subject, bytes),
            None => {
                Counters::bump(&self.counters.publish_errors);
                log::debug!("not connected: {subject} not published");
                false
            }
        }
    }

    /// The server's `max_payload` from its INFO, but never more than an envelope may be
    /// (DECNET's frame limit, which the bridge relays into).
    fn max_payload(&self) -> usize {
        let server = self.session.as_ref().map_or(MAX_MESSAGE_BYTES, |session| {
            session.connection.max_payload()
        });
        server.min(MAX_MESSAGE_BYTES)
    }
}

impl Bus for NatsBus {
    type Error = BusError;

    fn wanted(&self) -> bool {
        self.settings.enabled
    }

    fn is_connected(&self) -> bool {
        self.session.is_some()
    }

    fn connect(&mut self) -> Result<(), BusError> {
        self.closing.store(false, Ordering::SeqCst);
        let connection = connect::open(&self.settings, &self.counters, &self.closing)?;
        let session = Session::start(
            connection,
            &self.settings,
            &self.messages,
            &self.control,
            &self.counters,
        )?;
        log::info!(
            "connected to NATS at {} as {:?}; {} {} subjects, and {}",
            redact_url(&self.settings.urls.join(",")),
            crate::topics::WORKER_NAME,
            if self.settings.durable {
                "pulling through JetStream from"
            } else {
                "subscribed to"
            },
            TOPICS.len(),
            CONTROL
        );
        self.session = Some(session);
        crate::memory::release_freed_memory();
        Ok(())
    }

    fn stop_intake(&mut self) {
        if let Some(session) = &mut self.session {
            session.stop_intake();
        }
    }

    fn close(&mut self) {
        if let Some(session) = self.session.take() {
            self.closing.store(true, Ordering::SeqCst);
            session.close();
        }
    }
}

/// Everything that lives exactly as long as one successful connection.
struct Session {
    connection: nats::Connection,
    publisher: Publisher,
    /// Dropping a sender is the stop signal: every thread selects on its receiver.
    stop_intake: Option<Sender<()>>,
    stop_heartbeat: Option<Sender<()>>,
    intake_threads: Vec<JoinHandle<()>>,
    heartbeat: Option<JoinHandle<()>>,
    flusher: Option<JoinHandle<()>>,
}

impl Session {
    fn start(
        connection: nats::Connection,
        settings: &BusSettings,
        messages: &Sender<Delivery>,
        control: &ControlSender,
        counters: &Arc<Counters>,
    ) -> Result<Session, BusError> {
        let (stop_intake, intake_stopped) = bounded::<()>(0);
        let (stop_heartbeat, heartbeat_stopped) = bounded::<()>(0);
        let (publisher, flusher) =
            Publisher::new(connection.clone(), counters.clone()).map_err(BusError::Spawn)?;
        let mut session = Session {
            connection,
            publisher,
            stop_intake: Some(stop_intake),
            stop_heartbeat: Some(stop_heartbeat),
            intake_threads: Vec::new(),
            heartbeat: None,
            flusher: Some(flusher),
        };
        let spawned = session.spawn_threads(
            settings,
            messages,
            control,
            counters,
            (intake_stopped, heartbeat_stopped),
        );
        match spawned {
            Ok(()) => Ok(session),
            // Dropping the session would leave the threads started so far running.
            Err(err) => {
                session.close();
                Err(err)
            }
        }
    }

    /// One thread per subscription pattern feeding the message channel (durable mode pulls
    /// through JetStream, core mode subscribes), the control listener, then the heartbeat.
    /// Each ends when its stop receiver's sender, kept by the session, is dropped.
    fn spawn_threads(
        &mut self,
        settings: &BusSettings,
        messages: &Sender<Delivery>,
        control: &ControlSender,
        counters: &Arc<Counters>,
        (intake_stopped, heartbeat_stopped): (Receiver<()>, Receiver<()>),
    ) -> Result<(), BusError> {
        let jetstream = settings
            .durable
            .then(|| nats::jetstream::new(self.connection.clone()));
        if let Some(js) = &jetstream {
            durable::ensure_stream(js, &settings.stream)?;
        }
        for pattern in TOPICS {
            let thread = match &jetstream {
                Some(js) => durable::spawn_fetcher(
                    pattern,
                    durable::bind_consumer(
                        js,
                        &settings.stream.name,
                        settings.stream.ack_wait,
                        pattern,
                    )?,
                    messages.clone(),
                    intake_stopped.clone(),
                    counters.clone(),
                ),
                None => intake::spawn_forwarder(
                    pattern,
                    self.subscribe(pattern)?,
                    messages.clone(),
                    intake_stopped.clone(),
                    counters.clone(),
                ),
            }
            .map_err(BusError::Spawn)?;
            self.intake_threads.push(thread);
        }
        let listener =
            control::spawn_listener(self.subscribe(CONTROL)?, control.clone(), intake_stopped)
                .map_err(BusError::Spawn)?;
        self.intake_threads.push(listener);
        let heartbeat = heartbeat::spawn(
            self.publisher.clone(),
            settings.heartbeat_interval,
            counters.clone(),
            heartbeat_stopped,
        )
        .map_err(BusError::Spawn)?;
        self.heartbeat = Some(heartbeat);
        Ok(())
    }

    fn subscribe(&self, subject: &str) -> Result<nats::Subscription, BusError> {
        let subscription =
            self.connection
                .subscribe(subject)
                .map_err(|source| BusError::Subscribe {
                    subject: subject.to_owned(),
                    source,
                })?;
        subscription.set_message_limits(intake::CLIENT_QUEUE_LIMIT);
        Ok(subscription)
    }

    /// Ends the forwarders and the control listener; each unsubscribes before it exits.
    fn stop_intake(&mut self) {
        drop(self.stop_intake.take());
        for thread in self.intake_threads.drain(..) {
            if thread.join().is_err() {
                log::error!("a subscription thread panicked");
            }
        }
    }

    fn close(mut self) {
        self.stop_intake();
        drop(self.stop_heartbeat.take());
        if let Some(thread) = self.heartbeat.take()
            && thread.join().is_err()
        {
            log::error!("the heartbeat thread panicked");
        }
        // The last publisher clone goes: the flusher finishes its flush and ends. A flush
        // stuck waiting for an absent server is released when the connection closes.
        drop(self.publisher);
        close_with_deadline(self.connection, CLOSE_DEADLINE);
        if let Some(flusher) = self.flusher.take() {
            join_with_deadline(flusher, CLOSE_DEADLINE);
        }
    }
}

/// Joins `thread` unless it is still running after `deadline` (then it is left to end alone).
fn join_with_deadline(thread: JoinHandle<()>, deadline: Duration) {
    let started = std::time::Instant::now();
    while !thread.is_finished() {
        if started.elapsed() >= deadline {
            log::warn!("a {:?} thread did not end in time", thread.thread().name());
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = thread.join();
}

/// `Connection::close` flushes first, and that flush waits for a PONG with no bound while the
/// server is away; give it a deadline on a side thread instead of hanging the exit.
pub fn close_with_deadline(connection: nats::Connection, deadline: Duration) {
    let (done, closed) = bounded::<()>(1);
    let spawned = std::thread::Builder::new()
        .name("nats-close".into())
        .spawn(move || {
            connection.close();
            let _ = done.send(());
        });
    match spawned {
        Ok(thread) => match closed.recv_timeout(deadline) {
            Ok(()) => {
                let _ = thread.join();
                log::debug!("NATS connection closed");
            }
            Err(_) => log::warn!(
                "NATS connection did not close within {deadline:?} (server unreachable?); exiting without waiting"
            ),
        },
        Err(err) => log::warn!("cannot start a thread to close the NATS connection: {err}"),
    }
}
