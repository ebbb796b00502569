//! The work budget of one message (`src/tagging/budget.rs`): enforced while tagging, what it
//! cut reported per kind, and the tags of an ordinary message left alone.

use serde_json::{Map, Value, json};
use ttp_worker::tagging::{Budget, Cuts, EngineOptions, Tagger};

fn tagger(budget: Budget) -> Tagger {
    Tagger::new(&EngineOptions {
        budget,
        ..EngineOptions::default()
    })
    .unwrap()
}

fn session(commands: usize, text: &str) -> Map<String, Value> {
    let commands: Vec<Value> = (0..commands)
        .map(|i| json!({"id": format!("c{i}"), "command_text": text}))
        .collect();
    json!({"session_id": "s-1", "attacker_uuid": "6f1c2a9e-0000-4000-8000-0000000000aa",
           "commands": commands})
    .as_object()
    .unwrap()
    .clone()
}

const SUBJECT: &str = "attacker.session.ended";
/// One built-in rule fires on it (credential files).
const FIRING: &str = "cat /etc/shadow";

#[test]
fn an_ordinary_session_is_not_cut() {
    let mut tagger = tagger(Budget::default());
    let report = tagger.tag_payload(SUBJECT, "", &session(300, FIRING));
    assert_eq!(report.cut, Cuts::default());
    assert_eq!(report.events, 301);
    assert!(report.tags.len() >= 300, "{} tags", report.tags.len());
}

#[test]
fn commands_past_the_budget_become_no_events() {
    let budget = Budget::default();
    let mut tagger = tagger(budget);
    let report = tagger.tag_payload(SUBJECT, "", &session(budget.commands + 5_000, FIRING));
    assert_eq!(report.events, budget.commands + 1);
    assert_eq!(report.cut.commands, 5_000);
    assert!(
        report
            .tags
            .iter()
            .all(|t| t.source_id != format!("c{}", budget.commands))
    );
}

#[test]
fn the_tag_budget_stops_tagging_at_the_limit() {
    let mut tagger = tagger(Budget {
        tags: 100,
        ..Budget::default()
    });
    let per_command = tagger
        .tag_payload(SUBJECT, "", &session(1, FIRING))
        .tags
        .len();
    let report = tagger.tag_payload(SUBJECT, "", &session(1_000, FIRING));
    assert_eq!(report.tag_count(), 100);
    assert!(report.cut.events_over_tags > 0);
    assert!(report.cut.events_over_tags + 100 / per_command.max(1) <= 1_001);
}

#[test]
fn the_text_budget_stops_before_the_event_that_would_pass_it() {
    // The base event's text is its session id and attacker UUID; each command's, its id
    // ("c0" … "c7") and its text. Room for the base event and eight commands exactly.
    let base = "s-1".len() + 36;
    let command = "c0".len() + FIRING.len();
    let mut tagger = tagger(Budget {
        text_bytes: base + 8 * command,
        ..Budget::default()
    });
    let report = tagger.tag_payload(SUBJECT, "", &session(50, FIRING));
    assert_eq!(report.cut.events_over_text, 51 - 1 - 8);
    assert!(report.tags.iter().any(|t| t.source_id == "c7"));
    assert!(report.tags.iter().all(|t| t.source_id != "c8"));
}

/// DECNET's MySQL columns hold 255 characters: an event with a longer id is not tagged on any
/// store, the message's other events are.
#[test]
fn an_event_with_an_id_too_long_to_store_is_passed_over_alone() {
    let mut tagger = tagger(Budget::default());
    let mut payload = session(3, FIRING);
    let commands = payload["commands"].as_array_mut().unwrap();
    commands[1]["id"] = json!("c".repeat(256));
    // Characters, not bytes: 255 two-byte characters fit.
    commands[2]["id"] = json!("é".repeat(255));
    let report = tagger.tag_payload(SUBJECT, "", &payload);
    assert_eq!(report.cut.events_long_ids, 1);
    assert!(report.tags.iter().any(|t| t.source_id == "c0"));
    assert!(report.tags.iter().any(|t| t.source_id == "é".repeat(255)));
    assert!(report.tags.iter().all(|t| t.source_id.len() <= 510));

    // A session id too long: it is in every event's rows, so nothing is tagged.
    let mut payload = session(3, FIRING);
    payload.insert("session_id".into(), json!("s".repeat(300)));
    let report = tagger.tag_payload(SUBJECT, "", &payload);
    assert_eq!(report.cut.events_long_ids, 4);
    assert_eq!(report.tag_count(), 0);
    assert_eq!(report.cut.to_string(), "4 events (an id too long to store)");

    // Nor may the sender's own kind (an envelope type on an unmapped subject) be longer.
    let mut payload = session(0, FIRING);
    payload.remove("commands");
    let kind = "k".repeat(256);
    let report = tagger.tag_payload("decky.something", &kind, &payload);
    assert_eq!((report.events, report.cut.events_long_ids), (1, 1));
}
