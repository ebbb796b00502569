//! Rule sets: the built-in pack and rule directories, loaded in order, each rule given to the
//! tagger that claims it (docs/tagging.md §5.1, §5.5).
//!
//! Deliberate divergence from DECNET (§5.1, §13.4): a file that fails to load is reported and
//! skipped; it never silences the other rules.
//!
//! This sits above both [`rules`](super::rules) (one file) and [`lifters`] (whose table says
//! who owns a `lifter:` kind), so that neither has to import the other.

use std::path::Path;
use std::sync::Arc;

use super::lifters;
use super::rules::{Rule, RuleProblem, compile_text, rule_files};

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
        match compile_text(origin, text, lifters::owner_of) {
            Ok(rule) => self.push(rule),
            Err(problem) => self.problems.push(problem),
        }
    }

    /// Loads every rule file of `dir` in file-name order (§5.1).
    pub fn add_dir(&mut self, dir: &Path) {
        let files = match rule_files(dir) {
            Ok(files) => files,
            Err(e) => {
                self.problems.push(RuleProblem {
                    file: dir.display().to_string(),
                    rule_id: None,
                    message: format!("cannot read rules directory: {e}"),
                });
                return;
            }
        };
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
