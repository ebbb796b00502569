//! What tagging a message gave and met, as the tagger reports it. The tagger keeps no count:
//! whoever tags counts the reports, with one [`Tally`] so that every count means the same
//! (the daemon adds a batch's tally to its live counters once the batch is stored; the `tag`
//! command prints its summary from one).

use super::budget::Cuts;
use super::event::{TaggerEvent, Unbuildable};
use super::lifters::LiftError;
use super::rules::Owner;
use super::tag::{CONFIDENCE_FLOOR, Tag};
use crate::logging::{clip, clip_owned};

/// The report of one bus message: its tags, sorted by where they go, and what happened on the
/// way.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MessageTags {
    /// Tags at or above the 0.3 floor: what is stored and published.
    pub tags: Vec<Tag>,
    /// Tags the floor removed (DECNET still lists them in `ttp.tagged`, docs/tagging.md §13.21).
    pub below_floor: Vec<Tag>,
    /// Tags whose confidence is above 1 (or not a number), e.g. from an AbuseIPDB score
    /// over 100: set aside, never stored or published. DECNET's database refuses such a tag
    /// and with it every tag of the message (§13.13); here it costs only itself.
    pub out_of_range: Vec<Tag>,
    /// Tagger events built from the message (base + commands).
    pub events: usize,
    /// Of those, the events anchored on a bare IP (attacker not resolvable).
    pub ip_anchored_events: usize,
    /// Why no event could be built, if so.
    pub unbuildable: Option<Unbuildable>,
    /// Lifter failures met while tagging this message (each also logged where it happened).
    pub warnings: Vec<TagWarning>,
    /// Regex evaluations the backtracking engine gave up on (each counted as no match).
    pub regex_errors: usize,
    /// What the message's work budget left untagged.
    pub cut: Cuts,
}

impl MessageTags {
    /// Every tag produced so far, kept or set aside: what the tag budget counts.
    pub fn tag_count(&self) -> usize {
        self.tags.len() + self.below_floor.len() + self.out_of_range.len()
    }

    /// Files a tag by its confidence: kept, below the floor, or out of range.
    pub(super) fn add(&mut self, tag: Tag) {
        if tag.confidence < CONFIDENCE_FLOOR {
            self.below_floor.push(tag);
        } else if tag.confidence <= 1.0 {
            self.tags.push(tag);
        } else {
            self.out_of_range.push(tag);
        }
    }
}

/// A tolerated failure: it costs the tags it names, and tagging goes on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TagWarning {
    /// One tagger failed on one event: its tags for that event are lost (§9.2).
    #[error("{owner} tagger failed on {source_kind} event {source_id}: {error}")]
    TaggerFailed {
        owner: Owner,
        source_kind: String,
        source_id: String,
        error: LiftError,
    },
    /// A tagger's evidence broke the kind's schema: every tag of the event is lost (§9.3).
    #[error("{source_kind} event {source_id}: {error}; all tags of this event discarded")]
    EventDiscarded {
        source_kind: String,
        source_id: String,
        error: LiftError,
    },
}

impl TagWarning {
    /// The warning for `owner` failing on `ev`: evidence outside the schema discards the event,
    /// any other failure only that tagger's tags. What it quotes of the event (its kind, its
    /// id, a payload value in the failure) is the sender's, so it is kept clipped
    /// ([`clip_owned`]): warnings are kept, logged and printed.
    pub fn new(owner: Owner, ev: &TaggerEvent, error: LiftError) -> TagWarning {
        let source_kind = clip(&ev.source_kind).into_owned();
        let source_id = clip(&ev.source_id).into_owned();
        match error {
            LiftError::Schema { .. } => TagWarning::EventDiscarded {
                source_kind,
                source_id,
                error,
            },
            LiftError::Failed(why) => TagWarning::TaggerFailed {
                owner,
                source_kind,
                source_id,
                error: LiftError::Failed(clip_owned(why)),
            },
        }
    }

    /// Whether the event's other tags are lost too.
    pub fn discards_event(&self) -> bool {
        matches!(self, TagWarning::EventDiscarded { .. })
    }

    /// The problem without the event it was met on: the same for every event a rule fails on
    /// the same way, so that it is logged once (`problem_log.rs`).
    pub fn problem(&self) -> String {
        match self {
            TagWarning::TaggerFailed {
                owner,
                source_kind,
                error,
                ..
            } => format!("{owner} on {source_kind}: {error}"),
            TagWarning::EventDiscarded {
                source_kind, error, ..
            } => format!("{source_kind}: {error}"),
        }
    }
}

/// Totals over reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Messages tagged.
    pub messages: u64,
    /// Tagger events built from them.
    pub events: u64,
    /// Events anchored on a bare IP.
    pub ip_anchored_events: u64,
    /// Tags at or above the floor.
    pub tags: u64,
    pub below_floor: u64,
    /// Tags set aside for a confidence above 1.
    pub out_of_range: u64,
    /// Messages no tagger event could be built from (no anchor, or no source kind).
    pub untaggable: u64,
    /// Lifter failures, an event discarded for its evidence included.
    pub lifter_warnings: u64,
    /// Tagger events that lost all their tags because a rule's evidence broke the kind's
    /// schema (§9.3).
    pub events_discarded: u64,
    pub regex_errors: u64,
    /// What the work budget left untagged, summed.
    pub cuts: Cuts,
    /// Messages the budget cut anything from.
    pub messages_cut: u64,
}

impl Tally {
    pub fn add(&mut self, report: &MessageTags) {
        let count = |n: usize| n as u64;
        self.messages += 1;
        self.events += count(report.events);
        self.ip_anchored_events += count(report.ip_anchored_events);
        self.tags += count(report.tags.len());
        self.below_floor += count(report.below_floor.len());
        self.out_of_range += count(report.out_of_range.len());
        self.untaggable += u64::from(report.unbuildable.is_some());
        self.lifter_warnings += count(report.warnings.len());
        self.events_discarded += count(
            report
                .warnings
                .iter()
                .filter(|w| w.discards_event())
                .count(),
        );
        self.regex_errors += count(report.regex_errors);
        self.cuts.add(&report.cut);
        self.messages_cut += u64::from(report.cut.any());
    }
}
