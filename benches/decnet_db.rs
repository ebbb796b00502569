//! End to end into DECNET's own database: publisher → nats-server → ttp-worker (release) →
//! DECNET's SQLite file, all on this machine. `make bench-decnet` (or `cargo bench --bench
//! decnet_db`).
//!
//! DECNET's own code (from PyPI, in the test harness's venv) creates the schema and seeds the
//! dev-1k world; the corpus is dev-1k repeated with distinct ids per copy, and every attacker
//! and identity row is copied under each copy's ids, so that the copies' tags can go into
//! DECNET's table instead of waiting for rows. Prints, per offered rate, what the worker
//! processed; nothing is asserted.

#![allow(deprecated)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::corpus::{corpus_lines, distinct_copies, reference_args, subject_of};
use common::decnet::Decnet;
use common::{HealthWatch, NatsServer, Worker, counter, free_port};

const COPIES: usize = 50;
const OFFERED_RATES: [u64; 5] = [5_000, 10_000, 15_000, 20_000, 25_000];

fn main() {
    let lines = distinct_copies(&corpus_lines(), COPIES);
    println!(
        "ttp-worker into DECNET's SQLite database ({} cores): dev-1k x{COPIES} with distinct ids = {} events",
        thread::available_parallelism().map_or(1, |n| n.get()),
        lines.len()
    );
    let rates: Vec<u64> = std::env::var("TTP_BENCH_RATES")
        .ok()
        .map(|v| v.split(',').filter_map(|r| r.trim().parse().ok()).collect())
        .unwrap_or_else(|| OFFERED_RATES.to_vec());
    let template = tempfile::tempdir().unwrap();
    let seeded = seeded_database(template.path());
    for durable in [false, true] {
        let mode = if durable { "durable" } else { "core" };
        let mut sustained = None;
        for &rate in &rates {
            let dir = tempfile::tempdir().unwrap();
            let db = dir.path().join("decnet.db");
            std::fs::copy(&seeded, &db).unwrap();
            let (published, processed, rows, held) = throughput(&lines, &db, durable, rate);
            println!(
                "{mode:>7}: offered {rate:>6}/s (published at {published:>6.0}/s) -> processed {processed:>6.0}/s, {rows} rows in DECNET's ttp_tag, {held} messages held"
            );
            // Kept up: at least 95 % of what was really offered.
            if processed < 0.95 * published.min(rate as f64) {
                break;
            }
            sustained = Some(rate);
        }
        match sustained {
            Some(rate) => println!("{mode:>7}: sustains {rate} events/s"),
            None => println!("{mode:>7}: did not sustain {} events/s", rates[0]),
        }
    }
}

/// DECNET's schema and the dev-1k world, made by DECNET's code, plus copies of every attacker
/// and identity row under the ids `distinct_copies` gives each copy (their addresses made
/// unique, since an address with two rows resolves to nobody).
fn seeded_database(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("decnet.db");
    let text = path.display().to_string();
    let decnet = Decnet::get();
    decnet.create(&text);
    decnet.seed_dev_1k(&text);
    let conn = rusqlite::Connection::open(&path).unwrap();
    for table in ["attackers", "attacker_identities"] {
        let columns: Vec<String> = conn
            .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let select: Vec<String> = columns
            .iter()
            .map(|c| match c.as_str() {
                "uuid" => "substr(uuid, 1, 32) || printf('%04x', ?1)".to_owned(),
                "ip" => "ip || '.copy' || ?1".to_owned(),
                other => other.to_owned(),
            })
            .collect();
        let sql = format!(
            "INSERT INTO {table} ({}) SELECT {} FROM originals WHERE length(uuid) = 36",
            columns.join(", "),
            select.join(", ")
        );
        conn.execute_batch(&format!(
            "DROP TABLE IF EXISTS temp.originals; CREATE TEMP TABLE originals AS SELECT * FROM {table}"
        ))
        .unwrap();
        let tx = conn.unchecked_transaction().unwrap();
        {
            let mut insert = tx.prepare(&sql).unwrap();
            for copy in 1..COPIES {
                insert.execute([copy as i64]).unwrap();
            }
        }
        tx.commit().unwrap();
    }
    path
}

/// Publishes every line at `rate` events/s and times the worker until it has processed them
/// all: published/s, processed/s, rows in DECNET's table, messages held.
fn throughput(
    lines: &[String],
    db: &std::path::Path,
    durable: bool,
    rate: u64,
) -> (f64, f64, i64, u64) {
    let server = NatsServer::start_on(free_port(), durable);
    let health = HealthWatch::new(&server);
    let state = tempfile::tempdir().unwrap();
    let mut args: Vec<String> = reference_args();
    if durable {
        args.push("--durable".into());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let _worker = Worker::start(
        &args,
        &[
            ("DECNET_BUS_URL", &server.url()),
            ("DECNET_DB_PATH", db.to_str().unwrap()),
            (
                "DECNET_TTP_DB",
                state.path().join("ttp.db").to_str().unwrap(),
            ),
            ("DECNET_TTP_HEARTBEAT_SECS", "0.05"),
            ("RUST_LOG", "warn"),
        ],
    );
    health.next_beat();
    let client = server.client();
    // Once a millisecond, as many as the rate allows by then (no rounding of the rate).
    let started = Instant::now();
    let mut sent = 0usize;
    for tick in 1u64.. {
        let due = started + Duration::from_millis(tick);
        let now = Instant::now();
        if due > now {
            thread::sleep(due - now);
        }
        let until = ((rate * tick / 1000) as usize).min(lines.len());
        for line in &lines[sent..until] {
            client.publish(&subject_of(line), line).unwrap();
        }
        sent = until;
        if sent == lines.len() {
            break;
        }
    }
    client.flush().unwrap();
    let published = started.elapsed().as_secs_f64();
    let total = lines.len() as u64;
    let beat = health.beat_within(Duration::from_secs(600), "all events processed", |beat| {
        counter(beat, "processed") + counter(beat, "client_dropped") >= total
    });
    let done = Instant::now() - Duration::from_millis(25);
    let rows: i64 = rusqlite::Connection::open(db)
        .unwrap()
        .query_row("SELECT COUNT(*) FROM ttp_tag", [], |r| r.get(0))
        .unwrap();
    (
        total as f64 / published,
        counter(&beat, "processed") as f64 / (done - started).as_secs_f64(),
        rows,
        counter(&beat, "held"),
    )
}
