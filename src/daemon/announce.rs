//! The announcements for one message's new tags (docs/bus.md §5.3–5.4): one `ttp.tagged`, then one
//! `ttp.rule.fired.<T>` per distinct technique, ascending.
//!
//! Only rows the store really inserted are announced. That is the loop-prevention rule
//! (docs/bus.md §6.3): a redelivery or a replay inserts nothing and so announces nothing.
//!
//! The payloads are serialised straight from the stored rows (borrowed, in wire order); under
//! load a `ttp.tagged` is written for most messages, and building JSON maps first would copy
//! every tag's evidence once more.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::envelope::{EncodeError, encode_parts, fresh_id, now_epoch_secs};
use crate::tagging::Tag;
use crate::topics::{self, SegmentError, TAGGED};

/// One message ready to publish: exact envelope bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Announcement {
    pub kind: Kind,
    pub subject: String,
    pub bytes: Vec<u8>,
}

/// Which announcement it is; the heartbeat counts the `ttp.tagged` ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Tagged,
    RuleFired,
}

/// Why an announcement could not be built; the rest of the message's announcements still go.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AnnounceError {
    #[error("no ttp.rule.fired for technique {technique:?}: {source}")]
    BadTechnique {
        technique: String,
        source: SegmentError,
    },
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// `ttp.tagged`: DECNET's five keys, then ours.
#[derive(Serialize)]
struct Tagged<'a> {
    attacker_uuid: &'a Option<String>,
    identity_uuid: &'a Option<String>,
    session_id: &'a Option<String>,
    tag_uuids: Vec<&'a str>,
    techniques_added: Vec<&'a str>,
    /// The full records (what `ttp-worker tag` prints), so a fleet-level collector can keep
    /// tags without reading each appliance's database. Left out only when the message would
    /// exceed the bus limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<&'a [&'a Tag]>,
}

/// `ttp.rule.fired.<T>`: exactly DECNET's five keys.
#[derive(Serialize)]
struct Fired<'a> {
    technique_id: &'a str,
    tag_uuids: &'a [&'a str],
    attacker_uuid: &'a Option<String>,
    identity_uuid: &'a Option<String>,
    session_id: &'a Option<String>,
}

/// Builds the announcements for `new_tags` (the inserted rows of one message, in the tagger's
/// order). Empty input, empty output.
pub fn announcements(new_tags: &[&Tag]) -> (Vec<Announcement>, Vec<AnnounceError>) {
    let Some(first) = new_tags.first() else {
        return (Vec::new(), Vec::new());
    };
    let mut by_technique: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for tag in new_tags {
        by_technique
            .entry(tag.technique_id.as_str())
            .or_default()
            .push(tag.uuid.as_str());
    }
    let mut out = Vec::with_capacity(1 + by_technique.len());
    let mut errors = Vec::new();

    // Anchors of the first tag speak for the message, as in DECNET.
    let mut tagged = Tagged {
        attacker_uuid: &first.attacker_uuid,
        identity_uuid: &first.identity_uuid,
        session_id: &first.session_id,
        tag_uuids: new_tags.iter().map(|t| t.uuid.as_str()).collect(),
        techniques_added: by_technique.keys().copied().collect(),
        tags: Some(new_tags),
    };
    let encoded = match encode(TAGGED, "tagged", &tagged) {
        Err(EncodeError::TooLarge { size, .. }) => {
            log::warn!(
                "ttp.tagged with {size} bytes of tag records is over the bus limit; sending it without the records"
            );
            tagged.tags = None;
            encode(TAGGED, "tagged", &tagged)
        }
        other => other,
    };
    match encoded {
        Ok(bytes) => out.push(Announcement {
            kind: Kind::Tagged,
            subject: TAGGED.to_owned(),
            bytes,
        }),
        Err(err) => errors.push(err.into()),
    }

    for (technique, uuids) in &by_technique {
        let subject = match topics::rule_fired(technique) {
            Ok(subject) => subject,
            Err(source) => {
                errors.push(AnnounceError::BadTechnique {
                    technique: (*technique).to_owned(),
                    source,
                });
                continue;
            }
        };
        let fired = Fired {
            technique_id: technique,
            tag_uuids: uuids,
            attacker_uuid: &first.attacker_uuid,
            identity_uuid: &first.identity_uuid,
            session_id: &first.session_id,
        };
        match encode(&subject, "rule.fired", &fired) {
            Ok(bytes) => out.push(Announcement {
                kind: Kind::RuleFired,
                subject,
                bytes,
            }),
            Err(err) => errors.push(err.into()),
        }
    }
    (out, errors)
}

fn encode(subject: &str, kind: &str, payload: &impl Serialize) -> Result<Vec<u8>, EncodeError> {
    encode_parts(subject, &fresh_id(), kind, now_epoch_secs(), payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn tag(uuid: &str, technique: &str, sub: Option<&str>) -> Tag {
        Tag {
            attacker_ip: Some("203.0.113.45".into()),
            technique_id: technique.into(),
            sub_technique_id: sub.map(Into::into),
            ..Tag::for_test(uuid)
        }
    }

    /// The decoded envelope of an announcement, after checking its wire form.
    fn wire(announcement: &Announcement) -> Value {
        let value: Value = serde_json::from_slice(&announcement.bytes).unwrap();
        let keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["v", "id", "topic", "type", "ts", "payload"]);
        assert_eq!(value["topic"], announcement.subject.as_str());
        assert_eq!(value["id"].as_str().unwrap().len(), 32);
        value
    }

    fn keys(value: &Value) -> Vec<&str> {
        value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect()
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

        let tagged = wire(&out[0]);
        assert_eq!(tagged["type"], "tagged");
        let payload = &tagged["payload"];
        assert_eq!(
            keys(payload),
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
            payload["tag_uuids"],
            json!([a.uuid, b.uuid, c.uuid]),
            "tagger order"
        );
        assert_eq!(payload["techniques_added"], json!(["T1082", "T1105"]));
        assert_eq!(payload["tags"][2]["sub_technique_id"], "T1105.001");
        assert_eq!(payload["tags"][0]["attacker_ip"], "203.0.113.45");

        let fired = wire(&out[2]);
        assert_eq!(fired["type"], "rule.fired");
        assert_eq!(
            keys(&fired["payload"]),
            [
                "technique_id",
                "tag_uuids",
                "attacker_uuid",
                "identity_uuid",
                "session_id"
            ]
        );
        assert_eq!(fired["payload"]["tag_uuids"], json!([a.uuid, c.uuid]));
        assert_eq!(fired["payload"]["attacker_uuid"], json!(a.attacker_uuid));
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
        let (out, errors) = announcements(&[&big]);
        assert!(errors.is_empty());
        let tagged = wire(&out[0]);
        assert_eq!(tagged["payload"]["tag_uuids"], json!(["u1"]));
        assert!(tagged["payload"].get("tags").is_none());
    }
}
