//! Why DECNET's database could not be used. Each message names the database, because an
//! operator who points the worker at DECNET's database first asks "which one?".

use std::path::PathBuf;

use rusqlite::ErrorCode;

use super::schema::SchemaMismatch;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// DECNET creates its database; the worker never does, so a missing file is a wrong path.
    #[error(
        "no DECNET database at {}: DECNET creates it; check DECNET_DB_PATH (or --decnet-db-path)",
        path.display()
    )]
    NoFile { path: PathBuf },

    /// A server that answers and refuses the worker: wrong user or password, no such
    /// database, no access to it.
    #[error(
        "DECNET's database {where_} refuses the worker: {reason}; check DECNET_DB_URL or \
         DECNET_DB_USER, DECNET_DB_NAME and the password"
    )]
    Refused { where_: String, reason: String },

    #[error("DECNET's database {where_}: {mismatch}")]
    Schema {
        where_: String,
        mismatch: SchemaMismatch,
    },

    /// Waiting for DECNET's own writers, a full disk, an I/O failure, a server that went
    /// away: the batch is held and retried.
    #[error("DECNET's database {where_} is unavailable for now: {reason}")]
    Unavailable { where_: String, reason: String },

    #[error("DECNET's database {where_}: {reason}")]
    Failed { where_: String, reason: String },

    /// A `tags` filter DECNET's table cannot answer.
    #[error("{0}")]
    Query(String),
}

impl DbError {
    /// `true` when the same work may succeed later unchanged.
    pub fn is_transient(&self) -> bool {
        matches!(self, DbError::Unavailable { .. })
    }

    /// `true` for what only the operator can fix before the worker can start (exit 2).
    pub fn is_setup(&self) -> bool {
        matches!(
            self,
            DbError::NoFile { .. } | DbError::Schema { .. } | DbError::Refused { .. }
        )
    }

    pub(crate) fn from_sqlite(path: &std::path::Path, source: rusqlite::Error) -> DbError {
        let where_ = path.display().to_string();
        let reason = source.to_string();
        match source.sqlite_error_code() {
            Some(
                ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::DiskFull
                | ErrorCode::SystemIoFailure
                | ErrorCode::ReadOnly
                | ErrorCode::CannotOpen,
            ) => DbError::Unavailable { where_, reason },
            _ => DbError::Failed { where_, reason },
        }
    }
}
