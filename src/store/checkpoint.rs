//! WAL checkpoints on their own thread and connection.
//!
//! Left to SQLite, a checkpoint runs inside whichever commit pushes the WAL past its limit:
//! the main loop would stop to copy pages into the database file and fsync it, a sixth of its
//! time under load. A passive checkpoint from a second connection does the same work beside
//! the writer without blocking it; the writer keeps a much higher automatic limit only as a
//! safety net in case this thread falls behind.

use std::path::Path;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{Sender, bounded};
use rusqlite::{Connection, OpenFlags};

/// How often the WAL is folded back into the database file.
const INTERVAL: Duration = Duration::from_millis(250);

/// The writer's own automatic checkpoint, in pages, for when this thread cannot keep up
/// (SQLite's default is 1000).
pub const WRITER_AUTOCHECKPOINT_PAGES: u32 = 16_000;

#[derive(Debug)]
pub struct Checkpointer {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts checkpointing `path`; `None` (logged) when the second connection cannot be
    /// opened, in which case the writer's own automatic checkpoints do the work.
    pub fn start(path: &Path) -> Option<Checkpointer> {
        let connection = match Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        ) {
            Ok(connection) => connection,
            Err(err) => {
                log::warn!("no background checkpoints for {}: {err}", path.display());
                return None;
            }
        };
        let (stop, stopped) = bounded::<()>(0);
        let display = path.display().to_string();
        let thread = thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn(move || {
                let _ = connection.busy_timeout(Duration::from_millis(100));
                // Checkpoints copy pages straight through; a page cache would only hold memory.
                let _ = connection.pragma_update(None, "cache_size", 16);
                while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(INTERVAL)
                {
                    if let Err(err) =
                        connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        log::debug!("checkpoint of {display} skipped: {err}");
                    }
                }
            });
        match thread {
            Ok(thread) => Some(Checkpointer {
                stop: Some(stop),
                thread: Some(thread),
            }),
            Err(err) => {
                log::warn!("no background checkpoints: cannot start a thread: {err}");
                None
            }
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
