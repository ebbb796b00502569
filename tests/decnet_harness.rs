//! The DECNET harness itself (tests/common/decnet.rs, tests/common/mariadb.rs): DECNET's own
//! code makes its schema on a SQLite file and on a real MariaDB server, seeds the dev-1k
//! world, stores three of DECNET's tags through its own `insert_tags`, and reads them back
//! the way its API does.

mod common;

use std::collections::BTreeSet;
use std::fs;

use common::corpus::required;
use common::decnet::Decnet;
use common::mariadb::MariaDb;
use serde_json::Value;

/// `ttp_tag`'s columns in DECNET 1.0.0's model, in declaration order: the table ttp-worker
/// writes into.
const TTP_TAG_COLUMNS: [&str; 17] = [
    "uuid",
    "source_kind",
    "source_id",
    "attacker_uuid",
    "identity_uuid",
    "session_id",
    "decky_id",
    "tactic",
    "technique_id",
    "sub_technique_id",
    "confidence",
    "rule_id",
    "rule_version",
    "evidence",
    "attack_release",
    "mitre_url",
    "created_at",
];

/// The first three of DECNET's own tags for dev-1k that it stores (confidence at or above
/// its 0.3 floor) and that are anchored on an attacker.
fn three_tags() -> Vec<Value> {
    fs::read_to_string(required("corpus/dev-1k.decnet-all.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|t| t["confidence"].as_f64().unwrap() >= 0.3 && t["attacker_uuid"].is_string())
        .take(3)
        .collect()
}

fn world() -> Value {
    serde_json::from_str(&fs::read_to_string(required("corpus/dev-1k.world.json")).unwrap())
        .unwrap()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

/// Everything the harness offers, against one database URL.
fn exercise(url: &str, dir: &std::path::Path) {
    let decnet = Decnet::get();

    let created = decnet.create(url);
    assert_eq!(created["ok"], true, "{created}");
    let tables = strings(&created["tables"]);
    for table in [
        "ttp_tag",
        "attackers",
        "attacker_identities",
        "attacker_intel",
        "alembic_version",
    ] {
        assert!(
            tables.iter().any(|t| t == table),
            "no table {table} in {tables:?}"
        );
    }

    let schema = decnet.read(url, "schema", None);
    assert_eq!(
        strings(&schema["model_columns"]),
        TTP_TAG_COLUMNS,
        "DECNET's model changed"
    );
    let in_db: BTreeSet<String> = strings(&schema["db_columns"]).into_iter().collect();
    let declared: BTreeSet<String> = TTP_TAG_COLUMNS.iter().map(|c| c.to_string()).collect();
    assert_eq!(
        in_db, declared,
        "ttp_tag as created differs from DECNET's model"
    );

    let world = world();
    let seeded = decnet.seed_dev_1k(url);
    let ip_map = world["ip_map"].as_object().unwrap();
    let distinct_mapped: BTreeSet<&str> = ip_map.values().map(|v| v.as_str().unwrap()).collect();
    assert!(
        seeded["attackers"].as_u64().unwrap() >= distinct_mapped.len() as u64,
        "{seeded}"
    );
    assert_eq!(
        seeded["intel_rows"].as_u64().unwrap(),
        world["intel_rows"].as_object().unwrap().len() as u64
    );
    assert!(seeded["identities"].as_u64().unwrap() > 0, "{seeded}");
    // Every mapped IP resolves through DECNET's own lookup to its uuid.
    let (ip, uuid) = ip_map.iter().next().unwrap();
    assert_eq!(decnet.read(url, "attacker-by-ip", Some(ip)), *uuid);

    // An attacker appearing later.
    let late = decnet.add_attacker(url, "192.0.2.250", "0d7c2f6e-5b5e-4d8b-9a55-7a1f00000001");
    assert_eq!(late["resolved"], "0d7c2f6e-5b5e-4d8b-9a55-7a1f00000001");

    let tags = three_tags();
    assert_eq!(tags.len(), 3);
    let file = dir.join("three.jsonl");
    fs::write(
        &file,
        tags.iter()
            .map(|t| t.to_string() + "\n")
            .collect::<String>(),
    )
    .unwrap();
    let inserted = decnet.insert_tags(url, &file);
    assert_eq!(inserted["inserted"], 3, "{inserted}");
    // DECNET's insert ignores a tag whose uuid is already stored.
    assert_eq!(decnet.insert_tags(url, &file)["inserted"], 0);

    let rows = decnet.all_tags(url);
    assert_eq!(rows.len(), 3);
    let mut expected = tags.clone();
    expected.sort_by(|a, b| a["uuid"].as_str().cmp(&b["uuid"].as_str()));
    for (row, tag) in rows.iter().zip(&expected) {
        let keys: BTreeSet<String> = row.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, declared, "{row}");
        for key in [
            "uuid",
            "source_kind",
            "source_id",
            "attacker_uuid",
            "identity_uuid",
            "session_id",
            "decky_id",
            "tactic",
            "technique_id",
            "sub_technique_id",
            "rule_id",
            "rule_version",
            "evidence",
        ] {
            assert_eq!(row[key], tag[key], "{key} of {row}");
        }
        assert_eq!(row["confidence"].as_f64(), tag["confidence"].as_f64());
        assert!(row["evidence"].is_object());
        assert!(
            row["created_at"].as_str().unwrap().starts_with("20"),
            "{row}"
        );
        assert!(row["attack_release"].is_string());
    }

    let attacker = tags[0]["attacker_uuid"].as_str().unwrap();
    let rollup = decnet.read(url, "by-attacker", Some(attacker));
    let rollup = rollup.as_array().unwrap();
    let of_attacker: Vec<&Value> = tags
        .iter()
        .filter(|t| t["attacker_uuid"] == attacker)
        .collect();
    let counted: u64 = rollup.iter().map(|r| r["count"].as_u64().unwrap()).sum();
    assert_eq!(counted, of_attacker.len() as u64, "{rollup:?}");
    assert!(
        rollup
            .iter()
            .any(|r| r["technique_id"] == tags[0]["technique_id"])
    );

    let session = tags[0]["session_id"].as_str().unwrap();
    assert!(
        !decnet
            .read(url, "by-session", Some(session))
            .as_array()
            .unwrap()
            .is_empty()
    );
    let layer = decnet.read(url, "navigator", None);
    let scored: u64 = layer["techniques"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["score"].as_u64().unwrap())
        .sum();
    assert_eq!(scored, 3, "{layer}");
    // A rollup with nothing in it is an empty list, not an error.
    assert_eq!(
        decnet.read(url, "by-identity", Some("no-such-identity")),
        Value::Array(vec![])
    );
}

#[test]
fn decnet_code_makes_seeds_writes_and_reads_a_sqlite_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("decnet.db");
    exercise(db.to_str().unwrap(), dir.path());
    assert!(db.is_file());
}

#[test]
fn decnet_code_makes_seeds_writes_and_reads_a_mariadb_database() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = MariaDb::start();
    let url = server.url();
    exercise(&url, dir.path());

    // The rows are in the server (our own check, not DECNET's).
    assert_eq!(server.sql_db("SELECT COUNT(*) FROM ttp_tag").trim(), "3");

    // Down: DECNET's code fails; up again on the same data and port: the rows are still there.
    server.stop();
    assert!(!server.is_running());
    assert!(Decnet::get().try_run(&["read", &url, "all-tags"]).is_err());
    server.start_again();
    assert_eq!(Decnet::get().all_tags(&url).len(), 3);
    server.restart();
    assert_eq!(server.url(), url);
    assert_eq!(Decnet::get().all_tags(&url).len(), 3);
}
