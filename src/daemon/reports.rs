//! What the daemon does with the tagger's reports, whichever store it writes to: the live
//! counters, and the one log line for a message its work budget cut.

use std::time::Duration;

use crate::counters::Counters;
use crate::logging::{Throttle, clip};
use crate::tagging::{MessageTags, Tally};

/// A flood of over-budget messages is the attacker's to send; one line per message would be
/// theirs to write too, so the lines are throttled and the rest counted in the next one.
static BUDGET_NOTES: Throttle = Throttle::new(Duration::from_secs(10));

/// Adds a batch's tally to the live counters, once the batch is stored.
pub fn count(counters: &Counters, tally: &Tally) {
    Counters::add(&counters.events, tally.events);
    Counters::add(&counters.tags, tally.tags);
    Counters::add(&counters.lifter_warnings, tally.lifter_warnings);
    Counters::add(&counters.events_discarded, tally.events_discarded);
    Counters::add(&counters.tags_skipped, tally.out_of_range);
    Counters::add(&counters.untaggable, tally.untaggable);
    Counters::add(&counters.over_budget, tally.messages_cut);
    Counters::add(&counters.cut_commands, tally.cuts.commands as u64);
    Counters::add(&counters.cut_events, tally.cuts.events() as u64);
    Counters::add(&counters.cut_tags, tally.cuts.tags as u64);
}

/// Says what the budget left untagged in one message (the subject and envelope id are the
/// sender's: clipped here, escaped by the logger like every other string).
pub fn note_cuts(subject: &str, envelope_id: &str, report: &MessageTags) {
    if !report.cut.any() {
        return;
    }
    if let Some(held_back) = BUDGET_NOTES.pass() {
        let more = BUDGET_NOTES.held_back_note(held_back, "messages over budget");
        log::warn!(
            "{} ({}) is over the limits on one message; not tagged: {}{more}",
            clip(subject),
            clip(envelope_id),
            report.cut
        );
    }
}
