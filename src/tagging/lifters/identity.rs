//! Identity lifter (docs/tagging.md §8.2): roll-ups about an identity, never about one attacker.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::kit::{AnchorMode, Extras, LiftContext, LiftResult, extras, int_threshold, run_simple};
use crate::tagging::event::TaggerEvent;
use crate::tagging::py::{Fields as _, as_int, non_empty_str};
use crate::tagging::rules::Rule;

pub fn lift(rules: &[Arc<Rule>], ev: &TaggerEvent, ctx: &LiftContext<'_>) -> LiftResult {
    run_simple(
        rules,
        ev,
        ctx,
        AnchorMode::IdentityOnly,
        |kind, rule, p, _| Ok(predicate(kind, rule, p)),
    )
}

fn predicate(kind: &str, rule: &Rule, p: &Map<String, Value>) -> Option<Extras> {
    if kind != "lifter:identity_password_spraying" {
        return None;
    }
    let hash = non_empty_str(p.field("shared_password_hash"))?;
    let accounts = p.field("account_count").and_then(as_int)?;
    let threshold = int_threshold(rule, "account_threshold", 1)?;
    (accounts >= threshold).then(|| {
        extras([
            ("shared_password_hash", Value::String(hash.to_owned())),
            ("account_count", p["account_count"].clone()),
        ])
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tagging::lifters::kit::LiftError;
    use crate::tagging::lifters::testkit::{event, rule, with_ctx};
    use serde_json::json;

    const YAML: &str = "rule_id: R0003\nrule_version: 1\nname: n\napplies_to: [identity]\n\
        match: {kind: 'lifter:identity_password_spraying', account_threshold: 3}\n\
        emits: [{tactic: TA0006, technique_id: T1110, sub_technique_id: T1110.003, confidence: 0.9}]\n\
        evidence_fields: [shared_password_hash, account_count]\n";

    /// docs/tagging.md §14.5.
    #[test]
    fn spraying_rolls_up_on_the_identity() {
        let rules = [rule(YAML)];
        let mut ev = event(
            "identity",
            json!({"identity_uuid": "7d1e0c55-8f0a-4b7e-a1c2-3d4e5f6a7b8c",
            "attacker_uuid": "x", "shared_password_hash": "5f4dcc3b", "account_count": 4}),
        );
        ev.source_id = "7d1e0c55-8f0a-4b7e-a1c2-3d4e5f6a7b8c".into();
        ev.identity_uuid = Some(ev.source_id.clone());
        let tags = with_ctx(&rules, |ctx| lift(&rules, &ev, ctx)).unwrap_or_default();
        assert_eq!(tags.len(), 1);
        assert_eq!(tags[0].uuid, "d34f21a8-2b85-5a22-a83d-24e0a8a7d5b0");
        assert_eq!(tags[0].attacker_uuid, None);
        ev.payload.to_mut().insert("account_count".into(), json!(2));
        assert!(
            with_ctx(&rules, |ctx| lift(&rules, &ev, ctx))
                .unwrap_or_default()
                .is_empty()
        );
    }

    #[test]
    fn without_identity_anchor_the_lifter_fails_softly() {
        let rules = [rule(YAML)];
        let ev = event(
            "identity",
            json!({"shared_password_hash": "h", "account_count": 9}),
        );
        assert!(matches!(
            with_ctx(&rules, |ctx| lift(&rules, &ev, ctx)),
            Err(LiftError::Failed(_))
        ));
    }
}
