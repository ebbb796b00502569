//! The `tag` and `check-rules` commands as a user runs them: the real binary, real files.

mod common;

use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::TAG_KEYS;
use common::corpus::compat;
use serde_json::Value;

fn ttp_worker() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ttp-worker"));
    command.env_clear().env("RUST_LOG", "warn");
    command
}

#[test]
fn tag_reads_stdin_and_prints_every_reference_tag_with_the_documented_keys() {
    let corpus = std::fs::read(compat("corpus/dev-1k.jsonl")).expect("compat corpus");
    let mut child = ttp_worker()
        .args(["tag", "--no-builtin-rules"])
        .env("DECNET_TTP_RULES_DIR", compat("decnet-rules"))
        .env("DECNET_TTP_INTEL_MAPS", compat("decnet-intel"))
        .env("DECNET_TTP_ANCHORS", compat("corpus/dev-1k.anchors.json"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&corpus).unwrap());
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(output.status.success());

    let mut printed = HashSet::new();
    let stdout = String::from_utf8(output.stdout).unwrap();
    for line in stdout.lines() {
        let tag: serde_json::Map<String, Value> = serde_json::from_str(line).unwrap();
        let keys: Vec<&str> = tag.keys().map(String::as_str).collect();
        assert_eq!(keys, TAG_KEYS, "{line}");
        printed.insert(tag["uuid"].as_str().unwrap().to_owned());
    }
    let expected = std::fs::read_to_string(compat("corpus/dev-1k.expected.jsonl")).unwrap();
    let missing: Vec<String> = expected
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["uuid"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .filter(|uuid| !printed.contains(uuid))
        .collect();
    assert!(
        missing.is_empty(),
        "{} reference tags missing: {missing:?}",
        missing.len()
    );

    // Each uuid once, as a store keeps them; the summary counts the repeats left out.
    assert_eq!(printed.len(), stdout.lines().count());
    let stderr = String::from_utf8(output.stderr).unwrap();
    let summary = stderr.lines().last().unwrap();
    assert!(summary.contains("1000 events"), "{summary}");
    assert!(
        summary.contains(&format!("{} tags (", printed.len())),
        "{summary}"
    );
}

/// `tag` with DECNET's pack on `input`: exit success, stdout, stderr.
fn tag_reference(extra: &[&str], input: &[u8]) -> (String, String) {
    let mut child = ttp_worker()
        .args(["tag", "--no-builtin-rules"])
        .args(extra)
        .env("DECNET_TTP_RULES_DIR", compat("decnet-rules"))
        .env("DECNET_TTP_INTEL_MAPS", compat("decnet-intel"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input).unwrap());
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(output.status.success());
    (
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

/// `--all` prints what the rules produce, repeats included; the default leaves them out.
#[test]
fn tag_all_prints_every_occurrence() {
    let line = r#"{"topic":"attacker.session.ended","payload":{"session_id":"s1","attacker_uuid":"A","commands":["cat /etc/shadow"]}}"#;
    let input = format!("{line}\n{line}\n");
    let (first, stderr) = tag_reference(&[], input.as_bytes());
    let (all, _) = tag_reference(&["--all"], input.as_bytes());
    assert!(!first.is_empty());
    assert_eq!(all, format!("{first}{first}"));
    let repeats = first.lines().count();
    assert!(
        stderr.contains(&format!("({repeats} repeated uuids left out)")),
        "{stderr}"
    );
}

/// DECNET's R0033 on e-mail discards the event's tags every time; the log says so once, and
/// the summary counts every event.
#[test]
fn a_rule_failing_on_every_event_is_logged_once_and_counted_each_time() {
    let corpus = std::fs::read_to_string(compat("corpus/dev-1k.jsonl")).unwrap();
    let ransom_mail = corpus
        .lines()
        .find(|line| line.contains("msg49458"))
        .expect("the corpus' ransom e-mail");
    let input: String = (0..5)
        .map(|n| ransom_mail.replace("msg49458", &format!("msg{n}")) + "\n")
        .collect();
    let (_, stderr) = tag_reference(&[], input.as_bytes());
    let logged = stderr.lines().filter(|l| l.contains("rule R0033")).count();
    assert_eq!(logged, 1, "{stderr}");
    let summary = stderr.lines().last().unwrap();
    assert!(
        summary.contains("5 lifter warnings (5 events discarded)"),
        "{summary}"
    );
}

#[test]
fn tag_reports_malformed_lines_with_their_numbers_and_goes_on() {
    let input = tempfile("tag-input.jsonl");
    std::fs::write(
        &input,
        "not json\n{\"topic\":\"attacker.observed\",\"payload\":{\"attacker_ip\":\"203.0.113.9\"}}\n{\"payload\":{}}\n",
    )
    .unwrap();
    let output = ttp_worker().arg("tag").arg(&input).output().unwrap();
    // The good line is tagged; the bad ones are a problem found.
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.lines().last().unwrap().starts_with("tag: 1 events"),
        "{stderr}"
    );
    assert!(stderr.contains("line 1"), "{stderr}");
    assert!(stderr.contains("line 3"), "{stderr}");
    assert!(
        stderr.lines().last().unwrap().contains("2 malformed"),
        "{stderr}"
    );
}

#[test]
fn check_rules_passes_the_reference_pack_and_names_a_broken_rule() {
    let output = ttp_worker()
        .args(["check-rules", "--no-builtin-rules", "--rules"])
        .arg(compat("decnet-rules"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.starts_with("58 rules loaded"), "{stdout}");

    let dir = tempfile("broken-rules");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(compat("decnet-rules/R0012.yaml"), dir.join("R0012.yaml")).unwrap();
    std::fs::write(dir.join("R9999.yaml"), "rule_id: R9999\nname: [unclosed\n").unwrap();
    let output = ttp_worker()
        .args(["check-rules", "--no-builtin-rules", "--rules"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("R9999.yaml"), "{stderr}");
    assert!(
        String::from_utf8(output.stdout)
            .unwrap()
            .starts_with("1 rules loaded")
    );
}

/// An empty pack tags nothing, which is almost always a wrong directory: check-rules fails
/// and the daemon does not start, each naming where it looked, unless `--allow-empty`.
#[test]
fn no_rules_at_all_is_refused_unless_allowed() {
    let empty = tempfile("empty-rules");
    std::fs::create_dir_all(&empty).unwrap();
    // A file that does not load leaves the pack just as empty.
    std::fs::write(
        empty.join("R9999.yaml"),
        "rule_id: R9999\nname: [unclosed\n",
    )
    .unwrap();
    let shown = empty.display().to_string();
    let check = ttp_worker()
        .args(["check-rules", "--rules"])
        .arg(&empty)
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(1), "{check:?}");
    let stderr = String::from_utf8(check.stderr).unwrap();
    assert!(stderr.contains("R9999.yaml"), "{stderr}");
    assert!(
        stderr.contains(&format!("no rules loaded from {shown}")),
        "{stderr}"
    );

    let daemon = ttp_worker()
        .args(["--rules"])
        .arg(&empty)
        .env("DECNET_BUS_ENABLED", "false")
        .env("DECNET_TTP_DB", empty.join("ttp.db"))
        .output()
        .unwrap();
    assert_eq!(daemon.status.code(), Some(2), "{daemon:?}");
    let stderr = String::from_utf8(daemon.stderr).unwrap();
    assert!(
        stderr.contains(&format!("no rules loaded from {shown}")),
        "{stderr}"
    );

    let allowed = ttp_worker()
        .args(["check-rules", "--no-builtin-rules", "--allow-empty"])
        .output()
        .unwrap();
    assert_eq!(allowed.status.code(), Some(0), "{allowed:?}");
    let allowed = ttp_worker()
        .args(["check-rules", "--no-builtin-rules"])
        .env("DECNET_TTP_ALLOW_EMPTY_RULES", "1")
        .output()
        .unwrap();
    assert_eq!(allowed.status.code(), Some(0), "{allowed:?}");
}

/// What `tag` writes on stderr for DECNET's pack on the dev corpus: its real problems and the
/// summary, no informational lines (they are for `RUST_LOG=info`).
#[test]
fn tag_says_only_problems_and_the_summary_on_stderr() {
    let output = ttp_worker()
        .args(["tag", "--no-builtin-rules", "--rules"])
        .arg(compat("decnet-rules"))
        .arg("--intel-maps")
        .arg(compat("decnet-intel"))
        .arg(compat("corpus/dev-1k.jsonl"))
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    assert!(
        lines[0].contains("R0030.yaml: rule R0030: warning:"),
        "{stderr}"
    );
    assert!(
        lines[1].contains("WARN") && lines[1].contains("rule R0033"),
        "{stderr}"
    );
    assert!(lines[2].starts_with("tag: 1000 events"), "{stderr}");
}

#[test]
fn a_missing_rules_directory_is_a_usage_error() {
    for args in [
        vec!["check-rules", "--rules", "/no/such/dir"],
        vec!["tag", "--rules", "/no/such/dir"],
        vec!["--rules", "/no/such/dir"],
    ] {
        let output = ttp_worker().args(&args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("/no/such/dir"));
    }
}

fn tempfile(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ttp-worker-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// `ttp-worker tag … | head -1`: once the reader is gone the rest of the output is not
/// wanted, so the command ends quietly and successfully instead of failing on the pipe.
#[test]
fn tag_ends_quietly_when_its_reader_goes_away() {
    let corpus = std::fs::read(compat("corpus/dev-1k.jsonl")).expect("compat corpus");
    let mut child = ttp_worker()
        .args(["tag", "--no-builtin-rules"])
        .env("DECNET_TTP_RULES_DIR", compat("decnet-rules"))
        .env("DECNET_TTP_INTEL_MAPS", compat("decnet-intel"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Closed before anything is tagged: the first write finds no reader.
    drop(child.stdout.take());
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        // The worker may stop reading once its output is gone; that is what is tested.
        let _ = stdin.write_all(&corpus);
    });
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains("Broken pipe"), "{stderr}");
}

/// Any other write failure is an error, in one line.
#[test]
fn check_rules_reports_an_output_it_cannot_write() {
    let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
        return; // no /dev/full here
    };
    let output = ttp_worker()
        .arg("check-rules")
        .stdout(full)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("ttp-worker: cannot write the output: ") && stderr.lines().count() == 1,
        "{stderr}"
    );
}

#[test]
fn attacker_chosen_kinds_are_named_a_bounded_number_of_times_and_cut_short() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("kinds.jsonl");
    let mut out = std::fs::File::create(&input).unwrap();
    for n in 0..300 {
        // Short enough to be stored (255 characters), too long to be quoted whole.
        let kind = format!("{n}-{}", "k".repeat(240));
        let envelope = serde_json::json!({
            "v": 1, "id": format!("{n:032x}"), "topic": "attacker.fingerprinted", "type": kind,
            "ts": 1.0, "payload": {"attacker_ip": "198.51.100.3"}
        });
        writeln!(out, "{envelope}").unwrap();
    }
    drop(out);
    let output = common::run_command(&["tag", input.to_str().unwrap()], &[("RUST_LOG", "info")]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let named: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("no tagger handles source kind"))
        .collect();
    assert_eq!(named.len(), 64, "{}", &stderr[..stderr.len().min(2000)]);
    assert!(
        named.iter().all(|l| l.len() < 400),
        "cut short: {}",
        named[0]
    );
    assert!(named[0].contains("… (242 bytes)"), "{}", named[0]);
    assert_eq!(
        stderr.matches("further ones are not named").count(),
        1,
        "the overflow is said once"
    );
}

/// The exit statuses `--help` promises, command by command: 2 and one line naming what was
/// wrong for bad usage (a bad value, an input that cannot be read), 1 for a run that found
/// problems.
#[test]
fn exit_statuses_are_the_same_for_every_command() {
    let dir = tempfile("exit-statuses");
    std::fs::create_dir_all(&dir).unwrap();
    let store = dir.join("ttp.db");
    let broken = dir.join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(
        broken.join("R9999.yaml"),
        "rule_id: R9999\nname: [unclosed\n",
    )
    .unwrap();
    let dir_text = dir.display().to_string();
    let store_text = store.display().to_string();
    let broken_text = broken.display().to_string();
    // No store is made: a bad value is refused before one is looked for.
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (vec!["-i", "-5"], 2, "--poll-interval"),
        (
            vec!["--heartbeat-interval", "-1"],
            2,
            "--heartbeat-interval",
        ),
        (vec!["tag", &dir_text], 2, &dir_text),
        (vec!["tag", "/no/such/file"], 2, "/no/such/file"),
        // It opens, and its first read fails: the path is still named.
        (vec!["tag", "/proc/self/mem"], 2, "/proc/self/mem"),
        (
            vec!["tags", "--db", &store_text, "--technique", "X1"],
            2,
            "ATT&CK id",
        ),
        (
            vec!["tags", "--db", &store_text, "--since", "3x"],
            2,
            "--since",
        ),
        (
            vec!["tags", "--db", &store_text, "--limit", "-3"],
            2,
            "--limit",
        ),
        (
            vec!["check-rules", "--rules", "/no/such/dir"],
            2,
            "/no/such/dir",
        ),
        (
            vec!["check-rules", "--rules", &broken_text],
            1,
            "R9999.yaml",
        ),
    ];
    for (args, code, named) in cases {
        let output = ttp_worker().args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(named), "{args:?}: {stderr}");
        if code == 2 {
            assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        }
    }
}
