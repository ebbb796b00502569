//! Logging tagging problems once. A rule whose evidence breaks its kind's schema (DECNET's
//! R0033 on e-mail, docs/tagging.md §9.3) fails the same way on every event it fires on: one
//! line per event would bury everything else in the log. Each distinct problem is logged the
//! first time an engine meets it; the reports still count every occurrence, which the
//! heartbeat and `tag`'s summary show. A reload builds a new engine, so a problem that is still
//! there is logged once more after it.

use std::collections::HashSet;

use super::report::TagWarning;

/// Distinct problems logged per engine. Failures that quote the payload (an address that is
/// not a string, say) are distinct per event, and an attacker writes payloads: past this many
/// the rest are only counted.
const MAX_LOGGED: usize = 256;

#[derive(Debug, Default)]
pub struct ProblemLog {
    logged: HashSet<String>,
    /// Whether the "no more" line has been written.
    full: bool,
}

impl ProblemLog {
    /// Logs `warning` unless its problem was logged before.
    pub fn warn(&mut self, warning: &TagWarning) {
        if self.logged.len() >= MAX_LOGGED {
            if !self.full {
                self.full = true;
                log::warn!(
                    "{MAX_LOGGED} distinct tagging problems logged since the rules were loaded; \
                     further ones are only counted (lifter_warnings, events_discarded)"
                );
            }
            return;
        }
        if self.logged.insert(warning.problem()) {
            log::warn!("{warning} (logged once; every occurrence is counted)");
        }
    }

    /// Distinct problems met so far.
    #[cfg(test)]
    fn distinct(&self) -> usize {
        self.logged.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tagging::lifters::LiftError;
    use crate::tagging::rules::Owner;

    fn schema(source_id: &str, rule_id: &str) -> TagWarning {
        TagWarning::EventDiscarded {
            source_kind: "email".into(),
            source_id: source_id.into(),
            error: LiftError::Schema {
                rule_id: rule_id.into(),
                key: "btc_address".into(),
                source_kind: "email".into(),
            },
        }
    }

    #[test]
    fn one_problem_on_many_events_is_one_entry() {
        let mut log = ProblemLog::default();
        for n in 0..50 {
            log.warn(&schema(&format!("mail-{n}"), "R0033"));
        }
        assert_eq!(log.distinct(), 1);
        log.warn(&schema("mail-x", "R9999"));
        log.warn(&TagWarning::TaggerFailed {
            owner: Owner::Email,
            source_kind: "email".into(),
            source_id: "mail-y".into(),
            error: LiftError::Failed("rcpt_domains 5 is not iterable".into()),
        });
        assert_eq!(log.distinct(), 3);
    }

    #[test]
    fn the_set_of_logged_problems_is_bounded() {
        let mut log = ProblemLog::default();
        for n in 0..MAX_LOGGED * 3 {
            log.warn(&TagWarning::TaggerFailed {
                owner: Owner::Ipv6,
                source_kind: "ipv6_leak".into(),
                source_id: "x".into(),
                error: LiftError::Failed(format!("address {n} is not a string")),
            });
        }
        assert_eq!(log.distinct(), MAX_LOGGED);
        assert!(log.full);
    }
}
