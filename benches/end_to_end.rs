//! End-to-end benchmark: publisher → nats-server → ttp-worker (release) → SQLite commit →
//! `ttp.tagged` received by a subscriber, all on this machine.
//!
//! Run with `make bench-e2e` (or `cargo bench --bench end_to_end`). Prints, for core and
//! durable mode, the sustained throughput on the reference corpus mix, and the latency from
//! publish to `ttp.tagged` at 1,000 events/s offered. Nothing here asserts a number: the
//! figures are for the README, measured, not for CI to gamble on.

#![allow(deprecated)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::corpus::{corpus_lines, distinct_copies, reference_args, subject_of};
use common::{HealthWatch, NatsServer, Worker, counter, envelope_body};

/// Events in a throughput run: dev-1k forty times over, with distinct ids per copy.
const THROUGHPUT_EVENTS: usize = 40_000;
/// Offered rate and length of the latency run.
const LATENCY_RATE: u64 = 1_000;
const LATENCY_SECONDS: u64 = 10;

fn main() {
    let lines = distinct_copies(&corpus_lines(), THROUGHPUT_EVENTS / 1000);
    println!("ttp-worker end-to-end benchmark ({} cores)", cores());
    println!(
        "corpus: dev-1k x{} with distinct ids = {} events, reference rule pack",
        THROUGHPUT_EVENTS / 1000,
        lines.len()
    );
    for durable in [false, true] {
        let mode = if durable { "durable" } else { "core" };
        let (rate, tags, dropped) = throughput(&lines, durable);
        println!(
            "{mode:>7}: {rate:>8.0} events/s sustained ({tags} tags committed{})",
            if dropped > 0 {
                format!(", {dropped} dropped by the client")
            } else {
                String::new()
            }
        );
        let latency = latency(durable);
        println!(
            "{mode:>7}: publish -> ttp.tagged at {LATENCY_RATE}/s: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} samples)",
            latency.p50, latency.p99, latency.max, latency.samples
        );
    }
}

fn cores() -> usize {
    thread::available_parallelism().map_or(1, |n| n.get())
}

fn start_worker(server: &NatsServer, durable: bool, extra: &[&str]) -> (Worker, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut args: Vec<String> = reference_args();
    if durable {
        args.push("--durable".into());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let db = dir.path().join("ttp.db");
    let worker = Worker::start(
        &args,
        &[
            ("DECNET_BUS_URL", &server.url()),
            ("DECNET_TTP_DB", db.to_str().unwrap()),
            ("DECNET_TTP_HEARTBEAT_SECS", "0.1"),
            ("RUST_LOG", "warn"),
        ],
    );
    (worker, dir)
}

/// Publishes every line as fast as one publisher can and times the worker until it has
/// processed them all. Returns events/s, tags inserted, and messages the client dropped.
fn throughput(lines: &[String], durable: bool) -> (f64, u64, u64) {
    let server = if durable {
        NatsServer::start_jetstream()
    } else {
        NatsServer::start()
    };
    let health = HealthWatch::new(&server);
    let (_worker, _dir) = start_worker(&server, durable, &[]);
    health.next_beat();
    let client = server.client();
    let started = Instant::now();
    for line in lines {
        client.publish(&subject_of(line), line).unwrap();
    }
    client.flush().unwrap();
    let total = lines.len() as u64;
    let beat = health.beat_within(Duration::from_secs(300), "all events processed", |beat| {
        counter(beat, "processed") + counter(beat, "client_dropped") >= total
    });
    let seconds = started.elapsed().as_secs_f64();
    (
        counter(&beat, "processed") as f64 / seconds,
        counter(&beat, "tags_inserted"),
        counter(&beat, "client_dropped"),
    )
}

struct Latency {
    p50: f64,
    p99: f64,
    max: f64,
    samples: usize,
}

/// Offers one new session a millisecond, each with a command the reference pack tags, and
/// measures publish → `ttp.tagged` by the session id the announcement carries.
fn latency(durable: bool) -> Latency {
    let server = if durable {
        NatsServer::start_jetstream()
    } else {
        NatsServer::start()
    };
    let health = HealthWatch::new(&server);
    let (_worker, _dir) = start_worker(&server, durable, &[]);
    health.next_beat();

    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let listener = server.client();
    let tagged = listener.subscribe("ttp.tagged").unwrap();
    listener.flush().unwrap();
    let received = {
        let sent = sent.clone();
        thread::spawn(move || {
            let mut latencies = Vec::new();
            while let Ok(message) = tagged.next_timeout(Duration::from_secs(3)) {
                let arrived = Instant::now();
                let envelope: Value = serde_json::from_slice(&message.data).unwrap();
                let session = envelope["payload"]["session_id"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned();
                if let Some(at) = sent.lock().unwrap().get(&session) {
                    latencies.push((arrived - *at).as_secs_f64() * 1000.0);
                }
            }
            latencies
        })
    };

    let publisher = server.client();
    let interval = Duration::from_nanos(1_000_000_000 / LATENCY_RATE);
    let start = Instant::now();
    for n in 0..LATENCY_RATE * LATENCY_SECONDS {
        let due = start + interval * n as u32;
        while Instant::now() < due {
            std::hint::spin_loop();
        }
        let session = format!("1a7e0000-0000-4000-8000-{n:012}");
        let body = envelope_body(
            "attacker.session.ended",
            "session.ended",
            json!({
                "session_id": session, "attacker_uuid": null,
                "attacker_ip": format!("198.18.{}.{}", (n / 250) % 250, n % 250 + 1),
                "decky_id": "bench-decky", "service": "ssh", "ended_at": "2026-05-02T06:23:30",
                "duration_s": 3.0,
                "commands": [{"id": format!("{session}#0"), "command_text": "uname -a",
                              "ts": "2026-05-02T06:23:29", "decky": "bench-decky",
                              "service": "bash"}],
            }),
        );
        sent.lock().unwrap().insert(session, Instant::now());
        publisher.publish("attacker.session.ended", body).unwrap();
        // Put it on the wire now: the publisher's own 5 ms write coalescing is not ours.
        publisher.flush().unwrap();
    }
    publisher.flush().unwrap();
    let mut latencies = received.join().unwrap();
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    Latency {
        p50: at(0.50),
        p99: at(0.99),
        max: *latencies.last().unwrap(),
        samples: latencies.len(),
    }
}
