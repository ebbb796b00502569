//! How much work one bus message may cause, and what was left undone when it asked for more.
//!
//! Every message is the attacker's: a session of 200,000 one-letter commands once stalled the
//! worker for over a minute and grew it past a gigabyte. DECNET's tagger has no such bound; this
//! one stops *while* building and tagging a message's events, never after, so that neither time
//! nor memory per message can grow past what [`Budget`] allows. What was cut is reported in
//! [`Cuts`], counted by the daemon per kind, and logged once for the message.

/// The limits on one message's work. The defaults leave every event DECNET's honeypots send in
/// normal operation alone (a long shell session has hundreds of commands, not thousands).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Commands of one session fanned out into command events; later ones are not tagged.
    pub commands: usize,
    /// Bytes of text one message's events may put before the rules (each event's top-level
    /// string members, summed over its events). An event that would go past it is not tagged,
    /// and neither is any event after it.
    pub text_bytes: usize,
    /// Tags one message may produce; the event that reaches the limit keeps the tags that fit,
    /// later events are not tagged.
    pub tags: usize,
    /// Characters of each string an event puts into its tags' rows (its kind, source id,
    /// anchors, session and decky ids). An event with a longer one is not tagged; the others
    /// of the message are. 255 is what DECNET's MySQL columns hold (`VARCHAR(255)`), so every
    /// store keeps the same tags.
    pub id_chars: usize,
}

impl Default for Budget {
    fn default() -> Budget {
        Budget {
            commands: 10_000,
            text_bytes: 4 << 20,
            tags: 50_000,
            id_chars: 255,
        }
    }
}

/// What one message's budget kept from being tagged. All zero for every ordinary message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cuts {
    /// Session commands past [`Budget::commands`].
    pub commands: usize,
    /// Events not tagged because the message's text budget was spent.
    pub events_over_text: usize,
    /// Events not tagged because the message's tag budget was spent.
    pub events_over_tags: usize,
    /// Tags dropped from the event that reached the tag budget.
    pub tags: usize,
    /// Events not tagged because a string they would store is over [`Budget::id_chars`].
    pub events_long_ids: usize,
}

impl Cuts {
    pub fn any(&self) -> bool {
        *self != Cuts::default()
    }

    pub fn add(&mut self, other: &Cuts) {
        self.commands += other.commands;
        self.events_over_text += other.events_over_text;
        self.events_over_tags += other.events_over_tags;
        self.tags += other.tags;
        self.events_long_ids += other.events_long_ids;
    }

    /// Events not tagged, for whatever reason.
    pub fn events(&self) -> usize {
        self.events_over_text + self.events_over_tags + self.events_long_ids
    }
}

impl std::fmt::Display for Cuts {
    /// `12000 commands, 3 events (text budget)`: only what was cut.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts = [
            (self.commands, "commands"),
            (self.events_over_text, "events (text budget)"),
            (self.events_over_tags, "events (tag budget)"),
            (self.tags, "tags"),
            (self.events_long_ids, "events (an id too long to store)"),
        ];
        let mut first = true;
        for (count, what) in parts.into_iter().filter(|(count, _)| *count > 0) {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{count} {what}")?;
        }
        Ok(())
    }
}

/// The text of an event as the budget counts it: its payload's top-level strings, which is
/// what rules and lifters read (a session's `commands` array is counted command by command,
/// as the command events it fans out into).
pub fn text_bytes(payload: &serde_json::Map<String, serde_json::Value>) -> usize {
    payload
        .values()
        .map(|value| value.as_str().map_or(0, str::len))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cuts_name_only_what_was_cut() {
        let cuts = Cuts {
            commands: 12,
            events_over_tags: 3,
            ..Cuts::default()
        };
        assert_eq!(cuts.to_string(), "12 commands, 3 events (tag budget)");
        assert!(cuts.any());
        assert!(!Cuts::default().any());
    }

    #[test]
    fn every_kind_of_cut_is_named() {
        let cuts = Cuts {
            events_over_text: 1,
            tags: 2,
            events_long_ids: 4,
            ..Cuts::default()
        };
        assert_eq!(
            cuts.to_string(),
            "1 events (text budget), 2 tags, 4 events (an id too long to store)"
        );
        assert_eq!(cuts.events(), 5);
    }

    #[test]
    fn text_counts_top_level_strings_only() {
        let payload = json!({"a": "abc", "b": 5, "c": ["long string"], "d": "de"});
        assert_eq!(text_bytes(payload.as_object().unwrap()), 5);
    }
}
