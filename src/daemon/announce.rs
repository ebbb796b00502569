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
/// order), each at most `limit` bytes (the server's `max_payload`). Empty input, empty output.
///
/// A message with more new tags than fit in one `ttp.tagged` (tens of thousands, from one
/// long session) gets several, each a complete envelope of the same shape over a run of the
/// tags in order, so that every new row is announced; the same goes for a `ttp.rule.fired`
/// with more UUIDs than fit. Only a single tag whose record alone is over the limit is
/// announced without its record.
pub fn announcements(new_tags: &[&Tag], limit: usize) -> (Vec<Announcement>, Vec<AnnounceError>) {
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
    let anchors = Anchors::of(first);

    split_tagged(new_tags, &anchors, limit, &mut out, &mut errors);

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
        split_fired(
            &subject,
            technique,
            uuids,
            &anchors,
            limit,
            &mut out,
            &mut errors,
        );
    }
    (out, errors)
}

/// The anchors of the message's first tag, which speak for the whole message (as in DECNET).
struct Anchors<'a> {
    attacker_uuid: &'a Option<String>,
    identity_uuid: &'a Option<String>,
    session_id: &'a Option<String>,
}

impl<'a> Anchors<'a> {
    fn of(tag: &'a Tag) -> Anchors<'a> {
        Anchors {
            attacker_uuid: &tag.attacker_uuid,
            identity_uuid: &tag.identity_uuid,
            session_id: &tag.session_id,
        }
    }
}

/// One `ttp.tagged` for `tags` if it fits, else one for each half, and so on down.
fn split_tagged(
    tags: &[&Tag],
    anchors: &Anchors,
    limit: usize,
    out: &mut Vec<Announcement>,
    errors: &mut Vec<AnnounceError>,
) {
    let mut techniques: Vec<&str> = tags.iter().map(|t| t.technique_id.as_str()).collect();
    techniques.sort_unstable();
    techniques.dedup();
    let mut tagged = Tagged {
        attacker_uuid: anchors.attacker_uuid,
        identity_uuid: anchors.identity_uuid,
        session_id: anchors.session_id,
        tag_uuids: tags.iter().map(|t| t.uuid.as_str()).collect(),
        techniques_added: techniques,
        tags: Some(tags),
    };
    let mut encoded = encode(TAGGED, "tagged", &tagged, limit);
    if let Err(EncodeError::TooLarge { size, .. }) = encoded {
        if tags.len() > 1 {
            let (front, back) = tags.split_at(tags.len() / 2);
            split_tagged(front, anchors, limit, out, errors);
            split_tagged(back, anchors, limit, out, errors);
            return;
        }
        log::warn!(
            "the record of tag {} makes a ttp.tagged of {size} bytes, over the bus limit of {limit}; sending it without the record",
            tags[0].uuid
        );
        tagged.tags = None;
        encoded = encode(TAGGED, "tagged", &tagged, limit);
    }
    match encoded {
        Ok(bytes) => out.push(Announcement {
            kind: Kind::Tagged,
            subject: TAGGED.to_owned(),
            bytes,
        }),
        Err(err) => errors.push(err.into()),
    }
}

/// One `ttp.rule.fired.<T>` for `uuids` if it fits, else one for each half, and so on down.
fn split_fired(
    subject: &str,
    technique: &str,
    uuids: &[&str],
    anchors: &Anchors,
    limit: usize,
    out: &mut Vec<Announcement>,
    errors: &mut Vec<AnnounceError>,
) {
    let fired = Fired {
        technique_id: technique,
        tag_uuids: uuids,
        attacker_uuid: anchors.attacker_uuid,
        identity_uuid: anchors.identity_uuid,
        session_id: anchors.session_id,
    };
    match encode(subject, "rule.fired", &fired, limit) {
        Ok(bytes) => out.push(Announcement {
            kind: Kind::RuleFired,
            subject: subject.to_owned(),
            bytes,
        }),
        Err(EncodeError::TooLarge { .. }) if uuids.len() > 1 => {
            let (front, back) = uuids.split_at(uuids.len() / 2);
            split_fired(subject, technique, front, anchors, limit, out, errors);
            split_fired(subject, technique, back, anchors, limit, out, errors);
        }
        Err(err) => errors.push(err.into()),
    }
}

/// The envelope, refused when over `limit` (as well as over the envelope's own limit).
fn encode(
    subject: &str,
    kind: &str,
    payload: &impl Serialize,
    limit: usize,
) -> Result<Vec<u8>, EncodeError> {
    let bytes = encode_parts(subject, &fresh_id(), kind, now_epoch_secs(), payload)?;
    if bytes.len() > limit {
        return Err(EncodeError::TooLarge {
            subject: subject.to_owned(),
            size: bytes.len(),
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::MAX_MESSAGE_BYTES;
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
        assert_eq!(
            announcements(&[], MAX_MESSAGE_BYTES),
            (Vec::new(), Vec::new())
        );
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
        let (out, errors) = announcements(&[&a, &b, &c], MAX_MESSAGE_BYTES);
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
        let (out, errors) = announcements(&[&good, &bad], MAX_MESSAGE_BYTES);
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
        let (out, errors) = announcements(&[&big], MAX_MESSAGE_BYTES);
        assert!(errors.is_empty());
        let tagged = wire(&out[0]);
        assert_eq!(tagged["payload"]["tag_uuids"], json!(["u1"]));
        assert!(tagged["payload"].get("tags").is_none());
    }

    /// Over the limit, the tags are spread over several complete announcements, in order,
    /// every UUID in exactly one `ttp.tagged` and one `ttp.rule.fired`, each within the limit.
    #[test]
    fn announcements_over_the_limit_are_split_and_every_tag_is_announced() {
        let tags: Vec<Tag> = (0..3_000)
            .map(|i| {
                let technique = if i % 3 == 0 { "T1082" } else { "T1105" };
                tag(&format!("uuid-{i:05}"), technique, None)
            })
            .collect();
        let refs: Vec<&Tag> = tags.iter().collect();
        let limit = 64 * 1024;
        let (out, errors) = announcements(&refs, limit);
        assert!(errors.is_empty(), "{errors:?}");
        assert!(out.iter().all(|a| a.bytes.len() <= limit));
        let tagged: Vec<Value> = out
            .iter()
            .filter(|a| a.kind == Kind::Tagged)
            .map(wire)
            .collect();
        assert!(tagged.len() > 1);
        let mut uuids = Vec::new();
        for message in &tagged {
            let payload = &message["payload"];
            assert_eq!(
                payload["tags"].as_array().unwrap().len(),
                payload["tag_uuids"].as_array().unwrap().len()
            );
            uuids.extend(
                payload["tag_uuids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|u| u.as_str().unwrap().to_owned()),
            );
        }
        let expected: Vec<String> = tags.iter().map(|t| t.uuid.clone()).collect();
        assert_eq!(uuids, expected, "every tag once, in order");
        let mut fired: Vec<String> = out
            .iter()
            .filter(|a| a.kind == Kind::RuleFired)
            .flat_map(|a| {
                let value = wire(a);
                value["payload"]["tag_uuids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|u| u.as_str().unwrap().to_owned())
                    .collect::<Vec<_>>()
            })
            .collect();
        fired.sort();
        let mut expected = expected;
        expected.sort();
        assert_eq!(fired, expected);
    }
}
