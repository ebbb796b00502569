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
    /// The database file itself, locked too: a hard link or a symbolic link names another
    /// path, hence another sidecar, but the same file, and this lock is on the file.
    database: File,
}

/// A file's identity: the device and inode it lives on, whatever path names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(metadata: &std::fs::Metadata) -> FileId {
        use std::os::unix::fs::MetadataExt;
        FileId {
            dev: metadata.dev(),
            ino: metadata.ino(),
        }
    }
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
        let locked = |file: &File, lock: &Path| match file.try_lock() {
            Ok(()) => Ok(()),
            Err(TryLockError::WouldBlock) => Err(StoreError::Locked {
                path: db.to_path_buf(),
                lock: lock.to_path_buf(),
            }),
            Err(TryLockError::Error(source)) => Err(StoreError::Lock {
                lock: lock.to_path_buf(),
                source,
            }),
        };
        locked(&file, &lock)?;
        // An empty file is a new SQLite database; SQLite's own locks are POSIX record locks,
        // which this one (flock) neither takes nor disturbs, and this descriptor stays open
        // until the connection has closed.
        let database = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(db)
            .map_err(|source| StoreError::Lock {
                lock: db.to_path_buf(),
                source,
            })?;
        locked(&database, db)?;
        Ok(OwnerLock {
            _file: file,
            database,
        })
    }

    /// The identity of the database file this lock holds.
    pub fn file_id(&self) -> std::io::Result<FileId> {
        self.database.metadata().map(|m| FileId::of(&m))
    }
}

/// What `path` names now, if anything.
pub fn file_id_at(path: &Path) -> std::io::Result<FileId> {
    std::fs::metadata(path).map(|m| FileId::of(&m))
}
