//! IPv6 link-local leak lifter (docs/tagging.md §8.8): an `fe80:` address seen for an attacker
//! who reaches us over IPv4 exposes a stable host identifier.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::kit::{AnchorMode, LiftContext, LiftError, LiftResult, each_rule, emit_all};
use crate::tagging::event::TaggerEvent;
use crate::tagging::py::{Fields as _, truthy};
use crate::tagging::rules::Rule;

pub const EVIDENCE_KEYS: [&str; 7] = [
    "addr",
    "mac_oui",
    "iid_kind",
    "vector",
    "on_iface",
    "attacker_v4",
    "observed_at",
];

pub const KIND: &str = "lifter:ipv6_link_local_leak";

/// Python `payload.field(key, default)`: an explicit `null` is kept.
fn get(p: &Map<String, Value>, key: &str, default: &str) -> Value {
    p.field(key)
        .cloned()
        .unwrap_or_else(|| Value::String(default.to_owned()))
}

/// Python `a or b`.
fn or(a: Value, b: Value) -> Value {
    if truthy(&a) { a } else { b }
}

pub fn lift(rules: &[Arc<Rule>], ev: &TaggerEvent, ctx: &LiftContext<'_>) -> LiftResult {
    each_rule(rules, ev, ctx, |rule, kind, tags| {
        if kind != KIND {
            return Ok(());
        }
        let p = &ev.payload;
        let addr = or(get(p, "addr", ""), get(p, "src_ip", ""));
        let Value::String(addr_text) = &addr else {
            return Err(LiftError::Failed(format!("address {addr} is not a string")));
        };
        if !addr_text.to_lowercase().starts_with("fe80:") {
            return Ok(());
        }
        let evidence: Map<String, Value> = [
            ("addr", addr.clone()),
            ("mac_oui", get(p, "mac_oui", "")),
            ("iid_kind", get(p, "iid_kind", "unknown")),
            ("vector", get(p, "vector", "")),
            ("on_iface", get(p, "on_iface", "")),
            (
                "attacker_v4",
                or(get(p, "attacker_v4", ""), get(p, "attacker_ip", "")),
            ),
            ("observed_at", get(p, "observed_at", "")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        emit_all(ev, rule, evidence, AnchorMode::Event, tags)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tagging::lifters::testkit::{event, rule, with_ctx};
    use serde_json::json;

    const YAML: &str = "rule_id: R0059\nrule_version: 1\nname: n\napplies_to: [ipv6_leak]\n\
        match: {kind: 'lifter:ipv6_link_local_leak'}\nemits: [{tactic: TA0011, technique_id: T1090, confidence: 0.85}]\n";

    /// docs/tagging.md §14.4.
    #[test]
    fn worked_example() {
        let rules = [rule(YAML)];
        let mut ev = event(
            "ipv6_leak",
            json!({"attacker_ip": "203.0.113.7", "attacker_uuid": "0b6c1f7e-2d4a-4f0e-9c1b-5a3e7d9f1c20",
            "addr": "FE80::a8bb:ccff:fedd:eeff", "iid_kind": "eui64", "mac_oui": "aa:bb:cc",
            "vector": "active_echo", "on_iface": "eth0", "observed_at": "2026-05-02T06:23:30Z"}),
        );
        ev.source_id = "0b6c1f7e-2d4a-4f0e-9c1b-5a3e7d9f1c20".into();
        let tags = with_ctx(&rules, |ctx| lift(&rules, &ev, ctx)).unwrap_or_default();
        assert_eq!(tags[0].uuid, "275e5f61-686c-589a-8977-bf4951691aa5");
        assert_eq!(
            Value::Object(tags[0].evidence.clone()),
            json!({"addr": "FE80::a8bb:ccff:fedd:eeff",
            "mac_oui": "aa:bb:cc", "iid_kind": "eui64", "vector": "active_echo", "on_iface": "eth0",
            "attacker_v4": "203.0.113.7", "observed_at": "2026-05-02T06:23:30Z"})
        );
    }

    #[test]
    fn other_ranges_do_not_fire_and_null_address_fails_softly() {
        let rules = [rule(YAML)];
        let run = |p: Value| with_ctx(&rules, |ctx| lift(&rules, &event("ipv6_leak", p), ctx));
        assert_eq!(run(json!({"addr": "fe90::1"})).map(|t| t.len()), Ok(0));
        assert_eq!(run(json!({"addr": "2001:db8::1"})).map(|t| t.len()), Ok(0));
        assert!(matches!(
            run(json!({"addr": "", "src_ip": null})),
            Err(LiftError::Failed(_))
        ));
        assert_eq!(run(json!({"src_ip": "fe80::1"})).map(|t| t.len()), Ok(1));
    }
}
