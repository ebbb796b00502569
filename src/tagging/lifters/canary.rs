//! Canary fingerprint lifter (docs/tagging.md §8.5): browser tells gathered by a canary fetch.
//! Evidence is exactly `{metric, matched_signature}`.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::kit::{AnchorMode, LiftContext, LiftResult, each_rule, emit_all, extras};
use crate::tagging::event::TaggerEvent;
use crate::tagging::py::{Fields as _, as_int, first_truthy, is_true, py_str};
use crate::tagging::rules::Rule;

pub fn lift(rules: &[Arc<Rule>], ev: &TaggerEvent, ctx: &LiftContext<'_>) -> LiftResult {
    each_rule(rules, ev, ctx, |rule, kind, tags| {
        if let Some((metric, signature)) = predicate(kind, rule, &ev.payload) {
            let evidence = extras([
                ("metric", Value::String(metric.to_owned())),
                ("matched_signature", Value::String(signature)),
            ]);
            emit_all(ev, rule, evidence, AnchorMode::Event, tags)?;
        }
        Ok(())
    })
}

fn predicate(kind: &str, rule: &Rule, p: &Map<String, Value>) -> Option<(&'static str, String)> {
    match kind {
        "lifter:canary_webdriver" => is_true(p, "navigator_webdriver")
            .then(|| ("navigator_webdriver", "navigator.webdriver_true".to_owned())),
        "lifter:canary_automation_hash" => {
            let Some(Value::String(tool)) =
                first_truthy(p, &["canvas_audio_hash_match", "matched_tool"])
            else {
                return None;
            };
            let allowed = match rule.param("catalogues") {
                Some(Value::Array(c)) if !c.is_empty() => {
                    c.iter().any(|v| v.as_str() == Some(tool))
                }
                _ => true,
            };
            allowed.then(|| ("canvas_audio_hash", tool.clone()))
        }
        "lifter:canary_webrtc_leak" => is_true(p, "webrtc_geo_mismatch").then(|| {
            (
                "webrtc_geo_mismatch",
                "webrtc_private_vs_source_ip".to_owned(),
            )
        }),
        "lifter:canary_tz_lang_mismatch" => {
            let zones = p
                .field("tz_mismatch_zones")
                .filter(|v| as_int(v).is_some_and(|n| n >= 3));
            if let Some(zones) = zones {
                Some((
                    "timezone_geo_mismatch",
                    format!("tz_zones>={}", py_str(zones)),
                ))
            } else {
                is_true(p, "lang_country_mismatch").then(|| {
                    (
                        "language_country_mismatch",
                        "lang_vs_source_country".to_owned(),
                    )
                })
            }
        }
        "lifter:canary_platform_inconsistency" => {
            if is_true(p, "platform_ua_inconsistent") {
                Some((
                    "platform_ua_mismatch",
                    "navigator.platform_vs_userAgent".to_owned(),
                ))
            } else {
                is_true(p, "ua_webgl_mismatch").then(|| {
                    (
                        "ua_webgl_mismatch",
                        "userAgent_vs_webgl_renderer".to_owned(),
                    )
                })
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tagging::lifters::testkit::{event, rule, with_ctx};
    use serde_json::json;

    fn sig(kind: &str, params: &str, payload: Value) -> Option<(String, String)> {
        let rules = [rule(&format!(
            "rule_id: RK\nrule_version: 1\nname: n\napplies_to: [canary_fingerprint]\n\
             match: {{kind: '{kind}'{params}}}\nemits: [{{tactic: TA0002, technique_id: T1059, confidence: 0.85}}]\n\
             evidence_fields: [ua_signature]\n"
        ))];
        let tags = with_ctx(&rules, |ctx| {
            lift(&rules, &event("canary_fingerprint", payload.clone()), ctx)
        })
        .ok()?;
        let t = tags.first()?;
        assert_eq!(t.evidence.len(), 2);
        Some((
            py_str(&t.evidence["metric"]),
            py_str(&t.evidence["matched_signature"]),
        ))
    }

    #[test]
    fn each_predicate() {
        assert_eq!(
            sig(
                "lifter:canary_webdriver",
                "",
                json!({"navigator_webdriver": true, "ua_signature": "x"})
            ),
            Some((
                "navigator_webdriver".into(),
                "navigator.webdriver_true".into()
            ))
        );
        assert_eq!(
            sig(
                "lifter:canary_webdriver",
                "",
                json!({"navigator_webdriver": 1})
            ),
            None
        );
        assert_eq!(
            sig(
                "lifter:canary_automation_hash",
                ", catalogues: [puppeteer]",
                json!({"matched_tool": "puppeteer"})
            ),
            Some(("canvas_audio_hash".into(), "puppeteer".into()))
        );
        assert_eq!(
            sig(
                "lifter:canary_automation_hash",
                ", catalogues: [puppeteer]",
                json!({"matched_tool": "curl"})
            ),
            None
        );
        assert_eq!(
            sig(
                "lifter:canary_tz_lang_mismatch",
                "",
                json!({"tz_mismatch_zones": 5})
            ),
            Some(("timezone_geo_mismatch".into(), "tz_zones>=5".into()))
        );
        assert_eq!(
            sig(
                "lifter:canary_tz_lang_mismatch",
                "",
                json!({"tz_mismatch_zones": 2, "lang_country_mismatch": true})
            ),
            Some((
                "language_country_mismatch".into(),
                "lang_vs_source_country".into()
            ))
        );
        assert_eq!(
            sig(
                "lifter:canary_webrtc_leak",
                "",
                json!({"webrtc_geo_mismatch": true})
            )
            .map(|s| s.0),
            Some("webrtc_geo_mismatch".into())
        );
        assert_eq!(
            sig(
                "lifter:canary_platform_inconsistency",
                "",
                json!({"ua_webgl_mismatch": true})
            )
            .map(|s| s.0),
            Some("ua_webgl_mismatch".into())
        );
    }
}
