//! The DECNET side: one client connection to DECNET's broker, made again whenever it is lost.
//!
//! The connection's thread writes (HELLO, the SUBs, then a PUB for every message from NATS);
//! a reader thread on a clone of the socket takes the EVT frames and queues them for NATS.
//! Either one ending ends the connection: the socket is shut down, the reader joined, and after
//! a pause the next connection subscribes afresh (DECNET's broker keeps no subscriptions).

use std::io::{self, BufReader, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use crossbeam_channel::{Receiver, bounded, select};

use super::counters::BridgeCounters;
use super::frame::{FrameError, Verb, encode, read_frame};
use super::queue::{DropOldest, Pushed};
use super::relayed::Relayed;
use crate::topics::{BRIDGE_HEALTH, BRIDGE_NAME, FROM_DECNET};

/// How a connection ended.
enum Ended {
    Stopped,
    Lost(String),
    /// Over a frame the bridge refused: logged once per kind already, so only at debug here,
    /// and the next attempt waits longer, so a broker that keeps sending bad frames cannot
    /// make the bridge spin.
    Refused(String),
}

/// Starts the DECNET side: connects to `socket` (waiting for it as long as it takes), queues
/// every event DECNET delivers on `to_nats`, writes every message of `from_nats`, until `stop`
/// closes.
pub fn spawn(
    socket: PathBuf,
    to_nats: DropOldest<Relayed>,
    from_nats: Receiver<Relayed>,
    beats: Receiver<Vec<u8>>,
    counters: Arc<BridgeCounters>,
    stop: Receiver<()>,
) -> io::Result<JoinHandle<()>> {
    thread::Builder::new().name("decnet".into()).spawn(move || {
        let mut failures = 0usize;
        // Connections in a row that ended over a refused frame.
        let mut refusals = 0usize;
        let mut connected_once = false;
        loop {
            match UnixStream::connect(&socket) {
                Ok(stream) => {
                    if connected_once {
                        BridgeCounters::bump(&counters.decnet_reconnects);
                    }
                    connected_once = true;
                    failures = 0;
                    log::info!(
                        "connected to DECNET's bus at {}; subscribed to {} patterns",
                        socket.display(),
                        FROM_DECNET.len()
                    );
                    let link = Link {
                        stream,
                        to_nats: &to_nats,
                        from_nats: &from_nats,
                        beats: &beats,
                        counters: &counters,
                        stop: &stop,
                    };
                    match link.run() {
                        Ended::Stopped => return,
                        Ended::Lost(why) => {
                            log::warn!("lost DECNET's bus ({why}); connecting again");
                            refusals = 0;
                        }
                        Ended::Refused(why) => {
                            log::debug!("dropped the connection to DECNET's bus: {why}");
                            refusals += 1;
                        }
                    }
                }
                Err(err) => {
                    if failures == 0 {
                        log::warn!("waiting for DECNET's bus at {}: {err}", socket.display());
                    }
                    failures += 1;
                }
            }
            // Even after a normal end: a broker that accepts and closes at once must not
            // make the bridge spin.
            if !super::retry::pause(failures + refusals + 1, &stop) {
                return;
            }
        }
    })
}

/// One connection to the broker.
struct Link<'a> {
    stream: UnixStream,
    to_nats: &'a DropOldest<Relayed>,
    from_nats: &'a Receiver<Relayed>,
    /// The bridge's own heartbeats, ready to go out as PUB bodies.
    beats: &'a Receiver<Vec<u8>>,
    counters: &'a Arc<BridgeCounters>,
    stop: &'a Receiver<()>,
}

impl Link<'_> {
    fn run(mut self) -> Ended {
        let reader_stream = match self.stream.try_clone() {
            Ok(clone) => clone,
            Err(err) => return Ended::Lost(format!("cannot clone the socket: {err}")),
        };
        let (done_tx, done) = bounded::<Ended>(1);
        let to_nats = self.to_nats.clone();
        let counters = self.counters.clone();
        let reader = thread::Builder::new()
            .name("decnet-read".into())
            .spawn(move || {
                let why = read_events(reader_stream, &to_nats, &counters);
                let _ = done_tx.send(why);
            });
        let reader = match reader {
            Ok(reader) => reader,
            Err(err) => return Ended::Lost(format!("cannot start the reader: {err}")),
        };
        let ended = self.write_all(&done);
        if let Ended::Stopped = ended {
            // Said as DECNET's own client says it; the broker then closes its end.
            let _ = self.send(Verb::Bye, "", b"");
        }
        let _ = self.stream.shutdown(Shutdown::Both);
        let _ = reader.join();
        ended
    }

    /// The greeting, the subscriptions, then every message from NATS, until the connection or
    /// the bridge ends.
    fn write_all(&mut self, reader_done: &Receiver<Ended>) -> Ended {
        let greeting = std::iter::once((Verb::Hello, BRIDGE_NAME))
            .chain(FROM_DECNET.iter().map(|pattern| (Verb::Sub, *pattern)));
        for (verb, args) in greeting {
            if let Err(err) = self.send(verb, args, b"") {
                return Ended::Lost(format!("cannot write to it: {err}"));
            }
        }
        loop {
            select! {
                recv(self.from_nats) -> message => {
                    let Ok(message) = message else { return Ended::Stopped };
                    match self.send(Verb::Pub, &message.subject, &message.body) {
                        Ok(()) => BridgeCounters::bump(&self.counters.to_decnet),
                        Err(FrameError::Io(err)) => {
                            BridgeCounters::bump(&self.counters.dropped_to_decnet);
                            return Ended::Lost(format!("cannot write to it: {err}"));
                        }
                        // Checked before it was queued; counted there.
                        Err(_) => BridgeCounters::bump(&self.counters.unrelayable),
                    }
                }
                recv(self.beats) -> beat => {
                    let Ok(beat) = beat else { return Ended::Stopped };
                    if let Err(err) = self.send(Verb::Pub, BRIDGE_HEALTH, &beat) {
                        return Ended::Lost(format!("cannot write to it: {err}"));
                    }
                }
                recv(reader_done) -> why => {
                    return why.unwrap_or_else(|_| Ended::Lost("reader ended".into()));
                }
                recv(self.stop) -> _ => return Ended::Stopped,
            }
        }
    }

    fn send(&mut self, verb: Verb, args: &str, body: &[u8]) -> Result<(), FrameError> {
        let bytes = encode(verb, args, body)?;
        self.stream.write_all(&bytes)?;
        Ok(())
    }
}

/// Reads EVT frames until the connection ends, and says why it ended.
fn read_events(
    stream: UnixStream,
    to_nats: &DropOldest<Relayed>,
    counters: &BridgeCounters,
) -> Ended {
    let mut reader = BufReader::with_capacity(64 * 1024, stream);
    loop {
        let frame = match read_frame(&mut reader) {
            Ok(Some(frame)) => frame,
            Ok(None) => return Ended::Lost("the broker closed the connection".into()),
            Err(err) => return refused(&err, counters),
        };
        match frame.verb {
            Verb::Evt => match Relayed::from_decnet(frame) {
                Ok(event) => {
                    BridgeCounters::bump(&counters.from_decnet);
                    if let Pushed::DroppedOldest(n) = to_nats.push(event) {
                        BridgeCounters::add(&counters.dropped_to_nats, n);
                    }
                }
                Err((kind, why)) => {
                    if counters.refuse(kind) {
                        log::warn!(
                            "refused an event from DECNET's bus: {why}; connecting again \
                             (further {kind} events are only counted)"
                        );
                    }
                    return Ended::Refused(format!("refused an event: {why}"));
                }
            },
            Verb::Bye => return Ended::Lost("the broker said BYE".into()),
            // A broker sends nothing else; DECNET's own client ignores it too.
            other => log::debug!("ignored a {} frame from DECNET's bus", other.as_str()),
        }
    }
}

/// Counts a refused frame, logs its kind the first time, and says why the connection ends.
fn refused(err: &FrameError, counters: &BridgeCounters) -> Ended {
    match err.kind() {
        Some(kind) => {
            if counters.refuse(kind) {
                log::warn!(
                    "refused a frame from DECNET's bus: {err}; connecting again \
                     (further {kind} frames are only counted)"
                );
            }
            Ended::Refused(format!("refused a frame: {err}"))
        }
        None => Ended::Lost(format!("read failed: {err}")),
    }
}
