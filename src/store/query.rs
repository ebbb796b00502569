//! The store's tags as read back, filtered, for the operator's `tags` command: read-only and
//! safe to run while the daemon writes.
//!
//! Filters are validated before any SQL runs so a typo (`--technique 1110`) is an error that
//! says so, never a silent empty result.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use rusqlite::types::Value as SqlValue;
use serde_json::{Map, Value};

use super::clock::cutoff;
use super::db::Store;
use super::error::StoreError;
use crate::tagging::Tag;

/// Rows shown when the operator gives no `--limit`: a screenful, newest first.
pub const DEFAULT_LIMIT: usize = 100;

/// The filters of `tags`; every `Some`/non-empty filter must match (techniques: any of them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagsQuery {
    /// An attacker UUID (matches `attacker_uuid`) or an IP address (matches `attacker_ip`).
    pub attacker: Option<String>,
    pub identity: Option<String>,
    pub session: Option<String>,
    /// `T1110` matches the technique and all its sub-techniques; `T1110.003` only that one.
    pub techniques: Vec<String>,
    /// Only tags created at most this long ago.
    pub since: Option<Duration>,
    /// `None` means [`DEFAULT_LIMIT`].
    pub limit: Option<usize>,
}

/// How `tags` prints its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// One compact JSON object per line, for `jq` and scripts.
    Json,
    /// Aligned columns for a terminal.
    #[default]
    Table,
}

impl std::str::FromStr for Format {
    type Err = String;

    /// `json` or `table`, for `--format`.
    fn from_str(text: &str) -> Result<Format, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "json" => Ok(Format::Json),
            "table" => Ok(Format::Table),
            _ => Err(format!("unknown format {text:?}: use json or table")),
        }
    }
}

/// A stored tag as read back: the tag as it was written, and what the store added to it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTag {
    pub tag: Tag,
    pub attack_release: String,
    pub mitre_url: Option<String>,
    /// ISO-8601 UTC, e.g. `2026-05-01T12:34:56.789012Z`.
    pub created_at: String,
    /// The evidence column when it is not a JSON object, which only a hand-edited row can be
    /// (`tag.evidence` is then empty): shown as it is rather than failing the whole listing.
    pub odd_evidence: Option<Value>,
}

impl StoredTag {
    /// The evidence as stored: a JSON object, or whatever a hand-edited row holds.
    pub fn evidence(&self) -> Value {
        match &self.odd_evidence {
            Some(odd) => odd.clone(),
            None => Value::Object(self.tag.evidence.clone()),
        }
    }
}

/// Whose `ttp_tag` a query reads: this worker's store, or DECNET's SQLite database, which
/// has no `attacker_ip` and writes `created_at` as `YYYY-MM-DD HH:MM:SS.ffffff`
/// (docs/decnet-db.md §2.1, §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableShape {
    Ours,
    Decnet,
}

impl TableShape {
    /// The columns a [`StoredTag`] is read from, in its order.
    pub fn columns(self) -> &'static str {
        match self {
            TableShape::Ours => {
                "uuid, source_kind, source_id, attacker_uuid, identity_uuid, attacker_ip, \
                 session_id, decky_id, tactic, technique_id, sub_technique_id, confidence, \
                 rule_id, rule_version, evidence, attack_release, mitre_url, created_at"
            }
            TableShape::Decnet => {
                "uuid, source_kind, source_id, attacker_uuid, identity_uuid, NULL, session_id, \
                 decky_id, tactic, technique_id, sub_technique_id, confidence, rule_id, \
                 rule_version, evidence, attack_release, mitre_url, created_at"
            }
        }
    }
}

/// Why a query could not run: a filter it cannot answer, or the database.
#[derive(Debug)]
pub enum QueryFailed {
    Filter(String),
    Sqlite(rusqlite::Error),
}

/// The statement `tags` runs on a `ttp_tag` of `shape`: `?` marks for the text values in
/// `params`, then one for `limit`. Both SQLite and MySQL take it as it is.
#[derive(Debug, Clone, PartialEq)]
pub struct TagsSelect {
    pub sql: String,
    pub params: Vec<String>,
    pub limit: i64,
}

impl TagsSelect {
    /// The statement for `query`, or why a filter cannot be answered.
    pub fn new(
        query: &TagsQuery,
        shape: TableShape,
        now: SystemTime,
    ) -> Result<TagsSelect, String> {
        let (clauses, params) = where_clauses(query, now, shape).map_err(|e| match e {
            StoreError::Query(text) => text,
            other => other.to_string(),
        })?;
        let mut sql = format!("SELECT {} FROM ttp_tag", shape.columns());
        if !clauses.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&clauses.join(" AND "));
        }
        sql.push_str(" ORDER BY created_at DESC, uuid DESC LIMIT ?");
        let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
        Ok(TagsSelect {
            sql,
            params,
            limit: i64::try_from(limit).unwrap_or(i64::MAX),
        })
    }
}

/// The tags of `conn`'s `ttp_tag` matching `query`, newest first.
pub fn query_tags_in(
    conn: &rusqlite::Connection,
    shape: TableShape,
    query: &TagsQuery,
) -> Result<Vec<StoredTag>, QueryFailed> {
    let select = TagsSelect::new(query, shape, SystemTime::now()).map_err(QueryFailed::Filter)?;
    let mut params: Vec<SqlValue> = select.params.into_iter().map(SqlValue::Text).collect();
    params.push(SqlValue::Integer(select.limit));
    let mut stmt = conn.prepare(&select.sql).map_err(QueryFailed::Sqlite)?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(params), |row| {
            read_row(row, shape)
        })
        .map_err(QueryFailed::Sqlite)?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .map_err(QueryFailed::Sqlite)
}

impl Store {
    /// The tags matching `query`, newest first.
    pub fn query_tags(&self, query: &TagsQuery) -> Result<Vec<StoredTag>, StoreError> {
        query_tags_in(&self.conn, TableShape::Ours, query).map_err(|e| match e {
            QueryFailed::Filter(text) => StoreError::Query(text),
            QueryFailed::Sqlite(e) => self.sqlite(e),
        })
    }
}

fn where_clauses(
    query: &TagsQuery,
    now: SystemTime,
    shape: TableShape,
) -> Result<(Vec<String>, Vec<String>), StoreError> {
    let mut clauses = Vec::new();
    let mut params = Vec::new();
    let mut add = |clause: &str, value: String| {
        clauses.push(clause.to_string());
        params.push(value);
    };
    if let Some(attacker) = &query.attacker {
        let attacker = attacker.trim();
        if let Ok(ip) = attacker.parse::<IpAddr>() {
            if shape == TableShape::Decnet {
                return Err(StoreError::Query(format!(
                    "DECNET's database keeps no addresses on tags: give --attacker the attacker's \
                     UUID; tags of {ip} not tied to an attacker yet are held (tags --pending)"
                )));
            }
            // The canonical spelling, as producers write it (`::1`, not `0:0:…:1`).
            add("attacker_ip = ?", ip.to_string());
        } else if let Ok(uuid) = uuid::Uuid::try_parse(attacker) {
            add("attacker_uuid = ?", uuid.hyphenated().to_string());
        } else {
            return Err(StoreError::Query(format!(
                "--attacker expects an attacker UUID or an IP address, not {attacker:?}"
            )));
        }
    }
    if let Some(identity) = &query.identity {
        let identity = identity.trim();
        let identity = uuid::Uuid::try_parse(identity)
            .map(|u| u.hyphenated().to_string())
            .map_err(|_| {
                StoreError::Query(format!("--identity expects a UUID, not {identity:?}"))
            })?;
        add("identity_uuid = ?", identity);
    }
    if let Some(session) = &query.session {
        add("session_id = ?", session.clone());
    }
    if !query.techniques.is_empty() {
        let mut any = Vec::new();
        for technique in &query.techniques {
            let (column, id) = technique_filter(technique)?;
            any.push(format!("{column} = ?"));
            params.push(id);
        }
        clauses.push(format!("({})", any.join(" OR ")));
    }
    if let Some(since) = query.since {
        clauses.push("created_at >= ?".to_string());
        let cutoff = cutoff(now, since);
        params.push(match shape {
            TableShape::Ours => cutoff,
            TableShape::Decnet => decnet_time(&cutoff),
        });
    }
    Ok((clauses, params))
}

/// `T1110` → match `technique_id` (a parent covers its sub-techniques, which keep the parent
/// in `technique_id`); `T1110.003` → match `sub_technique_id`. Case-insensitive input.
fn technique_filter(text: &str) -> Result<(&'static str, String), StoreError> {
    parse_technique(text).map_err(|NotATechnique| {
        StoreError::Query(format!("--technique {NotATechnique}, not {text:?}"))
    })
}

/// A technique filter that is not an ATT&CK technique id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("expects an ATT&CK id like T1110 or T1110.003")]
pub struct NotATechnique;

/// A technique filter as given (`t1110`, `T1110.003`): the column it matches and the id in
/// capitals. The command line checks with it too, so that a typo is a usage error before any
/// store is opened.
pub fn parse_technique(text: &str) -> Result<(&'static str, String), NotATechnique> {
    let id = text.trim().to_ascii_uppercase();
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    let parsed = id
        .strip_prefix('T')
        .and_then(|rest| match rest.split_once('.') {
            None if digits(rest, 4) => Some("technique_id"),
            Some((parent, sub)) if digits(parent, 4) && digits(sub, 3) => Some("sub_technique_id"),
            _ => None,
        });
    parsed.map(|column| (column, id)).ok_or(NotATechnique)
}

/// `2026-05-01T12:34:56.789012Z` as DECNET writes it: `2026-05-01 12:34:56.789012`.
pub(crate) fn decnet_time(ours: &str) -> String {
    ours.trim_end_matches('Z').replacen('T', " ", 1)
}

/// DECNET's `created_at` text as this store writes it (an odd value is shown as it is).
fn from_decnet_time(text: String) -> String {
    let fixed = text.len() == 26 && text.as_bytes().get(10) == Some(&b' ');
    if fixed {
        format!("{}Z", text.replacen(' ', "T", 1))
    } else {
        text
    }
}

/// The evidence column as [`StoredTag`] keeps it: a JSON object, or else the odd value.
pub fn parse_evidence(text: String) -> (Map<String, Value>, Option<Value>) {
    match serde_json::from_str(&text) {
        Ok(Value::Object(map)) => (map, None),
        Ok(odd) => (Map::new(), Some(odd)),
        Err(_) => (Map::new(), Some(Value::String(text))),
    }
}

fn read_row(row: &rusqlite::Row<'_>, shape: TableShape) -> rusqlite::Result<StoredTag> {
    let (evidence, odd_evidence) = parse_evidence(row.get(14)?);
    Ok(StoredTag {
        tag: Tag {
            uuid: row.get(0)?,
            source_kind: row.get(1)?,
            source_id: row.get(2)?,
            attacker_uuid: row.get(3)?,
            identity_uuid: row.get(4)?,
            attacker_ip: row.get(5)?,
            session_id: row.get(6)?,
            decky_id: row.get(7)?,
            tactic: row.get(8)?,
            technique_id: row.get(9)?,
            sub_technique_id: row.get(10)?,
            confidence: row.get(11)?,
            rule_id: row.get(12)?,
            rule_version: row.get(13)?,
            evidence,
        },
        attack_release: row.get(15)?,
        mitre_url: row.get(16)?,
        created_at: match shape {
            TableShape::Ours => row.get(17)?,
            TableShape::Decnet => from_decnet_time(row.get(17)?),
        },
        odd_evidence,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn technique_ids_parse_to_parent_or_sub() {
        assert_eq!(
            technique_filter("T1110").unwrap(),
            ("technique_id", "T1110".to_string())
        );
        assert_eq!(
            technique_filter(" t1110.003 ").unwrap(),
            ("sub_technique_id", "T1110.003".to_string())
        );
        for bad in [
            "1110",
            "T111",
            "T11100",
            "T1110.",
            "T1110.03",
            "T1110.0031",
            "",
            "TA0007",
        ] {
            let err = technique_filter(bad).unwrap_err();
            assert!(err.to_string().contains("T1110.003"), "{bad}: {err}");
        }
    }

    #[test]
    fn attacker_is_ip_or_uuid_and_nothing_else() {
        let q = |a: &str| TagsQuery {
            attacker: Some(a.to_string()),
            ..TagsQuery::default()
        };
        let now = SystemTime::now();
        let (c, p) = where_clauses(&q("203.0.113.7"), now, TableShape::Ours).unwrap();
        assert_eq!(c, ["attacker_ip = ?"]);
        assert_eq!(p, ["203.0.113.7"]);
        let (c, p) = where_clauses(
            &q("0B6C1F7E-2D4A-4F0E-9C1B-5A3E7D9F1C20"),
            now,
            TableShape::Ours,
        )
        .unwrap();
        assert_eq!(c, ["attacker_uuid = ?"]);
        assert_eq!(p, ["0b6c1f7e-2d4a-4f0e-9c1b-5a3e7d9f1c20"]);
        assert!(where_clauses(&q("mallory"), now, TableShape::Ours).is_err());
    }

    #[test]
    fn formats_parse_by_name() {
        assert_eq!("json".parse::<Format>(), Ok(Format::Json));
        assert_eq!("Table".parse::<Format>(), Ok(Format::Table));
        assert!(
            "csv"
                .parse::<Format>()
                .unwrap_err()
                .contains("json or table")
        );
    }
}
