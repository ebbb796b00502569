//! Opening the store: migrations, the single-owner lock, read-only access beside the daemon.

mod store_support;

use std::fs;

use store_support::*;
use ttp_worker::store::{SCHEMA_VERSION, Store, StoreError, lock_path};

#[test]
fn opening_creates_the_directory_and_migrates_a_new_or_empty_file() {
    let (dir, _) = temp_db();
    let nested = dir.path().join("state").join("ttp-worker").join("ttp.db");
    let store = Store::open(&nested).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    assert!(nested.is_file());
    drop(store);

    let empty = dir.path().join("empty.db");
    fs::write(&empty, b"").unwrap();
    let store = Store::open(&empty).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    drop(store);
    // Reopening an up-to-date file is a no-op.
    assert_eq!(
        Store::open(&empty).unwrap().schema_version().unwrap(),
        SCHEMA_VERSION
    );
}

#[test]
fn a_newer_schema_is_refused_by_writers_and_readers() {
    let (_dir, path) = temp_db();
    drop(Store::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "INSERT INTO schema_version (version, applied_at) VALUES (?1, 'later')",
        [SCHEMA_VERSION + 1],
    )
    .unwrap();
    drop(conn);

    let err = Store::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::FutureSchema { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("newer"), "{message}");

    let err = Store::open_read_only(&path).unwrap_err();
    assert!(matches!(err, StoreError::FutureSchema { .. }), "{err}");
}

#[test]
fn another_applications_database_is_left_alone() {
    let (_dir, path) = temp_db();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("CREATE TABLE invoices (id INTEGER)")
        .unwrap();
    drop(conn);
    let err = Store::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::NotOurs { .. }), "{err}");
    let err = Store::open_read_only(&path).unwrap_err();
    assert!(matches!(err, StoreError::NotOurs { .. }), "{err}");
}

#[test]
fn a_garbage_file_is_an_error_not_a_panic() {
    let (_dir, path) = temp_db();
    fs::write(&path, vec![0x5a; 8192]).unwrap();
    let err = Store::open(&path).unwrap_err();
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    assert!(Store::open_read_only(&path).is_err());
}

#[test]
fn one_process_owns_a_database() {
    let (_dir, path) = temp_db();
    let first = Store::open(&path).unwrap();

    let err = Store::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "another ttp-worker owns {} (lock file {}.lock)",
            path.display(),
            path.display()
        )
    );
    assert_eq!(lock_path(&path).file_name().unwrap(), "ttp.db.lock");

    drop(first);
    let mut second = Store::open(&path).unwrap();
    second.insert_batch(&[vec![tag("after-handover")]]).unwrap();
}

#[test]
fn readers_work_beside_the_writer_and_see_its_commits() {
    let (_dir, path) = temp_db();
    let mut writer = Store::open(&path).unwrap();
    writer.insert_batch(&[vec![tag("a")]]).unwrap();

    let reader = Store::open_read_only(&path).unwrap();
    assert_eq!(reader.stats().unwrap().total, 1);
    writer
        .insert_batch(&[vec![tag("b")], vec![tag("c")]])
        .unwrap();
    assert_eq!(reader.stats().unwrap().total, 3);

    // The reader took no lock: the writer keeps writing, and a second writer is still refused.
    assert!(matches!(
        Store::open(&path).unwrap_err(),
        StoreError::Locked { .. }
    ));
    writer.insert_batch(&[vec![tag("d")]]).unwrap();
    assert_eq!(row_count(&path), 4);
}

#[test]
fn readers_open_a_cleanly_closed_database() {
    let (_dir, path) = temp_db();
    {
        let mut writer = Store::open(&path).unwrap();
        writer.insert_batch(&[vec![tag("a")]]).unwrap();
    }
    assert_eq!(row_count(&path), 1);
    // And the writer can come back after a reader.
    let reader = Store::open_read_only(&path).unwrap();
    let mut writer = Store::open(&path).unwrap();
    writer.insert_batch(&[vec![tag("b")]]).unwrap();
    assert_eq!(reader.stats().unwrap().total, 2);
}

#[test]
fn reading_a_missing_database_is_a_clear_error_and_creates_nothing() {
    let (dir, path) = temp_db();
    let err = Store::open_read_only(&path).unwrap_err();
    assert!(matches!(err, StoreError::Missing { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("--db"), "{message}");
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);

    let in_missing_dir = dir.path().join("nowhere").join("ttp.db");
    assert!(matches!(
        Store::open_read_only(&in_missing_dir).unwrap_err(),
        StoreError::Missing { .. }
    ));
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn a_reader_cannot_write() {
    let (_dir, path) = temp_db();
    drop(Store::open(&path).unwrap());
    let mut reader = Store::open_read_only(&path).unwrap();
    let err = reader.insert_batch(&[vec![tag("a")]]).unwrap_err();
    assert!(matches!(err, StoreError::ReadOnly { .. }), "{err}");
    assert_eq!(row_count(&path), 0);
}

/// An operator who may read but not write the state directory, daemon stopped: SQLite cannot
/// create the WAL index, so the reader falls back to an immutable open. Only observable for an
/// unprivileged user (run the test binary under `setpriv --reuid=65534 ...` to see it as root).
#[cfg(unix)]
#[test]
fn a_reader_without_write_access_to_the_directory_still_reads() {
    use std::os::unix::fs::PermissionsExt;

    let (dir, path) = temp_db();
    {
        let mut writer = Store::open(&path).unwrap();
        writer.insert_batch(&[vec![tag("a")]]).unwrap();
    }
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o555)).unwrap();
    let privileged = fs::write(dir.path().join("probe"), b"").is_ok();
    let result = Store::open_read_only(&path).map(|s| s.stats().map(|s| s.total));
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    if privileged {
        eprintln!("note: privileged user, the directory stayed writable");
    }
    assert_eq!(result.unwrap().unwrap(), 1);
}

/// The lock is on the database file, not only on its name: a hard link or a symbolic link to
/// an owned database is refused like the database itself.
#[test]
fn links_to_an_owned_database_are_refused() {
    let (dir, path) = temp_db();
    let _owner = Store::open(&path).unwrap();
    let hard = dir.path().join("hard.db");
    fs::hard_link(&path, &hard).unwrap();
    let soft = dir.path().join("soft.db");
    std::os::unix::fs::symlink(&path, &soft).unwrap();
    for link in [hard, soft] {
        let err = Store::open(&link).unwrap_err();
        assert!(
            matches!(err, StoreError::Locked { .. }),
            "{}: {err}",
            link.display()
        );
    }
}

/// A database deleted (or replaced) under the writer: the commit that follows fails, fatally,
/// so its batch is not acknowledged, and says what happened to the file.
#[test]
fn a_commit_into_a_deleted_or_replaced_database_fails_fatally() {
    let (dir, path) = temp_db();
    let mut store = Store::open(&path).unwrap();
    store.insert_batch(&[vec![tag("before")]]).unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let _ = fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let err = store
        .insert_batch(&[vec![tag("after-delete")]])
        .unwrap_err();
    assert!(err.is_fatal(), "{err}");
    assert!(err.to_string().contains("deleted or moved"), "{err}");

    let (_dir2, other) = temp_db();
    let mut store = Store::open(&other).unwrap();
    fs::write(dir.path().join("impostor"), b"").unwrap();
    fs::rename(dir.path().join("impostor"), &other).unwrap();
    let err = store
        .insert_batch(&[vec![tag("after-replace")]])
        .unwrap_err();
    assert!(err.is_fatal(), "{err}");
    assert!(err.to_string().contains("another file"), "{err}");
}

/// Damaged inner pages are found at start, as a fatal error naming the file, rather than
/// failing every batch for ever.
#[test]
fn a_database_with_damaged_pages_is_refused_at_start() {
    let (_dir, path) = temp_db();
    let mut store = Store::open(&path).unwrap();
    let batch: Vec<_> = (0..3000).map(|i| tag(&format!("row-{i}"))).collect();
    store.insert_batch(&[batch]).unwrap();
    drop(store);
    let mut bytes = fs::read(&path).unwrap();
    assert!(bytes.len() > 64 * 1024, "{} bytes", bytes.len());
    for byte in &mut bytes[16 * 1024..48 * 1024] {
        *byte = 0xa5;
    }
    fs::write(&path, &bytes).unwrap();
    let err = Store::open(&path).unwrap_err();
    assert!(err.is_fatal(), "{err}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}
