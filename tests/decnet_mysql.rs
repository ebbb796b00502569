//! ttp-worker pointed at DECNET's own MySQL/MariaDB database (docs/decnet-db.md): a real
//! MariaDB server run by the test; DECNET's code makes the schema and seeds what its database
//! held when the dev corpus was tagged; the corpus goes through a real nats-server into the
//! real binary; DECNET's code then reads the rows back.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use common::corpus::{corpus_lines, reference_args, required, subject_of};
use common::decnet::Decnet;
use common::mariadb::MariaDb;
use common::{HealthWatch, NatsServer, PATIENCE, Worker, counter, free_port, run_command};
use serde_json::Value;
use ttp_worker::decnet_db::{Backend, Connect, MysqlDb};
use ttp_worker::tagging::Tag;

/// DECNET's own tagger's rows for dev-1k at or above its 0.3 floor, intel catch-up included.
fn decnet_rows() -> BTreeMap<String, Value> {
    fs::read_to_string(required("corpus/dev-1k.decnet-all.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or(Value::Null))
        .filter(|t| t["confidence"].as_f64().unwrap_or(0.0) >= 0.3)
        .map(|t| (t["uuid"].as_str().unwrap_or_default().to_owned(), t))
        .collect()
}

/// A MariaDB server with DECNET's schema and dev-1k's seed, made by DECNET's own code.
fn decnet_server() -> MariaDb {
    let server = MariaDb::start();
    let decnet = Decnet::get();
    decnet.create(&server.url());
    decnet.seed_dev_1k(&server.url());
    server
}

/// The URL without its password, which goes in a file instead.
fn url_without_password(server: &MariaDb) -> String {
    format!(
        "mysql+asyncmy://{}@127.0.0.1:{}/{}",
        server.user, server.port, server.database
    )
}

fn password_file(server: &MariaDb, dir: &Path) -> String {
    let path = dir.join("db-password");
    fs::write(&path, format!("{}\n", server.password)).unwrap_or_else(|e| panic!("{e}"));
    path.display().to_string()
}

fn start_worker(server: &NatsServer, db: &MariaDb, state: &Path, durable: bool) -> Worker {
    let mut args: Vec<String> = Vec::new();
    if durable {
        args.push("--durable".into());
    }
    args.extend(reference_args());
    args.push("--heartbeat-interval".into());
    args.push("0.2".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let url = server.url();
    let local = state.join("ttp.db").display().to_string();
    let db_url = url_without_password(db);
    let password = password_file(db, state);
    let worker = Worker::start(
        &args,
        &[
            ("DECNET_BUS_URL", url.as_str()),
            ("DECNET_DB_TYPE", "mysql"),
            ("DECNET_DB_URL", db_url.as_str()),
            ("DECNET_DB_PASSWORD_FILE", password.as_str()),
            ("DECNET_TTP_DB", local.as_str()),
            ("DECNET_TTP_POLL_INTERVAL", "0.2"),
            ("DECNET_TTP_ACK_WAIT", "2s"),
        ],
    );
    worker.wait_for_log(if durable {
        "pulling through JetStream"
    } else {
        "subscribed to"
    });
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

fn wait_processed(health: &HealthWatch, n: u64) {
    let deadline = Instant::now() + PATIENCE * 6;
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

/// What DECNET's code reads back, compared with DECNET's own rows: every field, created_at
/// only as a date-time with whole seconds (the column's type keeps no fraction).
fn compare_with_decnet(url: &str) {
    let stored: BTreeMap<String, Value> = Decnet::get()
        .all_tags(url)
        .into_iter()
        .map(|t| (t["uuid"].as_str().unwrap_or_default().to_owned(), t))
        .collect();
    let want = decnet_rows();
    let missing: Vec<&String> = want.keys().filter(|u| !stored.contains_key(*u)).collect();
    let extra: Vec<&String> = stored.keys().filter(|u| !want.contains_key(*u)).collect();
    let mut different = Vec::new();
    let mut order_dependent = 0;
    for (uuid, row) in &stored {
        let Some(expected) = want.get(uuid) else {
            continue;
        };
        for (key, value) in expected.as_object().into_iter().flatten() {
            if key == "created_at" {
                let text = row.get(key).and_then(Value::as_str).unwrap_or_default();
                if !(text.len() >= 19 && matches!(text.as_bytes()[10], b'T' | b' ')) {
                    different.push(format!("{uuid} created_at: got {text:?}"));
                }
                continue;
            }
            // DECNET's migration makes `confidence` a FLOAT, which MySQL keeps in single
            // precision: DECNET's own rows read back rounded the same way.
            if key == "confidence" {
                let single = |v: Option<&Value>| v.and_then(Value::as_f64).map(|f| f as f32);
                if single(row.get(key)) != single(Some(value)) {
                    different.push(format!("{uuid} confidence: want {value} got {}", row[key]));
                }
                continue;
            }
            // An identity's tags (source id = the identity) come from messages on several
            // subjects; the worker's subscriptions deliver those in varying order, and the
            // first stored keeps its evidence (as in DECNET and in the SQLite backend).
            if key == "evidence" && row["source_kind"] == "identity" && row.get(key) != Some(value)
            {
                order_dependent += 1;
                continue;
            }
            if row.get(key) != Some(value) {
                different.push(format!(
                    "{uuid} {key}: want {value} got {}",
                    row.get(key).unwrap_or(&Value::Null)
                ));
            }
        }
        assert_eq!(row["attack_release"], "v15.1", "{uuid}");
    }
    eprintln!(
        "{} rows stored, {} of DECNET's: {} missing, {} extra, {} differences, {} identity \
         evidence from another message of the same identity",
        stored.len(),
        want.len(),
        missing.len(),
        extra.len(),
        different.len(),
        order_dependent
    );
    assert!(missing.is_empty(), "missing {}: {missing:?}", missing.len());
    assert!(extra.is_empty(), "extra: {extra:#?}");
    assert!(different.is_empty(), "{different:#?}");
}

/// DECNET's own `insert_tags` writes its rows into a second database on the same server; what
/// DECNET reads back from it and from the worker's rows is the same, every field but
/// created_at (the time of writing) and mitre_url (see below). This is also what shows that the
/// single-precision confidences are DECNET's own column's doing.
fn same_as_decnets_own_insert(db: &MariaDb, dir: &Path) {
    db.sql(&format!(
        "CREATE DATABASE decnet_own CHARACTER SET utf8mb4; GRANT ALL PRIVILEGES ON decnet_own.* TO '{}'@'%';",
        db.user
    ));
    let own = format!(
        "mysql://{}:{}@127.0.0.1:{}/decnet_own",
        db.user, db.password, db.port
    );
    let decnet = Decnet::get();
    decnet.create(&own);
    decnet.seed_dev_1k(&own);
    let file = dir.join("decnet-rows.jsonl");
    let rows: String = decnet_rows()
        .values()
        .map(|t| t.to_string() + "\n")
        .collect();
    fs::write(&file, rows).unwrap_or_else(|e| panic!("{e}"));
    let inserted = decnet.insert_tags(&own, &file);
    let by_uuid = |url: &str| -> BTreeMap<String, Value> {
        decnet
            .all_tags(url)
            .into_iter()
            .map(|mut t| {
                if let Some(o) = t.as_object_mut() {
                    o.remove("created_at");
                    // The harness runs DECNET's insert without its ATT&CK bundle, so DECNET
                    // leaves mitre_url null there; the worker's URLs are checked by the
                    // SQLite test and the store's own tests.
                    o.remove("mitre_url");
                    if o.get("source_kind").and_then(Value::as_str) == Some("identity") {
                        o.remove("evidence"); // see compare_with_decnet
                    }
                }
                (t["uuid"].as_str().unwrap_or_default().to_owned(), t)
            })
            .collect()
    };
    let theirs = by_uuid(&own);
    let ours = by_uuid(&db.url());
    let differing = theirs
        .iter()
        .filter(|(uuid, row)| ours.get(*uuid) != Some(*row))
        .count();
    eprintln!(
        "DECNET's own insert: {inserted}; {} rows read back, {differing} differ from the worker's",
        theirs.len()
    );
    let first: Vec<String> = theirs
        .iter()
        .filter_map(|(uuid, row)| {
            let mine = ours.get(uuid)?;
            let keys: Vec<String> = row
                .as_object()?
                .iter()
                .filter(|(k, v)| mine.get(k.as_str()) != Some(*v))
                .map(|(k, v)| format!("{k}: DECNET {v} worker {}", mine[k.as_str()]))
                .collect();
            (!keys.is_empty()).then(|| keys.join("; "))
        })
        .take(3)
        .collect();
    assert_eq!(theirs.len(), ours.len());
    assert_eq!(differing, 0, "{first:#?}");
}

#[test]
fn dev_1k_through_nats_gives_decnets_own_rows_in_decnets_mariadb() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db = decnet_server();
    let server = NatsServer::start();
    let health = HealthWatch::new(&server);
    let mut worker = start_worker(&server, &db, dir.path(), false);
    let lines = corpus_lines();
    let started = Instant::now();
    publish(&server, &lines);
    wait_processed(&health, lines.len() as u64);
    eprintln!(
        "{} messages processed in {:?}",
        lines.len(),
        started.elapsed()
    );

    compare_with_decnet(&db.url());
    same_as_decnets_own_insert(&db, dir.path());
    operators_commands_read_decnets_mariadb(&db, dir.path());
    let log = worker.log_text();
    assert!(
        log.contains("tags go into DECNET's database (MySQL decnet@127.0.0.1"),
        "{log}"
    );
    assert!(!log.contains(&db.password), "the password is in the log");
    worker.signal("TERM");
    let _ = worker.wait_exit(Duration::from_secs(10));
}

/// `ttp-worker stats` on DECNET's MySQL database given by flags, as for the daemon.
fn stats_by_flags(url: &str, password_file: &str) -> std::process::Output {
    run_command(
        &[
            "stats",
            "--decnet-db-type",
            "mysql",
            "--decnet-db-url",
            url,
            "--decnet-db-password-file",
            password_file,
        ],
        &[],
    )
}

/// `tags` and `stats` with DECNET's MySQL settings read DECNET's table: every row DECNET's
/// tagger stores, with its values; the filters work there too; a server that is not there is
/// an error at once, not a wait.
fn operators_commands_read_decnets_mariadb(db: &MariaDb, dir: &Path) {
    let url = url_without_password(db);
    let password = password_file(db, dir);
    let command = |args: &[&str], url: &str| {
        run_command(
            args,
            &[
                ("DECNET_DB_TYPE", "mysql"),
                ("DECNET_DB_URL", url),
                ("DECNET_DB_PASSWORD_FILE", &password),
            ],
        )
    };
    let listed = |args: &[&str]| -> Vec<Value> {
        let mut all = vec!["tags", "--format", "json", "--limit", "100000"];
        all.extend(args);
        let output = command(&all, &url);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or(Value::Null))
            .collect()
    };
    let want = decnet_rows();
    let all = listed(&[]);
    assert_eq!(all.len(), want.len());
    for tag in &all {
        let uuid = tag["uuid"].as_str().unwrap_or_default();
        let expected = &want[uuid];
        for key in [
            "technique_id",
            "sub_technique_id",
            "rule_id",
            "attacker_uuid",
        ] {
            assert_eq!(tag[key], expected[key], "{uuid} {key}");
        }
        // The column is single precision (see compare_with_decnet).
        let single = |v: &Value| v.as_f64().map(|f| f as f32);
        assert_eq!(
            single(&tag["confidence"]),
            single(&expected["confidence"]),
            "{uuid}"
        );
        let created = tag["created_at"].as_str().unwrap_or_default();
        assert!(
            created.len() == 27 && created.ends_with('Z'),
            "{uuid}: {created}"
        );
    }
    // A filter as DECNET's API would ask: one attacker's tags, one technique's.
    let attacker = want
        .values()
        .find_map(|t| t["attacker_uuid"].as_str())
        .unwrap_or_default();
    let of_attacker = want
        .values()
        .filter(|t| t["attacker_uuid"] == attacker)
        .count();
    assert_eq!(listed(&["--attacker", attacker]).len(), of_attacker);
    let brute = want
        .values()
        .filter(|t| t["technique_id"] == "T1110")
        .count();
    assert!(brute > 0);
    assert_eq!(listed(&["--technique", "T1110"]).len(), brute);

    // The same settings as flags, as for the daemon.
    let output = stats_by_flags(&url, &password);
    let stats = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stats.contains(&format!("tags            {}", want.len())),
        "{stats}"
    );
    assert!(stats.contains("ttp_tag's data and indexes"), "{stats}");

    let nobody = format!(
        "mysql://{}@127.0.0.1:{}/{}",
        db.user,
        free_port(),
        db.database
    );
    let started = Instant::now();
    let output = command(&["tags"], &nobody);
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(error.contains("unavailable"), "{error}");
    assert!(!error.contains(&db.password), "{error}");
    assert!(
        started.elapsed() < PATIENCE,
        "tags waited for a server that is not there"
    );
}

#[test]
fn a_database_without_decnets_tables_or_access_stops_the_worker_with_exit_2() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db = MariaDb::start();
    // The server's `decnet` database exists (the harness makes it) and is empty.
    let port = db.port.to_string();
    let run = |password: &str| {
        let mut worker = Worker::start(
            &["--no-bus"],
            &[
                ("DECNET_DB_TYPE", "mysql"),
                ("DECNET_DB_HOST", "127.0.0.1"),
                ("DECNET_DB_PORT", port.as_str()),
                ("DECNET_DB_NAME", db.database.as_str()),
                ("DECNET_DB_USER", db.user.as_str()),
                ("DECNET_DB_PASSWORD", password),
                (
                    "DECNET_TTP_DB",
                    dir.path().join("ttp.db").to_str().unwrap_or_default(),
                ),
            ],
        );
        let status = worker.wait_exit(PATIENCE * 3);
        (status.and_then(|s| s.code()), worker.log_text())
    };
    let (code, log) = run(&db.password);
    assert_eq!(code, Some(2), "{log}");
    assert!(log.contains("ttp_tag"), "{log}");
    assert!(!log.contains(&db.password), "{log}");

    let (code, log) = run("not-the-password");
    assert_eq!(code, Some(2), "{log}");
    assert!(log.contains("refuses the worker"), "{log}");
    assert!(!log.contains("not-the-password"), "{log}");
}

#[test]
fn a_refused_row_is_reported_and_the_rest_of_the_batch_is_written() {
    let db = decnet_server();
    let attacker = db
        .sql_db("SELECT uuid FROM attackers ORDER BY uuid LIMIT 1")
        .trim()
        .to_owned();
    let password = ttp_worker::bus::security::Secret::new(db.password.clone());
    let mut backend = MysqlDb::open(
        "127.0.0.1",
        db.port,
        &db.database,
        &db.user,
        Some(&password),
        None,
        Connect::WaitForServer,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let tag = |uuid: &str, attacker: &str| Tag {
        uuid: uuid.into(),
        source_kind: "command".into(),
        source_id: format!("test-{uuid}"),
        attacker_uuid: Some(attacker.into()),
        identity_uuid: None,
        attacker_ip: None,
        session_id: None,
        decky_id: None,
        tactic: "TA0007".into(),
        technique_id: "T1083".into(),
        sub_technique_id: None,
        confidence: 0.5,
        rule_id: "R0014".into(),
        rule_version: 2,
        evidence: serde_json::Map::new(),
    };
    let good = "00000000-0000-5000-8000-00000000000a";
    let orphan = "00000000-0000-5000-8000-00000000000b";
    let batch = vec![
        vec![tag(good, &attacker)],
        vec![tag(orphan, "no-such-attacker")],
    ];
    let written = backend
        .write(&batch, SystemTime::now())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(written.inserted, vec![vec![0], vec![]]);
    assert_eq!(written.refused.len(), 1, "{written:?}");
    assert_eq!(written.refused[0].0, orphan);
    assert!(written.refused[0].1.contains("1452"), "{written:?}");
    // Again: the row is there, so nothing is new (not taken for a failure either).
    let again = backend
        .write(&batch[..1], SystemTime::now())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.inserted, vec![Vec::<usize>::new()]);
    assert!(again.refused.is_empty());
    assert_eq!(
        db.sql_db(&format!(
            "SELECT COUNT(*) FROM ttp_tag WHERE uuid IN ('{good}', '{orphan}')"
        ))
        .trim(),
        "1"
    );
    assert_eq!(
        db.sql_db(&format!("SELECT COLUMN_TYPE FROM information_schema.columns WHERE TABLE_SCHEMA = '{}' AND TABLE_NAME = 'ttp_tag' AND COLUMN_NAME = 'created_at'", db.database)).trim(),
        "datetime"
    );
}

#[test]
fn the_database_stopped_mid_stream_in_durable_mode_loses_nothing() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut db = decnet_server();
    let server = NatsServer::start_jetstream();
    let mut worker = start_worker(&server, &db, dir.path(), true);
    let lines = corpus_lines();
    let (first, rest) = lines.split_at(lines.len() / 2);
    publish(&server, first);
    std::thread::sleep(Duration::from_millis(500));
    db.stop();
    publish(&server, rest);
    std::thread::sleep(Duration::from_secs(3));
    assert!(worker.is_running(), "{}", worker.log_text());
    db.start_again();
    let want = decnet_rows().len();
    let deadline = Instant::now() + PATIENCE * 9;
    loop {
        let count: usize = db
            .sql_db("SELECT COUNT(*) FROM ttp_tag")
            .trim()
            .parse()
            .unwrap_or(0);
        if count >= want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{count} of {want} rows after the restart; log:\n{}",
            worker.log_text()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let log = worker.log_text();
    assert!(
        log.contains("unavailable for now"),
        "the outage was not seen:\n{log}"
    );
    // Said once as it starts (again only if the reason changes: a lost connection, then a
    // refused one), and once as it ends; the retries in between are debug lines.
    let said = log.matches("could not finish a batch").count();
    assert!((1..=2).contains(&said), "said {said} times:\n{log}");
    assert!(log.contains("went through after"), "{log}");
    compare_with_decnet(&db.url());
    worker.signal("TERM");
    let _ = worker.wait_exit(Duration::from_secs(10));
}

#[test]
fn a_server_not_reachable_at_start_is_waited_for_not_a_crash_loop() {
    let port = common::free_port().to_string();
    let mut worker = Worker::start(
        &["--no-bus"],
        &[
            ("DECNET_DB_TYPE", "mysql"),
            ("DECNET_DB_HOST", "127.0.0.1"),
            ("DECNET_DB_PORT", port.as_str()),
            ("DECNET_DB_PASSWORD", "pw-not-logged"),
        ],
    );
    worker.wait_for_log("cannot reach DECNET's database MySQL decnet@127.0.0.1");
    std::thread::sleep(Duration::from_secs(2));
    assert!(worker.is_running(), "{}", worker.log_text());
    assert!(worker.log_text().contains("trying again in"));
    assert!(!worker.log_text().contains("pw-not-logged"));
    worker.signal("TERM");
    assert!(worker.wait_exit(Duration::from_secs(5)).is_some());
}

/// A CA and a server certificate for 127.0.0.1 (and a second, unrelated CA), made with the
/// `openssl` command in `dir`: (ca, other ca, server cert, server key).
fn tls_files(dir: &Path) -> [String; 4] {
    let file = |name: &str| dir.join(name).display().to_string();
    let openssl = |args: &[&str]| {
        let output = std::process::Command::new("openssl")
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("openssl is needed for the TLS test: {e}"));
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    for ca in ["ca", "other-ca"] {
        let (key, cert) = (file(&format!("{ca}.key")), file(&format!("{ca}.pem")));
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN=ttp-worker test {ca}"),
            "-keyout",
            &key,
            "-out",
            &cert,
        ]);
    }
    let (key, csr, cert) = (file("server.key"), file("server.csr"), file("server.pem"));
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        &key,
        "-out",
        &csr,
    ]);
    let extensions = file("server.ext");
    fs::write(&extensions, "subjectAltName = IP:127.0.0.1\n").unwrap_or_else(|e| panic!("{e}"));
    openssl(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &file("ca.pem"),
        "-CAkey",
        &file("ca.key"),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &extensions,
        "-out",
        &cert,
    ]);
    [file("ca.pem"), file("other-ca.pem"), cert, key]
}

/// A server that takes TLS connections only: the URL's `ssl_ca` makes the worker's connection
/// TLS, checked against that CA; without TLS, or with another CA, it does not connect.
#[test]
fn a_url_asking_for_tls_gets_a_verified_tls_connection() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let [ca, other_ca, cert, key] = tls_files(dir.path());
    let db = MariaDb::start_with(&[
        &format!("--ssl-ca={ca}"),
        &format!("--ssl-cert={cert}"),
        &format!("--ssl-key={key}"),
    ]);
    Decnet::get().create(&db.url());
    // From now on a TCP connection without TLS is refused (the harness's socket still works).
    db.sql("SET GLOBAL require_secure_transport = ON");
    let password = password_file(&db, dir.path());
    let stats = |query: &str| {
        let url = format!("{}{query}", url_without_password(&db));
        let output = stats_by_flags(&url, &password);
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        assert!(!text.contains(&db.password), "{text}");
        (output.status.success(), text)
    };
    let (ok, text) = stats(&format!("?ssl_ca={ca}"));
    assert!(ok, "{text}");
    assert!(
        text.contains("(TLS)") && text.contains("tags            0"),
        "{text}"
    );

    // The same user and password without TLS (MariaDB answers "access denied").
    let (ok, text) = stats("");
    assert!(!ok, "a plain connection was accepted: {text}");

    let (ok, text) = stats(&format!("?ssl_ca={other_ca}"));
    assert!(
        !ok,
        "a server certificate from another CA was accepted: {text}"
    );
}
