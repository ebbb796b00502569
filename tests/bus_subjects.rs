//! The bus wiring in-process: a real `nats-server`, the real `NatsBus`, the real main loop,
//! and a handler that reports what reached it.

#![allow(deprecated)]

mod common;

use std::thread;
use std::time::Duration;

use serde_json::json;

use common::inproc::InProcessWorker;
use common::{NatsServer, PATIENCE, envelope_body, sample_subjects};
use ttp_worker::channels::ShutdownCause;
use ttp_worker::topics::{CONTROL, TOPICS};

fn run_worker(server: &NatsServer) -> InProcessWorker {
    InProcessWorker::start(server, false)
}

fn wait_for_ttp_connection(server: &NatsServer) -> serde_json::Value {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let connections = server.connections_named("ttp");
        // The worker subscribes right after connecting; wait until all are in.
        if let Some(c) = connections.first()
            && c["subscriptions_list"].as_array().map_or(0, Vec::len) == TOPICS.len() + 1
        {
            return c.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no fully subscribed ttp connection"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn every_subject_reaches_the_main_loop_under_its_own_name() {
    let server = NatsServer::start();
    let worker = run_worker(&server);
    wait_for_ttp_connection(&server);

    let publisher = server.client();
    for subject in sample_subjects() {
        // The body claims another topic; the subject it was published on must win.
        let body = envelope_body("ttp.tagged", "probe", json!({ "sent_on": subject }));
        publisher.publish(&subject, body).unwrap();
    }
    publisher.flush().unwrap();

    let mut received = Vec::new();
    for _ in 0..TOPICS.len() {
        let message = worker
            .seen
            .recv_timeout(PATIENCE)
            .expect("a message went missing");
        assert_eq!(
            message.envelope.payload["sent_on"], message.subject,
            "routed by the body's topic instead of the subject"
        );
        assert_eq!(message.envelope.kind, "probe");
        received.push(message.subject);
    }
    received.sort();
    let mut expected = sample_subjects();
    expected.sort();
    assert_eq!(received, expected);

    assert_eq!(worker.stop(), ShutdownCause::Signal("SIGTERM"));
    assert!(
        server.connections_named("ttp").is_empty(),
        "connection still open after shutdown"
    );
}

#[test]
fn the_server_sees_one_connection_named_ttp_with_exactly_our_subscriptions() {
    let server = NatsServer::start();
    let worker = run_worker(&server);
    let connection = wait_for_ttp_connection(&server);
    assert_eq!(server.connections_named("ttp").len(), 1);

    let mut subscriptions: Vec<String> = connection["subscriptions_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect();
    subscriptions.sort();
    let mut expected: Vec<String> = TOPICS
        .iter()
        .chain([&CONTROL])
        .map(|s| s.to_string())
        .collect();
    expected.sort();
    assert_eq!(subscriptions, expected);

    worker.stop();
}

#[test]
fn our_own_announcements_never_come_back_to_us() {
    let server = NatsServer::start();
    let worker = run_worker(&server);
    wait_for_ttp_connection(&server);
    let publisher = server.client();
    for subject in ["ttp.tagged", "ttp.rule.fired.T1105", "system.ttp.health"] {
        publisher
            .publish(subject, envelope_body(subject, "x", json!({})))
            .unwrap();
    }
    // A marker behind them: once it arrives, anything published before it would have, too.
    publisher
        .publish(
            "attacker.observed",
            envelope_body("attacker.observed", "observed", json!({})),
        )
        .unwrap();
    publisher.flush().unwrap();
    let first = worker.seen.recv_timeout(PATIENCE).unwrap();
    assert_eq!(first.subject, "attacker.observed");
    assert!(worker.seen.try_recv().is_err());
    worker.stop();
}
