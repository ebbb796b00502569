//! The announcements for one message's new tags (bus.md §5.3–5.4): one `ttp.tagged`, then one
//! `ttp.rule.fired.<T>` per distinct technique, ascending.
//!
//! Only rows the store really inserted are announced. That is the loop-prevention rule
//! (bus.md §6.3): a redelivery or a replay inserts nothing and so announces nothing.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::envelope::{EncodeError, Envelope};
use crate::store::NewTag;
use crate::topics::{self, SegmentError, TAGGED};

/// One message ready to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Announcement {
    pub subject: String,
    pub envelope: Envelope,
}

/// Why an announcement could not be built; the rest of the message's announcements still go.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AnnounceError {
    #[error("no ttp.rule.fired for technique {technique:?}: {source}")]
    BadTechnique {
        technique: String,
        source: SegmentError,
    },
}

/// Builds the announcements for `new_tags` (the inserted rows of one message, in the tagger's
/// order). Empty input, empty output.
pub fn announcements(new_tags: &[&NewTag]) -> (Vec<Announcement>, Vec<AnnounceError>) {
    let Some(first) = new_tags.first() else {
        return (Vec::new(), Vec::new());
    };
    // Anchors of the first tag speak for the message, as in DECNET.
    let anchors = [
        ("attacker_uuid", json!(first.attacker_uuid)),
        ("identity_uuid", json!(first.identity_uuid)),
        ("session_id", json!(first.session_id)),
    ];
    let mut by_technique: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for tag in new_tags {
        by_technique
            .entry(tag.technique_id.as_str())
            .or_default()
            .push(tag.uuid.as_str());
    }

    let mut tagged = Map::new();
    for (key, value) in &anchors {
        tagged.insert((*key).into(), value.clone());
    }
    tagged.insert(
        "tag_uuids".into(),
        json!(new_tags.iter().map(|t| t.uuid.as_str()).collect::<Vec<_>>()),
    );
    tagged.insert(
        "techniques_added".into(),
        json!(by_technique.keys().collect::<Vec<_>>()),
    );
    // Our addition: the full records, so a fleet-level collector can keep tags without
    // reading each appliance's database.
    tagged.insert(
        "tags".into(),
        Value::Array(new_tags.iter().map(|t| tag_record(t)).collect()),
    );

    let mut out = vec![Announcement {
        subject: TAGGED.to_owned(),
        envelope: Envelope::new("tagged", tagged),
    }];
    let mut errors = Vec::new();
    for (technique, uuids) in by_technique {
        let subject = match topics::rule_fired(technique) {
            Ok(subject) => subject,
            Err(source) => {
                errors.push(AnnounceError::BadTechnique {
                    technique: technique.to_owned(),
                    source,
                });
                continue;
            }
        };
        let mut fired = Map::new();
        fired.insert("technique_id".into(), json!(technique));
        fired.insert("tag_uuids".into(), json!(uuids));
        for (key, value) in &anchors {
            fired.insert((*key).into(), value.clone());
        }
        out.push(Announcement {
            subject,
            envelope: Envelope::new("rule.fired", fired),
        });
    }
    (out, errors)
}

/// A tag as the `tag` command prints it and `ttp.tagged` carries it: the same keys in the
/// same order (a test holds the two together).
pub fn tag_record(tag: &NewTag) -> Value {
    let mut record = Map::with_capacity(15);
    record.insert("uuid".into(), json!(tag.uuid));
    record.insert("source_kind".into(), json!(tag.source_kind));
    record.insert("source_id".into(), json!(tag.source_id));
    record.insert("attacker_uuid".into(), json!(tag.attacker_uuid));
    record.insert("identity_uuid".into(), json!(tag.identity_uuid));
    record.insert("attacker_ip".into(), json!(tag.attacker_ip));
    record.insert("session_id".into(), json!(tag.session_id));
    record.insert("decky_id".into(), json!(tag.decky_id));
    record.insert("tactic".into(), json!(tag.tactic));
    record.insert("technique_id".into(), json!(tag.technique_id));
    record.insert("sub_technique_id".into(), json!(tag.sub_technique_id));
    record.insert("confidence".into(), json!(tag.confidence));
    record.insert("rule_id".into(), json!(tag.rule_id));
    record.insert("rule_version".into(), json!(tag.rule_version));
    record.insert("evidence".into(), Value::Object(tag.evidence.clone()));
    Value::Object(record)
}

/// Encodes an announcement. A `ttp.tagged` too large for the bus (a huge session) loses its
/// `tags` records rather than the whole announcement: the uuids still say what is new.
pub fn encode(announcement: &Announcement) -> Result<Vec<u8>, EncodeError> {
    match announcement.envelope.encode(&announcement.subject) {
        Err(EncodeError::TooLarge { size, .. })
            if announcement.envelope.payload.contains_key("tags") =>
        {
            log::warn!(
                "ttp.tagged with {} bytes of tag records is over the bus limit; sending it without the records",
                size
            );
            let mut lean = announcement.envelope.clone();
            lean.payload.remove("tags");
            lean.encode(&announcement.subject)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(uuid: &str, technique: &str, sub: Option<&str>) -> NewTag {
        NewTag {
            uuid: uuid.into(),
            source_kind: "command".into(),
            source_id: "s#1".into(),
            attacker_uuid: Some("f67bddf8-ae6d-4426-8a7e-480eafa90871".into()),
            identity_uuid: None,
            attacker_ip: Some("203.0.113.45".into()),
            session_id: Some("9b1f3c2e-4d5a-4e6f-8a7b-0c1d2e3f4a5b".into()),
            decky_id: Some("omega-decky".into()),
            tactic: "TA0011".into(),
            technique_id: technique.into(),
            sub_technique_id: sub.map(Into::into),
            confidence: 0.85,
            rule_id: "R0012".into(),
            rule_version: 1,
            evidence: Map::new(),
            mitre_url: None,
        }
    }

    #[test]
    fn records_have_the_tag_commands_keys_in_its_order() {
        let printed = crate::tagging::Tag {
            uuid: "u".into(),
            source_kind: "command".into(),
            source_id: "s".into(),
            attacker_uuid: None,
            identity_uuid: None,
            attacker_ip: Some("192.0.2.1".into()),
            session_id: None,
            decky_id: None,
            tactic: "TA0007".into(),
            technique_id: "T1082".into(),
            sub_technique_id: None,
            confidence: 0.5,
            rule_id: "R0018".into(),
            rule_version: 1,
            evidence: Map::new(),
        };
        let stored = crate::pipeline::new_tag(printed.clone());
        assert_eq!(
            tag_record(&stored),
            serde_json::to_value(&printed).unwrap(),
            "ttp.tagged records must read exactly like `ttp-worker tag` lines"
        );
    }

    #[test]
    fn nothing_new_announces_nothing() {
        assert_eq!(announcements(&[]), (Vec::new(), Vec::new()));
    }

    #[test]
    fn tagged_then_one_rule_fired_per_technique_in_ascending_order() {
        let a = tag("e8d12f16-b8f0-58fa-aec0-73e9eefe3320", "T1105", None);
        let b = tag("afe6999a-c9ab-551f-8787-3e506e9d4b3c", "T1082", None);
        let c = tag(
            "2918a2bd-5536-5db6-a4d5-817f2fc30e66",
            "T1105",
            Some("T1105.001"),
        );
        let (out, errors) = announcements(&[&a, &b, &c]);
        assert!(errors.is_empty());
        let subjects: Vec<&str> = out.iter().map(|a| a.subject.as_str()).collect();
        assert_eq!(
            subjects,
            ["ttp.tagged", "ttp.rule.fired.T1082", "ttp.rule.fired.T1105"]
        );

        let tagged = &out[0].envelope;
        assert_eq!(tagged.kind, "tagged");
        let keys: Vec<&str> = tagged.payload.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "attacker_uuid",
                "identity_uuid",
                "session_id",
                "tag_uuids",
                "techniques_added",
                "tags"
            ]
        );
        assert_eq!(
            tagged.payload["tag_uuids"],
            json!([a.uuid, b.uuid, c.uuid]),
            "tagger order"
        );
        assert_eq!(
            tagged.payload["techniques_added"],
            json!(["T1082", "T1105"])
        );
        assert_eq!(tagged.payload["tags"][2]["sub_technique_id"], "T1105.001");
        assert_eq!(tagged.payload["tags"][0]["attacker_ip"], "203.0.113.45");

        let fired = &out[2].envelope;
        assert_eq!(fired.kind, "rule.fired");
        let keys: Vec<&str> = fired.payload.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "technique_id",
                "tag_uuids",
                "attacker_uuid",
                "identity_uuid",
                "session_id"
            ]
        );
        assert_eq!(fired.payload["tag_uuids"], json!([a.uuid, c.uuid]));
        assert_eq!(fired.payload["attacker_uuid"], json!(a.attacker_uuid));
    }

    #[test]
    fn an_unusable_technique_skips_only_its_own_rule_fired() {
        let good = tag("u1", "T1082", None);
        let bad = tag("u2", "T 1", None);
        let (out, errors) = announcements(&[&good, &bad]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].subject, "ttp.rule.fired.T1082");
        assert!(
            matches!(&errors[..], [AnnounceError::BadTechnique { technique, .. }] if technique == "T 1")
        );
    }

    #[test]
    fn an_oversized_tagged_drops_its_records_not_its_uuids() {
        let mut big = tag("u1", "T1082", None);
        big.evidence
            .insert("command_text".into(), json!("x".repeat(1_100_000)));
        let (out, _) = announcements(&[&big]);
        let bytes = encode(&out[0]).unwrap();
        let wire: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(wire["payload"]["tag_uuids"], json!(["u1"]));
        assert!(wire["payload"].get("tags").is_none());
    }
}
