//! Credential lifter (docs/tagging.md §8.1): counts and pairs that arrive pre-computed in the
//! payload; there is no counting across events.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::kit::{AnchorMode, Extras, LiftContext, LiftResult, extras, int_threshold, run_simple};
use crate::tagging::event::TaggerEvent;
use crate::tagging::py::{Fields as _, as_int, is_true, non_empty_str, truthy};
use crate::tagging::rules::Rule;

pub fn lift(rules: &[Arc<Rule>], ev: &TaggerEvent, ctx: &LiftContext<'_>) -> LiftResult {
    run_simple(rules, ev, ctx, AnchorMode::Event, |kind, rule, p, _| {
        Ok(predicate(kind, rule, p))
    })
}

fn service_extra(p: &Map<String, Value>, out: &mut Extras) {
    if let Some(s) = non_empty_str(p.field("service")) {
        out.insert("service".into(), Value::String(s.to_owned()));
    }
}

fn predicate(kind: &str, rule: &Rule, p: &Map<String, Value>) -> Option<Extras> {
    match kind {
        "lifter:credential_auth_brute_generic" => {
            let fails = p.field("fail_count").and_then(as_int)?;
            (fails >= int_threshold(rule, "fail_threshold", 5)?).then(|| {
                let mut x = extras([("fail_count", p["fail_count"].clone())]);
                service_extra(p, &mut x);
                x
            })
        }
        "lifter:credential_password_guessing" => {
            let count = p.field("password_count").and_then(as_int)?;
            let user = non_empty_str(p.field("username"))?;
            (count >= int_threshold(rule, "pw_threshold", 5)?).then(|| {
                extras([
                    ("username", Value::String(user.to_owned())),
                    ("password_count", p["password_count"].clone()),
                ])
            })
        }
        "lifter:credential_reuse" => {
            let hash = non_empty_str(p.field("credential_hash"))?;
            let reuse = p.field("reuse_count").and_then(as_int)?;
            (reuse >= 1).then(|| {
                extras([
                    ("credential_hash", Value::String(hash.to_owned())),
                    ("reuse_count", p["reuse_count"].clone()),
                ])
            })
        }
        "lifter:credential_valid_account_use" => {
            if p.field("result").and_then(Value::as_str) != Some("success") {
                return None;
            }
            if rule.param("require_prior_brute").is_some_and(truthy) && !is_true(p, "prior_brute") {
                return None;
            }
            let mut x = Extras::new();
            if let Some(u) = non_empty_str(p.field("username")) {
                x.insert("username".into(), Value::String(u.to_owned()));
            }
            service_extra(p, &mut x);
            Some(x)
        }
        "lifter:credential_default_credentials" => {
            let user = p.field("username").and_then(Value::as_str)?;
            let pass = p.field("password").and_then(Value::as_str)?;
            let Some(Value::Array(pairs)) = rule.param("pairs") else {
                return None;
            };
            let hit = pairs
                .iter()
                .any(|pair| match pair.as_array().map(Vec::as_slice) {
                    Some([Value::String(u), Value::String(pw)]) => u == user && pw == pass,
                    _ => false,
                });
            hit.then(|| {
                let mut x = extras([("username", Value::String(user.to_owned()))]);
                service_extra(p, &mut x);
                x
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tagging::lifters::testkit::{event, rule, with_ctx};
    use crate::tagging::tag::Tag;
    use serde_json::json;

    fn yaml(kind: &str, params: &str) -> String {
        format!(
            "rule_id: RC\nrule_version: 1\nname: n\napplies_to: [auth_attempt, credential]\n\
             match: {{kind: '{kind}'{params}}}\nemits: [{{tactic: TA0006, technique_id: T1110, confidence: 0.85}}]\n\
             evidence_fields: [fail_count, service]\n"
        )
    }

    fn fire(kind: &str, params: &str, payload: Value) -> Vec<Tag> {
        let rules = [rule(&yaml(kind, params))];
        with_ctx(&rules, |ctx| {
            lift(&rules, &event("auth_attempt", payload), ctx)
        })
        .unwrap_or_default()
    }

    #[test]
    fn brute_force_threshold() {
        let tags = fire(
            "lifter:credential_auth_brute_generic",
            "",
            json!({"fail_count": 5, "service": "ssh"}),
        );
        assert_eq!(tags.len(), 1);
        assert_eq!(
            tags[0].evidence,
            json!({"fail_count": 5, "service": "ssh"})
                .as_object()
                .cloned()
                .unwrap_or_default()
        );
        assert!(
            fire(
                "lifter:credential_auth_brute_generic",
                "",
                json!({"fail_count": 4})
            )
            .is_empty()
        );
        assert!(
            fire(
                "lifter:credential_auth_brute_generic",
                "",
                json!({"fail_count": "9"})
            )
            .is_empty()
        );
        assert!(
            fire(
                "lifter:credential_auth_brute_generic",
                ", fail_threshold: '2'",
                json!({"fail_count": 9})
            )
            .is_empty()
        );
    }

    #[test]
    fn guessing_reuse_valid_and_default_pairs() {
        assert_eq!(
            fire(
                "lifter:credential_password_guessing",
                "",
                json!({"password_count": 6, "username": "a"})
            )
            .len(),
            1
        );
        assert!(
            fire(
                "lifter:credential_password_guessing",
                "",
                json!({"password_count": 6, "username": ""})
            )
            .is_empty()
        );
        assert_eq!(
            fire(
                "lifter:credential_reuse",
                "",
                json!({"credential_hash": "h", "reuse_count": 1})
            )
            .len(),
            1
        );
        assert!(
            fire(
                "lifter:credential_reuse",
                "",
                json!({"credential_hash": "h", "reuse_count": 0})
            )
            .is_empty()
        );
        let valid = "lifter:credential_valid_account_use";
        assert_eq!(
            fire(
                valid,
                ", require_prior_brute: true",
                json!({"result": "success", "prior_brute": true})
            )
            .len(),
            1
        );
        assert!(
            fire(
                valid,
                ", require_prior_brute: true",
                json!({"result": "success", "prior_brute": 1})
            )
            .is_empty()
        );
        assert_eq!(fire(valid, "", json!({"result": "success"})).len(), 1);
        let pairs = ", pairs: [[root, root], [root, ''], bad, [a]]";
        let dc = "lifter:credential_default_credentials";
        assert_eq!(
            fire(dc, pairs, json!({"username": "root", "password": ""})).len(),
            1
        );
        assert!(fire(dc, pairs, json!({"username": "root", "password": "x"})).is_empty());
        assert!(fire("lifter:credential_unknown", "", json!({"fail_count": 50})).is_empty());
    }
}
