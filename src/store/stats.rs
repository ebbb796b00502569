//! Counts over the store for the operator's `stats` command: is it growing, what fires most,
//! how big is the file on the appliance's flash.

use std::fs;
use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::clock::cutoff;
use super::db::Store;
use super::error::StoreError;
use super::location::sidecar;
use super::query::{TableShape, decnet_time};

/// Counts over the whole store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    /// This store's schema version; `None` for DECNET's database, which has its own.
    pub schema_version: Option<i64>,
    pub total: i64,
    pub last_24h: i64,
    /// Distinct attackers among attacker-anchored tags: by `attacker_uuid`, or by address
    /// for tags whose address is not yet resolved. Identity roll-ups do not count.
    pub attackers: i64,
    /// Addresses learned from the bus; `None` for DECNET's database (its `attackers` table).
    pub anchors: Option<i64>,
    /// Parent technique id → tags, most first.
    pub by_technique: Vec<(String, i64)>,
    /// Rule id → tags, most first.
    pub by_rule: Vec<(String, i64)>,
    pub size: Size,
}

/// What the tags occupy on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// A SQLite file plus its WAL: what the store really occupies.
    File(u64),
    /// A MySQL table's data and indexes, as the server estimates them.
    Table(u64),
}

/// The statements behind [`Stats`], the same on SQLite and MySQL; `?` is the cutoff of
/// [`StatsSql::day_ago`].
pub struct StatsSql {
    pub total: &'static str,
    pub since: &'static str,
    pub attackers: &'static str,
    pub by_technique: &'static str,
    pub by_rule: &'static str,
}

impl StatsSql {
    pub fn new(shape: TableShape) -> StatsSql {
        StatsSql {
            total: "SELECT COUNT(*) FROM ttp_tag",
            since: "SELECT COUNT(*) FROM ttp_tag WHERE created_at >= ?",
            attackers: match shape {
                TableShape::Ours => {
                    "SELECT COUNT(DISTINCT COALESCE(attacker_uuid, 'ip:' || attacker_ip)) \
                     FROM ttp_tag WHERE attacker_uuid IS NOT NULL OR attacker_ip IS NOT NULL"
                }
                TableShape::Decnet => {
                    "SELECT COUNT(DISTINCT attacker_uuid) FROM ttp_tag \
                     WHERE attacker_uuid IS NOT NULL"
                }
            },
            by_technique: "SELECT technique_id, COUNT(*) AS n FROM ttp_tag \
                           GROUP BY technique_id ORDER BY n DESC, technique_id",
            by_rule: "SELECT rule_id, COUNT(*) AS n FROM ttp_tag \
                      GROUP BY rule_id ORDER BY n DESC, rule_id",
        }
    }

    /// A day before `now`, written as `shape`'s `created_at` is.
    pub fn day_ago(shape: TableShape, now: SystemTime) -> String {
        let day_ago = cutoff(now, Duration::from_secs(86_400));
        match shape {
            TableShape::Ours => day_ago,
            TableShape::Decnet => decnet_time(&day_ago),
        }
    }
}

impl Store {
    pub fn stats(&self) -> Result<Stats, StoreError> {
        let mut stats =
            stats_in(&self.conn, TableShape::Ours, &self.path).map_err(|e| match e {
                StatsFailed::Sqlite(e) => self.sqlite(e),
                StatsFailed::Store(e) => e,
            })?;
        stats.schema_version = Some(self.schema_version()?);
        stats.anchors = Some(
            self.conn
                .query_row("SELECT COUNT(*) FROM attacker_anchor", [], |r| r.get(0))
                .map_err(|e| self.sqlite(e))?,
        );
        Ok(stats)
    }
}

/// Why counting failed.
#[derive(Debug)]
pub enum StatsFailed {
    Sqlite(rusqlite::Error),
    Store(StoreError),
}

/// The counts over `conn`'s `ttp_tag` (file `path`), without what only this store has.
pub fn stats_in(
    conn: &rusqlite::Connection,
    shape: TableShape,
    path: &Path,
) -> Result<Stats, StatsFailed> {
    let sql = StatsSql::new(shape);
    let count = |sql: &str, param: Option<&str>| -> Result<i64, StatsFailed> {
        match param {
            Some(p) => conn.query_row(sql, [p], |r| r.get(0)),
            None => conn.query_row(sql, [], |r| r.get(0)),
        }
        .map_err(StatsFailed::Sqlite)
    };
    let day_ago = StatsSql::day_ago(shape, SystemTime::now());
    Ok(Stats {
        schema_version: None,
        total: count(sql.total, None)?,
        last_24h: count(sql.since, Some(&day_ago))?,
        attackers: count(sql.attackers, None)?,
        anchors: None,
        by_technique: grouped(conn, sql.by_technique).map_err(StatsFailed::Sqlite)?,
        by_rule: grouped(conn, sql.by_rule).map_err(StatsFailed::Sqlite)?,
        size: Size::File(file_bytes(path).map_err(StatsFailed::Store)?),
    })
}

fn grouped(conn: &rusqlite::Connection, sql: &str) -> rusqlite::Result<Vec<(String, i64)>> {
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

fn file_bytes(db: &Path) -> Result<u64, StoreError> {
    let mut total = 0;
    for path in [db.to_path_buf(), sidecar(db, "-wal")] {
        match fs::metadata(&path) {
            Ok(meta) => total += meta.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(StoreError::Stat { path, source }),
        }
    }
    Ok(total)
}
