//! `ttp-worker stats`: a health glance at the store — is it growing, what fires most, how big
//! is the file on the appliance's flash.

use std::fs;
use std::io::{self, Write};
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

/// Opens `db` read-only and prints its [`Stats`] for a human.
pub fn run_stats(db: &Path, mut out: impl Write) -> Result<(), StoreError> {
    let stats = Store::open_read_only(db)?.stats()?;
    write_stats(db, &stats, &mut out).map_err(StoreError::Output)
}

fn write_stats(db: &Path, s: &Stats, out: &mut impl Write) -> io::Result<()> {
    writeln!(out, "database        {}", db.display())?;
    writeln!(out, "schema version  {}", s.schema_version)?;
    writeln!(
        out,
        "size            {} (incl. WAL)",
        human_bytes(s.file_bytes)
    )?;
    writeln!(out, "tags            {}", s.total)?;
    writeln!(out, "tags last 24h   {}", s.last_24h)?;
    writeln!(out, "attackers       {}", s.attackers)?;
    writeln!(out, "anchors known   {}", s.anchors)?;
    for (title, groups) in [("by technique", &s.by_technique), ("by rule", &s.by_rule)] {
        writeln!(out)?;
        writeln!(out, "{title}")?;
        if groups.is_empty() {
            writeln!(out, "  (none)")?;
        }
        let width = groups
            .iter()
            .map(|(k, _)| k.chars().count())
            .max()
            .unwrap_or(0);
        for (key, n) in groups {
            let key: String = key.chars().filter(|c| !c.is_control()).collect();
            writeln!(out, "  {key:<width$}  {n}")?;
        }
    }
    Ok(())
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = "B";
    for next in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = next;
    }
    format!("{value:.1} {unit} ({bytes} bytes)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(4096), "4.0 KiB (4096 bytes)");
        assert_eq!(human_bytes(5 * 1024 * 1024), "5.0 MiB (5242880 bytes)");
    }
}
