//! Intel lifter (docs/tagging.md §8.6): provider verdicts mapped to techniques through mapping
//! tables, with a per-decision confidence multiplier.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::intel_maps::IntelMaps;
use super::kit::{
    AnchorMode, Extras, LiftContext, LiftResult, build_tag, each_rule, extras, standard_evidence,
};
use crate::tagging::event::TaggerEvent;
use crate::tagging::py::{Fields as _, as_int, as_number, first_truthy, is_true, py_str, truthy};
use crate::tagging::rules::Rule;

/// One decided technique: multiplier and evidence extras.
type Decision = (String, f64, Extras);

pub fn lift(rules: &[Arc<Rule>], ev: &TaggerEvent, ctx: &LiftContext<'_>) -> LiftResult {
    each_rule(rules, ev, ctx, |rule, kind, tags| {
        let decisions = decide(kind, &ev.payload, ctx.intel_maps);
        for emit in &rule.emits {
            let Some((_, multiplier, extras)) = decisions.iter().find(|d| d.0 == emit.technique_id)
            else {
                continue;
            };
            let confidence = rule.state.apply_ceiling(emit.confidence * multiplier);
            let evidence = standard_evidence(rule, &ev.payload, extras.clone());
            tags.push(build_tag(
                ev,
                rule,
                emit,
                confidence,
                evidence,
                AnchorMode::Event,
            )?);
        }
        Ok(())
    })
}

/// A string list from a list (its strings) or a non-empty string (itself).
fn string_or_list(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect(),
        Some(Value::String(s)) if !s.is_empty() => vec![s.clone()],
        _ => Vec::new(),
    }
}

fn strings(v: Vec<String>) -> Value {
    Value::Array(v.into_iter().map(Value::String).collect())
}

/// Insertion-ordered accumulation of techniques.
fn entry<'a, T: Default>(acc: &'a mut Vec<(String, T)>, technique: &str) -> &'a mut T {
    let pos = match acc.iter().position(|(t, _)| t == technique) {
        Some(pos) => pos,
        None => {
            acc.push((technique.to_owned(), T::default()));
            acc.len() - 1
        }
    };
    &mut acc[pos].1
}

fn decide(kind: &str, p: &Map<String, Value>, maps: &IntelMaps) -> Vec<Decision> {
    match kind {
        "lifter:intel_abuseipdb" => abuseipdb(p, maps),
        "lifter:intel_greynoise" => greynoise(p, maps),
        "lifter:intel_feodo" => {
            if !is_true(p, "feodo_listed") {
                return Vec::new();
            }
            let mut x = extras([("feodo_listed", Value::Bool(true))]);
            if let Some(Value::String(family)) =
                first_truthy(p, &["feodo_malware_family", "malware_family"])
                && !family.is_empty()
            {
                x.insert("malware_family".into(), Value::String(family.clone()));
            }
            maps.techniques("feodo", "feodo_listed")
                .iter()
                .map(|(t, _)| (t.clone(), 1.0, x.clone()))
                .collect()
        }
        "lifter:intel_threatfox" => threatfox(p, maps),
        _ => Vec::new(),
    }
}

fn abuseipdb(p: &Map<String, Value>, maps: &IntelMaps) -> Vec<Decision> {
    let Some(score_value) = p
        .field("abuseipdb_score")
        .filter(|v| as_number(v).is_some())
    else {
        return Vec::new();
    };
    let score = as_number(score_value).unwrap_or(0.0);
    let Some(Value::Array(categories)) = first_truthy(p, &["abuseipdb_categories", "categories"])
    else {
        return Vec::new();
    };
    let mut by_technique: Vec<(String, Vec<Value>)> = Vec::new();
    for cat in categories.iter().filter(|c| as_int(c).is_some()) {
        for (technique, gate) in maps.techniques("abuseipdb", &format!("cat_{}", py_str(cat))) {
            if gate.is_some_and(|g| score < g) {
                continue;
            }
            entry(&mut by_technique, technique).push(cat.clone());
        }
    }
    let truncated = match score_value {
        Value::Bool(b) => Value::from(i64::from(*b)),
        v if as_int(v).is_some() => v.clone(),
        _ => Value::from(score.trunc() as i64),
    };
    by_technique
        .into_iter()
        .map(|(t, cats)| {
            let x = extras([
                ("abuseipdb_categories", Value::Array(cats)),
                ("abuse_confidence_score", truncated.clone()),
            ]);
            (t, score / 100.0, x)
        })
        .collect()
}

fn greynoise(p: &Map<String, Value>, maps: &IntelMaps) -> Vec<Decision> {
    let classification = p
        .field("greynoise_classification")
        .cloned()
        .unwrap_or(Value::Null);
    let class = classification.as_str().unwrap_or("");
    let mut acc: Vec<(String, (f64, Vec<String>))> = Vec::new();
    let hit = |acc: &mut Vec<(String, (f64, Vec<String>))>, t: &str, m: f64, signal: &str| {
        let e = entry(acc, t);
        e.0 = e.0.max(m);
        e.1.push(signal.to_owned());
    };
    if class == "scanner" {
        hit(&mut acc, "T1595", 1.0, "scanner");
    }
    let tags: Vec<String> = match p.field("greynoise_tags") {
        Some(v) if !truthy(v) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect(),
        Some(Value::String(s)) => s.chars().map(String::from).collect(),
        _ => Vec::new(),
    };
    for tag in &tags {
        for (t, _) in maps.techniques("greynoise", tag) {
            hit(&mut acc, t, 1.0, tag);
        }
    }
    if class == "malicious" && !acc.iter().any(|(t, _)| t == "T1071") {
        hit(&mut acc, "T1071", 0.5, "malicious");
    }
    acc.into_iter()
        .map(|(t, (m, signals))| {
            let x = extras([
                ("greynoise_classification", classification.clone()),
                ("greynoise_tags", strings(signals)),
            ]);
            (t, m, x)
        })
        .collect()
}

fn threatfox(p: &Map<String, Value>, maps: &IntelMaps) -> Vec<Decision> {
    let types = string_or_list(first_truthy(p, &["threatfox_threat_types", "threat_type"]));
    let families = string_or_list(first_truthy(
        p,
        &["threatfox_malware_families", "malware_family"],
    ));
    let iocs = string_or_list(p.field("threatfox_ioc_types").filter(|v| v.is_array()));
    let mut acc: Vec<(String, Vec<String>)> = Vec::new();
    for ty in &types {
        for (t, _) in maps.techniques("threatfox", ty) {
            entry(&mut acc, t).push(ty.clone());
        }
    }
    acc.into_iter()
        .map(|(t, produced_by)| {
            let mut x = extras([("threat_types", strings(produced_by))]);
            if !families.is_empty() {
                x.insert("malware_families".into(), strings(families.clone()));
            }
            if !iocs.is_empty() {
                x.insert("ioc_types".into(), strings(iocs.clone()));
            }
            (t, 1.0, x)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tagging::lifters::testkit::{event, rule, with_ctx};
    use serde_json::json;

    fn emits(list: &[(&str, Option<&str>, &str, f64)]) -> String {
        list.iter()
            .map(|(t, sub, tac, c)| {
                let sub = sub.map_or(String::new(), |s| format!(", sub_technique_id: {s}"));
                format!("  - {{technique_id: {t}{sub}, tactic: {tac}, confidence: {c}}}\n")
            })
            .collect()
    }

    fn intel_rule(
        id: &str,
        kind: &str,
        emit: &[(&str, Option<&str>, &str, f64)],
        fields: &str,
    ) -> Arc<Rule> {
        rule(&format!(
            "rule_id: {id}\nrule_version: 2\nname: n\napplies_to: [intel]\nmatch: {{kind: '{kind}'}}\nemits:\n{}evidence_fields: [{fields}]\n",
            emits(emit)
        ))
    }

    /// docs/tagging.md §14.2.
    #[test]
    fn worked_example() {
        let rules = [
            intel_rule(
                "R0054",
                "lifter:intel_abuseipdb",
                &[
                    ("T1110", None, "TA0006", 0.7),
                    ("T1190", None, "TA0001", 0.7),
                    ("T1566", None, "TA0001", 0.7),
                    ("T1046", None, "TA0007", 0.7),
                    ("T1078", None, "TA0001", 0.6),
                    ("T1090", None, "TA0011", 0.6),
                    ("T1496", None, "TA0040", 0.6),
                    ("T1595", None, "TA0043", 0.7),
                ],
                "abuseipdb_categories, abuseipdb_score",
            ),
            intel_rule(
                "R0055",
                "lifter:intel_greynoise",
                &[
                    ("T1595", Some("T1595.002"), "TA0043", 0.7),
                    ("T1071", None, "TA0011", 0.7),
                    ("T1090", None, "TA0011", 0.7),
                    ("T1110", None, "TA0006", 0.7),
                    ("T1588", None, "TA0042", 0.7),
                ],
                "greynoise_classification, greynoise_tags, greynoise_name",
            ),
            intel_rule(
                "R0057",
                "lifter:intel_threatfox",
                &[
                    ("T1071", None, "TA0011", 0.8),
                    ("T1588", Some("T1588.001"), "TA0042", 0.8),
                    ("T1105", None, "TA0011", 0.75),
                    ("T1056", None, "TA0009", 0.7),
                ],
                "threatfox_threat_types, threatfox_ioc_types, threatfox_malware_families",
            ),
        ];
        let mut ev = event(
            "intel",
            json!({"attacker_uuid": "0b6c1f7e-2d4a-4f0e-9c1b-5a3e7d9f1c20",
            "abuseipdb_score": 90, "abuseipdb_categories": [18, 22, 14, 11, 4],
            "greynoise_classification": "malicious", "greynoise_name": null,
            "greynoise_tags": ["tor_exit_node", "unknown_tag"],
            "threatfox_threat_types": ["botnet_cc", "payload"], "threatfox_ioc_types": ["ip:port"],
            "threatfox_malware_families": []}),
        );
        ev.source_id = "0b6c1f7e-2d4a-4f0e-9c1b-5a3e7d9f1c20".into();
        let tags = with_ctx(&rules, |ctx| lift(&rules, &ev, ctx)).unwrap_or_default();
        let got: Vec<(&str, f64)> = tags
            .iter()
            .map(|t| (t.uuid.as_str(), t.confidence))
            .collect();
        assert_eq!(
            got,
            [
                ("9b5526f3-6385-549b-9611-2c91c5fa7905", 0.63),
                ("1be90a1b-5646-5c6a-b204-cdc1dbdfed9d", 0.63),
                ("0193caa4-6a2d-5ca1-8822-005ba1cd47e8", 0.63),
                ("f089d0f5-6212-5af7-8d0f-bc12023d8198", 0.54),
                ("2e301eb3-8574-57fc-965a-50032e4dc542", 0.63),
                ("2c7e5976-035d-576f-8812-98b219590a57", 0.35),
                ("21c209ff-03f6-53b9-8caf-93330649834e", 0.7),
                ("a9747a90-6aac-5af2-8180-ac9e7b88d0b4", 0.8),
                ("83893ed4-f716-5871-8b32-5e08172f67ce", 0.8),
            ]
        );
        assert_eq!(
            Value::Object(tags[0].evidence.clone()),
            json!({"abuseipdb_categories": [18, 22], "abuseipdb_score": 90, "abuse_confidence_score": 90})
        );
        assert_eq!(
            Value::Object(tags[5].evidence.clone()),
            json!({"greynoise_classification": "malicious", "greynoise_tags": ["malicious"], "greynoise_name": null})
        );
        assert_eq!(
            Value::Object(tags[8].evidence.clone()),
            json!({"threatfox_threat_types": ["botnet_cc", "payload"], "threatfox_ioc_types": ["ip:port"],
                   "threatfox_malware_families": [], "threat_types": ["botnet_cc", "payload"], "ioc_types": ["ip:port"]})
        );
    }

    #[test]
    fn feodo_and_gates() {
        let rules = [intel_rule(
            "R0056",
            "lifter:intel_feodo",
            &[
                ("T1071", Some("T1071.001"), "TA0011", 0.85),
                ("T1588", Some("T1588.001"), "TA0042", 0.85),
            ],
            "feodo_listed",
        )];
        let run = |p: Value| {
            with_ctx(&rules, |ctx| lift(&rules, &event("intel", p), ctx)).unwrap_or_default()
        };
        let tags = run(json!({"feodo_listed": true, "feodo_malware_family": "Emotet"}));
        assert_eq!(tags.len(), 2);
        assert_eq!(
            tags[0].evidence.get("malware_family"),
            Some(&json!("Emotet"))
        );
        assert!(run(json!({"feodo_listed": 1})).is_empty());
        // Category 11's T1566 needs a score of 80.
        let abuse = [intel_rule(
            "R0054",
            "lifter:intel_abuseipdb",
            &[
                ("T1566", None, "TA0001", 0.7),
                ("T1496", None, "TA0040", 0.6),
            ],
            "",
        )];
        let tags = with_ctx(&abuse, |ctx| {
            lift(
                &abuse,
                &event(
                    "intel",
                    json!({"abuseipdb_score": 79, "abuseipdb_categories": [11]}),
                ),
                ctx,
            )
        })
        .unwrap_or_default();
        assert_eq!(
            tags.iter()
                .map(|t| t.technique_id.as_str())
                .collect::<Vec<_>>(),
            ["T1496"]
        );
    }
}
