//! The subcommands, one module each: `tag`, `check-rules`, `tags`, `stats`, `publish` (a new
//! subcommand gets its own module here). Each `run` takes its inputs and its writers and returns a typed
//! result; `main.rs` only turns that into an exit status, so tests drive exactly what users
//! run. These are the only modules that print: `tagging` and `store` return values.

pub mod check_rules;
pub mod publish;
pub mod stats;
pub mod tag;
pub mod tags;

use std::io;

use crate::store::StoreError;

/// A command's failure, as `main` decides what to do with it.
pub trait Failure: std::error::Error {
    /// The output's reader went away (`ttp-worker tags | head -1`): the rest of the output
    /// is no longer wanted, so the command ends quietly and successfully, as ripgrep does.
    fn closed_pipe(&self) -> bool;

    /// The user's input could not be read: bad usage (exit 2), like an input that cannot be
    /// opened, rather than the command failing (exit 1).
    fn unreadable_input(&self) -> bool {
        false
    }
}

fn is_closed_pipe(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::BrokenPipe
}

/// Why a command that reads the store (`tags`, `stats`) showed nothing, or stopped part way.
#[derive(Debug, thiserror::Error)]
pub enum StoreReadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Decnet(#[from] crate::decnet_db::DbError),
    #[error("cannot write the output: {0}")]
    Write(#[source] io::Error),
}

impl Failure for StoreReadError {
    fn closed_pipe(&self) -> bool {
        matches!(self, StoreReadError::Write(e) if is_closed_pipe(e))
    }
}
