//! `ttp-worker check-rules`: loads and compiles every rule, as the daemon would at start, and
//! says what loaded and what did not, so that a rule pack can be checked before deployment.

use std::io::{self, Write};

use super::Failure;
use crate::tagging::{EngineOptions, Tagger};

/// What the check found; the exit status follows from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every file loaded. Warnings (rules that can never fire) do not fail the check.
    Loaded { warnings: usize },
    /// The engine was built, but some files or rules did not load.
    Problems { problems: usize, warnings: usize },
    /// The engine could not be built at all; why is the one line on `err`.
    Unbuildable,
}

impl Verdict {
    /// `true` when the rules can be deployed as they are.
    pub fn passed(self) -> bool {
        matches!(self, Verdict::Loaded { .. })
    }
}

/// The check's report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot write the output: {0}")]
    Write(#[source] io::Error),
}

impl Failure for Error {
    fn closed_pipe(&self) -> bool {
        let Error::Write(e) = self;
        super::is_closed_pipe(e)
    }
}

/// Loads and compiles everything, prints a summary on `out` and each problem and warning on
/// `err` as `FILE: rule ID: message` (`FILE: rule ID: warning: message`).
pub fn run(
    options: &EngineOptions,
    mut out: impl Write,
    mut err: impl Write,
) -> Result<Verdict, Error> {
    let tagger = match Tagger::new(options) {
        Ok(t) => t,
        Err(e) => {
            writeln!(err, "{e}").map_err(Error::Write)?;
            return Ok(Verdict::Unbuildable);
        }
    };
    report(options, &tagger, &mut out, &mut err).map_err(Error::Write)?;
    let (mut problems, warnings) = (tagger.problems().len(), tagger.warnings().len());
    if let Err(empty) = tagger.require_rules() {
        writeln!(err, "{empty}").map_err(Error::Write)?;
        problems += 1;
    }
    Ok(if problems == 0 {
        Verdict::Loaded { warnings }
    } else {
        Verdict::Problems { problems, warnings }
    })
}

fn report(
    options: &EngineOptions,
    tagger: &Tagger,
    out: &mut impl Write,
    err: &mut impl Write,
) -> io::Result<()> {
    let (by_kind, by_owner) = tagger.summary();
    let source = options.rule_sources().join(", ");
    let join = |m: Vec<String>| {
        if m.is_empty() {
            "-".to_owned()
        } else {
            m.join(", ")
        }
    };
    writeln!(out, "{} rules loaded from {source}", tagger.rules().len())?;
    writeln!(
        out,
        "by source kind: {}",
        join(by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect())
    )?;
    writeln!(
        out,
        "by lifter kind: {}",
        join(by_owner.iter().map(|(k, n)| format!("{k} {n}")).collect())
    )?;
    for problem in tagger.problems() {
        writeln!(err, "{problem}")?;
    }
    for warning in tagger.warnings() {
        writeln!(err, "{warning}")?;
    }
    writeln!(
        out,
        "{} problems, {} warnings",
        tagger.problems().len(),
        tagger.warnings().len()
    )?;
    // Where a pack goes after it loads: trying it on events. Which tags `tag` prints is the
    // one choice its output leaves, so the hint names it.
    writeln!(
        out,
        "try it on events with `ttp-worker tag` and the same rule options: it prints each tag \
         uuid once, as a store keeps it (--all: every occurrence)"
    )?;
    out.flush()
}
