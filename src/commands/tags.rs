//! `ttp-worker tags`: the operator's window on the store, as JSON lines for scripts or as a
//! table for a terminal.

use std::io::Write;
use std::path::Path;

use serde_json::{Map, Value};

use crate::cli::TagsArgs;
use crate::decnet_db::DecnetDbSettings;
use crate::store::{DEFAULT_LIMIT, Format, PendingEntry, Store, StoredTag, TagsQuery};

/// Why `tags` showed nothing, or stopped part way.
pub type Error = super::StoreReadError;

/// The filters the command line asks for.
pub fn query(args: &TagsArgs) -> TagsQuery {
    TagsQuery {
        attacker: args.attacker.clone(),
        identity: args.identity.clone(),
        session: args.session.clone(),
        techniques: args.technique.clone(),
        since: args.since,
        limit: args.limit,
    }
}

/// Opens `db` read-only, runs `query`, writes the rows to `out`; returns how many were shown.
pub fn run(db: &Path, query: &TagsQuery, format: Format, out: impl Write) -> Result<usize, Error> {
    let rows = Store::open_read_only(db)?.query_tags(query)?;
    print_rows(&rows, format, out)
}

/// [`run`] on DECNET's database (docs/decnet-db.md), read-only.
pub fn run_decnet(
    settings: &DecnetDbSettings,
    query: &TagsQuery,
    format: Format,
    out: impl Write,
) -> Result<usize, Error> {
    let rows = crate::decnet_db::query_tags(settings, query)?;
    print_rows(&rows, format, out)
}

fn print_rows(rows: &[StoredTag], format: Format, mut out: impl Write) -> Result<usize, Error> {
    match format {
        Format::Json => {
            for row in rows {
                writeln!(out, "{}", to_json(row)).map_err(Error::Write)?;
            }
        }
        Format::Table => write_table(rows, &mut out).map_err(Error::Write)?,
    }
    out.flush().map_err(Error::Write)?;
    Ok(rows.len())
}

/// The documented key set, in a fixed order (serde_json keeps insertion order here).
fn to_json(row: &StoredTag) -> Value {
    let tag = &row.tag;
    let opt = |v: &Option<String>| v.clone().map_or(Value::Null, Value::String);
    let mut map = Map::new();
    map.insert("uuid".into(), tag.uuid.clone().into());
    map.insert("source_kind".into(), tag.source_kind.clone().into());
    map.insert("source_id".into(), tag.source_id.clone().into());
    map.insert("attacker_uuid".into(), opt(&tag.attacker_uuid));
    map.insert("identity_uuid".into(), opt(&tag.identity_uuid));
    map.insert("attacker_ip".into(), opt(&tag.attacker_ip));
    map.insert("session_id".into(), opt(&tag.session_id));
    map.insert("decky_id".into(), opt(&tag.decky_id));
    map.insert("tactic".into(), tag.tactic.clone().into());
    map.insert("technique_id".into(), tag.technique_id.clone().into());
    map.insert("sub_technique_id".into(), opt(&tag.sub_technique_id));
    map.insert(
        "confidence".into(),
        serde_json::Number::from_f64(tag.confidence).map_or(Value::Null, Value::Number),
    );
    map.insert("rule_id".into(), tag.rule_id.clone().into());
    map.insert("rule_version".into(), tag.rule_version.into());
    map.insert("evidence".into(), row.evidence());
    map.insert("created_at".into(), row.created_at.clone().into());
    Value::Object(map)
}

/// The columns of the table. TAG (the uuid's first eight digits, enough to tell rows apart on
/// screen) and SOURCE (the event the tag came from) are what keep two rows of one technique,
/// rule and session from looking the same: two commands of one session, say.
const HEADERS: [&str; 7] = [
    "TAG",
    "TIME (UTC)",
    "TECHNIQUE",
    "RULE",
    "CONF",
    "ANCHOR",
    "SOURCE",
];

/// The column right-aligned: a number.
const CONF_COLUMN: usize = 4;

fn table_cells(row: &StoredTag) -> [String; 7] {
    let tag = &row.tag;
    // `2026-05-01T12:34:56.789012Z` → `2026-05-01 12:34:56`: seconds are enough on screen.
    let time = row
        .created_at
        .get(..19)
        .unwrap_or(&row.created_at)
        .replace('T', " ");
    let technique = tag
        .sub_technique_id
        .clone()
        .unwrap_or_else(|| tag.technique_id.clone());
    let anchor = match (&tag.attacker_uuid, &tag.identity_uuid, &tag.attacker_ip) {
        (Some(uuid), _, _) => uuid.clone(),
        (None, Some(identity), _) => format!("identity {identity}"),
        (None, None, Some(ip)) => format!("ip {ip}"),
        (None, None, None) => "-".to_string(),
    };
    let short_uuid: String = tag.uuid.chars().take(8).collect();
    [
        short_uuid,
        time,
        technique,
        format!("{} v{}", tag.rule_id, tag.rule_version),
        format!("{:.2}", tag.confidence),
        anchor,
        format!("{}:{}", tag.source_kind, tag.source_id),
    ]
    .map(|cell| printable(&cell))
}

/// Stored strings come from attacker-controlled telemetry: never let them drive the terminal.
fn printable(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

fn write_table(rows: &[StoredTag], out: &mut impl Write) -> std::io::Result<()> {
    if rows.is_empty() {
        return writeln!(out, "no matching tags");
    }
    let cells: Vec<[String; 7]> = rows.iter().map(table_cells).collect();
    let mut widths = HEADERS.map(|h| h.chars().count());
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header = HEADERS.map(String::from);
    for row in std::iter::once(&header).chain(&cells) {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let pad = width - cell.chars().count();
                if i == CONF_COLUMN {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.push_str(&" ".repeat(pad));
                }
                line.push_str("  ");
            }
        }
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// `tags --pending`: the messages held for rows DECNET's database does not have yet
/// (docs/decnet-db.md §8), oldest first, with the tags they gave when held; returns how many.
pub fn run_pending(
    db: &Path,
    limit: Option<usize>,
    format: Format,
    mut out: impl Write,
) -> Result<usize, Error> {
    let held = Store::open_read_only(db)?.pending(limit.unwrap_or(DEFAULT_LIMIT))?;
    match format {
        Format::Json => {
            for entry in &held {
                let line = serde_json::json!({
                    "held_at": entry.held_at,
                    "waiting_for": entry.waiting_for,
                    "subject": entry.subject,
                    "tags": entry.tags,
                });
                writeln!(out, "{line}").map_err(Error::Write)?;
            }
        }
        Format::Table => write_pending_table(&held, &mut out).map_err(Error::Write)?,
    }
    out.flush().map_err(Error::Write)?;
    Ok(held.len())
}

fn write_pending_table(held: &[PendingEntry], out: &mut impl Write) -> std::io::Result<()> {
    if held.is_empty() {
        return writeln!(out, "no held messages");
    }
    let rows: Vec<[String; 4]> = held
        .iter()
        .map(|entry| {
            let techniques: Vec<&str> = entry
                .tags
                .iter()
                .filter_map(|t| {
                    t.get("sub_technique_id")
                        .and_then(Value::as_str)
                        .or_else(|| t.get("technique_id").and_then(Value::as_str))
                })
                .collect();
            [
                entry
                    .held_at
                    .get(..19)
                    .unwrap_or(&entry.held_at)
                    .replace('T', " "),
                entry.waiting_for.clone(),
                entry.subject.clone(),
                format!("{} {}", entry.tags.len(), techniques.join(",")),
            ]
            .map(|cell| printable(&cell))
        })
        .collect();
    let header = ["HELD AT (UTC)", "WAITING FOR", "SUBJECT", "TAGS"].map(String::from);
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            line.push_str(cell);
            if i + 1 < row.len() {
                line.push_str(&" ".repeat(width - cell.chars().count() + 2));
            }
        }
        writeln!(out, "{line}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_for_the_terminal() {
        assert_eq!(printable("a\u{1b}[31mb\n"), "a\\u{1b}[31mb\\n");
        assert_eq!(printable("café"), "café");
    }
}
