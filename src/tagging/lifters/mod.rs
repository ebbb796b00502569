//! Lifters: hand-written predicates keyed by `match.kind` (tagging.md §8).
//!
//! Each lifter owns the rules whose `match.kind` carries its prefix (§5.5) and turns one tagger
//! event into tags. A lifter that fails on an event yields nothing for that event; the caller
//! counts a warning and the other lifters' tags stand (§9.2), with one exception reproduced for
//! parity: evidence outside the schema of the event's kind discards the whole tagger event
//! (§9.3).

pub mod behavioral;
pub mod canary;
pub mod credential;
pub mod email;
pub mod identity;
pub mod intel;
pub mod ipv6;

use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde_json::{Map, Value};

use super::event::TaggerEvent;
use super::pyre::PyRegex;
use super::rules::{Emit, LIFTER_REGEX_LISTS, Rule};
use super::tag::{Tag, tag_uuid};

/// Evidence entries a predicate adds on top of the rule's `evidence_fields`.
pub type Extras = Map<String, Value>;

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
    pub intel_maps: &'a intel::IntelMaps,
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

/// The §8.0 skeleton for lifters whose predicates return extras: rules in order, filtered by
/// `applies_to` and state, dispatched on the exact kind.
pub fn run_simple<F>(
    rules: &[Arc<Rule>],
    ev: &TaggerEvent,
    ctx: &LiftContext<'_>,
    mode: AnchorMode,
    mut predicate: F,
) -> Result<Vec<Tag>, LiftError>
where
    F: FnMut(
        &str,
        &Rule,
        &Map<String, Value>,
        &LiftContext<'_>,
    ) -> Result<Option<Extras>, LiftError>,
{
    let mut tags = Vec::new();
    for rule in rules {
        if !rule.applies_to(&ev.source_kind) || !rule.state.is_active(ctx.now) {
            continue;
        }
        let Some(kind) = rule.kind() else { continue };
        if let Some(extras) = predicate(kind, rule, &ev.payload, ctx)? {
            let evidence = standard_evidence(rule, &ev.payload, extras);
            emit_all(ev, rule, evidence, mode, &mut tags)?;
        }
    }
    Ok(tags)
}

/// Convenience for building extras maps.
pub fn extras<const N: usize>(entries: [(&str, Value); N]) -> Extras {
    entries
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
}

/// Evidence keys allowed per source kind (§9.3); kinds not listed are not validated.
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

/// §9.3: every evidence key of every tag must be allowed for the event's kind.
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

#[cfg(test)]
pub(crate) mod testkit {
    //! Helpers for the lifters' unit tests.
    use super::*;
    use crate::tagging::rules::compile_text;
    use std::sync::Arc;

    pub fn rule(yaml: &str) -> Arc<Rule> {
        Arc::new(compile_text("test.yaml", yaml).unwrap_or_else(|e| panic!("{e}")))
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
        let maps = intel::IntelMaps::builtin();
        f(&LiftContext {
            now: 0.0,
            regexes: &regexes,
            intel_maps: &maps,
        })
    }
}
