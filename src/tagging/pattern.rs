//! The pattern-rule engine (tagging.md §7): regex rules over one payload field.
//!
//! All rules of a source kind that read the same field and need no look-around are compiled
//! into one `RegexSet`, so an event costs one scan per field rather than one per rule.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::pyre::PyRegex;
use super::rules::{Owner, Rule};

/// `match` keys of lifter rules that hold lists of Python regexes.
pub const LIFTER_REGEX_LISTS: [&str; 3] = ["patterns", "paths", "filename_patterns"];

/// Load-time check (our addition): every regex a rule carries must compile, and an engine
/// rule's `pattern` must be a string or null.
pub fn validate_rule_regexes(rule: &Rule) -> Result<(), String> {
    if rule.owner() == Owner::Engine {
        match rule.param("pattern") {
            None | Some(Value::Null) => {}
            Some(Value::String(p)) => {
                PyRegex::new(p).map_err(|e| e.to_string())?;
            }
            Some(other) => return Err(format!("match.pattern must be a string, got {other}")),
        }
    }
    for key in LIFTER_REGEX_LISTS {
        if let Some(Value::Array(items)) = rule.param(key) {
            for p in items.iter().filter_map(Value::as_str) {
                PyRegex::new(p).map_err(|e| format!("match.{key}: {e}"))?;
            }
        }
    }
    Ok(())
}

/// The field a rule reads when `match.field` is not set (§7.2).
fn default_field(source_kind: &str) -> Option<&'static str> {
    Some(match source_kind {
        "command" => "command_text",
        "http_request" => "raw_url",
        "auth_attempt" => "username",
        "payload" => "payload_text",
        "email" => "subject",
        "intel" => "verdict",
        "canary_fingerprint" => "ua_signature",
        _ => return None,
    })
}

/// How one rule is evaluated for one source kind.
enum Matcher {
    /// Index into the field group's `RegexSet`.
    InSet(usize),
    Single(PyRegex),
}

struct KindRule {
    rule: Arc<Rule>,
    field: String,
    matcher: Matcher,
}

/// All engine rules of one source kind, in evaluation order.
struct KindPlan {
    rules: Vec<KindRule>,
    sets: HashMap<String, regex::RegexSet>,
}

/// Compiled engine for every source kind its rules apply to.
pub struct PatternEngine {
    plans: HashMap<String, KindPlan>,
}

/// A rule the engine found firing, with the evidence it records.
pub struct Fired<'a> {
    pub rule: &'a Rule,
    pub evidence: Map<String, Value>,
}

impl PatternEngine {
    pub fn new(rules: &[Arc<Rule>]) -> PatternEngine {
        let mut plans: HashMap<String, KindPlan> = HashMap::new();
        let mut set_sources: HashMap<(String, String), Vec<String>> = HashMap::new();
        for rule in rules.iter().filter(|r| r.owner() == Owner::Engine) {
            let Some(Value::String(pattern)) = rule.param("pattern") else {
                continue; // absent or null pattern: never fires
            };
            for kind in &rule.applies_to {
                let field = match rule.param("field") {
                    Some(Value::String(f)) if !f.is_empty() => f.clone(),
                    Some(v) if super::py::truthy(v) => continue, // non-string field: never fires
                    _ => match default_field(kind) {
                        Some(f) => f.to_owned(),
                        None => continue,
                    },
                };
                let Ok(translated) = super::pyre::translate(pattern) else {
                    continue; // rejected at load; kept defensive
                };
                let matcher = if translated.fancy {
                    match PyRegex::new(pattern) {
                        Ok(re) => Matcher::Single(re),
                        Err(_) => continue,
                    }
                } else {
                    let sources = set_sources
                        .entry((kind.clone(), field.clone()))
                        .or_default();
                    sources.push(translated.source);
                    Matcher::InSet(sources.len() - 1)
                };
                plans
                    .entry(kind.clone())
                    .or_insert_with(|| KindPlan {
                        rules: Vec::new(),
                        sets: HashMap::new(),
                    })
                    .rules
                    .push(KindRule {
                        rule: Arc::clone(rule),
                        field,
                        matcher,
                    });
            }
        }
        for ((kind, field), sources) in set_sources {
            let set = regex::RegexSet::new(&sources).unwrap_or_else(|_| regex::RegexSet::empty());
            if let Some(plan) = plans.get_mut(&kind) {
                plan.sets.insert(field, set);
            }
        }
        PatternEngine { plans }
    }

    pub fn handles(&self, source_kind: &str) -> bool {
        self.plans.contains_key(source_kind)
    }

    /// Rules that fire for this payload, in rule order. `regex_errors` counts evaluations the
    /// backtracking engine gave up on (treated as no match).
    pub fn evaluate<'a>(
        &'a self,
        source_kind: &str,
        payload: &Map<String, Value>,
        now: f64,
        regex_errors: &mut u64,
    ) -> Vec<Fired<'a>> {
        let Some(plan) = self.plans.get(source_kind) else {
            return Vec::new();
        };
        let mut set_hits: HashMap<&str, regex::SetMatches> = HashMap::new();
        let mut fired = Vec::new();
        for kr in &plan.rules {
            if !kr.rule.state.is_active(now) {
                continue;
            }
            let Some(Value::String(haystack)) = payload.get(&kr.field) else {
                continue;
            };
            let hit = match &kr.matcher {
                Matcher::InSet(i) => {
                    let hits = set_hits.entry(kr.field.as_str()).or_insert_with(|| {
                        plan.sets.get(&kr.field).map_or_else(
                            || regex::RegexSet::empty().matches(""),
                            |s| s.matches(haystack),
                        )
                    });
                    hits.matched(*i)
                }
                Matcher::Single(re) => re.search(haystack).unwrap_or_else(|_| {
                    *regex_errors += 1;
                    false
                }),
            };
            if hit {
                fired.push(Fired {
                    rule: &kr.rule,
                    evidence: engine_evidence(&kr.rule, source_kind, payload),
                });
            }
        }
        fired
    }
}

/// §7.5: the rule's `evidence_fields` present in the payload, then (commands only) the shell
/// context `uid`, `user`, `src`, `pwd`.
fn engine_evidence(
    rule: &Rule,
    source_kind: &str,
    payload: &Map<String, Value>,
) -> Map<String, Value> {
    let mut evidence = Map::new();
    for name in &rule.evidence_fields {
        if let Some(v) = payload.get(name) {
            evidence.insert(name.clone(), v.clone());
        }
    }
    if source_kind == "command" {
        for name in ["uid", "user", "src", "pwd"] {
            if !evidence.contains_key(name)
                && let Some(v) = payload.get(name)
            {
                evidence.insert(name.to_owned(), v.clone());
            }
        }
    }
    evidence
}
