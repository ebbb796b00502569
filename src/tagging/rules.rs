//! One rule file: schema validation, `emits` compilation, ownership (docs/tagging.md §5). Loading
//! whole directories is [`ruleset`](super::ruleset)'s.
//!
//! Which lifter owns a `lifter:` rule is the lifter table's to say, and that table sits above
//! this module (it names the lifters, which take rules): [`compile_text`] is handed its answer
//! as a [`LifterOf`].

use std::fmt;
use std::path::{Path, PathBuf};

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

/// How the origin of an embedded rule starts (`builtin:R1000.yaml`).
pub const BUILTIN_ORIGIN: &str = "builtin:";

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
    /// Decided when the rule is compiled, from `match.kind`.
    owner: Owner,
    /// Where the rule came from, for problem reports (`builtin:<name>` for the embedded pack).
    pub origin: String,
}

/// Which tagger evaluates a rule, decided by `match.kind` (§5.5): the pattern engine unless
/// the kind starts with `lifter:`, then the lifter that claims it.
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

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The lifter that claims a `lifter:` kind, if one does (`lifters::owner_of`).
pub type LifterOf = fn(&str) -> Option<Owner>;

impl Rule {
    /// The exact `match.kind` string, if it is a string.
    pub fn kind(&self) -> Option<&str> {
        self.match_spec.field("kind").and_then(Value::as_str)
    }

    pub fn owner(&self) -> Owner {
        self.owner
    }

    /// Whether the rule is from the embedded pack (its origin starts with [`BUILTIN_ORIGIN`]).
    pub fn is_builtin(&self) -> bool {
        self.origin.starts_with(BUILTIN_ORIGIN)
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

/// The rule files of a directory (rules, or intel tables), in file-name order (§5.1).
pub fn rule_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file() || t.is_symlink()))
        .map(|e| e.path())
        .filter(|p| p.is_file() && is_rule_file_name(p))
        .collect();
    files.sort();
    Ok(files)
}

/// Parses, validates (§5.2) and compiles (§5.3) one rule file; `lifter_of` says which lifter
/// owns it when its kind is a `lifter:` one.
pub fn compile_text(origin: &str, text: &str, lifter_of: LifterOf) -> Result<Rule, RuleProblem> {
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
    let owner = match match_spec.field("kind").and_then(Value::as_str) {
        Some(kind) if kind.starts_with("lifter:") => lifter_of(kind).unwrap_or(Owner::Nobody),
        _ => Owner::Engine,
    };
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
        owner,
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

    /// Claims no `lifter:` kind: these tests are about one file, not about the lifter table.
    const NO_LIFTERS: LifterOf = |_| None;

    const GOOD: &str = "rule_id: R9\nrule_version: '2'\nname: n\napplies_to: [command, command]\n\
        match: {field: command_text, pattern: 'x'}\nemits:\n  - {tactic: TA1, technique_id: T1, confidence: '0.5'}\n";

    #[test]
    fn compiles_with_coercions() {
        let rule = compile_text("f.yaml", GOOD, NO_LIFTERS).expect("loads");
        assert_eq!(rule.rule_version, 2);
        assert_eq!(rule.applies_to, vec!["command"]);
        assert_eq!(rule.emits[0].confidence, 0.5);
        assert_eq!(rule.emits[0].sub_technique_id, None);
        assert_eq!(rule.owner(), Owner::Engine);
    }

    #[test]
    fn problems_name_file_and_rule() {
        let err = compile_text("f.yaml", &GOOD.replace("name: n\n", ""), NO_LIFTERS).unwrap_err();
        assert_eq!(
            err.to_string(),
            "f.yaml: rule R9: missing required field name"
        );
        let err = compile_text("f.yaml", "rule_id: [\n", NO_LIFTERS).unwrap_err();
        assert!(
            err.to_string().starts_with("f.yaml: rule ?: invalid YAML"),
            "{err}"
        );
        let err =
            compile_text("f.yaml", &GOOD.replace("'x'", "'(unclosed'"), NO_LIFTERS).unwrap_err();
        assert!(err.to_string().starts_with("f.yaml: rule R9: "), "{err}");
        assert!(compile_text("f.yaml", "", NO_LIFTERS).is_err());
        assert!(compile_text("f.yaml", &GOOD.replace("'2'", "2.5"), NO_LIFTERS).is_err());
        assert!(
            compile_text(
                "f.yaml",
                &GOOD.replace("[command, command]", "command"),
                NO_LIFTERS
            )
            .is_err()
        );
        assert!(compile_text("f.yaml", &GOOD.replace("tactic: TA1, ", ""), NO_LIFTERS).is_err());
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
