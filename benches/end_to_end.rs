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
use common::{HealthWatch, NatsServer, Worker, counter, envelope_body, free_port};

/// Events in a throughput run: dev-1k a hundred times over, with distinct ids per copy; long
/// enough (5 s at 20k/s) that the heartbeat's granularity does not bias the rate.
const THROUGHPUT_EVENTS: usize = 100_000;
/// Offered rates tried, lowest first; the highest one the worker keeps up with is reported.
const OFFERED_RATES: [u64; 6] = [5_000, 10_000, 15_000, 20_000, 25_000, 30_000];
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
    // TTP_BENCH_RATES=20000 (comma-separated) runs only those rates, e.g. under a profiler.
    let rates: Vec<u64> = std::env::var("TTP_BENCH_RATES")
        .ok()
        .map(|v| v.split(',').filter_map(|r| r.trim().parse().ok()).collect())
        .unwrap_or_else(|| OFFERED_RATES.to_vec());
    for durable in [false, true] {
        let mode = if durable { "durable" } else { "core" };
        let mut sustained = None;
        for &rate in &rates {
            let run = throughput(&lines, durable, rate);
            println!(
                "{mode:>7}: offered {rate:>6}/s (published at {:>6.0}/s) -> processed {:>6.0}/s, {} tags, {} dropped",
                run.published_per_second, run.processed_per_second, run.tags, run.dropped
            );
            // Kept up: nothing dropped and at least 95 % of the offered rate processed.
            if run.dropped > 0 || run.processed_per_second < 0.95 * rate as f64 {
                break;
            }
            sustained = Some(rate);
        }
        match sustained {
            Some(rate) => println!("{mode:>7}: sustains {rate} events/s"),
            None => println!("{mode:>7}: did not sustain {} events/s", rates[0]),
        }
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
            ("DECNET_TTP_HEARTBEAT_SECS", "0.05"),
            ("RUST_LOG", "warn"),
        ],
    );
    (worker, dir)
}

struct Throughput {
    published_per_second: f64,
    processed_per_second: f64,
    tags: u64,
    dropped: u64,
}

/// Publishes every line at `rate` events/s (bursts once a millisecond) and times the worker
/// until it has processed them all.
fn throughput(lines: &[String], durable: bool, rate: u64) -> Throughput {
    let server = NatsServer::start_on(free_port(), durable);
    let health = HealthWatch::new(&server);
    let (_worker, _dir) = start_worker(&server, durable, &[]);
    health.next_beat();
    let client = server.client();
    let per_tick = (rate / 1000).max(1) as usize;
    let started = Instant::now();
    for (tick, chunk) in lines.chunks(per_tick).enumerate() {
        pace(started + Duration::from_millis(tick as u64));
        for line in chunk {
            client.publish(&subject_of(line), line).unwrap();
        }
    }
    client.flush().unwrap();
    let published = Instant::now();
    let total = lines.len() as u64;
    let beat = health.beat_within(Duration::from_secs(300), "all events processed", |beat| {
        counter(beat, "processed") + counter(beat, "client_dropped") >= total
    });
    // The beat was sent up to one heartbeat interval after the last event was handled.
    let done = Instant::now() - Duration::from_millis(25);
    Throughput {
        published_per_second: total as f64 / (published - started).as_secs_f64(),
        processed_per_second: counter(&beat, "processed") as f64 / (done - started).as_secs_f64(),
        tags: counter(&beat, "tags_inserted"),
        dropped: counter(&beat, "client_dropped"),
    }
}

/// Sleeps until `due`; a spinning publisher would take a core from the worker it measures.
fn pace(due: Instant) {
    let now = Instant::now();
    if due > now {
        thread::sleep(due - now);
    }
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
    let server = NatsServer::start_on(free_port(), durable);
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
        pace(start + interval * n as u32);
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
