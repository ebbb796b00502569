//! The `ttp-worker` binary as an operator runs it: against a real `nats-server`, stopped by
//! signals and by DECNET's control message, surviving a missing server and garbage input.

#![allow(deprecated)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use common::{
    HealthWatch, NatsServer, PATIENCE, Worker, counter, envelope_body, free_port, peak_rss_kib,
    sample_subjects,
};

/// The bound the issue sets on every shutdown.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(2);

fn start_worker(server_url: &str, extra_env: &[(&str, &str)]) -> Worker {
    let mut env = vec![
        ("DECNET_BUS_URL", server_url),
        ("DECNET_TTP_HEARTBEAT_SECS", "0.2"),
        ("DECNET_TTP_POLL_INTERVAL", "0.3"),
    ];
    env.extend_from_slice(extra_env);
    Worker::start(&[], &env)
}

fn assert_clean_exit_within_limit(worker: &mut Worker, what: &str) {
    let started = Instant::now();
    let status = worker
        .wait_exit(SHUTDOWN_LIMIT)
        .unwrap_or_else(|| panic!("{what}: still running after {SHUTDOWN_LIMIT:?}"));
    assert!(
        status.success(),
        "{what}: exit status {status:?}; log:\n{}",
        worker.log_text()
    );
    eprintln!("{what}: exited in {:?}", started.elapsed());
}

#[test]
fn heartbeats_arrive_at_the_interval_with_growing_counters() {
    let server = NatsServer::start();
    let health = HealthWatch::new(&server);
    let _worker = start_worker(&server.url(), &[]);

    let (first, first_at) = health.next_beat();
    assert_eq!(first["worker"], "ttp");
    assert!(first["ts"].as_f64().unwrap() > 1.7e9);
    assert_eq!(first["mode"], "core");
    let (_, second_at) = health.next_beat();
    let gap = second_at - first_at;
    // 0.2 s configured; the bounds only catch "not periodic" or "ignores the setting".
    assert!(
        gap > Duration::from_millis(50) && gap < Duration::from_secs(2),
        "beats {gap:?} apart"
    );

    let publisher = server.client();
    for _ in 0..5 {
        publisher
            .publish(
                "attacker.observed",
                envelope_body(
                    "attacker.observed",
                    "observed",
                    json!({"attacker_ip": "203.0.113.45"}),
                ),
            )
            .unwrap();
    }
    publisher.flush().unwrap();
    let later = health.beat_where("five messages were counted", |beat| {
        counter(beat, "received") >= 5 && counter(beat, "processed") >= 5
    });
    assert_eq!(counter(&later, "received"), 5);
    assert!(later["uptime_sec"].as_f64().unwrap() > first["uptime_sec"].as_f64().unwrap());
}

#[test]
fn a_control_stop_exits_zero_promptly() {
    let server = NatsServer::start();
    let health = HealthWatch::new(&server);
    let mut worker = start_worker(&server.url(), &[]);
    health.next_beat();

    let client = server.client();
    // Things that are not a stop must leave the listener working.
    for payload in [json!({"action": "start"}), json!({"action": 5}), json!({})] {
        client
            .publish(
                "system.ttp.control",
                envelope_body("system.ttp.control", "control", payload),
            )
            .unwrap();
    }
    client
        .publish("system.ttp.control", b"[not an envelope")
        .unwrap();
    client.flush().unwrap();
    health.next_beat();
    health.next_beat();
    assert!(
        worker.is_running(),
        "a non-stop control message stopped the worker"
    );

    client
        .publish(
            "system.ttp.control",
            envelope_body(
                "system.ttp.control",
                "control",
                json!({"action": "stop", "requested_by": "admin", "ts": 1777703100.2499}),
            ),
        )
        .unwrap();
    client.flush().unwrap();
    assert_clean_exit_within_limit(&mut worker, "control stop");
    assert!(worker.log_text().contains("by admin"));
}

/// Publishes on every subject as fast as it can until dropped.
struct Flood {
    running: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<u64>>,
}

impl Flood {
    fn start(server: &NatsServer) -> Flood {
        let client = server.client();
        let running = Arc::new(AtomicBool::new(true));
        let flag = running.clone();
        let thread = thread::spawn(move || {
            let subjects = sample_subjects();
            let mut sent = 0u64;
            while flag.load(Ordering::Relaxed) {
                for subject in &subjects {
                    let body = envelope_body(subject, "flood", json!({"n": sent}));
                    if client.publish(subject, body).is_ok() {
                        sent += 1;
                    }
                }
            }
            sent
        });
        Flood {
            running,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> u64 {
        self.running.store(false, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

fn signal_under_flood(signal: &str) {
    let server = NatsServer::start();
    let health = HealthWatch::new(&server);
    let mut worker = start_worker(&server.url(), &[]);
    health.next_beat();
    let flood = Flood::start(&server);
    health.beat_where("the flood is arriving", |beat| {
        counter(beat, "received") > 1000
    });
    worker.signal(signal);
    assert_clean_exit_within_limit(&mut worker, &format!("{signal} under flood"));
    let sent = flood.stop();
    assert!(sent > 1000, "the flood sent only {sent} messages");
}

#[test]
fn sigterm_exits_zero_promptly_while_a_publisher_floods() {
    signal_under_flood("TERM");
}

#[test]
fn sigint_exits_zero_promptly_while_a_publisher_floods() {
    signal_under_flood("INT");
}

#[test]
fn without_a_server_it_waits_then_subscribes_and_survives_a_server_restart() {
    let port = free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let mut worker = start_worker(&url, &[]);
    worker.wait_for_log("running poll-only");
    thread::sleep(Duration::from_millis(700)); // a few ticks of retrying
    assert!(
        worker.is_running(),
        "exited without a bus:\n{}",
        worker.log_text()
    );

    let mut server = NatsServer::start_on(port, false);
    let server_up = std::time::Instant::now();
    let health = HealthWatch::new(&server);
    // Poll interval 0.3 s: the next tick connects, subscribes and beats at once. The bound
    // is a tick plus a generous second for a loaded machine, not a performance claim.
    let (beat, beat_at) = health.next_beat();
    assert!(
        beat_at - server_up < Duration::from_millis(300) + Duration::from_secs(1),
        "first beat {:?} after the server came up",
        beat_at - server_up
    );
    assert_eq!(counter(&beat, "reconnects"), 0);
    assert_eq!(server.connections_named("ttp").len(), 1);

    server.restart();
    let health = HealthWatch::new(&server);
    let beat = health.beat_where("the worker counted its reconnect", |beat| {
        counter(beat, "reconnects") >= 1
    });
    assert_eq!(counter(&beat, "reconnects"), 1);

    // The re-established subscriptions work.
    let publisher = server.client();
    publisher
        .publish(
            "email.received",
            envelope_body("email.received", "received", json!({})),
        )
        .unwrap();
    publisher.flush().unwrap();
    health.beat_where("the message after the restart was processed", |beat| {
        counter(beat, "processed") >= 1
    });

    worker.signal("TERM");
    assert_clean_exit_within_limit(&mut worker, "SIGTERM after reconnect");
}

#[test]
fn a_disabled_bus_is_never_dialled_and_signals_still_work() {
    let server = NatsServer::start();
    let mut worker = start_worker(&server.url(), &[("DECNET_BUS_ENABLED", "false")]);
    worker.wait_for_log("bus disabled by configuration");
    thread::sleep(Duration::from_millis(700));
    assert!(worker.is_running());
    assert!(server.connections_named("ttp").is_empty());
    worker.signal("TERM");
    assert_clean_exit_within_limit(&mut worker, "SIGTERM in poll-only mode");
}

#[test]
fn malformed_bodies_on_every_subject_are_counted_and_survived() {
    let server = NatsServer::start();
    let health = HealthWatch::new(&server);
    let mut worker = start_worker(&server.url(), &[]);
    health.next_beat();

    let garbage: Vec<u8> = (0..1_048_576u32).map(|i| (i % 251) as u8).collect();
    let bad_bodies: [&[u8]; 4] = [
        b"this is not json",
        br#"{"type":"x","payload":[1,2,3]}"#,
        br#"["an", "array"]"#,
        &garbage,
    ];
    let publisher = server.client();
    let subjects = sample_subjects();
    for subject in &subjects {
        for body in bad_bodies {
            publisher.publish(subject, body).unwrap();
        }
    }
    publisher.flush().unwrap();
    let expected_malformed = (subjects.len() * bad_bodies.len()) as u64;
    health.beat_where("every malformed body was counted", |beat| {
        counter(beat, "malformed") == expected_malformed
    });
    assert!(worker.is_running());

    publisher
        .publish(
            "attacker.session.ended",
            envelope_body(
                "attacker.session.ended",
                "session.ended",
                json!({"commands": []}),
            ),
        )
        .unwrap();
    publisher.flush().unwrap();
    let beat = health.beat_where("the good message was processed", |beat| {
        counter(beat, "processed") == 1
    });
    assert_eq!(counter(&beat, "malformed"), expected_malformed);
    assert_eq!(counter(&beat, "received"), expected_malformed + 1);
    // Every one counted, one logged: the rest of the burst waits for the next line's count.
    let log = worker.log_text();
    assert_eq!(
        log.matches("dropped a malformed message on").count(),
        1,
        "{log}"
    );

    worker.signal("TERM");
    assert_clean_exit_within_limit(&mut worker, "SIGTERM after malformed input");
}

#[test]
fn sighup_is_a_reload_request_not_a_stop() {
    let server = NatsServer::start();
    let health = HealthWatch::new(&server);
    let mut worker = start_worker(&server.url(), &[]);
    health.next_beat();
    worker.signal("HUP");
    worker.wait_for_log("reload requested");
    health.next_beat();
    assert!(worker.is_running());
    worker.signal("TERM");
    assert_clean_exit_within_limit(&mut worker, "SIGTERM after SIGHUP");
}

/// Arguments, environment, and the setting the error line must name.
type BadSetting<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

#[test]
fn bad_settings_exit_2_with_one_line() {
    let cases: [BadSetting; 7] = [
        (&["--poll-interval", "0"], &[], "--poll-interval"),
        (
            &[],
            &[("DECNET_TTP_POLL_INTERVAL", "-5")],
            "DECNET_TTP_POLL_INTERVAL",
        ),
        (
            &[],
            &[("DECNET_TTP_HEARTBEAT_SECS", "often")],
            "DECNET_TTP_HEARTBEAT_SECS",
        ),
        (&["--bus-url", "http://127.0.0.1:4222"], &[], "--bus-url"),
        (&[], &[("DECNET_BUS_TYPE", "unix")], "DECNET_BUS_TYPE"),
        (&[], &[("DECNET_BUS_TYPE", "redis")], "DECNET_BUS_TYPE"),
        (&["--no-such-flag"], &[], "--no-such-flag"),
    ];
    for (args, env, named) in cases {
        let mut worker = Worker::start(args, env);
        let status = worker.wait_exit(PATIENCE).expect("did not exit");
        assert_eq!(status.code(), Some(2), "{args:?} {env:?}");
        // Give the stderr reader a moment to collect the line.
        thread::sleep(Duration::from_millis(50));
        let log = worker.log_text();
        assert_eq!(log.lines().count(), 1, "{args:?} {env:?}: {log}");
        assert!(log.contains(named), "{log}");
    }
}

#[test]
fn help_and_version_exit_zero() {
    for flag in ["--help", "--version"] {
        let mut worker = Worker::start(&[flag], &[]);
        let status = worker.wait_exit(PATIENCE).expect("did not exit");
        assert!(status.success(), "{flag}");
    }
}

#[test]
fn a_second_worker_on_the_same_store_stops_at_start_with_a_clear_message() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ttp.db");
    let db_text = db.to_str().unwrap();
    let health = HealthWatch::new(&server);
    let mut first = start_worker(&server.url(), &[("DECNET_TTP_DB", db_text)]);
    health.next_beat();

    let mut second = start_worker(&server.url(), &[("DECNET_TTP_DB", db_text)]);
    let status = second
        .wait_exit(PATIENCE)
        .expect("the second worker kept running");
    assert_eq!(status.code(), Some(1));
    thread::sleep(Duration::from_millis(50));
    let log = second.log_text();
    assert!(log.contains("another ttp-worker"), "{log}");
    assert!(log.contains(db_text), "{log}");

    assert!(first.is_running());
    first.signal("TERM");
    assert_clean_exit_within_limit(&mut first, "SIGTERM of the owner");
}

#[test]
fn a_payload_cannot_forge_a_log_line_or_a_journald_priority() {
    let server = NatsServer::start();
    let health = HealthWatch::new(&server);
    // As under systemd: lines start with their `<N>` priority.
    let mut worker = start_worker(&server.url(), &[("JOURNAL_STREAM", "8:1234")]);
    health.next_beat();
    let forged = "admin\n<0>ttp_worker: the store is on fire\r\x1b[2J";
    let client = server.client();
    client
        .publish(
            "system.ttp.control",
            envelope_body(
                "system.ttp.control",
                "control",
                json!({"action": "stop", "requested_by": forged}),
            ),
        )
        .unwrap();
    client.flush().unwrap();
    assert_clean_exit_within_limit(&mut worker, "control stop");
    let log = worker.log_text();
    assert!(
        log.contains(r"by admin\n<0>ttp_worker: the store is on fire\r\u{1b}[2J"),
        "{log}"
    );
    for line in log.lines() {
        assert!(!line.starts_with("<0>"), "a forged emergency line: {line}");
        assert!(
            !line.chars().any(char::is_control),
            "a control character: {line:?}"
        );
        assert!(
            line.starts_with('<') && line.as_bytes().get(2) == Some(&b'>'),
            "every line carries its priority: {line}"
        );
    }
}

#[test]
fn drops_in_a_flood_are_logged_a_few_times_not_once_each() {
    let server = NatsServer::start();
    let health = HealthWatch::new(&server);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ttp.db");
    let db_text = db.to_str().unwrap().to_owned();
    let worker = start_worker(&server.url(), &[("DECNET_TTP_DB", &db_text)]);
    health.next_beat();
    // Another process holds the store: the worker's batch waits, it takes no more messages,
    // and what the subscription thread may hold (32 MiB) overflows.
    let lock = rusqlite::Connection::open(&db).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    // About 64 MB of sessions on one subscription.
    let client = server.client();
    let sessions: Vec<String> = common::corpus::corpus_lines()
        .into_iter()
        .filter(|l| common::corpus::subject_of(l) == "attacker.session.ended")
        .collect();
    for line in sessions.iter().cycle().take(40_000) {
        client
            .publish("attacker.session.ended", line.as_bytes())
            .unwrap();
    }
    client.flush().unwrap();
    worker.wait_for_log("messages behind");
    // The flood is over; whatever the worker and its client had to say about it is said by
    // now (drops are reported every 5 s).
    thread::sleep(Duration::from_secs(6));
    health.beat_where("over 10,000 drops counted", |beat| {
        counter(beat, "client_dropped") > 10_000
    });
    let warnings: Vec<String> = worker
        .log_text()
        .lines()
        .filter(|l| l.contains("messages behind") || l.contains("NATS client:"))
        .map(str::to_owned)
        .collect();
    assert!(
        warnings.len() <= 3,
        "{} drop warnings, the first: {:?}",
        warnings.len(),
        warnings.first()
    );
    drop(lock);
}

/// What the sender chose (a kind, an envelope id, a requester) is quoted clipped, with its
/// length, so 100 kB strings make short lines; an id too long to store is not stored.
#[test]
fn long_strings_from_the_bus_are_logged_clipped_and_not_stored() {
    let server = NatsServer::start();
    let health = HealthWatch::new(&server);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ttp.db");
    let mut worker = start_worker(&server.url(), &[("DECNET_TTP_DB", db.to_str().unwrap())]);
    health.next_beat();
    let long = |c: &str| c.repeat(100_000);
    let attacker = "6f1c2a9e-0000-4000-8000-0000000000aa";
    let client = server.client();
    client
        .publish(
            "attacker.fingerprinted",
            // A kind (the envelope type) short enough to store, too long to quote whole.
            envelope_body(
                "attacker.fingerprinted",
                &"t".repeat(250),
                json!({"attacker_uuid": attacker}),
            ),
        )
        .unwrap();
    let commands = vec!["cat /etc/shadow"; 10_001];
    let over_budget = json!({
        "v": 1, "id": long("i"), "topic": "attacker.session.ended", "type": "session.ended",
        "ts": 1777703010.5,
        "payload": {"session_id": "s-1", "attacker_uuid": attacker, "commands": commands},
    });
    client
        .publish("attacker.session.ended", over_budget.to_string())
        .unwrap();
    client
        .publish(
            "attacker.session.ended",
            envelope_body(
                "attacker.session.ended",
                "session.ended",
                json!({"session_id": long("s"), "attacker_uuid": attacker,
                       "commands": ["cat /etc/shadow"]}),
            ),
        )
        .unwrap();
    client.flush().unwrap();
    let beat = health.beat_where("three messages processed", |b| counter(b, "processed") == 3);
    assert_eq!(counter(&beat, "cut_events"), 2, "{beat:?}");
    client
        .publish(
            "system.ttp.control",
            envelope_body(
                "system.ttp.control",
                "control",
                json!({"action": "stop", "requested_by": long("r")}),
            ),
        )
        .unwrap();
    client.flush().unwrap();
    assert_clean_exit_within_limit(&mut worker, "control stop");

    let log = worker.log_text();
    for line in log.lines() {
        assert!(line.len() < 1024, "a line of {} bytes", line.len());
    }
    for (what, length) in [
        ("no tagger handles source kind", 250),
        ("over the limits on one message", 100_000),
        ("stop requested", 100_000),
    ] {
        let line = log
            .lines()
            .find(|l| l.contains(what))
            .unwrap_or_else(|| panic!("{what}: {log}"));
        assert!(line.contains(&format!("… ({length} bytes)")), "{line}");
    }
    let stored: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row(
            "SELECT count(*) FROM ttp_tag WHERE length(session_id) > 255",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(stored, 0);
}

/// A session with one command the built-in pack tags (credential files).
fn firing_session(session_id: &str) -> Vec<u8> {
    envelope_body(
        "attacker.session.ended",
        "session.ended",
        json!({"session_id": session_id, "attacker_uuid": "6f1c2a9e-0000-4000-8000-0000000000aa",
               "commands": [{"id": "c", "command_text": "cat /etc/shadow"}]}),
    )
}

/// A session of 200,000 one-letter commands: 800 kB on the wire, twenty times the work
/// budget's commands.
fn one_letter_session(session_id: &str) -> Vec<u8> {
    let commands: Vec<&str> = vec!["w"; 200_000];
    envelope_body(
        "attacker.session.ended",
        "session.ended",
        json!({"session_id": session_id, "attacker_uuid": "6f1c2a9e-0000-4000-8000-0000000000aa",
               "commands": commands}),
    )
}

/// Eight sessions of 200,000 one-letter commands each (800 kB apiece) once stalled the worker
/// for 79 s at 1.9 GiB. Now each is tagged up to its budget: the worker stays small, says
/// once what it cut, counts it, and still stops promptly with such messages queued.
#[test]
fn sessions_far_over_the_work_budget_stay_small_and_do_not_delay_a_stop() {
    let server = NatsServer::start();
    let health = HealthWatch::new(&server);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ttp.db");
    let mut worker = start_worker(&server.url(), &[("DECNET_TTP_DB", db.to_str().unwrap())]);
    health.next_beat();
    let body = one_letter_session("huge");
    let client = server.client();
    for _ in 0..8 {
        client.publish("attacker.session.ended", &body).unwrap();
    }
    client.flush().unwrap();
    let beat = health.beat_where("eight messages processed", |b| counter(b, "processed") == 8);
    assert_eq!(counter(&beat, "over_budget"), 8);
    assert_eq!(counter(&beat, "cut_commands"), 8 * 190_000);
    let peak_mib = peak_rss_kib(worker.pid()) / 1024;
    assert!(peak_mib < 128, "peak RSS {peak_mib} MiB");
    let log = worker.log_text();
    assert_eq!(
        log.matches("over the limits on one message").count(),
        1,
        "{log}"
    );

    // The same again, and a stop while they are being tagged.
    for _ in 0..8 {
        client.publish("attacker.session.ended", &body).unwrap();
    }
    client.flush().unwrap();
    thread::sleep(Duration::from_millis(50));
    worker.signal("TERM");
    assert_clean_exit_within_limit(&mut worker, "SIGTERM with heavy work queued");
}

/// A flood of large messages far faster than they can be tagged once peaked at 1.5 GiB: the
/// NATS client queued up to 8192 raw bodies per subscription. Now the subscription threads
/// hold at most 32 MiB of them and drop, count and say the rest; the worker stays small and
/// goes on tagging.
#[test]
fn a_flood_of_large_messages_is_held_within_its_bytes_and_the_rest_counted() {
    const FLOOD: u64 = 1_000;
    let server = NatsServer::start();
    let health = HealthWatch::new(&server);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ttp.db");
    let mut worker = start_worker(&server.url(), &[("DECNET_TTP_DB", db.to_str().unwrap())]);
    health.next_beat();
    // Slow to decode and to fan out: the worker falls far behind.
    let body = one_letter_session("flood");
    let client = server.client();
    for _ in 0..FLOOD {
        client.publish("attacker.session.ended", &body).unwrap();
    }
    client.flush().unwrap();
    let beat = health.beat_where("every message processed or dropped", |b| {
        counter(b, "processed") + counter(b, "client_dropped") >= FLOOD
    });
    let dropped = counter(&beat, "client_dropped");
    assert!(dropped > 0, "nothing dropped: the flood did not get ahead");
    assert_eq!(counter(&beat, "processed") + dropped, FLOOD);
    let peak_mib = peak_rss_kib(worker.pid()) / 1024;
    assert!(peak_mib < 192, "peak RSS {peak_mib} MiB");
    let log = worker.log_text();
    assert!(log.contains("MiB of messages behind"), "{log}");

    // Still tagging: an ordinary session after the flood is stored.
    let tagged = client.subscribe("ttp.tagged").unwrap();
    client
        .publish("attacker.session.ended", firing_session("after"))
        .unwrap();
    client.flush().unwrap();
    tagged
        .next_timeout(PATIENCE)
        .expect("no ttp.tagged after the flood");
    worker.signal("TERM");
    assert_clean_exit_within_limit(&mut worker, "SIGTERM after a flood");
}

/// The store deleted under a running worker: the next batch's commit notices, nothing of it is
/// acknowledged or announced, and the worker exits non-zero so that systemd restarts it.
#[test]
fn a_store_deleted_under_the_worker_stops_it_with_a_failure() {
    let server = NatsServer::start();
    let health = HealthWatch::new(&server);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ttp.db");
    let mut worker = start_worker(&server.url(), &[("DECNET_TTP_DB", db.to_str().unwrap())]);
    health.next_beat();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let client = server.client();
    let tagged = client.subscribe("ttp.tagged").unwrap();
    client
        .publish("attacker.session.ended", firing_session("s-del"))
        .unwrap();
    client.flush().unwrap();
    let status = worker.wait_exit(PATIENCE).expect("still running");
    assert_eq!(status.code(), Some(1), "{}", worker.log_text());
    assert!(
        worker
            .log_text()
            .contains("no longer the file this worker opened")
    );
    assert!(
        tagged.next_timeout(Duration::from_millis(300)).is_err(),
        "announced anyway"
    );
}
