//! Durable mode survives what kills DECNET's worker: `kill -9` of the worker and of the NATS
//! server in the middle of a 20k-event replay. Afterwards the store holds exactly the tags of
//! an uninterrupted run, with no duplicates, and no tag is announced twice.

#![allow(deprecated)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::corpus::{
    corpus_lines, distinct_copies, reference_args, reference_tags, stored_uuids, subject_of,
};
use common::{HealthWatch, NatsServer, PATIENCE, Worker, counter};
use ttp_worker::topics::TOPICS;

const COPIES: usize = 20;

/// Consumers are created with this ack wait, so messages a killed worker had in hand come
/// back within the test's patience.
const ACK_WAIT: &str = "2s";

fn start_durable_worker(server: &NatsServer, db: &Path) -> Worker {
    let mut args: Vec<String> = vec!["--durable".into()];
    args.extend(reference_args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Worker::start(
        &args,
        &[
            ("DECNET_BUS_URL", &server.url()),
            ("DECNET_TTP_DB", db.to_str().unwrap()),
            ("DECNET_TTP_HEARTBEAT_SECS", "0.2"),
            ("DECNET_TTP_POLL_INTERVAL", "0.3"),
            ("DECNET_TTP_ACK_WAIT", ACK_WAIT),
            ("RUST_LOG", "info"),
        ],
    )
}

/// Publishes as DECNET's producers do (plain core publishes), then waits until the stream
/// holds them all, so every line is known to be captured when this returns.
fn publish_to_stream(url: &str, lines: &[String]) {
    let client = nats::connect(url).expect("publisher connects");
    let js = nats::jetstream::new(client.clone());
    let before = js
        .stream_info("DECNET_TTP_IN")
        .expect("stream")
        .state
        .messages;
    for line in lines {
        client.publish(&subject_of(line), line).expect("publish");
    }
    client.flush().unwrap();
    let deadline = Instant::now() + PATIENCE;
    while js.stream_info("DECNET_TTP_IN").unwrap().state.messages < before + lines.len() as u64 {
        assert!(
            Instant::now() < deadline,
            "the stream did not capture every message"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until every consumer has delivered and been acked for everything in the stream.
fn wait_until_drained(server: &NatsServer) {
    let js = nats::jetstream::new(server.client());
    let deadline = Instant::now() + PATIENCE * 9;
    loop {
        let busy: Vec<String> = TOPICS
            .iter()
            .filter_map(|pattern| {
                let name = format!(
                    "ttp-{}",
                    pattern
                        .replace('.', "_")
                        .replace('>', "all")
                        .replace('*', "any")
                );
                match js.consumer_info("DECNET_TTP_IN", &name) {
                    Ok(info) if info.num_pending == 0 && info.num_ack_pending == 0 => None,
                    Ok(info) => Some(format!(
                        "{name}: {} pending, {} unacked",
                        info.num_pending, info.num_ack_pending
                    )),
                    Err(err) => Some(format!("{name}: {err}")),
                }
            })
            .collect();
        if busy.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "consumers never drained: {busy:?}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// Counts how often each tag uuid was announced on `ttp.tagged`.
struct TaggedWatch {
    subscription: nats::Subscription,
    _client: nats::Connection,
}

impl TaggedWatch {
    fn new(server: &NatsServer) -> TaggedWatch {
        let client = server.client();
        let subscription = client.subscribe("ttp.tagged").unwrap();
        client.flush().unwrap();
        TaggedWatch {
            subscription,
            _client: client,
        }
    }

    fn counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        while let Ok(message) = self.subscription.next_timeout(Duration::from_millis(500)) {
            let envelope: Value = serde_json::from_slice(&message.data).unwrap();
            for uuid in envelope["payload"]["tag_uuids"].as_array().unwrap() {
                *counts.entry(uuid.as_str().unwrap().to_owned()).or_insert(0) += 1;
            }
        }
        counts
    }
}

/// SIGTERM, then a clean exit within the 2 s the daemon promises.
fn stop_cleanly(worker: &mut Worker) {
    worker.signal("TERM");
    assert!(
        worker
            .wait_exit(Duration::from_secs(2))
            .is_some_and(|s| s.success())
    );
}

/// Sets the running worker's file-size limit (`prlimit --fsize`), as a full disk would.
fn limit_file_size(worker: &Worker, limit: &str) {
    let status = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &worker.pid().to_string(),
            &format!("--fsize={limit}"),
        ])
        .status()
        .expect("prlimit (util-linux) is needed for this test");
    assert!(status.success());
}

fn assert_converged(db: &Path, lines: &[String], announced: &BTreeMap<String, usize>) {
    let expected = reference_tags(lines);
    let stored = stored_uuids(db);
    let missing: Vec<&String> = expected.keys().filter(|u| !stored.contains(*u)).collect();
    let extra: Vec<&String> = stored
        .iter()
        .filter(|u| !expected.contains_key(*u))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{} tags missing, {} unexpected (of {})",
        missing.len(),
        extra.len(),
        expected.len()
    );
    let twice: Vec<_> = announced.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "announced more than once: {twice:?}");
    assert!(announced.keys().all(|u| stored.contains(u)));
}

#[test]
fn kill_9_of_the_worker_mid_replay_loses_and_duplicates_nothing() {
    let server = NatsServer::start_jetstream();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ttp.db");
    let health = HealthWatch::new(&server);
    let tagged = TaggedWatch::new(&server);
    let lines = distinct_copies(&corpus_lines(), COPIES);

    let worker = start_durable_worker(&server, &db);
    health.next_beat(); // stream and consumers exist
    let publisher = {
        let lines = lines.clone();
        let url = server.url();
        thread::spawn(move || publish_to_stream(&url, &lines))
    };
    health.beat_within(
        PATIENCE * 6,
        "a quarter of the replay was processed",
        |beat| counter(beat, "processed") >= (lines.len() / 4) as u64,
    );
    worker.signal("KILL");
    drop(worker);
    publisher.join().unwrap();

    let mut worker = start_durable_worker(&server, &db);
    wait_until_drained(&server);
    stop_cleanly(&mut worker);
    assert_converged(&db, &lines, &tagged.counts());
}

#[test]
fn a_nats_server_crash_mid_replay_loses_nothing() {
    let mut server = NatsServer::start_jetstream();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ttp.db");
    let lines = distinct_copies(&corpus_lines(), COPIES);

    // Create the stream, then fill it while no worker runs.
    let health = HealthWatch::new(&server);
    let mut worker = start_durable_worker(&server, &db);
    health.next_beat();
    worker.signal("TERM");
    worker.wait_exit(Duration::from_secs(2)).expect("stopped");
    publish_to_stream(&server.url(), &lines);

    let worker = start_durable_worker(&server, &db);
    health.beat_within(
        PATIENCE * 6,
        "a quarter of the replay was processed",
        |beat| counter(beat, "processed") >= (lines.len() / 4) as u64,
    );
    server.restart(); // kill -9 and start again on the same ports and store
    let health = HealthWatch::new(&server);
    health.beat_where("the worker is back and counted its reconnect", |beat| {
        counter(beat, "reconnects") >= 1
    });
    wait_until_drained(&server);
    let mut worker = worker;
    stop_cleanly(&mut worker);
    assert_converged(&db, &lines, &BTreeMap::new());
}

/// A full disk, as the daemon meets it: its file-size limit is lowered below the store's
/// size with `prlimit`, so every write to the database or its WAL fails until the limit is
/// lifted.
#[test]
fn a_full_disk_holds_events_unacked_and_nothing_is_lost_once_space_returns() {
    let server = NatsServer::start_jetstream();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ttp.db");
    let health = HealthWatch::new(&server);
    let mut worker = start_durable_worker(&server, &db);
    health.next_beat();
    let lines: Vec<String> = corpus_lines().into_iter().take(200).collect();

    let size = std::fs::metadata(&db).unwrap().len();
    limit_file_size(&worker, &format!("{size}:unlimited"));

    publish_to_stream(&server.url(), &lines);
    let beat = health.beat_where("the store refused a batch", |beat| {
        counter(beat, "store_errors") >= 1
    });
    // Batches that write nothing (no tags) may have gone through before the first failure;
    // once a batch is held, nothing moves until space returns.
    let stuck_at = counter(&beat, "processed");
    assert!(stuck_at < lines.len() as u64);
    for _ in 0..3 {
        let (later, _) = health.next_beat();
        assert_eq!(
            counter(&later, "processed"),
            stuck_at,
            "work went on past a held batch"
        );
    }
    assert!(worker.is_running(), "the worker died on a full disk");
    worker.wait_for_log("holding it, retrying in");

    limit_file_size(&worker, "unlimited:unlimited");
    health.beat_within(PATIENCE * 3, "every event was processed", |beat| {
        counter(beat, "processed") >= lines.len() as u64
    });
    wait_until_drained(&server);
    stop_cleanly(&mut worker);
    assert_converged(&db, &lines, &BTreeMap::new());
}
