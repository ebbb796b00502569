//! Every subject the worker reads or writes (docs/bus.md §3).
//!
//! DECNET's topic strings become NATS subjects byte for byte, with no prefix. `TOPICS` is the
//! one list the subscription threads are spawned from; tests compare it with the contract, so a
//! subscription cannot appear or vanish without a test noticing.

use std::fmt;

pub const SESSION_ENDED: &str = "attacker.session.ended";
pub const ATTACKER_OBSERVED: &str = "attacker.observed";
pub const INTEL_ENRICHED: &str = "attacker.intel.enriched";
pub const ATTACKER_FINGERPRINTED: &str = "attacker.fingerprinted";
pub const IDENTITY_FORMED: &str = "identity.formed";
pub const IDENTITY_MERGED: &str = "identity.merged";
pub const CREDENTIAL_REUSE: &str = "credential.reuse.detected";
pub const EMAIL_RECEIVED: &str = "email.received";
/// Every canary event: `canary.<token_id>.triggered`, `.placed` and `.revoked`.
pub const CANARY_ALL: &str = "canary.>";

/// The worker's own heartbeat (out).
pub const HEALTH: &str = "system.ttp.health";
/// Stop requests from DECNET's API (in); deliberately not part of [`TOPICS`].
pub const CONTROL: &str = "system.ttp.control";
/// New tags were written (out).
pub const TAGGED: &str = "ttp.tagged";
/// Reserved by DECNET and never published: no payload is specified (docs/bus.md §5.5).
pub const RULE_SUPPRESSED: &str = "ttp.rule.suppressed";

/// The name this worker goes by: NATS connection name, heartbeat `worker`, subject segment.
pub const WORKER_NAME: &str = "ttp";

/// The inbound patterns, in DECNET's order (docs/bus.md §3.5). Nothing here may match anything
/// under `ttp.`: the worker must never hear its own announcements (docs/bus.md §6.3).
pub const TOPICS: [&str; 9] = [
    SESSION_ENDED,
    ATTACKER_OBSERVED,
    INTEL_ENRICHED,
    ATTACKER_FINGERPRINTED,
    IDENTITY_FORMED,
    IDENTITY_MERGED,
    CREDENTIAL_REUSE,
    EMAIL_RECEIVED,
    CANARY_ALL,
];

/// Every rule-fired announcement.
pub const RULE_FIRED_ALL: &str = "ttp.rule.fired.>";

/// The bridge's name: NATS connection name, DECNET client name, heartbeat `worker`.
pub const BRIDGE_NAME: &str = "ttp-bridge";
/// The bridge's own heartbeat (out, on both buses).
pub const BRIDGE_HEALTH: &str = "system.ttp-bridge.health";

/// What `ttp-worker bridge` carries from DECNET's socket bus to NATS (docs/decnet-bus.md §3):
/// everything the worker consumes, its control subject included.
pub const FROM_DECNET: [&str; TOPICS.len() + 1] = {
    let mut out = [CONTROL; TOPICS.len() + 1];
    let mut i = 0;
    while i < TOPICS.len() {
        out[i] = TOPICS[i];
        i += 1;
    }
    out
};

/// What it carries from NATS to DECNET's socket bus: what the worker announces. Disjoint from
/// [`FROM_DECNET`] (a test proves it), so nothing the bridge relays can come back to it.
pub const TO_DECNET: [&str; 3] = [TAGGED, RULE_FIRED_ALL, HEALTH];

/// A subject segment that cannot be spliced into a subject (docs/bus.md §3.3).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("subject segment {segment:?} is not allowed: {problem}")]
pub struct SegmentError {
    pub segment: String,
    pub problem: SegmentProblem,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentProblem {
    Empty,
    Dot,
    Wildcard,
    Whitespace,
}

impl fmt::Display for SegmentProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SegmentProblem::Empty => "it is empty",
            SegmentProblem::Dot => "it contains '.'",
            SegmentProblem::Wildcard => "it contains a wildcard ('*' or '>')",
            SegmentProblem::Whitespace => "it contains whitespace",
        })
    }
}

/// Checks an identifier the way DECNET's `_reject_tokens` does, so a subject we build is one
/// DECNET could have built.
pub fn validate_segment(segment: &str) -> Result<&str, SegmentError> {
    let problem = if segment.is_empty() {
        Some(SegmentProblem::Empty)
    } else if segment.contains('.') {
        Some(SegmentProblem::Dot)
    } else if segment.contains(['*', '>']) {
        Some(SegmentProblem::Wildcard)
    } else if segment.chars().any(is_python_whitespace) {
        Some(SegmentProblem::Whitespace)
    } else {
        None
    };
    match problem {
        None => Ok(segment),
        Some(problem) => Err(SegmentError {
            segment: segment.to_owned(),
            problem,
        }),
    }
}

/// Python's `str.isspace()`: Unicode White_Space plus the four information separators
/// U+001C–U+001F, which Rust's `char::is_whitespace` leaves out.
fn is_python_whitespace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `canary.<token_id>.<event>`.
pub fn canary(token_id: &str, event: &str) -> Result<String, SegmentError> {
    Ok(format!(
        "canary.{}.{}",
        validate_segment(token_id)?,
        validate_segment(event)?
    ))
}

/// `system.<worker>.health`.
pub fn system_health(worker: &str) -> Result<String, SegmentError> {
    Ok(format!("system.{}.health", validate_segment(worker)?))
}

/// `system.<worker>.control`.
pub fn system_control(worker: &str) -> Result<String, SegmentError> {
    Ok(format!("system.{}.control", validate_segment(worker)?))
}

/// `ttp.rule.fired.<technique_id>`; a sub-technique (`T1110.003`) is refused, so callers key
/// this subject by the parent technique.
pub fn rule_fired(technique_id: &str) -> Result<String, SegmentError> {
    Ok(format!(
        "ttp.rule.fired.{}",
        validate_segment(technique_id)?
    ))
}

/// `ttp.rule.reloaded.<rule_id>`.
pub fn rule_reloaded(rule_id: &str) -> Result<String, SegmentError> {
    Ok(format!("ttp.rule.reloaded.{}", validate_segment(rule_id)?))
}

/// `ttp.rule.state.<rule_id>`.
pub fn rule_state(rule_id: &str) -> Result<String, SegmentError> {
    Ok(format!("ttp.rule.state.{}", validate_segment(rule_id)?))
}

/// NATS wildcard matching with DECNET's semantics (docs/bus.md §3.2): `*` is one non-empty token,
/// `>` one or more trailing tokens, and a wildcard inside a longer token is a literal.
pub fn matches(pattern: &str, subject: &str) -> bool {
    let subject_tokens: Vec<&str> = subject.split('.').collect();
    for (i, pattern_token) in pattern.split('.').enumerate() {
        if pattern_token == ">" {
            return subject_tokens.len() > i;
        }
        let Some(subject_token) = subject_tokens.get(i) else {
            return false;
        };
        let token_matches = if pattern_token == "*" {
            !subject_token.is_empty()
        } else {
            pattern_token == *subject_token
        };
        if !token_matches {
            return false;
        }
    }
    pattern.split('.').count() == subject_tokens.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A subject a pattern stands for, its wildcards filled in.
    fn instance(pattern: &str) -> String {
        pattern.replace(['*', '>'], "x")
    }

    #[test]
    fn the_bridge_carries_what_the_worker_reads_one_way_and_what_it_says_the_other() {
        assert_eq!(&FROM_DECNET[..TOPICS.len()], &TOPICS[..]);
        assert_eq!(FROM_DECNET[TOPICS.len()], CONTROL);
        for inbound in FROM_DECNET {
            for outbound in TO_DECNET {
                assert!(
                    !matches(inbound, &instance(outbound)),
                    "{inbound} hears {outbound}"
                );
                assert!(
                    !matches(outbound, &instance(inbound)),
                    "{outbound} hears {inbound}"
                );
            }
        }
        for pattern in FROM_DECNET.iter().chain(&TO_DECNET) {
            assert!(
                !matches(pattern, BRIDGE_HEALTH),
                "{pattern} would relay the bridge's beat"
            );
        }
        assert_eq!(system_health(BRIDGE_NAME).unwrap(), BRIDGE_HEALTH);
    }

    #[test]
    fn wildcard_vectors_from_the_contract() {
        let vectors = [
            (
                "canary.>",
                "canary.83f0584e-f954-4d16-a133-177bc92b8b8a.triggered",
                true,
            ),
            ("canary.>", "canary", false),
            ("attacker.session.ended", "attacker.session.ended", true),
            ("attacker.*", "attacker.session.ended", false),
            ("attacker.>", "attacker.session.ended", true),
            ("system.*.health", "system.ttp.health", true),
            ("system.*.health", "system.bus.health", true),
            ("ttp.rule.fired.>", "ttp.rule.fired.T1110", true),
            ("ttp.>", "ttp.tagged", true),
            ("a.*", "a.", false),
            ("a*", "ab", false),
        ];
        for (pattern, subject, expected) in vectors {
            assert_eq!(
                matches(pattern, subject),
                expected,
                "{pattern} vs {subject}"
            );
        }
    }

    #[test]
    fn literal_wildcards_and_length_mismatches() {
        assert!(matches("a*", "a*"));
        assert!(!matches("a.b", "a.b.c"));
        assert!(!matches("a.b.c", "a.b"));
        assert!(matches("*.b", "a.b"));
        assert!(!matches("*", ""));
    }

    #[test]
    fn segment_validation_rejects_what_decnet_rejects() {
        let rejected = [
            ("", SegmentProblem::Empty),
            ("a.b", SegmentProblem::Dot),
            ("a*", SegmentProblem::Wildcard),
            ("a>", SegmentProblem::Wildcard),
            ("a b", SegmentProblem::Whitespace),
            ("a\u{1c}b", SegmentProblem::Whitespace),
            ("a\u{1f}b", SegmentProblem::Whitespace),
            ("a\u{a0}b", SegmentProblem::Whitespace),
            ("a\tb", SegmentProblem::Whitespace),
            ("T1110.003", SegmentProblem::Dot),
        ];
        for (segment, problem) in rejected {
            assert_eq!(
                validate_segment(segment).unwrap_err().problem,
                problem,
                "{segment:?}"
            );
        }
        for accepted in ["T1110", "R0012", "83f0584e-f954-4d16-a133-177bc92b8b8a"] {
            assert_eq!(validate_segment(accepted), Ok(accepted));
        }
    }

    #[test]
    fn builders_splice_validated_segments() {
        assert_eq!(system_health(WORKER_NAME).unwrap(), HEALTH);
        assert_eq!(system_control(WORKER_NAME).unwrap(), CONTROL);
        assert_eq!(rule_fired("T1105").unwrap(), "ttp.rule.fired.T1105");
        assert!(rule_fired("T1110.003").is_err());
        assert_eq!(rule_reloaded("R0012").unwrap(), "ttp.rule.reloaded.R0012");
        assert_eq!(rule_state("R0012").unwrap(), "ttp.rule.state.R0012");
        assert_eq!(
            canary("83f0584e-f954-4d16-a133-177bc92b8b8a", "triggered").unwrap(),
            "canary.83f0584e-f954-4d16-a133-177bc92b8b8a.triggered"
        );
        assert!(canary("a b", "triggered").is_err());
        assert!(canary("tok", "").is_err());
    }

    #[test]
    fn topics_are_the_nine_contract_patterns_in_order() {
        assert_eq!(
            TOPICS,
            [
                "attacker.session.ended",
                "attacker.observed",
                "attacker.intel.enriched",
                "attacker.fingerprinted",
                "identity.formed",
                "identity.merged",
                "credential.reuse.detected",
                "email.received",
                "canary.>",
            ]
        );
    }

    #[test]
    fn nothing_we_subscribe_to_hears_what_we_publish() {
        let own = [
            TAGGED,
            HEALTH,
            RULE_SUPPRESSED,
            "ttp.rule.fired.T1105",
            "ttp.rule.reloaded.R0012",
            "ttp.rule.state.R0012",
        ];
        for pattern in TOPICS.iter().chain([&CONTROL]) {
            for subject in own {
                assert!(!matches(pattern, subject), "{pattern} would hear {subject}");
            }
        }
    }

    #[test]
    fn every_inbound_subject_is_matched_by_exactly_one_pattern() {
        let subjects = [
            SESSION_ENDED,
            ATTACKER_OBSERVED,
            INTEL_ENRICHED,
            ATTACKER_FINGERPRINTED,
            IDENTITY_FORMED,
            IDENTITY_MERGED,
            CREDENTIAL_REUSE,
            EMAIL_RECEIVED,
            "canary.83f0584e-f954-4d16-a133-177bc92b8b8a.triggered",
            "canary.83f0584e-f954-4d16-a133-177bc92b8b8a.placed",
            "canary.83f0584e-f954-4d16-a133-177bc92b8b8a.revoked",
        ];
        for subject in subjects {
            let hits = TOPICS.iter().filter(|p| matches(p, subject)).count();
            assert_eq!(hits, 1, "{subject}");
        }
    }
}
