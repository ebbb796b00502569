//! One error type for the store, with a message an operator can act on: every variant names
//! the database (or lock file) it is about, because on an appliance the first question is
//! always "which file?".

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::ErrorCode;

/// How long a statement waits for a competing connection before giving up with
/// [`StoreError::Busy`]. Only checkpoints and readers compete with the single writer, so a
/// few seconds is generous, yet short enough that the main loop never looks hung.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the directory {} for the tag database: {source}", path.display())]
    CreateDir { path: PathBuf, source: io::Error },

    #[error("another ttp-worker owns {} (lock file {})", path.display(), lock.display())]
    Locked { path: PathBuf, lock: PathBuf },

    #[error("cannot use the lock file {}: {source}", lock.display())]
    Lock { lock: PathBuf, source: io::Error },

    #[error(
        "no tag database at {}: the worker creates it on its first start; \
         pass --db (or DECNET_TTP_DB) if it lives elsewhere",
        path.display()
    )]
    Missing { path: PathBuf },

    #[error("cannot open the tag database {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },

    #[error(
        "{} is not a ttp-worker tag database (it has no schema_version table)",
        path.display()
    )]
    NotOurs { path: PathBuf },

    #[error(
        "the tag database {} has schema version {found}, newer than the {known} this ttp-worker \
         knows; run a newer ttp-worker (downgrades are not supported)",
        path.display()
    )]
    FutureSchema {
        path: PathBuf,
        found: i64,
        known: i64,
    },

    #[error(
        "the tag database {} has schema version {found}, older than {known}; start the worker \
         once to migrate it (read-only access never migrates)",
        path.display()
    )]
    OldSchema {
        path: PathBuf,
        found: i64,
        known: i64,
    },

    #[error(
        "the tag database {} is not writable by this process: check the owner and mode of the \
         file and its directory, and that the mount is read-write",
        path.display()
    )]
    NotWritable { path: PathBuf },

    #[error("cannot migrate the tag database {} to schema version {version}: {source}", path.display())]
    Migrate {
        path: PathBuf,
        version: i64,
        source: rusqlite::Error,
    },

    #[error(
        "the tag database {} stayed locked by another connection for {timeout:?}; \
         the batch was rolled back and can be retried",
        path.display()
    )]
    Busy {
        path: PathBuf,
        timeout: Duration,
        source: rusqlite::Error,
    },

    #[error(
        "the tag database {} is full (disk full or size limit reached); the batch was rolled \
         back: free space, then it can be retried",
        path.display()
    )]
    Full {
        path: PathBuf,
        source: rusqlite::Error,
    },

    #[error(
        "the tag database {} cannot be written ({source}); the batch was rolled back: check \
         the file's and directory's permissions and the mount, then it can be retried",
        path.display()
    )]
    ReadOnly {
        path: PathBuf,
        source: rusqlite::Error,
    },

    #[error("I/O error on the tag database {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: rusqlite::Error,
    },

    #[error("the tag database {} is damaged: {source}", path.display())]
    Corrupt {
        path: PathBuf,
        source: rusqlite::Error,
    },

    #[error(
        "the tag database {} failed its integrity check at start ({report}); restore it from a \
         backup, or move it aside to start afresh",
        path.display()
    )]
    FailedCheck { path: PathBuf, report: String },

    #[error(
        "the tag database {} is no longer the file this worker opened ({what}); stopping, so \
         that nothing is acknowledged that is not in it",
        path.display()
    )]
    Replaced { path: PathBuf, what: String },

    #[error("database error on {}: {source}", path.display())]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },

    #[error("cannot read the size of {}: {source}", path.display())]
    Stat { path: PathBuf, source: io::Error },

    #[error("cannot learn the anchor {attacker_ip:?} -> {attacker_uuid:?}: {reason}")]
    InvalidAnchor {
        attacker_ip: String,
        attacker_uuid: String,
        reason: &'static str,
    },

    #[error("invalid query: {0}")]
    Query(String),
}

impl StoreError {
    /// `true` when the same batch may succeed later unchanged (a busy, full, read-only or
    /// failing disk clears up; the transaction was rolled back). The daemon keeps such a batch
    /// and retries it instead of dropping its messages.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Busy { .. }
                | StoreError::Full { .. }
                | StoreError::ReadOnly { .. }
                | StoreError::Io { .. }
        )
    }

    /// Whether going on would be wrong rather than slow: the file was replaced or is damaged,
    /// so retrying the batch could only fail again or write where nobody reads.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            StoreError::Corrupt { .. }
                | StoreError::Replaced { .. }
                | StoreError::FailedCheck { .. }
        )
    }

    /// Sorts a SQLite failure into the variant that tells the operator what to do.
    pub(crate) fn from_sqlite(path: &Path, source: rusqlite::Error) -> StoreError {
        let path = path.to_path_buf();
        match source.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Busy {
                path,
                timeout: BUSY_TIMEOUT,
                source,
            },
            Some(ErrorCode::DiskFull) => StoreError::Full { path, source },
            Some(ErrorCode::ReadOnly) => StoreError::ReadOnly { path, source },
            Some(ErrorCode::SystemIoFailure) => StoreError::Io { path, source },
            Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => {
                StoreError::Corrupt { path, source }
            }
            _ => StoreError::Sqlite { path, source },
        }
    }
}
