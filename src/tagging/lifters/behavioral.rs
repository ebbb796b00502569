//! Behavioral lifter (docs/tagging.md §8.3): session-level aggregates and tell-tale strings.

use std::sync::{Arc, LazyLock};

use serde_json::{Map, Value};

use super::kit::{
    AnchorMode, Extras, LiftContext, LiftError, LiftResult, extras, float_param, int_param,
    run_simple,
};
use crate::tagging::event::TaggerEvent;
use crate::tagging::py::{
    Fields as _, as_int, as_number, first_truthy, is_true, non_empty_str, truthy,
};
use crate::tagging::rules::Rule;

pub fn lift(rules: &[Arc<Rule>], ev: &TaggerEvent, ctx: &LiftContext<'_>) -> LiftResult {
    run_simple(rules, ev, ctx, AnchorMode::Event, predicate)
}

/// Bitcoin (base58 P2PKH/P2SH or bech32) between Unicode word boundaries.
static BTC: LazyLock<Option<regex::Regex>> = LazyLock::new(|| {
    regex::Regex::new(r"\b(?:[13][1-9A-HJ-NP-Za-km-z]{25,34}|bc1[ac-hj-np-z02-9]{11,71})\b").ok()
});
/// Monero standard address.
static XMR: LazyLock<Option<regex::Regex>> =
    LazyLock::new(|| regex::Regex::new(r"\b4[0-9AB][1-9A-HJ-NP-Za-km-z]{93}\b").ok());

fn str_list(rule: &Rule, key: &str) -> Vec<String> {
    match rule.param(key) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

fn predicate(
    kind: &str,
    rule: &Rule,
    p: &Map<String, Value>,
    ctx: &LiftContext<'_>,
) -> Result<Option<Extras>, LiftError> {
    Ok(match kind {
        "lifter:behavioral_beaconing" => {
            let (Some(interval), Some(jitter)) = (
                p.field("beacon_interval_s").and_then(as_number),
                p.field("beacon_jitter_pct").and_then(as_number),
            ) else {
                return Ok(None);
            };
            let min_interval = float_param(rule, "min_interval_s", 0.0)?;
            let max_jitter = float_param(rule, "max_jitter_pct", 1.0)?;
            (interval >= min_interval && jitter <= max_jitter).then(Extras::new)
        }
        "lifter:behavioral_data_destruction" => {
            let text = match first_truthy(p, &["op_text", "command_text"]) {
                Some(Value::String(s)) => s.as_str(),
                Some(_) => return Ok(None),
                None => "",
            };
            let Some(Value::Array(patterns)) = rule.param("patterns") else {
                return Ok(None);
            };
            patterns
                .iter()
                .filter_map(Value::as_str)
                .find(|pat| ctx.regexes.search(pat, text))
                .map(|pat| extras([("matched_op", Value::String(pat.to_owned()))]))
        }
        "lifter:behavioral_ransom_note" => ransom_note(rule, p),
        "lifter:behavioral_exfil_over_web" => {
            let min_bytes = float_param(rule, "min_payload_bytes", 0.0)?;
            let min_requests = int_param(rule, "request_threshold", 0)?;
            let by_bytes = p
                .field("bytes_out")
                .and_then(as_number)
                .is_some_and(|b| b >= min_bytes);
            let by_requests = p
                .field("request_count")
                .and_then(as_int)
                .is_some_and(|r| r >= min_requests);
            (by_bytes || by_requests).then(Extras::new)
        }
        "lifter:behavioral_db_mass_read" => {
            let min_rows = int_param(rule, "min_rows", 0)?;
            let min_bytes = float_param(rule, "min_bytes", 0.0)?;
            let by_rows = p
                .field("rows_read")
                .and_then(as_int)
                .is_some_and(|r| r >= min_rows);
            let by_bytes = p
                .field("bytes_read")
                .and_then(as_number)
                .is_some_and(|b| b >= min_bytes);
            (by_rows || by_bytes).then(Extras::new)
        }
        "lifter:behavioral_credentials_in_files" | "lifter:behavioral_k8s_sa_token" => {
            let path = non_empty_str(first_truthy(p, &["matched_path", "request_path", "path"]));
            let Some(path) = path else { return Ok(None) };
            let Some(Value::Array(paths)) = rule.param("paths") else {
                return Ok(None);
            };
            paths
                .iter()
                .filter_map(Value::as_str)
                .any(|pat| ctx.regexes.search(pat, path))
                .then(|| extras([("matched_path", Value::String(path.to_owned()))]))
        }
        "lifter:behavioral_docker_escape" => {
            let Some(Value::Array(seen)) = p.field("signals") else {
                return Ok(None);
            };
            str_list(rule, "signals")
                .into_iter()
                .find(|sig| seen.iter().any(|s| s.as_str() == Some(sig)))
                .map(|sig| extras([("matched_signal", Value::String(sig))]))
        }
        "lifter:behavioral_llmnr_poisoning" => {
            let poisoned = is_true(p, "llmnr_poisoned");
            let count = p
                .field("llmnr_poison_count")
                .and_then(as_int)
                .is_some_and(|c| c >= 1);
            (poisoned || count).then(Extras::new)
        }
        "lifter:behavioral_tftp_router_config" => {
            let Some(name) = non_empty_str(p.field("tftp_filename")) else {
                return Ok(None);
            };
            let Some(Value::Array(patterns)) = rule.param("filename_patterns") else {
                return Ok(None);
            };
            patterns
                .iter()
                .filter_map(Value::as_str)
                .any(|pat| ctx.regexes.search(pat, name))
                .then(Extras::new)
        }
        _ => None,
    })
}

fn ransom_note(rule: &Rule, p: &Map<String, Value>) -> Option<Extras> {
    let text = non_empty_str(first_truthy(p, &["body_text", "note_text"]))?;
    let lower = text.to_lowercase();
    let matched: Vec<Value> = str_list(rule, "payment_keywords")
        .into_iter()
        .filter(|kw| lower.contains(&kw.to_lowercase()))
        .map(Value::String)
        .collect();
    if matched.is_empty() {
        return None;
    }
    if rule.param("require_btc_or_xmr").is_some_and(truthy) {
        let wallet = [&*BTC, &*XMR]
            .into_iter()
            .flatten()
            .find_map(|re| re.find(text))?;
        Some(extras([
            ("btc_address", Value::String(wallet.as_str().to_owned())),
            ("matched_keywords", Value::Array(matched)),
        ]))
    } else {
        Some(extras([("matched_keywords", Value::Array(matched))]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tagging::lifters::testkit::{event, rule, with_ctx};
    use crate::tagging::tag::Tag;
    use serde_json::json;

    fn yaml(kind: &str, params: &str, evidence: &str) -> String {
        format!(
            "rule_id: RB\nrule_version: 1\nname: n\napplies_to: [session, email]\n\
             match: {{kind: '{kind}'{params}}}\nemits: [{{tactic: TA0040, technique_id: T1485, confidence: 0.95}}]\n\
             evidence_fields: [{evidence}]\n"
        )
    }

    fn fire(yaml: &str, payload: Value) -> Vec<Tag> {
        let rules = [rule(yaml)];
        with_ctx(&rules, |ctx| lift(&rules, &event("session", payload), ctx)).unwrap_or_default()
    }

    #[test]
    fn data_destruction_records_the_pattern() {
        let y = yaml(
            "lifter:behavioral_data_destruction",
            ", patterns: ['FLUSHALL', 'DROP\\s+DATABASE']",
            "matched_op, target",
        );
        let tags = fire(
            &y,
            json!({"command_text": "redis-cli DROP  DATABASE x", "target": "db"}),
        );
        assert_eq!(
            tags[0].evidence,
            json!({"matched_op": "DROP\\s+DATABASE", "target": "db"})
                .as_object()
                .cloned()
                .unwrap_or_default()
        );
        assert!(fire(&y, json!({"command_text": "flushall"})).is_empty());
        assert!(fire(&y, json!({"op_text": 5})).is_empty());
    }

    #[test]
    fn ransom_note_needs_keyword_and_wallet() {
        let y = yaml(
            "lifter:behavioral_ransom_note",
            ", require_btc_or_xmr: true, payment_keywords: [Bitcoin, ransom]",
            "btc_address",
        );
        let tags = fire(
            &y,
            json!({"body_text": "send 1 BITCOIN to 1iaExsABJ862BDQTmZrjfnJhXS now"}),
        );
        assert_eq!(
            tags[0].evidence,
            json!({"btc_address": "1iaExsABJ862BDQTmZrjfnJhXS", "matched_keywords": ["Bitcoin"]})
                .as_object()
                .cloned()
                .unwrap_or_default()
        );
        assert!(fire(&y, json!({"body_text": "send bitcoin"})).is_empty());
        assert!(fire(&y, json!({"body_text": "1iaExsABJ862BDQTmZrjfnJhXS"})).is_empty());
    }

    #[test]
    fn thresholds_and_flags() {
        let beacon = yaml(
            "lifter:behavioral_beaconing",
            ", max_jitter_pct: 0.15, min_interval_s: 10",
            "beacon_interval_s",
        );
        assert_eq!(
            fire(
                &beacon,
                json!({"beacon_interval_s": 60, "beacon_jitter_pct": 0.1})
            )
            .len(),
            1
        );
        assert!(
            fire(
                &beacon,
                json!({"beacon_interval_s": 60, "beacon_jitter_pct": 0.2})
            )
            .is_empty()
        );
        let exfil = yaml(
            "lifter:behavioral_exfil_over_web",
            ", min_payload_bytes: 100, request_threshold: 5",
            "bytes_out",
        );
        assert_eq!(
            fire(&exfil, json!({"bytes_out": 1, "request_count": 5})).len(),
            1
        );
        assert!(fire(&exfil, json!({"bytes_out": 99, "request_count": 4.0})).is_empty());
        let db = yaml(
            "lifter:behavioral_db_mass_read",
            ", min_rows: 10, min_bytes: 100",
            "rows_read",
        );
        assert_eq!(fire(&db, json!({"rows_read": 10})).len(), 1);
        let llmnr = yaml("lifter:behavioral_llmnr_poisoning", "", "victim_host");
        assert_eq!(fire(&llmnr, json!({"llmnr_poison_count": 2})).len(), 1);
        assert!(fire(&llmnr, json!({"llmnr_poisoned": "true"})).is_empty());
        let docker = yaml(
            "lifter:behavioral_docker_escape",
            ", signals: ['bind:/etc', 'privileged:true']",
            "container_image",
        );
        let tags = fire(
            &docker,
            json!({"signals": ["privileged:true", "bind:/etc"]}),
        );
        assert_eq!(
            tags[0].evidence.get("matched_signal"),
            Some(&json!("bind:/etc"))
        );
        let files = yaml(
            "lifter:behavioral_credentials_in_files",
            ", paths: ['\\.env$']",
            "x",
        );
        assert_eq!(fire(&files, json!({"request_path": "/app/.env"})).len(), 1);
        let tftp = yaml(
            "lifter:behavioral_tftp_router_config",
            ", filename_patterns: ['-confg$']",
            "tftp_filename",
        );
        assert_eq!(fire(&tftp, json!({"tftp_filename": "r1-confg\n"})).len(), 1);
        assert!(fire(&tftp, json!({"tftp_filename": "r1-confg.bak"})).is_empty());
    }

    #[test]
    fn a_bad_parameter_fails_only_this_lifter() {
        let rules = [rule(&yaml(
            "lifter:behavioral_beaconing",
            ", max_jitter_pct: abc",
            "x",
        ))];
        let ev = event(
            "session",
            json!({"beacon_interval_s": 60, "beacon_jitter_pct": 0.1}),
        );
        assert!(matches!(
            with_ctx(&rules, |ctx| lift(&rules, &ev, ctx)),
            Err(LiftError::Failed(_))
        ));
    }
}
