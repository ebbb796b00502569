//! The operator commands `tags` and `stats` over a real database file.

mod common;
mod store_support;

use std::path::Path;
use std::time::{Duration, SystemTime};

use common::TAG_KEYS;
use serde_json::Value;
use store_support::*;
use ttp_worker::commands::stats::run as run_stats;
use ttp_worker::commands::tags::{self, run as run_tags};
use ttp_worker::store::{Format, Store, StoreError, TagsQuery};
use ttp_worker::units::parse_duration;

const OTHER_IP: &str = "198.51.100.9";

/// Six tags at three ages: 8 days, 2 hours, now.
fn fixture(path: &Path) {
    let now = SystemTime::now();
    let mut store = Store::open(path).unwrap();
    let day = Duration::from_secs(86_400);
    store
        .commit_batch_at(&[vec![brute_tag("old", None)]], &[], now - 8 * day)
        .unwrap();
    let mut sub1 = brute_tag("sub1", Some("T1110.001"));
    sub1.session_id = Some("sess-2".into());
    store
        .commit_batch_at(&[vec![sub1]], &[], now - Duration::from_secs(7200))
        .unwrap();
    let mut ip_only = ip_tag("ip-only", OTHER_IP);
    ip_only.session_id = None;
    store
        .commit_batch_at(
            &[
                vec![brute_tag("sub3", Some("T1110.003")), tag("ls")],
                vec![ip_only, identity_tag("roll-up", None)],
            ],
            &[],
            now,
        )
        .unwrap();
}

fn uuids(path: &Path, query: TagsQuery) -> Vec<String> {
    let mut out = Vec::new();
    run_tags(path, &query, Format::Json, &mut out).unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|line| {
            let value: Value = serde_json::from_str(line).unwrap();
            value["uuid"].as_str().unwrap().to_string()
        })
        .collect()
}

fn sorted(keys: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = keys.iter().map(|k| uuid_for(k)).collect();
    v.sort();
    v
}

fn sorted_uuids(path: &Path, query: TagsQuery) -> Vec<String> {
    let mut v = uuids(path, query);
    v.sort();
    v
}

#[test]
fn attacker_filter_takes_a_uuid_or_an_ip() {
    let (_dir, path) = temp_db();
    fixture(&path);
    let by = |a: &str| TagsQuery {
        attacker: Some(a.into()),
        ..TagsQuery::default()
    };
    assert_eq!(
        sorted_uuids(&path, by(ATTACKER)),
        sorted(&["old", "sub1", "sub3", "ls"])
    );
    assert_eq!(
        sorted_uuids(&path, by(&ATTACKER.to_uppercase())),
        sorted(&["old", "sub1", "sub3", "ls"])
    );
    assert_eq!(sorted_uuids(&path, by(OTHER_IP)), sorted(&["ip-only"]));
    assert_eq!(sorted_uuids(&path, by("192.0.2.1")), Vec::<String>::new());

    let err = run_tags(&path, &by("mallory"), Format::Json, Vec::new()).unwrap_err();
    assert!(
        matches!(err, tags::Error::Store(StoreError::Query(_))),
        "{err}"
    );
}

#[test]
fn a_parent_technique_covers_its_sub_techniques_and_a_sub_only_itself() {
    let (_dir, path) = temp_db();
    fixture(&path);
    let by = |t: &[&str]| TagsQuery {
        techniques: t.iter().map(|s| s.to_string()).collect(),
        ..TagsQuery::default()
    };
    assert_eq!(
        sorted_uuids(&path, by(&["T1110"])),
        sorted(&["old", "sub1", "sub3"])
    );
    assert_eq!(sorted_uuids(&path, by(&["T1110.003"])), sorted(&["sub3"]));
    assert_eq!(
        sorted_uuids(&path, by(&["T1083", "t1110.001"])),
        sorted(&["ls", "sub1", "ip-only", "roll-up"])
    );
    assert!(run_tags(&path, &by(&["1110"]), Format::Json, Vec::new()).is_err());
}

#[test]
fn since_session_identity_and_limit_filter_and_rows_come_newest_first() {
    let (_dir, path) = temp_db();
    fixture(&path);
    let since = |s: &str| TagsQuery {
        since: Some(parse_duration(s).unwrap()),
        ..TagsQuery::default()
    };
    assert_eq!(
        sorted_uuids(&path, since("1d")),
        sorted(&["sub1", "sub3", "ls", "ip-only", "roll-up"])
    );
    assert_eq!(
        sorted_uuids(&path, since("1h")),
        sorted(&["sub3", "ls", "ip-only", "roll-up"])
    );
    assert_eq!(sorted_uuids(&path, since("30d")).len(), 6);

    let session = TagsQuery {
        session: Some("sess-2".into()),
        ..TagsQuery::default()
    };
    assert_eq!(uuids(&path, session), sorted(&["sub1"]));
    let identity = TagsQuery {
        identity: Some(IDENTITY.into()),
        ..TagsQuery::default()
    };
    assert_eq!(uuids(&path, identity), sorted(&["roll-up"]));

    // Combined filters all apply.
    let both = TagsQuery {
        attacker: Some(ATTACKER.into()),
        techniques: vec!["T1110".into()],
        since: Some(parse_duration("1d").unwrap()),
        ..TagsQuery::default()
    };
    assert_eq!(sorted_uuids(&path, both), sorted(&["sub1", "sub3"]));

    let all = uuids(&path, TagsQuery::default());
    assert_eq!(all.len(), 6);
    assert_eq!(all[4], uuid_for("sub1"));
    assert_eq!(all[5], uuid_for("old"), "oldest last");
    let limited = uuids(
        &path,
        TagsQuery {
            limit: Some(2),
            ..TagsQuery::default()
        },
    );
    assert_eq!(limited, all[..2]);
}

#[test]
fn json_lines_carry_the_documented_keys_in_order() {
    let (_dir, path) = temp_db();
    fixture(&path);
    let mut out = Vec::new();
    let query = TagsQuery {
        techniques: vec!["T1110.003".into()],
        ..TagsQuery::default()
    };
    assert_eq!(run_tags(&path, &query, Format::Json, &mut out).unwrap(), 1);
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.lines().count(), 1);
    assert!(
        !text.trim_end().contains('\n') && !text.contains(": "),
        "compact"
    );
    let row: serde_json::Map<String, Value> = serde_json::from_str(text.trim_end()).unwrap();
    let keys: Vec<&str> = row.keys().map(String::as_str).collect();
    let mut want = TAG_KEYS.to_vec();
    want.push("created_at");
    assert_eq!(keys, want);
    assert_eq!(row["uuid"], uuid_for("sub3").as_str());
    assert_eq!(row["technique_id"], "T1110");
    assert_eq!(row["sub_technique_id"], "T1110.003");
    assert_eq!(row["identity_uuid"], Value::Null);
    assert_eq!(row["confidence"], 0.9);
    assert_eq!(row["rule_version"], 1);
    assert_eq!(row["evidence"]["attempts"], 42);
    assert!(row["created_at"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn the_table_is_aligned_and_says_when_nothing_matches() {
    let (_dir, path) = temp_db();
    fixture(&path);
    let mut out = Vec::new();
    assert_eq!(
        run_tags(&path, &TagsQuery::default(), Format::Table, &mut out).unwrap(),
        6
    );
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 7, "{text}");
    let header = lines[0];
    for column in [
        "TAG",
        "TIME (UTC)",
        "TECHNIQUE",
        "RULE",
        "CONF",
        "ANCHOR",
        "SOURCE",
    ] {
        assert!(header.contains(column), "{header}");
    }
    // Every row starts its technique, rule and anchor where the header does.
    for column in ["TECHNIQUE", "RULE", "ANCHOR"] {
        let at = header.find(column).unwrap();
        for line in &lines[1..] {
            let bytes = line.as_bytes();
            assert_eq!(bytes[at - 1], b' ', "{column} misaligned in\n{text}");
            assert_ne!(bytes[at], b' ', "{column} misaligned in\n{text}");
        }
    }
    assert!(text.contains("T1110.003"), "{text}");
    assert!(text.contains("R0054 v1"), "{text}");
    assert!(text.contains(&format!("ip {OTHER_IP}")), "{text}");
    assert!(text.contains(&format!("identity {IDENTITY}")), "{text}");
    assert!(text.contains("command:cmd-ip-only"), "{text}");
    assert!(
        lines[6]
            .split_whitespace()
            .nth(1)
            .unwrap()
            .starts_with(char::is_numeric)
            && lines[6].contains("0.90"),
        "{text}"
    );
    // No two rows look alike: each starts with its own tag's short uuid.
    let short: std::collections::BTreeSet<&str> = lines[1..]
        .iter()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(short.len(), 6, "{text}");
    assert!(
        short
            .iter()
            .all(|s| s.len() == 8 && s.chars().all(|c| c.is_ascii_hexdigit()))
    );

    let mut out = Vec::new();
    let nothing = TagsQuery {
        session: Some("no-such-session".into()),
        ..TagsQuery::default()
    };
    assert_eq!(
        run_tags(&path, &nothing, Format::Table, &mut out).unwrap(),
        0
    );
    assert_eq!(String::from_utf8(out).unwrap(), "no matching tags\n");
}

#[test]
fn queries_on_a_missing_database_name_the_path() {
    let (_dir, path) = temp_db();
    let err = run_tags(&path, &TagsQuery::default(), Format::Json, Vec::new()).unwrap_err();
    assert!(
        matches!(err, tags::Error::Store(StoreError::Missing { .. })),
        "{err}"
    );
    let err = run_stats(&path, Vec::new()).unwrap_err();
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn stats_summarise_the_store() {
    let (_dir, path) = temp_db();
    fixture(&path);
    {
        let mut store = Store::open(&path).unwrap();
        store.learn_anchor("192.0.2.44", OTHER_ATTACKER).unwrap();
    }
    let stats = Store::open_read_only(&path).unwrap().stats().unwrap();
    assert_eq!(stats.total, 6);
    assert_eq!(stats.last_24h, 5);
    // ATTACKER, and the still unresolved 198.51.100.9; the identity roll-up is no attacker.
    assert_eq!(stats.attackers, 2);
    assert_eq!(stats.anchors, Some(1));
    assert_eq!(
        stats.by_technique,
        vec![("T1083".to_string(), 3), ("T1110".to_string(), 3)]
    );
    assert_eq!(
        stats.by_rule,
        vec![("R0014".to_string(), 3), ("R0054".to_string(), 3)]
    );
    assert!(matches!(stats.size, ttp_worker::store::Size::File(b) if b >= 4096));

    let mut out = Vec::new();
    run_stats(&path, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    for line in [
        format!("database        {}", path.display()),
        format!("schema version  {}", ttp_worker::store::SCHEMA_VERSION),
        "tags            6".to_string(),
        "tags last 24h   5".to_string(),
        "attackers       2".to_string(),
        "anchors known   1".to_string(),
        "by technique".to_string(),
        "  T1083  3".to_string(),
        "by rule".to_string(),
        "  R0054  3".to_string(),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert!(text.contains("(incl. WAL)"), "{text}");
}
