//! `ttp-worker tag`: tags envelopes read one per line, offline, with the daemon's code path,
//! so that a rule pack can be tried on a corpus without a bus or a store.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::Failure;
use crate::envelope::jsonl::{LineMessage, decode_line};
use crate::tagging::{EngineError, EngineOptions, Tagger, Tally};

/// Why a `tag` run stopped. Reads and writes are told apart so that a closed output pipe can
/// end the run quietly while a failing input still says so.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input file named on the command line: a usage error, reported before any work.
    #[error("cannot read {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("cannot read the input: {0}")]
    Read(#[source] io::Error),
    #[error("cannot write the output: {0}")]
    Write(#[source] io::Error),
    #[error("cannot start the tagging thread: {0}")]
    Spawn(#[source] io::Error),
}

impl Failure for Error {
    fn closed_pipe(&self) -> bool {
        matches!(self, Error::Write(e) if super::is_closed_pipe(e))
    }

    fn unreadable_input(&self) -> bool {
        matches!(self, Error::Read(_))
    }
}

/// The input named by `--input`: stdin when absent or `-`.
pub fn open_input(path: Option<&Path>) -> Result<Box<dyn BufRead>, Error> {
    match path {
        None => Ok(Box::new(io::stdin().lock())),
        Some(path) if path == Path::new("-") => Ok(Box::new(io::stdin().lock())),
        // A directory opens, and fails only at the first read, far from its name.
        Some(path) => match File::open(path).and_then(|file| {
            if file.metadata()?.is_dir() {
                return Err(io::Error::new(
                    io::ErrorKind::IsADirectory,
                    "a directory, not a file of JSON lines",
                ));
            }
            Ok(file)
        }) {
            Ok(file) => Ok(Box::new(BufReader::new(NamedFile {
                file,
                path: path.to_owned(),
            }))),
            Err(source) => Err(Error::Open {
                path: path.to_owned(),
                source,
            }),
        },
    }
}

/// An input file whose read errors name it: a disk error in the middle of a long file says
/// which file, as the error at opening it does.
struct NamedFile {
    file: File,
    path: PathBuf,
}

impl io::Read for NamedFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file
            .read(buf)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", self.path.display())))
    }
}

/// Which tags a run prints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Listing {
    /// Each tag UUID once, at its first occurrence: what a store would keep (it ignores a row
    /// whose UUID it already has).
    #[default]
    FirstPerUuid,
    /// Every tag the engine produced, a UUID again each time an event gives it again
    /// (`--all`).
    All,
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
    /// Tags not written because their UUID was written before ([`Listing::FirstPerUuid`]).
    pub repeats: u64,
    /// Tags under the 0.3 floor, not written.
    pub below_floor: u64,
    /// Lines that could not be read as an envelope with a `topic`.
    pub malformed: u64,
    /// Lifter failures (each distinct problem is logged once, every one counted).
    pub lifter_warnings: u64,
    /// Of those, tagger events that lost every tag to a rule's evidence (docs/tagging.md §9.3).
    pub events_discarded: u64,
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

/// Reads one envelope per line (`topic` = subject), tags it with the daemon's code path and
/// writes one compact JSON object per tag, in input order (`listing` says whether a UUID seen
/// before is written again). Malformed lines are reported on `err` with their line number and
/// skipped; a one-line summary ends `err`.
///
/// The engine is built on the tagging thread while this one starts reading; nothing is
/// written before it is built, so a failure to build it is the only thing reported.
pub fn run(
    options: &EngineOptions,
    listing: Listing,
    input: impl BufRead,
    out: impl Write,
    err: impl Write,
) -> Result<TagSummary, Error> {
    tag_stream(|| Tagger::new(options), listing, input, out, err)
}

/// [`run`] with an engine already built (benchmarks, tests).
pub fn tag_with(
    tagger: Tagger,
    listing: Listing,
    input: impl BufRead,
    out: impl Write,
    err: impl Write,
) -> Result<TagSummary, Error> {
    tag_stream(move || Ok(tagger), listing, input, out, err)
}

/// Lines decoded per batch handed to the tagging thread (fewer when the batch fills
/// [`BATCH_BYTES`] first).
const BATCH_LINES: usize = 256;
const BATCH_BYTES: usize = 1 << 18;
/// Batches in flight each way between the two threads: enough to keep reading while the
/// engine is being built.
const BATCH_QUEUE: usize = 16;

/// Decoded messages on their way to the tagging thread.
struct Batch(Vec<LineMessage>);

/// What the tagging thread gives back for a batch: its tags as JSON lines (the tags
/// themselves are freed where they were allocated), and the messages, to be freed by the
/// thread that allocated them.
struct Tagged {
    json: Vec<u8>,
    tags: u64,
    messages: Vec<LineMessage>,
}

/// What the tagging thread counted over the run.
#[derive(Default)]
struct Counted {
    tally: Tally,
    /// Tags left out as repeats of a UUID already written.
    repeats: u64,
}

/// The engine's load report (problems, then warnings), or why it could not be built.
type Ready = Result<Vec<String>, EngineError>;

/// Two threads: the calling one reads and decodes lines, and writes the JSON lines that come
/// back; the other builds the engine, then tags the messages strictly in input order (anchor
/// learning depends on it) and writes their tags as JSON lines. Output order and content are
/// those of a single thread.
fn tag_stream(
    engine: impl FnOnce() -> Result<Tagger, EngineError> + Send,
    listing: Listing,
    mut input: impl BufRead,
    out: impl Write,
    mut err: impl Write,
) -> Result<TagSummary, Error> {
    let mut out = std::io::BufWriter::with_capacity(1 << 16, out);
    let mut summary = TagSummary::default();
    let started = Instant::now();
    let (counts, tags) = std::thread::scope(|scope| -> Result<(Counted, u64), Error> {
        let (ready_tx, ready) = crossbeam_channel::bounded::<Ready>(1);
        let (to_tagger, batches) = crossbeam_channel::bounded::<Batch>(BATCH_QUEUE);
        let (results, from_tagger) = crossbeam_channel::bounded::<Tagged>(BATCH_QUEUE);
        let tagging = std::thread::Builder::new()
            .name("tag".into())
            .spawn_scoped(scope, move || {
                let mut tagger = match engine() {
                    Ok(tagger) => tagger,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return Counted::default();
                    }
                };
                let report = tagger.problems().iter().chain(tagger.warnings());
                let _ = ready_tx.send(Ok(report.map(ToString::to_string).collect()));
                tag_batches(&mut tagger, listing, &batches, &results)
            })
            .map_err(Error::Spawn)?;
        // Line reports wait until the engine's own report is out (and say nothing if it
        // cannot be built).
        let mut held: Option<Vec<String>> = Some(Vec::new());
        fn release(
            err: &mut impl Write,
            report: Ready,
            held: &mut Option<Vec<String>>,
        ) -> Result<(), Error> {
            let lines = held.take().unwrap_or_default();
            for line in report? {
                writeln!(err, "{line}").map_err(Error::Write)?;
            }
            for line in lines {
                writeln!(err, "{line}").map_err(Error::Write)?;
            }
            Ok(())
        }
        let write = |tagged: Tagged, out: &mut std::io::BufWriter<_>| -> std::io::Result<u64> {
            out.write_all(&tagged.json)?;
            drop(tagged.messages);
            Ok(tagged.tags)
        };
        let mut tags = 0;
        let mut line = Vec::with_capacity(1 << 12);
        let mut number = 0usize;
        let mut at_end = false;
        while !at_end {
            let mut batch = Vec::with_capacity(BATCH_LINES);
            let mut bytes = 0;
            while batch.len() < BATCH_LINES && bytes < BATCH_BYTES {
                line.clear();
                if input.read_until(b'\n', &mut line).map_err(Error::Read)? == 0 {
                    at_end = true;
                    break;
                }
                number += 1;
                bytes += line.len();
                match decode_line(&line) {
                    Ok(Some(message)) => batch.push(message),
                    Ok(None) => {}
                    Err(reason) => {
                        summary.malformed += 1;
                        let report = format!("line {number}: {reason}");
                        match &mut held {
                            Some(lines) => lines.push(report),
                            None => writeln!(err, "{report}").map_err(Error::Write)?,
                        }
                    }
                }
            }
            if held.is_some()
                && let Ok(report) = ready.try_recv()
            {
                release(&mut err, report, &mut held)?;
            }
            if batch.is_empty() {
                continue;
            }
            // Hand the batch over; while the tagger is busy, write what it has finished.
            let mut pending = Some(Batch(batch));
            let mut tagger_gone = false;
            while let Some(batch) = pending.take() {
                while let Ok(tagged) = from_tagger.try_recv() {
                    tags += write(tagged, &mut out).map_err(Error::Write)?;
                }
                match to_tagger.try_send(batch) {
                    Ok(()) => {}
                    Err(crossbeam_channel::TrySendError::Full(back)) => match from_tagger.recv() {
                        Ok(tagged) => {
                            tags += write(tagged, &mut out).map_err(Error::Write)?;
                            pending = Some(back);
                        }
                        Err(_) => tagger_gone = true,
                    },
                    Err(crossbeam_channel::TrySendError::Disconnected(_)) => tagger_gone = true,
                }
            }
            if tagger_gone {
                break; // the engine failed to build, or the thread panicked: see below
            }
        }
        drop(to_tagger);
        if held.is_some() {
            // No report: the thread panicked before sending one, and the join says why.
            if let Ok(report) = ready.recv() {
                release(&mut err, report, &mut held)?;
            }
        }
        for tagged in &from_tagger {
            tags += write(tagged, &mut out).map_err(Error::Write)?;
        }
        match tagging.join() {
            Ok(counts) => Ok((counts, tags)),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })?;
    out.flush().map_err(Error::Write)?;
    let Counted { tally, repeats } = counts;
    summary.events = tally.messages;
    summary.tagger_events = tally.events;
    summary.tags = tags;
    summary.repeats = repeats;
    summary.below_floor = tally.below_floor;
    summary.lifter_warnings = tally.lifter_warnings;
    summary.events_discarded = tally.events_discarded;
    summary.seconds = started.elapsed().as_secs_f64();
    let repeats = match listing {
        Listing::FirstPerUuid => format!(" ({} repeated uuids left out)", summary.repeats),
        Listing::All => String::new(),
    };
    writeln!(
        err,
        "tag: {} events ({} tagger events), {} tags{repeats}, {} lifter warnings \
         ({} events discarded), {} malformed, {:.3} s, {:.0} events/s",
        summary.events,
        summary.tagger_events,
        summary.tags,
        summary.lifter_warnings,
        summary.events_discarded,
        summary.malformed,
        summary.seconds,
        summary.events_per_second()
    )
    .map_err(Error::Write)?;
    if tally.messages_cut > 0 {
        writeln!(
            err,
            "tag: {} events were over the limits on one message; not tagged: {}",
            tally.messages_cut, tally.cuts
        )
        .map_err(Error::Write)?;
    }
    Ok(summary)
}

/// The tagging thread: batches in, in order; their tags out. Ends when the batches end or
/// nobody takes the results any more.
fn tag_batches(
    tagger: &mut Tagger,
    listing: Listing,
    batches: &crossbeam_channel::Receiver<Batch>,
    results: &crossbeam_channel::Sender<Tagged>,
) -> Counted {
    let mut counts = Counted::default();
    // UUIDs written so far, as numbers: 16 bytes each, kept only when repeats are left out.
    let mut written: HashSet<u128> = HashSet::new();
    for Batch(mut messages) in batches {
        let mut json = Vec::with_capacity(1 << 16);
        let mut tags = 0;
        for message in &mut messages {
            let tagged = tagger.tag_payload_in_place(
                &message.subject,
                &message.envelope_type,
                &mut message.payload,
            );
            counts.tally.add(&tagged);
            for tag in &tagged.tags {
                if listing == Listing::FirstPerUuid && !written.insert(uuid_number(&tag.uuid)) {
                    counts.repeats += 1;
                    continue;
                }
                tags += 1;
                tag.write_json(&mut json);
                json.push(b'\n');
            }
        }
        if results
            .send(Tagged {
                json,
                tags,
                messages,
            })
            .is_err()
        {
            break;
        }
    }
    counts
}

/// A tag UUID as a number; the engine only makes well-formed ones.
fn uuid_number(text: &str) -> u128 {
    uuid::Uuid::try_parse(text).map_or(0, |uuid| uuid.as_u128())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Many batches in flight (the queues fill up both ways): the output is, byte for byte,
    /// what tagging the lines one by one on this thread gives, and malformed lines are
    /// reported with their numbers.
    #[test]
    fn the_tagging_thread_keeps_input_order() {
        let mut input = String::new();
        let lines = BATCH_LINES * BATCH_QUEUE * 2 + 7;
        for n in 0..lines {
            if n % 1000 == 999 {
                input.push_str("not json\n");
                continue;
            }
            // Alternating IPs, each first seen with its UUID: learning depends on the order. Each
            // session comes twice, so that its tags' UUIDs repeat.
            input.push_str(&format!(
                "{{\"topic\":\"attacker.session.ended\",\"payload\":{{\"session_id\":\"s{}\",                 \"attacker_ip\":\"10.0.{}.{}\",\"attacker_uuid\":{},\"commands\":[\"whoami\",\"id\"]}}}}\n",
                n / 2,
                n / 2 % 7,
                n / 2 % 5,
                if n % 3 == 0 { format!("\"U{}\"", n % 11) } else { "null".into() }
            ));
        }
        let tagger = || Tagger::new(&EngineOptions::default()).unwrap_or_else(|e| panic!("{e}"));
        let mut every = Vec::new();
        let mut first = Vec::new();
        let mut written = HashSet::new();
        let mut one_by_one = tagger();
        for line in input.lines() {
            if let Ok(Some(m)) = decode_line(line.as_bytes()) {
                let tagged = one_by_one.tag_payload(&m.subject, &m.envelope_type, &m.payload);
                for tag in &tagged.tags {
                    tag.write_json(&mut every);
                    every.push(b'\n');
                    if written.insert(tag.uuid.clone()) {
                        tag.write_json(&mut first);
                        first.push(b'\n');
                    }
                }
            }
        }
        for (listing, want) in [(Listing::All, &every), (Listing::FirstPerUuid, &first)] {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let summary = tag_with(tagger(), listing, input.as_bytes(), &mut out, &mut err)
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(summary.tags > 1000, "{summary:?}");
            assert_eq!(summary.malformed, (lines / 1000) as u64);
            assert!(out == *want, "outputs differ ({listing:?})");
            let err = String::from_utf8_lossy(&err);
            assert!(
                err.contains("line 1000: ") && err.contains("line 3000: "),
                "{err}"
            );
        }
        assert!(first.len() < every.len());
    }

    /// An engine that cannot be built is the only thing reported, although reading started.
    #[test]
    fn an_engine_that_fails_to_build_stops_everything() {
        let options = EngineOptions {
            rules_dirs: vec!["/no/such/rules/dir".into()],
            ..EngineOptions::default()
        };
        let input = "not json\n".repeat(BATCH_LINES * 3)
            + "{\"topic\":\"attacker.observed\",\"payload\":{\"attacker_ip\":\"1.2.3.4\"}}\n";
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let result = run(
            &options,
            Listing::default(),
            input.as_bytes(),
            &mut out,
            &mut err,
        );
        assert!(
            matches!(result, Err(Error::Engine(EngineError::RulesDir { .. }))),
            "{result:?}"
        );
        assert!(out.is_empty() && err.is_empty());
    }
}
