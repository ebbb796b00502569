//! Email lifter (docs/tagging.md §8.4): SMTP captures, with an evidence shape of its own.
//!
//! Divergence: DECNET falls back to reading the stored `.eml` from its artifact tree when the
//! payload has no `body_text`; a bus worker has no such tree, so R0047/R0048 need `body_text`.

use std::sync::Arc;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::kit::{
    AnchorMode, Extras, LiftContext, LiftError, LiftResult, each_rule, emit_all, extras, int_param,
};
use crate::tagging::event::TaggerEvent;
use crate::tagging::py::{Fields as _, as_int, first_truthy, is_true, truthy};
use crate::tagging::rules::Rule;

/// The only keys an email tag's evidence may carry (§8.4 step 3, §9.3).
pub const EVIDENCE_KEYS: [&str; 12] = [
    "body_sha256",
    "matched_headers",
    "rcpt_domain_set",
    "attachment_sha256s",
    "rcpt_count",
    "matched_kit",
    "matched_trigger",
    "matched_url_host",
    "matched_signals",
    "matched_subject_kw",
    "matched_body_kw",
    "encoded_byte_count",
];

pub fn lift(rules: &[Arc<Rule>], ev: &TaggerEvent, ctx: &LiftContext<'_>) -> LiftResult {
    let base = base_evidence(&ev.payload)?;
    each_rule(rules, ev, ctx, |rule, kind, tags| {
        let Some(extras) = predicate(kind, rule, &ev.payload)? else {
            return Ok(());
        };
        let evidence = finish_evidence(&base, extras, &ev.payload);
        emit_all(ev, rule, evidence, AnchorMode::Event, tags)
    })
}

fn base_evidence(p: &Map<String, Value>) -> Result<Map<String, Value>, LiftError> {
    let body_sha = match p.field("body_sha256") {
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    };
    // DECNET iterates whatever `rcpt_domains` holds: a string gives its characters, an object
    // its keys, and a scalar is a TypeError.
    let mut domains: Vec<String> = match p.field("rcpt_domains") {
        None => Vec::new(),
        Some(v) if !truthy(v) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_lowercase)
            .collect(),
        Some(Value::String(s)) => s.chars().map(|c| c.to_lowercase().collect()).collect(),
        Some(Value::Object(o)) => o.keys().map(|k| k.to_lowercase()).collect(),
        Some(other) => {
            return Err(LiftError::Failed(format!(
                "rcpt_domains {other} is not iterable"
            )));
        }
    };
    domains.sort();
    domains.dedup();
    let attachments: Vec<Value> = match p.field("attachment_sha256s") {
        Some(Value::Array(items)) => items.iter().filter(|v| v.is_string()).cloned().collect(),
        _ => Vec::new(),
    };
    let rcpt_count = p
        .field("rcpt_count")
        .filter(|v| as_int(v).is_some())
        .cloned()
        .unwrap_or(Value::from(0));
    Ok(extras([
        ("body_sha256", Value::String(body_sha)),
        ("matched_headers", Value::Array(Vec::new())),
        (
            "rcpt_domain_set",
            Value::Array(domains.into_iter().map(Value::String).collect()),
        ),
        ("attachment_sha256s", Value::Array(attachments)),
        ("rcpt_count", rcpt_count),
    ]))
}

fn finish_evidence(
    base: &Map<String, Value>,
    extras: Extras,
    p: &Map<String, Value>,
) -> Map<String, Value> {
    let mut evidence = base.clone();
    for (k, v) in extras {
        if k == "matched_headers" {
            let mut headers: Vec<String> = evidence
                .field("matched_headers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .chain(v.as_array().into_iter().flatten())
                .filter_map(|h| h.as_str().map(str::to_owned))
                .collect();
            headers.sort();
            headers.dedup();
            evidence.insert(
                k,
                Value::Array(headers.into_iter().map(Value::String).collect()),
            );
        } else if EVIDENCE_KEYS.contains(&k.as_str()) {
            evidence.insert(k, v);
        }
    }
    let empty_sha = evidence
        .field("body_sha256")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty);
    if let (true, Some(Value::String(body))) = (empty_sha, p.field("body_text"))
        && !body.is_empty()
    {
        let digest = Sha256::digest(body.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        evidence.insert("body_sha256".into(), Value::String(hex));
    }
    evidence
}

/// "Domain of x" (§8.4): the part after the first `@`, lowercased and trimmed; `None` when x
/// is not a non-empty string.
fn domain_of(v: Option<&Value>) -> Option<String> {
    let s = v.and_then(Value::as_str).filter(|s| !s.is_empty())?;
    let d = s.split_once('@').map_or(s, |(_, d)| d);
    Some(d.to_lowercase().trim().to_owned())
}

fn headers(names: &[&str]) -> Value {
    Value::Array(
        names
            .iter()
            .map(|h| Value::String((*h).to_owned()))
            .collect(),
    )
}

fn listed(rule: &Rule, key: &str, name: &str) -> bool {
    matches!(rule.param(key), Some(Value::Array(items)) if items.iter().any(|v| v.as_str() == Some(name)))
}

fn predicate(kind: &str, rule: &Rule, p: &Map<String, Value>) -> Result<Option<Extras>, LiftError> {
    let rcpt = p.field("rcpt_count").and_then(as_int);
    Ok(match kind {
        "lifter:email_open_relay" => {
            let threshold = int_param(rule, "rcpt_threshold", 10)?;
            if rcpt.is_none_or(|n| n < threshold) {
                return Ok(None);
            }
            if rule.param("require_foreign_from").is_some_and(truthy) {
                let from = domain_of(first_truthy(p, &["from_domain", "from"]));
                let mail_from = domain_of(first_truthy(p, &["mail_from_domain", "mail_from"]));
                match (from, mail_from) {
                    (Some(a), Some(b)) if !a.is_empty() && !b.is_empty() && a != b => {}
                    _ => return Ok(None),
                }
            }
            Some(extras([(
                "matched_headers",
                headers(&["From", "Mail-From"]),
            )]))
        }
        "lifter:email_mass_phish" => {
            let threshold = int_param(rule, "rcpt_threshold", 25)?;
            let simhash_ok = matches!(p.field("body_simhash"), Some(Value::String(_)))
                || p.field("body_simhash").and_then(as_int).is_some();
            (rcpt.is_some_and(|n| n >= threshold) && simhash_ok).then(Extras::new)
        }
        "lifter:email_xmailer_kit" => {
            if p.field("x_mailer")
                .and_then(Value::as_str)
                .is_none_or(|s| s.is_empty())
            {
                return Ok(None);
            }
            match p.field("matched_kit") {
                Some(Value::String(kit)) if !kit.is_empty() => Some(extras([
                    ("matched_headers", headers(&["X-Mailer"])),
                    ("matched_kit", Value::String(kit.clone())),
                ])),
                _ if is_true(p, "xmailer_kit_match") => {
                    Some(extras([("matched_headers", headers(&["X-Mailer"]))]))
                }
                _ => None,
            }
        }
        "lifter:email_idn_url" => {
            let prefix = match rule.param("punycode_prefix") {
                Some(Value::String(s)) if !s.is_empty() => s.as_str(),
                _ => "xn--",
            };
            let urls = match p.field("urls") {
                Some(Value::Array(items)) => items.as_slice(),
                _ => &[],
            };
            urls.iter()
                .filter_map(Value::as_str)
                .find(|u| u.contains(prefix))
                .map(|url| {
                    let host = ["http://", "https://"]
                        .iter()
                        .find_map(|scheme| url.strip_prefix(scheme))
                        .map_or(String::new(), |rest| {
                            rest.split('/').next().unwrap_or("").to_lowercase()
                        });
                    extras([
                        ("matched_url_host", Value::String(host)),
                        ("matched_headers", headers(&["body"])),
                    ])
                })
        }
        "lifter:email_sender_masquerade" => sender_masquerade(rule, p),
        "lifter:email_malicious_attachment" => malicious_attachment(rule, p),
        "lifter:email_bec" => {
            let (Some(Value::String(subject)), Some(Value::String(body))) =
                (p.field("subject"), p.field("body_text"))
            else {
                return Ok(None);
            };
            let first_in = |key: &str, text: &str| {
                let lower = text.to_lowercase();
                match rule.param(key) {
                    Some(Value::Array(items)) => items
                        .iter()
                        .filter_map(Value::as_str)
                        .find(|kw| lower.contains(&kw.to_lowercase()))
                        .map(str::to_owned),
                    _ => None,
                }
            };
            match (
                first_in("subject_keywords", subject),
                first_in("body_action_keywords", body),
            ) {
                (Some(s), Some(b)) => Some(extras([
                    ("matched_subject_kw", Value::String(s)),
                    ("matched_body_kw", Value::String(b)),
                    ("matched_headers", headers(&["Subject"])),
                ])),
                _ => None,
            }
        }
        "lifter:email_encoded_payload" => {
            let Some(Value::String(body)) = p.field("body_text") else {
                return Ok(None);
            };
            if body.is_empty() {
                return Ok(None);
            }
            let min_bytes = int_param(rule, "min_bytes", 4096)?;
            match p.field("body_base64_bytes") {
                Some(v) if as_int(v).is_some_and(|n| n >= min_bytes) => {
                    Some(extras([("encoded_byte_count", v.clone())]))
                }
                _ => base64_run(body, min_bytes)
                    .map(|n| extras([("encoded_byte_count", Value::from(n))])),
            }
        }
        _ => None,
    })
}

fn sender_masquerade(rule: &Rule, p: &Map<String, Value>) -> Option<Extras> {
    let from = domain_of(p.field("from_domain"));
    let mismatch = |other: &str| {
        let other = domain_of(p.field(other));
        matches!((&from, &other), (Some(a), Some(b)) if a != b)
    };
    let checks = [
        ("from_returnpath_mismatch", mismatch("return_path_domain")),
        ("from_mailfrom_mismatch", mismatch("mail_from_domain")),
        (
            "dkim_fail",
            p.field("dkim_signed") == Some(&Value::Bool(false)),
        ),
        ("spf_fail", p.field("spf_pass") == Some(&Value::Bool(false))),
    ];
    let matched: Vec<&str> = checks
        .iter()
        .filter(|(name, hit)| *hit && listed(rule, "signals", name))
        .map(|(name, _)| *name)
        .collect();
    if matched.is_empty() {
        return None;
    }
    let mut hdrs = Vec::new();
    if matched.iter().any(|m| m.starts_with("from_")) {
        hdrs.extend(["From", "Return-Path"]);
    }
    if matched.contains(&"dkim_fail") {
        hdrs.push("DKIM-Signature");
    }
    if matched.contains(&"spf_fail") {
        hdrs.push("Authentication-Results");
    }
    hdrs.sort_unstable();
    Some(extras([
        (
            "matched_signals",
            Value::Array(
                matched
                    .iter()
                    .map(|m| Value::String((*m).to_owned()))
                    .collect(),
            ),
        ),
        ("matched_headers", headers(&hdrs)),
    ]))
}

fn malicious_attachment(rule: &Rule, p: &Map<String, Value>) -> Option<Extras> {
    let extensions: Vec<String> = match p.field("attachment_extensions") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(|e| e.to_lowercase().trim_start_matches('.').to_owned())
            .collect(),
        _ => Vec::new(),
    };
    let lanes = [
        ("office_macro", is_true(p, "attachment_macros")),
        (
            "protected_archive",
            is_true(p, "attachment_password_protected"),
        ),
        ("html_smuggling", is_true(p, "html_smuggling")),
        ("mal_hash_match", is_true(p, "mal_hash_match")),
        ("lnk", extensions.iter().any(|e| e == "lnk")),
        ("iso", extensions.iter().any(|e| e == "iso")),
        ("img", extensions.iter().any(|e| e == "img")),
    ];
    lanes
        .iter()
        .find(|(lane, hit)| *hit && listed(rule, "triggers", lane))
        .map(|(lane, _)| extras([("matched_trigger", Value::String((*lane).to_owned()))]))
}

/// §8.4 base64 scan: the decoded length of the first well-padded run of ≥ 32 base64
/// characters that decodes to at least `min_bytes`.
fn base64_run(body: &str, min_bytes: i64) -> Option<i64> {
    let bytes = body.as_bytes();
    let is_b64 = |b: u8| b.is_ascii_alphanumeric() || b == b'+' || b == b'/';
    let mut i = 0;
    while i < bytes.len() {
        if !is_b64(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && is_b64(bytes[i]) {
            i += 1;
        }
        let n = i - start;
        let mut pad = 0;
        while pad < 2 && i < bytes.len() && bytes[i] == b'=' {
            pad += 1;
            i += 1;
        }
        if n < 32 {
            continue;
        }
        let ok = n % 4 == 0 || (n % 4 == 2 && pad == 2) || (n % 4 == 3 && pad == 1);
        let decoded = (3 * n / 4) as i64;
        if ok && decoded >= min_bytes {
            return Some(decoded);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tagging::lifters::testkit::{event, rule, with_ctx};
    use serde_json::json;

    fn yaml(id: &str, kind: &str, params: &str) -> String {
        format!(
            "rule_id: {id}\nrule_version: 1\nname: n\napplies_to: [email]\n\
             match: {{kind: '{kind}'{params}}}\nemits: [{{tactic: TA0001, technique_id: T1566, confidence: 0.85}}]\n\
             evidence_fields: [ignored_field]\n"
        )
    }

    fn run(rules: &[Arc<Rule>], payload: Value) -> LiftResult {
        with_ctx(rules, |ctx| lift(rules, &event("email", payload), ctx))
    }

    /// docs/tagging.md §14.3, minus the UUIDs (which depend on the shipped rule ids).
    #[test]
    fn worked_example_evidence() {
        let rules = [
            rule(&yaml(
                "A",
                "lifter:email_open_relay",
                ", rcpt_threshold: 10, require_foreign_from: true",
            )),
            rule(&yaml("B", "lifter:email_idn_url", "")),
            rule(&yaml(
                "C",
                "lifter:email_sender_masquerade",
                ", signals: [from_returnpath_mismatch, from_mailfrom_mismatch, dkim_fail, spf_fail]",
            )),
            rule(&yaml(
                "D",
                "lifter:email_malicious_attachment",
                ", triggers: [office_macro, lnk, iso, img]",
            )),
        ];
        let payload = json!({"from_domain": "bigcorp.com", "mail_from_domain": "evil.example",
            "return_path_domain": "kit.evil", "rcpt_count": 30, "ignored_field": 1,
            "rcpt_domains": ["Target.tld", "other.tld", "target.tld"], "dkim_signed": false, "spf_pass": true,
            "urls": ["https://xn--80ak6aa92e.example/login"], "attachment_sha256s": ["aa11"],
            "attachment_extensions": [".ISO"], "body_sha256": null});
        let tags = run(&rules, payload).unwrap_or_default();
        let ev = |i: usize| Value::Object(tags[i].evidence.clone());
        assert_eq!(
            ev(0),
            json!({"body_sha256": "", "matched_headers": ["From", "Mail-From"],
            "rcpt_domain_set": ["other.tld", "target.tld"], "attachment_sha256s": ["aa11"], "rcpt_count": 30})
        );
        assert_eq!(
            ev(1).get("matched_url_host"),
            Some(&json!("xn--80ak6aa92e.example"))
        );
        assert_eq!(ev(1).get("matched_headers"), Some(&json!(["body"])));
        assert_eq!(
            ev(2).get("matched_signals"),
            Some(&json!([
                "from_returnpath_mismatch",
                "from_mailfrom_mismatch",
                "dkim_fail"
            ]))
        );
        assert_eq!(
            ev(2).get("matched_headers"),
            Some(&json!(["DKIM-Signature", "From", "Return-Path"]))
        );
        assert_eq!(ev(3).get("matched_trigger"), Some(&json!("iso")));
    }

    #[test]
    fn kit_bec_encoded_and_body_hash() {
        let rules = [
            rule(&yaml("K", "lifter:email_xmailer_kit", "")),
            rule(&yaml(
                "E",
                "lifter:email_bec",
                ", subject_keywords: [Urgent, wire], body_action_keywords: [send, transfer]",
            )),
            rule(&yaml(
                "P",
                "lifter:email_encoded_payload",
                ", min_bytes: 24",
            )),
            rule(&yaml("M", "lifter:email_mass_phish", ", rcpt_threshold: 2")),
        ];
        let payload = json!({"x_mailer": "PHPMailer", "matched_kit": "16shop", "subject": "URGENT wire",
            "body_text": format!("please TRANSFER {}", "QUJD".repeat(8)), "rcpt_count": 1});
        let tags = run(&rules, payload).unwrap_or_default();
        assert_eq!(tags.len(), 3);
        assert_eq!(tags[0].evidence.get("matched_kit"), Some(&json!("16shop")));
        assert_eq!(
            tags[1].evidence.get("matched_subject_kw"),
            Some(&json!("Urgent"))
        );
        assert_eq!(
            tags[1].evidence.get("matched_body_kw"),
            Some(&json!("transfer"))
        );
        assert_eq!(tags[2].evidence.get("encoded_byte_count"), Some(&json!(24)));
        assert_eq!(
            tags[0]
                .evidence
                .get("body_sha256")
                .and_then(Value::as_str)
                .map(str::len),
            Some(64)
        );
    }

    #[test]
    fn base64_padding_rules() {
        assert_eq!(base64_run(&"A".repeat(32), 1), Some(24));
        assert_eq!(base64_run(&format!("{}==", "A".repeat(34)), 1), Some(25));
        assert_eq!(base64_run(&"A".repeat(33), 1), None);
        assert_eq!(base64_run(&"A".repeat(31), 1), None);
    }

    #[test]
    fn non_iterable_recipients_fail_the_lifter() {
        let rules = [rule(&yaml(
            "M",
            "lifter:email_mass_phish",
            ", rcpt_threshold: 1",
        ))];
        assert!(matches!(
            run(
                &rules,
                json!({"rcpt_domains": 5, "rcpt_count": 3, "body_simhash": ""})
            ),
            Err(LiftError::Failed(_))
        ));
        assert_eq!(
            run(
                &rules,
                json!({"rcpt_domains": "Ab", "rcpt_count": 3, "body_simhash": ""})
            )
            .unwrap_or_default()[0]
                .evidence
                .get("rcpt_domain_set"),
            Some(&json!(["a", "b"]))
        );
    }
}
