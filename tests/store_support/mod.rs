//! Builders shared by the `store_*` integration tests: real database files in temporary
//! directories, tags with real UUIDv5 keys.

#![allow(dead_code)] // each test file uses its own subset

use std::path::PathBuf;

use serde_json::{Map, Value, json};
use tempfile::TempDir;
use ttp_worker::store::Store;
use ttp_worker::tagging::Tag;

pub const ATTACKER: &str = "0b6c1f7e-2d4a-4f0e-9c1b-5a3e7d9f1c20";
pub const OTHER_ATTACKER: &str = "f67bddf8-ae6d-4426-8a7e-480eafa90871";
pub const IDENTITY: &str = "5d2c7a9e-1b3f-4e8a-9c6d-0f1e2a3b4c5d";
pub const IP: &str = "203.0.113.7";

/// A fresh directory and the database path inside it (the file does not exist yet).
pub fn temp_db() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("ttp.db");
    (dir, path)
}

/// A deterministic UUIDv5 for `key`: stable like a tag UUID, but of `key` in the URL
/// namespace, not of a tag key in the tag namespace (docs/tagging.md §4.2).
pub fn uuid_for(key: &str) -> String {
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, key.as_bytes()).to_string()
}

/// An attacker-anchored T1083 tag keyed by `key`.
pub fn tag(key: &str) -> Tag {
    let mut evidence = Map::new();
    evidence.insert("command".into(), Value::String(format!("ls {key}")));
    Tag {
        uuid: uuid_for(key),
        source_kind: "command".into(),
        source_id: format!("cmd-{key}"),
        attacker_uuid: Some(ATTACKER.into()),
        identity_uuid: None,
        attacker_ip: Some(IP.into()),
        session_id: Some("sess-1".into()),
        decky_id: Some("omega-decky".into()),
        tactic: "TA0007".into(),
        technique_id: "T1083".into(),
        sub_technique_id: None,
        confidence: 0.6,
        rule_id: "R0014".into(),
        rule_version: 2,
        evidence,
    }
}

/// A tag anchored only by `ip` (the resolver did not know the address yet).
pub fn ip_tag(key: &str, ip: &str) -> Tag {
    Tag {
        attacker_uuid: None,
        attacker_ip: Some(ip.into()),
        ..tag(key)
    }
}

/// An identity roll-up: no attacker UUID by design, though it may carry an address.
pub fn identity_tag(key: &str, ip: Option<&str>) -> Tag {
    Tag {
        attacker_uuid: None,
        identity_uuid: Some(IDENTITY.into()),
        attacker_ip: ip.map(String::from),
        ..tag(key)
    }
}

/// A brute-force tag: technique T1110, optionally with a sub-technique.
pub fn brute_tag(key: &str, sub: Option<&str>) -> Tag {
    Tag {
        tactic: "TA0006".into(),
        technique_id: "T1110".into(),
        sub_technique_id: sub.map(String::from),
        rule_id: "R0054".into(),
        rule_version: 1,
        confidence: 0.9,
        evidence: json!({"attempts": 42, "service": "ssh"})
            .as_object()
            .cloned()
            .unwrap_or_default(),
        ..tag(key)
    }
}

/// Number of rows in `ttp_tag`, read through a separate read-only connection.
pub fn row_count(path: &std::path::Path) -> usize {
    Store::open_read_only(path)
        .expect("read-only open")
        .stats()
        .expect("stats")
        .total as usize
}
