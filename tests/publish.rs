//! `ttp-worker publish` into a running worker, through a real nats-server: the README's "see it
//! work" loop, with the sample events that ship in `examples/`.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{HealthWatch, NatsServer, Worker, counter, run_command};

const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/events.jsonl");

fn start_worker(server: &NatsServer, db: &Path) -> Worker {
    Worker::start(
        &[],
        &[
            ("DECNET_BUS_URL", &server.url()),
            ("DECNET_TTP_DB", db.to_str().unwrap()),
            ("DECNET_TTP_HEARTBEAT_SECS", "0.2"),
            ("DECNET_TTP_POLL_INTERVAL", "0.3"),
        ],
    )
}

fn stored_tags(db: &Path) -> i64 {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row("SELECT count(*) FROM ttp_tag", [], |row| row.get(0))
        .unwrap()
}

#[test]
fn the_sample_events_published_into_a_running_worker_become_its_tags() {
    let server = NatsServer::start();
    let health = HealthWatch::new(&server);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ttp.db");
    let _worker = start_worker(&server, &db);
    health.next_beat();
    let client = server.client();
    let announcements = client.subscribe("ttp.tagged").unwrap();

    let output = run_command(&["publish", SAMPLE, "--bus-url", &server.url()], &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "only the summary: {stderr}");
    assert!(
        stderr.starts_with("publish: 5 envelopes published, 0 malformed lines skipped"),
        "{stderr}"
    );

    // What `tag` gives for the same file is what the worker stores and announces.
    let tagged = run_command(&["tag", SAMPLE], &[]);
    let expected = String::from_utf8_lossy(&tagged.stdout).lines().count();
    assert_eq!(expected, 12, "the sample's tags changed: update the README");
    let beat = health.beat_where("the sample tagged", |b| counter(b, "processed") == 5);
    assert_eq!(counter(&beat, "tags_inserted"), expected as u64);
    assert_eq!(stored_tags(&db), expected as i64);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut announced = 0;
    while announced < 5 && Instant::now() < deadline {
        if announcements
            .next_timeout(Duration::from_millis(200))
            .is_ok()
        {
            announced += 1;
        }
    }
    assert_eq!(announced, 5, "one ttp.tagged per tagged event");
}

#[test]
fn a_paced_run_reports_bad_lines_and_still_sends_the_rest() {
    let server = NatsServer::start();
    let client = server.client();
    let seen = client.subscribe("attacker.>").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    std::fs::write(
        &input,
        concat!(
            "{\"topic\":\"attacker.session.ended\",\"payload\":{\"session_id\":\"a\"}}\n",
            "[1]\n",
            "\n",
            "{\"topic\":\"attacker.session.ended\",\"payload\":{\"session_id\":\"b\"}}\n",
        ),
    )
    .unwrap();
    let started = Instant::now();
    let output = run_command(
        &[
            "publish",
            input.to_str().unwrap(),
            "--rate",
            "10/s",
            "--bus-url",
            &server.url(),
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    // The rest is sent; the bad line is a problem found.
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("line 2: a JSON object was expected, not an array"),
        "{stderr}"
    );
    assert!(
        stderr.contains("2 envelopes published, 1 malformed lines skipped"),
        "{stderr}"
    );
    // Two envelopes at 10 a second: the second goes out 0.1 s after the first.
    assert!(started.elapsed() >= Duration::from_millis(100));
    for session in ["a", "b"] {
        let message = seen.next_timeout(Duration::from_secs(2)).unwrap();
        let envelope: serde_json::Value = serde_json::from_slice(&message.data).unwrap();
        assert_eq!(envelope["payload"]["session_id"], session);
        assert_eq!(envelope["v"], 1);
        assert_eq!(envelope["id"].as_str().map(str::len), Some(32));
    }
}

#[test]
fn bad_settings_and_an_absent_server_are_one_line_each() {
    let cases: [(&[&str], i32, &str); 3] = [
        (&["publish", SAMPLE, "--rate", "0"], 2, "--rate"),
        (&["publish", "/no/such/file"], 2, "/no/such/file"),
        (
            &["publish", SAMPLE, "--bus-url", "http://127.0.0.1:1"],
            2,
            "--bus-url",
        ),
    ];
    for (args, code, named) in cases {
        let output = run_command(args, &[]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(code), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(named), "{args:?}: {stderr}");
    }
    let port = common::free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let output = run_command(&["publish", SAMPLE, "--bus-url", &url], &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
}
