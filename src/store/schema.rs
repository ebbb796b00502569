//! The schema and its forward-only migrations.
//!
//! Each entry of [`MIGRATIONS`] moves the database from version N to N+1 and is never edited
//! once released: an appliance may sit on any old version, and the only way it catches up is by
//! replaying the steps it has not seen, in order, inside one transaction (a crash half way
//! leaves the old version intact). A database newer than this binary knows is refused rather
//! than guessed at: columns it added may carry meaning this code would silently drop.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use super::clock::format_utc;
use super::error::StoreError;

/// Version 1: tags and learned anchors.
///
/// `ttp_tag.created_at` is fixed-width ISO-8601 UTC text (see `clock.rs`), so text order is time
/// order. The CHECKs mirror DECNET's model plus the port's IP anchor; the insert path validates
/// the same conditions first so one bad row never costs a batch.
const V1: &str = "
CREATE TABLE ttp_tag (
    uuid             TEXT PRIMARY KEY NOT NULL,
    source_kind      TEXT NOT NULL,
    source_id        TEXT NOT NULL,
    attacker_uuid    TEXT,
    identity_uuid    TEXT,
    attacker_ip      TEXT,
    session_id       TEXT,
    decky_id         TEXT,
    tactic           TEXT NOT NULL,
    technique_id     TEXT NOT NULL,
    sub_technique_id TEXT,
    confidence       REAL NOT NULL CHECK (confidence >= 0.0 AND confidence <= 1.0),
    rule_id          TEXT NOT NULL,
    rule_version     INTEGER NOT NULL,
    evidence         TEXT NOT NULL CHECK (json_valid(evidence) AND json_type(evidence) = 'object'),
    attack_release   TEXT NOT NULL,
    mitre_url        TEXT,
    created_at       TEXT NOT NULL,
    CHECK (attacker_uuid IS NOT NULL OR identity_uuid IS NOT NULL OR attacker_ip IS NOT NULL)
);
CREATE INDEX ttp_tag_identity_technique ON ttp_tag (identity_uuid, technique_id);
CREATE INDEX ttp_tag_attacker_technique ON ttp_tag (attacker_uuid, technique_id);
CREATE INDEX ttp_tag_technique_created ON ttp_tag (technique_id, created_at);
CREATE INDEX ttp_tag_session ON ttp_tag (session_id);
CREATE INDEX ttp_tag_rule ON ttp_tag (rule_id);
CREATE INDEX ttp_tag_created ON ttp_tag (created_at);
CREATE INDEX ttp_tag_ip_pending ON ttp_tag (attacker_ip) WHERE attacker_uuid IS NULL;

CREATE TABLE attacker_anchor (
    attacker_ip   TEXT PRIMARY KEY NOT NULL,
    attacker_uuid TEXT NOT NULL,
    first_seen    TEXT NOT NULL,
    last_seen     TEXT NOT NULL
);
";

/// Version 2: messages held for DECNET's database (docs/decnet-db.md §8). `key` identifies the
/// message (a replay holds nothing new); `waiting_for` names the row it waits for, as
/// `address <ip>`, `attacker <uuid>` or `identity <uuid>`; `tags` is a JSON array of the tags it
/// gave when held, for `tags --pending`.
const V2: &str = "
CREATE TABLE pending_message (
    key           TEXT PRIMARY KEY NOT NULL,
    subject       TEXT NOT NULL,
    envelope_type TEXT NOT NULL,
    payload       TEXT NOT NULL CHECK (json_valid(payload)),
    waiting_for   TEXT NOT NULL,
    tags          TEXT NOT NULL CHECK (json_valid(tags)),
    held_at       TEXT NOT NULL
);
CREATE INDEX pending_message_waiting ON pending_message (waiting_for);
";

/// Step `i` takes the schema from version `i` to `i + 1`. Append only.
const MIGRATIONS: &[&str] = &[V1, V2];

/// The version this binary writes and reads.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

const CREATE_VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_version (
    version    INTEGER PRIMARY KEY NOT NULL,
    applied_at TEXT NOT NULL
)";

/// The highest applied version, or `None` when the file has no `schema_version` table (an
/// empty file, or someone else's database).
pub fn current_version(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    let has_table: Option<i64> = conn
        .query_row(
            "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'schema_version'",
            [],
            |row| row.get(0),
        )
        .optional()?;
    if has_table.is_none() {
        return Ok(None);
    }
    conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_version",
        [],
        |row| row.get(0),
    )
    .map(Some)
}

/// Brings the database up to [`SCHEMA_VERSION`] in one immediate transaction.
pub fn migrate(conn: &mut Connection, path: &Path) -> Result<i64, StoreError> {
    let sqlite = |e| StoreError::from_sqlite(path, e);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sqlite)?;
    let found = current_version(&tx).map_err(sqlite)?;
    if found.is_none() {
        refuse_foreign(&tx, path)?;
    }
    let found = found.unwrap_or(0);
    if found > SCHEMA_VERSION {
        return Err(StoreError::FutureSchema {
            path: path.to_path_buf(),
            found,
            known: SCHEMA_VERSION,
        });
    }
    if found == SCHEMA_VERSION {
        return Ok(found);
    }
    tx.execute_batch(CREATE_VERSION_TABLE).map_err(sqlite)?;
    let now = format_utc(std::time::SystemTime::now());
    for (index, step) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let version = index as i64 + 1;
        let failed = |source| StoreError::Migrate {
            path: path.to_path_buf(),
            version,
            source,
        };
        tx.execute_batch(step).map_err(failed)?;
        tx.execute(
            "INSERT INTO schema_version (version, applied_at) VALUES (?1, ?2)",
            (version, &now),
        )
        .map_err(failed)?;
    }
    tx.commit().map_err(sqlite)?;
    Ok(SCHEMA_VERSION)
}

/// A database without `schema_version` is only ours to initialise when it is empty: writing
/// our tables into some other application's file would be a nasty surprise.
fn refuse_foreign(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let tables: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%'",
            [],
            |row| row.get(0),
        )
        .map_err(|e| StoreError::from_sqlite(path, e))?;
    if tables > 0 {
        return Err(StoreError::NotOurs {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// Read-only connections cannot migrate; they accept only the exact version they understand.
pub fn check_readable(conn: &Connection, path: &Path) -> Result<i64, StoreError> {
    match current_version(conn).map_err(|e| StoreError::from_sqlite(path, e))? {
        None => Err(StoreError::NotOurs {
            path: path.to_path_buf(),
        }),
        Some(found) if found > SCHEMA_VERSION => Err(StoreError::FutureSchema {
            path: path.to_path_buf(),
            found,
            known: SCHEMA_VERSION,
        }),
        Some(found) if found < SCHEMA_VERSION => Err(StoreError::OldSchema {
            path: path.to_path_buf(),
            found,
            known: SCHEMA_VERSION,
        }),
        Some(found) => Ok(found),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_an_empty_database_once() {
        let mut conn = Connection::open_in_memory().unwrap();
        let path = Path::new(":memory:");
        assert_eq!(current_version(&conn).unwrap(), None);
        assert_eq!(migrate(&mut conn, path).unwrap(), SCHEMA_VERSION);
        assert_eq!(current_version(&conn).unwrap(), Some(SCHEMA_VERSION));
        // A second run is a no-op, not a "table already exists" error.
        assert_eq!(migrate(&mut conn, path).unwrap(), SCHEMA_VERSION);
        let rows: i64 = conn
            .query_row("SELECT COUNT(*) FROM schema_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, SCHEMA_VERSION);
    }

    #[test]
    fn refuses_a_future_version_and_foreign_files() {
        let mut conn = Connection::open_in_memory().unwrap();
        let path = Path::new("/x/ttp.db");
        migrate(&mut conn, path).unwrap();
        conn.execute(
            "INSERT INTO schema_version VALUES (?1, 'later')",
            [SCHEMA_VERSION + 1],
        )
        .unwrap();
        let err = migrate(&mut conn, path).unwrap_err();
        assert!(matches!(err, StoreError::FutureSchema { .. }), "{err}");
        assert!(err.to_string().contains("/x/ttp.db"));

        let mut other = Connection::open_in_memory().unwrap();
        other.execute_batch("CREATE TABLE t (x)").unwrap();
        let err = migrate(&mut other, path).unwrap_err();
        assert!(matches!(err, StoreError::NotOurs { .. }), "{err}");
    }

    #[test]
    fn a_failing_step_leaves_the_old_version() {
        let mut conn = Connection::open_in_memory().unwrap();
        // A stray table named like ours makes step 1 fail half way.
        conn.execute_batch(CREATE_VERSION_TABLE).unwrap();
        conn.execute_batch("CREATE TABLE attacker_anchor (x)")
            .unwrap();
        let err = migrate(&mut conn, Path::new("m.db")).unwrap_err();
        assert!(
            matches!(err, StoreError::Migrate { version: 1, .. }),
            "{err}"
        );
        assert_eq!(current_version(&conn).unwrap(), Some(0));
        let tag_table: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_schema WHERE name = 'ttp_tag'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tag_table, 0, "the half-applied step was rolled back");
    }
}
