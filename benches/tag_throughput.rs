//! Throughput of `ttp-worker tag` (the release binary, as users run it) on a 20,000-envelope
//! corpus with DECNET's rule pack: `make bench-tag`, or `cargo bench --bench tag_throughput`.
//!
//! The corpus is built into `target/bench-data/` from the shared `dev-1k.jsonl`: 20 copies,
//! every copy after the first with its own session, source, token, identity and command ids
//! (and canary subjects), so that it reads as new sessions of the same attackers rather than
//! replays. Each run is the whole process: start, load the rules, tag the file, write the
//! tags to /dev/null. Prints envelopes/s and tags/s of the median of several runs (wall
//! clock), and `tag`'s own summary line, which leaves out only the process start.
//!
//! `TAG_BENCH_COPIES` (default 20) and `TAG_BENCH_RUNS` (default 7) change the corpus size and
//! the number of measured runs.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::Value;

/// Payload members that identify a session, message or token rather than an attacker.
const ID_MEMBERS: [&str; 8] = [
    "session_id",
    "source_id",
    "token_id",
    "trigger_id",
    "identity_uuid",
    "credential_id",
    "id",
    "uuid",
];

fn main() {
    let compat = common::corpus::compat("");
    let source = compat.join("corpus/dev-1k.jsonl");
    if !source.exists() {
        eprintln!(
            "tag bench: {} not found; the shared compat fixtures are needed",
            source.display()
        );
        std::process::exit(2);
    }
    let copies = env_number("TAG_BENCH_COPIES", 20);
    let runs = env_number("TAG_BENCH_RUNS", 7).max(1);
    let binary = Path::new(env!("CARGO_BIN_EXE_ttp-worker"));
    // target/<profile>/ttp-worker → target/bench-data/
    let data_dir = binary
        .parent()
        .and_then(Path::parent)
        .map_or_else(|| PathBuf::from("target"), Path::to_path_buf)
        .join("bench-data");
    let corpus = data_dir.join(format!("tag-{copies}x-dev-1k.jsonl"));
    let envelopes = build_corpus(&source, &corpus, copies).unwrap_or_else(|e| {
        eprintln!("tag bench: cannot write {}: {e}", corpus.display());
        std::process::exit(1)
    });

    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    println!(
        "tag bench: {} ({envelopes} envelopes = {copies} x dev-1k), DECNET rule pack and intel \
         tables, {cores} cores",
        corpus.display()
    );
    let mut results = Vec::with_capacity(runs);
    for run in 0..=runs {
        let started = Instant::now();
        let output = Command::new(binary)
            .args(["tag", "--no-builtin-rules", "--rules"])
            .arg(compat.join("decnet-rules"))
            .arg("--intel-maps")
            .arg(compat.join("decnet-intel"))
            .arg("--anchors")
            .arg(compat.join("corpus/dev-1k.anchors.json"))
            .arg(&corpus)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .unwrap_or_else(|e| {
                eprintln!("tag bench: cannot run {}: {e}", binary.display());
                std::process::exit(1)
            });
        let seconds = started.elapsed().as_secs_f64();
        let stderr = String::from_utf8_lossy(&output.stderr);
        let summary = stderr.lines().last().unwrap_or_default().to_owned();
        if !output.status.success() || !summary.starts_with("tag: ") {
            eprintln!(
                "tag bench: ttp-worker tag failed ({}):\n{stderr}",
                output.status
            );
            std::process::exit(1);
        }
        let counted = count_before(&summary, " events").unwrap_or(0);
        let tags = count_before(&summary, " tags").unwrap_or(0);
        if counted != envelopes {
            eprintln!("tag bench: {counted} envelopes tagged, expected {envelopes}: {summary}");
            std::process::exit(1);
        }
        if run == 0 {
            continue; // warm-up: page cache, binary loaded
        }
        println!(
            "run {run}: {seconds:.3} s wall, {:.0} envelopes/s, {:.0} tags/s",
            envelopes as f64 / seconds,
            tags as f64 / seconds
        );
        results.push((seconds, tags, summary));
    }
    results.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (seconds, tags, summary) = &results[results.len() / 2];
    println!(
        "median of {runs}: {seconds:.3} s wall for the whole process = {:.0} envelopes/s, {:.0} \
         tags/s ({tags} tags)",
        envelopes as f64 / seconds,
        *tags as f64 / seconds
    );
    println!("its own summary (first line read to last tag written): {summary}");
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The number right before `word` in a summary line (`20000 events`, `31340 tags`).
fn count_before(line: &str, word: &str) -> Option<u64> {
    let head = &line[..line.find(word)?];
    head.rsplit(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Writes `copies` copies of the source corpus to `out`; returns the number of envelopes.
fn build_corpus(source: &Path, out: &Path, copies: usize) -> std::io::Result<u64> {
    let text = std::fs::read_to_string(source)?;
    let mut corpus = String::with_capacity(text.len() * copies);
    let mut envelopes = 0;
    for copy in 0..copies {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            envelopes += 1;
            match serde_json::from_str::<Value>(line) {
                Ok(mut envelope) if copy > 0 => {
                    make_distinct(&mut envelope, copy);
                    corpus.push_str(&envelope.to_string());
                }
                _ => corpus.push_str(line),
            }
            corpus.push('\n');
        }
    }
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(out, corpus)?;
    Ok(envelopes)
}

/// Copy `copy` of an envelope: new envelope id; session, message, token, identity and command
/// ids suffixed with `-c<copy>`; a canary subject follows its token. Attackers (IPs, UUIDs)
/// stay the same: new sessions of the same population.
fn make_distinct(envelope: &mut Value, copy: usize) {
    let suffix = format!("-c{copy}");
    if let Some(Value::String(id)) = envelope.get_mut("id")
        && id.len() >= 4
    {
        id.truncate(id.len() - 4);
        id.push_str(&format!("{copy:04x}"));
    }
    let Some(Value::Object(payload)) = envelope.get_mut("payload") else {
        return;
    };
    let old_token = payload
        .get("token_id")
        .and_then(Value::as_str)
        .map(str::to_owned);
    for member in ID_MEMBERS {
        if let Some(Value::String(id)) = payload.get_mut(member)
            && !id.is_empty()
        {
            id.push_str(&suffix);
        }
    }
    if let Some(Value::Array(commands)) = payload.get_mut("commands") {
        for command in commands {
            if let Some(Value::String(id)) = command.get_mut("id") {
                id.push_str(&suffix);
            }
        }
    }
    let new_token = payload
        .get("token_id")
        .and_then(Value::as_str)
        .map(str::to_owned);
    if let (Some(old), Some(new), Some(Value::String(topic))) =
        (old_token, new_token, envelope.get_mut("topic"))
    {
        let parts: Vec<&str> = topic.split('.').collect();
        if parts.len() == 3 && parts[0] == "canary" && parts[1] == old {
            *topic = format!("canary.{new}.{}", parts[2]);
        }
    }
}
