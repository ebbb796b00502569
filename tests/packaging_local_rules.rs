//! The packaged unit's rule path: the built-in pack plus local rules from
//! `/etc/ttp-worker/rules.d` (`DECNET_TTP_LOCAL_RULES_DIR`), as `check-rules` sees it.

use std::process::Command;

const LOCAL_RULE: &str = "\
rule_id: L9000
rule_version: 1
name: local_reverse_shell
description: A local rule.
applies_to: [command]
match:
  field: 'command_text'
  pattern: '(?i)\\bbash\\s+-i\\b'
emits:
  - {technique_id: T1059, sub_technique_id: T1059.004, tactic: TA0002, confidence: 0.9}
evidence_fields: [command_text]
";

/// `check-rules` with `env`: (exit status, number of rules loaded, stdout).
fn check_rules(env: &[(&str, &str)]) -> (i32, usize, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_ttp-worker"))
        .arg("check-rules")
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let loaded = stdout
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no rule count in {stdout:?}"));
    (output.status.code().unwrap_or(-1), loaded, stdout)
}

#[test]
fn the_packaged_empty_rules_d_keeps_the_builtin_pack() {
    let rules_d = tempfile::tempdir().unwrap();
    std::fs::write(
        rules_d.path().join("README"),
        "Local rules for ttp-worker\n",
    )
    .unwrap();
    let (_, builtin, _) = check_rules(&[]);
    let dir = rules_d.path().to_str().unwrap();
    let (status, loaded, stdout) = check_rules(&[("DECNET_TTP_LOCAL_RULES_DIR", dir)]);
    assert_eq!(status, 0, "{stdout}");
    assert!(builtin > 0);
    assert_eq!(loaded, builtin, "{stdout}");
    assert!(stdout.contains("built-in pack"), "{stdout}");
}

#[test]
fn a_local_rule_is_added_to_the_builtin_pack() {
    let rules_d = tempfile::tempdir().unwrap();
    std::fs::write(rules_d.path().join("L9000.yaml"), LOCAL_RULE).unwrap();
    let (_, builtin, _) = check_rules(&[]);
    let dir = rules_d.path().to_str().unwrap();
    let (status, loaded, stdout) = check_rules(&[("DECNET_TTP_LOCAL_RULES_DIR", dir)]);
    assert_eq!(status, 0, "{stdout}");
    assert_eq!(loaded, builtin + 1, "{stdout}");
    // --no-builtin-rules leaves the local rule alone.
    let (_, alone, _) = check_rules(&[
        ("DECNET_TTP_LOCAL_RULES_DIR", dir),
        ("DECNET_TTP_NO_BUILTIN_RULES", "true"),
    ]);
    assert_eq!(alone, 1);
}
