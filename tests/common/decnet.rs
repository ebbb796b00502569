//! DECNET's own database code, for tests that compare what ttp-worker writes with what DECNET
//! writes and reads: DECNET 1.0.0 from PyPI in a Python venv cached at `target/decnet-venv`,
//! driven by `tests/decnet/decnet_db.py` (ours). DECNET is AGPL-3.0 and is never copied into
//! the tree; the venv is made on first use and reused by every later test run.
//!
//! ```ignore
//! let decnet = Decnet::get();
//! decnet.create(&url);
//! decnet.seed_dev_1k(&url);
//! let tags = decnet.read(&url, "all-tags", None);
//! ```
//!
//! URLs are a SQLite file path or `mysql://user:password@127.0.0.1:PORT/database`
//! ([`super::mariadb::MariaDb::url`]).

use std::ffi::OsStr;
use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

/// What the venv holds: DECNET itself (installed without its dependencies: its full list
/// pulls in scapy, docker, fastapi, …) and exactly what its database layer imports, pinned,
/// each installed with `--no-deps` so the set cannot drift.
pub const REQUIREMENTS: &[&str] = &[
    "decnet==1.0.0",
    // ORM and schema: SQLModel over SQLAlchemy's asyncio layer; Alembic runs the migrations
    // DECNET applies at startup (Mako, MarkupSafe are Alembic's).
    "sqlmodel==0.0.50",
    "SQLAlchemy==2.1.9",
    "greenlet==3.5.6",
    "alembic==1.20.1",
    "Mako==1.4.3",
    "MarkupSafe==3.0.4",
    // The two drivers DECNET's engines name: sqlite+aiosqlite, mysql+asyncmy.
    "aiosqlite==0.22.1",
    "asyncmy==0.2.18",
    // Models.
    "pydantic==2.14.4",
    "pydantic_core==2.50.5",
    "annotated-types==0.8.0",
    "typing-inspection==0.4.5",
    "typing_extensions==4.16.0",
    // Imported by the repository package: decnet/env.py (dotenv), web/auth.py (JWT, bcrypt
    // for the admin user `initialize()` seeds), state JSON (orjson).
    "python-dotenv==1.2.4",
    "PyJWT==2.15.1",
    "bcrypt==5.0.0",
    "orjson==3.13.0",
];

/// How long a lock file may sit before another test process takes it over (a killed
/// `cargo test` leaves one behind); a first creation takes well under a minute.
const STALE_LOCK: Duration = Duration::from_secs(600);

/// A ready DECNET venv and our driver script.
pub struct Decnet {
    python: PathBuf,
    script: PathBuf,
    /// An empty directory the script runs in: DECNET reads `.env` files from its cwd.
    workdir: PathBuf,
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// Removes the lock file when the creator is done (or panics).
struct LockGuard(PathBuf);

impl Drop for LockGuard {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

fn take_lock(lock: &Path) -> LockGuard {
    let deadline = Instant::now() + STALE_LOCK + Duration::from_secs(60);
    loop {
        match fs::File::create_new(lock) {
            Ok(mut f) => {
                let _ = writeln!(f, "{}", std::process::id());
                return LockGuard(lock.to_path_buf());
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                if lock_is_stale(lock) {
                    let _ = fs::remove_file(lock);
                    continue;
                }
                assert!(
                    Instant::now() < deadline,
                    "{} has been held for too long; remove it if no test is running",
                    lock.display()
                );
                thread::sleep(Duration::from_millis(250));
            }
            Err(e) => panic!("cannot create {}: {e}", lock.display()),
        }
    }
}

/// A lock whose holder has exited, or that is older than [`STALE_LOCK`].
fn lock_is_stale(lock: &Path) -> bool {
    let Ok(text) = fs::read_to_string(lock) else {
        return false; // vanished, or being written: look again
    };
    if let Ok(pid) = text.trim().parse::<u32>()
        && !Path::new(&format!("/proc/{pid}")).exists()
    {
        return true;
    }
    fs::metadata(lock)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age > STALE_LOCK)
}

fn base_python() -> String {
    std::env::var("TTP_DECNET_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

fn run_checked(what: &str, command: &mut Command) -> Output {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    if !output.status.success() {
        panic!(
            "{what} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    output
}

/// Makes the venv at `venv` (whatever was there is replaced).
fn create_venv(venv: &Path) {
    let _ = fs::remove_dir_all(venv);
    let python = base_python();
    let version = run_checked(
        "checking the Python version",
        Command::new(&python).args([
            "-c",
            "import sys; print(sys.version_info >= (3, 11)); import venv",
        ]),
    );
    assert!(
        String::from_utf8_lossy(&version.stdout).trim() == "True",
        "DECNET needs Python >= 3.11; `{python}` is older (set TTP_DECNET_PYTHON)"
    );
    run_checked(
        "python3 -m venv (Debian: apt-get install python3-venv)",
        Command::new(&python).arg("-m").arg("venv").arg(venv),
    );
    let output = Command::new(venv.join("bin/python"))
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-input",
            "--no-deps",
            "--only-binary=:all:",
        ])
        .args(REQUIREMENTS)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run the venv's pip");
    if !output.status.success() {
        let _ = fs::remove_dir_all(venv);
        panic!(
            "pip could not install DECNET's database layer into {}.\n\
             The DECNET harness downloads decnet==1.0.0 and its database dependencies from \
             PyPI the first time it runs (about 19 MB); is https://pypi.org reachable (or \
             PIP_INDEX_URL set to a mirror)?\npip said:\n{}{}",
            venv.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Decnet {
    /// The shared handle; the first call in any test process creates `target/decnet-venv`
    /// if it is missing or was made from another [`REQUIREMENTS`] list, with a lock file
    /// so parallel test processes make it once.
    pub fn get() -> &'static Decnet {
        static DECNET: OnceLock<Decnet> = OnceLock::new();
        DECNET.get_or_init(|| {
            let target = target_dir();
            fs::create_dir_all(&target).expect("cannot create the target directory");
            let venv = target.join("decnet-venv");
            let marker = venv.join("ttp-worker-requirements.txt");
            let wanted = REQUIREMENTS.join("\n") + "\n";
            let ready = || fs::read_to_string(&marker).is_ok_and(|t| t == wanted);
            if !ready() {
                let _lock = take_lock(&target.join("decnet-venv.lock"));
                if !ready() {
                    let started = Instant::now();
                    create_venv(&venv);
                    fs::write(&marker, &wanted).expect("cannot write the venv's marker");
                    eprintln!(
                        "DECNET venv created at {} in {:.1} s",
                        venv.display(),
                        started.elapsed().as_secs_f64()
                    );
                }
            }
            let workdir = venv.join("cwd");
            fs::create_dir_all(&workdir).expect("cannot create the venv's work directory");
            Decnet {
                python: venv.join("bin/python"),
                script: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/decnet/decnet_db.py"),
                workdir,
            }
        })
    }

    /// The venv's interpreter (DECNET importable).
    pub fn python(&self) -> &Path {
        &self.python
    }

    /// Runs `decnet_db.py ARGS…`: its JSON output, or what went wrong (exit status and the
    /// script's stderr) — for tests that expect a failure, e.g. with the database down.
    pub fn try_run<S: AsRef<OsStr>>(&self, args: &[S]) -> Result<Value, String> {
        let output = Command::new(&self.python)
            .arg(&self.script)
            .args(args)
            .current_dir(&self.workdir)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.python.display()))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            return Err(format!(
                "decnet_db.py {}: {}\n{stderr}",
                describe(args),
                output.status
            ));
        }
        serde_json::from_str(stdout.trim()).map_err(|e| {
            format!(
                "decnet_db.py {}: output is not JSON ({e}):\n{stdout}\n{stderr}",
                describe(args)
            )
        })
    }

    /// [`Decnet::try_run`], failing the test on an error.
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Value {
        self.try_run(args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// DECNET's whole schema on `url`, the way DECNET makes it at startup (its repository's
    /// `initialize()`: Alembic migrations to head, then the admin user). Returns
    /// `{"ok", "backend", "tables"}`.
    pub fn create(&self, url: &str) -> Value {
        self.run(&["create", url])
    }

    /// Seeds attackers, identities and attacker_intel rows from a world file and a corpus;
    /// returns the counts (`attackers`, `identities`, `intel_rows`, …).
    pub fn seed(&self, url: &str, world: &Path, corpus: &Path) -> Value {
        self.run(&[
            OsStr::new("seed"),
            OsStr::new(url),
            world.as_os_str(),
            corpus.as_os_str(),
        ])
    }

    /// [`Decnet::seed`] with the dev-1k world and corpus from the compat fixtures.
    pub fn seed_dev_1k(&self, url: &str) -> Value {
        self.seed(
            url,
            &super::corpus::required("corpus/dev-1k.world.json"),
            &super::corpus::required("corpus/dev-1k.jsonl"),
        )
    }

    /// One more attacker row; returns `{"uuid", "ip", "resolved"}` (`resolved`: what
    /// DECNET's IP lookup now answers for `ip`).
    pub fn add_attacker(&self, url: &str, ip: &str, uuid: &str) -> Value {
        self.run(&["add-attacker", url, ip, uuid])
    }

    /// A read through DECNET's repository: `all-tags`, `by-attacker UUID`, `by-identity UUID`,
    /// `by-session ID`, `by-campaign UUID`, `techniques`, `tags-by-attacker UUID`,
    /// `navigator [IDENTITY]`, `schema`, `attacker-by-ip IP`.
    pub fn read(&self, url: &str, what: &str, arg: Option<&str>) -> Value {
        let mut args = vec!["read", url, what];
        args.extend(arg);
        self.run(&args)
    }

    /// Every `ttp_tag` row as DECNET reads it back, in uuid order.
    pub fn all_tags(&self, url: &str) -> Vec<Value> {
        match self.read(url, "all-tags", None) {
            Value::Array(rows) => rows,
            other => panic!("read all-tags: not a list: {other}"),
        }
    }

    /// Inserts tags (one JSON object per line, DECNET's tag columns) through DECNET's own
    /// `insert_tags`; returns `{"given", "inserted"}`.
    pub fn insert_tags(&self, url: &str, tags_jsonl: &Path) -> Value {
        self.run(&[
            OsStr::new("insert-tags"),
            OsStr::new(url),
            tags_jsonl.as_os_str(),
        ])
    }
}

fn describe<S: AsRef<OsStr>>(args: &[S]) -> String {
    args.iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}
