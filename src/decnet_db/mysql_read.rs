//! The operator's reads of DECNET's MySQL database (`tags`, `stats`): the statements the
//! SQLite side runs (`store/query.rs`, `store/stats.rs`), and MySQL's values turned into
//! the [`StoredTag`] and [`Stats`] every printer takes.

use std::time::SystemTime;

use mysql::prelude::Queryable;
use mysql::{Params, Row, Value as SqlValue};

use super::backend::Backend;
use super::error::DbError;
use super::mysql::{MysqlDb, text};
use crate::store::parse_evidence;
use crate::store::{Size, Stats, StatsSql, StoredTag, TableShape, TagsQuery, TagsSelect};
use crate::tagging::Tag;

impl MysqlDb {
    /// DECNET's tags matching `query`, newest first.
    pub fn query_tags(&mut self, query: &TagsQuery) -> Result<Vec<StoredTag>, DbError> {
        let select = TagsSelect::new(query, TableShape::Decnet, SystemTime::now())
            .map_err(DbError::Query)?;
        let mut params: Vec<SqlValue> = select.params.into_iter().map(SqlValue::from).collect();
        params.push(SqlValue::from(select.limit));
        let rows: Vec<Row> =
            self.with_conn(|conn| conn.exec(&select.sql, Params::Positional(params)))?;
        rows.iter()
            .map(|row| stored_tag(row).map_err(|reason| self.odd_row(reason)))
            .collect()
    }

    /// Counts over DECNET's tags; the size is `ttp_tag`'s, as the server estimates it.
    pub fn stats(&mut self) -> Result<Stats, DbError> {
        let sql = StatsSql::new(TableShape::Decnet);
        let day_ago = StatsSql::day_ago(TableShape::Decnet, SystemTime::now());
        self.with_conn(|conn| {
            let count = |conn: &mut mysql::Conn, sql: &str, params: Params| {
                conn.exec_first::<i64, _, _>(sql, params)
                    .map(Option::unwrap_or_default)
            };
            let grouped = |conn: &mut mysql::Conn, sql: &str| conn.query::<(String, i64), _>(sql);
            Ok(Stats {
                schema_version: None,
                total: count(conn, sql.total, Params::Empty)?,
                last_24h: count(conn, sql.since, Params::Positional(vec![day_ago.into()]))?,
                attackers: count(conn, sql.attackers, Params::Empty)?,
                anchors: None,
                by_technique: grouped(conn, sql.by_technique)?,
                by_rule: grouped(conn, sql.by_rule)?,
                size: Size::Table(
                    conn.query_first::<Option<u64>, _>(
                        "SELECT DATA_LENGTH + INDEX_LENGTH FROM information_schema.tables \
                         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'ttp_tag'",
                    )?
                    .flatten()
                    .unwrap_or_default(),
                ),
            })
        })
    }

    fn odd_row(&self, reason: String) -> DbError {
        DbError::Failed {
            where_: self.describe(),
            reason,
        }
    }
}

/// A row of [`TableShape::Decnet`]'s columns as a [`StoredTag`]; a value of a type DECNET's
/// table does not hold is an error naming the column.
fn stored_tag(row: &Row) -> Result<StoredTag, String> {
    let value = |i: usize| row.as_ref(i).unwrap_or(&SqlValue::NULL);
    let optional = |i: usize| text(value(i));
    let required = |i: usize, column: &str| {
        optional(i).ok_or_else(|| format!("ttp_tag.{column} is NULL in a row"))
    };
    let number = |i: usize, column: &str| -> Result<f64, String> {
        match value(i) {
            // DECNET's `confidence` is a single-precision FLOAT: shown as written (0.9, not
            // 0.8999999761581421), as MySQL's own text protocol would.
            SqlValue::Float(f) => Ok(f.to_string().parse().unwrap_or(f64::from(*f))),
            SqlValue::Double(f) => Ok(*f),
            SqlValue::Int(n) => Ok(*n as f64),
            SqlValue::UInt(n) => Ok(*n as f64),
            other => text(other)
                .and_then(|t| t.trim().parse().ok())
                .ok_or_else(|| format!("ttp_tag.{column} is not a number: {other:?}")),
        }
    };
    let (evidence, odd_evidence) = parse_evidence(optional(14).unwrap_or_default());
    Ok(StoredTag {
        tag: Tag {
            uuid: required(0, "uuid")?,
            source_kind: required(1, "source_kind")?,
            source_id: required(2, "source_id")?,
            attacker_uuid: optional(3),
            identity_uuid: optional(4),
            attacker_ip: optional(5),
            session_id: optional(6),
            decky_id: optional(7),
            tactic: required(8, "tactic")?,
            technique_id: required(9, "technique_id")?,
            sub_technique_id: optional(10),
            confidence: number(11, "confidence")?,
            rule_id: required(12, "rule_id")?,
            rule_version: number(13, "rule_version")? as i64,
            evidence,
        },
        attack_release: required(15, "attack_release")?,
        mitre_url: optional(16),
        created_at: iso_time(value(17)),
        odd_evidence,
    })
}

/// A `DATETIME` as the other stores show `created_at`: `2026-05-01T12:34:56.000000Z`.
fn iso_time(value: &SqlValue) -> String {
    match value {
        SqlValue::Date(year, month, day, hour, minute, second, micros) => {
            format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{micros:06}Z")
        }
        other => text(other).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_read_as_iso_utc() {
        assert_eq!(
            iso_time(&SqlValue::Date(2026, 5, 1, 12, 34, 56, 0)),
            "2026-05-01T12:34:56.000000Z"
        );
        assert_eq!(
            iso_time(&SqlValue::Date(2026, 12, 3, 1, 2, 3, 456)),
            "2026-12-03T01:02:03.000456Z"
        );
        assert_eq!(iso_time(&SqlValue::NULL), "");
    }
}
