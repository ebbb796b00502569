//! Test harness shared by the integration tests: a real `nats-server` on a free loopback port,
//! started and stopped here, and the real `ttp-worker` binary run as a child process.

#![allow(dead_code)] // each test file uses its own subset
#![allow(deprecated)] // the sync nats client, see src/bus/mod.rs

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

pub mod corpus;
pub mod decnet;
pub mod decnet_bus;
pub mod inproc;
pub mod mariadb;

/// A tag's members, in the order the `tag` command writes them and the store returns them
/// (docs/tagging.md §4.1); the store adds `created_at`.
pub const TAG_KEYS: [&str; 15] = [
    "uuid",
    "source_kind",
    "source_id",
    "attacker_uuid",
    "identity_uuid",
    "attacker_ip",
    "session_id",
    "decky_id",
    "tactic",
    "technique_id",
    "sub_technique_id",
    "confidence",
    "rule_id",
    "rule_version",
    "evidence",
];

/// How long to wait for anything a test expects to happen "soon"; generous, for loaded CI.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot find a free loopback port")
}

fn nats_server_binary() -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':').chain([
        "/usr/sbin",
        "/usr/bin",
        "/usr/local/bin",
        "/usr/local/sbin",
    ]) {
        let candidate = PathBuf::from(dir).join("nats-server");
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "nats-server is not installed; the integration tests need a real server. \
         Install it with `apt-get install nats-server` (`make test` does this for you)."
    );
}

/// A `nats-server` child on 127.0.0.1, killed when dropped.
pub struct NatsServer {
    child: Option<Child>,
    pub port: u16,
    pub monitor_port: u16,
    store_dir: PathBuf,
    jetstream: bool,
    /// Further command-line arguments (a `-c` config file, TLS flags), see [`NatsServer::start_with`].
    extra_args: Vec<String>,
}

impl NatsServer {
    pub fn start() -> NatsServer {
        NatsServer::start_on(free_port(), false)
    }

    pub fn start_jetstream() -> NatsServer {
        NatsServer::start_on(free_port(), true)
    }

    /// Starts a server on `port` (e.g. one a worker is already trying to reach).
    pub fn start_on(port: u16, jetstream: bool) -> NatsServer {
        NatsServer::launched(port, jetstream, &[])
    }

    /// Starts a core server with further arguments, e.g. `["-c", "auth.conf"]` or TLS flags.
    pub fn start_with(args: &[&str]) -> NatsServer {
        NatsServer::launched(free_port(), false, args)
    }

    fn launched(port: u16, jetstream: bool, args: &[&str]) -> NatsServer {
        let mut server = NatsServer {
            child: None,
            port,
            monitor_port: free_port(),
            store_dir: std::env::temp_dir().join(format!("ttp-worker-test-js-{port}")),
            jetstream,
            extra_args: args.iter().map(|a| a.to_string()).collect(),
        };
        server.launch();
        server
    }

    fn launch(&mut self) {
        let mut command = Command::new(nats_server_binary());
        command
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-m", &self.monitor_port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if self.jetstream {
            command.args(["-js", "-sd"]).arg(&self.store_dir);
        }
        command.args(&self.extra_args);
        self.child = Some(command.spawn().expect("cannot start nats-server"));
        let deadline = Instant::now() + PATIENCE;
        while TcpStream::connect(("127.0.0.1", self.port)).is_err()
            || TcpStream::connect(("127.0.0.1", self.monitor_port)).is_err()
        {
            assert!(
                Instant::now() < deadline,
                "nats-server did not start on {}",
                self.port
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server (the way a crash would) and waits for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same ports.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// A plain client, as any DECNET producer would be.
    pub fn client(&self) -> nats::Connection {
        nats::Options::new()
            .with_name("test-client")
            .max_reconnects(None)
            .connect(self.url().as_str())
            .expect("test client cannot connect")
    }

    /// `GET` on the monitoring port, parsed as JSON.
    pub fn monitor(&self, path: &str) -> Value {
        let mut stream =
            TcpStream::connect(("127.0.0.1", self.monitor_port)).expect("monitor port");
        write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let body = response.split("\r\n\r\n").nth(1).unwrap_or("");
        serde_json::from_str(body).unwrap_or_else(|e| panic!("monitor {path}: {e}: {body}"))
    }

    /// Connections named `name`, with their subscriptions.
    pub fn connections_named(&self, name: &str) -> Vec<Value> {
        let connz = self.monitor("/connz?subs=1");
        connz["connections"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c["name"] == name)
            .collect()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.store_dir);
    }
}

/// The binary this build made, or for a benchmark that compares two builds side by side the one
/// `TTP_BENCH_WORKER` names (tests leave it unset).
fn worker_binary() -> PathBuf {
    std::env::var_os("TTP_BENCH_WORKER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_ttp-worker")))
}

/// Runs one `ttp-worker` command (`tags`, `stats`, …) to its end, with nothing of the test's
/// environment but `env`.
pub fn run_command(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    Command::new(worker_binary())
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("cannot run ttp-worker {args:?}: {e}"))
}

/// The `ttp-worker` binary as a child process, its stderr collected line by line.
pub struct Worker {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    /// Reads the worker's stderr into `log`; joined once the worker exited, so that the log
    /// then holds its last line too.
    reader: Option<thread::JoinHandle<()>>,
    /// The store of a worker not given one; removed with the worker.
    _state: Option<tempfile::TempDir>,
}

impl Worker {
    /// Starts the daemon with `args` and `env` on top of a clean environment (`RUST_LOG=debug`).
    /// Without `DECNET_TTP_DB` in `env`, the worker gets a store in a fresh temporary directory.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Worker {
        let mut command = Command::new(worker_binary());
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "debug");
        let state = if env.iter().any(|(k, _)| *k == "DECNET_TTP_DB") {
            None
        } else {
            let dir = tempfile::tempdir().expect("temporary directory");
            command.env("DECNET_TTP_DB", dir.path().join("ttp.db"));
            Some(dir)
        };
        command
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("cannot start ttp-worker");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let reader = thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Worker {
            child,
            log,
            reader: Some(reader),
            _state: state,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Waits until a stderr line contains `needle`.
    pub fn wait_for_log(&self, needle: &str) {
        let deadline = Instant::now() + PATIENCE;
        while !self.log.lock().unwrap().iter().any(|l| l.contains(needle)) {
            assert!(
                Instant::now() < deadline,
                "worker never logged {needle:?}; its log:\n{}",
                self.log_text()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .expect("cannot run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Waits up to `limit` for the process to exit; `None` if it is still running.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                if let Some(reader) = self.reader.take() {
                    let _ = reader.join();
                }
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Watches `system.ttp.health` through its own connection.
pub struct HealthWatch {
    subscription: nats::Subscription,
    _client: nats::Connection,
}

impl HealthWatch {
    pub fn new(server: &NatsServer) -> HealthWatch {
        let client = server.client();
        let subscription = client.subscribe("system.ttp.health").unwrap();
        client.flush().unwrap();
        HealthWatch {
            subscription,
            _client: client,
        }
    }

    /// The next beat's payload and the time it arrived.
    pub fn next_beat(&self) -> (Map<String, Value>, Instant) {
        let message = self
            .subscription
            .next_timeout(PATIENCE)
            .expect("no heartbeat on system.ttp.health");
        let envelope: Value = serde_json::from_slice(&message.data).unwrap();
        assert_eq!(envelope["topic"], "system.ttp.health");
        assert_eq!(envelope["type"], "health");
        let payload = envelope["payload"].as_object().cloned().unwrap();
        (payload, Instant::now())
    }

    /// Skips beats until `accept` likes one.
    pub fn beat_where(
        &self,
        what: &str,
        accept: impl Fn(&Map<String, Value>) -> bool,
    ) -> Map<String, Value> {
        self.beat_within(PATIENCE, what, accept)
    }

    /// [`HealthWatch::beat_where`] for slow things: up to `patience`.
    pub fn beat_within(
        &self,
        patience: Duration,
        what: &str,
        accept: impl Fn(&Map<String, Value>) -> bool,
    ) -> Map<String, Value> {
        let deadline = Instant::now() + patience;
        loop {
            assert!(Instant::now() < deadline, "no heartbeat where {what}");
            let (beat, _) = self.next_beat();
            if accept(&beat) {
                return beat;
            }
        }
    }
}

pub fn counter(beat: &Map<String, Value>, name: &str) -> u64 {
    beat.get(name)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("heartbeat has no counter {name}: {beat:?}"))
}

/// A sample subject for each `TOPICS` pattern (the canary wildcard gets a real token id).
pub fn sample_subjects() -> Vec<String> {
    ttp_worker::topics::TOPICS
        .iter()
        .map(|p| p.replace('>', "83f0584e-f954-4d16-a133-177bc92b8b8a.triggered"))
        .collect()
}

/// A well-formed envelope body for `subject`.
pub fn envelope_body(subject: &str, kind: &str, payload: Value) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "v": 1, "id": "0123456789abcdef0123456789abcdef", "topic": subject,
        "type": kind, "ts": 1777703010.5, "payload": payload,
    }))
    .unwrap()
}

/// A process's peak resident memory (`VmHWM`), in KiB.
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}
