//! The tag set depends on the events, not on the order they arrive in, and a replay adds no
//! tag: what lets the daemon consume nine subjects on nine threads, and be redelivered to,
//! without duplicating or losing tags.

mod common;

use std::collections::BTreeSet;

use common::corpus::{compat, reference_options};
use ttp_worker::envelope::jsonl::parse_line;
use ttp_worker::tagging::Tagger;

fn reference_tagger() -> Tagger {
    Tagger::new(&reference_options()).expect("reference pack")
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
