//! `ttp-worker` with no subcommand: wires the channels, the signals, the bus and the handler
//! together and runs the main loop until a shutdown cause arrives.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{bounded, tick};

use crate::bus::{BusSettings, NatsBus};
use crate::config::Config;
use crate::counters::{Counters, Mode};
use crate::pipeline::TaggingPipeline;
use crate::signals::{self, SignalError};
use crate::store::{Store, StoreError};
use crate::tagging::{EngineError, Tagger};
use crate::worker::{Inbox, MainLoop, ShutdownCause, WAKE_CAPACITY};

/// Upper bound on one connection attempt; beyond it the bus counts as unavailable and the
/// next tick tries again.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Signals(#[from] SignalError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl DaemonError {
    /// Whether this is the operator's input (exit 2) rather than the machine failing (exit 1).
    pub fn is_usage(&self) -> bool {
        matches!(self, DaemonError::Engine(_))
    }
}

/// Runs the daemon; returns the cause it stopped for. Every cause is a clean exit.
pub fn run(config: &Config) -> Result<ShutdownCause, DaemonError> {
    let mode = if config.durable {
        Mode::Durable
    } else {
        Mode::Core
    };
    let mut tagger = Tagger::new(&config.engine)?;
    for problem in tagger.problems().iter().chain(tagger.warnings()) {
        log::warn!("{problem}");
    }
    let store = Store::open(&config.db)?;
    let learned = store.load_anchors()?;
    log::debug!("{} attacker anchors learned earlier", learned.len());
    tagger.restore_learned_anchors(learned);
    crate::memory::release_freed_memory();
    let counters = Arc::new(Counters::new(mode));
    let (wake_tx, wake_rx) = bounded(WAKE_CAPACITY);
    // Room for every producer's stop at once; a full channel means a stop is already queued.
    let (shutdown_tx, shutdown_rx) = bounded(8);
    let signal_listener = signals::install(shutdown_tx.clone(), wake_tx.clone())?;

    let settings = BusSettings {
        urls: config.bus_urls.clone(),
        enabled: config.bus_enabled,
        heartbeat_interval: config.heartbeat_interval,
        connect_timeout: CONNECT_TIMEOUT.min(config.poll_interval),
        durable: config.durable,
        stream: config.stream.clone(),
        security: config.bus_security.clone(),
    };
    let bus = NatsBus::new(settings, wake_tx, shutdown_tx, counters.clone());
    let inbox = Inbox {
        wake: wake_rx,
        tick: tick(config.poll_interval),
        shutdown: shutdown_rx,
    };
    log::info!(
        "ttp-worker {} starting: {} rules ({} problems), store {}, poll interval {:?}, heartbeat every {:?}, {} mode",
        env!("CARGO_PKG_VERSION"),
        tagger.rules().len(),
        tagger.problems().len(),
        config.db.display(),
        config.poll_interval,
        config.heartbeat_interval,
        mode.as_str()
    );
    let pipeline = TaggingPipeline::new(tagger, store, counters.clone());
    let stopped = MainLoop::new(inbox, bus, pipeline, counters.clone())
        .with_poll_interval_hint(format!("{:?}", config.poll_interval))
        .run();
    signal_listener.close();
    log::info!(
        "stopped after {} messages ({} malformed)",
        Counters::get(&counters.received),
        Counters::get(&counters.malformed)
    );
    Ok(stopped.cause)
}
