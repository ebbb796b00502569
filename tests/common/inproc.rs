//! The real bus and main loop run inside the test process, with a handler that reports what
//! reached it and can be told to fail (as a store that cannot be written would).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, unbounded};

use super::NatsServer;
use ttp_worker::bus::BusSettings;
use ttp_worker::bus::StreamConfig;
use ttp_worker::channels::{ControlSender, Outbox, ShutdownCause};
use ttp_worker::counters::{Counters, Mode};
use ttp_worker::daemon::{self, BatchFailed, Handler, Interrupt, Wired};
use ttp_worker::envelope::Inbound;

/// Passes every message of a successful batch on to the test.
pub struct Relay {
    seen: Sender<Inbound>,
    failing: Arc<AtomicBool>,
}

impl Handler for Relay {
    fn handle_batch(
        &mut self,
        batch: &[Inbound],
        _outbox: &dyn Outbox,
        _interrupt: &Interrupt,
    ) -> Result<usize, BatchFailed> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(BatchFailed::Transient(
                "the test says this batch fails".into(),
            ));
        }
        for message in batch {
            self.seen.send(message.clone()).unwrap();
        }
        Ok(batch.len())
    }
    fn reload(&mut self) {}
}

pub struct InProcessWorker {
    pub seen: Receiver<Inbound>,
    pub failing: Arc<AtomicBool>,
    pub counters: Arc<Counters>,
    control: ControlSender,
    thread: Option<thread::JoinHandle<ShutdownCause>>,
}

impl InProcessWorker {
    pub fn start(server: &NatsServer, durable: bool) -> InProcessWorker {
        InProcessWorker::start_with(server, durable, false)
    }

    /// `failing`: whether the handler fails from the start.
    pub fn start_with(server: &NatsServer, durable: bool, failing: bool) -> InProcessWorker {
        let (seen_tx, seen) = unbounded();
        let failing = Arc::new(AtomicBool::new(failing));
        let handler = Relay {
            seen: seen_tx,
            failing: failing.clone(),
        };
        let mut worker = InProcessWorker::start_handler(server, durable, |_| handler);
        worker.seen = seen;
        worker.failing = failing;
        worker
    }

    /// Runs `make_handler`'s handler (e.g. the real tagging pipeline) behind the real bus.
    pub fn start_handler<H: Handler + Send + 'static>(
        server: &NatsServer,
        durable: bool,
        make_handler: impl FnOnce(Arc<Counters>) -> H,
    ) -> InProcessWorker {
        let mode = if durable { Mode::Durable } else { Mode::Core };
        let counters = Arc::new(Counters::new(mode));
        let settings = BusSettings {
            urls: vec![server.url()],
            enabled: true,
            heartbeat_interval: Duration::from_millis(200),
            connect_timeout: Duration::from_secs(2),
            durable,
            stream: StreamConfig::default(),
            security: Default::default(),
        };
        let handler = make_handler(counters.clone());
        let Wired { main_loop, control } = daemon::wire(
            settings,
            Duration::from_millis(100),
            handler,
            counters.clone(),
        );
        let thread = thread::spawn(move || main_loop.run().cause);
        InProcessWorker {
            seen: unbounded().1,
            failing: Arc::new(AtomicBool::new(false)),
            counters,
            control,
            thread: Some(thread),
        }
    }

    /// Waits until the main loop has handled `n` messages in all.
    pub fn wait_processed(&self, n: u64) {
        let deadline = std::time::Instant::now() + super::PATIENCE * 6;
        while Counters::get(&self.counters.processed) < n {
            assert!(
                std::time::Instant::now() < deadline,
                "only {} of {n} messages processed",
                Counters::get(&self.counters.processed)
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn stop(mut self) -> ShutdownCause {
        self.stop_in_place()
    }

    fn stop_in_place(&mut self) -> ShutdownCause {
        self.control.stop(ShutdownCause::Signal("SIGTERM"));
        self.thread
            .take()
            .map(|t| t.join().expect("main loop panicked"))
            .unwrap_or(ShutdownCause::Orphaned)
    }
}

impl Drop for InProcessWorker {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop_in_place();
        }
    }
}
