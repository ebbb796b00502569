//! The reference corpus and rule pack (read at test time from `../shared/compat/` beside the
//! project, or from `$TTP_COMPAT_DIR`), and ways to replay them and read back what the worker
//! stored.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;
use ttp_worker::envelope::jsonl::parse_line;
use ttp_worker::tagging::{EngineOptions, Tag, Tagger};

/// A file of the shared compat fixtures: under `$TTP_COMPAT_DIR` when set (a checkout that
/// does not sit beside `shared/`), else `../shared/compat` from the project.
pub fn compat(path: &str) -> PathBuf {
    std::env::var_os("TTP_COMPAT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/compat"))
        .join(path)
}

/// [`compat`], for a fixture the test cannot do without: fails the test, saying where the
/// fixtures are looked for, when it is missing.
pub fn required(path: &str) -> PathBuf {
    let found = compat(path);
    assert!(
        found.exists(),
        "the compat fixtures (../shared/compat or $TTP_COMPAT_DIR) are missing"
    );
    found
}

/// `dev-1k.jsonl`, one envelope per line.
pub fn corpus_lines() -> Vec<String> {
    std::fs::read_to_string(compat("corpus/dev-1k.jsonl"))
        .expect("the compat corpus (../shared/compat or $TTP_COMPAT_DIR) is missing")
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The reference pack with its intel tables and anchors, as the compatibility tests use it.
pub fn reference_options() -> EngineOptions {
    EngineOptions {
        rules_dirs: vec![compat("decnet-rules")],
        no_builtin_rules: true,
        intel_maps_dir: Some(compat("decnet-intel")),
        anchors_file: Some(compat("corpus/dev-1k.anchors.json")),
        ..EngineOptions::default()
    }
}

/// The same options as command-line arguments for the daemon.
pub fn reference_args() -> Vec<String> {
    vec![
        "--no-builtin-rules".into(),
        "--rules".into(),
        compat("decnet-rules").display().to_string(),
        "--intel-maps".into(),
        compat("decnet-intel").display().to_string(),
        "--anchors".into(),
        compat("corpus/dev-1k.anchors.json").display().to_string(),
    ]
}

/// The subject a corpus line is published on (its `topic` member).
pub fn subject_of(line: &str) -> String {
    let value: Value = serde_json::from_str(line).unwrap_or(Value::Null);
    value["topic"]
        .as_str()
        .unwrap_or("attacker.observed")
        .to_owned()
}

/// `copies` copies of `lines`, each with every UUID rewritten (sessions, commands, tokens,
/// attackers), so a long replay is mostly new events rather than the same 1000 again.
pub fn distinct_copies(lines: &[String], copies: usize) -> Vec<String> {
    let uuid = regex::Regex::new(
        "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{8}([0-9a-f]{4})",
    )
    .unwrap();
    let mut out = Vec::with_capacity(lines.len() * copies);
    for copy in 0..copies {
        for line in lines {
            if copy == 0 {
                out.push(line.clone());
            } else {
                let rewritten = uuid.replace_all(line, |c: &regex::Captures| {
                    let whole = &c[0];
                    format!("{}{:04x}", &whole[..whole.len() - 4], copy)
                });
                out.push(rewritten.into_owned());
            }
        }
    }
    out
}

/// Every tag the engine gives `lines`, first occurrence per uuid.
pub fn reference_tags(lines: &[String]) -> BTreeMap<String, Tag> {
    reference_tag_candidates(lines)
        .into_iter()
        .map(|(uuid, mut tags)| (uuid, tags.swap_remove(0)))
        .collect()
}

/// Every distinct tag the engine gives `lines`, per uuid. Some uuids come from more than one
/// event (DECNET keys canary tags by token and identity tags by identity, whoever triggered
/// them), and which of those a store keeps depends on which arrived first.
pub fn reference_tag_candidates(lines: &[String]) -> BTreeMap<String, Vec<Tag>> {
    let mut tagger = Tagger::new(&reference_options()).expect("reference pack");
    let mut tags: BTreeMap<String, Vec<Tag>> = BTreeMap::new();
    for line in lines {
        if let Ok(message) = parse_line(line) {
            for tag in tagger.tag_message(&message).tags {
                let candidates = tags.entry(tag.uuid.clone()).or_default();
                if !candidates.contains(&tag) {
                    candidates.push(tag);
                }
            }
        }
    }
    tags
}

/// The tags DECNET's own tagger stored for `dev-1k.jsonl` (`dev-1k.expected.jsonl`), by uuid.
pub fn decnet_stored_tags() -> BTreeMap<String, Value> {
    std::fs::read_to_string(required("corpus/dev-1k.expected.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap_or(Value::Null))
        .map(|tag| (tag["uuid"].as_str().unwrap_or_default().to_owned(), tag))
        .collect()
}

/// The stored rows, keyed by uuid, as JSON objects with the `tag` command's keys.
pub fn stored_rows(db: &Path) -> BTreeMap<String, serde_json::Map<String, Value>> {
    let connection =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open the store read-only");
    let mut statement = connection
        .prepare(
            "SELECT uuid, source_kind, source_id, attacker_uuid, identity_uuid, attacker_ip,
                    session_id, decky_id, tactic, technique_id, sub_technique_id, confidence,
                    rule_id, rule_version, evidence FROM ttp_tag",
        )
        .unwrap();
    let rows = statement
        .query_map([], |row| {
            let text = |i: usize| row.get::<_, Option<String>>(i).map(Value::from);
            let mut map = serde_json::Map::new();
            // The text columns: the first eleven, up to `sub_technique_id`.
            for (i, key) in super::TAG_KEYS[..11].iter().enumerate() {
                map.insert((*key).into(), text(i)?);
            }
            map.insert("confidence".into(), Value::from(row.get::<_, f64>(11)?));
            map.insert("rule_id".into(), text(12)?);
            map.insert("rule_version".into(), Value::from(row.get::<_, i64>(13)?));
            let evidence: String = row.get(14)?;
            map.insert(
                "evidence".into(),
                serde_json::from_str(&evidence).unwrap_or(Value::Null),
            );
            Ok(map)
        })
        .unwrap();
    rows.map(|row| {
        let row = row.unwrap();
        (row["uuid"].as_str().unwrap().to_owned(), row)
    })
    .collect()
}

pub fn stored_uuids(db: &Path) -> BTreeSet<String> {
    stored_rows(db).into_keys().collect()
}
