//! Log set-up: `RUST_LOG` decides, else the caller's default level, always to stderr.
//!
//! Under systemd (`JOURNAL_STREAM` set) lines carry a `<N>` syslog priority prefix and no
//! timestamp, so journald files them at the right level and does not stamp them twice.
//!
//! Messages quote what attackers sent (a `requested_by`, an e-mail's id, a payload member), so
//! every line is written with its control characters escaped: a newline in a payload cannot
//! start a forged line, and under journald cannot forge a `<0>` (emergency) priority. They are
//! cut to length as well: a string from the bus is quoted at most [`MAX_QUOTED`] bytes long
//! ([`clip`]), and a whole record at most [`MAX_RECORD`], so that one message cannot write a
//! megabyte of log.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use env_logger::{Builder, Env, WriteStyle};

pub fn init(default: log::LevelFilter) {
    let default = default.as_str().to_ascii_lowercase();
    let mut builder = Builder::from_env(Env::default().default_filter_or(default));
    builder.write_style(WriteStyle::Auto);
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder.format(|out, record| {
            writeln!(
                out,
                "<{}>{}: {}",
                syslog_priority(record.level()),
                record.target(),
                escape_controls(&clip_record(record.args().to_string()))
            )
        });
    } else {
        // env_logger's own layout, `[time LEVEL target] message`, with the message escaped.
        builder.format(|out, record| {
            let style = out.default_level_style(record.level());
            writeln!(
                out,
                "[{} {style}{:<5}{style:#} {}] {}",
                out.timestamp_seconds(),
                record.level(),
                record.target(),
                escape_controls(&clip_record(record.args().to_string()))
            )
        });
    }
    // A second init (tests) is harmless; keep the first logger.
    let _ = builder.try_init();
}

fn syslog_priority(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}

/// The longest a string from a message is quoted in a log line or a report, in bytes: enough
/// to recognise an id, a subject or a requester, not enough to flood the log.
pub const MAX_QUOTED: usize = 200;

/// The longest a log record is, in bytes: a backstop for text no call site clipped.
pub const MAX_RECORD: usize = 4096;

/// `text` cut to at most `max` bytes (on a character boundary), with `… (N bytes)` saying how
/// long it was; text that fits is returned as it is.
pub fn clip_to(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}… ({} bytes)", &text[..end], text.len()))
}

/// `text` (a string from the bus) cut to [`MAX_QUOTED`] bytes for a log line or a report.
pub fn clip(text: &str) -> Cow<'_, str> {
    clip_to(text, MAX_QUOTED)
}

/// [`clip`] for a string that is kept: cut in place, so what is kept is bounded too.
pub fn clip_owned(text: String) -> String {
    clip_owned_to(text, MAX_QUOTED)
}

fn clip_record(record: String) -> String {
    clip_owned_to(record, MAX_RECORD)
}

/// [`clip_to`] without a copy of text that fits.
fn clip_owned_to(text: String, max: usize) -> String {
    match clip_to(&text, max) {
        Cow::Borrowed(_) => text,
        Cow::Owned(cut) => cut,
    }
}

/// `text` with every control character written as an escape (`\n`, `\r`, `\t`, `\u{1b}`), so
/// that one log record is always one line. Text without any is returned as it is.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Lets one of a kind of message through per period and counts the rest, for warnings a
/// flood would otherwise repeat once per message (the NATS client's, for one).
#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    state: Mutex<Option<(Instant, u64)>>,
}

impl Throttle {
    pub const fn new(every: Duration) -> Throttle {
        Throttle {
            every,
            state: Mutex::new(None),
        }
    }

    /// `Some(n)` when this one is to be logged, `n` being how many were held back since the
    /// last one logged; `None` when it is to be counted only.
    pub fn pass(&self) -> Option<u64> {
        self.pass_at(Instant::now())
    }

    fn pass_at(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match *state {
            Some((since, ref mut held)) if now.duration_since(since) < self.every => {
                *held += 1;
                None
            }
            Some((_, held)) => {
                *state = Some((now, 0));
                Some(held)
            }
            None => {
                *state = Some((now, 0));
                Some(0)
            }
        }
    }

    pub fn period(&self) -> Duration {
        self.every
    }

    /// What a logged line adds about those held back since the last: ` (and 12 more <what>
    /// in the last 10 s)`, or nothing.
    pub fn held_back_note(&self, held_back: u64, what: &str) -> String {
        if held_back == 0 {
            return String::new();
        }
        format!(
            " (and {held_back} more {what} in the last {} s)",
            self.every.as_secs()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttle_lets_one_through_per_period_and_counts_the_rest() {
        let throttle = Throttle::new(Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(throttle.pass_at(start), Some(0));
        for ms in 1..=500 {
            assert_eq!(throttle.pass_at(start + Duration::from_millis(ms)), None);
        }
        assert_eq!(throttle.pass_at(start + Duration::from_secs(11)), Some(500));
        assert_eq!(throttle.pass_at(start + Duration::from_secs(12)), None);
    }

    #[test]
    fn long_text_is_clipped_on_a_character_boundary_and_says_how_long_it_was() {
        assert!(matches!(clip("short"), Cow::Borrowed("short")));
        let at_limit = "x".repeat(MAX_QUOTED);
        assert!(matches!(clip(&at_limit), Cow::Borrowed(_)));
        let long = "é".repeat(MAX_QUOTED);
        let cut = clip(&long);
        let (kept, note) = cut.split_once('…').unwrap();
        assert_eq!(kept, "é".repeat(MAX_QUOTED / 2));
        assert_eq!(note, format!(" ({} bytes)", long.len()));
        // A boundary inside a character moves back to its start.
        assert_eq!(clip_to("aé", 2), "a… (3 bytes)");
        assert_eq!(
            clip_owned("x".repeat(1 << 20)).len(),
            MAX_QUOTED + "… (1048576 bytes)".len()
        );
        assert!(clip_record("y".repeat(1 << 20)).len() < MAX_RECORD + 32);
    }

    #[test]
    fn a_record_stays_one_line_whatever_it_quotes() {
        let forged = "ops\n<0>ttp_worker: the disk is on fire\r\x1b[31m\tx";
        let escaped = escape_controls(forged);
        assert_eq!(
            escaped,
            "ops\\n<0>ttp_worker: the disk is on fire\\r\\u{1b}[31m\\tx"
        );
        assert!(!escaped.chars().any(char::is_control));
        assert!(matches!(escape_controls("plain — text"), Cow::Borrowed(_)));
    }
}
