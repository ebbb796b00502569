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

/// Counts over the whole store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    pub schema_version: i64,
    pub total: i64,
    pub last_24h: i64,
    /// Distinct attackers among attacker-anchored tags: by `attacker_uuid`, or by address
    /// for tags whose address is not yet resolved. Identity roll-ups do not count.
    pub attackers: i64,
    pub anchors: i64,
    /// Parent technique id → tags, most first.
    pub by_technique: Vec<(String, i64)>,
    /// Rule id → tags, most first.
    pub by_rule: Vec<(String, i64)>,
    /// The database file plus its WAL: what the store really occupies.
    pub file_bytes: u64,
}

impl Store {
    pub fn stats(&self) -> Result<Stats, StoreError> {
        let sqlite = |e| self.sqlite(e);
        let count = |sql: &str, param: Option<&str>| -> Result<i64, StoreError> {
            match param {
                Some(p) => self.conn.query_row(sql, [p], |r| r.get(0)),
                None => self.conn.query_row(sql, [], |r| r.get(0)),
            }
            .map_err(sqlite)
        };
        let day_ago = cutoff(SystemTime::now(), Duration::from_secs(86_400));
        Ok(Stats {
            schema_version: self.schema_version()?,
            total: count("SELECT COUNT(*) FROM ttp_tag", None)?,
            last_24h: count(
                "SELECT COUNT(*) FROM ttp_tag WHERE created_at >= ?1",
                Some(&day_ago),
            )?,
            attackers: count(
                "SELECT COUNT(DISTINCT COALESCE(attacker_uuid, 'ip:' || attacker_ip))
                 FROM ttp_tag WHERE attacker_uuid IS NOT NULL OR attacker_ip IS NOT NULL",
                None,
            )?,
            anchors: count("SELECT COUNT(*) FROM attacker_anchor", None)?,
            by_technique: self.grouped("technique_id")?,
            by_rule: self.grouped("rule_id")?,
            file_bytes: file_bytes(&self.path)?,
        })
    }

    fn grouped(&self, column: &'static str) -> Result<Vec<(String, i64)>, StoreError> {
        let sql = format!(
            "SELECT {column}, COUNT(*) AS n FROM ttp_tag GROUP BY {column} ORDER BY n DESC, {column}"
        );
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.sqlite(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| self.sqlite(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.sqlite(e))
    }
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
