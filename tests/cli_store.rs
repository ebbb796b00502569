//! `ttp-worker tags` and `ttp-worker stats` as an operator runs them, on a store a worker owns
//! at that very moment.

mod common;

use std::process::Command;

use serde_json::Value;

use common::corpus::{corpus_lines, reference_options};
use ttp_worker::envelope::jsonl::parse_line;
use ttp_worker::store::Store;
use ttp_worker::tagging::Tagger;

fn ttp_worker(db: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ttp-worker"));
    command.env_clear().env("DECNET_TTP_DB", db);
    command
}

#[test]
fn tags_and_stats_read_a_store_while_its_owner_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ttp.db");
    // The owner: tags dev-1k into the store and keeps it open (and locked) throughout.
    let mut owner = Store::open(&db).unwrap();
    let tags = dev_1k_tags();
    let outcome = owner.commit_batch(&tags, &[]).unwrap();
    let stored = outcome.inserted_count();
    assert!(stored > 1000);

    let output = ttp_worker(&db)
        .args([
            "tags",
            "--technique",
            "T1105",
            "--format",
            "json",
            "--limit",
            "100000",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let rows: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let expected = tags
        .iter()
        .flatten()
        .filter(|t| t.technique_id == "T1105")
        .map(|t| &t.uuid)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    assert_eq!(rows.len(), expected);
    assert!(rows.iter().all(|r| r["technique_id"] == "T1105"));

    let output = ttp_worker(&db)
        .args(["tags", "--limit", "5"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let table = String::from_utf8(output.stdout).unwrap();
    assert!(table.lines().count() >= 6, "header and five rows:\n{table}");

    let output = ttp_worker(&db).arg("stats").output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let stats = String::from_utf8(output.stdout).unwrap();
    assert!(stats.contains(&stored.to_string()), "{stats}");
    assert!(stats.contains("T1105"), "{stats}");
    drop(owner);
}

#[test]
fn a_missing_store_or_a_bad_duration_is_reported_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.db");
    let output = ttp_worker(&missing).arg("stats").output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("nope.db"), "{stderr}");

    let output = ttp_worker(&missing)
        .args(["tags", "--since", "soon"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

/// `ttp-worker tags | head -1`: a reader that stops early ends the listing quietly, with
/// success, as ripgrep does.
#[test]
fn tags_end_quietly_when_their_reader_goes_away() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ttp.db");
    let tags = dev_1k_tags();
    Store::open(&db).unwrap().commit_batch(&tags, &[]).unwrap();

    for format in ["json", "table"] {
        let mut child = ttp_worker(&db)
            .args(["tags", "--format", format, "--limit", "100000"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{format}: {stderr}");
        assert!(stderr.is_empty(), "{format}: {stderr}");
    }
}

/// dev-1k's tags with DECNET's pack, one list per message, as the daemon would commit them.
fn dev_1k_tags() -> Vec<Vec<ttp_worker::tagging::Tag>> {
    let mut tagger = Tagger::new(&reference_options()).unwrap();
    corpus_lines()
        .iter()
        .filter_map(|line| parse_line(line).ok())
        .map(|message| tagger.tag_message(&message).tags)
        .collect()
}
