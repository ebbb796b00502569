//! The tagging engine: bus messages in, MITRE ATT&CK tags out, as DECNET's Python tagger
//! would produce them (`docs/tagging.md`).
//!
//! [`Tagger`] is the seam the daemon owns: built from [`EngineOptions`], fed one
//! [`Inbound`](crate::envelope::Inbound) at a time through [`Tagger::tag_message`], rebuilt on
//! reload with [`Tagger::reload`]. The `tag` and `check-rules` commands (`src/commands/`) drive
//! the very same code. The tagger counts nothing: each call returns a [`MessageTags`] report,
//! and its callers count those with a [`Tally`].

pub mod anchors;
pub mod budget;
mod builtin;
pub mod deobfuscate;
pub mod event;
pub mod lifters;
pub mod pattern;
mod problem_log;
pub mod py;
pub mod pyre;
pub mod report;
pub mod rules;
pub mod ruleset;
pub mod state;
pub mod tag;
pub mod yaml;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde_json::{Map, Value};

pub use anchors::AnchorResolver;
pub use budget::{Budget, Cuts};
pub use event::{TaggerEvent, Unbuildable};
pub use report::{MessageTags, TagWarning, Tally};
pub use rules::{Owner, Rule, RuleProblem};
pub use tag::{CONFIDENCE_FLOOR, Tag};

use crate::envelope::Inbound;
use lifters::{AnchorMode, IntelMaps, LiftContext, LiftError, RegexCache};
pub use pattern::CommandView;
use pattern::PatternEngine;
use problem_log::ProblemLog;
use ruleset::RuleSet;

/// Where rules, intel tables and known attackers come from. The daemon and the `tag` /
/// `check-rules` commands take the same options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineOptions {
    /// Rule directories, loaded in this order; an id defined twice keeps the later content.
    pub rules_dirs: Vec<PathBuf>,
    /// Do not load the embedded rule pack; otherwise it is loaded before the rules dirs.
    pub no_builtin_rules: bool,
    /// Intel provider tables overriding the built-in ones, per provider.
    pub intel_maps_dir: Option<PathBuf>,
    /// `{"<ip>": "<attacker_uuid>"}` seed for IP anchor resolution.
    pub anchors_file: Option<PathBuf>,
    /// How much work one message may cause.
    pub budget: Budget,
    /// Which rules also match a command's de-obfuscated view (the built-in pack's always;
    /// every rule's with `--normalize-commands`).
    pub command_view: CommandView,
    /// Accept a pack without a single rule ([`Tagger::require_rules`]): a worker that tags
    /// nothing is almost always a wrong directory, so it is refused unless asked for.
    pub allow_empty: bool,
}

impl EngineOptions {
    /// Where rules come from, in load order: `built-in pack`, then each directory.
    pub fn rule_sources(&self) -> Vec<String> {
        let builtin = (!self.no_builtin_rules).then(|| "built-in pack".to_owned());
        builtin
            .into_iter()
            .chain(self.rules_dirs.iter().map(|d| d.display().to_string()))
            .collect()
    }
}

/// What stops an engine from being built at all (a reload failing this way keeps the old one).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Anchors(#[from] anchors::AnchorsError),
    #[error("{path}: cannot read rules directory: {source}")]
    RulesDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: cannot read intel maps directory: {source}")]
    IntelDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "no rules loaded from {searched}: the worker would tag nothing (--allow-empty accepts that)"
    )]
    NoRules {
        /// The places searched, as a user would name them.
        searched: String,
    },
}

/// The source kinds DECNET knows; `http_fingerprint` has a (dead) lifter that never emits
/// (§8.7), every other one a tagger.
pub const KNOWN_KINDS: [&str; 12] = [
    "command",
    "http_request",
    "auth_attempt",
    "payload",
    "session",
    "email",
    "intel",
    "canary_fingerprint",
    "identity",
    "credential",
    "http_fingerprint",
    "ipv6_leak",
];

/// The tagging engine the daemon owns.
pub struct Tagger {
    options: EngineOptions,
    rules: Vec<Arc<Rule>>,
    problems: Vec<RuleProblem>,
    warnings: Vec<RuleProblem>,
    by_owner: FxHashMap<Owner, Vec<Arc<Rule>>>,
    pattern: PatternEngine,
    regexes: RegexCache,
    intel_maps: IntelMaps,
    anchors: AnchorResolver,
    unhandled_kinds_logged: HashSet<String>,
    /// Set once [`MAX_UNHANDLED_KINDS`] were named.
    unhandled_kinds_overflowed: bool,
    problems_logged: ProblemLog,
    /// Fixed clock for tests; `None` reads the system clock per message.
    clock: Option<f64>,
}

impl Tagger {
    /// Loads rules, intel tables and anchors. Rule-file problems do not fail the build: the
    /// file is skipped and listed in [`Tagger::problems`].
    pub fn new(options: &EngineOptions) -> Result<Tagger, EngineError> {
        let mut set = RuleSet::default();
        if !options.no_builtin_rules {
            builtin::add_rules(&mut set);
        }
        for dir in &options.rules_dirs {
            std::fs::read_dir(dir).map_err(|source| EngineError::RulesDir {
                path: dir.clone(),
                source,
            })?;
            set.add_dir(dir);
        }
        let mut intel_maps = IntelMaps::builtin();
        if let Some(dir) = &options.intel_maps_dir {
            intel_maps
                .add_dir(dir, &mut set.problems)
                .map_err(|source| EngineError::IntelDir {
                    path: dir.clone(),
                    source,
                })?;
        }
        let anchors = match &options.anchors_file {
            Some(path) => AnchorResolver::from_file(path)?,
            None => AnchorResolver::default(),
        };
        Ok(Tagger::from_parts(
            options.clone(),
            set,
            intel_maps,
            anchors,
        ))
    }

    fn from_parts(
        options: EngineOptions,
        set: RuleSet,
        intel_maps: IntelMaps,
        anchors: AnchorResolver,
    ) -> Tagger {
        // Our divergence (§5.5, §13.2): DECNET loads a rule no tagger owns and never runs it;
        // we say so and leave it out, so that the rule count is the count of rules that can fire.
        let (rules, unowned): (Vec<Arc<Rule>>, Vec<Arc<Rule>>) = set
            .rules
            .into_iter()
            .partition(|rule| rule.owner() != Owner::Nobody);
        let warnings = unowned
            .iter()
            .map(|rule| RuleProblem {
                file: rule.origin.clone(),
                rule_id: Some(rule.rule_id.clone()),
                message: format!(
                    "warning: match.kind {:?} has no lifter, so the rule can never fire; not loaded",
                    rule.kind().unwrap_or_default()
                ),
            })
            .collect();
        let mut by_owner: FxHashMap<Owner, Vec<Arc<Rule>>> = FxHashMap::default();
        for rule in &rules {
            by_owner
                .entry(rule.owner())
                .or_default()
                .push(Arc::clone(rule));
        }
        Tagger {
            pattern: PatternEngine::new(&rules, options.command_view),
            regexes: RegexCache::new(&rules),
            rules,
            problems: set.problems,
            warnings,
            by_owner,
            intel_maps,
            anchors,
            options,
            unhandled_kinds_logged: HashSet::new(),
            unhandled_kinds_overflowed: false,
            problems_logged: ProblemLog::default(),
            clock: None,
        }
    }

    /// An error when no rule loaded and the options do not allow that, naming where rules
    /// were looked for (every file there may have failed: the problems say why).
    pub fn require_rules(&self) -> Result<(), EngineError> {
        if !self.rules.is_empty() || self.options.allow_empty {
            return Ok(());
        }
        Err(EngineError::NoRules {
            searched: self.options.rule_sources().join(", "),
        })
    }

    /// A fresh engine from the same options (SIGHUP). Anchors learned from the bus are kept;
    /// on error the caller keeps using `self`, so a reload never leaves the worker without
    /// rules it was not allowed to be without.
    pub fn reload(&self) -> Result<Tagger, EngineError> {
        let mut fresh = Tagger::new(&self.options)?;
        fresh.require_rules()?;
        let mut merged = self.anchors.clone();
        merged.merge_from(&fresh.anchors);
        fresh.anchors = merged;
        Ok(fresh)
    }

    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// Every loaded rule, in evaluation order.
    pub fn rules(&self) -> &[Arc<Rule>] {
        &self.rules
    }

    /// Rule and intel-map files that failed to load (each was skipped).
    pub fn problems(&self) -> &[RuleProblem] {
        &self.problems
    }

    /// Rules that loaded but can never fire, so were left out (R0030: its `match.kind` has no
    /// lifter). Worth telling the operator; not a load failure.
    pub fn warnings(&self) -> &[RuleProblem] {
        &self.warnings
    }

    /// Gives back the memory that matching grew for speed (the rule sets' DFA caches); the
    /// daemon calls it when a burst is over.
    pub fn release_caches(&self) {
        self.pattern.release_caches();
    }

    pub fn anchors(&self) -> &AnchorResolver {
        &self.anchors
    }

    /// Restores `ip → attacker_uuid` pairings learned from the bus before this engine was
    /// built (the daemon keeps them in its store).
    pub fn restore_learned_anchors(&mut self, pairs: impl IntoIterator<Item = (String, String)>) {
        for (ip, attacker_uuid) in pairs {
            self.anchors.insert_learned(ip, attacker_uuid);
        }
    }

    /// Pins the clock used by rule-state expiry (tests).
    pub fn set_clock(&mut self, now: Option<f64>) {
        self.clock = now;
    }

    /// Rule counts by source kind and by owner, for `check-rules`.
    pub fn summary(&self) -> (BTreeMap<String, usize>, BTreeMap<&'static str, usize>) {
        let mut by_kind = BTreeMap::new();
        let mut by_owner = BTreeMap::new();
        for rule in &self.rules {
            for kind in &rule.applies_to {
                *by_kind.entry(kind.clone()).or_insert(0) += 1;
            }
            *by_owner.entry(rule.owner().name()).or_insert(0) += 1;
        }
        (by_kind, by_owner)
    }

    /// Tags one bus message and reports how.
    pub fn tag_message(&mut self, msg: &Inbound) -> MessageTags {
        self.tag_payload(&msg.subject, &msg.envelope.kind, &msg.envelope.payload)
    }

    /// Tags one message given as subject, envelope type and payload.
    pub fn tag_payload(
        &mut self,
        subject: &str,
        envelope_type: &str,
        payload: &Map<String, Value>,
    ) -> MessageTags {
        self.anchors.learn(payload);
        let max_commands = self.options.budget.commands;
        let events =
            event::build_events(subject, envelope_type, payload, &self.anchors, max_commands);
        self.tag_events(events)
    }

    /// [`Tagger::tag_payload`] on a payload the caller owns and no longer needs as it was:
    /// when the attacker UUID is resolved from the IP (§3.2) it is written into `payload`
    /// (DECNET edits a copy) instead of copying the whole payload. The tags are the same.
    pub fn tag_payload_in_place(
        &mut self,
        subject: &str,
        envelope_type: &str,
        payload: &mut Map<String, Value>,
    ) -> MessageTags {
        self.anchors.learn(payload);
        let max_commands = self.options.budget.commands;
        let events = event::build_events_in_place(
            subject,
            envelope_type,
            payload,
            &self.anchors,
            max_commands,
        );
        self.tag_events(events)
    }

    /// Tags one message the way DECNET's worker does with its database (docs/decnet-db.md):
    /// anchors come from `resolver` alone (what DECNET's `attackers` table says, looked up by
    /// the caller), nothing is learned, and a `session.ended` message whose attacker has an
    /// intel row (`intel_row`, as the catch-up payload) gets DECNET's catch-up event.
    pub fn tag_with_database(
        &mut self,
        subject: &str,
        envelope_type: &str,
        payload: &Map<String, Value>,
        resolver: &AnchorResolver,
        intel_row: Option<&Map<String, Value>>,
    ) -> MessageTags {
        let max_commands = self.options.budget.commands;
        let events = event::build_events(subject, envelope_type, payload, resolver, max_commands)
            .map(|mut events| {
                if subject.contains("session.ended")
                    && let Some(row) = intel_row
                    && let Some(catchup) = events
                        .first()
                        .and_then(|base| event::catchup_event(base, row))
                {
                    events.push(catchup);
                }
                events
            });
        self.tag_events(events)
    }

    /// Tags the events in order until the message's budget is spent (`budget.rs`): the text
    /// an event puts before the rules is counted before it is tagged, its tags after. An event
    /// with an id too long to store is passed over.
    fn tag_events(&mut self, events: Result<Vec<TaggerEvent<'_>>, Unbuildable>) -> MessageTags {
        let mut out = MessageTags::default();
        let events = match events {
            Ok(events) => events,
            Err(why) => {
                out.unbuildable = Some(why);
                return out;
            }
        };
        out.events = events.len();
        out.cut.commands = commands_past_budget(&events, self.options.budget.commands);
        let budget = self.options.budget;
        let mut text_left = budget.text_bytes;
        let now = self.clock.unwrap_or_else(state::now_epoch);
        for (index, ev) in events.iter().enumerate() {
            // Not a limit on work: what the rows could not hold is not tagged at all.
            if !ev.ids_fit(budget.id_chars) {
                out.cut.events_long_ids += 1;
                continue;
            }
            let text = budget::text_bytes(&ev.payload);
            if text > text_left {
                out.cut.events_over_text = events.len() - index;
                break;
            }
            text_left -= text;
            let room = budget.tags.saturating_sub(out.tag_count());
            if room == 0 {
                out.cut.events_over_tags = events.len() - index;
                break;
            }
            if ev.attacker_uuid.is_none() && ev.identity_uuid.is_none() {
                out.ip_anchored_events += 1;
            }
            let mut tags = self.tag_event(ev, now, &mut out);
            if tags.len() > room {
                out.cut.tags = tags.len() - room;
                tags.truncate(room);
            }
            for tag in tags {
                out.add(tag);
            }
        }
        out
    }

    /// The composite (docs/tagging.md §9): the pattern engine, then each lifter, that handles the event's kind
    /// (§9.1); a tolerated failure costs that tagger's tags, an evidence-schema violation costs
    /// the whole tagger event.
    fn tag_event(&mut self, ev: &TaggerEvent, now: f64, out: &mut MessageTags) -> Vec<Tag> {
        let kind = ev.source_kind.as_ref();
        let by_engine = pattern::HANDLES.contains(&kind);
        let mut lifters = lifters::handling(kind).peekable();
        if !by_engine && lifters.peek().is_none() {
            self.log_unhandled(kind);
            return Vec::new();
        }
        let ctx = LiftContext {
            now,
            regexes: &self.regexes,
            intel_maps: &self.intel_maps,
        };
        let engine = by_engine.then(|| {
            let result = run_engine(&self.pattern, ev, now, &mut out.regex_errors);
            (Owner::Engine, result)
        });
        let by_owner = &self.by_owner;
        let lifted = lifters.filter_map(|lifter| {
            let rules = by_owner.get(&lifter.owner).map_or(&[][..], Vec::as_slice);
            (!rules.is_empty()).then(|| {
                let result = (lifter.lift)(rules, ev, &ctx)
                    .and_then(|t| lifters::validate_evidence(kind, &t).map(|()| t));
                (lifter.owner, result)
            })
        });
        let mut tags = Vec::new();
        for (owner, result) in engine.into_iter().chain(lifted) {
            match result {
                Ok(mut t) => tags.append(&mut t),
                Err(error) => {
                    let warning = TagWarning::new(owner, ev, error);
                    self.problems_logged.warn(&warning);
                    let discards_event = warning.discards_event();
                    out.warnings.push(warning);
                    if discards_event {
                        return Vec::new();
                    }
                }
            }
        }
        tags
    }

    /// Says once per kind that nothing tags its events. The kind is the attacker's to choose
    /// (an `attacker.fingerprinted` `type`), so only [`MAX_UNHANDLED_KINDS`] are remembered,
    /// each clipped as it is shown (two long kinds alike in their first 200 bytes and their
    /// length count as one: this is only what is logged).
    fn log_unhandled(&mut self, kind: &str) {
        let shown = crate::logging::clip(kind);
        if self.unhandled_kinds_logged.contains(shown.as_ref()) {
            return;
        }
        if self.unhandled_kinds_logged.len() >= MAX_UNHANDLED_KINDS {
            if !self.unhandled_kinds_overflowed {
                self.unhandled_kinds_overflowed = true;
                log::info!(
                    "more than {MAX_UNHANDLED_KINDS} source kinds no tagger handles; further ones are not named"
                );
            }
            return;
        }
        self.unhandled_kinds_logged
            .insert(shown.clone().into_owned());
        let known = KNOWN_KINDS.contains(&kind);
        log::info!(
            "no tagger handles source kind {shown:?}{}; its events yield no tags",
            if known { " (known, no rules)" } else { "" }
        );
    }
}

/// A session's commands that the budget kept from becoming events: the fan-out stopped at
/// `max_commands`, and the base event (first) still holds them all.
fn commands_past_budget(events: &[TaggerEvent<'_>], max_commands: usize) -> usize {
    events
        .first()
        .filter(|base| base.source_kind == "session")
        .and_then(|base| base.payload.get("commands"))
        .and_then(Value::as_array)
        .map_or(0, |commands| commands.len().saturating_sub(max_commands))
}

/// Distinct unhandled source kinds remembered (and named in the log) per rule load.
const MAX_UNHANDLED_KINDS: usize = 64;

/// The pattern engine's part of the composite: its fired rules' tags, in rule order.
fn run_engine(
    pattern: &PatternEngine,
    ev: &TaggerEvent,
    now: f64,
    regex_errors: &mut usize,
) -> Result<Vec<Tag>, LiftError> {
    let mut tags = Vec::new();
    for fired in pattern.evaluate(&ev.source_kind, &ev.payload, now, regex_errors) {
        lifters::emit_all(ev, fired.rule, fired.evidence, AnchorMode::Event, &mut tags)?;
    }
    Ok(tags)
}
