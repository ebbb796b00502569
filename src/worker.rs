//! The main loop: the whole life of the daemon on one screen.
//!
//! The loop sees only channels. Subscription threads put messages on **wake**, a
//! `crossbeam_channel::tick` drives **tick**, and signals or a control stop put a cause on
//! **shutdown**. Two one-shot timers join them: one, set by each batch to fire a little after
//! it, tells the handler when a burst is over; the other retries a batch the handler could not
//! finish. Everything outside the loop sits behind two seams: [`Bus`] (connect, stop taking
//! messages, close) and [`Handler`] (what to do with a burst of messages). That is what
//! lets unit tests drive the loop by sending on its channels, with no network at all.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, at, never, select};

use crate::bus::BusError;
use crate::counters::Counters;
use crate::envelope::Inbound;

/// Capacity of the wake channel. Bounded so a flood backs up into the NATS client, where the
/// per-subscription limits decide what is dropped, instead of into unbounded memory here.
pub const WAKE_CAPACITY: usize = 1024;

/// The most messages handled as one burst; keeps a flood from starving tick and shutdown.
pub const MAX_BATCH: usize = 256;

/// How long wake must stay quiet after work before the handler is told to settle.
pub const SETTLE_AFTER: Duration = Duration::from_secs(2);

/// How soon a held batch is first tried again; each failure doubles the wait, up to
/// [`RETRY_MAX`]. Ticks retry too, but the poll interval (60 s by default) is too long to leave
/// a batch waiting after a brief failure: meanwhile no new work is taken, and in core mode the
/// client's queues overflow and drop.
pub const RETRY_FIRST: Duration = Duration::from_secs(1);
pub const RETRY_MAX: Duration = Duration::from_secs(30);

/// Something for the main loop to do.
pub enum Wake {
    /// A message from the bus, already decoded by its subscription thread.
    Message(Delivery),
    /// SIGHUP: re-read what can be re-read (the rules, once there are rules).
    Reload,
}

/// A message and, in durable mode, the means to confirm it.
pub struct Delivery {
    pub message: Inbound,
    pub ack: Option<Box<dyn Ack>>,
}

impl Delivery {
    /// A core-NATS message: nothing to confirm.
    pub fn unacked(message: Inbound) -> Delivery {
        Delivery { message, ack: None }
    }
}

/// Tells the bus a message is fully handled so it is not delivered again. Called only after
/// the handler succeeded for the whole batch the message was in.
pub trait Ack: Send {
    fn ack(self: Box<Self>);
    /// Hands the message back undone, for immediate redelivery (to whoever consumes next).
    fn nak(self: Box<Self>);
}

/// Why the worker is stopping. Every cause leads to the same bounded shutdown and exit 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShutdownCause {
    Signal(&'static str),
    Control {
        requested_by: String,
    },
    /// Every sender of the shutdown channel is gone: nothing could ever stop us again.
    Orphaned,
}

impl fmt::Display for ShutdownCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShutdownCause::Signal(name) => write!(f, "{name} received"),
            ShutdownCause::Control { requested_by } => {
                write!(f, "stop requested on the control subject by {requested_by}")
            }
            ShutdownCause::Orphaned => f.write_str("shutdown channel closed"),
        }
    }
}

/// The main loop's three inboxes.
pub struct Inbox {
    pub wake: Receiver<Wake>,
    pub tick: Receiver<Instant>,
    pub shutdown: Receiver<ShutdownCause>,
}

/// The bus as the main loop needs it.
pub trait Bus: Outbox {
    /// False when the bus is disabled by configuration: poll-only without connect attempts.
    fn wanted(&self) -> bool;
    fn is_connected(&self) -> bool;
    /// One connection attempt; on success every subscription, the control listener and the
    /// heartbeat are running, exactly as on a normal start.
    fn connect(&mut self) -> Result<(), BusError>;
    /// Stops putting messages on wake (subscription threads end, subscriptions are removed),
    /// while keeping the connection for whatever the last batch still has to publish.
    fn stop_intake(&mut self);
    /// Stops the heartbeat, joins every thread and closes the connection.
    fn close(&mut self);
}

/// Where a handler's announcements go: the bus while connected, nowhere in poll-only mode.
pub trait Outbox {
    /// Publishes exact bytes on `subject`; `false` when it could not (counted, never fatal).
    fn publish(&self, subject: &str, bytes: Vec<u8>) -> bool;
}

/// What happens to messages. The tagging engine plugs in here.
pub trait Handler {
    /// One coalesced burst of messages, in arrival order. An error means nothing of the batch
    /// may be considered done: it is kept, retried (after [`RETRY_FIRST`], backing off, and on
    /// every tick), and not acknowledged.
    fn handle_batch(&mut self, batch: &[Inbound], outbox: &dyn Outbox) -> Result<(), BatchFailed>;
    /// SIGHUP arrived.
    fn reload(&mut self);
    /// No batch or reload for [`SETTLE_AFTER`] since the last one: a moment to
    /// give back memory that only a burst needed, so that an idle daemon is as small after
    /// traffic as it was before it. Called once per quiet spell.
    fn settle(&mut self) {}
}

/// The handler could not finish a batch for a reason that may pass (a full disk, a locked
/// database); the text is logged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BatchFailed(pub String);

enum Event {
    Wake(Wake),
    Tick,
    Shutdown(ShutdownCause),
    /// No work for [`MainLoop::settle_after`] since the last batch.
    Settle,
    /// Time to try the held batch again.
    Retry,
}

/// What `run` hands back: why it stopped, and the handler (tests inspect it).
pub struct Stopped<H> {
    pub cause: ShutdownCause,
    pub handler: H,
}

pub struct MainLoop<B, H> {
    inbox: Inbox,
    /// Selected instead of wake while a failed batch is held: no new work until it is done.
    closed_wake: Receiver<Wake>,
    bus: B,
    handler: H,
    counters: Arc<Counters>,
    /// A batch the handler failed on, with its acks, waiting to be retried.
    held: Option<Vec<Delivery>>,
    /// When the held batch is tried next (ticks try it too), and the wait after the next failure.
    retry_at: Option<Instant>,
    retry_delay: Duration,
    retry_first: Duration,
    retry_max: Duration,
    failed_connects: u64,
    poll_interval_hint: String,
    settle_after: Duration,
    /// When the handler settles unless more work comes first: set by each batch (and reload),
    /// cleared by settling. Ticks leave it alone, so a poll interval shorter than
    /// `settle_after` cannot put settling off for ever.
    settle_at: Option<Instant>,
}

impl<B: Bus, H: Handler> MainLoop<B, H> {
    pub fn new(inbox: Inbox, bus: B, handler: H, counters: Arc<Counters>) -> MainLoop<B, H> {
        MainLoop {
            inbox,
            closed_wake: never(),
            bus,
            handler,
            counters,
            held: None,
            retry_at: None,
            retry_delay: RETRY_FIRST,
            retry_first: RETRY_FIRST,
            retry_max: RETRY_MAX,
            failed_connects: 0,
            poll_interval_hint: "tick".to_owned(),
            settle_after: SETTLE_AFTER,
            settle_at: None,
        }
    }

    /// Changes how soon a held batch is retried, and the longest wait between retries (tests).
    pub fn with_retry_after(mut self, first: Duration, max: Duration) -> Self {
        self.retry_first = first;
        self.retry_delay = first;
        self.retry_max = max;
        self
    }

    /// Changes how long the loop waits after work before the handler settles (tests).
    pub fn with_settle_after(mut self, quiet: Duration) -> Self {
        self.settle_after = quiet;
        self
    }

    /// Names the retry cadence in the poll-only log line.
    pub fn with_poll_interval_hint(mut self, hint: impl Into<String>) -> Self {
        self.poll_interval_hint = hint.into();
        self
    }

    /// Runs until a shutdown cause arrives, then shuts down in order and returns.
    pub fn run(mut self) -> Stopped<H> {
        if self.bus.wanted() {
            self.try_connect();
        } else {
            log::info!("bus disabled by configuration: poll-only, no connection attempts");
        }
        let cause = loop {
            match self.next_event() {
                Event::Shutdown(cause) => break cause,
                Event::Tick => self.on_tick(),
                Event::Wake(first) => self.on_wake(first),
                Event::Settle => {
                    self.settle_at = None;
                    self.handler.settle();
                }
                Event::Retry => self.retry_held(),
            }
        };
        log::info!("shutting down: {cause}");
        self.shut_down();
        Stopped {
            cause,
            handler: self.handler,
        }
    }

    /// Shutdown first: a flood on wake must never delay a stop.
    fn next_event(&mut self) -> Event {
        if let Ok(cause) = self.inbox.shutdown.try_recv() {
            return Event::Shutdown(cause);
        }
        let wake = if self.held.is_some() {
            &self.closed_wake
        } else {
            &self.inbox.wake
        };
        // A held batch is still work in progress: no settling until it is through.
        let (settle, retry) = match (self.held.is_some(), self.settle_at, self.retry_at) {
            (false, Some(when), _) => (at(when), never()),
            (true, _, Some(when)) => (never(), at(when)),
            _ => (never(), never()),
        };
        select! {
            recv(self.inbox.shutdown) -> cause => {
                Event::Shutdown(cause.unwrap_or(ShutdownCause::Orphaned))
            }
            recv(wake) -> wake => match wake {
                Ok(wake) => Event::Wake(wake),
                Err(_) => {
                    // Nobody can wake us any more; stop selecting on a closed channel so
                    // the loop does not spin.
                    self.inbox.wake = never();
                    Event::Tick
                }
            },
            recv(self.inbox.tick) -> _ => Event::Tick,
            recv(settle) -> _ => Event::Settle,
            recv(retry) -> _ => Event::Retry,
        }
    }

    fn on_tick(&mut self) {
        if self.bus.wanted() && !self.bus.is_connected() {
            self.try_connect();
        }
        self.retry_held();
    }

    /// Work was done: settle once nothing more has come for `settle_after`.
    fn worked(&mut self) {
        self.settle_at = Some(Instant::now() + self.settle_after);
    }

    fn retry_held(&mut self) {
        if let Some(batch) = self.held.take() {
            log::info!("retrying a held batch of {} messages", batch.len());
            self.handle(batch);
        }
    }

    /// Handles `first` and whatever else is already queued, up to [`MAX_BATCH`].
    fn on_wake(&mut self, first: Wake) {
        let mut batch = Vec::new();
        let mut reload = false;
        let mut next = Some(first);
        while let Some(wake) = next.take() {
            match wake {
                Wake::Message(delivery) => batch.push(delivery),
                Wake::Reload => reload = true,
            }
            if batch.len() < MAX_BATCH {
                next = self.inbox.wake.try_recv().ok();
            }
        }
        self.handle(batch);
        if reload {
            log::info!("reload requested (SIGHUP)");
            self.handler.reload();
            self.worked();
        }
    }

    /// Runs the handler over a batch; acknowledges it when done, holds it when not.
    fn handle(&mut self, batch: Vec<Delivery>) {
        if batch.is_empty() {
            return;
        }
        let (messages, acks): (Vec<Inbound>, Vec<Option<Box<dyn Ack>>>) =
            batch.into_iter().map(|d| (d.message, d.ack)).unzip();
        match self.handler.handle_batch(&messages, &self.bus) {
            Ok(()) => {
                self.worked();
                self.retry_at = None;
                self.retry_delay = self.retry_first;
                Counters::add(&self.counters.processed, messages.len() as u64);
                acks.into_iter().flatten().for_each(|ack| ack.ack());
            }
            Err(failure) => {
                log::warn!(
                    "could not finish a batch of {} messages ({failure}); holding it, retrying in {} s",
                    messages.len(),
                    self.retry_delay.as_secs_f64()
                );
                self.retry_at = Some(Instant::now() + self.retry_delay);
                self.retry_delay = (self.retry_delay * 2).min(self.retry_max);
                let held = messages
                    .into_iter()
                    .zip(acks)
                    .map(|(message, ack)| Delivery { message, ack })
                    .collect();
                self.held = Some(held);
            }
        }
    }

    fn try_connect(&mut self) {
        match self.bus.connect() {
            Ok(()) if self.failed_connects > 0 => {
                log::info!(
                    "bus reachable after {} failed attempts; subscribed",
                    self.failed_connects
                );
                self.failed_connects = 0;
            }
            Ok(()) => {}
            Err(err) => {
                self.failed_connects += 1;
                if self.failed_connects == 1 {
                    log::warn!(
                        "bus unavailable ({err}); running poll-only and retrying every {}",
                        self.poll_interval_hint
                    );
                } else {
                    log::debug!("bus still unavailable ({err})");
                }
            }
        }
    }

    /// Stop taking messages, finish what is already queued (bounded by the wake capacity),
    /// then close the bus. A batch that still fails is given up: unacknowledged, so in durable
    /// mode the bus delivers it again after a restart.
    fn shut_down(&mut self) {
        self.bus.stop_intake();
        if let Some(held) = self.held.take() {
            self.handle(held);
        }
        if self.held.is_none() {
            let queued: Vec<Delivery> = self
                .inbox
                .wake
                .try_iter()
                .take(WAKE_CAPACITY)
                .filter_map(|wake| match wake {
                    Wake::Message(delivery) => Some(delivery),
                    Wake::Reload => None,
                })
                .collect();
            let mut queued = queued.into_iter().peekable();
            while queued.peek().is_some() && self.held.is_none() {
                self.handle(queued.by_ref().take(MAX_BATCH).collect());
            }
        }
        if let Some(held) = self.held.take() {
            log::warn!(
                "stopping with {} messages not handled; in durable mode they will be delivered again",
                held.len()
            );
            held.into_iter()
                .filter_map(|delivery| delivery.ack)
                .for_each(|ack| ack.nak());
        }
        self.bus.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::Mode;
    use crate::envelope::Envelope;
    use crossbeam_channel::{Sender, bounded, unbounded};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::thread::{self, JoinHandle};
    use std::time::Duration;

    /// What the fake bus was asked to do, readable while the loop runs.
    #[derive(Default)]
    struct BusLog {
        attempts: AtomicUsize,
        intake_stopped: AtomicBool,
        closed: AtomicBool,
    }

    struct FakeBus {
        wanted: bool,
        succeed_on_attempt: Option<usize>,
        connected: bool,
        log: Arc<BusLog>,
    }

    impl Outbox for FakeBus {
        fn publish(&self, _subject: &str, _bytes: Vec<u8>) -> bool {
            self.connected
        }
    }

    impl Bus for FakeBus {
        fn wanted(&self) -> bool {
            self.wanted
        }
        fn is_connected(&self) -> bool {
            self.connected
        }
        fn connect(&mut self) -> Result<(), BusError> {
            let attempt = self.log.attempts.fetch_add(1, Ordering::SeqCst) + 1;
            if Some(attempt) == self.succeed_on_attempt {
                self.connected = true;
                Ok(())
            } else {
                Err(BusError::ConnectTimedOut {
                    urls: "fake".into(),
                    timeout: Duration::from_millis(1),
                })
            }
        }
        fn stop_intake(&mut self) {
            self.log.intake_stopped.store(true, Ordering::SeqCst);
        }
        fn close(&mut self) {
            assert!(
                self.log.intake_stopped.load(Ordering::SeqCst),
                "close before stop_intake"
            );
            self.log.closed.store(true, Ordering::SeqCst);
        }
    }

    #[derive(Default)]
    struct Recorder {
        batches: Arc<Mutex<Vec<Vec<String>>>>,
        reloads: usize,
        settles: Arc<AtomicUsize>,
        /// While set, every batch fails (a store that cannot be written).
        failing: Arc<AtomicBool>,
        attempts: Arc<AtomicUsize>,
    }

    impl Handler for Recorder {
        fn handle_batch(
            &mut self,
            batch: &[Inbound],
            _outbox: &dyn Outbox,
        ) -> Result<(), BatchFailed> {
            self.attempts.fetch_add(1, Ordering::SeqCst);
            if self.failing.load(Ordering::SeqCst) {
                return Err(BatchFailed("disk full".into()));
            }
            let subjects = batch.iter().map(|m| m.subject.clone()).collect();
            self.batches.lock().unwrap().push(subjects);
            Ok(())
        }
        fn reload(&mut self) {
            self.reloads += 1;
        }
        fn settle(&mut self) {
            self.settles.fetch_add(1, Ordering::SeqCst);
        }
    }

    struct Harness {
        wake: Sender<Wake>,
        tick: Sender<Instant>,
        shutdown: Sender<ShutdownCause>,
        bus_log: Arc<BusLog>,
        batches: Arc<Mutex<Vec<Vec<String>>>>,
        failing: Arc<AtomicBool>,
        attempts: Arc<AtomicUsize>,
        settles: Arc<AtomicUsize>,
        acks: Arc<AtomicUsize>,
        naks: Arc<AtomicUsize>,
        counters: Arc<Counters>,
        main_loop: Option<MainLoop<FakeBus, Recorder>>,
    }

    impl Harness {
        fn new(wanted: bool, succeed_on_attempt: Option<usize>) -> Harness {
            let (wake, wake_rx) = bounded(WAKE_CAPACITY);
            let (tick, tick_rx) = unbounded();
            let (shutdown, shutdown_rx) = unbounded();
            let bus_log = Arc::new(BusLog::default());
            let bus = FakeBus {
                wanted,
                succeed_on_attempt,
                connected: false,
                log: bus_log.clone(),
            };
            let handler = Recorder::default();
            let batches = handler.batches.clone();
            let failing = handler.failing.clone();
            let attempts = handler.attempts.clone();
            let settles = handler.settles.clone();
            let counters = Arc::new(Counters::new(Mode::Core));
            let inbox = Inbox {
                wake: wake_rx,
                tick: tick_rx,
                shutdown: shutdown_rx,
            };
            Harness {
                wake,
                tick,
                shutdown,
                bus_log,
                batches,
                failing,
                attempts,
                settles,
                acks: Arc::new(AtomicUsize::new(0)),
                naks: Arc::new(AtomicUsize::new(0)),
                counters: counters.clone(),
                // Held batches wait for a tick unless a test asks otherwise, so that attempts
                // can be counted exactly.
                main_loop: Some(
                    MainLoop::new(inbox, bus, handler, counters)
                        .with_retry_after(Duration::from_secs(3600), Duration::from_secs(3600)),
                ),
            }
        }

        fn start(&mut self) -> JoinHandle<Stopped<Recorder>> {
            let main_loop = self.main_loop.take().unwrap();
            thread::spawn(move || main_loop.run())
        }

        fn inbound(subject: &str) -> Inbound {
            Inbound {
                subject: subject.into(),
                envelope: Envelope::new("t", Default::default()),
            }
        }

        fn message(&self, subject: &str) {
            self.wake
                .send(Wake::Message(Delivery::unacked(Harness::inbound(subject))))
                .unwrap();
        }

        /// A message that counts its acknowledgement, as a JetStream message would.
        fn durable_message(&self, subject: &str) {
            let ack = CountingAck {
                acks: self.acks.clone(),
                naks: self.naks.clone(),
            };
            self.wake
                .send(Wake::Message(Delivery {
                    message: Harness::inbound(subject),
                    ack: Some(Box::new(ack)),
                }))
                .unwrap();
        }

        fn acked(&self) -> usize {
            self.acks.load(Ordering::SeqCst)
        }

        fn handle_attempts(&self) -> usize {
            self.attempts.load(Ordering::SeqCst)
        }

        fn attempts(&self) -> usize {
            self.bus_log.attempts.load(Ordering::SeqCst)
        }
    }

    struct CountingAck {
        acks: Arc<AtomicUsize>,
        naks: Arc<AtomicUsize>,
    }

    impl Ack for CountingAck {
        fn ack(self: Box<Self>) {
            self.acks.fetch_add(1, Ordering::SeqCst);
        }
        fn nak(self: Box<Self>) {
            self.naks.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Waits for a condition the loop brings about on its own thread.
    fn eventually(what: &str, condition: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !condition() {
            assert!(Instant::now() < deadline, "timed out waiting for: {what}");
            thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn wake_messages_reach_the_handler_and_are_counted() {
        let mut h = Harness::new(true, Some(1));
        let running = h.start();
        h.message("attacker.observed");
        h.message("email.received");
        eventually("two messages processed", || {
            Counters::get(&h.counters.processed) == 2
        });
        h.shutdown.send(ShutdownCause::Signal("SIGTERM")).unwrap();
        let stopped = running.join().unwrap();
        assert_eq!(stopped.cause, ShutdownCause::Signal("SIGTERM"));
        let seen: Vec<String> = h.batches.lock().unwrap().concat();
        assert_eq!(seen, ["attacker.observed", "email.received"]);
    }

    #[test]
    fn a_queued_burst_is_handled_in_bounded_batches() {
        let mut h = Harness::new(true, Some(1));
        for _ in 0..(MAX_BATCH + 44) {
            h.message("attacker.observed");
        }
        let running = h.start();
        eventually("burst processed", || {
            Counters::get(&h.counters.processed) == (MAX_BATCH + 44) as u64
        });
        h.shutdown.send(ShutdownCause::Signal("SIGINT")).unwrap();
        running.join().unwrap();
        let sizes: Vec<usize> = h.batches.lock().unwrap().iter().map(Vec::len).collect();
        assert_eq!(sizes, [MAX_BATCH, 44]);
    }

    /// The handler settles once per quiet spell: not while messages keep arriving closer
    /// together than the quiet period, once after they stop, and not again until more work.
    #[test]
    fn the_handler_settles_once_after_each_burst() {
        // Long next to the gaps between messages, so a loaded machine cannot fake a pause.
        let quiet = Duration::from_secs(1);
        let mut h = Harness::new(true, Some(1));
        h.main_loop = h.main_loop.take().map(|m| m.with_settle_after(quiet));
        let running = h.start();
        let settles = || h.settles.load(Ordering::SeqCst);
        thread::sleep(quiet + quiet / 2);
        assert_eq!(settles(), 0, "settled before any work");
        for sent in 1..=10 {
            h.message("attacker.observed");
            eventually("the message handled", || {
                Counters::get(&h.counters.processed) == sent
            });
            thread::sleep(quiet / 30);
        }
        assert_eq!(settles(), 0, "settled while messages kept coming");
        eventually("settled after the burst", || settles() == 1);
        thread::sleep(quiet * 2);
        assert_eq!(settles(), 1, "settled again without new work");
        h.message("attacker.observed");
        eventually("settled after the second burst", || settles() == 2);
        h.shutdown.send(ShutdownCause::Signal("SIGTERM")).unwrap();
        running.join().unwrap();
    }

    /// Ticks are not work: a poll interval shorter than the quiet period does not put
    /// settling off.
    #[test]
    fn ticks_do_not_put_settling_off() {
        let quiet = Duration::from_millis(300);
        let mut h = Harness::new(true, Some(1));
        h.main_loop = h.main_loop.take().map(|m| m.with_settle_after(quiet));
        let running = h.start();
        h.message("attacker.observed");
        let ticking = {
            let tick = h.tick.clone();
            thread::spawn(move || {
                while tick.send(Instant::now()).is_ok() {
                    thread::sleep(Duration::from_millis(20));
                }
            })
        };
        eventually("settled while ticking", || {
            h.settles.load(Ordering::SeqCst) == 1
        });
        h.shutdown.send(ShutdownCause::Signal("SIGTERM")).unwrap();
        running.join().unwrap();
        drop(h);
        ticking.join().unwrap();
    }

    /// A held batch is unfinished work: the loop does not settle until it has gone through.
    #[test]
    fn a_held_batch_defers_settling() {
        let quiet = Duration::from_millis(100);
        let mut h = Harness::new(true, Some(1));
        h.main_loop = h.main_loop.take().map(|m| m.with_settle_after(quiet));
        let running = h.start();
        h.message("attacker.observed");
        eventually("settled after the first message", || {
            h.settles.load(Ordering::SeqCst) == 1
        });
        h.failing.store(true, Ordering::SeqCst);
        h.message("email.received");
        eventually("the failing attempt", || h.handle_attempts() == 2);
        thread::sleep(quiet * 4);
        assert_eq!(h.settles.load(Ordering::SeqCst), 1, "settled while holding");
        h.failing.store(false, Ordering::SeqCst);
        h.tick.send(Instant::now()).unwrap();
        eventually("settled after the retry", || {
            h.settles.load(Ordering::SeqCst) == 2
        });
        h.shutdown.send(ShutdownCause::Signal("SIGTERM")).unwrap();
        running.join().unwrap();
    }

    #[test]
    fn ticks_retry_the_connection_only_while_it_is_down() {
        let mut h = Harness::new(true, Some(3));
        let running = h.start();
        eventually("the start-up attempt", || h.attempts() == 1);
        h.tick.send(Instant::now()).unwrap();
        eventually("a retry on the first tick", || h.attempts() == 2);
        h.tick.send(Instant::now()).unwrap();
        eventually("a retry that connects", || h.attempts() == 3);
        for _ in 0..5 {
            h.tick.send(Instant::now()).unwrap();
        }
        h.message("attacker.observed");
        eventually("the loop got past the ticks", || {
            Counters::get(&h.counters.processed) == 1
        });
        assert_eq!(h.attempts(), 3, "no attempts once connected");
        h.shutdown.send(ShutdownCause::Signal("SIGTERM")).unwrap();
        running.join().unwrap();
    }

    #[test]
    fn a_disabled_bus_is_never_dialled() {
        let mut h = Harness::new(false, Some(1));
        let running = h.start();
        for _ in 0..3 {
            h.tick.send(Instant::now()).unwrap();
        }
        h.message("attacker.observed");
        eventually("message processed", || {
            Counters::get(&h.counters.processed) == 1
        });
        h.shutdown.send(ShutdownCause::Signal("SIGTERM")).unwrap();
        running.join().unwrap();
        assert_eq!(h.attempts(), 0);
    }

    #[test]
    fn shutdown_returns_the_cause_and_closes_the_bus_in_order() {
        let mut h = Harness::new(true, Some(1));
        let running = h.start();
        let cause = ShutdownCause::Control {
            requested_by: "admin".into(),
        };
        h.shutdown.send(cause.clone()).unwrap();
        let stopped = running.join().unwrap();
        assert_eq!(stopped.cause, cause);
        assert!(h.bus_log.closed.load(Ordering::SeqCst));
    }

    #[test]
    fn shutdown_wins_over_a_flood_and_still_finishes_what_was_queued() {
        let mut h = Harness::new(true, Some(1));
        for _ in 0..WAKE_CAPACITY {
            h.message("canary.x.triggered");
        }
        h.shutdown.send(ShutdownCause::Signal("SIGTERM")).unwrap();
        let stopped = h.start().join().unwrap();
        assert_eq!(stopped.cause, ShutdownCause::Signal("SIGTERM"));
        // Nothing was handled before the stop; the queue was drained after intake stopped.
        assert_eq!(Counters::get(&h.counters.processed), WAKE_CAPACITY as u64);
        assert!(
            h.batches
                .lock()
                .unwrap()
                .iter()
                .all(|b| b.len() <= MAX_BATCH)
        );
    }

    #[test]
    fn sighup_reaches_the_handler_after_its_batch() {
        let mut h = Harness::new(true, Some(1));
        h.message("attacker.observed");
        h.wake.send(Wake::Reload).unwrap();
        let running = h.start();
        eventually("message processed", || {
            Counters::get(&h.counters.processed) == 1
        });
        h.shutdown.send(ShutdownCause::Signal("SIGTERM")).unwrap();
        let stopped = running.join().unwrap();
        assert_eq!(stopped.handler.reloads, 1);
        assert_eq!(h.batches.lock().unwrap().len(), 1);
    }

    #[test]
    fn durable_messages_are_acked_only_after_their_batch_succeeded() {
        let mut h = Harness::new(true, Some(1));
        h.failing.store(true, Ordering::SeqCst);
        h.durable_message("attacker.session.ended");
        h.durable_message("email.received");
        let running = h.start();
        eventually("the first attempt", || h.handle_attempts() == 1);
        // The failed batch is held: new work waits, a tick retries it.
        h.message("attacker.observed");
        h.tick.send(Instant::now()).unwrap();
        eventually("the retry on the tick", || h.handle_attempts() == 2);
        assert_eq!(h.acked(), 0);
        assert_eq!(Counters::get(&h.counters.processed), 0);
        assert_eq!(h.wake.len(), 1, "new work was taken while a batch was held");

        h.failing.store(false, Ordering::SeqCst);
        h.tick.send(Instant::now()).unwrap();
        eventually("the held batch and the waiting message", || {
            Counters::get(&h.counters.processed) == 3
        });
        assert_eq!(h.acked(), 2);
        let batches = h.batches.lock().unwrap().clone();
        assert_eq!(
            batches,
            [
                vec!["attacker.session.ended", "email.received"],
                vec!["attacker.observed"]
            ]
        );
        h.shutdown.send(ShutdownCause::Signal("SIGTERM")).unwrap();
        running.join().unwrap();
    }

    /// A held batch is tried again on its own, without waiting for a tick, until it goes
    /// through; then the retries stop.
    #[test]
    fn a_held_batch_is_retried_without_waiting_for_a_tick() {
        let mut h = Harness::new(true, Some(1));
        h.main_loop = h
            .main_loop
            .take()
            .map(|m| m.with_retry_after(Duration::from_millis(20), Duration::from_millis(80)));
        h.failing.store(true, Ordering::SeqCst);
        h.durable_message("attacker.session.ended");
        let running = h.start();
        eventually("three retries, no tick sent", || h.handle_attempts() >= 4);
        assert_eq!(h.acked(), 0);
        h.failing.store(false, Ordering::SeqCst);
        eventually("the batch went through", || h.acked() == 1);
        let attempts = h.handle_attempts();
        thread::sleep(Duration::from_millis(300));
        assert_eq!(
            h.handle_attempts(),
            attempts,
            "retried after it went through"
        );
        h.shutdown.send(ShutdownCause::Signal("SIGTERM")).unwrap();
        running.join().unwrap();
    }

    #[test]
    fn a_batch_that_still_fails_at_shutdown_is_handed_back() {
        let mut h = Harness::new(true, Some(1));
        h.failing.store(true, Ordering::SeqCst);
        h.durable_message("canary.x.triggered");
        let running = h.start();
        eventually("the batch was tried", || h.handle_attempts() == 1);
        h.shutdown.send(ShutdownCause::Signal("SIGTERM")).unwrap();
        running.join().unwrap();
        assert_eq!(
            h.handle_attempts(),
            2,
            "shutdown gives a held batch one last try"
        );
        assert_eq!(h.acked(), 0);
        assert!(h.bus_log.closed.load(Ordering::SeqCst));
    }

    #[test]
    fn dropping_every_shutdown_sender_stops_the_loop() {
        let mut h = Harness::new(true, Some(1));
        let running = h.start();
        drop(h.shutdown);
        let stopped = running.join().unwrap();
        assert_eq!(stopped.cause, ShutdownCause::Orphaned);
    }
}
