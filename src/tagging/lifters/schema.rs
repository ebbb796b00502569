//! The evidence schema (docs/tagging.md §9.3): which evidence keys a tag of each source kind may
//! carry. DECNET's event classes refuse any other key with a TypeError, which costs the whole
//! tagger event; the composite checks every lifter's tags against this before keeping them.

use super::email;
use super::ipv6;
use super::kit::LiftError;
use crate::tagging::tag::Tag;

/// Evidence keys allowed per source kind; kinds not listed are not validated.
pub fn allowed_evidence_keys(source_kind: &str) -> Option<&'static [&'static str]> {
    Some(match source_kind {
        "command" => &["matched_tokens", "rule_pattern"],
        "intel" => &[
            "abuseipdb_categories",
            "abuseipdb_score",
            "abuse_confidence_score",
            "greynoise_classification",
            "greynoise_tags",
            "greynoise_name",
            "feodo_listed",
            "feodo_malware_family",
            "first_seen_feodo",
            "malware_family",
            "threatfox_threat_types",
            "threatfox_ioc_types",
            "threatfox_malware_families",
            "threat_types",
            "malware_families",
            "ioc_types",
            "aggregate_verdict",
            "bumped_rule_ids",
        ],
        "email" => &email::EVIDENCE_KEYS,
        "canary_fingerprint" => &["metric", "matched_signature"],
        "http_fingerprint" => &["kind", "hash", "protocol", "client_ip", "seen_at", "raw"],
        "ipv6_leak" => &ipv6::EVIDENCE_KEYS,
        _ => return None,
    })
}

/// Every evidence key of every tag must be allowed for the event's kind.
pub fn validate_evidence(source_kind: &str, tags: &[Tag]) -> Result<(), LiftError> {
    let Some(allowed) = allowed_evidence_keys(source_kind) else {
        return Ok(());
    };
    for tag in tags {
        if let Some(key) = tag.evidence.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(LiftError::Schema {
                rule_id: tag.rule_id.clone(),
                key: key.clone(),
                source_kind: source_kind.to_owned(),
            });
        }
    }
    Ok(())
}
