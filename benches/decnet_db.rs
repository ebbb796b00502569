//! End to end into DECNET's own database: publisher → nats-server → ttp-worker (release) →
//! DECNET's SQLite file, then DECNET's MariaDB database, all on this machine. `make
//! bench-decnet` (or `cargo bench --bench decnet_db`; `TTP_BENCH_DATABASES=sqlite` or `mysql`
//! runs one of them, `TTP_BENCH_RATES=10000,15000` chooses the offered rates).
//!
//! DECNET's own code (from PyPI, in the test harness's venv) creates the schema and seeds the
//! dev-1k world; the corpus is dev-1k repeated with distinct ids per copy, and every attacker
//! and identity row is copied under each copy's ids, so that the copies' tags can go into
//! DECNET's table instead of waiting for rows. The MariaDB server is the harness's own
//! (`tests/common/mariadb.rs`: a throw-away data directory, the package's default settings
//! but for a 256 MiB buffer pool; durable commits, `innodb_flush_log_at_trx_commit = 1`).
//! Prints, per offered rate, what the worker processed; nothing is asserted.

#![allow(deprecated)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use common::corpus::{corpus_lines, distinct_copies, reference_args, subject_of};
use common::decnet::Decnet;
use common::mariadb::MariaDb;
use common::{HealthWatch, NatsServer, Worker, counter, free_port};

const COPIES: usize = 50;
/// The tests' 32 MiB pool is smaller than the table this run writes (DECNET's `ttp_tag`
/// and its thirteen indexes); any database server would get more. Debian's default is 128 MiB.
const BUFFER_POOL: &str = "--innodb-buffer-pool-size=256M";
const OFFERED_RATES: [u64; 5] = [5_000, 10_000, 15_000, 20_000, 25_000];

/// DECNET's database, seeded once; each run starts from the seed without tags.
enum Database {
    /// The seeded file, copied for each run.
    Sqlite { seeded: PathBuf },
    /// The seeded server; each run deletes the tags of the one before.
    Mysql(MariaDb),
}

/// One run's view of the database: the worker's settings and a way to count the rows.
enum Target {
    Sqlite(PathBuf),
    Mysql { url: String, password_file: PathBuf },
}

fn main() {
    let lines = distinct_copies(&corpus_lines(), COPIES);
    println!(
        "ttp-worker into DECNET's database ({} cores): dev-1k x{COPIES} with distinct ids = {} events",
        thread::available_parallelism().map_or(1, |n| n.get()),
        lines.len()
    );
    let rates: Vec<u64> = std::env::var("TTP_BENCH_RATES")
        .ok()
        .map(|v| v.split(',').filter_map(|r| r.trim().parse().ok()).collect())
        .unwrap_or_else(|| OFFERED_RATES.to_vec());
    let chosen = std::env::var("TTP_BENCH_DATABASES").unwrap_or_else(|_| "sqlite,mysql".into());
    let template = tempfile::tempdir().unwrap();
    for kind in chosen.split(',').map(str::trim) {
        let database = match kind {
            "sqlite" => Database::Sqlite {
                seeded: seeded_sqlite(template.path()),
            },
            "mysql" => Database::Mysql(seeded_mysql()),
            other => panic!("TTP_BENCH_DATABASES: unknown database {other:?} (sqlite, mysql)"),
        };
        for durable in [false, true] {
            let mode = format!("{kind} {}", if durable { "durable" } else { "core" });
            let mut sustained = None;
            for &rate in &rates {
                let dir = tempfile::tempdir().unwrap();
                let target = database.fresh(dir.path());
                let (published, processed, rows, held) =
                    throughput(&lines, &target, &database, durable, rate);
                println!(
                    "{mode:>14}: offered {rate:>6}/s (published at {published:>6.0}/s) -> processed {processed:>6.0}/s, {rows} rows in DECNET's ttp_tag, {held} messages held"
                );
                // Kept up: at least 95 % of what was really offered.
                if processed < 0.95 * published.min(rate as f64) {
                    break;
                }
                sustained = Some(rate);
            }
            match sustained {
                Some(rate) => println!("{mode:>14}: sustains {rate} events/s"),
                None => println!("{mode:>14}: did not sustain {} events/s", rates[0]),
            }
        }
    }
}

impl Database {
    /// The seed again, without the tags of an earlier run.
    fn fresh(&self, dir: &Path) -> Target {
        match self {
            Database::Sqlite { seeded } => {
                let db = dir.join("decnet.db");
                std::fs::copy(seeded, &db).unwrap();
                Target::Sqlite(db)
            }
            Database::Mysql(server) => {
                // Not DELETE: the server would purge its rows from every index in the
                // background of the next run.
                server.sql_db("TRUNCATE TABLE ttp_tag");
                let password_file = dir.join("db-password");
                std::fs::write(&password_file, &server.password).unwrap();
                Target::Mysql {
                    url: format!(
                        "mysql://{}@127.0.0.1:{}/{}",
                        server.user, server.port, server.database
                    ),
                    password_file,
                }
            }
        }
    }

    fn rows(&self, target: &Target) -> i64 {
        match (self, target) {
            (Database::Mysql(server), _) => server
                .sql_db("SELECT COUNT(*) FROM ttp_tag")
                .trim()
                .parse()
                .unwrap(),
            (_, Target::Sqlite(db)) => rusqlite::Connection::open(db)
                .unwrap()
                .query_row("SELECT COUNT(*) FROM ttp_tag", [], |r| r.get(0))
                .unwrap(),
            (_, Target::Mysql { .. }) => unreachable!("a MySQL target comes from a MySQL database"),
        }
    }
}

/// DECNET's schema and the dev-1k world, made by DECNET's code, plus copies of every attacker
/// and identity row under the ids `distinct_copies` gives each copy (their addresses made
/// unique, since an address with two rows resolves to nobody).
fn seeded_sqlite(dir: &Path) -> PathBuf {
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

/// [`seeded_sqlite`] on a MariaDB server of the harness's.
fn seeded_mysql() -> MariaDb {
    let server = MariaDb::start_with(&[BUFFER_POOL]);
    let decnet = Decnet::get();
    decnet.create(&server.url());
    decnet.seed_dev_1k(&server.url());
    for table in ["attackers", "attacker_identities"] {
        let columns: Vec<String> = server
            .sql(&format!(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = '{}' \
                 AND table_name = '{table}' ORDER BY ordinal_position",
                server.database
            ))
            .lines()
            .map(str::to_owned)
            .collect();
        let mut sql = format!(
            "CREATE TEMPORARY TABLE originals AS SELECT * FROM {table} WHERE length(uuid) = 36;"
        );
        for copy in 1..COPIES {
            let select: Vec<String> = columns
                .iter()
                .map(|c| match c.as_str() {
                    "uuid" => format!("CONCAT(SUBSTRING(uuid, 1, 32), '{copy:04x}')"),
                    "ip" => format!("CONCAT(ip, '.copy{copy}')"),
                    other => format!("`{other}`"),
                })
                .collect();
            let quoted: Vec<String> = columns.iter().map(|c| format!("`{c}`")).collect();
            sql.push_str(&format!(
                "INSERT INTO {table} ({}) SELECT {} FROM originals;",
                quoted.join(", "),
                select.join(", ")
            ));
        }
        server.sql_db(&sql);
    }
    server
}

/// Publishes every line at `rate` events/s and times the worker until it has processed them
/// all: published/s, processed/s, rows in DECNET's table, messages held.
fn throughput(
    lines: &[String],
    target: &Target,
    database: &Database,
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
    let local = state.path().join("ttp.db").display().to_string();
    let bus = server.url();
    let mut env: Vec<(&str, &str)> = vec![
        ("DECNET_BUS_URL", &bus),
        ("DECNET_TTP_DB", &local),
        ("DECNET_TTP_HEARTBEAT_SECS", "0.05"),
        ("RUST_LOG", "warn"),
    ];
    match target {
        Target::Sqlite(db) => env.push(("DECNET_DB_PATH", db.to_str().unwrap())),
        Target::Mysql { url, password_file } => env.extend([
            ("DECNET_DB_TYPE", "mysql"),
            ("DECNET_DB_URL", url.as_str()),
            ("DECNET_DB_PASSWORD_FILE", password_file.to_str().unwrap()),
        ]),
    }
    let _worker = Worker::start(&args, &env);
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
    let rows = database.rows(target);
    (
        total as f64 / published,
        counter(&beat, "processed") as f64 / (done - started).as_secs_f64(),
        rows,
        counter(&beat, "held"),
    )
}
