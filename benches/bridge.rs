//! Bridge benchmark: a fake DECNET broker on a UNIX socket → `ttp-worker bridge` (release) →
//! nats-server → a subscriber, all on this machine.
//!
//! Run with `make bench-bridge` (or `cargo bench --bench bridge`). Prints the relay's
//! throughput DECNET → NATS in core and durable mode (frames written as fast as the socket
//! takes them, timed until the subscriber or the stream has them all), and the latency the
//! bridge adds at 1,000 events/s offered (p50, p99, max; the fake broker stamps each event as
//! it writes it). The fake broker stands in for DECNET's (asyncio, Python), which would
//! otherwise be what is measured. Nothing here asserts a number.

#![allow(deprecated)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use common::{NatsServer, Worker};

const THROUGHPUT_EVENTS: usize = 100_000;
const LATENCY_RATE: u64 = 1_000;
const LATENCY_EVENTS: usize = 10_000;

fn main() {
    println!("ttp-worker bridge, DECNET -> NATS (2 cores)");
    for durable in [false, true] {
        let mode = if durable { "durable" } else { "core" };
        let rate = throughput(durable);
        println!("{mode:>8}: relayed {THROUGHPUT_EVENTS} events at {rate:.0} events/s");
    }
    let (p50, p99, max) = latency(true);
    println!(
        "    core: at {LATENCY_RATE}/s, socket -> bridge -> NATS -> subscriber: p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms"
    );
    let (p50, p99, max) = latency(false);
    println!(
        "    core: at {LATENCY_RATE}/s, NATS -> subscriber alone (baseline): p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms"
    );
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// One EVT frame of about 400 bytes, as DECNET's broker writes it.
fn frame(seq: usize, sent: f64) -> Vec<u8> {
    let body = serde_json::to_vec(&json!({
        "v": 1, "id": format!("{seq:032x}"), "topic": "attacker.observed", "type": "observed",
        "ts": sent, "payload": {"attacker_ip": "198.51.100.7", "seq": seq, "sent": sent,
        "service": "ssh", "padding": "x".repeat(200)}
    }))
    .unwrap();
    let mut out = b"EVT attacker.observed\n".to_vec();
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Listens on `socket`, accepts the bridge and reads its greeting.
fn accept(listener: &UnixListener) -> UnixStream {
    let (stream, _) = listener.accept().unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    for _ in 0..1 + ttp_worker::topics::FROM_DECNET.len() {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let mut length = [0u8; 4];
        reader.read_exact(&mut length).unwrap();
    }
    // Whatever the bridge writes later (its beats) is read and dropped.
    thread::spawn(move || {
        let mut sink = [0u8; 65536];
        while reader.read(&mut sink).is_ok_and(|n| n > 0) {}
    });
    stream
}

fn bridge(socket: &Path, server: &NatsServer, durable: bool) -> Worker {
    let url = server.url();
    let mut args = vec![
        "bridge",
        "--socket",
        socket.to_str().unwrap(),
        "--bus-url",
        &url,
    ];
    if durable {
        args.push("--durable");
    }
    args.extend(["--queue", "200000"]);
    Worker::start(&args, &[("RUST_LOG", "warn")])
}

fn throughput(durable: bool) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("bus.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let server = if durable {
        NatsServer::start_jetstream()
    } else {
        NatsServer::start()
    };
    let client = server.client();
    let subscription = client.subscribe("attacker.observed").unwrap();
    subscription.set_message_limits(THROUGHPUT_EVENTS * 2);
    client.flush().unwrap();
    let _bridge = bridge(&socket, &server, durable);
    let mut stream = accept(&listener);
    let frames: Vec<Vec<u8>> = (0..THROUGHPUT_EVENTS).map(|i| frame(i, 0.0)).collect();
    // The NATS connection comes after the socket's: wait until an event gets through.
    stream.write_all(&frame(usize::MAX, 0.0)).unwrap();
    subscription
        .next_timeout(Duration::from_secs(30))
        .expect("the bridge relays");
    let started = Instant::now();
    for f in &frames {
        stream.write_all(f).unwrap();
    }
    for _ in 0..THROUGHPUT_EVENTS {
        subscription
            .next_timeout(Duration::from_secs(60))
            .expect("every event relayed");
    }
    if durable {
        // Done when the stream has them all, each acknowledged to the bridge.
        let js = nats::jetstream::new(client.clone());
        let wanted = THROUGHPUT_EVENTS as u64 + 1;
        while js
            .stream_info("DECNET_TTP_IN")
            .map_or(0, |info| info.state.messages)
            < wanted
        {
            thread::sleep(Duration::from_millis(5));
        }
    }
    THROUGHPUT_EVENTS as f64 / started.elapsed().as_secs_f64()
}

/// Publish-to-receipt delays at [`LATENCY_RATE`], through the bridge or, for the baseline,
/// published straight on NATS by a client of the benchmark's own.
fn latency(through_bridge: bool) -> (f64, f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("bus.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let server = NatsServer::start();
    let client = server.client();
    let subscription = client.subscribe("attacker.observed").unwrap();
    client.flush().unwrap();
    let _bridge = bridge(&socket, &server, false);
    let mut stream = accept(&listener);
    stream.write_all(&frame(usize::MAX, now())).unwrap();
    subscription
        .next_timeout(Duration::from_secs(30))
        .expect("the bridge relays");
    let publisher = server.client();
    let receiver = thread::spawn(move || {
        let mut delays = Vec::with_capacity(LATENCY_EVENTS);
        for _ in 0..LATENCY_EVENTS {
            let message = subscription.next_timeout(Duration::from_secs(30)).unwrap();
            let received = now();
            let envelope: Value = serde_json::from_slice(&message.data).unwrap();
            delays.push((received - envelope["payload"]["sent"].as_f64().unwrap()) * 1000.0);
        }
        delays
    });
    let started = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / LATENCY_RATE as f64);
    for i in 0..LATENCY_EVENTS {
        let due = started + interval * i as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        let bytes = frame(i, now());
        if through_bridge {
            stream.write_all(&bytes).unwrap();
        } else {
            // The frame's body: header line and length cut off.
            let body = &bytes[bytes.iter().position(|b| *b == b'\n').unwrap() + 5..];
            publisher.publish("attacker.observed", body).unwrap();
        }
    }
    let mut delays = receiver.join().unwrap();
    delays.sort_by(f64::total_cmp);
    let at = |q: f64| delays[((delays.len() as f64 * q) as usize).min(delays.len() - 1)];
    (at(0.50), at(0.99), delays[delays.len() - 1])
}
