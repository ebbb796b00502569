//! Durable mode against a real `nats-server -js`: what the core mode would lose is delivered.

#![allow(deprecated)]

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::json;

use common::inproc::InProcessWorker;
use common::{HealthWatch, NatsServer, PATIENCE, Worker, counter, envelope_body, sample_subjects};

fn publish_numbered(server: &NatsServer, subjects: &[String], count: usize) {
    let client = server.client();
    for n in 0..count {
        let subject = &subjects[n % subjects.len()];
        client
            .publish(subject, envelope_body(subject, "test", json!({ "n": n })))
            .unwrap();
    }
    client.flush().unwrap();
}

fn numbers_seen(worker: &InProcessWorker, expected: usize) -> BTreeSet<u64> {
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + PATIENCE;
    while seen.len() < expected {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let Ok(message) = worker.seen.recv_timeout(remaining) else {
            panic!("only {} of {expected} messages arrived", seen.len());
        };
        seen.insert(message.envelope.payload["n"].as_u64().unwrap());
    }
    seen
}

#[test]
fn events_published_while_the_worker_is_stopped_arrive_when_it_starts() {
    let server = NatsServer::start_jetstream();
    // First start creates the stream and the consumers, then the worker goes away.
    InProcessWorker::start(&server, true);
    wait_for_stream(&server);

    let subjects = sample_subjects();
    publish_numbered(&server, &subjects, 90);

    let worker = InProcessWorker::start(&server, true);
    let seen = numbers_seen(&worker, 90);
    assert_eq!(seen, (0..90).collect());
    worker.stop();
}

fn wait_for_stream(server: &NatsServer) {
    let deadline = Instant::now() + PATIENCE;
    while server.monitor("/jsz?consumers=true")["consumers"].as_u64() != Some(9) {
        assert!(
            Instant::now() < deadline,
            "the worker never created its nine consumers"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_batch_the_handler_cannot_finish_is_retried_and_handed_back_not_lost() {
    let server = NatsServer::start_jetstream();
    InProcessWorker::start(&server, true);
    wait_for_stream(&server);
    publish_numbered(&server, &["email.received".to_owned()], 5);

    // A worker whose store "cannot be written": it holds the batch and retries on ticks.
    let failing = InProcessWorker::start_with(&server, true, true);
    std::thread::sleep(Duration::from_millis(500));
    assert!(failing.seen.try_recv().is_err());
    // Stopping hands the batch back; the next worker gets it at once.
    failing.stop();

    let worker = InProcessWorker::start(&server, true);
    assert_eq!(numbers_seen(&worker, 5), (0..5).collect());

    // The condition clears in place, too: fail, then recover without a restart.
    worker.failing.store(true, Ordering::SeqCst);
    publish_numbered(&server, &["canary.x.triggered".to_owned()], 3);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        worker.seen.try_recv().is_err(),
        "a failed batch reached the handler's output"
    );
    worker.failing.store(false, Ordering::SeqCst);
    assert_eq!(numbers_seen(&worker, 3), (0..3).collect());
    worker.stop();
}

#[test]
fn malformed_messages_are_acked_once_and_never_redelivered() {
    let server = NatsServer::start_jetstream();
    let worker = InProcessWorker::start(&server, true);
    wait_for_stream(&server);
    let client = server.client();
    client.publish("attacker.observed", b"{not json").unwrap();
    client
        .publish("attacker.observed", br#"{"payload":[1]}"#)
        .unwrap();
    publish_numbered(&server, &["attacker.observed".to_owned()], 1);
    assert_eq!(numbers_seen(&worker, 1), BTreeSet::from([0]));
    assert_eq!(
        ttp_worker::counters::Counters::get(&worker.counters.malformed),
        2
    );
    worker.stop();

    // Nothing is pending on the consumer: a fresh worker gets nothing.
    let again = InProcessWorker::start(&server, true);
    assert!(again.seen.recv_timeout(Duration::from_secs(1)).is_err());
    assert_eq!(
        ttp_worker::counters::Counters::get(&again.counters.received),
        0
    );
    again.stop();
}

#[test]
fn the_daemon_in_durable_mode_beats_with_mode_durable_and_stops_promptly() {
    let server = NatsServer::start_jetstream();
    let health = HealthWatch::new(&server);
    let mut worker = Worker::start(
        &["--durable", "--heartbeat-interval", "0.2"],
        &[("DECNET_BUS_URL", &server.url())],
    );
    let (beat, _) = health.next_beat();
    assert_eq!(beat["mode"], "durable");
    publish_numbered(&server, &sample_subjects(), 18);
    health.beat_where("18 messages processed", |beat| {
        counter(beat, "processed") == 18
    });
    worker.signal("TERM");
    let started = Instant::now();
    let status = worker
        .wait_exit(Duration::from_secs(2))
        .expect("durable worker still running 2 s after SIGTERM");
    assert!(status.success());
    eprintln!("durable SIGTERM: exited in {:?}", started.elapsed());
}
