//! `ttp-worker` with no subcommand: the wiring, the main loop, what it does with a batch
//! (tag, commit, announce) and the signals that stop or reload it.
//!
//! [`wire`] is the one place the channels, the bus and the loop are put together; [`run`]
//! and the in-process test harness both call it, so tests drive exactly the daemon's wiring.

mod activity;
mod announce;
mod decnet_pipeline;
pub mod main_loop;
mod pipeline;
mod reports;
mod signals;
pub mod timers;

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::tick;

pub use decnet_pipeline::DecnetPipeline;
pub use main_loop::{BatchFailed, Handler, Inbox, Interrupt, MAX_BATCH, MainLoop, Stopped};
pub use pipeline::TaggingPipeline;

use crate::bus::{BusSettings, NatsBus};
use crate::channels::{ControlSender, ShutdownCause, control_channel, message_channel};
use crate::config::Config;
use crate::counters::{Counters, Mode};
use crate::decnet_db::DbError;
use crate::store::{Store, StoreError};
use crate::tagging::{EngineError, Tagger};
use signals::SignalError;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Signals(#[from] SignalError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    DecnetDb(#[from] DbError),
}

impl DaemonError {
    /// Whether this is the operator's input (exit 2) rather than the machine failing (exit 1).
    pub fn is_usage(&self) -> bool {
        match self {
            DaemonError::Engine(_) => true,
            DaemonError::DecnetDb(err) => err.is_setup(),
            _ => false,
        }
    }
}

/// Runs `handler` behind the real bus until a stop.
fn run_loop<H: Handler>(
    config: &Config,
    handler: H,
    counters: &Arc<Counters>,
) -> Result<ShutdownCause, DaemonError> {
    let Wired { main_loop, control } = wire(
        config.bus.clone(),
        config.poll_interval,
        handler,
        counters.clone(),
    );
    let signal_listener = signals::install(control)?;
    let stopped = main_loop.run();
    signal_listener.close();
    Ok(stopped.cause)
}

/// The main loop over the real bus, and the handle that stops or reloads it.
pub struct Wired<H> {
    pub main_loop: MainLoop<NatsBus, H>,
    pub control: ControlSender,
}

/// Makes the message and control channels, the bus that feeds them and the loop that reads
/// them, ticking every `poll_interval`. Nothing runs until `main_loop.run()`.
pub fn wire<H: Handler>(
    bus: BusSettings,
    poll_interval: Duration,
    handler: H,
    counters: Arc<Counters>,
) -> Wired<H> {
    let (messages, messages_rx) = message_channel();
    let (control, control_rx) = control_channel();
    let bus = NatsBus::new(bus, messages, control.clone(), counters.clone());
    let inbox = Inbox {
        messages: messages_rx,
        control: control_rx,
        tick: tick(poll_interval),
        tick_every: poll_interval,
    };
    Wired {
        main_loop: MainLoop::new(inbox, bus, handler, counters),
        control,
    }
}

/// Runs the daemon; returns the cause it stopped for. Every cause is a clean exit.
pub fn run(config: &Config) -> Result<ShutdownCause, DaemonError> {
    let mode = if config.bus.durable {
        Mode::Durable
    } else {
        Mode::Core
    };
    let mut tagger = Tagger::new(&config.engine)?;
    for problem in tagger.problems().iter().chain(tagger.warnings()) {
        log::warn!("{problem}");
    }
    tagger.require_rules()?;
    let store = Store::open(&config.db)?;
    let learned = store.load_anchors()?;
    log::debug!("{} attacker anchors learned earlier", learned.len());
    tagger.restore_learned_anchors(learned);
    crate::memory::release_freed_memory();
    let counters = Arc::new(Counters::new(mode));

    log::info!(
        "ttp-worker {} starting: {} rules ({} problems), store {}, poll interval {:?}, heartbeat every {:?}, {} mode",
        env!("CARGO_PKG_VERSION"),
        tagger.rules().len(),
        tagger.problems().len(),
        config.db.display(),
        config.poll_interval,
        config.bus.heartbeat_interval,
        mode.as_str()
    );
    let cause = match &config.decnet_db {
        None => run_loop(
            config,
            TaggingPipeline::new(tagger, store, counters.clone()),
            &counters,
        )?,
        Some(settings) => {
            let db = crate::decnet_db::open(settings)?;
            log::info!(
                "tags go into DECNET's database ({}); {} held messages wait in {}",
                db.describe(),
                store.pending_count()?,
                config.db.display()
            );
            run_loop(
                config,
                DecnetPipeline::new(tagger, store, db, counters.clone()),
                &counters,
            )?
        }
    };
    log::info!(
        "stopped after {} messages ({} malformed)",
        Counters::get(&counters.received),
        Counters::get(&counters.malformed)
    );
    Ok(cause)
}
