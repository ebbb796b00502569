//! `ttp-worker bridge` between DECNET's own socket bus (DECNET 1.0.0's broker and client from
//! PyPI) and a real nats-server, with the real worker behind it.

#![allow(deprecated)] // the sync nats client, see src/bus/mod.rs

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use common::corpus::corpus_lines;
use common::decnet_bus::{Broker, Subscriber, flood, publish};
use common::{HealthWatch, NatsServer, PATIENCE, Worker, counter, free_port, peak_rss_kib};

/// The bridge on `socket` and `bus_url`, beating every 0.2 s.
fn start_bridge(socket: &Path, bus_url: &str, args: &[&str]) -> Worker {
    let socket = socket.to_str().unwrap();
    let mut all = vec!["bridge", "--socket", socket, "--bus-url", bus_url];
    all.extend_from_slice(args);
    Worker::start(&all, &[("DECNET_TTP_HEARTBEAT_SECS", "0.2")])
}

/// The bridge's beats on NATS.
struct BridgeBeats {
    subscription: nats::Subscription,
    _client: nats::Connection,
}

impl BridgeBeats {
    fn new(server: &NatsServer) -> BridgeBeats {
        let client = server.client();
        let subscription = client.subscribe("system.ttp-bridge.health").unwrap();
        client.flush().unwrap();
        BridgeBeats {
            subscription,
            _client: client,
        }
    }

    fn beat_where(
        &self,
        what: &str,
        accept: impl Fn(&Map<String, Value>) -> bool,
    ) -> Map<String, Value> {
        let deadline = Instant::now() + PATIENCE * 3;
        loop {
            assert!(
                Instant::now() < deadline,
                "no bridge heartbeat where {what}"
            );
            let Ok(message) = self.subscription.next_timeout(PATIENCE) else {
                continue;
            };
            let envelope: Value = serde_json::from_slice(&message.data).unwrap();
            let beat = envelope["payload"].as_object().cloned().unwrap();
            if accept(&beat) {
                return beat;
            }
        }
    }
}

/// The first `n` corpus envelopes as DECNET's client publishes them.
fn corpus_events(n: usize) -> Vec<Value> {
    corpus_lines()
        .iter()
        .take(n)
        .map(|line| {
            let envelope: Value = serde_json::from_str(line).unwrap();
            json!({"topic": envelope["topic"], "type": envelope["type"], "payload": envelope["payload"]})
        })
        .collect()
}

#[test]
fn decnet_events_are_tagged_and_the_tags_reach_decnets_own_subscribers() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("bus.sock");
    let _broker = Broker::start(&socket);
    let server = NatsServer::start();
    let health = HealthWatch::new(&server);
    let client = server.client();
    let relayed = client.subscribe("attacker.session.ended").unwrap();
    client.flush().unwrap();
    let bridge = start_bridge(&socket, &server.url(), &[]);
    bridge.wait_for_log("relaying 10 patterns");
    let url = server.url();
    let _worker = Worker::start(
        &[],
        &[
            ("DECNET_BUS_URL", &url),
            ("DECNET_TTP_HEARTBEAT_SECS", "0.2"),
        ],
    );
    health.next_beat();
    let tagged = Subscriber::start(&socket, "ttp.tagged");
    let registry = Subscriber::start(&socket, "system.*.health");

    let events = corpus_events(200);
    publish(&socket, &events);

    // On NATS, each event as DECNET delivered it: its subject, type and payload unchanged.
    let sessions: Vec<&Value> = events
        .iter()
        .filter(|e| e["topic"] == "attacker.session.ended")
        .collect();
    for sent in &sessions {
        let message = relayed.next_timeout(PATIENCE).expect("a session on NATS");
        assert_eq!(message.subject, "attacker.session.ended");
        let envelope: Value = serde_json::from_slice(&message.data).unwrap();
        assert_eq!(envelope["type"], sent["type"]);
        assert_eq!(envelope["payload"], sent["payload"]);
        assert_eq!(
            envelope["id"].as_str().map(str::len),
            Some(32),
            "DECNET's own id"
        );
    }

    // The worker tagged every event, and its announcements reached DECNET's own subscriber.
    let beat = health.beat_where("all 200 events processed", |b| {
        counter(b, "processed") >= 200
    });
    assert_eq!(counter(&beat, "processed"), 200);
    let inserted = counter(&beat, "tags_inserted");
    assert!(inserted > 100, "the corpus gives tags: {inserted}");
    let announced = |events: &[Value]| -> u64 {
        events
            .iter()
            .map(|e| e["payload"]["tag_uuids"].as_array().map_or(0, Vec::len) as u64)
            .sum()
    };
    let seen = tagged.wait_for("every new tag announced", |e| announced(e) >= inserted);
    assert_eq!(announced(&seen), inserted);
    assert!(
        seen.iter()
            .all(|e| e["topic"] == "ttp.tagged" && e["type"] == "tagged")
    );

    // DECNET's dashboard pattern hears the worker and the bridge.
    registry.wait_for("the worker's and the bridge's beats", |e| {
        e.iter()
            .any(|e| e["topic"] == "system.ttp.health" && e["payload"]["worker"] == "ttp")
            && e.iter().any(|e| {
                e["topic"] == "system.ttp-bridge.health" && e["payload"]["worker"] == "ttp-bridge"
            })
    });
}

/// Messages in the durable stream.
fn stream_messages(client: &nats::Connection) -> u64 {
    nats::jetstream::new(client.clone())
        .stream_info("DECNET_TTP_IN")
        .map_or(0, |info| info.state.messages)
}

fn wait_for_stream(server: &NatsServer, n: u64) {
    let deadline = Instant::now() + PATIENCE * 3;
    loop {
        let client = server.client();
        let held = stream_messages(&client);
        if held >= n {
            assert_eq!(held, n, "the stream holds each event once");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the stream holds {held} of {n} events"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn observed(from: usize, n: usize) -> Vec<Value> {
    (from..from + n)
        .map(|i| {
            json!({"topic": "attacker.observed", "type": "observed",
                   "payload": {"attacker_ip": format!("198.51.100.{}", i % 250), "seq": i}})
        })
        .collect()
}

#[test]
fn both_sides_come_back_and_durable_mode_loses_nothing_the_bridge_received() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("bus.sock");
    let mut broker = Broker::start(&socket);
    let mut server = NatsServer::start_jetstream();
    let bridge = start_bridge(&socket, &server.url(), &["--durable"]);
    bridge.wait_for_log("relaying 10 patterns");

    publish(&socket, &observed(0, 100));
    wait_for_stream(&server, 100);

    // DECNET's broker crashes and comes back: the bridge subscribes again by itself.
    broker.restart();
    let deadline = Instant::now() + PATIENCE;
    while bridge
        .log_text()
        .matches("connected to DECNET's bus")
        .count()
        < 2
    {
        assert!(
            Instant::now() < deadline,
            "the bridge did not come back:\n{}",
            bridge.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    publish(&socket, &observed(100, 100));
    wait_for_stream(&server, 200);

    // NATS goes away for longer than a publish waits for its acknowledgement: what DECNET
    // delivers meanwhile is held, and published again until the stream has it. The client's
    // reconnect buffer may deliver a first attempt too; the stream keeps one copy.
    server.kill();
    publish(&socket, &observed(200, 100));
    std::thread::sleep(Duration::from_secs(3));
    server.restart();
    wait_for_stream(&server, 300);
    let beats = BridgeBeats::new(&server);
    let beat = beats.beat_where("everything published", |b| counter(b, "to_nats") == 300);
    assert_eq!(counter(&beat, "from_decnet"), 300);
    assert_eq!(counter(&beat, "dropped_to_nats"), 0);
    assert!(
        counter(&beat, "nats_retries") > 0,
        "the outage was felt: {beat:?}"
    );
    assert_eq!(counter(&beat, "decnet_reconnects"), 1);
    // The stream de-duplicates on DECNET's envelope id: each event once, after retries.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(stream_messages(&server.client()), 300);
}

/// A fake broker: accepts the bridge, reads its greeting, then says what the test wants.
struct FakeBroker {
    listener: UnixListener,
}

impl FakeBroker {
    /// Accepts the next connection and reads HELLO and the ten SUBs.
    fn accept(&self) -> UnixStream {
        let (stream, _) = self.listener.accept().unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        for expected in std::iter::once("HELLO ttp-bridge".to_owned()).chain(
            ttp_worker::topics::FROM_DECNET
                .iter()
                .map(|p| format!("SUB {p}")),
        ) {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            assert_eq!(line.trim_end(), expected);
            let mut length = [0u8; 4];
            reader.read_exact(&mut length).unwrap();
            assert_eq!(length, [0; 4]);
        }
        stream
    }
}

fn evt(topic: &str, body: &[u8]) -> Vec<u8> {
    let mut frame = format!("EVT {topic}\n").into_bytes();
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(body);
    frame
}

#[test]
fn hostile_frames_are_counted_by_kind_and_the_bridge_connects_again() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("bus.sock");
    let fake = FakeBroker {
        listener: UnixListener::bind(&socket).unwrap(),
    };
    let server = NatsServer::start();
    let client = server.client();
    let relayed = client.subscribe("attacker.observed").unwrap();
    client.flush().unwrap();
    let beats = BridgeBeats::new(&server);
    let bridge = start_bridge(&socket, &server.url(), &[]);

    let good = br#"{"v":1,"id":"00112233445566778899aabbccddeeff","topic":"attacker.observed","type":"observed","ts":1.5,"payload":{"attacker_ip":"198.51.100.9"}}"#;
    let mut long_header = b"EVT ".to_vec();
    long_header.resize(5000, b'a');
    let hostile: Vec<(&str, Vec<u8>)> = vec![
        ("oversized", long_header),
        (
            "oversized",
            b"EVT attacker.observed\n\x7f\xff\xff\xff".to_vec(),
        ),
        (
            "not_ascii",
            "EVT attacker.observ\u{e9}d\n\0\0\0\0".as_bytes().to_vec(),
        ),
        ("not_json", evt("attacker.observed", b"{not json")),
        ("not_json", evt("attacker.observed", b"[1,2,3]")),
        ("bad_header", evt("ttp.tagged", good)),
        ("bad_header", b"HELO x\n\0\0\0\0".to_vec()),
        ("truncated", evt("attacker.observed", good)[..40].to_vec()),
    ];
    for (kind, bytes) in &hostile {
        let mut stream = fake.accept();
        // A good event first: it goes through, the bad frame after it ends the connection.
        stream.write_all(&evt("attacker.observed", good)).unwrap();
        stream.write_all(bytes).unwrap();
        drop(stream);
        let message = relayed
            .next_timeout(PATIENCE)
            .unwrap_or_else(|_| panic!("{kind}"));
        assert_eq!(message.data, good.to_vec(), "relayed unchanged");
    }
    // And it is still there for the next connection.
    let mut stream = fake.accept();
    stream.write_all(&evt("attacker.observed", good)).unwrap();
    relayed
        .next_timeout(PATIENCE)
        .expect("relayed after the hostile frames");

    let beat = beats.beat_where("every refusal counted", |b| {
        counter(b, "from_decnet") == hostile.len() as u64 + 1
    });
    let refused = beat["refused"].as_object().unwrap();
    for kind in [
        "oversized",
        "not_ascii",
        "not_json",
        "bad_header",
        "truncated",
    ] {
        let expected = hostile.iter().filter(|(k, _)| *k == kind).count() as u64;
        assert_eq!(refused[kind], expected, "{kind}: {beat:?}");
        // Logged once per kind, however often it came.
        let logged = bridge
            .log_text()
            .lines()
            .filter(|l| l.contains(&format!("further {kind} ")))
            .count();
        assert_eq!(logged, 1, "{kind} logged once:\n{}", bridge.log_text());
    }
    assert_eq!(counter(&beat, "decnet_reconnects"), hostile.len() as u64);
}

#[test]
fn a_flood_while_nats_is_down_keeps_memory_bounded_and_counts_what_it_drops() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("bus.sock");
    let _broker = Broker::start(&socket);
    let port = free_port();
    let bridge = start_bridge(
        &socket,
        &format!("nats://127.0.0.1:{port}"),
        &["--queue", "1000"],
    );
    bridge.wait_for_log("connected to DECNET's bus");
    // 40,000 events of 2 kB: 80 MB, were they all kept.
    flood(&socket, 40_000);
    let peak = peak_rss_kib(bridge.pid());
    assert!(peak < 40 * 1024, "the bridge peaked at {peak} KiB");

    let server = NatsServer::start_on(port, false);
    let beats = BridgeBeats::new(&server);
    let beat = beats.beat_where("the queue drained", |b| counter(b, "queued_to_nats") == 0);
    let (from, to, dropped) = (
        counter(&beat, "from_decnet"),
        counter(&beat, "to_nats"),
        counter(&beat, "dropped_to_nats"),
    );
    assert!(dropped > 0, "a full queue dropped: {beat:?}");
    assert_eq!(
        from,
        to + dropped,
        "every event published or counted as dropped"
    );
    assert!(
        to <= 1001,
        "no more than the queue and the one in hand: {to}"
    );
}

#[test]
fn an_existing_stream_is_published_into_without_being_asked() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("bus.sock");
    let _broker = Broker::start(&socket);
    let server = NatsServer::start_jetstream();
    // As a durable worker leaves it: the stream of its TOPICS.
    nats::jetstream::new(server.client())
        .add_stream(nats::jetstream::StreamConfig {
            name: "DECNET_TTP_IN".into(),
            subjects: ttp_worker::topics::TOPICS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            ..Default::default()
        })
        .unwrap();
    let beats = BridgeBeats::new(&server);
    let bridge = start_bridge(&socket, &server.url(), &[]);
    bridge.wait_for_log("exists: publishing DECNET's events into it");
    publish(&socket, &observed(0, 20));
    wait_for_stream(&server, 20);
    let beat = beats.beat_where("all acknowledged", |b| counter(b, "to_nats") == 20);
    assert_eq!(beat["mode"], "durable");
}
