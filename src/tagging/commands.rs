//! Library side of the `tag` and `check-rules` commands: `main.rs` only parses flags and
//! calls these, so tests drive exactly what users run.

use std::borrow::Cow;
use std::io::{BufRead, Write};
use std::time::Instant;

use serde::Deserialize;

use super::{EngineError, EngineOptions, Tagger};
use crate::envelope::{Envelope, Inbound};

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// What one `tag` run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TagSummary {
    /// Input envelopes tagged (well-formed lines).
    pub events: u64,
    /// Tagger events built from them (base events plus per-command events).
    pub tagger_events: u64,
    /// Tags written.
    pub tags: u64,
    /// Tags under the 0.3 floor, not written.
    pub below_floor: u64,
    /// Lines that could not be read as an envelope with a `topic`.
    pub malformed: u64,
    pub seconds: f64,
}

impl TagSummary {
    pub fn events_per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.events as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// Only the subject: the rest of the line is read by the envelope decoder.
#[derive(Deserialize)]
struct TopicOnly<'a> {
    #[serde(borrow)]
    topic: Option<Cow<'a, str>>,
}

/// Reads one envelope per line (`topic` = subject), tags it with the daemon's code path and
/// writes one compact JSON object per tag, in input order. Malformed lines are reported on
/// `err` with their line number and skipped; a one-line summary ends `err`.
pub fn run_tag(
    options: &EngineOptions,
    input: impl BufRead,
    out: impl Write,
    err: impl Write,
) -> Result<TagSummary, CommandError> {
    let tagger = Tagger::new(options)?;
    tag_with(tagger, input, out, err)
}

/// [`run_tag`] with an engine already built (benchmarks, tests).
pub fn tag_with(
    mut tagger: Tagger,
    input: impl BufRead,
    out: impl Write,
    mut err: impl Write,
) -> Result<TagSummary, CommandError> {
    for problem in tagger.problems() {
        writeln!(err, "{problem}")?;
    }
    for warning in tagger.warnings() {
        writeln!(err, "{warning}")?;
    }
    let mut out = std::io::BufWriter::new(out);
    let mut summary = TagSummary::default();
    let started = Instant::now();
    for (index, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let msg = match parse_line(&line) {
            Ok(msg) => msg,
            Err(reason) => {
                summary.malformed += 1;
                writeln!(err, "line {}: {reason}", index + 1)?;
                continue;
            }
        };
        let tagged = tagger.tag_message(&msg);
        summary.events += 1;
        summary.tagger_events += tagged.events as u64;
        summary.below_floor += tagged.below_floor.len() as u64;
        for tag in &tagged.tags {
            serde_json::to_writer(&mut out, tag).map_err(std::io::Error::from)?;
            out.write_all(b"\n")?;
            summary.tags += 1;
        }
    }
    out.flush()?;
    summary.seconds = started.elapsed().as_secs_f64();
    writeln!(
        err,
        "tag: {} events ({} tagger events), {} tags, {} malformed, {:.3} s, {:.0} events/s",
        summary.events,
        summary.tagger_events,
        summary.tags,
        summary.malformed,
        summary.seconds,
        summary.events_per_second()
    )?;
    Ok(summary)
}

/// One JSON line → the message the daemon would have received.
pub fn parse_line(line: &str) -> Result<Inbound, String> {
    let topic = serde_json::from_str::<TopicOnly<'_>>(line)
        .map_err(|e| format!("not a JSON object: {e}"))?
        .topic
        .filter(|t| !t.is_empty())
        .ok_or("no string `topic` member")?
        .into_owned();
    let envelope = Envelope::decode(line.as_bytes()).map_err(|e| e.to_string())?;
    Ok(Inbound {
        subject: topic,
        envelope,
    })
}

/// Loads and compiles everything, prints a summary on `out` and each problem and warning on
/// `err` as `FILE: rule ID: message` (`FILE: rule ID: warning: message`). Exit status: 0 when
/// every file loaded (warnings allowed), 1 otherwise.
pub fn run_check_rules(options: &EngineOptions, mut out: impl Write, mut err: impl Write) -> i32 {
    let tagger = match Tagger::new(options) {
        Ok(t) => t,
        Err(e) => {
            let _ = writeln!(err, "{e}");
            return 1;
        }
    };
    let (by_kind, by_owner) = tagger.summary();
    let source = if options.rules_dirs.is_empty() && !options.no_builtin_rules {
        "built-in pack".to_owned()
    } else {
        let dirs: Vec<String> = options
            .rules_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        dirs.join(", ")
    };
    let join = |m: Vec<String>| {
        if m.is_empty() {
            "-".to_owned()
        } else {
            m.join(", ")
        }
    };
    let _ = writeln!(out, "{} rules loaded from {source}", tagger.rules().len());
    let _ = writeln!(
        out,
        "by source kind: {}",
        join(by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect())
    );
    let _ = writeln!(
        out,
        "by lifter kind: {}",
        join(by_owner.iter().map(|(k, n)| format!("{k} {n}")).collect())
    );
    for problem in tagger.problems() {
        let _ = writeln!(err, "{problem}");
    }
    for warning in tagger.warnings() {
        let _ = writeln!(err, "{warning}");
    }
    let _ = writeln!(
        out,
        "{} problems, {} warnings",
        tagger.problems().len(),
        tagger.warnings().len()
    );
    // Warnings (rules that can never fire) do not fail the check.
    i32::from(!tagger.problems().is_empty())
}
