//! `make run`'s local NATS server, through the Makefile itself: it runs in a session of its
//! own, so the Ctrl-C a terminal sends to `make run`'s process group stops only the worker,
//! and `make stop-local-nats` says what it did and succeeds when there is nothing to stop.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};
use std::thread;
use std::time::{Duration, Instant};

use common::free_port;

fn make(target: &str, run_dir: &Path, port: u16) -> Command {
    let mut command = Command::new("make");
    command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["--no-print-directory", target])
        .arg(format!("RUN_DIR={}", run_dir.display()))
        .arg(format!("NATS_PORT={port}"));
    command
}

fn ran(mut command: Command) -> Output {
    let output = command.output().expect("cannot run make");
    assert!(
        output.status.success(),
        "make failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Whether a NATS server answers on the port: it greets every connection with `INFO`.
fn nats_answers(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut greeting = [0u8; 4];
    stream.read_exact(&mut greeting).is_ok() && &greeting == b"INFO"
}

fn wait_until_gone(port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if !nats_answers(port) {
            return true;
        }
        thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn ctrl_c_to_make_runs_process_group_leaves_the_local_server_running() {
    let run_dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // `make local-nats` as `make run` starts it: in a process group of its own, as a
    // terminal's foreground job is.
    let mut local_nats = make("local-nats", run_dir.path(), port);
    local_nats.process_group(0);
    let child = local_nats.spawn().expect("cannot run make");
    let group = child.id() as i32;
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "make local-nats failed");
    assert!(nats_answers(port), "the server does not answer");

    // Ctrl-C: SIGINT to the whole foreground process group.
    let status = Command::new("kill")
        .args(["-INT", "--", &format!("-{group}")])
        .status()
        .unwrap();
    // Nothing of the group may be left to signal: the server is in a session of its own.
    assert!(
        !status.success(),
        "the server was still in make's process group"
    );
    thread::sleep(Duration::from_millis(300));
    assert!(nats_answers(port), "the server did not survive Ctrl-C");

    let stopped = ran(make("stop-local-nats", run_dir.path(), port));
    let said = String::from_utf8_lossy(&stopped.stdout);
    assert!(said.contains("stopped the local nats-server"), "{said}");
    assert!(wait_until_gone(port), "the server still answers");

    // Again, with nothing to stop: it says so and succeeds.
    let again = ran(make("stop-local-nats", run_dir.path(), port));
    let said = String::from_utf8_lossy(&again.stdout);
    assert!(said.contains("no local nats-server to stop"), "{said}");
}

#[test]
fn a_stale_pid_file_is_cleared_with_a_word() {
    let run_dir = tempfile::tempdir().unwrap();
    let port = free_port();
    ran(make("local-nats", run_dir.path(), port));
    let pid_file = run_dir.path().join("nats-server.pid");
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    // The server goes away behind make's back, its pid file left behind.
    let killed = Command::new("kill")
        .args(["-KILL", pid.trim()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(wait_until_gone(port));
    std::fs::write(&pid_file, &pid).unwrap();

    let stopped = ran(make("stop-local-nats", run_dir.path(), port));
    let said = String::from_utf8_lossy(&stopped.stdout);
    assert!(said.contains("had already stopped"), "{said}");
    assert!(!pid_file.exists());
}
