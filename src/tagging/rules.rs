//! Rule files: discovery, schema validation, `emits` compilation, ownership (tagging.md §5).
//!
//! Deliberate divergence from DECNET (§5.1, §13.4): a file that fails to load is reported and
//! skipped; it never silences the other rules.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value};

use super::py::{Fields as _, py_float, py_str, truthy};
use super::pyre::PyRegex;
use super::state::RuleState;
use super::yaml::parse_document;

/// `match` keys of lifter rules that hold lists of Python regexes.
pub const LIFTER_REGEX_LISTS: [&str; 3] = ["patterns", "paths", "filename_patterns"];

/// One `emits` entry after compilation (§5.3).
#[derive(Debug, Clone, PartialEq)]
pub struct Emit {
    pub technique_id: String,
    pub sub_technique_id: Option<String>,
    pub tactic: String,
    pub confidence: f64,
}

/// A validated, compiled rule. Shared (`Arc`) between the taggers that index it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub rule_id: String,
    pub rule_version: i64,
    pub name: String,
    pub description: String,
    /// Source kinds, de-duplicated, in file order (order is irrelevant to dispatch).
    pub applies_to: Vec<String>,
    pub match_spec: Map<String, Value>,
    pub emits: Vec<Emit>,
    pub evidence_fields: Vec<String>,
    pub state: RuleState,
    /// Where the rule came from, for problem reports (`builtin:<name>` for the embedded pack).
    pub origin: String,
}

/// Which tagger evaluates a rule, decided by `match.kind` (§5.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Owner {
    Engine,
    Behavioral,
    Intel,
    Canary,
    Email,
    Identity,
    Credential,
    Ipv6,
    /// A `lifter:` kind no tagger claims: loaded, never evaluated.
    Nobody,
}

impl Owner {
    pub fn name(self) -> &'static str {
        match self {
            Owner::Engine => "pattern",
            Owner::Behavioral => "behavioral",
            Owner::Intel => "intel",
            Owner::Canary => "canary",
            Owner::Email => "email",
            Owner::Identity => "identity",
            Owner::Credential => "credential",
            Owner::Ipv6 => "ipv6",
            Owner::Nobody => "unowned",
        }
    }
}

impl Rule {
    /// The exact `match.kind` string, if it is a string.
    pub fn kind(&self) -> Option<&str> {
        self.match_spec.field("kind").and_then(Value::as_str)
    }

    pub fn owner(&self) -> Owner {
        let Some(kind) = self.kind().filter(|k| k.starts_with("lifter:")) else {
            return Owner::Engine;
        };
        let prefixes = [
            ("lifter:behavioral_", Owner::Behavioral),
            ("lifter:intel_", Owner::Intel),
            ("lifter:canary_", Owner::Canary),
            ("lifter:email_", Owner::Email),
            ("lifter:identity_", Owner::Identity),
            ("lifter:credential_", Owner::Credential),
        ];
        if kind == "lifter:ipv6_link_local_leak" {
            return Owner::Ipv6;
        }
        prefixes
            .iter()
            .find(|(p, _)| kind.starts_with(p))
            .map_or(Owner::Nobody, |(_, o)| *o)
    }

    pub fn applies_to(&self, source_kind: &str) -> bool {
        self.applies_to.iter().any(|k| k == source_kind)
    }

    /// A `match` parameter.
    pub fn param(&self, key: &str) -> Option<&Value> {
        self.match_spec.field(key)
    }

    /// The evidence every tagger starts from (§7.5, §8.0 step 4): the rule's
    /// `evidence_fields` that the payload has, verbatim, in the rule's order.
    pub fn evidence_from(&self, payload: &Map<String, Value>) -> Map<String, Value> {
        let mut evidence = Map::new();
        for name in &self.evidence_fields {
            if let Some(v) = payload.field(name) {
                evidence.insert(name.clone(), v.clone());
            }
        }
        evidence
    }
}

/// One problem found while loading rules, printed as `FILE: rule ID: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleProblem {
    pub file: String,
    /// The rule id when it could be read, else `None` (printed as `?`).
    pub rule_id: Option<String>,
    pub message: String,
}

impl fmt::Display for RuleProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: rule {}: {}",
            self.file,
            self.rule_id.as_deref().unwrap_or("?"),
            self.message
        )
    }
}

/// The outcome of loading rule sources: the rules that loaded, in evaluation order, and every
/// problem met on the way.
#[derive(Debug, Default, Clone)]
pub struct RuleSet {
    pub rules: Vec<Arc<Rule>>,
    pub problems: Vec<RuleProblem>,
}

impl RuleSet {
    /// Adds one rule, replacing an earlier one with the same id in place (§5.1: later content,
    /// earlier position).
    fn push(&mut self, rule: Rule) {
        match self.rules.iter_mut().find(|r| r.rule_id == rule.rule_id) {
            Some(slot) => *slot = Arc::new(rule),
            None => self.rules.push(Arc::new(rule)),
        }
    }

    /// Validates and adds the rule in one YAML text; a failure becomes a problem.
    pub fn add_text(&mut self, origin: &str, text: &str) {
        match compile_text(origin, text) {
            Ok(rule) => self.push(rule),
            Err(problem) => self.problems.push(problem),
        }
    }

    /// Loads every rule file of `dir` in file-name order (§5.1).
    pub fn add_dir(&mut self, dir: &Path) {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => {
                self.problems.push(RuleProblem {
                    file: dir.display().to_string(),
                    rule_id: None,
                    message: format!("cannot read rules directory: {e}"),
                });
                return;
            }
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file() || t.is_symlink()))
            .map(|e| e.path())
            .filter(|p| p.is_file() && is_rule_file_name(p))
            .collect();
        files.sort();
        for path in files {
            let origin = path.display().to_string();
            match std::fs::read(&path) {
                Ok(bytes) => match String::from_utf8(bytes) {
                    Ok(text) => self.add_text(&origin, &text),
                    Err(_) => self.problems.push(RuleProblem {
                        file: origin,
                        rule_id: None,
                        message: "file is not UTF-8".into(),
                    }),
                },
                Err(e) => self.problems.push(RuleProblem {
                    file: origin,
                    rule_id: None,
                    message: format!("cannot read: {e}"),
                }),
            }
        }
    }
}

/// `[A-Za-z0-9_]+\.(yaml|yml)`, case-sensitive: editor droppings are never rules.
pub fn is_rule_file_name(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let stem = name
        .strip_suffix(".yaml")
        .or_else(|| name.strip_suffix(".yml"));
    stem.is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
}

/// Parses, validates (§5.2) and compiles (§5.3) one rule file.
pub fn compile_text(origin: &str, text: &str) -> Result<Rule, RuleProblem> {
    let problem = |rule_id: Option<&str>, message: String| RuleProblem {
        file: origin.to_owned(),
        rule_id: rule_id.map(str::to_owned),
        message,
    };
    let doc = parse_document(text).map_err(|e| problem(None, e.to_string()))?;
    let Value::Object(top) = doc else {
        let what = if doc.is_null() {
            "empty document"
        } else {
            "not a mapping"
        };
        return Err(problem(
            None,
            format!("top level must be a mapping ({what})"),
        ));
    };
    let rule_id = match top.get("rule_id") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(problem(None, "rule_id must be a string".into())),
        None => return Err(problem(None, "missing required field rule_id".into())),
    };
    let id = Some(rule_id.as_str());
    let fail = |message: String| problem(id, message);

    let rule_version = match top.get("rule_version") {
        None => return Err(fail("missing required field rule_version".into())),
        Some(v) => coerce_version(v)
            .ok_or_else(|| fail(format!("rule_version must be an integer, got {v}")))?,
    };
    let name = required_str(&top, "name").map_err(fail)?;
    let description = match top.get("description") {
        None => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(fail("description must be a string".into())),
    };
    let applies_to = string_list(&top, "applies_to", true).map_err(fail)?;
    let mut kinds: Vec<String> = Vec::new();
    for k in applies_to {
        if !kinds.contains(&k) {
            kinds.push(k);
        }
    }
    let match_spec = match top.get("match") {
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(fail("match must be a mapping".into())),
        None => return Err(fail("missing required field match".into())),
    };
    let emits_raw = match top.get("emits") {
        Some(Value::Array(a)) => a,
        Some(_) => return Err(fail("emits must be a list".into())),
        None => return Err(fail("missing required field emits".into())),
    };
    let mut emits = Vec::with_capacity(emits_raw.len());
    for (i, entry) in emits_raw.iter().enumerate() {
        let Value::Object(entry) = entry else {
            return Err(fail(format!("emits[{i}] must be a mapping")));
        };
        emits.push(compile_emit(entry).map_err(|m| fail(format!("emits[{i}]: {m}")))?);
    }
    let evidence_fields = string_list(&top, "evidence_fields", false).map_err(fail)?;
    let rule = Rule {
        rule_id: rule_id.clone(),
        rule_version,
        name,
        description,
        applies_to: kinds,
        match_spec,
        emits,
        evidence_fields,
        state: RuleState::default(),
        origin: origin.to_owned(),
    };
    // Our addition to DECNET's schema: a regex that does not compile is a load error, not a
    // warning on every evaluation (§13.25).
    validate_regexes(&rule).map_err(|m| problem(Some(&rule.rule_id), m))?;
    Ok(rule)
}

/// Every regex a rule carries must compile, and an engine rule's `pattern` must be a string
/// or null.
fn validate_regexes(rule: &Rule) -> Result<(), String> {
    if rule.owner() == Owner::Engine {
        match rule.param("pattern") {
            None | Some(Value::Null) => {}
            Some(Value::String(p)) => {
                PyRegex::cached(p).map_err(|e| e.to_string())?;
            }
            Some(other) => return Err(format!("match.pattern must be a string, got {other}")),
        }
    }
    for key in LIFTER_REGEX_LISTS {
        if let Some(Value::Array(items)) = rule.param(key) {
            for p in items.iter().filter_map(Value::as_str) {
                PyRegex::cached(p).map_err(|e| format!("match.{key}: {e}"))?;
            }
        }
    }
    Ok(())
}

fn required_str(top: &Map<String, Value>, key: &str) -> Result<String, String> {
    match top.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(format!("{key} must be a string")),
        None => Err(format!("missing required field {key}")),
    }
}

fn string_list(top: &Map<String, Value>, key: &str, required: bool) -> Result<Vec<String>, String> {
    match top.get(key) {
        None if required => Err(format!("missing required field {key}")),
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                _ => Err(format!("{key} must be a list of strings")),
            })
            .collect(),
        Some(_) => Err(format!("{key} must be a list of strings")),
    }
}

/// Pydantic's lax int: ints, booleans, integral floats, integer strings (trimmed).
fn coerce_version(v: &Value) -> Option<i64> {
    match v {
        Value::Bool(b) => Some(i64::from(*b)),
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn compile_emit(entry: &Map<String, Value>) -> Result<Emit, String> {
    let technique_id = entry
        .get("technique_id")
        .filter(|v| truthy(v))
        .map(py_str)
        .ok_or("technique_id is required")?;
    let tactic = entry
        .get("tactic")
        .filter(|v| truthy(v))
        .map(py_str)
        .ok_or("tactic is required")?;
    let sub_technique_id = entry
        .get("sub_technique_id")
        .filter(|v| truthy(v))
        .map(py_str);
    let confidence = match entry.get("confidence") {
        None | Some(Value::Null) => return Err("confidence is required".into()),
        Some(v) => py_float(v).ok_or_else(|| format!("confidence {v} is not a number"))?,
    };
    Ok(Emit {
        technique_id,
        sub_technique_id,
        tactic,
        confidence,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "rule_id: R9\nrule_version: '2'\nname: n\napplies_to: [command, command]\n\
        match: {field: command_text, pattern: 'x'}\nemits:\n  - {tactic: TA1, technique_id: T1, confidence: '0.5'}\n";

    #[test]
    fn compiles_with_coercions() {
        let rule = compile_text("f.yaml", GOOD).expect("loads");
        assert_eq!(rule.rule_version, 2);
        assert_eq!(rule.applies_to, vec!["command"]);
        assert_eq!(rule.emits[0].confidence, 0.5);
        assert_eq!(rule.emits[0].sub_technique_id, None);
        assert_eq!(rule.owner(), Owner::Engine);
    }

    #[test]
    fn problems_name_file_and_rule() {
        let err = compile_text("f.yaml", &GOOD.replace("name: n\n", "")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "f.yaml: rule R9: missing required field name"
        );
        let err = compile_text("f.yaml", "rule_id: [\n").unwrap_err();
        assert!(
            err.to_string().starts_with("f.yaml: rule ?: invalid YAML"),
            "{err}"
        );
        let err = compile_text("f.yaml", &GOOD.replace("'x'", "'(unclosed'")).unwrap_err();
        assert!(err.to_string().starts_with("f.yaml: rule R9: "), "{err}");
        assert!(compile_text("f.yaml", "").is_err());
        assert!(compile_text("f.yaml", &GOOD.replace("'2'", "2.5")).is_err());
        assert!(compile_text("f.yaml", &GOOD.replace("[command, command]", "command")).is_err());
        assert!(compile_text("f.yaml", &GOOD.replace("tactic: TA1, ", "")).is_err());
    }

    #[test]
    fn owner_follows_match_kind() {
        let with_kind = |k: &str| {
            compile_text(
                "f",
                &GOOD.replace("field: command_text", &format!("kind: '{k}'")),
            )
            .map(|r| r.owner())
        };
        assert_eq!(with_kind("lifter:email_x"), Ok(Owner::Email));
        assert_eq!(with_kind("lifter:ipv6_link_local_leak"), Ok(Owner::Ipv6));
        assert_eq!(with_kind("lifter:c2_fingerprint"), Ok(Owner::Nobody));
        assert_eq!(with_kind("regex"), Ok(Owner::Engine));
    }

    #[test]
    fn rule_file_names_are_filtered() {
        for ok in ["R0001.yaml", "a_b.yml"] {
            assert!(is_rule_file_name(Path::new(ok)), "{ok}");
        }
        for bad in ["R-1.yaml", "x.YAML", "foo.yaml~", ".yaml", "a.yaml.swp"] {
            assert!(!is_rule_file_name(Path::new(bad)), "{bad}");
        }
    }
}
