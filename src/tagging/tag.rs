//! The tag record and its deterministic UUID (docs/tagging.md §4).

use std::sync::LazyLock;

use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

/// Tags below this confidence are never stored or published (docs/tagging.md §6.5, §10.1).
pub const CONFIDENCE_FLOOR: f64 = 0.3;

/// `uuid5(NAMESPACE_URL, "decnet:ttp_tag:v1")`: shared with DECNET so that both systems give
/// the same tag the same primary key, which is what makes replays idempotent.
static TAG_NAMESPACE: LazyLock<Uuid> =
    LazyLock::new(|| Uuid::new_v5(&Uuid::NAMESPACE_URL, b"decnet:ttp_tag:v1"));

/// One ATT&CK technique attributed to one source event by one rule.
///
/// Field order is the serialisation order of the `tag` command and of the store: keep it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tag {
    pub uuid: String,
    pub source_kind: String,
    pub source_id: String,
    pub attacker_uuid: Option<String>,
    pub identity_uuid: Option<String>,
    /// Our addition: the IP an event was anchored on when no attacker UUID was known (and, for
    /// information, the attacker's IP otherwise).
    pub attacker_ip: Option<String>,
    pub session_id: Option<String>,
    pub decky_id: Option<String>,
    pub tactic: String,
    pub technique_id: String,
    pub sub_technique_id: Option<String>,
    pub confidence: f64,
    pub rule_id: String,
    pub rule_version: i64,
    pub evidence: Map<String, Value>,
}

impl Tag {
    /// Appends the tag as one compact JSON object, byte for byte what `serde_json` writes for
    /// it (same member order, escapes and number forms), without going through a serializer.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"uuid\":");
        write_str(out, &self.uuid);
        out.extend_from_slice(b",\"source_kind\":");
        write_str(out, &self.source_kind);
        out.extend_from_slice(b",\"source_id\":");
        write_str(out, &self.source_id);
        out.extend_from_slice(b",\"attacker_uuid\":");
        write_opt_str(out, self.attacker_uuid.as_deref());
        out.extend_from_slice(b",\"identity_uuid\":");
        write_opt_str(out, self.identity_uuid.as_deref());
        out.extend_from_slice(b",\"attacker_ip\":");
        write_opt_str(out, self.attacker_ip.as_deref());
        out.extend_from_slice(b",\"session_id\":");
        write_opt_str(out, self.session_id.as_deref());
        out.extend_from_slice(b",\"decky_id\":");
        write_opt_str(out, self.decky_id.as_deref());
        out.extend_from_slice(b",\"tactic\":");
        write_str(out, &self.tactic);
        out.extend_from_slice(b",\"technique_id\":");
        write_str(out, &self.technique_id);
        out.extend_from_slice(b",\"sub_technique_id\":");
        write_opt_str(out, self.sub_technique_id.as_deref());
        out.extend_from_slice(b",\"confidence\":");
        write_serde(out, &self.confidence);
        out.extend_from_slice(b",\"rule_id\":");
        write_str(out, &self.rule_id);
        out.extend_from_slice(b",\"rule_version\":");
        push_decimal(out, self.rule_version);
        out.extend_from_slice(b",\"evidence\":");
        write_serde(out, &self.evidence);
        out.push(b'}');
    }
}

#[cfg(test)]
impl Tag {
    /// A tag for unit tests anywhere in the crate: attacker-anchored, T1083 (TA0007) from rule
    /// R0014 v2 at 0.5 on a command, no IP, session, decky or evidence. A test sets what it
    /// looks at with struct update syntax.
    pub(crate) fn for_test(uuid: &str) -> Tag {
        Tag {
            uuid: uuid.to_owned(),
            source_kind: "command".into(),
            source_id: "cmd_42".into(),
            attacker_uuid: Some("0b6c1f7e-2d4a-4f0e-9c1b-5a3e7d9f1c20".into()),
            identity_uuid: None,
            attacker_ip: None,
            session_id: None,
            decky_id: None,
            tactic: "TA0007".into(),
            technique_id: "T1083".into(),
            sub_technique_id: None,
            confidence: 0.5,
            rule_id: "R0014".into(),
            rule_version: 2,
            evidence: Map::new(),
        }
    }
}

/// `n` in base 10, as Python's `str(int)` and Rust's `Display` write it.
fn push_decimal(out: &mut Vec<u8>, n: i64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if n < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&digits[at..]);
}

/// A JSON string; only strings that need escapes go through `serde_json`.
fn write_str(out: &mut Vec<u8>, s: &str) {
    // Branch-free over the bytes so that it vectorises: the common case is plain text.
    let needs_escape = s.bytes().fold(false, |acc, b| {
        acc | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if needs_escape {
        write_serde(out, s);
    } else {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    }
}

fn write_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => write_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

fn write_serde<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    // Writing JSON into a Vec cannot fail for these types (string keys, finite or not floats
    // become `null`).
    let _ = serde_json::to_writer(&mut *out, value);
}

/// The UUIDv5 of a tag: only these six inputs identify it (docs/tagging.md §4.2). The key joins
/// them with `|` unescaped, exactly as DECNET does, so that both sides compute equal keys.
pub fn tag_uuid(
    source_kind: &str,
    source_id: &str,
    rule_id: &str,
    rule_version: i64,
    technique_id: &str,
    sub_technique_id: Option<&str>,
) -> String {
    use sha1::Digest as _;
    let sub = sub_technique_id.unwrap_or("");
    let mut key = Vec::with_capacity(
        source_kind.len() + source_id.len() + rule_id.len() + technique_id.len() + sub.len() + 32,
    );
    for part in [source_kind, source_id, rule_id] {
        key.extend_from_slice(part.as_bytes());
        key.push(b'|');
    }
    push_decimal(&mut key, rule_version);
    for part in [technique_id, sub] {
        key.push(b'|');
        key.extend_from_slice(part.as_bytes());
    }
    // UUIDv5 (RFC 9562 §5.5) = SHA-1 of namespace and name; the `sha1` crate uses the CPU's
    // SHA instructions where there are some.
    let mut hasher = sha1::Sha1::new();
    hasher.update(TAG_NAMESPACE.as_bytes());
    hasher.update(&key);
    let digest = hasher.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    uuid::Builder::from_sha1_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .encode_lower(&mut text)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_json_is_what_serde_json_writes() {
        let mut evidence = Map::new();
        evidence.insert(
            "command_text".into(),
            Value::String("echo \"a\\b\"\n\t\u{1}é/".into()),
        );
        evidence.insert(
            "n".into(),
            serde_json::json!([1, 2.5, null, true, {"k": "v"}]),
        );
        let base = Tag {
            uuid: tag_uuid("command", "s#1", "R1", 3, "T1", None),
            source_kind: "command".into(),
            source_id: "s\"#1\u{7f}\u{1f}".into(),
            attacker_uuid: Some("a".into()),
            identity_uuid: None,
            attacker_ip: Some(String::new()),
            session_id: None,
            decky_id: Some("d\\".into()),
            tactic: "TA1".into(),
            technique_id: "T1".into(),
            sub_technique_id: Some("T1.001".into()),
            confidence: 0.63,
            rule_id: "R1".into(),
            rule_version: -3,
            evidence,
        };
        for confidence in [0.63, 1.0, 0.0, 1e-7, 0.1 + 0.2, f64::NAN, 123456789.0] {
            let tag = Tag {
                confidence,
                ..base.clone()
            };
            let mut ours = Vec::new();
            tag.write_json(&mut ours);
            let theirs = serde_json::to_vec(&tag).unwrap_or_default();
            assert_eq!(
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&theirs)
            );
        }
    }

    #[test]
    fn tag_uuid_is_uuid_v5_of_the_key() {
        for n in 0..300 {
            let source_id = "x".repeat(n) + "é|";
            let key = format!("command|{source_id}|R{n}|{n}|T1|");
            assert_eq!(
                tag_uuid(
                    "command",
                    &source_id,
                    &format!("R{n}"),
                    n as i64,
                    "T1",
                    None
                ),
                Uuid::new_v5(&TAG_NAMESPACE, key.as_bytes()).to_string()
            );
        }
    }

    #[test]
    fn decimals_are_displayed_integers() {
        for n in [0, 1, -1, 9, 10, -10, 1234567890, i64::MAX, i64::MIN] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(String::from_utf8_lossy(&out), n.to_string());
        }
    }

    #[test]
    fn namespace_is_decnets() {
        assert_eq!(
            TAG_NAMESPACE.to_string(),
            "1ca31f08-5522-5aae-8371-fe81f0e39de3"
        );
    }

    /// `(source_kind, source_id, rule_id, rule_version, technique_id, sub, uuid)`.
    type Vector = (
        &'static str,
        &'static str,
        &'static str,
        i64,
        &'static str,
        Option<&'static str>,
        &'static str,
    );

    /// docs/tagging.md §4.3.
    #[test]
    fn golden_vectors() {
        let cases: [Vector; 6] = [
            (
                "command",
                "cmd_42",
                "R0014",
                2,
                "T1083",
                None,
                "9aa491e5-f03b-5d8f-9eb5-161becedcdd6",
            ),
            (
                "command",
                "cmd_42",
                "R0015",
                1,
                "T1548",
                Some("T1548.001"),
                "4fd57b14-c135-544c-97d9-4fabc1051584",
            ),
            (
                "intel",
                "intel-catchup:sess-9f2c",
                "R0054",
                2,
                "T1110",
                None,
                "176b5876-0fbd-5497-82a1-697c1880b689",
            ),
            (
                "command",
                "sess-9f2c#cmd1",
                "R0010",
                1,
                "T1059",
                Some("T1059.004"),
                "2918a2bd-5536-5db6-a4d5-817f2fc30e66",
            ),
            (
                "command",
                "café|x",
                "R0011",
                1,
                "T1059",
                None,
                "bfb939ff-14f2-5d0e-8bd9-46fc31c6b3aa",
            ),
            (
                "command",
                "café|x",
                "R0011",
                1,
                "T1059",
                Some(""),
                "bfb939ff-14f2-5d0e-8bd9-46fc31c6b3aa",
            ),
        ];
        for (kind, sid, rule, ver, tech, sub, want) in cases {
            assert_eq!(
                tag_uuid(kind, sid, rule, ver, tech, sub),
                want,
                "{sid} {rule}"
            );
        }
    }
}
