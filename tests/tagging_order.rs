//! The tag set depends on the events, not on the order they arrive in, and a replay adds no
//! tag: what lets the daemon consume nine subjects on nine threads, and be redelivered to,
//! without duplicating or losing tags.

use std::collections::BTreeSet;
use std::path::PathBuf;

use ttp_worker::tagging::commands::parse_line;
use ttp_worker::tagging::{EngineOptions, Tagger};

fn compat(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/compat")
        .join(path)
}

fn reference_tagger() -> Tagger {
    Tagger::new(&EngineOptions {
        rules_dirs: vec![compat("decnet-rules")],
        no_builtin_rules: true,
        intel_maps_dir: Some(compat("decnet-intel")),
        anchors_file: Some(compat("corpus/dev-1k.anchors.json")),
    })
    .expect("reference pack")
}

fn uuids<'a>(tagger: &mut Tagger, lines: impl Iterator<Item = &'a str>) -> BTreeSet<String> {
    lines
        .filter_map(|line| parse_line(line).ok())
        .flat_map(|message| tagger.tag_message(&message).tags)
        .map(|tag| tag.uuid)
        .collect()
}

#[test]
fn reversing_the_corpus_gives_the_same_tags() {
    let corpus = std::fs::read_to_string(compat("corpus/dev-1k.jsonl")).unwrap();
    let forward = uuids(&mut reference_tagger(), corpus.lines());
    let backward = uuids(&mut reference_tagger(), corpus.lines().rev());
    assert!(!forward.is_empty());
    assert_eq!(forward, backward);
}

#[test]
fn replaying_the_corpus_after_learning_its_anchors_gives_no_new_tag() {
    let corpus = std::fs::read_to_string(compat("corpus/dev-1k.jsonl")).unwrap();
    let mut tagger = reference_tagger();
    let first = uuids(&mut tagger, corpus.lines());
    let second = uuids(&mut tagger, corpus.lines());
    let new: Vec<&String> = second.difference(&first).collect();
    assert!(new.is_empty(), "the replay produced new tags: {new:?}");
}
