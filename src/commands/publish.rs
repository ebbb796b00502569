//! `ttp-worker publish`: envelopes from a JSON-lines file onto the bus, each on its topic, so
//! that a running worker can be fed without DECNET and without a NATS command-line tool
//! (Debian's `nats-server` package has none).
//!
//! The input is what `tag` reads; a line that is not an envelope is reported with its number
//! and skipped, as there. What DECNET's envelope has and the line lacks (`v`, `id`, `ts`, an
//! empty `type`) is filled in, so a hand-written line of topic and payload is enough.

use std::io::{self, BufRead, IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Map, Value};

use super::Failure;
use crate::bus::{self, BusError, Hooks};
use crate::config::PublishConfig;
use crate::envelope::jsonl::decode_line;

/// The connection's name on the server (`nats-server` lists it).
const CLIENT_NAME: &str = "ttp-publish";

/// How long the last envelopes may take to leave once all are handed to the client.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("publishing on {subject}: {source}")]
    Publish {
        subject: String,
        #[source]
        source: io::Error,
    },
    #[error("the server did not take the last envelopes within {FLUSH_TIMEOUT:?}: {0}")]
    Flush(#[source] io::Error),
    #[error("cannot read the input: {0}")]
    Read(#[source] io::Error),
    #[error("cannot write the output: {0}")]
    Write(#[source] io::Error),
}

impl Failure for Error {
    fn closed_pipe(&self) -> bool {
        matches!(self, Error::Write(e) if super::is_closed_pipe(e))
    }

    fn unreadable_input(&self) -> bool {
        matches!(self, Error::Read(_))
    }
}

/// What a run did, as its summary line says.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Summary {
    pub published: u64,
    pub malformed: u64,
    pub seconds: f64,
}

/// Connects, publishes every envelope of `input` in order (paced to `config.rate`), reports
/// each malformed line and then the summary on `err`, and flushes before it returns.
pub fn run(
    config: &PublishConfig,
    input: impl BufRead,
    mut err: impl Write,
) -> Result<Summary, Error> {
    let hooks = Hooks {
        name: CLIENT_NAME,
        on_reconnect: Arc::new(|| {}),
        on_disconnect: Arc::new(|| {}),
    };
    let closing = Arc::new(AtomicBool::new(false));
    let connection = bus::dial(
        &config.urls,
        &config.security,
        config.connect_timeout,
        &hooks,
        &closing,
    )?;
    let progress = progress_line();
    let started = Instant::now();
    let mut summary = Summary::default();
    for (index, line) in input.lines().enumerate() {
        let line = line.map_err(Error::Read)?;
        let envelope = match envelope_of(line.as_bytes()) {
            Ok(Some(envelope)) => envelope,
            Ok(None) => continue,
            Err(why) => {
                summary.malformed += 1;
                progress
                    .suspend(|| writeln!(err, "line {}: {why}", index + 1))
                    .map_err(Error::Write)?;
                continue;
            }
        };
        if let Some(rate) = config.rate {
            pace(started, summary.published, rate);
        }
        connection
            .publish(&envelope.subject, &envelope.body)
            .map_err(|source| Error::Publish {
                subject: envelope.subject.clone(),
                source,
            })?;
        summary.published += 1;
        progress.set_position(summary.published);
    }
    connection
        .flush_timeout(FLUSH_TIMEOUT)
        .map_err(Error::Flush)?;
    closing.store(true, std::sync::atomic::Ordering::SeqCst);
    connection.close();
    progress.finish_and_clear();
    summary.seconds = started.elapsed().as_secs_f64();
    writeln!(
        err,
        "publish: {} envelopes published, {} malformed lines skipped, {:.3} s",
        summary.published, summary.malformed, summary.seconds
    )
    .map_err(Error::Write)?;
    Ok(summary)
}

/// A line on the terminal that counts what was published; nothing when stderr is not one
/// (a pipe, a file, a test), so logs and scripts see only the summary.
fn progress_line() -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("publish: {pos} envelopes, {per_sec}, {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar
}

/// Sleeps until the `sent`-th envelope is due at `rate` a second since `started`.
fn pace(started: Instant, sent: u64, rate: f64) {
    let due = started + Duration::from_secs_f64(sent as f64 / rate);
    let now = Instant::now();
    if due > now {
        std::thread::sleep(due - now);
    }
}

/// One envelope, ready to go.
#[derive(Debug, PartialEq)]
struct Outgoing {
    subject: String,
    body: Vec<u8>,
}

/// The envelope a line stands for: the line as it is, with what DECNET's envelope needs and
/// the line lacks filled in. `Ok(None)` for a blank line; `Err` says, as for `tag`, why the
/// line is not an envelope.
fn envelope_of(line: &[u8]) -> Result<Option<Outgoing>, String> {
    // The checks `tag` makes, so that what `tag` refuses is not sent either.
    let Some(message) = decode_line(line)? else {
        return Ok(None);
    };
    let mut envelope: Map<String, Value> =
        serde_json::from_slice(line).map_err(|e| e.to_string())?;
    let missing =
        |envelope: &Map<String, Value>, key: &str| envelope.get(key).is_none_or(|v| v.is_null());
    if missing(&envelope, "v") {
        envelope.insert("v".into(), Value::from(1));
    }
    if missing(&envelope, "id") {
        let id = uuid::Uuid::new_v4().simple().to_string();
        envelope.insert("id".into(), Value::from(id));
    }
    if missing(&envelope, "type") {
        envelope.insert("type".into(), Value::from(""));
    }
    if missing(&envelope, "ts") {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        envelope.insert("ts".into(), Value::from(now));
    }
    let body = serde_json::to_vec(&envelope).map_err(|e| e.to_string())?;
    Ok(Some(Outgoing {
        subject: message.subject,
        body,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(line: &str) -> Map<String, Value> {
        let out = envelope_of(line.as_bytes()).unwrap().unwrap();
        serde_json::from_slice(&out.body).unwrap()
    }

    #[test]
    fn a_line_of_topic_and_payload_becomes_a_whole_envelope() {
        let envelope = filled(r#"{"topic":"attacker.session.ended","payload":{"session_id":"s"}}"#);
        assert_eq!(envelope["v"], 1);
        assert_eq!(envelope["type"], "");
        let id = envelope["id"].as_str().unwrap();
        assert!(
            id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()),
            "{id}"
        );
        assert!(envelope["ts"].as_f64().unwrap() > 1.7e9);
        assert_eq!(envelope["payload"]["session_id"], "s");
    }

    #[test]
    fn what_the_line_has_is_sent_as_it_is() {
        let line = r#"{"v":1,"id":"0123456789abcdef0123456789abcdef","topic":"t","type":"session.ended","ts":1777703010.5,"payload":{}}"#;
        let out = envelope_of(line.as_bytes()).unwrap().unwrap();
        assert_eq!(out.subject, "t");
        assert_eq!(out.body, line.as_bytes());
    }

    #[test]
    fn lines_tag_refuses_are_not_sent() {
        assert_eq!(envelope_of(b"  \n"), Ok(None));
        assert_eq!(
            envelope_of(b"[1]"),
            Err("a JSON object was expected, not an array".to_owned())
        );
        assert_eq!(
            envelope_of(br#"{"payload":{}}"#),
            Err("no string `topic` member".to_owned())
        );
    }
}
