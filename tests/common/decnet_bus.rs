//! DECNET's own socket bus for the bridge tests: its broker (`bus_worker`) and its client
//! (`UnixSocketBus`) from DECNET 1.0.0 on PyPI, in the venv [`super::decnet`] makes, driven by
//! `tests/decnet/decnet_bus.py` (ours).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::PATIENCE;
use super::decnet::Decnet;

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/decnet/decnet_bus.py")
}

fn python() -> Command {
    let mut command = Command::new(Decnet::get().python());
    command.arg(script()).stdin(Stdio::null());
    command
}

/// DECNET's broker on `socket`, killed when dropped.
pub struct Broker {
    child: Option<Child>,
    pub socket: PathBuf,
}

impl Broker {
    pub fn start(socket: &Path) -> Broker {
        let mut broker = Broker {
            child: None,
            socket: socket.to_owned(),
        };
        broker.launch();
        broker
    }

    fn launch(&mut self) {
        let child = python()
            .args(["broker".as_ref(), self.socket.as_os_str()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start DECNET's broker");
        self.child = Some(child);
        let deadline = Instant::now() + PATIENCE;
        while UnixStream::connect(&self.socket).is_err() {
            assert!(Instant::now() < deadline, "DECNET's broker did not start");
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills it, as a crash would; its socket file stays behind, as after a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Publishes `events` (`{"topic", "type", "payload"}`) with DECNET's client, one connection.
pub fn publish(socket: &Path, events: &[Value]) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    let mut out = std::fs::File::create(&file).unwrap();
    for event in events {
        writeln!(out, "{event}").unwrap();
    }
    drop(out);
    run_client(python().args(["publish".as_ref(), socket.as_os_str(), file.as_os_str()]));
}

/// Publishes `n` events of about 2 kB on `attacker.observed` as fast as DECNET's client goes.
pub fn flood(socket: &Path, n: usize) {
    run_client(python().args(["flood".as_ref(), socket.as_os_str(), n.to_string().as_ref()]));
}

/// Runs DECNET's client to its end, failing the test when it fails.
fn run_client(command: &mut Command) {
    let output = command.output().expect("cannot run DECNET's client");
    assert!(
        output.status.success(),
        "DECNET's client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// DECNET's client subscribed to a pattern, collecting what it receives.
pub struct Subscriber {
    child: Child,
    events: Arc<Mutex<Vec<Value>>>,
}

impl Subscriber {
    /// Subscribes and returns once DECNET's broker has the subscription.
    pub fn start(socket: &Path, pattern: &str) -> Subscriber {
        let mut child = python()
            .args(["subscribe".as_ref(), socket.as_os_str(), pattern.as_ref()])
            .args(["1000000", "600"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start DECNET's subscriber");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = lines.next().and_then(Result::ok);
        assert_eq!(
            ready.as_deref(),
            Some("ready"),
            "DECNET's subscriber did not start"
        );
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if let Ok(event) = serde_json::from_str(&line) {
                    sink.lock().unwrap().push(event);
                }
            }
        });
        Subscriber { child, events }
    }

    pub fn events(&self) -> Vec<Value> {
        self.events.lock().unwrap().clone()
    }

    /// Waits until `accept` likes what was received so far.
    pub fn wait_for(&self, what: &str, accept: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + PATIENCE * 3;
        loop {
            let events = self.events();
            if accept(&events) {
                return events;
            }
            assert!(
                Instant::now() < deadline,
                "DECNET's subscriber never saw {what}; it saw {} events",
                events.len()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
