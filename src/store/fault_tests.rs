//! Fault injection: a store that cannot be written must fail the batch with an error the
//! daemon can act on, roll everything back, and accept the very same batch once the condition
//! clears. These reach into the connection, hence unit tests; so does the check that a quiet
//! daemon hands its page cache back.
//!
//! Tests run as root here, where `chmod 0444` stops nothing, so the conditions are made inside
//! SQLite instead: `PRAGMA max_page_count` pins the file's size (SQLite then reports
//! SQLITE_FULL exactly as for a full disk), and a connection opened SQLITE_OPEN_READ_ONLY stands
//! in for a file or mount that turned read-only under the daemon.

use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use serde_json::{Map, Value};

use super::{Store, StoreError};
use crate::tagging::Tag;

fn tag(n: usize, evidence_bytes: usize) -> Tag {
    let mut evidence = Map::new();
    evidence.insert("padding".into(), Value::String("x".repeat(evidence_bytes)));
    let uuid = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, format!("fault-{n}").as_bytes());
    Tag {
        source_id: format!("cmd-{n}"),
        evidence,
        ..Tag::for_test(&uuid.to_string())
    }
}

/// Twenty messages of bulky tags: enough pages that the failure lands mid-batch.
fn big_batch() -> Vec<Vec<Tag>> {
    (0..20)
        .map(|m| vec![tag(2 * m, 3000), tag(2 * m + 1, 3000)])
        .collect()
}

fn count(store: &Store) -> i64 {
    store
        .conn
        .query_row("SELECT COUNT(*) FROM ttp_tag", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn a_full_disk_fails_the_batch_cleanly_and_the_retry_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ttp.db");
    let mut store = Store::open(&path).unwrap();
    store.insert_batch(&[vec![tag(1000, 10)]]).unwrap();

    let pages: i64 = store
        .conn
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .unwrap();
    let _: i64 = store
        .conn
        .query_row(&format!("PRAGMA max_page_count = {}", pages + 2), [], |r| {
            r.get(0)
        })
        .unwrap();

    let batch = big_batch();
    let err = store.insert_batch(&batch).unwrap_err();
    assert!(matches!(err, StoreError::Full { .. }), "{err}");
    assert!(err.is_transient());
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    assert!(store.conn.is_autocommit(), "no transaction left open");
    assert_eq!(count(&store), 1, "nothing of the failed batch was kept");

    // Space freed: the same batch goes in whole, and every tag is reported new.
    let _: i64 = store
        .conn
        .query_row("PRAGMA max_page_count = 1000000", [], |r| r.get(0))
        .unwrap();
    let outcome = store.insert_batch(&batch).unwrap();
    assert_eq!(outcome.inserted_count(), 40);
    assert_eq!(outcome.inserted, vec![vec![0, 1]; 20]);
    assert_eq!(count(&store), 41);
}

#[test]
fn a_read_only_database_fails_the_batch_and_the_retry_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ttp.db");
    let mut store = Store::open(&path).unwrap();
    let read_only = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let writable = std::mem::replace(&mut store.conn, read_only);

    let batch = big_batch();
    let err = store.insert_batch(&batch).unwrap_err();
    assert!(matches!(err, StoreError::ReadOnly { .. }), "{err}");
    assert!(err.is_transient());
    assert!(err.to_string().contains("permissions"), "{err}");
    assert!(store.learn_anchor("203.0.113.7", "a").is_err());

    store.conn = writable;
    let outcome = store.insert_batch(&batch).unwrap();
    assert_eq!(outcome.inserted_count(), 40);
}

#[test]
fn a_busy_database_fails_the_batch_and_the_retry_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ttp.db");
    let mut store = Store::open(&path).unwrap();
    store.conn.busy_timeout(Duration::from_millis(50)).unwrap();

    // A rogue connection (say, an operator's sqlite3 shell) holding a write transaction.
    let rogue = Connection::open(&path).unwrap();
    rogue.execute_batch("BEGIN IMMEDIATE").unwrap();
    let err = store.insert_batch(&[vec![tag(1, 10)]]).unwrap_err();
    assert!(matches!(err, StoreError::Busy { .. }), "{err}");
    assert!(err.is_transient());

    rogue.execute_batch("ROLLBACK").unwrap();
    let outcome = store.insert_batch(&[vec![tag(1, 10)]]).unwrap();
    assert_eq!(outcome.inserted, vec![vec![0]]);
}

/// The real thing, where it can be observed: only for an unprivileged user (run the test
/// binary under `setpriv --reuid=65534 --regid=65534 --clear-groups` to see it as root).
#[cfg(unix)]
#[test]
fn a_write_protected_file_is_refused_until_permissions_are_fixed() {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ttp.db");
    drop(Store::open(&path).unwrap());
    fs::set_permissions(&path, fs::Permissions::from_mode(0o444)).unwrap();
    if fs::OpenOptions::new().write(true).open(&path).is_ok() {
        eprintln!(
            "skipped: running with privileges that ignore file modes (the tests above cover it)"
        );
        return;
    }
    let err = Store::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::NotWritable { .. }), "{err}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );

    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let mut store = Store::open(&path).unwrap();
    assert_eq!(
        store
            .insert_batch(&[vec![tag(1, 10)]])
            .unwrap()
            .inserted_count(),
        1
    );
}

#[test]
fn a_row_the_database_refuses_costs_only_itself() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("ttp.db")).unwrap();
    // A constraint the validation cannot know about, standing in for any future one.
    store
        .conn
        .execute_batch(
            "CREATE TRIGGER refuse BEFORE INSERT ON ttp_tag WHEN NEW.source_id = 'cmd-1'
             BEGIN SELECT RAISE(ABORT, 'refused by test'); END",
        )
        .unwrap();
    let outcome = store
        .insert_batch(&[vec![tag(0, 10), tag(1, 10), tag(2, 10)]])
        .unwrap();
    assert_eq!(outcome.inserted, vec![vec![0, 2]]);
    assert_eq!(outcome.skipped.len(), 1);
    assert_eq!(outcome.skipped[0].tag, 1);
    assert!(
        matches!(&outcome.skipped[0].reason, super::SkipReason::Rejected(m) if m.contains("refused by test")),
        "{:?}",
        outcome.skipped[0].reason
    );
    assert_eq!(count(&store), 2);
}

/// Bytes the writer's page cache holds (SQLITE_DBSTATUS_CACHE_USED).
fn cache_used(store: &Store) -> i32 {
    let (mut current, mut highwater) = (0, 0);
    // SAFETY: the handle is the store's open connection, used on this thread only, and the
    // call only reads a counter into the two integers it is given.
    let rc = unsafe {
        rusqlite::ffi::sqlite3_db_status(
            store.conn.handle(),
            rusqlite::ffi::SQLITE_DBSTATUS_CACHE_USED,
            &mut current,
            &mut highwater,
            0,
        )
    };
    assert_eq!(rc, rusqlite::ffi::SQLITE_OK);
    current
}

/// What the daemon does once a burst is over: the pages a batch pulled into the writer's
/// cache are handed back, and the store keeps working.
#[test]
fn releasing_the_cache_gives_its_pages_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("ttp.db")).unwrap();
    let batch: Vec<Vec<Tag>> = (0..2000).map(|n| vec![tag(n, 200)]).collect();
    store.commit_batch(&batch, &[]).unwrap();
    let after_burst = cache_used(&store);
    assert!(after_burst > 256 * 1024, "{after_burst}");
    store.release_cache();
    let released = cache_used(&store);
    assert!(released < after_burst / 10, "{released} of {after_burst}");
    let more: Vec<Vec<Tag>> = (2000..2010).map(|n| vec![tag(n, 200)]).collect();
    assert_eq!(store.commit_batch(&more, &[]).unwrap().inserted_count(), 10);
}
