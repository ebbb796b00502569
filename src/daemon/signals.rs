//! Process signals: SIGINT and SIGTERM stop the worker, SIGHUP asks for a reload.
//!
//! SIGINT goes through `ctrlc`. SIGTERM and SIGHUP go through `signal-hook`: `ctrlc`'s
//! `termination` feature would take SIGHUP as well and make it a stop, and a reload must not
//! stop the worker. A second SIGINT or SIGTERM while a shutdown is under way exits at once,
//! for the operator whose clean shutdown is stuck.
//!
//! SIGXFSZ (a file-size limit reached) would kill the process by default; caught, the write
//! simply fails, the store reports it, and the batch is held until the limit is lifted.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};

use signal_hook::consts::{SIGHUP, SIGTERM, SIGXFSZ};
use signal_hook::iterator::{Handle, Signals};

use crate::channels::{ControlSender, ShutdownCause};

static STOP_REQUESTED: AtomicBool = AtomicBool::new(false);

#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    #[error("cannot install the SIGINT handler: {0}")]
    Ctrlc(#[from] ctrlc::Error),
    #[error("cannot install the SIGTERM/SIGHUP handlers: {0}")]
    Hook(#[from] io::Error),
}

/// The running signal thread; [`SignalListener::close`] ends and joins it.
pub struct SignalListener {
    handle: Handle,
    thread: Option<JoinHandle<()>>,
}

/// Installs the handlers. May be called once per process (a `ctrlc` restriction).
pub fn install(control: ControlSender) -> Result<SignalListener, SignalError> {
    let on_interrupt = control.clone();
    ctrlc::set_handler(move || request_stop(&on_interrupt, "SIGINT"))?;

    let mut signals = Signals::new([SIGTERM, SIGHUP, SIGXFSZ])?;
    let handle = signals.handle();
    let thread = thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                match signal {
                    SIGTERM => request_stop(&control, "SIGTERM"),
                    SIGXFSZ => log::warn!("a file reached the process's size limit (SIGXFSZ)"),
                    SIGHUP => control.reload(),
                    _ => {}
                }
            }
        })?;
    Ok(SignalListener {
        handle,
        thread: Some(thread),
    })
}

fn request_stop(control: &ControlSender, name: &'static str) {
    if STOP_REQUESTED.swap(true, Ordering::SeqCst) {
        log::warn!("second {name}: exiting now, without a clean shutdown");
        std::process::exit(1);
    }
    control.stop(ShutdownCause::Signal(name));
}

impl SignalListener {
    pub fn close(mut self) {
        self.handle.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
