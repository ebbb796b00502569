//! One writer per database, enforced with an advisory lock on a sidecar file.
//!
//! Two daemons writing the same store would both publish `ttp.tagged` for rows only one of them
//! really inserted first, breaking the loop-prevention rule (docs/bus.md §6.3) in subtle ways. SQLite's
//! own `locking_mode=EXCLUSIVE` would also shut out the operator's read-only queries, so the
//! lock lives beside the database instead: `<db>.lock`, held by `flock` for the life of the
//! `Store` and released by the kernel even if the process is killed. The file itself is never
//! removed: deleting it would let a third process lock a fresh inode while the old one is held.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use super::error::StoreError;
use super::location::sidecar;

/// The sidecar lock file for `db`: the database path with `.lock` appended.
pub fn lock_path(db: &Path) -> PathBuf {
    sidecar(db, ".lock")
}

/// Holds the lock until dropped.
#[derive(Debug)]
pub struct OwnerLock {
    _file: File,
}

impl OwnerLock {
    /// Takes the lock for `db` without waiting: a second owner fails at once with a message
    /// naming both files, rather than hanging a service start.
    pub fn acquire(db: &Path) -> Result<OwnerLock, StoreError> {
        let lock = lock_path(db);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock)
            .map_err(|source| StoreError::Lock {
                lock: lock.clone(),
                source,
            })?;
        match file.try_lock() {
            Ok(()) => Ok(OwnerLock { _file: file }),
            Err(TryLockError::WouldBlock) => Err(StoreError::Locked {
                path: db.to_path_buf(),
                lock,
            }),
            Err(TryLockError::Error(source)) => Err(StoreError::Lock { lock, source }),
        }
    }
}
