//! Throughput of the tagging engine on a JSON-lines corpus (default: the shared dev-1k corpus
//! with DECNET's rule pack and intel tables).
//!
//! `cargo run --release --example tag_throughput [CORPUS] [ROUNDS]`
//!
//! Measures the `tag` command's own loop (envelope decode + tagging + JSON output to a sink):
//! once on a fresh engine, then ROUNDS passes on a warmed-up one (the daemon's case).
//! Engine construction is not timed.

use std::path::PathBuf;
use std::time::Instant;

use ttp_worker::tagging::commands::tag_with;
use ttp_worker::tagging::{EngineOptions, Tagger};

fn main() {
    let compat = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/compat"));
    let mut args = std::env::args().skip(1);
    let corpus = args
        .next()
        .map_or_else(|| compat.join("corpus/dev-1k.jsonl"), PathBuf::from);
    let rounds: u32 = args.next().and_then(|r| r.parse().ok()).unwrap_or(20);
    let options = EngineOptions {
        rules_dirs: vec![compat.join("decnet-rules")],
        no_builtin_rules: true,
        intel_maps_dir: Some(compat.join("decnet-intel")),
        anchors_file: Some(compat.join("corpus/dev-1k.anchors.json")),
    };
    let input = match std::fs::read(&corpus) {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!("{}: {e}", corpus.display());
            std::process::exit(1);
        }
    };
    // One long-lived engine, as in the daemon: the corpus is fed ROUNDS times in one stream
    // (replays tag identically), after a warm-up pass that fills the regex engines' caches.
    let mut stream = Vec::with_capacity(input.len() * rounds as usize);
    for _ in 0..rounds {
        stream.extend_from_slice(&input);
    }
    let tagger = Tagger::new(&options).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    let cold = Instant::now();
    let first = tag_with(tagger, input.as_slice(), std::io::sink(), std::io::sink());
    let cold = cold.elapsed().as_secs_f64();
    let mut tagger = Tagger::new(&options).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    for line in input.split(|b| *b == b'\n') {
        if let Ok(msg) = ttp_worker::tagging::commands::parse_line(&String::from_utf8_lossy(line)) {
            tagger.tag_message(&msg);
        }
    }
    let started = Instant::now();
    let summary = tag_with(tagger, stream.as_slice(), std::io::sink(), std::io::sink());
    let seconds = started.elapsed().as_secs_f64();
    let (events, tags) = summary.map(|s| (s.events, s.tags)).unwrap_or_default();
    if let Ok(first) = first {
        println!(
            "cold engine, one pass: {} events in {cold:.3} s = {:.0} events/s",
            first.events,
            first.events as f64 / cold
        );
    }
    println!(
        "warm engine, {} rounds over {}: {events} events, {tags} tags in {seconds:.3} s = {:.0} events/s",
        rounds,
        corpus.display(),
        events as f64 / seconds
    );
}
