//! Library side of the `tag` and `check-rules` commands: `main.rs` only parses flags and
//! calls these, so tests drive exactly what users run.

use std::io::{BufRead, Write};
use std::time::Instant;

use serde::de::{
    Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde_json::{Map, Value};

use super::py::truthy;
use super::{EngineError, EngineOptions, Tagger, Tally};
use crate::envelope::{DecodeError, Envelope, Inbound, json_type_name};

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

/// Reads one envelope per line (`topic` = subject), tags it with the daemon's code path and
/// writes one compact JSON object per tag, in input order. Malformed lines are reported on
/// `err` with their line number and skipped; a one-line summary ends `err`.
///
/// The engine is built on the tagging thread while this one starts reading; nothing is
/// written before it is built, so a failure to build it is the only thing reported.
pub fn run_tag(
    options: &EngineOptions,
    input: impl BufRead,
    out: impl Write,
    err: impl Write,
) -> Result<TagSummary, CommandError> {
    tag_stream(|| Tagger::new(options), input, out, err)
}

/// [`run_tag`] with an engine already built (benchmarks, tests).
pub fn tag_with(
    tagger: Tagger,
    input: impl BufRead,
    out: impl Write,
    err: impl Write,
) -> Result<TagSummary, CommandError> {
    tag_stream(move || Ok(tagger), input, out, err)
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

/// The engine's load report (problems, then warnings), or why it could not be built.
type Ready = Result<Vec<String>, EngineError>;

/// Two threads: the calling one reads and decodes lines, and writes the JSON lines that come
/// back; the other builds the engine, then tags the messages strictly in input order (anchor
/// learning depends on it) and writes their tags as JSON lines. Output order and content are
/// those of a single thread.
fn tag_stream(
    engine: impl FnOnce() -> Result<Tagger, EngineError> + Send,
    mut input: impl BufRead,
    out: impl Write,
    mut err: impl Write,
) -> Result<TagSummary, CommandError> {
    let mut out = std::io::BufWriter::with_capacity(1 << 16, out);
    let mut summary = TagSummary::default();
    let started = Instant::now();
    let (counts, tags) = std::thread::scope(|scope| -> Result<(Tally, u64), CommandError> {
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
                        return Tally::default();
                    }
                };
                let report = tagger.problems().iter().chain(tagger.warnings());
                let _ = ready_tx.send(Ok(report.map(ToString::to_string).collect()));
                tag_batches(&mut tagger, &batches, &results)
            })?;
        // Line reports wait until the engine's own report is out (and say nothing if it
        // cannot be built).
        let mut held: Option<Vec<String>> = Some(Vec::new());
        fn release(
            err: &mut impl Write,
            report: Ready,
            held: &mut Option<Vec<String>>,
        ) -> Result<(), CommandError> {
            let lines = held.take().unwrap_or_default();
            for line in report? {
                writeln!(err, "{line}")?;
            }
            for line in lines {
                writeln!(err, "{line}")?;
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
                if input.read_until(b'\n', &mut line)? == 0 {
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
                            None => writeln!(err, "{report}")?,
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
                    tags += write(tagged, &mut out)?;
                }
                match to_tagger.try_send(batch) {
                    Ok(()) => {}
                    Err(crossbeam_channel::TrySendError::Full(back)) => match from_tagger.recv() {
                        Ok(tagged) => {
                            tags += write(tagged, &mut out)?;
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
            tags += write(tagged, &mut out)?;
        }
        match tagging.join() {
            Ok(counts) => Ok((counts, tags)),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })?;
    out.flush()?;
    summary.events = counts.messages;
    summary.tagger_events = counts.events;
    summary.tags = tags;
    summary.below_floor = counts.below_floor;
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

/// The tagging thread: batches in, in order; their tags out. Ends when the batches end or
/// nobody takes the results any more.
fn tag_batches(
    tagger: &mut Tagger,
    batches: &crossbeam_channel::Receiver<Batch>,
    results: &crossbeam_channel::Sender<Tagged>,
) -> Tally {
    let mut counts = Tally::default();
    for Batch(mut messages) in batches {
        let mut json = Vec::with_capacity(1 << 16);
        let mut tags = 0;
        for message in &mut messages {
            let tagged = tagger.tag_payload_in_place(
                &message.subject,
                &message.envelope_type,
                &mut message.payload,
            );
            counts.add(&tagged);
            tags += tagged.tags.len() as u64;
            for tag in &tagged.tags {
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

/// One input line of the `tag` command, as far as tagging reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct LineMessage {
    /// The line's `topic`: the subject the message would have arrived on.
    pub subject: String,
    /// The envelope `type` (`""` when absent or not a string).
    pub envelope_type: String,
    /// The envelope payload, decoded as the daemon decodes it (a falsy payload is `{}`).
    pub payload: Map<String, Value>,
}

/// Decodes one input line in a single pass (trailing `\n`/`\r\n` allowed). `Ok(None)` for a
/// blank line; `Err` says why the line is not an envelope with a `topic`.
pub fn decode_line(line: &[u8]) -> Result<Option<LineMessage>, String> {
    let text = std::str::from_utf8(line).map_err(|_| DecodeError::NotUtf8.to_string())?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    let raw: RawLine = serde_json::from_str(text).map_err(|e| format!("not a JSON object: {e}"))?;
    let subject = raw
        .topic
        .filter(|t| !t.is_empty())
        .ok_or("no string `topic` member")?;
    let payload = match raw.payload {
        None => Map::new(),
        Some(Value::Object(map)) => map,
        // DECNET writes `payload or {}`: every falsy payload is an empty one.
        Some(other) if !truthy(&other) => Map::new(),
        Some(other) => {
            return Err(DecodeError::PayloadNotAnObject(json_type_name(&other)).to_string());
        }
    };
    Ok(Some(LineMessage {
        subject,
        envelope_type: raw.kind.unwrap_or_default(),
        payload,
    }))
}

/// The members of an envelope line that tagging reads; the others are skipped unparsed. A
/// member given twice keeps its last value, as when the daemon decodes the envelope.
struct RawLine {
    topic: Option<String>,
    kind: Option<String>,
    payload: Option<Value>,
}

enum Member {
    Topic,
    Type,
    Payload,
    Other,
}

impl<'de> Deserialize<'de> for Member {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Member, D::Error> {
        struct MemberVisitor;
        impl Visitor<'_> for MemberVisitor {
            type Value = Member;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a member name")
            }
            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Member, E> {
                Ok(match name {
                    "topic" => Member::Topic,
                    "type" => Member::Type,
                    "payload" => Member::Payload,
                    _ => Member::Other,
                })
            }
        }
        deserializer.deserialize_identifier(MemberVisitor)
    }
}

/// Decodes a JSON value exactly as `serde_json::Value`'s own `Deserialize` does, but sizes
/// every object and array once, from its members, instead of growing it member by member:
/// decoding is most of the `tag` command's reading thread, and growth most of its allocations.
///
/// An object gets room for `spare` more members: the payload keeps one free slot, so that the
/// tagging thread can write a resolved `attacker_uuid` into it without reallocating memory
/// this thread allocated (which takes this thread's allocator lock).
#[derive(Clone, Copy)]
struct ValueSeed {
    spare: usize,
}

const NESTED: ValueSeed = ValueSeed { spare: 0 };
const PAYLOAD: ValueSeed = ValueSeed { spare: 1 };

/// Member lists of the objects and arrays being decoded, one per nesting level, reused.
type Scratch = (Vec<Vec<(String, Value)>>, Vec<Vec<Value>>);

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any valid JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = SCRATCH.with_borrow_mut(|(_, lists)| lists.pop().unwrap_or_default());
        let result = (|| {
            while let Some(item) = seq.next_element_seed(NESTED)? {
                items.push(item);
            }
            Ok(())
        })();
        let mut array = Vec::with_capacity(items.len());
        array.append(&mut items);
        SCRATCH.with_borrow_mut(|(_, lists)| lists.push(items));
        result.map(|()| Value::Array(array))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = SCRATCH.with_borrow_mut(|(maps, _)| maps.pop().unwrap_or_default());
        let result = (|| {
            while let Some(key) = map.next_key::<String>()? {
                let value = map.next_value_seed(NESTED)?;
                members.push((key, value));
            }
            Ok(())
        })();
        // Inserted in order: a repeated key keeps its first place and takes its last value,
        // as in serde_json's own map.
        let mut object = Map::with_capacity(members.len() + self.spare);
        for (key, value) in members.drain(..) {
            object.insert(key, value);
        }
        SCRATCH.with_borrow_mut(|(maps, _)| maps.push(members));
        result.map(|()| Value::Object(object))
    }
}

impl<'de> Deserialize<'de> for RawLine {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<RawLine, D::Error> {
        struct LineVisitor;
        impl<'de> Visitor<'de> for LineVisitor {
            type Value = RawLine;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawLine, A::Error> {
                let mut line = RawLine {
                    topic: None,
                    kind: None,
                    payload: None,
                };
                let string = |v: Value| match v {
                    Value::String(s) => Some(s),
                    _ => None,
                };
                while let Some(member) = map.next_key::<Member>()? {
                    match member {
                        Member::Topic => line.topic = string(map.next_value()?),
                        Member::Type => line.kind = string(map.next_value()?),
                        Member::Payload => line.payload = Some(map.next_value_seed(PAYLOAD)?),
                        Member::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(line)
            }
        }
        deserializer.deserialize_map(LineVisitor)
    }
}

/// Only the subject: the rest of the line is read by the envelope decoder.
#[derive(serde::Deserialize)]
struct TopicOnly<'a> {
    #[serde(borrow)]
    topic: Option<std::borrow::Cow<'a, str>>,
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
    let mut sources: Vec<String> = Vec::new();
    if !options.no_builtin_rules {
        sources.push("built-in pack".to_owned());
    }
    sources.extend(options.rules_dirs.iter().map(|d| d.display().to_string()));
    let source = sources.join(", ");
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

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(line: &str) -> Result<Option<(String, String, Value)>, String> {
        decode_line(line.as_bytes())
            .map(|m| m.map(|m| (m.subject, m.envelope_type, Value::Object(m.payload))))
    }

    #[test]
    fn lines_decode_as_the_daemon_decodes_envelopes() {
        let ok = |line: &str, subject: &str, kind: &str, payload: Value| {
            assert_eq!(
                decoded(line),
                Ok(Some((subject.into(), kind.into(), payload))),
                "{line}"
            );
        };
        ok(
            r#"{"v":1,"id":"x","topic":"a.b","type":"t","ts":"?","payload":{"k":[1,{"z":null}]}}"#,
            "a.b",
            "t",
            serde_json::json!({"k": [1, {"z": null}]}),
        );
        // Last duplicate wins; a non-string type is "", a falsy payload is {}.
        ok(
            "{\"topic\":\"x\",\"payload\":{\"a\":1,\"a\":2},\"topic\":\"y\",\"type\":5}\r\n",
            "y",
            "",
            serde_json::json!({"a": 2}),
        );
        for falsy in ["null", "0", "false", "\"\"", "[]", "{}"] {
            ok(
                &format!(r#"{{"topic":"t","payload":{falsy}}}"#),
                "t",
                "",
                serde_json::json!({}),
            );
        }
        assert_eq!(decoded("  \n"), Ok(None));
        assert_eq!(decoded(""), Ok(None));
    }

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
            // Alternating IPs, each first seen with its UUID: learning depends on the order.
            input.push_str(&format!(
                "{{\"topic\":\"attacker.session.ended\",\"payload\":{{\"session_id\":\"s{n}\",                 \"attacker_ip\":\"10.0.{}.{}\",\"attacker_uuid\":{},\"commands\":[\"whoami\",\"id\"]}}}}\n",
                n % 7,
                n % 5,
                if n % 3 == 0 { format!("\"U{}\"", n % 11) } else { "null".into() }
            ));
        }
        let tagger = || Tagger::new(&EngineOptions::default()).unwrap_or_else(|e| panic!("{e}"));
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let summary = tag_with(tagger(), input.as_bytes(), &mut out, &mut err)
            .unwrap_or_else(|e| panic!("{e}"));
        let mut want = Vec::new();
        let mut one_by_one = tagger();
        for line in input.lines() {
            if let Ok(Some(m)) = decode_line(line.as_bytes()) {
                let tagged = one_by_one.tag_payload(&m.subject, &m.envelope_type, &m.payload);
                for tag in &tagged.tags {
                    tag.write_json(&mut want);
                    want.push(b'\n');
                }
            }
        }
        assert!(summary.tags > 1000, "{summary:?}");
        assert_eq!(summary.malformed, (lines / 1000) as u64);
        assert!(out == want, "outputs differ");
        let err = String::from_utf8_lossy(&err);
        assert!(
            err.contains("line 1000: ") && err.contains("line 3000: "),
            "{err}"
        );
    }

    /// Payloads decode to exactly what `serde_json::Value` gives: member order, repeated
    /// members, numbers of every kind, escapes, nesting.
    #[test]
    fn payloads_decode_as_serde_json_values() {
        let payloads = [
            r#"{"b":1,"a":[],"c":{},"b":2,"d":[{"x":[1,[2,[3]]],"x":null}],"a":"again"}"#,
            r#"{"n":[0,-1,18446744073709551615,-9223372036854775808,1.5,-0.0,1e300,2E-5,10.0]}"#,
            r#"{"s":"a\"b\\c\u00e9\ud83d\ude00\n","t":true,"f":false,"z":null,"":""}"#,
            r#"{"deep":[[[[[[[[[[{"k":[{"k":[]}]}]]]]]]]]]]}"#,
        ];
        for payload in payloads {
            let line = format!(r#"{{"topic":"t","payload":{payload}}}"#);
            let ours = decode_line(line.as_bytes())
                .ok()
                .flatten()
                .map(|m| Value::Object(m.payload));
            let theirs: Value = serde_json::from_str(payload).unwrap_or_default();
            assert_eq!(ours.as_ref(), Some(&theirs), "{payload}");
            assert_eq!(
                ours.map(|v| v.to_string()),
                Some(theirs.to_string()),
                "{payload}"
            );
        }
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
        let result = run_tag(&options, input.as_bytes(), &mut out, &mut err);
        assert!(
            matches!(
                result,
                Err(CommandError::Engine(EngineError::RulesDir { .. }))
            ),
            "{result:?}"
        );
        assert!(out.is_empty() && err.is_empty());
    }

    #[test]
    fn bad_lines_say_why() {
        let err = |line: &[u8]| decode_line(line).err().unwrap_or_default();
        assert!(err(b"not json").starts_with("not a JSON object"));
        assert!(err(b"[1]").starts_with("not a JSON object"));
        assert!(err(b"{\"topic\":\"t\"} x").starts_with("not a JSON object"));
        assert_eq!(err(b"{\"payload\":{}}"), "no string `topic` member");
        assert_eq!(err(b"{\"topic\":5}"), "no string `topic` member");
        assert_eq!(err(b"{\"topic\":\"\"}"), "no string `topic` member");
        assert_eq!(
            err(b"{\"topic\":\"t\",\"payload\":[1]}"),
            "payload is a non-empty array, not an object"
        );
        assert_eq!(err(b"{\"topic\":\"t\xff\"}"), "body is not valid UTF-8");
    }
}
