//! `ttp-worker bridge`: a relay between DECNET's UNIX-socket bus and NATS (docs/decnet-bus.md).
//!
//! DECNET's events go to NATS for the worker, the worker's announcements come back to DECNET's
//! bus for DECNET's own subscribers. The subjects relayed each way are fixed and disjoint
//! ([`FROM_DECNET`], [`TO_DECNET`]), so nothing relayed can come back.
//!
//! ```text
//!  DECNET's broker ── EVT ──> decnet thread ── queue ──> publish thread ──> NATS / JetStream
//!  (bus.sock)      <── PUB ── decnet thread <── queue ── sub threads    <── NATS
//! ```
//!
//! The main thread starts the DECNET side, connects to NATS (for as long as that takes),
//! starts the NATS side and the heartbeat, then waits for SIGINT or SIGTERM and joins them all.

#![allow(deprecated)] // the sync `nats` client; see `crate::bus`.

mod counters;
mod decnet_side;
pub mod frame;
mod nats_side;
mod queue;
mod relayed;
mod retry;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, bounded, select, tick};
use serde_json::{Map, json};

use counters::BridgeCounters;
use queue::DropOldest;
use relayed::Relayed;
use retry::pause;

use crate::bus::{BusSettings, Hooks, close_with_deadline, open_with};
use crate::envelope::{Envelope, now_epoch_secs};
use crate::redact::redact_url;
use crate::topics::{BRIDGE_HEALTH, BRIDGE_NAME, FROM_DECNET, TO_DECNET};

/// How long closing the NATS connection may take (docs/nats.md pitfall 5).
const CLOSE_DEADLINE: Duration = Duration::from_secs(1);

/// What the bridge runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct BridgeConfig {
    /// NATS: URLs, credentials, heartbeat interval, durable mode and its stream.
    pub bus: BusSettings,
    /// DECNET's broker socket.
    pub socket: PathBuf,
    /// Capacity of each direction's queue, in messages.
    pub queue: usize,
}

/// Why the bridge could not run.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("cannot start a thread: {0}")]
    Spawn(#[source] io::Error),
    #[error("cannot install the signal handlers: {0}")]
    Signals(#[source] io::Error),
    #[error("cannot subscribe on NATS: {0}")]
    Subscribe(#[source] io::Error),
}

/// Runs the bridge until SIGINT or SIGTERM.
pub fn run(config: &BridgeConfig) -> Result<(), BridgeError> {
    let (stop_tx, stop) = bounded::<()>(0);
    let signals = signals(stop_tx)?;
    let result = relay(config, &stop);
    signals.close();
    result
}

/// Everything but the signals: runs until `stop` closes.
pub fn relay(config: &BridgeConfig, stop: &Receiver<()>) -> Result<(), BridgeError> {
    // The threads stop when `halt` closes: after `stop`, or at once when starting fails, so
    // that joining them never waits on a stop that will not come.
    let (halt_tx, halt) = bounded::<()>(0);
    let counters = Arc::new(BridgeCounters::new(config.bus.durable));
    let (to_nats, to_nats_rx) = DropOldest::new(config.queue);
    let (to_decnet, to_decnet_rx) = DropOldest::new(config.queue);
    let (beats_tx, beats) = bounded::<Vec<u8>>(1);
    let mut threads: Vec<JoinHandle<()>> = Vec::new();
    threads.push(
        decnet_side::spawn(
            config.socket.clone(),
            to_nats.clone(),
            to_decnet_rx,
            beats,
            counters.clone(),
            halt.clone(),
        )
        .map_err(BridgeError::Spawn)?,
    );

    let up = Arc::new(AtomicBool::new(false));
    let closing = Arc::new(AtomicBool::new(false));
    let Some(connection) = connect(&config.bus, &counters, &up, &closing, stop) else {
        drop(halt_tx);
        join(threads);
        return Ok(());
    };
    up.store(true, Ordering::SeqCst);
    let durable = config.bus.durable || stream_exists(&connection, &config.bus.stream.name);
    counters.durable.store(durable, Ordering::Relaxed);
    log::info!(
        "relaying {} patterns from DECNET's bus at {} to NATS at {}{}, and {} back",
        FROM_DECNET.len(),
        config.socket.display(),
        redact_url(&config.bus.urls.join(",")),
        if durable {
            format!(" (into JetStream stream {})", config.bus.stream.name)
        } else {
            String::new()
        },
        TO_DECNET.len()
    );

    let spawned = (|| {
        threads.extend(
            nats_side::spawn_subscribers(&connection, &to_decnet, &counters, &halt)
                .map_err(BridgeError::Subscribe)?,
        );
        let publisher = nats_side::Publisher {
            connection: connection.clone(),
            up: up.clone(),
            stream: durable.then(|| config.bus.stream.clone()),
            counters: counters.clone(),
        };
        threads.push(
            publisher
                .spawn(to_nats_rx, halt.clone())
                .map_err(BridgeError::Spawn)?,
        );
        let beat = Heartbeat {
            connection: connection.clone(),
            up: up.clone(),
            counters: counters.clone(),
            to_nats: to_nats.clone(),
            to_decnet: to_decnet.clone(),
            beats: beats_tx,
        };
        threads.push(
            beat.spawn(config.bus.heartbeat_interval, halt.clone())
                .map_err(BridgeError::Spawn)?,
        );
        Ok(())
    })();
    if spawned.is_ok() {
        // Closed by the signal thread, or by the caller.
        let _ = stop.recv();
        log::info!("stopping the bridge");
    }
    drop(halt_tx);
    join(threads);
    closing.store(true, Ordering::SeqCst);
    close_with_deadline(connection, CLOSE_DEADLINE);
    spawned
}

/// Whether the worker's stream is there already: then the bridge publishes into it, durable
/// mode asked for or not, since a durable worker is reading from it.
fn stream_exists(connection: &nats::Connection, name: &str) -> bool {
    let found = nats::jetstream::new(connection.clone())
        .stream_info(name)
        .is_ok();
    if found {
        log::info!("JetStream stream {name} exists: publishing DECNET's events into it");
    }
    found
}

/// Connects to NATS, trying again until it works or `stop` closes.
fn connect(
    settings: &BusSettings,
    counters: &Arc<BridgeCounters>,
    up: &Arc<AtomicBool>,
    closing: &Arc<AtomicBool>,
    stop: &Receiver<()>,
) -> Option<nats::Connection> {
    let on_reconnect = {
        let (counters, up) = (counters.clone(), up.clone());
        Arc::new(move || {
            BridgeCounters::bump(&counters.nats_reconnects);
            up.store(true, Ordering::SeqCst);
        })
    };
    let on_disconnect = {
        let up = up.clone();
        Arc::new(move || up.store(false, Ordering::SeqCst))
    };
    let hooks = Hooks {
        name: BRIDGE_NAME,
        on_reconnect,
        on_disconnect,
    };
    let mut failures = 0usize;
    loop {
        match open_with(settings, &hooks, closing) {
            Ok(connection) => return Some(connection),
            Err(err) => {
                if failures == 0 {
                    log::warn!("{err}; trying again");
                }
                failures += 1;
            }
        }
        if !pause(failures, stop) {
            return None;
        }
    }
}

fn join(threads: Vec<JoinHandle<()>>) {
    for thread in threads {
        let _ = thread.join();
    }
}

/// The bridge's beat, on both buses: `worker`, `ts`, counters and the queues' depths.
struct Heartbeat {
    connection: nats::Connection,
    up: Arc<AtomicBool>,
    counters: Arc<BridgeCounters>,
    to_nats: DropOldest<Relayed>,
    to_decnet: DropOldest<Relayed>,
    beats: Sender<Vec<u8>>,
}

impl Heartbeat {
    fn spawn(self, interval: Duration, stop: Receiver<()>) -> io::Result<JoinHandle<()>> {
        thread::Builder::new()
            .name("heartbeat".into())
            .spawn(move || {
                let ticker = tick(interval);
                loop {
                    self.beat();
                    select! {
                        recv(ticker) -> _ => {}
                        recv(stop) -> _ => break,
                    }
                }
            })
    }

    fn beat(&self) {
        let mut payload = Map::new();
        payload.insert("worker".into(), json!(BRIDGE_NAME));
        payload.insert("ts".into(), json!(now_epoch_secs()));
        payload.extend(self.counters.to_health_members());
        payload.insert("queued_to_nats".into(), json!(self.to_nats.len()));
        payload.insert("queued_to_decnet".into(), json!(self.to_decnet.len()));
        let Ok(bytes) = Envelope::new("health", payload).encode(BRIDGE_HEALTH) else {
            return;
        };
        if self.up.load(Ordering::SeqCst)
            && let Err(err) = self.connection.publish(BRIDGE_HEALTH, &bytes)
        {
            log::debug!("heartbeat not published on NATS: {err}");
        }
        // A beat still waiting for DECNET's side is simply replaced by the next one.
        let _ = self.beats.try_send(bytes);
    }
}

/// SIGINT and SIGTERM close `stop`; a second one, while the bridge is stopping, exits at once.
fn signals(stop: Sender<()>) -> Result<SignalThread, BridgeError> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals =
        signal_hook::iterator::Signals::new([SIGINT, SIGTERM]).map_err(BridgeError::Signals)?;
    let handle = signals.handle();
    let thread = thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut stop = Some(stop);
            for signal in signals.forever() {
                if stop.take().is_none() {
                    log::warn!("second stop signal ({signal}): exiting at once");
                    std::process::exit(130);
                }
                log::info!("stop signal {signal} received");
            }
        })
        .map_err(BridgeError::Spawn)?;
    Ok(SignalThread { handle, thread })
}

struct SignalThread {
    handle: signal_hook::iterator::Handle,
    thread: JoinHandle<()>,
}

impl SignalThread {
    fn close(self) {
        self.handle.close();
        let _ = self.thread.join();
    }
}
