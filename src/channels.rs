//! What travels between the daemon's threads and its main loop.
//!
//! This is the bottom of the daemon: the bus (`bus/`), the signal thread and the main loop
//! (`daemon/`) all speak these types, and this module speaks none of theirs. The subscription
//! threads put [`Delivery`]s on the message channel; signals and the control subject put
//! [`Control`] requests on the control channel, which the loop serves first; the loop reaches
//! back out only through [`Bus`] and [`Outbox`].

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError, bounded};

use crate::envelope::Inbound;

/// Capacity of the message channel. Bounded so a flood backs up into the NATS client, where
/// the per-subscription limits decide what is dropped, instead of into unbounded memory here.
pub const MESSAGE_CAPACITY: usize = 1024;

/// Room for every producer's stop at once (SIGINT, SIGTERM, the control subject) and one
/// reload: see [`ControlSender`] for why a full channel always holds a stop.
const CONTROL_CAPACITY: usize = 8;

/// The most message weight ([`Inbound::bytes`]) waiting on the message channel at once. The
/// channel's capacity bounds the count; this bounds the memory, whatever the messages hold.
pub const MAX_QUEUED_BYTES: usize = 16 << 20;

/// How often a thread waiting for room on the message channel looks again.
pub const ROOM_POLL: Duration = Duration::from_millis(5);

/// The weight of the messages now waiting on the message channel, over the whole process:
/// the memory it bounds is the process's.
static QUEUED: ByteBound = ByteBound::new(MAX_QUEUED_BYTES);

/// A process-wide count of bytes held somewhere, and the most it may reach. Threads take
/// their share before they hold a message and give it back when they let go, so what they
/// hold together stays under the bound whatever each holds.
#[derive(Debug)]
pub struct ByteBound {
    used: AtomicUsize,
    max: usize,
}

impl ByteBound {
    pub const fn new(max: usize) -> ByteBound {
        ByteBound {
            used: AtomicUsize::new(0),
            max,
        }
    }

    /// Takes room for `bytes` if there is some: `false` when it would pass the bound. Room
    /// larger than the whole bound is given when nothing is held, so no message is refused
    /// for ever for its size alone.
    pub fn try_take(&self, bytes: usize) -> bool {
        let mut used = self.used.load(Ordering::SeqCst);
        while used == 0 || used + bytes <= self.max {
            match self
                .used
                .compare_exchange(used, used + bytes, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return true,
                Err(now) => used = now,
            }
        }
        false
    }

    /// Gives back room taken with [`ByteBound::try_take`].
    pub fn give_back(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::SeqCst);
    }

    /// The bytes held now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::SeqCst)
    }
}

/// A message's share of [`MAX_QUEUED_BYTES`], given back when the main loop takes the
/// message into a batch (which [`MAX_BATCH_BYTES`](crate::daemon::main_loop::MAX_BATCH_BYTES)
/// bounds in turn).
#[derive(Debug)]
pub struct Permit(usize);

impl Permit {
    /// Waits until the queue has room for `bytes` (a message larger than the whole room gets
    /// it once the queue is empty), so that a subscription thread holds its message instead of
    /// queueing it; `None` when `stop` closes first.
    pub fn wait(bytes: usize, stop: &Receiver<()>) -> Option<Permit> {
        loop {
            if let Some(permit) = Permit::try_take(bytes) {
                return Some(permit);
            }
            match stop.recv_timeout(ROOM_POLL) {
                Err(RecvTimeoutError::Timeout) => {}
                _ => return None,
            }
        }
    }

    /// Room for `bytes` now, or `None` when the queue is too full for it (a message larger
    /// than the whole room gets it once the queue is empty).
    pub fn try_take(bytes: usize) -> Option<Permit> {
        // Lazily: a permit made and dropped here would give back room it never took.
        QUEUED.try_take(bytes).then(|| Permit(bytes))
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        QUEUED.give_back(self.0);
    }
}

/// A message and, in durable mode, the means to confirm it.
pub struct Delivery {
    pub message: Inbound,
    pub ack: Option<Box<dyn Ack>>,
    /// Its room on the message channel, if a subscription thread took some.
    pub permit: Option<Permit>,
}

impl Delivery {
    /// A core-NATS message: nothing to confirm.
    pub fn unacked(message: Inbound) -> Delivery {
        Delivery {
            message,
            ack: None,
            permit: None,
        }
    }
}

/// Tells the bus a message is fully handled so it is not delivered again. Called only after
/// the handler succeeded for the whole batch the message was in.
pub trait Ack: Send {
    fn ack(self: Box<Self>);
    /// Hands the message back undone, for immediate redelivery (to whoever consumes next).
    fn nak(self: Box<Self>);
}

/// A request that does not wait behind messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    Stop(ShutdownCause),
    /// SIGHUP: re-read what can be re-read (the rules).
    Reload,
}

/// Why the worker is stopping. Every cause leads to the same bounded shutdown; all but
/// [`ShutdownCause::Failed`] exit 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShutdownCause {
    Signal(&'static str),
    Control {
        requested_by: String,
    },
    /// Every sender of the control channel is gone: nothing could ever stop us again.
    Orphaned,
    /// Going on would be wrong, not merely slow (the store was replaced or is damaged): exit
    /// non-zero, so that a supervisor restarts the worker and the start-up checks speak.
    Failed {
        reason: String,
    },
}

impl ShutdownCause {
    /// Whether the process should exit with a failure status.
    pub fn is_failure(&self) -> bool {
        matches!(self, ShutdownCause::Failed { .. })
    }
}

impl fmt::Display for ShutdownCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShutdownCause::Signal(name) => write!(f, "{name} received"),
            ShutdownCause::Control { requested_by } => {
                write!(f, "stop requested on the control subject by {requested_by}")
            }
            ShutdownCause::Orphaned => f.write_str("control channel closed"),
            ShutdownCause::Failed { reason } => write!(f, "cannot go on: {reason}"),
        }
    }
}

/// The message channel, bounded at [`MESSAGE_CAPACITY`].
pub fn message_channel() -> (Sender<Delivery>, Receiver<Delivery>) {
    bounded(MESSAGE_CAPACITY)
}

/// The control channel. Requests never block their sender: the signal thread and the control
/// listener must stay free to end when the daemon stops.
pub fn control_channel() -> (ControlSender, ControlReceiver) {
    let (sender, receiver) = bounded(CONTROL_CAPACITY);
    let reload_pending = Arc::new(AtomicBool::new(false));
    (
        ControlSender {
            sender,
            reload_pending: reload_pending.clone(),
        },
        ControlReceiver {
            receiver,
            reload_pending,
        },
    )
}

/// Sends control requests without ever blocking, and without ever losing a stop.
///
/// Reloads are coalesced: while one is queued, more add nothing (the one queued re-reads the
/// files as they are when it is served). So at most one slot holds a reload, and a full
/// channel means a stop is already queued — which is why a stop that finds the channel full
/// may be dropped: stops are idempotent.
#[derive(Clone)]
pub struct ControlSender {
    sender: Sender<Control>,
    reload_pending: Arc<AtomicBool>,
}

impl ControlSender {
    pub fn stop(&self, cause: ShutdownCause) {
        let _ = self.sender.try_send(Control::Stop(cause));
    }

    pub fn reload(&self) {
        if !self.reload_pending.swap(true, Ordering::SeqCst)
            && self.sender.try_send(Control::Reload).is_err()
        {
            self.reload_pending.store(false, Ordering::SeqCst);
        }
    }
}

/// The main loop's end of the control channel.
pub struct ControlReceiver {
    receiver: Receiver<Control>,
    reload_pending: Arc<AtomicBool>,
}

impl ControlReceiver {
    /// For `select!`; pass what it yields through [`ControlReceiver::taken`].
    pub fn receiver(&self) -> &Receiver<Control> {
        &self.receiver
    }

    /// A queued request, if any.
    pub fn try_take(&self) -> Option<Control> {
        match self.receiver.try_recv() {
            Ok(request) => Some(self.taken(request)),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => Some(Control::Stop(ShutdownCause::Orphaned)),
        }
    }

    /// Books a request received through [`ControlReceiver::receiver`]: a reload taken off the
    /// channel lets the next SIGHUP queue another.
    pub fn taken(&self, request: Control) -> Control {
        if request == Control::Reload {
            self.reload_pending.store(false, Ordering::SeqCst);
        }
        request
    }
}

/// Where a handler's announcements go: the bus while connected, nowhere in poll-only mode.
pub trait Outbox {
    /// Publishes exact bytes on `subject`; `false` when it could not (counted, never fatal).
    fn publish(&self, subject: &str, bytes: Vec<u8>) -> bool;
    /// The largest message the bus takes: what announcements are split to fit.
    fn max_payload(&self) -> usize {
        crate::envelope::MAX_MESSAGE_BYTES
    }
}

/// The bus as the main loop needs it.
pub trait Bus: Outbox {
    type Error: fmt::Display;
    /// False when the bus is disabled by configuration: poll-only without connect attempts.
    fn wanted(&self) -> bool;
    fn is_connected(&self) -> bool;
    /// One connection attempt; on success every subscription, the control listener and the
    /// heartbeat are running, exactly as on a normal start.
    fn connect(&mut self) -> Result<(), Self::Error>;
    /// Stops putting messages on the message channel (subscription threads end, subscriptions
    /// are removed), while keeping the connection for whatever the last batch still has to
    /// publish.
    fn stop_intake(&mut self);
    /// Stops the heartbeat, joins every thread and closes the connection.
    fn close(&mut self);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_byte_bound_gives_room_up_to_its_bound_and_a_refusal_takes_none() {
        let bound = ByteBound::new(100);
        // More than the whole bound fits when nothing is held.
        assert!(bound.try_take(150));
        assert!(!bound.try_take(1));
        assert_eq!(bound.used(), 150);
        bound.give_back(150);
        assert!(bound.try_take(60));
        assert!(bound.try_take(40));
        assert!(!bound.try_take(1));
        assert_eq!(bound.used(), 100);
    }

    #[test]
    fn reloads_are_coalesced_until_one_is_taken() {
        let (sender, receiver) = control_channel();
        for _ in 0..20 {
            sender.reload();
        }
        assert_eq!(receiver.try_take(), Some(Control::Reload));
        assert_eq!(receiver.try_take(), None);
        sender.reload();
        assert_eq!(receiver.try_take(), Some(Control::Reload));
    }

    /// However many reloads and stops pile up, a stop is queued behind them.
    #[test]
    fn a_full_channel_always_holds_a_stop() {
        let (sender, receiver) = control_channel();
        sender.reload();
        for _ in 0..3 * CONTROL_CAPACITY {
            sender.stop(ShutdownCause::Signal("SIGTERM"));
            sender.reload();
        }
        let queued: Vec<Control> = std::iter::from_fn(|| receiver.try_take()).collect();
        assert_eq!(queued.len(), CONTROL_CAPACITY);
        assert_eq!(queued[0], Control::Reload);
        assert!(
            queued[1..]
                .iter()
                .all(|c| *c == Control::Stop(ShutdownCause::Signal("SIGTERM")))
        );
    }

    #[test]
    fn a_channel_without_senders_reads_as_orphaned() {
        let (sender, receiver) = control_channel();
        drop(sender);
        assert_eq!(
            receiver.try_take(),
            Some(Control::Stop(ShutdownCause::Orphaned))
        );
    }
}
