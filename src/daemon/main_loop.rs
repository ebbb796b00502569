//! The main loop: the whole life of the daemon on one screen.
//!
//! The loop sees only channels ([`Inbox`]): subscription threads put messages on
//! **messages**, signals and the control subject put stop and reload requests on **control**,
//! and a `crossbeam_channel::tick` drives **tick**. Two one-shot timers ([`Timers`]) join
//! them: one tells the handler a burst is over, the other retries a batch the handler could
//! not finish. [`MainLoop::next_event`] turns whichever inbox is ready into an [`Event`];
//! [`MainLoop::handle_event`] holds every policy about what follows. Everything outside the
//! loop sits behind two seams, [`Bus`] and [`Handler`], so unit tests drive the loop by
//! sending on its channels, with no network at all.

use std::collections::VecDeque;
use std::error::Error;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, never, select};

use super::activity::Activity;
use super::timers::Timers;
use crate::channels::{Ack, Bus, Control, ControlReceiver, Delivery, Outbox, ShutdownCause};
use crate::counters::Counters;
use crate::envelope::Inbound;

/// The most messages handled as one burst; keeps a flood from starving tick and control.
pub const MAX_BATCH: usize = 256;

/// The most message weight ([`Inbound::bytes`], the reckoned decoded size) taken into one
/// burst: with [`MAX_BATCH_TAGS`], what bounds the memory one batch can hold, whatever the
/// messages are.
pub const MAX_BATCH_BYTES: usize = 16 << 20;

/// Once a batch's messages have given this many tags, a handler commits them and hands the
/// rest of the batch back (a single message gives at most its budget, `tagging/budget.rs`).
pub const MAX_BATCH_TAGS: usize = 50_000;

/// How long, after a stop, queued messages are still handled before the rest is handed back
/// (durable mode) or given up (core mode): the unit allows 15 s for the whole stop.
pub const STOP_DRAIN: Duration = Duration::from_secs(1);

/// The main loop's inboxes.
pub struct Inbox {
    pub messages: Receiver<Delivery>,
    /// Served before messages, and while a failed batch is held.
    pub control: ControlReceiver,
    pub tick: Receiver<Instant>,
    /// How often `tick` fires; named in the log while the bus is unreachable.
    pub tick_every: Duration,
}

/// What happens to messages. The tagging pipeline plugs in here.
pub trait Handler {
    /// One coalesced burst of messages, in arrival order. `Ok(n)` means the first `n` are done
    /// (and acknowledged); the rest are handed back and come first in the next batch. A
    /// handler stops early when its batch has given [`MAX_BATCH_TAGS`] tags or when
    /// `interrupt` says so, and is otherwise expected to do them all. An error means nothing of
    /// the batch may be considered done: it is kept, retried (after a backoff, and on every
    /// tick), and not acknowledged.
    fn handle_batch(
        &mut self,
        batch: &[Inbound],
        outbox: &dyn Outbox,
        interrupt: &Interrupt,
    ) -> Result<usize, BatchFailed>;
    /// SIGHUP arrived.
    fn reload(&mut self);
    /// Nothing happened for a little while since the last batch or reload: a moment to give
    /// back memory that only a burst needed, so that an idle daemon is as small after traffic
    /// as it was before it. Called once per quiet spell.
    fn settle(&mut self) {}
    /// The idle tick (every poll interval): a moment for work that waits on something
    /// outside the bus, such as messages held for rows DECNET's database does not have yet.
    fn tick(&mut self, _outbox: &dyn Outbox) {}
}

/// Asked by a handler between messages: whether to commit what it has and hand the rest of
/// the batch back, because a stop or reload is waiting or the stop's drain time is up.
pub struct Interrupt<'a>(Option<&'a dyn Fn() -> bool>);

impl<'a> Interrupt<'a> {
    /// For callers that always want the whole batch done (benchmarks, tests).
    pub const NEVER: Interrupt<'static> = Interrupt(None);

    pub fn when(asked: &'a dyn Fn() -> bool) -> Interrupt<'a> {
        Interrupt(Some(asked))
    }

    pub fn requested(&self) -> bool {
        self.0.is_some_and(|asked| asked())
    }
}

type BoxedError = Box<dyn Error + Send + Sync>;

/// Why the handler could not finish a batch. Either way the batch is held and retried, since
/// giving it up would lose it; the kind decides how loudly that is said.
#[derive(Debug, thiserror::Error)]
pub enum BatchFailed {
    /// May pass by itself: a full disk, a locked database.
    #[error("{0}")]
    Transient(#[source] BoxedError),
    /// Needs an operator: a read-only store, a schema from elsewhere.
    #[error("{0} (not expected to pass by itself)")]
    Lasting(#[source] BoxedError),
    /// Going on would be wrong: the store is not the file it was, or is damaged. The batch is
    /// handed back unacknowledged and the worker stops with a failure status.
    #[error("{0}")]
    Fatal(#[source] BoxedError),
}

/// One thing for the loop to react to.
enum Event {
    Control(Control),
    /// The first message of a burst; the rest are taken off the channel when handling it.
    Message(Delivery),
    /// Messages a handler handed back are waiting.
    Carried,
    /// Every sender of the message channel is gone.
    MessagesClosed,
    Tick,
    /// Quiet since the last batch or reload.
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
    bus: B,
    handler: H,
    counters: Arc<Counters>,
    /// A batch the handler failed on, with its acks: no new work is taken until it is done.
    held: Option<Vec<Delivery>>,
    /// Messages a handler handed back undone, in order: they go before the channel's.
    carried: VecDeque<Delivery>,
    timers: Timers,
    failed_connects: u64,
    outage: Outage,
    /// Set by a fatal batch failure: the loop stops with it.
    fatal: Option<String>,
    /// The minute's info line while messages come.
    activity: Activity,
}

/// A failure that lasts (a database down for an hour) is said once when it starts, again only
/// when its reason changes, and once when it ends: not once per retry.
#[derive(Debug, Default)]
struct Outage {
    /// When the first failed attempt was, and why the last one failed.
    since: Option<(Instant, String)>,
    attempts: u32,
}

impl Outage {
    /// Records a failed attempt; `true` when it is news (the first, or another reason).
    fn failed(&mut self, reason: String) -> bool {
        self.attempts += 1;
        match &mut self.since {
            Some((_, last)) if *last == reason => false,
            Some((_, last)) => {
                *last = reason;
                true
            }
            None => {
                self.since = Some((Instant::now(), reason));
                true
            }
        }
    }

    /// Records a success; how long the outage lasted and how many attempts failed, if one ended.
    fn ended(&mut self) -> Option<(Duration, u32)> {
        let (since, _) = self.since.take()?;
        let attempts = std::mem::take(&mut self.attempts);
        Some((since.elapsed(), attempts))
    }
}

impl<B: Bus, H: Handler> MainLoop<B, H> {
    pub fn new(inbox: Inbox, bus: B, handler: H, counters: Arc<Counters>) -> MainLoop<B, H> {
        let activity = Activity::new(&counters, Instant::now());
        MainLoop {
            inbox,
            bus,
            handler,
            counters,
            activity,
            held: None,
            carried: VecDeque::new(),
            timers: Timers::default(),
            failed_connects: 0,
            outage: Outage::default(),
            fatal: None,
        }
    }

    /// Other settle and retry timing than the daemon's (tests).
    pub fn with_timers(mut self, timers: Timers) -> Self {
        self.timers = timers;
        self
    }

    /// Runs until a stop arrives, then shuts down in order and returns.
    pub fn run(mut self) -> Stopped<H> {
        if self.bus.wanted() {
            self.try_connect();
        } else {
            log::info!("bus disabled by configuration: poll-only, no connection attempts");
        }
        let cause = loop {
            let event = self.next_event();
            if let Some(cause) = self.handle_event(event) {
                break cause;
            }
        };
        log::info!("shutting down: {cause}");
        self.shut_down(&cause);
        Stopped {
            cause,
            handler: self.handler,
        }
    }

    /// Control first: neither a flood of messages nor a held batch may delay a stop or a
    /// reload.
    fn next_event(&mut self) -> Event {
        let control = &self.inbox.control;
        if let Some(request) = control.try_take() {
            return Event::Control(request);
        }
        let holding = self.held.is_some();
        if !holding && !self.carried.is_empty() {
            return Event::Carried;
        }
        let no_messages = never();
        let messages = if holding {
            &no_messages
        } else {
            &self.inbox.messages
        };
        let (settle, retry) = self.timers.deadlines(holding);
        select! {
            recv(control.receiver()) -> request => Event::Control(match request {
                Ok(request) => control.taken(request),
                Err(_) => Control::Stop(ShutdownCause::Orphaned),
            }),
            recv(messages) -> delivery => match delivery {
                Ok(delivery) => Event::Message(delivery),
                Err(_) => Event::MessagesClosed,
            },
            recv(self.inbox.tick) -> _ => Event::Tick,
            recv(settle) -> _ => Event::Settle,
            recv(retry) -> _ => Event::Retry,
        }
    }

    /// What each event leads to; `Some` ends the loop.
    fn handle_event(&mut self, event: Event) -> Option<ShutdownCause> {
        match event {
            Event::Control(Control::Stop(cause)) => return Some(cause),
            Event::Control(Control::Reload) => {
                log::info!("reload requested (SIGHUP)");
                self.handler.reload();
                self.timers.worked();
            }
            Event::Message(first) => {
                let batch = self.burst(Some(first));
                self.handle(batch, Deadline::UntilAsked);
            }
            Event::Carried => {
                let batch = self.burst(None);
                self.handle(batch, Deadline::UntilAsked);
            }
            // Stop selecting on a closed channel, so the loop does not spin.
            Event::MessagesClosed => self.inbox.messages = never(),
            Event::Tick => {
                if self.bus.wanted() && !self.bus.is_connected() {
                    self.try_connect();
                }
                self.retry_held();
                self.handler.tick(&self.bus);
            }
            Event::Settle => {
                self.timers.settled();
                self.handler.settle();
            }
            Event::Retry => self.retry_held(),
        }
        if let Some(line) = self.activity.due(&self.counters, Instant::now()) {
            log::info!("{line}");
        }
        self.fatal
            .take()
            .map(|reason| ShutdownCause::Failed { reason })
    }

    /// What was handed back, then `first`, then whatever else is already queued: up to
    /// [`MAX_BATCH`] messages and [`MAX_BATCH_BYTES`] (at least one message, however large).
    fn burst(&mut self, first: Option<Delivery>) -> Vec<Delivery> {
        let mut batch = Vec::new();
        let mut bytes = 0;
        let full = |batch: &Vec<Delivery>, bytes: usize, next: &Delivery| {
            !batch.is_empty()
                && (batch.len() >= MAX_BATCH || bytes + next.message.bytes > MAX_BATCH_BYTES)
        };
        let mut waiting = std::mem::take(&mut self.carried);
        waiting.extend(first);
        while let Some(next) = waiting.pop_front() {
            if full(&batch, bytes, &next) {
                waiting.push_front(next);
                break;
            }
            bytes += next.message.bytes;
            batch.push(next);
        }
        if waiting.is_empty() {
            while let Ok(next) = self.inbox.messages.try_recv() {
                if full(&batch, bytes, &next) {
                    waiting.push_back(next);
                    break;
                }
                bytes += next.message.bytes;
                batch.push(next);
            }
        }
        self.carried = waiting;
        batch
    }

    fn retry_held(&mut self) {
        if let Some(batch) = self.held.take() {
            log::debug!("retrying a held batch of {} messages", batch.len());
            self.handle(batch, Deadline::UntilAsked);
        }
    }

    /// Runs the handler over a batch; acknowledges what it did, carries what it handed back,
    /// holds the whole batch when it failed.
    fn handle(&mut self, batch: Vec<Delivery>, deadline: Deadline) {
        if batch.is_empty() {
            return;
        }
        let (messages, acks): (Vec<Inbound>, Vec<Option<Box<dyn Ack>>>) =
            batch.into_iter().map(|d| (d.message, d.ack)).unzip();
        let control = self.inbox.control.receiver();
        let asked = || match deadline {
            Deadline::UntilAsked => !control.is_empty(),
            Deadline::At(at) => Instant::now() >= at,
        };
        let interrupt = Interrupt::when(&asked);
        match self.handler.handle_batch(&messages, &self.bus, &interrupt) {
            Ok(done) => {
                let done = done.min(messages.len());
                self.timers.succeeded();
                if let Some((lasted, attempts)) = self.outage.ended() {
                    log::info!(
                        "the held batch of {} messages went through after {attempts} failed attempts over {:.1} s",
                        messages.len(),
                        lasted.as_secs_f64()
                    );
                }
                Counters::add(&self.counters.processed, done as u64);
                let mut finished = rejoin(messages, acks);
                let handed_back = finished.split_off(done);
                for ack in finished.into_iter().filter_map(|delivery| delivery.ack) {
                    ack.ack();
                }
                for delivery in handed_back.into_iter().rev() {
                    self.carried.push_front(delivery);
                }
            }
            Err(BatchFailed::Fatal(error)) => {
                log::error!(
                    "stopping: {error}; the batch of {} messages is handed back unacknowledged",
                    messages.len()
                );
                acks.into_iter().flatten().for_each(|ack| ack.nak());
                self.fatal = Some(error.to_string());
            }
            Err(failure) => {
                let wait = self.timers.failed().as_secs_f64();
                let count = messages.len();
                if self.outage.failed(failure.to_string()) {
                    match failure {
                        BatchFailed::Transient(_) => log::warn!(
                            "could not finish a batch of {count} messages ({failure}); holding it, retrying in {wait} s and backing off (said again only if the reason changes)"
                        ),
                        BatchFailed::Lasting(_) | BatchFailed::Fatal(_) => log::error!(
                            "could not finish a batch of {count} messages ({failure}); holding it, retrying in {wait} s and backing off (said again only if the reason changes)"
                        ),
                    }
                } else {
                    log::debug!("the held batch failed again ({failure}); retrying in {wait} s");
                }
                self.held = Some(rejoin(messages, acks));
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
                        "bus unavailable ({err}); running poll-only and retrying every {:?}",
                        self.inbox.tick_every
                    );
                } else {
                    log::debug!("bus still unavailable ({err})");
                }
            }
        }
    }

    /// Stop taking messages, handle what is already queued for at most [`STOP_DRAIN`], then
    /// close the bus. What is left (a batch that still fails, messages past the drain time) is
    /// given up unacknowledged: in durable mode it is handed back for redelivery.
    fn shut_down(&mut self, cause: &ShutdownCause) {
        self.bus.stop_intake();
        // After a fatal failure nothing more is handled: it would fail the same way.
        let deadline = if cause.is_failure() {
            Instant::now()
        } else {
            Instant::now() + STOP_DRAIN
        };
        if let Some(batch) = self.held.take() {
            self.handle(batch, Deadline::At(deadline));
        }
        while self.held.is_none() && Instant::now() < deadline {
            let batch = self.burst(None);
            if batch.is_empty() {
                break;
            }
            self.handle(batch, Deadline::At(deadline));
        }
        let mut left: Vec<Delivery> = self.held.take().unwrap_or_default();
        left.extend(self.carried.drain(..));
        left.extend(self.inbox.messages.try_iter());
        if !left.is_empty() {
            let durable = left.iter().any(|delivery| delivery.ack.is_some());
            log::warn!(
                "stopping with {} messages not handled{}",
                left.len(),
                if durable {
                    "; they are handed back and delivered again"
                } else {
                    " (core mode: they are lost)"
                }
            );
            left.into_iter()
                .filter_map(|delivery| delivery.ack)
                .for_each(|ack| ack.nak());
        }
        self.bus.close();
    }
}

/// The deliveries again, from the messages the handler saw and their acks (their room on the
/// message channel was given back when the batch was taken).
fn rejoin(messages: Vec<Inbound>, acks: Vec<Option<Box<dyn Ack>>>) -> Vec<Delivery> {
    messages
        .into_iter()
        .zip(acks)
        .map(|(message, ack)| Delivery {
            message,
            ack,
            permit: None,
        })
        .collect()
}

/// Until when a batch may run before its handler is asked to hand the rest back.
#[derive(Clone, Copy)]
enum Deadline {
    /// While running: until a stop or reload is waiting.
    UntilAsked,
    /// While stopping.
    At(Instant),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::{ControlSender, MESSAGE_CAPACITY, control_channel, message_channel};
    use crate::counters::Mode;
    use crate::daemon::timers::SETTLE_AFTER;
    use crate::envelope::Envelope;
    use crossbeam_channel::{Sender, unbounded};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::thread::{self, JoinHandle};
    use std::time::Duration;

    const HOUR: Duration = Duration::from_secs(3600);

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
        type Error = String;
        fn wanted(&self) -> bool {
            self.wanted
        }
        fn is_connected(&self) -> bool {
            self.connected
        }
        fn connect(&mut self) -> Result<(), String> {
            let attempt = self.log.attempts.fetch_add(1, Ordering::SeqCst) + 1;
            if Some(attempt) == self.succeed_on_attempt {
                self.connected = true;
                Ok(())
            } else {
                Err("no answer from the fake bus".into())
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
        /// How many batches had gone through at each reload.
        batches_before_reloads: Vec<usize>,
        reload_count: Arc<AtomicUsize>,
        settles: Arc<AtomicUsize>,
        /// While set, every batch fails (a store that cannot be written).
        failing: Arc<AtomicBool>,
        attempts: Arc<AtomicUsize>,
        /// When not zero, the most messages a batch does before handing the rest back (as a
        /// batch that reached its tag limit does).
        take_at_most: Arc<AtomicUsize>,
        /// Time each message takes; the recorder hands the rest back when interrupted.
        per_message: Duration,
    }

    impl Handler for Recorder {
        fn handle_batch(
            &mut self,
            batch: &[Inbound],
            _outbox: &dyn Outbox,
            interrupt: &Interrupt,
        ) -> Result<usize, BatchFailed> {
            self.attempts.fetch_add(1, Ordering::SeqCst);
            if self.failing.load(Ordering::SeqCst) {
                return Err(BatchFailed::Transient("disk full".into()));
            }
            let limit = match self.take_at_most.load(Ordering::SeqCst) {
                0 => batch.len(),
                n => n.min(batch.len()),
            };
            let mut subjects = Vec::new();
            for message in &batch[..limit] {
                if interrupt.requested() {
                    break;
                }
                thread::sleep(self.per_message);
                subjects.push(message.subject.clone());
            }
            let done = subjects.len();
            self.batches.lock().unwrap().push(subjects);
            Ok(done)
        }
        fn reload(&mut self) {
            self.reloads += 1;
            self.batches_before_reloads
                .push(self.batches.lock().unwrap().len());
            self.reload_count.fetch_add(1, Ordering::SeqCst);
        }
        fn settle(&mut self) {
            self.settles.fetch_add(1, Ordering::SeqCst);
        }
    }

    struct Harness {
        messages: Sender<Delivery>,
        tick: Sender<Instant>,
        control: ControlSender,
        bus_log: Arc<BusLog>,
        batches: Arc<Mutex<Vec<Vec<String>>>>,
        failing: Arc<AtomicBool>,
        attempts: Arc<AtomicUsize>,
        settles: Arc<AtomicUsize>,
        reloads: Arc<AtomicUsize>,
        acks: Arc<AtomicUsize>,
        naks: Arc<AtomicUsize>,
        counters: Arc<Counters>,
        main_loop: Option<MainLoop<FakeBus, Recorder>>,
    }

    impl Harness {
        fn new(wanted: bool, succeed_on_attempt: Option<usize>) -> Harness {
            let (messages, messages_rx) = message_channel();
            let (tick, tick_rx) = unbounded();
            let (control, control_rx) = control_channel();
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
            let reloads = handler.reload_count.clone();
            let counters = Arc::new(Counters::new(Mode::Core));
            let inbox = Inbox {
                messages: messages_rx,
                control: control_rx,
                tick: tick_rx,
                tick_every: Duration::from_secs(60),
            };
            Harness {
                messages,
                tick,
                control,
                bus_log,
                batches,
                failing,
                attempts,
                settles,
                reloads,
                acks: Arc::new(AtomicUsize::new(0)),
                naks: Arc::new(AtomicUsize::new(0)),
                counters: counters.clone(),
                // Held batches wait for a tick unless a test asks otherwise, so that attempts
                // can be counted exactly.
                main_loop: Some(
                    MainLoop::new(inbox, bus, handler, counters).with_timers(Timers::new(
                        SETTLE_AFTER,
                        HOUR,
                        HOUR,
                    )),
                ),
            }
        }

        fn set_timers(&mut self, timers: Timers) {
            self.main_loop = self.main_loop.take().map(|m| m.with_timers(timers));
        }

        fn start(&mut self) -> JoinHandle<Stopped<Recorder>> {
            let main_loop = self.main_loop.take().unwrap();
            thread::spawn(move || main_loop.run())
        }

        fn inbound(subject: &str) -> Inbound {
            Inbound {
                subject: subject.into(),
                envelope: Envelope::new("t", Default::default()),
                bytes: 1000,
            }
        }

        fn message(&self, subject: &str) {
            self.messages
                .send(Delivery::unacked(Harness::inbound(subject)))
                .unwrap();
        }

        /// A message that counts its acknowledgement, as a JetStream message would.
        fn durable_message(&self, subject: &str) {
            let ack = CountingAck {
                acks: self.acks.clone(),
                naks: self.naks.clone(),
            };
            self.messages
                .send(Delivery {
                    message: Harness::inbound(subject),
                    ack: Some(Box::new(ack)),
                    permit: None,
                })
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
        h.control.stop(ShutdownCause::Signal("SIGTERM"));
        let stopped = running.join().unwrap();
        assert_eq!(stopped.cause, ShutdownCause::Signal("SIGTERM"));
        let seen: Vec<String> = h.batches.lock().unwrap().concat();
        assert_eq!(seen, ["attacker.observed", "email.received"]);
    }

    #[test]
    fn an_outage_is_news_when_it_starts_or_changes_and_ends_once() {
        let mut outage = Outage::default();
        assert_eq!(outage.ended(), None);
        assert!(outage.failed("database locked".into()));
        assert!(!outage.failed("database locked".into()));
        assert!(outage.failed("disk full".into()));
        assert!(!outage.failed("disk full".into()));
        let (_, attempts) = outage.ended().unwrap();
        assert_eq!(attempts, 4);
        assert_eq!(outage.ended(), None);
        assert!(
            outage.failed("database locked".into()),
            "a new outage is news again"
        );
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
        h.control.stop(ShutdownCause::Signal("SIGINT"));
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
        h.set_timers(Timers::new(quiet, HOUR, HOUR));
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
        h.control.stop(ShutdownCause::Signal("SIGTERM"));
        running.join().unwrap();
    }

    /// Ticks are not work: a poll interval shorter than the quiet period does not put
    /// settling off.
    #[test]
    fn ticks_do_not_put_settling_off() {
        let quiet = Duration::from_millis(300);
        let mut h = Harness::new(true, Some(1));
        h.set_timers(Timers::new(quiet, HOUR, HOUR));
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
        h.control.stop(ShutdownCause::Signal("SIGTERM"));
        running.join().unwrap();
        drop(h);
        ticking.join().unwrap();
    }

    /// A held batch is unfinished work: the loop does not settle until it has gone through.
    #[test]
    fn a_held_batch_defers_settling() {
        let quiet = Duration::from_millis(100);
        let mut h = Harness::new(true, Some(1));
        h.set_timers(Timers::new(quiet, HOUR, HOUR));
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
        h.control.stop(ShutdownCause::Signal("SIGTERM"));
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
        h.control.stop(ShutdownCause::Signal("SIGTERM"));
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
        h.control.stop(ShutdownCause::Signal("SIGTERM"));
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
        h.control.stop(cause.clone());
        let stopped = running.join().unwrap();
        assert_eq!(stopped.cause, cause);
        assert!(h.bus_log.closed.load(Ordering::SeqCst));
    }

    #[test]
    fn shutdown_wins_over_a_flood_and_still_finishes_what_was_queued() {
        let mut h = Harness::new(true, Some(1));
        for _ in 0..MESSAGE_CAPACITY {
            h.message("canary.x.triggered");
        }
        h.control.stop(ShutdownCause::Signal("SIGTERM"));
        let stopped = h.start().join().unwrap();
        assert_eq!(stopped.cause, ShutdownCause::Signal("SIGTERM"));
        // Nothing was handled before the stop; the queue was drained after intake stopped.
        assert_eq!(
            Counters::get(&h.counters.processed),
            MESSAGE_CAPACITY as u64
        );
        assert!(
            h.batches
                .lock()
                .unwrap()
                .iter()
                .all(|b| b.len() <= MAX_BATCH)
        );
    }

    /// A reload does not wait behind messages already queued.
    #[test]
    fn sighup_is_served_ahead_of_queued_messages() {
        let mut h = Harness::new(true, Some(1));
        h.message("attacker.observed");
        h.control.reload();
        let running = h.start();
        eventually("message processed", || {
            Counters::get(&h.counters.processed) == 1
        });
        h.control.stop(ShutdownCause::Signal("SIGTERM"));
        let stopped = running.join().unwrap();
        assert_eq!(stopped.handler.reloads, 1);
        assert_eq!(h.batches.lock().unwrap().len(), 1);
        assert_eq!(stopped.handler.batches_before_reloads, [0]);
    }

    /// While a failed batch is held no message is taken, but reloads (new rules may be what
    /// the batch needs) and stops still are.
    #[test]
    fn reload_and_stop_are_served_while_a_batch_is_held() {
        let mut h = Harness::new(true, Some(1));
        h.failing.store(true, Ordering::SeqCst);
        h.durable_message("attacker.session.ended");
        let running = h.start();
        eventually("the failing attempt", || h.handle_attempts() == 1);
        h.message("attacker.observed");
        h.control.reload();
        eventually("the reload", || h.reloads.load(Ordering::SeqCst) == 1);
        assert_eq!(h.messages.len(), 1, "a message was taken while holding");
        h.control.stop(ShutdownCause::Signal("SIGTERM"));
        let stopped = running.join().unwrap();
        assert_eq!(stopped.cause, ShutdownCause::Signal("SIGTERM"));
        assert_eq!(h.acked(), 0);
        assert_eq!(
            h.naks.load(Ordering::SeqCst),
            1,
            "the held message handed back"
        );
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
        assert_eq!(
            h.messages.len(),
            1,
            "new work was taken while a batch was held"
        );

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
        h.control.stop(ShutdownCause::Signal("SIGTERM"));
        running.join().unwrap();
    }

    /// A held batch is tried again on its own, without waiting for a tick, until it goes
    /// through; then the retries stop.
    #[test]
    fn a_held_batch_is_retried_without_waiting_for_a_tick() {
        let mut h = Harness::new(true, Some(1));
        h.set_timers(Timers::new(
            SETTLE_AFTER,
            Duration::from_millis(20),
            Duration::from_millis(80),
        ));
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
        h.control.stop(ShutdownCause::Signal("SIGTERM"));
        running.join().unwrap();
    }

    #[test]
    fn a_batch_that_still_fails_at_shutdown_is_handed_back() {
        let mut h = Harness::new(true, Some(1));
        h.failing.store(true, Ordering::SeqCst);
        h.durable_message("canary.x.triggered");
        let running = h.start();
        eventually("the batch was tried", || h.handle_attempts() == 1);
        h.control.stop(ShutdownCause::Signal("SIGTERM"));
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
        drop(h.control);
        let stopped = running.join().unwrap();
        assert_eq!(stopped.cause, ShutdownCause::Orphaned);
    }

    /// A handler that stops early (its batch reached the tag limit) has done only those
    /// messages: only they are acknowledged, and the rest come next, in order.
    #[test]
    fn messages_handed_back_come_first_in_the_next_batch_and_are_acked_after_it() {
        let mut h = Harness::new(true, Some(1));
        let take = h.main_loop.as_ref().unwrap().handler.take_at_most.clone();
        take.store(3, Ordering::SeqCst);
        for i in 0..8 {
            h.durable_message(&format!("m{i}"));
        }
        let running = h.start();
        eventually("all eight done", || {
            Counters::get(&h.counters.processed) == 8
        });
        assert_eq!(h.acked(), 8);
        h.control.stop(ShutdownCause::Signal("SIGTERM"));
        running.join().unwrap();
        let batches = h.batches.lock().unwrap().clone();
        assert_eq!(
            batches.concat(),
            (0..8).map(|i| format!("m{i}")).collect::<Vec<_>>()
        );
        assert!(batches.iter().all(|b| b.len() <= 3), "{batches:?}");
    }

    /// However large its messages, a burst holds at most MAX_BATCH_BYTES (and at least one).
    #[test]
    fn a_burst_is_bounded_by_bytes() {
        let mut h = Harness::new(true, Some(1));
        let big = MAX_BATCH_BYTES / 3 + 1;
        for _ in 0..7 {
            let mut message = Harness::inbound("attacker.observed");
            message.bytes = big;
            h.messages.send(Delivery::unacked(message)).unwrap();
        }
        let mut huge = Harness::inbound("email.received");
        huge.bytes = 2 * MAX_BATCH_BYTES;
        h.messages.send(Delivery::unacked(huge)).unwrap();
        let running = h.start();
        eventually("all done", || Counters::get(&h.counters.processed) == 8);
        h.control.stop(ShutdownCause::Signal("SIGTERM"));
        running.join().unwrap();
        let sizes: Vec<usize> = h.batches.lock().unwrap().iter().map(Vec::len).collect();
        assert_eq!(sizes, [2, 2, 2, 1, 1]);
    }

    /// With more queued than can be handled in the drain time, the stop still ends within it:
    /// the batch in hand is cut short, and everything not done is handed back.
    #[test]
    fn a_stop_with_heavy_work_queued_ends_within_the_drain_time_and_hands_the_rest_back() {
        let mut h = Harness::new(true, Some(1));
        h.main_loop.as_mut().unwrap().handler.per_message = Duration::from_millis(20);
        for _ in 0..1000 {
            h.durable_message("attacker.session.ended");
        }
        let running = h.start();
        eventually("work under way", || h.handle_attempts() > 0);
        let stop_sent = Instant::now();
        h.control.stop(ShutdownCause::Signal("SIGTERM"));
        running.join().unwrap();
        let took = stop_sent.elapsed();
        assert!(
            took < STOP_DRAIN + Duration::from_millis(500),
            "stopped after {took:?}"
        );
        let done = Counters::get(&h.counters.processed) as usize;
        assert!(done < 1000, "everything was done: the test proves nothing");
        assert_eq!(h.acked(), done);
        assert_eq!(h.naks.load(Ordering::SeqCst), 1000 - done);
    }
}
