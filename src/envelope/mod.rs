//! The wire envelope every DECNET bus message travels in (docs/bus.md §2).
//!
//! Decoding is deliberately forgiving: publishers on NATS reach us byte for byte (nothing
//! re-mints `v`/`id`/`ts` as DECNET's UNIX broker did), so every odd shape a producer may send
//! must be absorbed or rejected as *one* malformed message, never as a dead subscription.
//! Encoding is the opposite: exact bytes, so that a DECNET consumer, a golden test or an HMAC'd
//! relay sees what DECNET's own orjson writer would have produced.

pub mod jsonl;

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{Map, Value};

/// DECNET's frame limit and nats-server's default `max_payload`.
pub const MAX_MESSAGE_BYTES: usize = 1_048_576;

/// The envelope schema version we write; nobody reads it on receipt.
const ENVELOPE_VERSION: u8 = 1;

/// A decoded envelope. The `topic` member is absent on purpose: the subject a message arrived
/// on is the only topic we trust (docs/bus.md §2.4), so it travels beside the envelope, not in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// 32 lowercase hex digits; freshly minted when the publisher sent none.
    pub id: String,
    /// The per-topic discriminator (`type` on the wire); `""` when absent or not a string.
    pub kind: String,
    /// Publish time in seconds since the Unix epoch; the time of receipt when unusable.
    pub ts: f64,
    /// The topic-specific body, in the publisher's member order.
    pub payload: Map<String, Value>,
}

/// Why a body could not be taken as an envelope. The message is dropped and counted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("body is not valid UTF-8")]
    NotUtf8,
    #[error("body is not JSON: {0}")]
    NotJson(String),
    #[error("body is JSON but not an object (found {0})")]
    NotAnObject(&'static str),
    #[error("payload is a non-empty {0}, not an object")]
    PayloadNotAnObject(&'static str),
}

/// Why an envelope could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("message for {subject} would be {size} bytes, over the {MAX_MESSAGE_BYTES}-byte limit")]
    TooLarge { subject: String, size: usize },
    #[error("message for {subject} could not be serialised: {reason}")]
    Serialise { subject: String, reason: String },
}

impl Envelope {
    /// What the decoded envelope is reckoned to take in memory: its size on the wire plus a
    /// decoded value's size for each of its JSON values. A hostile body of tiny values (a
    /// session of 200,000 one-letter commands) takes about ten times its wire size decoded,
    /// and it is this weight, not the wire size, that queues and batches are bounded by.
    pub fn weight(&self, wire_bytes: usize) -> usize {
        const PER_VALUE: usize = 64;
        fn values(value: &Value) -> usize {
            match value {
                Value::Array(items) => 1 + items.iter().map(values).sum::<usize>(),
                Value::Object(members) => 1 + members.values().map(values).sum::<usize>(),
                _ => 1,
            }
        }
        let count: usize = self.payload.values().map(values).sum();
        wire_bytes + PER_VALUE * count
    }

    /// Builds an outbound envelope with a fresh id and the current time.
    pub fn new(kind: impl Into<String>, payload: Map<String, Value>) -> Envelope {
        Envelope {
            id: fresh_id(),
            kind: kind.into(),
            ts: now_epoch_secs(),
            payload,
        }
    }

    /// Decodes a message body as received on any subject (docs/bus.md §2.3).
    ///
    /// Odd but survivable members are repaired here; only what no repair can save is an error.
    pub fn decode(body: &[u8]) -> Result<Envelope, DecodeError> {
        let received_at = now_epoch_secs();
        if body.is_empty() {
            return Ok(Envelope {
                id: fresh_id(),
                kind: String::new(),
                ts: received_at,
                payload: Map::new(),
            });
        }
        let text = std::str::from_utf8(body).map_err(|_| DecodeError::NotUtf8)?;
        // Parsing into a generic value first gives "last duplicate member wins" for free.
        let value: Value =
            serde_json::from_str(text).map_err(|e| DecodeError::NotJson(e.to_string()))?;
        let Value::Object(mut members) = value else {
            return Err(DecodeError::NotAnObject(json_type_name(&value)));
        };

        let payload = match members.remove("payload") {
            None => Map::new(),
            Some(Value::Object(map)) => map,
            Some(other) if is_python_falsy(&other) => Map::new(),
            Some(other) => return Err(DecodeError::PayloadNotAnObject(json_type_name(&other))),
        };
        let kind = match members.get("type") {
            Some(Value::String(s)) => s.clone(),
            _ => String::new(),
        };
        let id = match members.get("id") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => fresh_id(),
        };
        let ts = members
            .get("ts")
            .and_then(timestamp_of)
            .unwrap_or(received_at);
        if let Some(v) = members.get("v").filter(|v| !version_is_coercible(v)) {
            log::debug!(
                "envelope member v={v} is not a version number; taken as {ENVELOPE_VERSION}"
            );
        }
        Ok(Envelope {
            id,
            kind,
            ts,
            payload,
        })
    }

    /// Writes the exact bytes DECNET would publish for this envelope on `subject` (docs/bus.md §2.2).
    pub fn encode(&self, subject: &str) -> Result<Vec<u8>, EncodeError> {
        encode_parts(subject, &self.id, &self.kind, self.ts, &self.payload)
    }
}

/// Encodes an envelope from its parts, with any serialisable payload: announcements borrow
/// their tags instead of copying them into a JSON map first.
pub fn encode_parts(
    subject: &str,
    id: &str,
    kind: &str,
    ts: f64,
    payload: &impl Serialize,
) -> Result<Vec<u8>, EncodeError> {
    /// Field order here *is* the wire order.
    #[derive(Serialize)]
    struct Wire<'a, P> {
        v: u8,
        id: &'a str,
        topic: &'a str,
        #[serde(rename = "type")]
        kind: &'a str,
        ts: f64,
        payload: P,
    }
    let wire = Wire {
        v: ENVELOPE_VERSION,
        id,
        topic: subject,
        kind,
        ts,
        payload,
    };
    let bytes = serde_json::to_vec(&wire).map_err(|e| EncodeError::Serialise {
        subject: subject.to_owned(),
        reason: e.to_string(),
    })?;
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(EncodeError::TooLarge {
            subject: subject.to_owned(),
            size: bytes.len(),
        });
    }
    Ok(bytes)
}

/// A message as the main loop sees it: the subject it arrived on, and what it carried.
#[derive(Debug, Clone, PartialEq)]
pub struct Inbound {
    pub subject: String,
    pub envelope: Envelope,
    /// What the message is reckoned to weigh in memory ([`Envelope::weight`]): what the
    /// message queue and batches are bounded by.
    pub bytes: usize,
}

/// A new envelope id: a random UUIDv4 written as 32 lowercase hex digits.
pub fn fresh_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Seconds since the Unix epoch, with sub-second digits.
pub fn now_epoch_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// `ts` as DECNET's decoder reads it: a number, or a string Python's `float()` accepts.
/// Anything else (null, booleans, text, non-finite values) means "use the time of receipt".
fn timestamp_of(value: &Value) -> Option<f64> {
    let ts = match value {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    ts.is_finite().then_some(ts)
}

/// DECNET runs `int(v)`: numbers, booleans and numeric strings pass, the rest raised there.
fn version_is_coercible(value: &Value) -> bool {
    match value {
        Value::Number(_) | Value::Bool(_) => true,
        Value::String(s) => s.trim().parse::<i64>().is_ok(),
        _ => false,
    }
}

/// DECNET writes `payload or {}`, so every Python-falsy value stands for an empty payload.
fn is_python_falsy(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// The JSON type of a value, as error messages name it.
pub fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const HEARTBEAT_GOLDEN: &str = r#"{"v":1,"id":"9cf47134ebb74d1d8f99a229dbe257eb","topic":"system.ttp.health","type":"health","ts":1777703010.5123,"payload":{"worker":"ttp","ts":1777703010.5121}}"#;
    const TAGGED_GOLDEN: &str = r#"{"v":1,"id":"b8ffdeb1454d4186833b283d0c3576e2","topic":"ttp.tagged","type":"tagged","ts":1777703011.0042,"payload":{"attacker_uuid":"f67bddf8-ae6d-4426-8a7e-480eafa90871","identity_uuid":null,"session_id":"9b1f3c2e-4d5a-4e6f-8a7b-0c1d2e3f4a5b","tag_uuids":["e8d12f16-b8f0-58fa-aec0-73e9eefe3320","afe6999a-c9ab-551f-8787-3e506e9d4b3c"],"techniques_added":["T1082","T1105"]}}"#;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("test payload must be an object, got {other}"),
        }
    }

    #[test]
    fn heartbeat_golden_encodes_byte_for_byte() {
        let envelope = Envelope {
            id: "9cf47134ebb74d1d8f99a229dbe257eb".into(),
            kind: "health".into(),
            ts: 1777703010.5123,
            payload: object(json!({"worker": "ttp", "ts": 1777703010.5121})),
        };
        let bytes = envelope.encode("system.ttp.health").unwrap();
        assert_eq!(std::str::from_utf8(&bytes).unwrap(), HEARTBEAT_GOLDEN);
        assert_eq!(bytes.len(), 160);
    }

    #[test]
    fn tagged_golden_encodes_byte_for_byte() {
        let envelope = Envelope {
            id: "b8ffdeb1454d4186833b283d0c3576e2".into(),
            kind: "tagged".into(),
            ts: 1777703011.0042,
            payload: object(json!({
                "attacker_uuid": "f67bddf8-ae6d-4426-8a7e-480eafa90871",
                "identity_uuid": null,
                "session_id": "9b1f3c2e-4d5a-4e6f-8a7b-0c1d2e3f4a5b",
                "tag_uuids": ["e8d12f16-b8f0-58fa-aec0-73e9eefe3320", "afe6999a-c9ab-551f-8787-3e506e9d4b3c"],
                "techniques_added": ["T1082", "T1105"],
            })),
        };
        let bytes = envelope.encode("ttp.tagged").unwrap();
        assert_eq!(std::str::from_utf8(&bytes).unwrap(), TAGGED_GOLDEN);
        assert_eq!(bytes.len(), 374);
    }

    #[test]
    fn goldens_round_trip_through_decode() {
        for (golden, subject) in [
            (HEARTBEAT_GOLDEN, "system.ttp.health"),
            (TAGGED_GOLDEN, "ttp.tagged"),
        ] {
            let decoded = Envelope::decode(golden.as_bytes()).unwrap();
            assert_eq!(decoded.encode(subject).unwrap(), golden.as_bytes());
        }
    }

    #[test]
    fn string_escapes_follow_orjson() {
        let envelope = Envelope {
            id: "00000000000000000000000000000000".into(),
            kind: "".into(),
            ts: 60.0,
            payload: object(json!({"s": "\u{e9}/\u{7f}\u{2028}\"\\\n\r\t\u{8}\u{c}\u{1}"})),
        };
        let text = String::from_utf8(envelope.encode("x").unwrap()).unwrap();
        let expected_tail = concat!(
            r#""ts":60.0,"payload":{"s":""#,
            "\u{e9}/\u{7f}\u{2028}",
            r#"\"\\\n\r\t\b\f\u0001"}}"#
        );
        assert!(text.ends_with(expected_tail), "{text}");
    }

    #[test]
    fn oversized_message_is_refused() {
        let big = "x".repeat(MAX_MESSAGE_BYTES);
        let envelope = Envelope::new("", object(json!({ "blob": big })));
        assert!(matches!(
            envelope.encode("ttp.tagged"),
            Err(EncodeError::TooLarge { .. })
        ));
    }

    #[test]
    fn empty_body_gives_all_defaults() {
        let before = now_epoch_secs();
        let e = Envelope::decode(b"").unwrap();
        assert_eq!(e.kind, "");
        assert!(e.payload.is_empty());
        assert_eq!(e.id.len(), 32);
        assert!(e.ts >= before);
    }

    #[test]
    fn bodies_that_are_not_json_objects_are_malformed() {
        assert_eq!(Envelope::decode(&[0xff, 0xfe]), Err(DecodeError::NotUtf8));
        assert!(matches!(
            Envelope::decode(b"not json"),
            Err(DecodeError::NotJson(_))
        ));
        for (body, found) in [
            ("[1,2]", "array"),
            ("5", "number"),
            ("\"x\"", "string"),
            ("null", "null"),
        ] {
            assert_eq!(
                Envelope::decode(body.as_bytes()),
                Err(DecodeError::NotAnObject(found)),
                "{body}"
            );
        }
    }

    #[test]
    fn falsy_payloads_become_empty_objects() {
        for payload in ["null", "{}", "[]", "\"\"", "0", "0.0", "false"] {
            let body = format!(r#"{{"type":"t","payload":{payload}}}"#);
            let e = Envelope::decode(body.as_bytes()).unwrap();
            assert!(e.payload.is_empty(), "{payload}");
        }
        let e = Envelope::decode(br#"{"type":"t"}"#).unwrap();
        assert!(e.payload.is_empty());
    }

    #[test]
    fn non_empty_non_object_payloads_are_malformed() {
        for (payload, found) in [
            ("[1]", "array"),
            ("\"x\"", "string"),
            ("5", "number"),
            ("true", "boolean"),
        ] {
            let body = format!(r#"{{"payload":{payload}}}"#);
            assert_eq!(
                Envelope::decode(body.as_bytes()),
                Err(DecodeError::PayloadNotAnObject(found)),
                "{payload}"
            );
        }
    }

    #[test]
    fn type_that_is_missing_or_not_a_string_is_empty() {
        for member in ["", r#","type":null"#, r#","type":"""#, r#","type":5"#] {
            let body = format!(r#"{{"payload":{{}}{member}}}"#);
            assert_eq!(
                Envelope::decode(body.as_bytes()).unwrap().kind,
                "",
                "{member}"
            );
        }
    }

    #[test]
    fn any_version_member_is_accepted() {
        for v in [
            "",
            r#","v":1"#,
            r#","v":"1""#,
            r#","v":1.9"#,
            r#","v":true"#,
            r#","v":null"#,
            r#","v":"x""#,
        ] {
            let body = format!(r#"{{"type":"t"{v}}}"#);
            assert_eq!(Envelope::decode(body.as_bytes()).unwrap().kind, "t", "{v}");
        }
    }

    #[test]
    fn timestamps_parse_or_fall_back_to_receipt_time() {
        let ts = |member: &str| {
            let body = format!(r#"{{"type":"t"{member}}}"#);
            Envelope::decode(body.as_bytes()).unwrap().ts
        };
        assert_eq!(ts(r#","ts":12.5"#), 12.5);
        assert_eq!(ts(r#","ts":12"#), 12.0);
        assert_eq!(ts(r#","ts":"12.5""#), 12.5);
        let before = now_epoch_secs();
        for fallback in [
            "",
            r#","ts":null"#,
            r#","ts":"soon""#,
            r#","ts":[]"#,
            r#","ts":"nan""#,
        ] {
            assert!(ts(fallback) >= before, "{fallback}");
        }
    }

    #[test]
    fn ids_that_are_missing_empty_or_not_strings_are_minted() {
        assert_eq!(Envelope::decode(br#"{"id":"abc"}"#).unwrap().id, "abc");
        for member in [r#"{}"#, r#"{"id":null}"#, r#"{"id":""}"#, r#"{"id":7}"#] {
            let id = Envelope::decode(member.as_bytes()).unwrap().id;
            assert_eq!(id.len(), 32, "{member}");
            assert!(
                id.chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            );
        }
    }

    #[test]
    fn topic_and_unknown_members_are_ignored_and_last_duplicate_wins() {
        let e = Envelope::decode(
            br#"{"topic":"ttp.tagged","extra":1,"type":"a","type":"b","payload":{"k":1},"payload":{"k":2}}"#,
        )
        .unwrap();
        assert_eq!(e.kind, "b");
        assert_eq!(e.payload.get("k"), Some(&json!(2)));
    }

    #[test]
    fn payload_member_order_is_kept() {
        let e = Envelope::decode(br#"{"payload":{"z":1,"a":2,"m":3}}"#).unwrap();
        let keys: Vec<_> = e.payload.keys().map(String::as_str).collect();
        assert_eq!(keys, ["z", "a", "m"]);
    }
}
