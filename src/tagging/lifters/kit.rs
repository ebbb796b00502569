//! What every lifter is made of (docs/tagging.md §8.0): the context it reads, the rule walk it
//! shares, the parameters it converts and the tags it builds. Lifters import this; the lifter
//! table in `lifters/mod.rs` imports the lifters, so nothing here may name the table.

use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde_json::{Map, Value};

use super::intel_maps::IntelMaps;
use crate::tagging::event::TaggerEvent;
use crate::tagging::py::{as_int, py_float, py_int};
use crate::tagging::pyre::PyRegex;
use crate::tagging::rules::{Emit, LIFTER_REGEX_LISTS, Rule};
use crate::tagging::tag::{Tag, tag_uuid};

/// Evidence entries a predicate adds on top of the rule's `evidence_fields`.
pub type Extras = Map<String, Value>;

/// A lifter: its rules (those it claims) and one tagger event in, that event's tags out.
pub type LiftFn = fn(&[Arc<Rule>], &TaggerEvent, &LiftContext<'_>) -> LiftResult;

/// What a lifter gives for one event: its tags, or why it has none.
pub type LiftResult = Result<Vec<Tag>, LiftError>;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LiftError {
    /// An ordinary failure: this lifter yields no tags for this event.
    #[error("{0}")]
    Failed(String),
    /// Evidence outside the kind's schema: DECNET's TypeError, fatal to the tagger event.
    #[error("rule {rule_id}: evidence key {key:?} is not allowed for {source_kind} events")]
    Schema {
        rule_id: String,
        key: String,
        source_kind: String,
    },
}

/// Read-only context shared by all lifters of an engine.
pub struct LiftContext<'a> {
    pub now: f64,
    pub regexes: &'a RegexCache,
    pub intel_maps: &'a IntelMaps,
}

/// Pre-compiled regexes of the lifter rules' pattern lists, keyed by pattern text.
#[derive(Default)]
pub struct RegexCache {
    compiled: FxHashMap<String, PyRegex>,
}

impl RegexCache {
    pub fn new(rules: &[Arc<Rule>]) -> RegexCache {
        let mut compiled = FxHashMap::default();
        for rule in rules {
            for key in LIFTER_REGEX_LISTS {
                if let Some(Value::Array(items)) = rule.param(key) {
                    for p in items.iter().filter_map(Value::as_str) {
                        if let Ok(re) = PyRegex::cached(p) {
                            compiled.insert(p.to_owned(), re);
                        }
                    }
                }
            }
        }
        RegexCache { compiled }
    }

    /// A compiled pattern; compiled on the spot (and not cached) if it was not seen at load.
    pub fn search(&self, pattern: &str, text: &str) -> bool {
        match self.compiled.get(pattern) {
            Some(re) => re.search(text).unwrap_or(false),
            None => PyRegex::new(pattern).is_ok_and(|re| re.search(text).unwrap_or(false)),
        }
    }
}

/// The rule walk of every lifter (§8.0 steps 1–3): its rules in order, skipping those that do
/// not apply to the event's kind, are not active now, or have no string `match.kind`. `fire`
/// adds the tags one rule gives; the first failure fails the lifter on this event.
pub fn each_rule(
    rules: &[Arc<Rule>],
    ev: &TaggerEvent,
    ctx: &LiftContext<'_>,
    mut fire: impl FnMut(&Rule, &str, &mut Vec<Tag>) -> Result<(), LiftError>,
) -> LiftResult {
    let mut tags = Vec::new();
    for rule in rules {
        if !rule.applies_to(&ev.source_kind) || !rule.state.is_active(ctx.now) {
            continue;
        }
        let Some(kind) = rule.kind() else { continue };
        fire(rule, kind, &mut tags)?;
    }
    Ok(tags)
}

/// [`each_rule`] for lifters whose predicates return extras: a rule that fires gets the
/// standard evidence overlaid with them, and one tag per emit entry.
pub fn run_simple<F>(
    rules: &[Arc<Rule>],
    ev: &TaggerEvent,
    ctx: &LiftContext<'_>,
    mode: AnchorMode,
    mut predicate: F,
) -> LiftResult
where
    F: FnMut(
        &str,
        &Rule,
        &Map<String, Value>,
        &LiftContext<'_>,
    ) -> Result<Option<Extras>, LiftError>,
{
    each_rule(rules, ev, ctx, |rule, kind, tags| {
        if let Some(extras) = predicate(kind, rule, &ev.payload, ctx)? {
            let evidence = standard_evidence(rule, &ev.payload, extras);
            emit_all(ev, rule, evidence, mode, tags)?;
        }
        Ok(())
    })
}

/// `int(match.get(key, default))`: DECNET converts the parameter when the rule is evaluated,
/// and one that does not convert raises, failing the lifter on this event.
pub fn int_param(rule: &Rule, key: &str, default: i64) -> Result<i64, LiftError> {
    converted(rule, key, default, py_int, "an integer")
}

/// `float(match.get(key, default))`, failing as [`int_param`] does.
pub fn float_param(rule: &Rule, key: &str, default: f64) -> Result<f64, LiftError> {
    converted(rule, key, default, py_float, "a number")
}

fn converted<T>(
    rule: &Rule,
    key: &str,
    default: T,
    convert: fn(&Value) -> Option<T>,
    what: &str,
) -> Result<T, LiftError> {
    match rule.param(key) {
        None => Ok(default),
        Some(v) => convert(v).ok_or_else(|| {
            LiftError::Failed(format!(
                "rule {}: match.{key} {v} is not {what}",
                rule.rule_id
            ))
        }),
    }
}

/// `match.get(key, default)` when it is an int: the credential and identity lifters check the
/// type instead of converting, so any other value keeps the rule from firing (`None`).
pub fn int_threshold(rule: &Rule, key: &str, default: i64) -> Option<i64> {
    match rule.param(key) {
        None => Some(default),
        Some(v) => as_int(v),
    }
}

/// §8.0 step 4: the payload's `evidence_fields` (present keys, verbatim), overlaid with extras.
pub fn standard_evidence(
    rule: &Rule,
    payload: &Map<String, Value>,
    extras: Extras,
) -> Map<String, Value> {
    let mut evidence = rule.evidence_from(payload);
    for (k, v) in extras {
        evidence.insert(k, v);
    }
    evidence
}

/// Which anchors a tag carries; identity roll-ups drop the attacker (§8.2).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum AnchorMode {
    Event,
    IdentityOnly,
}

/// Builds one tag for one emit entry; fails when the tag would have no anchor at all (§4.1).
pub fn build_tag(
    ev: &TaggerEvent,
    rule: &Rule,
    emit: &Emit,
    confidence: f64,
    evidence: Map<String, Value>,
    mode: AnchorMode,
) -> Result<Tag, LiftError> {
    let owned = |s: &Option<std::borrow::Cow<'_, str>>| s.as_deref().map(str::to_owned);
    let (attacker_uuid, attacker_ip) = match mode {
        AnchorMode::Event => (owned(&ev.attacker_uuid), owned(&ev.attacker_ip)),
        AnchorMode::IdentityOnly => (None, None),
    };
    if attacker_uuid.is_none() && ev.identity_uuid.is_none() && attacker_ip.is_none() {
        return Err(LiftError::Failed(format!(
            "rule {}: tag would have neither attacker nor identity anchor",
            rule.rule_id
        )));
    }
    Ok(Tag {
        uuid: tag_uuid(
            &ev.source_kind,
            &ev.source_id,
            &rule.rule_id,
            rule.rule_version,
            &emit.technique_id,
            emit.sub_technique_id.as_deref(),
        ),
        source_kind: ev.source_kind.to_string(),
        source_id: ev.source_id.to_string(),
        attacker_uuid,
        identity_uuid: owned(&ev.identity_uuid),
        attacker_ip,
        session_id: owned(&ev.session_id),
        decky_id: owned(&ev.decky_id),
        tactic: emit.tactic.clone(),
        technique_id: emit.technique_id.clone(),
        sub_technique_id: emit.sub_technique_id.clone(),
        confidence,
        rule_id: rule.rule_id.clone(),
        rule_version: rule.rule_version,
        evidence,
    })
}

/// One tag per emit entry, all with the same evidence (§8.0 step 5). The last tag takes the
/// evidence itself; the others get copies.
pub fn emit_all(
    ev: &TaggerEvent,
    rule: &Rule,
    evidence: Map<String, Value>,
    mode: AnchorMode,
    out: &mut Vec<Tag>,
) -> Result<(), LiftError> {
    let Some((last, others)) = rule.emits.split_last() else {
        return Ok(());
    };
    for emit in others {
        let confidence = rule.state.apply_ceiling(emit.confidence);
        out.push(build_tag(
            ev,
            rule,
            emit,
            confidence,
            evidence.clone(),
            mode,
        )?);
    }
    let confidence = rule.state.apply_ceiling(last.confidence);
    out.push(build_tag(ev, rule, last, confidence, evidence, mode)?);
    Ok(())
}

/// Convenience for building extras maps.
pub fn extras<const N: usize>(entries: [(&str, Value); N]) -> Extras {
    entries
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
}
