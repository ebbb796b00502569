//! Helpers for the lifters' unit tests, which call one lifter directly.

use std::sync::Arc;

use serde_json::Value;

use super::intel_maps::IntelMaps;
use super::kit::{LiftContext, RegexCache};
use crate::tagging::event::TaggerEvent;
use crate::tagging::rules::{Rule, compile_text};

/// A rule from its YAML. No lifter claims it (the tests call the lifter themselves, not
/// through the lifter table), so a `lifter:` rule is owned by nobody here.
pub fn rule(yaml: &str) -> Arc<Rule> {
    Arc::new(compile_text("test.yaml", yaml, |_| None).unwrap_or_else(|e| panic!("{e}")))
}

pub fn event(kind: &str, payload: Value) -> TaggerEvent<'static> {
    TaggerEvent {
        source_kind: kind.to_owned().into(),
        source_id: "src-1".into(),
        attacker_uuid: Some("att-1".into()),
        identity_uuid: None,
        attacker_ip: None,
        session_id: None,
        decky_id: None,
        payload: std::borrow::Cow::Owned(payload.as_object().cloned().unwrap_or_default()),
    }
}

pub fn with_ctx<R>(rules: &[Arc<Rule>], f: impl FnOnce(&LiftContext<'_>) -> R) -> R {
    let regexes = RegexCache::new(rules);
    let maps = IntelMaps::builtin();
    f(&LiftContext {
        now: 0.0,
        regexes: &regexes,
        intel_maps: &maps,
    })
}
