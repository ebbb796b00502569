//! ttp-worker pointed at DECNET's own SQLite database (docs/decnet-db.md): DECNET's code makes
//! the schema and seeds what its database held when the dev corpus was tagged; the corpus goes
//! through a real nats-server into the real binary; DECNET's code then reads the rows back.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::corpus::{corpus_lines, reference_args, required, subject_of};
use common::decnet::Decnet;
use common::{HealthWatch, NatsServer, PATIENCE, Worker, counter};
use serde_json::Value;

/// DECNET's own tagger's rows for dev-1k at or above its 0.3 floor, intel catch-up included:
/// what DECNET stores.
fn decnet_rows() -> BTreeMap<String, Value> {
    fs::read_to_string(required("corpus/dev-1k.decnet-all.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or(Value::Null))
        .filter(|t| t["confidence"].as_f64().unwrap_or(0.0) >= 0.3)
        .map(|t| (t["uuid"].as_str().unwrap_or_default().to_owned(), t))
        .collect()
}

/// A DECNET SQLite database made and seeded by DECNET's own code.
fn decnet_database(dir: &Path) -> String {
    let path = dir.join("decnet.db").display().to_string();
    let decnet = Decnet::get();
    decnet.create(&path);
    decnet.seed_dev_1k(&path);
    path
}

fn start_worker(server: &NatsServer, db: &str, state: &Path) -> Worker {
    let mut args: Vec<String> = reference_args();
    args.push("--heartbeat-interval".into());
    args.push("0.2".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let url = server.url();
    let local = state.join("ttp.db").display().to_string();
    let worker = Worker::start(
        &args,
        &[
            ("DECNET_BUS_URL", url.as_str()),
            ("DECNET_DB_TYPE", "sqlite"),
            ("DECNET_DB_PATH", db),
            ("DECNET_TTP_DB", local.as_str()),
            ("DECNET_TTP_POLL_INTERVAL", "0.2"),
        ],
    );
    worker.wait_for_log("subscribed to");
    worker
}

fn publish(server: &NatsServer, lines: &[String]) {
    let client = server.client();
    for line in lines {
        client
            .publish(&subject_of(line), line)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    client.flush().unwrap_or_else(|e| panic!("{e}"));
}

/// Waits until the heartbeat shows `n` messages processed.
fn wait_processed(health: &HealthWatch, n: u64) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (beat, _) = health.next_beat();
        if counter(&beat, "processed") >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {} processed",
            counter(&beat, "processed")
        );
    }
}

#[test]
fn dev_1k_through_nats_gives_decnets_own_rows_in_decnets_sqlite() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db = decnet_database(dir.path());
    let server = NatsServer::start();
    let health = HealthWatch::new(&server);
    let mut worker = start_worker(&server, &db, dir.path());
    let lines = corpus_lines();
    publish(&server, &lines);
    wait_processed(&health, lines.len() as u64);

    let decnet = Decnet::get();
    let stored: BTreeMap<String, Value> = decnet
        .all_tags(&db)
        .into_iter()
        .map(|t| (t["uuid"].as_str().unwrap_or_default().to_owned(), t))
        .collect();
    let want = decnet_rows();
    let missing: Vec<&String> = want.keys().filter(|u| !stored.contains_key(*u)).collect();
    let extra: Vec<&Value> = stored
        .iter()
        .filter(|(u, _)| !want.contains_key(*u))
        .map(|(_, t)| t)
        .collect();
    let mut different = Vec::new();
    for (uuid, row) in &stored {
        let Some(expected) = want.get(uuid) else {
            continue;
        };
        for (key, value) in expected.as_object().into_iter().flatten() {
            if row.get(key) != Some(value) {
                different.push(format!(
                    "{uuid} {key}: want {value} got {}",
                    row.get(key).unwrap_or(&Value::Null)
                ));
            }
        }
        assert_eq!(row["attack_release"], "v15.1", "{uuid}");
    }
    eprintln!(
        "{} rows stored, {} of DECNET's: {} missing, {} extra, {} differences",
        stored.len(),
        want.len(),
        missing.len(),
        extra.len(),
        different.len()
    );
    assert!(missing.is_empty(), "missing: {missing:?}");
    assert!(extra.is_empty(), "extra: {extra:#?}");
    assert!(different.is_empty(), "{different:#?}");
    worker.signal("TERM");
    let _ = worker.wait_exit(Duration::from_secs(10));
}
