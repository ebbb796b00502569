//! The rule pack embedded in the binary: our own rules (R1000 and up), used when no rules
//! directory is configured.

use super::rules::RuleSet;

/// `(file name, text)` in evaluation order.
pub const RULES: &[(&str, &str)] = &[];

pub fn add_rules(set: &mut RuleSet) {
    for (name, text) in RULES {
        set.add_text(&format!("builtin:{name}"), text);
    }
}
