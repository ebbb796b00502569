//! Lifters: hand-written predicates keyed by `match.kind` (docs/tagging.md §8).
//!
//! [`LIFTERS`] is where a lifter is registered, once: the `match.kind` names it claims (rule
//! loading gives it those rules, §5.5), the source kinds it handles (the composite hands it
//! those events, §9.1) and the function that turns one event into tags. A lifter that fails
//! on an event yields nothing for that event; the caller reports a warning and the other
//! lifters' tags stand (§9.2), with one exception reproduced for parity: evidence outside the
//! schema of the event's kind discards the whole tagger event (§9.3, [`validate_evidence`]).
//!
//! Layers, bottom up, so that no module imports one that imports it back: [`intel_maps`],
//! [`kit`] (what every lifter is made of), the lifters, [`schema`], then this table.

pub mod behavioral;
pub mod canary;
pub mod credential;
pub mod email;
pub mod identity;
pub mod intel;
pub mod intel_maps;
pub mod ipv6;
pub mod kit;
pub mod schema;
#[cfg(test)]
pub(crate) mod testkit;

pub use intel_maps::IntelMaps;
pub use kit::{AnchorMode, LiftContext, LiftError, LiftFn, RegexCache, emit_all};
pub use schema::validate_evidence;

use crate::tagging::rules::Owner;

/// One lifter's registration.
pub struct Lifter {
    pub owner: Owner,
    /// The `match.kind` values whose rules it runs.
    pub claims: Claim,
    /// The source kinds whose events it sees.
    pub handles: &'static [&'static str],
    pub lift: LiftFn,
}

/// The `match.kind` values a lifter claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Every kind that starts with this.
    Prefix(&'static str),
    /// This kind alone.
    Exact(&'static str),
}

impl Claim {
    fn covers(self, kind: &str) -> bool {
        match self {
            Claim::Prefix(prefix) => kind.starts_with(prefix),
            Claim::Exact(exact) => kind == exact,
        }
    }
}

/// Every lifter, in DECNET's composite order (§9.1): an event of a kind that several lifters
/// handle goes through them in this order, after the pattern engine.
pub static LIFTERS: [Lifter; 7] = [
    Lifter {
        owner: Owner::Behavioral,
        claims: Claim::Prefix("lifter:behavioral_"),
        handles: &["session", "email", "http_request"],
        lift: behavioral::lift,
    },
    Lifter {
        owner: Owner::Intel,
        claims: Claim::Prefix("lifter:intel_"),
        handles: &["intel"],
        lift: intel::lift,
    },
    Lifter {
        owner: Owner::Canary,
        claims: Claim::Prefix("lifter:canary_"),
        handles: &["canary_fingerprint"],
        lift: canary::lift,
    },
    Lifter {
        owner: Owner::Email,
        claims: Claim::Prefix("lifter:email_"),
        handles: &["email"],
        lift: email::lift,
    },
    Lifter {
        owner: Owner::Identity,
        claims: Claim::Prefix("lifter:identity_"),
        handles: &["identity"],
        lift: identity::lift,
    },
    Lifter {
        owner: Owner::Credential,
        claims: Claim::Prefix("lifter:credential_"),
        handles: &["credential", "auth_attempt"],
        lift: credential::lift,
    },
    Lifter {
        owner: Owner::Ipv6,
        claims: Claim::Exact(ipv6::KIND),
        handles: &["ipv6_leak"],
        lift: ipv6::lift,
    },
];

/// The lifter that runs rules of a `lifter:` kind; `None` when no lifter claims it (such a
/// rule can never fire). Rule loading hands this to [`compile_text`](super::rules::compile_text).
pub fn owner_of(kind: &str) -> Option<Owner> {
    LIFTERS
        .iter()
        .find(|lifter| lifter.claims.covers(kind))
        .map(|lifter| lifter.owner)
}

/// The lifters that see events of `source_kind`, in composite order.
pub fn handling(source_kind: &str) -> impl Iterator<Item = &'static Lifter> + '_ {
    LIFTERS
        .iter()
        .filter(move |lifter| lifter.handles.contains(&source_kind))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tagging::rules::compile_text;

    const GOOD: &str = "rule_id: R9\nrule_version: '2'\nname: n\napplies_to: [command, command]\n\
        match: {field: command_text, pattern: 'x'}\nemits:\n  - {tactic: TA1, technique_id: T1, confidence: '0.5'}\n";

    #[test]
    fn owner_follows_match_kind() {
        let with_kind = |k: &str| {
            compile_text(
                "f",
                &GOOD.replace("field: command_text", &format!("kind: '{k}'")),
                owner_of,
            )
            .map(|r| r.owner())
        };
        assert_eq!(with_kind("lifter:email_x"), Ok(Owner::Email));
        assert_eq!(with_kind("lifter:ipv6_link_local_leak"), Ok(Owner::Ipv6));
        assert_eq!(with_kind("lifter:c2_fingerprint"), Ok(Owner::Nobody));
        assert_eq!(with_kind("regex"), Ok(Owner::Engine));
    }
}
