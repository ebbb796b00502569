//! Opening the tag database: the writer, which holds the owner lock, or a read-only view for
//! operator queries.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use super::error::{BUSY_TIMEOUT, StoreError};
use super::location::sidecar;
use super::{checkpoint, lock, schema};

/// DECNET writes this constant on every tag (docs/tagging.md §4.1).
pub const ATTACK_RELEASE: &str = "v15.1";

/// An open tag database: the writer (holding the owner lock) or a read-only view.
#[derive(Debug)]
pub struct Store {
    // Field order matters: the background checkpointer stops first; then the connection
    // closes (and checkpoints) before the lock is released, so the next owner never races our
    // final WAL checkpoint.
    _checkpointer: Option<checkpoint::Checkpointer>,
    pub(super) conn: Connection,
    pub(super) path: PathBuf,
    /// The file the writer opened, which every commit checks the path still names.
    file_id: Option<lock::FileId>,
    _lock: Option<lock::OwnerLock>,
}

impl Store {
    /// Opens `path` for writing: creates the directory and the file if needed, takes the owner
    /// lock (a second writer fails here), switches to WAL and migrates the schema.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let lock = lock::OwnerLock::acquire(path)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn =
            Connection::open_with_flags(path, flags).map_err(|source| StoreError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        // SQLite quietly falls back to read-only when the file is write-protected; such a
        // connection would never recover even after the permissions are fixed, so refuse now.
        if conn
            .is_readonly(rusqlite::MAIN_DB)
            .map_err(|e| StoreError::from_sqlite(path, e))?
        {
            return Err(StoreError::NotWritable {
                path: path.to_path_buf(),
            });
        }
        configure_writer(&conn).map_err(|e| StoreError::from_sqlite(path, e))?;
        quick_check(&conn, path)?;
        schema::migrate(&mut conn, path)?;
        let file_id = lock.file_id().map_err(|source| StoreError::Lock {
            lock: path.to_path_buf(),
            source,
        })?;
        Ok(Store {
            _checkpointer: checkpoint::Checkpointer::start(path),
            conn,
            path: path.to_path_buf(),
            file_id: Some(file_id),
            _lock: Some(lock),
        })
    }

    /// Opens `path` for queries only. Never takes the owner lock, never creates a file, works
    /// while the daemon writes, and refuses a schema it does not know exactly.
    pub fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        match fs::metadata(path) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::Missing {
                    path: path.to_path_buf(),
                });
            }
            Err(source) => {
                return Err(StoreError::Stat {
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
        let conn = match open_reader(path, false) {
            Ok(conn) => conn,
            // A reader that may not create the `-shm` file (another user, daemon stopped, so no
            // WAL index exists) cannot open a WAL database normally. With no `-wal` file there
            // is nothing uncommitted to read, so reading the main file as immutable is exact —
            // unless a writer starts during the query, which at worst fails that query.
            Err(StoreError::ReadOnly { .. } | StoreError::Open { .. })
                if !sidecar(path, "-wal").exists() =>
            {
                open_reader(path, true)?
            }
            Err(e) => return Err(e),
        };
        Ok(Store {
            _checkpointer: None,
            conn,
            path: path.to_path_buf(),
            file_id: None,
            _lock: None,
        })
    }

    /// Hands the page cache's unused pages back to the allocator (SQLite's
    /// `sqlite3_db_release_memory`). The daemon calls this when it goes quiet: the writer's
    /// cache holds up to 8 MiB of index pages after a burst, which would otherwise stay
    /// resident through every idle spell; the next batch reads what it needs back from the
    /// operating system's file cache.
    pub fn release_cache(&self) {
        if let Err(e) = self.conn.release_memory() {
            log::debug!(
                "{}: could not release the page cache: {e}",
                self.path.display()
            );
        }
    }

    /// The database file this store reads and writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version recorded in the file.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        schema::current_version(&self.conn)
            .map(Option::unwrap_or_default)
            .map_err(|e| self.sqlite(e))
    }

    pub(super) fn sqlite(&self, e: rusqlite::Error) -> StoreError {
        StoreError::from_sqlite(&self.path, e)
    }
}

/// A read-only connection whose schema has been checked.
/// SQLite's `quick_check` (pages and structure, not index contents): a damaged file is said
/// at start, before any batch could be held on it for ever.
fn quick_check(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let mut statement = conn
        .prepare("PRAGMA quick_check(5)")
        .map_err(|e| StoreError::from_sqlite(path, e))?;
    let report: Vec<String> = statement
        .query_map([], |row| row.get(0))
        .and_then(|rows| rows.collect())
        .map_err(|e| StoreError::from_sqlite(path, e))?;
    if report == ["ok"] {
        Ok(())
    } else {
        Err(StoreError::FailedCheck {
            path: path.to_path_buf(),
            report: report.join("; "),
        })
    }
}

impl Store {
    /// Fails when the database path no longer names the file this writer opened: deleted,
    /// replaced by another file or moved away. A commit into such a file is on no disk anyone
    /// will read again, so it must not be acknowledged. Read-only views have nothing to check.
    pub fn check_identity(&self) -> Result<(), StoreError> {
        let Some(opened) = self.file_id else {
            return Ok(());
        };
        let what = match lock::file_id_at(&self.path) {
            Ok(now) if now == opened => return Ok(()),
            Ok(_) => "the path now names another file".to_owned(),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                "it was deleted or moved".to_owned()
            }
            Err(err) => format!("cannot look at the path: {err}"),
        };
        Err(StoreError::Replaced {
            path: self.path.clone(),
            what,
        })
    }
}

fn open_reader(path: &Path, immutable: bool) -> Result<Connection, StoreError> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = if immutable {
        flags |= OpenFlags::SQLITE_OPEN_URI;
        Connection::open_with_flags(file_uri(path, "immutable=1"), flags)
    } else {
        Connection::open_with_flags(path, flags)
    }
    .map_err(|source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| StoreError::from_sqlite(path, e))?;
    schema::check_readable(&conn, path)?;
    Ok(conn)
}

/// A SQLite `file:` URI for `path`, percent-encoding every byte a URI could misread.
fn file_uri(path: &Path, query: &str) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut uri = String::from("file:");
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            uri.push(char::from(b));
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri.push('?');
    uri.push_str(query);
    uri
}

/// WAL lets operator queries read while the daemon writes; `synchronous=NORMAL` is safe in
/// WAL (a power cut may lose the last commits, never corrupt) and saves an fsync per batch,
/// which matters on appliance flash. Checkpoints run on their own thread (`checkpoint.rs`).
fn configure_writer(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        log::warn!("the tag database stays in journal mode {mode:?}; WAL was refused");
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(
        None,
        "wal_autocheckpoint",
        checkpoint::WRITER_AUTOCHECKPOINT_PAGES,
    )?;
    // The indexes' upper pages are touched by every batch; keep them in memory (8 MiB) rather
    // than reading them back from the WAL each time.
    conn.pragma_update(None, "cache_size", -8192)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_uris_escape_what_a_uri_would_misread() {
        assert_eq!(
            file_uri(Path::new("/var/lib/ttp-worker/ttp.db"), "immutable=1"),
            "file:/var/lib/ttp-worker/ttp.db?immutable=1"
        );
        assert_eq!(
            file_uri(Path::new("/tmp/a b?c#d%e/é.db"), "x=1"),
            "file:/tmp/a%20b%3Fc%23d%25e/%C3%A9.db?x=1"
        );
    }

    #[test]
    fn the_immutable_reader_opens_awkward_paths() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("odd ?#%é").join("ttp.db");
        let mut store = Store::open(&path).unwrap();
        store.learn_anchor("203.0.113.7", "u").unwrap();
        drop(store);
        let conn = open_reader(&path, true).unwrap();
        let anchors: i64 = conn
            .query_row("SELECT COUNT(*) FROM attacker_anchor", [], |r| r.get(0))
            .unwrap();
        assert_eq!(anchors, 1);
    }
}
