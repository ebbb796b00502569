//! DECNET's SQLite file (docs/decnet-db.md §1): shared with DECNET's own processes, so the
//! worker takes the file as it finds it. It never creates the file, never changes its journal
//! mode or any setting that persists in it, keeps write transactions to one batch, and waits
//! for DECNET's writers only briefly: a busy file is a transient failure, and the batch is
//! retried.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior};
use serde_json::{Map, Value};

use super::backend::{Backend, Written};
use super::encode::python_json_object;
use super::error::DbError;
use super::intel::{CATCHUP_COLUMNS, ColumnKind};
use super::ipv6::{Ipv6Leak, leak_records};
use super::schema::{self, SchemaMismatch};
use crate::store::{
    ATTACK_RELEASE, Checkpointer, QueryFailed, Stats, StatsFailed, StoredTag, TableShape,
    TagsQuery, WRITER_AUTOCHECKPOINT_PAGES, format_sql_utc, mitre_url, query_tags_in, stats_in,
};
use crate::tagging::Tag;

/// Short next to DECNET's own 30 s: the main loop must not look hung while DECNET writes; a
/// batch that waits longer is retried.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// SQLite's default limit on `?` parameters is far higher; lookups go in chunks of this many.
const CHUNK: usize = 500;

pub struct SqliteDb {
    /// Folds the WAL back beside the main loop (stops before the connection closes).
    _checkpointer: Option<Checkpointer>,
    path: PathBuf,
    conn: Connection,
}

/// Ignores only an existing `uuid` (docs/decnet-db.md §8): a failed check is an error.
const INSERT_TAG: &str = "INSERT INTO ttp_tag (
    uuid, source_kind, source_id, attacker_uuid, identity_uuid, session_id, decky_id, tactic,
    technique_id, sub_technique_id, confidence, rule_id, rule_version, evidence, attack_release,
    mitre_url, created_at
) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)
ON CONFLICT (uuid) DO NOTHING";

impl SqliteDb {
    /// Opens DECNET's file read-write and checks its schema.
    pub fn open(path: &Path) -> Result<SqliteDb, DbError> {
        if !path.is_file() {
            return Err(DbError::NoFile {
                path: path.to_owned(),
            });
        }
        let failed = |e| DbError::from_sqlite(path, e);
        // No CREATE flag: a path that is not DECNET's file must not become an empty one.
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(failed)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(failed)?;
        // As DECNET's own connections run (docs/decnet-db.md §1). `synchronous` belongs to the
        // connection, not the file: nobody else's setting changes.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(failed)?;
        // DECNET's `ttp_tag` has a dozen indexes; a batch touches pages of each. Also only
        // this connection's: 8 MiB at most, handed back when the daemon settles.
        conn.pragma_update(None, "cache_size", -8192)
            .map_err(failed)?;
        // Checkpoints from a second connection, passive, so that the main loop does not stop
        // to copy pages into the file in the middle of a commit (DECNET's own connections keep
        // their own settings); this connection's automatic ones only as a safety net.
        conn.pragma_update(None, "wal_autocheckpoint", WRITER_AUTOCHECKPOINT_PAGES)
            .map_err(failed)?;
        let db = SqliteDb {
            _checkpointer: Checkpointer::start(path),
            path: path.to_owned(),
            conn,
        };
        let mismatch = db.schema_mismatch()?;
        if !mismatch.is_empty() {
            return Err(DbError::Schema {
                where_: path.display().to_string(),
                mismatch,
            });
        }
        Ok(db)
    }

    /// Opens DECNET's file for the operator's `tags` and `stats`: read-only, never created,
    /// safe while DECNET and the worker write.
    pub fn open_read_only(path: &Path) -> Result<SqliteDb, DbError> {
        if !path.is_file() {
            return Err(DbError::NoFile {
                path: path.to_owned(),
            });
        }
        let failed = |e| DbError::from_sqlite(path, e);
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(failed)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(failed)?;
        let db = SqliteDb {
            _checkpointer: None,
            path: path.to_owned(),
            conn,
        };
        let mismatch = db.schema_mismatch()?;
        if !mismatch.is_empty() {
            return Err(DbError::Schema {
                where_: path.display().to_string(),
                mismatch,
            });
        }
        Ok(db)
    }

    /// DECNET's tags matching `query`, newest first.
    pub fn query_tags(&self, query: &TagsQuery) -> Result<Vec<StoredTag>, DbError> {
        query_tags_in(&self.conn, TableShape::Decnet, query).map_err(|e| match e {
            QueryFailed::Filter(reason) => DbError::Query(reason),
            QueryFailed::Sqlite(e) => DbError::from_sqlite(&self.path, e),
        })
    }

    /// Counts over DECNET's tags.
    pub fn stats(&self) -> Result<Stats, DbError> {
        stats_in(&self.conn, TableShape::Decnet, &self.path).map_err(|e| match e {
            StatsFailed::Sqlite(e) => DbError::from_sqlite(&self.path, e),
            StatsFailed::Store(e) => DbError::Failed {
                where_: self.path.display().to_string(),
                reason: e.to_string(),
            },
        })
    }

    fn failed(&self) -> impl Fn(rusqlite::Error) -> DbError + '_ {
        |e| DbError::from_sqlite(&self.path, e)
    }

    fn schema_mismatch(&self) -> Result<SchemaMismatch, DbError> {
        schema::check(|table| {
            let mut statement = self
                .conn
                .prepare("SELECT name FROM pragma_table_info(?1)")
                .map_err(self.failed())?;
            let columns: Vec<String> = statement
                .query_map([table], |row| row.get(0))
                .map_err(self.failed())?
                .collect::<Result<_, _>>()
                .map_err(self.failed())?;
            Ok(if columns.is_empty() {
                None
            } else {
                Some(columns)
            })
        })
    }

    /// Runs `sql` (whose one `{}` becomes a list of `?`) for `keys` in chunks, collecting rows.
    fn select_in<T>(
        &self,
        sql: &str,
        keys: &[String],
        mut row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, DbError> {
        let mut out = Vec::new();
        for chunk in keys.chunks(CHUNK) {
            let marks = vec!["?"; chunk.len()].join(", ");
            let mut statement = self
                .conn
                .prepare_cached(&sql.replace("{}", &marks))
                .map_err(self.failed())?;
            let rows = statement
                .query_map(rusqlite::params_from_iter(chunk), &mut row)
                .map_err(self.failed())?;
            for r in rows {
                out.push(r.map_err(self.failed())?);
            }
        }
        Ok(out)
    }
}

impl Backend for SqliteDb {
    fn describe(&self) -> String {
        format!("SQLite {}", self.path.display())
    }

    fn attackers_by_ip(&mut self, ips: &[String]) -> Result<HashMap<String, Vec<String>>, DbError> {
        let rows = self.select_in(
            "SELECT ip, uuid FROM attackers WHERE ip IN ({})",
            ips,
            |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)),
        )?;
        let mut found: HashMap<String, Vec<String>> = HashMap::new();
        for (ip, uuid) in rows {
            found.entry(ip).or_default().push(uuid);
        }
        Ok(found)
    }

    fn existing_attackers(&mut self, uuids: &[String]) -> Result<HashSet<String>, DbError> {
        let rows = self.select_in(
            "SELECT uuid FROM attackers WHERE uuid IN ({})",
            uuids,
            |r| r.get::<_, String>(0),
        )?;
        Ok(rows.into_iter().collect())
    }

    fn existing_identities(&mut self, uuids: &[String]) -> Result<HashSet<String>, DbError> {
        let rows = self.select_in(
            "SELECT uuid FROM attacker_identities WHERE uuid IN ({})",
            uuids,
            |r| r.get::<_, String>(0),
        )?;
        Ok(rows.into_iter().collect())
    }

    fn intel_rows(
        &mut self,
        attackers: &[String],
    ) -> Result<HashMap<String, Map<String, Value>>, DbError> {
        let columns: Vec<&str> = CATCHUP_COLUMNS.iter().map(|(name, _)| *name).collect();
        let sql = format!(
            "SELECT {} FROM attacker_intel WHERE attacker_uuid IN ({{}})",
            columns.join(", ")
        );
        let rows = self.select_in(&sql, attackers, |row| {
            let mut payload = Map::new();
            for (i, (name, kind)) in CATCHUP_COLUMNS.iter().enumerate() {
                let value = match row.get_ref(i)? {
                    rusqlite::types::ValueRef::Null => Value::Null,
                    rusqlite::types::ValueRef::Integer(n) => match kind {
                        ColumnKind::Bool => Value::Bool(n != 0),
                        _ => Value::from(n),
                    },
                    rusqlite::types::ValueRef::Real(f) => Value::from(f),
                    rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                        let text = String::from_utf8_lossy(t);
                        match kind {
                            ColumnKind::Json => serde_json::from_str(&text).unwrap_or(Value::Null),
                            _ => Value::String(text.into_owned()),
                        }
                    }
                };
                payload.insert((*name).to_owned(), value);
            }
            Ok(payload)
        })?;
        Ok(rows
            .into_iter()
            .filter_map(|p| {
                let uuid = p.get("attacker_uuid")?.as_str()?.to_owned();
                Some((uuid, p))
            })
            .collect())
    }

    fn write(&mut self, messages: &[Vec<Tag>], now: SystemTime) -> Result<Written, DbError> {
        let path = self.path.clone();
        let failed = |e| DbError::from_sqlite(&path, e);
        let created_at = format_sql_utc(now);
        let mut written = Written::default();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(failed)?;
        {
            let mut insert = tx.prepare_cached(INSERT_TAG).map_err(failed)?;
            for tags in messages {
                let mut new = Vec::new();
                for (t, tag) in tags.iter().enumerate() {
                    let result = insert.execute(rusqlite::params![
                        tag.uuid,
                        tag.source_kind,
                        tag.source_id,
                        tag.attacker_uuid,
                        tag.identity_uuid,
                        tag.session_id,
                        tag.decky_id,
                        tag.tactic,
                        tag.technique_id,
                        tag.sub_technique_id,
                        tag.confidence,
                        tag.rule_id,
                        tag.rule_version,
                        python_json_object(&tag.evidence),
                        ATTACK_RELEASE,
                        mitre_url(&tag.technique_id, tag.sub_technique_id.as_deref()),
                        created_at,
                    ]);
                    match result {
                        Ok(0) => {}
                        Ok(_) => new.push(t),
                        // Only this statement is undone; the row is reported, the rest stays.
                        Err(e) if e.sqlite_error_code() == Some(ErrorCode::ConstraintViolation) => {
                            written.refused.push((tag.uuid.clone(), e.to_string()));
                        }
                        Err(e) => return Err(failed(e)),
                    }
                }
                if !new.is_empty() {
                    for leak in leak_records(tags) {
                        record_leak(&tx, &leak, now).map_err(failed)?;
                    }
                }
                written.inserted.push(new);
            }
        }
        tx.commit().map_err(failed)?;
        Ok(written)
    }
}

/// docs/decnet-db.md §6, inside the batch's transaction.
fn record_leak(
    tx: &rusqlite::Transaction<'_>,
    leak: &Ipv6Leak,
    now: SystemTime,
) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE attackers SET ipv6_leak_count = COALESCE(ipv6_leak_count, 0) + 1,
             last_ipv6_leak_at = ?2, last_ipv6_link_local = ?3, last_ipv6_iid_kind = ?4,
             last_ipv6_mac_oui = ?5
         WHERE uuid = ?1",
        rusqlite::params![
            leak.attacker_uuid,
            format_sql_utc(now),
            leak.addr,
            leak.iid_kind,
            leak.mac_oui
        ],
    )?;
    let Some(identity) = &leak.identity_uuid else {
        return Ok(());
    };
    let Some(addr) = &leak.addr else {
        return Ok(());
    };
    let stored: Option<Option<String>> = tx
        .query_row(
            "SELECT ipv6_link_local_iids FROM attacker_identities WHERE uuid = ?1",
            [identity],
            |row| row.get(0),
        )
        .optional()?;
    let Some(stored) = stored else {
        return Ok(());
    };
    if let Some(updated) = leak.appended_to(stored.as_deref(), addr, now) {
        tx.execute(
            "UPDATE attacker_identities SET ipv6_link_local_iids = ?2 WHERE uuid = ?1",
            rusqlite::params![identity, updated],
        )?;
    }
    Ok(())
}
