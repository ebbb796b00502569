//! The IPv6 leak record DECNET keeps on attackers and identities (docs/decnet-db.md §6).

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use super::encode::python_json;
use crate::store::format_utc;
use crate::tagging::Tag;
use crate::tagging::py::{py_str, truthy};

/// What one `ipv6_leak` tag writes.
#[derive(Debug, Clone, PartialEq)]
pub struct Ipv6Leak {
    pub attacker_uuid: String,
    pub identity_uuid: Option<String>,
    /// `addr`, `iid_kind`, `mac_oui` of the evidence, `None` when missing or falsy.
    pub addr: Option<String>,
    pub iid_kind: Option<String>,
    pub mac_oui: Option<String>,
    /// The evidence as it was, for the identity's entry (which keeps falsy values).
    evidence: Map<String, Value>,
}

/// The first `ipv6_leak` tag of each attacker among a message's tags.
pub fn leak_records(tags: &[Tag]) -> Vec<Ipv6Leak> {
    let mut seen: Vec<&str> = Vec::new();
    let mut out = Vec::new();
    for tag in tags.iter().filter(|t| t.source_kind == "ipv6_leak") {
        let Some(attacker) = tag.attacker_uuid.as_deref() else {
            continue;
        };
        if seen.contains(&attacker) {
            continue;
        }
        seen.push(attacker);
        let member = |key: &str| tag.evidence.get(key).filter(|v| truthy(v)).map(py_str);
        out.push(Ipv6Leak {
            attacker_uuid: attacker.to_owned(),
            identity_uuid: tag.identity_uuid.clone(),
            addr: member("addr"),
            iid_kind: member("iid_kind"),
            mac_oui: member("mac_oui"),
            evidence: tag.evidence.clone(),
        });
    }
    out
}

impl Ipv6Leak {
    /// The identity's `ipv6_link_local_iids` with this address added, or `None` when it is
    /// listed already. A value that is not a JSON list counts as an empty one.
    pub fn appended_to(&self, stored: Option<&str>, addr: &str, now: SystemTime) -> Option<String> {
        let mut entries = match stored.map(serde_json::from_str::<Value>) {
            Some(Ok(Value::Array(entries))) => entries,
            _ => Vec::new(),
        };
        if entries
            .iter()
            .any(|e| e.get("iid").and_then(Value::as_str) == Some(addr))
        {
            return None;
        }
        let or = |key: &str, default: &str| {
            self.evidence
                .get(key)
                .cloned()
                .unwrap_or_else(|| Value::from(default))
        };
        entries.push(json!({
            "iid": addr,
            "oui": or("mac_oui", ""),
            "kind": or("iid_kind", "unknown"),
            "first_seen": python_isoformat(now),
        }));
        Some(python_json(&Value::Array(entries)))
    }
}

/// `datetime.now(timezone.utc).isoformat()`: microseconds only when there are some.
fn python_isoformat(now: SystemTime) -> String {
    let text = format_utc(now); // YYYY-MM-DDTHH:MM:SS.ffffffZ
    let micros = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_micros());
    let seconds = &text[..19];
    if micros == 0 {
        format!("{seconds}+00:00")
    } else {
        format!("{}+00:00", &text[..26])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn leak_tag(attacker: &str, evidence: Value) -> Tag {
        Tag {
            source_kind: "ipv6_leak".into(),
            attacker_uuid: Some(attacker.into()),
            identity_uuid: Some("I".into()),
            evidence: evidence.as_object().cloned().unwrap_or_default(),
            ..Tag::for_test("00000000-0000-5000-8000-000000000001")
        }
    }

    #[test]
    fn one_record_per_attacker_with_falsy_members_as_null() {
        let tags = [
            leak_tag(
                "A",
                json!({"addr": "fe80::1", "iid_kind": "", "mac_oui": "aa:bb:cc"}),
            ),
            leak_tag("A", json!({"addr": "fe80::2"})),
            leak_tag("B", json!({})),
        ];
        let records = leak_records(&tags);
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].addr.as_deref(), Some("fe80::1"));
        assert_eq!(records[0].iid_kind, None);
        assert_eq!(records[0].mac_oui.as_deref(), Some("aa:bb:cc"));
        assert_eq!(records[1].addr, None);
    }

    #[test]
    fn the_identity_list_gains_an_address_once() {
        let leak = &leak_records(&[leak_tag("A", json!({"addr": "fe80::1", "iid_kind": ""}))])[0];
        let now = UNIX_EPOCH + Duration::new(1_777_703_010, 0);
        let first = leak.appended_to(None, "fe80::1", now).unwrap_or_default();
        assert_eq!(
            first,
            r#"[{"iid": "fe80::1", "oui": "", "kind": "", "first_seen": "2026-05-02T06:23:30+00:00"}]"#
        );
        assert_eq!(leak.appended_to(Some(&first), "fe80::1", now), None);
        let later = now + Duration::from_micros(5);
        let second = leak
            .appended_to(Some("not json"), "fe80::1", later)
            .unwrap_or_default();
        assert!(
            second.contains("2026-05-02T06:23:30.000005+00:00"),
            "{second}"
        );
    }
}
