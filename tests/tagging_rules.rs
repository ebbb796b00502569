//! Rule-file error reporting, lifter failure tolerance and reload, through the public API.

mod common;

use std::path::{Path, PathBuf};

use common::TAG_KEYS;
use common::corpus::required;
use serde_json::{Map, Value, json};
use ttp_worker::commands::check_rules::run as run_check_rules;
use ttp_worker::commands::tag::{Listing, run as run_tag};
use ttp_worker::tagging::{EngineOptions, Tagger, Tally};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ttp-tagging-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    dir
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap_or_else(|e| panic!("{e}"));
}

const GOOD: &str = "rule_id: R2000\nrule_version: 1\nname: good\napplies_to: [command]\n\
    match: {field: command_text, pattern: 'whoami'}\n\
    emits: [{technique_id: T1033, tactic: TA0007, confidence: 0.7}]\nevidence_fields: [command_text]\n";

#[test]
fn bad_files_are_named_and_skipped() {
    let dir = scratch("bad");
    write(
        &dir,
        "A_bad_yaml.yaml",
        "rule_id: R2001\nmatch: [unclosed\n",
    );
    write(
        &dir,
        "B_missing.yaml",
        &GOOD.replace("R2000", "R2002").replace("name: good\n", ""),
    );
    write(
        &dir,
        "C_bad_regex.yaml",
        &GOOD
            .replace("R2000", "R2003")
            .replace("'whoami'", "'(whoami'"),
    );
    write(&dir, "D_good.yaml", GOOD);
    write(&dir, "E_empty.yaml", "");
    write(&dir, "notes.yaml~", "garbage");
    let options = only_rules_in(&dir);

    let (code, out, err) = check_rules(&options);
    assert_eq!(code, 1);
    let lines: Vec<&str> = err.lines().collect();
    let f = |name: &str| dir.join(name).display().to_string();
    assert_eq!(lines.len(), 4, "{err}");
    assert!(
        lines[0].starts_with(&format!("{}: rule ?: invalid YAML", f("A_bad_yaml.yaml"))),
        "{err}"
    );
    assert_eq!(
        lines[1],
        format!(
            "{}: rule R2002: missing required field name",
            f("B_missing.yaml")
        )
    );
    assert!(
        lines[2].starts_with(&format!("{}: rule R2003: bad regex", f("C_bad_regex.yaml"))),
        "{err}"
    );
    assert!(
        lines[3].starts_with(&format!(
            "{}: rule ?: top level must be a mapping",
            f("E_empty.yaml")
        )),
        "{err}"
    );
    assert!(out.starts_with("1 rules loaded"), "{out}");

    // The good rule still fires.
    let input = br#"{"topic":"attacker.session.ended","type":"session.ended","payload":{"session_id":"s","attacker_uuid":"A","commands":["whoami"]}}
not json
{"type":"x","payload":{}}
"#;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let summary = run_tag(
        &options,
        Listing::FirstPerUuid,
        &input[..],
        &mut out,
        &mut err,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((summary.events, summary.tags, summary.malformed), (1, 1, 2));
    let err = String::from_utf8_lossy(&err);
    assert!(
        err.contains("line 2: ") && err.contains("line 3: no string `topic` member"),
        "{err}"
    );
    let tag: Value = serde_json::from_slice(out.split(|b| *b == b'\n').next().unwrap_or_default())
        .unwrap_or_default();
    let keys: Vec<&str> = tag
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    assert_eq!(keys, TAG_KEYS);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_failing_lifter_costs_only_its_own_tags() {
    let dir = scratch("tolerance");
    write(
        &dir,
        "R1.yaml",
        "rule_id: R1\nrule_version: 1\nname: a\napplies_to: [http_request]\n\
        match: {field: raw_url, pattern: 'etc/passwd'}\nemits: [{technique_id: T1190, tactic: TA0001, confidence: 0.8}]\n",
    );
    write(
        &dir,
        "R2.yaml",
        "rule_id: R2\nrule_version: 1\nname: b\napplies_to: [http_request]\n\
        match: {kind: 'lifter:behavioral_exfil_over_web', min_payload_bytes: lots}\n\
        emits: [{technique_id: T1567, tactic: TA0010, confidence: 0.8}]\n",
    );
    let options = only_rules_in(&dir);
    let mut tagger = Tagger::new(&options).unwrap_or_else(|e| panic!("{e}"));
    let payload: Map<String, Value> = json!({"attacker_ip": "198.51.100.1", "source_id": "h", "raw_url": "/../../etc/passwd", "bytes_out": 5})
        .as_object().cloned().unwrap_or_default();
    let tagged = tagger.tag_payload("attacker.fingerprinted", "http_request", &payload);
    assert_eq!(
        tagged
            .tags
            .iter()
            .map(|t| t.rule_id.as_str())
            .collect::<Vec<_>>(),
        ["R1"]
    );
    assert_eq!(tagged.tags[0].attacker_uuid, None);
    assert_eq!(tagged.tags[0].attacker_ip.as_deref(), Some("198.51.100.1"));
    assert_eq!(tagged.warnings.len(), 1);
    let mut tally = Tally::default();
    tally.add(&tagged);
    assert_eq!(tally.lifter_warnings, 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_failed_reload_leaves_the_engine_usable() {
    let dir = scratch("reload");
    write(&dir, "anchors.json", r#"{"198.51.100.1": "U-1"}"#);
    let options = EngineOptions {
        anchors_file: Some(dir.join("anchors.json")),
        ..EngineOptions::default()
    };
    let mut tagger = Tagger::new(&options).unwrap_or_else(|e| panic!("{e}"));
    let learned: Map<String, Value> =
        json!({"attacker_uuid": "7c1e4d2a-3b5f-4e6a-9c8d-0a1b2c3d4e5f", "attacker_ip": "198.51.100.2"})
            .as_object()
            .cloned()
            .unwrap_or_default();
    tagger.tag_payload("attacker.intel.enriched", "intel.enriched", &learned);
    let reloaded = tagger.reload().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        reloaded.anchors().resolve("198.51.100.2"),
        Some("7c1e4d2a-3b5f-4e6a-9c8d-0a1b2c3d4e5f")
    );
    assert_eq!(reloaded.anchors().resolve("198.51.100.1"), Some("U-1"));
    write(&dir, "anchors.json", "not json");
    assert!(tagger.reload().is_err());
    assert_eq!(tagger.anchors().resolve("198.51.100.1"), Some("U-1"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The rules of `dir` and nothing else (no built-in pack).
fn only_rules_in(dir: &Path) -> EngineOptions {
    EngineOptions {
        rules_dirs: vec![dir.to_owned()],
        no_builtin_rules: true,
        ..EngineOptions::default()
    }
}

/// `check-rules`: its exit status, standard output and standard error.
fn check_rules(options: &EngineOptions) -> (i32, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let verdict = run_check_rules(options, &mut out, &mut err).unwrap_or_else(|e| panic!("{e}"));
    let code = i32::from(!verdict.passed());
    (
        code,
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    )
}

/// The reference pack: 58 rules load; R0030 (no lifter for `lifter:c2_fingerprint`) is a
/// warning, not a problem, and does not fail the check. With a broken file beside them, the
/// other rules still load, the broken file is named and the check fails.
#[test]
fn check_rules_warns_about_a_rule_no_lifter_runs() {
    let pack = required("decnet-rules");
    let options = only_rules_in(&pack);
    let (code, out, err) = check_rules(&options);
    assert_eq!(code, 0);
    assert!(out.starts_with("58 rules loaded"), "{out}");
    assert!(out.contains("0 problems, 1 warnings"), "{out}");
    let r0030 = pack.join("R0030.yaml").display().to_string();
    assert_eq!(
        err.trim_end(),
        format!(
            "{r0030}: rule R0030: warning: match.kind \"lifter:c2_fingerprint\" has no lifter, \
             so the rule can never fire; not loaded"
        )
    );
    let tagger = Tagger::new(&options).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(tagger.rules().len(), 58);
    assert!(tagger.rules().iter().all(|r| r.rule_id != "R0030"));
    assert!(tagger.problems().is_empty());
    assert_eq!(tagger.warnings().len(), 1);
    assert_eq!(tagger.warnings()[0].rule_id.as_deref(), Some("R0030"));

    // The pack plus a zero-byte file.
    let dir = scratch("pack-and-broken");
    for entry in std::fs::read_dir(&pack).unwrap_or_else(|e| panic!("{e}")) {
        let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
        if let Some(name) = path.file_name() {
            std::fs::copy(&path, dir.join(name)).unwrap_or_else(|e| panic!("{e}"));
        }
    }
    write(&dir, "R0031.yaml", "");
    let options = only_rules_in(&dir);
    let (code, out, err) = check_rules(&options);
    assert_eq!(code, 1);
    assert!(out.starts_with("57 rules loaded"), "{out}");
    assert!(out.contains("1 problems, 1 warnings"), "{out}");
    let broken = dir.join("R0031.yaml").display().to_string();
    assert!(
        err.lines()
            .any(|l| l.starts_with(&format!("{broken}: rule ?: top level must be a mapping"))),
        "{err}"
    );
    assert!(err.contains("rule R0030: warning: "), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A confidence above 1 (an AbuseIPDB score over 100 multiplies it past 1) is set aside with
/// its tag alone; the message's other tags stand (DECNET's database would refuse the batch).
#[test]
fn a_confidence_above_one_costs_only_its_own_tag() {
    let mut tagger = Tagger::new(&EngineOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let intel = |score: f64| -> Map<String, Value> {
        json!({"attacker_uuid": "U", "attacker_ip": "198.51.100.1", "abuseipdb_score": score,
               "abuseipdb_categories": [14, 18, 20, 22], "greynoise_classification": "scanner"})
        .as_object()
        .cloned()
        .unwrap_or_default()
    };
    let normal = tagger.tag_payload("attacker.intel.enriched", "intel.enriched", &intel(100.0));
    assert!(normal.out_of_range.is_empty());
    let inflated = tagger.tag_payload("attacker.intel.enriched", "intel.enriched", &intel(160.0));
    assert!(!inflated.out_of_range.is_empty());
    assert!(inflated.out_of_range.iter().all(|t| t.confidence > 1.0));
    assert!(
        inflated
            .tags
            .iter()
            .all(|t| (0.3..=1.0).contains(&t.confidence))
    );
    // Tags the score does not scale (GreyNoise) are unaffected.
    let greynoise = |m: &ttp_worker::tagging::MessageTags| {
        m.tags
            .iter()
            .filter(|t| t.evidence.contains_key("greynoise_classification"))
            .count()
    };
    assert!(greynoise(&inflated) > 0);
    assert_eq!(greynoise(&inflated), greynoise(&normal));
    let mut tally = Tally::default();
    tally.add(&normal);
    tally.add(&inflated);
    assert_eq!(tally.out_of_range, inflated.out_of_range.len() as u64);
}
