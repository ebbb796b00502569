//! Python `re` patterns, accepted unchanged and matched with Python's `re.search` semantics.
//!
//! The rule packs are written for Python. Each pattern is translated once into the Rust
//! `regex` dialect (docs/tagging.md §7.4): literal braces escaped, `{,n}` spelled `{0,n}`, `\Z` as
//! `\z`, Python's wider `\s`, and `$` that also matches before one trailing newline. Patterns
//! that need look-around or back-references go to `fancy-regex`; all others stay on `regex`,
//! which can then evaluate a whole rule set in one pass.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, LazyLock, Mutex, OnceLock, PoisonError};

/// Why a Python pattern could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad regex {pattern:?}: {reason}")]
pub struct PatternError {
    pub pattern: String,
    pub reason: String,
}

/// A translated pattern: Rust syntax, and whether it needs the backtracking engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translated {
    pub source: String,
    pub fancy: bool,
}

/// How a Python `$` (without MULTILINE) is translated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dollar {
    /// Exact on every text: end of text, or just before one final `\n`.
    Python,
    /// `\z`: exact only on texts that do not end with `\n` (where Python's `$` can only match
    /// at the very end), and never needs the backtracking engine.
    EndOfText,
}

/// A Python pattern, checked at load and compiled on first use. Only whether it matches is
/// asked (`re.search(...) is not None`), which is what lets the translation consume look-ahead
/// tails (docs/tagging.md §7.4).
///
/// Compiling waits for the first search because most patterns are answered by their kind's
/// rule set and never searched on their own: holding every compiled pattern from start-up
/// was 1.4 MiB of the idle daemon's 3 MiB of heap. Clones share the compiled engines.
#[derive(Debug, Clone)]
pub struct PyRegex(Arc<Engines>);

#[derive(Debug)]
struct Engines {
    /// Exact on every text.
    general: LazyEngine,
    /// The [`Dollar::EndOfText`] translation when it differs: used on texts that do not end
    /// with `\n`, which keeps a pattern such as R0018's `(?:\s|$)\b` off the backtracker.
    unterminated: Option<LazyEngine>,
}

/// A translation that compiled once at load (so it compiles again) and is compiled for real
/// when first searched.
#[derive(Debug)]
struct LazyEngine {
    translated: Translated,
    compiled: OnceLock<Engine>,
}

impl LazyEngine {
    /// Compiles `translated` to prove that it can be, then lets the result go.
    fn checked(translated: Translated) -> Result<LazyEngine, String> {
        Engine::new(&translated)?;
        Ok(LazyEngine {
            translated,
            compiled: OnceLock::new(),
        })
    }

    fn is_match(&self, text: &str) -> Result<bool, MatchError> {
        self.compiled
            .get_or_init(|| {
                Engine::new(&self.translated).unwrap_or_else(|reason| {
                    // Unreachable: the same translation compiled in `checked`.
                    log::error!(
                        "regex {:?} no longer compiles: {reason}",
                        self.translated.source
                    );
                    Engine::Never
                })
            })
            .is_match(text)
    }

    fn is_fancy(&self) -> bool {
        self.translated.fancy
    }
}

#[derive(Debug)]
enum Engine {
    Plain(regex_automata::meta::Regex),
    Fancy(fancy_regex::Regex),
    /// Stands in for a translation that failed to compile a second time.
    Never,
}

impl Engine {
    fn new(t: &Translated) -> Result<Engine, String> {
        if t.fancy {
            fancy_regex::Regex::new(&t.source)
                .map(Engine::Fancy)
                .map_err(|e| e.to_string())
        } else {
            regex_automata::meta::Regex::builder()
                .configure(lean_config())
                .build(&t.source)
                .map(Engine::Plain)
                .map_err(|e| e.to_string())
        }
    }

    fn is_match(&self, text: &str) -> Result<bool, MatchError> {
        match self {
            Engine::Plain(r) => Ok(r.is_match(text)),
            Engine::Fancy(r) => r.is_match(text).map_err(|e| MatchError(e.to_string())),
            Engine::Never => Err(MatchError("pattern failed to compile".to_owned())),
        }
    }
}

/// How a rule's own regex is built. Only whether it matches is asked, and it is asked mostly
/// of the texts a rule set cannot answer for: non-ASCII ones, where a Unicode `\b` makes the
/// lazy DFA give up anyway. So no lazy or full DFA, and with them no reverse automaton and no
/// DFA cache: a third of the memory per pattern (a Unicode `(?i)\b...\w` pattern drops from
/// 230 KiB to 85 KiB), while literal prefilters and the bounded backtracker keep short texts
/// fast.
fn lean_config() -> regex_automata::meta::Config {
    regex_automata::meta::Config::new()
        .which_captures(regex_automata::nfa::thompson::WhichCaptures::None)
        .hybrid(false)
        .dfa(false)
}

/// Matching gave up (fancy-regex backtracking limit): counted as a non-match by callers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("regex evaluation failed: {0}")]
pub struct MatchError(pub String);

impl PyRegex {
    pub fn new(pattern: &str) -> Result<PyRegex, PatternError> {
        // Engine messages draw carets over the pattern on several lines; a problem report is one
        // line, so keep the last line (the actual complaint).
        let err = |reason: String| PatternError {
            pattern: pattern.to_owned(),
            reason: reason
                .lines()
                .map(str::trim)
                .rfind(|l| !l.is_empty())
                .unwrap_or("")
                .trim_start_matches("error: ")
                .to_owned(),
        };
        let general = translate(pattern).map_err(err)?;
        let unterminated = translate_with(pattern, Dollar::EndOfText, true).map_err(err)?;
        let unterminated = if unterminated.source == general.source {
            None
        } else {
            Some(LazyEngine::checked(unterminated).map_err(err)?)
        };
        Ok(PyRegex(Arc::new(Engines {
            general: LazyEngine::checked(general).map_err(err)?,
            unterminated,
        })))
    }

    /// [`PyRegex::new`], checked once per process: rule validation, the pattern engine and
    /// the lifters' regex cache all ask for the same patterns, and the check compiles. The
    /// memo holds every distinct pattern text seen (reloads add edited patterns), which rule
    /// packs keep small; a reload shares the engines already compiled.
    pub fn cached(pattern: &str) -> Result<PyRegex, PatternError> {
        type Memo = HashMap<String, Result<PyRegex, PatternError>>;
        static CHECKED: LazyLock<Mutex<Memo>> = LazyLock::new(Mutex::default);
        let memo = || CHECKED.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(hit) = memo().get(pattern) {
            return hit.clone();
        }
        let checked = PyRegex::new(pattern);
        memo().insert(pattern.to_owned(), checked.clone());
        checked
    }

    /// `re.search(pattern, text) is not None`.
    pub fn search(&self, text: &str) -> Result<bool, MatchError> {
        match &self.0.unterminated {
            Some(engine) if !text.ends_with('\n') => engine.is_match(text),
            _ => self.0.general.is_match(text),
        }
    }

    /// Whether matching may need the backtracking engine (and so may give up).
    pub fn is_fancy(&self) -> bool {
        self.0.general.is_fancy()
            || self
                .0
                .unterminated
                .as_ref()
                .is_some_and(LazyEngine::is_fancy)
    }
}

/// Python's `\s` also covers U+001C..U+001F (str.isspace); Rust's does not.
const PY_SPACE: &str = r"\s\x1C-\x1F";

struct Translator<'p> {
    chars: Vec<char>,
    pos: usize,
    out: String,
    fancy: bool,
    /// Multiline flag per open group; index 0 is the pattern level.
    multiline: Vec<bool>,
    dollar: Dollar,
    fold_trailing_lookahead: bool,
    pattern: &'p str,
}

/// Translates Python `re` syntax into Rust `regex`/`fancy-regex` syntax.
pub fn translate(pattern: &str) -> Result<Translated, String> {
    translate_with(pattern, Dollar::Python, true)
}

/// [`translate`] with a choice of `$`, optionally keeping a trailing look-ahead as a
/// look-ahead (to test the rewrite against the original).
pub fn translate_with(
    pattern: &str,
    dollar: Dollar,
    fold_trailing_lookahead: bool,
) -> Result<Translated, String> {
    let mut t = Translator {
        chars: pattern.chars().collect(),
        pos: 0,
        out: String::with_capacity(pattern.len() + 16),
        fancy: false,
        multiline: vec![false],
        dollar,
        fold_trailing_lookahead,
        pattern,
    };
    t.run()?;
    Ok(Translated {
        source: t.out,
        fancy: t.fancy,
    })
}

impl Translator<'_> {
    fn peek(&self, off: usize) -> Option<char> {
        self.chars.get(self.pos + off).copied()
    }

    fn run(&mut self) -> Result<(), String> {
        while let Some(c) = self.peek(0) {
            match c {
                '\\' => self.escape(false)?,
                '[' => self.class()?,
                '(' => self.group_open()?,
                ')' => {
                    if self.multiline.len() > 1 {
                        self.multiline.pop();
                    }
                    self.out.push(')');
                    self.pos += 1;
                }
                '{' => self.brace(),
                '}' => {
                    self.out.push_str(r"\}");
                    self.pos += 1;
                }
                '$' => {
                    self.dollar();
                    self.pos += 1;
                }
                _ => {
                    self.out.push(c);
                    self.pos += 1;
                }
            }
        }
        let _ = self.pattern;
        Ok(())
    }

    fn multiline_now(&self) -> bool {
        self.multiline.last().copied().unwrap_or(false)
    }

    /// Python `$` without MULTILINE: end of text, or just before a final `\n`.
    fn dollar(&mut self) {
        if self.multiline_now() {
            self.out.push('$');
        } else if self.dollar == Dollar::EndOfText {
            self.out.push_str(r"\z");
        } else if self.nothing_consumes_after_dollar() {
            // Consuming the optional newline cannot change whether a match exists when nothing
            // after `$` needs to look at it, and keeps the pattern on the fast engine.
            self.out.push_str(r"(?:\n?\z)");
        } else {
            self.out.push_str(r"(?=\n?\z)");
            self.fancy = true;
        }
    }

    /// True when, after the `$` at `self.pos`, the pattern can only close groups or start other
    /// alternatives: the `$` branch's continuation consumes nothing.
    fn nothing_consumes_after_dollar(&self) -> bool {
        self.nothing_consumes_from(self.pos + 1)
    }

    /// True when the `(?=` group opening at `self.pos` is followed by nothing that consumes
    /// (see [`Self::nothing_consumes_from`]), itself unquantified.
    fn lookahead_ends_pattern(&self) -> bool {
        let close = self.end_of_group(self.pos + 3);
        close < self.chars.len() && self.nothing_consumes_from(close + 1)
    }

    /// True when, from index `i` on, the pattern can only close (unquantified) groups or start
    /// other alternatives: whatever ends just before `i` ends its branch of the whole pattern.
    fn nothing_consumes_from(&self, mut i: usize) -> bool {
        loop {
            match self.chars.get(i) {
                None => return true,
                Some(')') => {
                    // A quantifier on the closing group repeats the `$` branch: stay careful.
                    if matches!(self.chars.get(i + 1), Some('*' | '+' | '?' | '{')) {
                        return false;
                    }
                    i += 1;
                }
                Some('|') => i = self.end_of_group(i + 1),
                Some(_) => return false,
            }
        }
    }

    /// Index of the `)` closing the group that contains `i` (or the pattern length).
    fn end_of_group(&self, mut i: usize) -> usize {
        let mut depth = 0usize;
        while let Some(&c) = self.chars.get(i) {
            match c {
                '\\' => i += 1,
                '[' => {
                    i += 1;
                    if self.chars.get(i) == Some(&'^') {
                        i += 1;
                    }
                    if self.chars.get(i) == Some(&']') {
                        i += 1;
                    }
                    while let Some(&d) = self.chars.get(i) {
                        if d == ']' {
                            break;
                        }
                        if d == '\\' {
                            i += 1;
                        }
                        i += 1;
                    }
                }
                '(' => depth += 1,
                ')' if depth == 0 => return i,
                ')' => depth -= 1,
                _ => {}
            }
            i += 1;
        }
        self.chars.len()
    }

    fn brace(&mut self) {
        // Python: `{m}`, `{m,}`, `{,n}`, `{m,n}` (and `{,}`) are quantifiers; any other `{` is
        // a literal brace.
        let mut i = self.pos + 1;
        let mut lo = String::new();
        let mut hi = String::new();
        while let Some(c) = self.chars.get(i).filter(|c| c.is_ascii_digit()) {
            lo.push(*c);
            i += 1;
        }
        let has_comma = self.chars.get(i) == Some(&',');
        if has_comma {
            i += 1;
            while let Some(c) = self.chars.get(i).filter(|c| c.is_ascii_digit()) {
                hi.push(*c);
                i += 1;
            }
        }
        let closes = self.chars.get(i) == Some(&'}');
        let empty = !has_comma && lo.is_empty();
        if closes && !empty {
            let lo = if lo.is_empty() { "0".to_owned() } else { lo };
            if has_comma {
                let _ = write!(self.out, "{{{lo},{hi}}}");
            } else {
                let _ = write!(self.out, "{{{lo}}}");
            }
            self.pos = i + 1;
        } else {
            self.out.push_str(r"\{");
            self.pos += 1;
        }
    }

    fn group_open(&mut self) -> Result<(), String> {
        let inherited = self.multiline_now();
        if self.peek(1) != Some('?') {
            self.multiline.push(inherited);
            self.out.push('(');
            self.pos += 1;
            return Ok(());
        }
        let rest: String = self.chars[self.pos + 2..].iter().take(3).collect();
        if rest.starts_with('#') {
            // Comment group: dropped.
            while let Some(c) = self.peek(0) {
                self.pos += 1;
                if c == ')' {
                    break;
                }
            }
            return Ok(());
        }
        if rest.starts_with('=') && self.fold_trailing_lookahead && self.lookahead_ends_pattern() {
            // A positive look-ahead with nothing consuming after it (R0016's `(?=\s|/|$)`):
            // `P(?=X)` matches somewhere iff `PX` does, and only whether a match exists is ever
            // asked of these patterns (docs/tagging.md §7.4), so consume X and stay on the fast engine.
            self.multiline.push(inherited);
            self.out.push_str("(?:");
            self.pos += 3;
            return Ok(());
        }
        if rest.starts_with('=')
            || rest.starts_with('!')
            || rest.starts_with("<=")
            || rest.starts_with("<!")
            || rest.starts_with('>')
            || rest.starts_with('(')
        {
            self.fancy = true;
            self.multiline.push(inherited);
            self.out.push_str("(?");
            self.pos += 2;
            return Ok(());
        }
        if rest.starts_with("P=") {
            let end = self.chars[self.pos..]
                .iter()
                .position(|c| *c == ')')
                .ok_or("unterminated (?P= group")?;
            let name: String = self.chars[self.pos + 4..self.pos + end].iter().collect();
            let _ = write!(self.out, r"\k<{name}>");
            self.fancy = true;
            self.pos += end + 1;
            return Ok(());
        }
        if rest.starts_with("P<") || rest.starts_with(':') || rest.starts_with('<') {
            self.multiline.push(inherited);
            self.out.push_str("(?");
            self.pos += 2;
            return Ok(());
        }
        // Flags: (?aiLmsux) global, or (?flags-flags:...) scoped.
        let mut i = self.pos + 2;
        let mut on = String::new();
        let mut off = String::new();
        let mut negative = false;
        loop {
            match self.chars.get(i) {
                Some('-') => negative = true,
                Some(c) if "aiLmsux".contains(*c) => {
                    if *c == 'a' || *c == 'L' {
                        return Err(format!(
                            "flag '{c}' (ASCII/locale matching) is not supported"
                        ));
                    }
                    if negative { off.push(*c) } else { on.push(*c) }
                }
                Some(':') | Some(')') => break,
                _ => return Err("unknown extension (?".to_owned() + &rest + ")"),
            }
            i += 1;
        }
        let scoped = self.chars.get(i) == Some(&':');
        let keep = |s: &str| s.chars().filter(|c| *c != 'u').collect::<String>();
        let (on_r, off_r) = (keep(&on), keep(&off));
        let mut ml = inherited;
        if on.contains('m') {
            ml = true;
        }
        if off.contains('m') {
            ml = false;
        }
        self.out.push_str("(?");
        self.out.push_str(&on_r);
        if !off_r.is_empty() {
            self.out.push('-');
            self.out.push_str(&off_r);
        }
        if scoped {
            self.multiline.push(ml);
            self.out.push(':');
        } else {
            // A global flag group applies to the rest of the pattern.
            if let Some(top) = self.multiline.last_mut() {
                *top = ml;
            }
            if on_r.is_empty() && off_r.is_empty() {
                // `(?u)` alone: nothing to say in Rust.
                self.out.truncate(self.out.len() - 2);
                self.pos = i + 1;
                return Ok(());
            }
            self.out.push(')');
        }
        self.pos = i + 1;
        Ok(())
    }

    /// A backslash sequence at `self.pos`.
    fn escape(&mut self, in_class: bool) -> Result<(), String> {
        let Some(c) = self.peek(1) else {
            return Err("bad escape (end of pattern)".into());
        };
        self.pos += 2;
        match c {
            'd' | 'D' | 'w' | 'W' | 'n' | 't' | 'r' | 'f' | 'v' | 'a' => {
                self.out.push('\\');
                self.out.push(c);
            }
            's' if in_class => self.out.push_str(PY_SPACE),
            's' => {
                let _ = write!(self.out, "[{PY_SPACE}]");
            }
            'S' if in_class => {
                let _ = write!(self.out, "[^{PY_SPACE}]");
            }
            'S' => {
                let _ = write!(self.out, "[^{PY_SPACE}]");
            }
            'b' if in_class => self.out.push_str(r"\x08"),
            'b' | 'B' | 'A' => {
                self.out.push('\\');
                self.out.push(c);
            }
            'Z' if !in_class => self.out.push_str(r"\z"),
            'x' => {
                let hex = self.take_hex(2)?;
                let _ = write!(self.out, r"\x{{{hex}}}");
            }
            'u' => {
                let hex = self.take_hex(4)?;
                let _ = write!(self.out, r"\x{{{hex}}}");
            }
            'U' => {
                let hex = self.take_hex(8)?;
                let _ = write!(self.out, r"\x{{{hex}}}");
            }
            '0' => {
                let mut value = 0u32;
                for _ in 0..2 {
                    match self.peek(0).and_then(|d| d.to_digit(8)) {
                        Some(d) => {
                            value = value * 8 + d;
                            self.pos += 1;
                        }
                        None => break,
                    }
                }
                let _ = write!(self.out, r"\x{{{value:X}}}");
            }
            '1'..='9' => {
                // Three octal digits are an octal escape; otherwise a group reference.
                let d2 = self.peek(0);
                let d3 = self.peek(1);
                let octal = [Some(c), d2, d3]
                    .iter()
                    .all(|d| d.is_some_and(|d| d.is_digit(8)));
                if octal {
                    let digits: String = [c, d2.unwrap_or('0'), d3.unwrap_or('0')].iter().collect();
                    let value = u32::from_str_radix(&digits, 8).map_err(|e| e.to_string())?;
                    if value > 0o377 {
                        return Err(format!("octal escape value \\{digits} outside of range"));
                    }
                    self.pos += 2;
                    let _ = write!(self.out, r"\x{{{value:X}}}");
                } else if in_class {
                    return Err(format!("bad escape \\{c} in a character class"));
                } else {
                    let mut num = c.to_string();
                    if let Some(d) = d2.filter(char::is_ascii_digit) {
                        num.push(d);
                        self.pos += 1;
                    }
                    let _ = write!(self.out, r"\{num}");
                    self.fancy = true;
                }
            }
            c if c.is_ascii_alphanumeric() => return Err(format!("bad escape \\{c}")),
            c => {
                let _ = write!(self.out, r"\x{{{:X}}}", c as u32);
            }
        }
        Ok(())
    }

    fn take_hex(&mut self, n: usize) -> Result<String, String> {
        let hex: String = self.chars.iter().skip(self.pos).take(n).collect();
        if hex.len() != n || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!("incomplete escape, expected {n} hex digits"));
        }
        self.pos += n;
        Ok(hex)
    }

    /// A `[...]` set. Python treats `[` inside a set, and `&&`/`~~`, literally; Rust does not.
    fn class(&mut self) -> Result<(), String> {
        self.out.push('[');
        self.pos += 1;
        if self.peek(0) == Some('^') {
            self.out.push('^');
            self.pos += 1;
        }
        if self.peek(0) == Some(']') {
            self.out.push_str(r"\]");
            self.pos += 1;
        }
        loop {
            match self.peek(0) {
                None => return Err("unterminated character set".into()),
                Some(']') => {
                    self.out.push(']');
                    self.pos += 1;
                    return Ok(());
                }
                Some('\\') => self.escape(true)?,
                Some(c @ ('[' | '&' | '~')) => {
                    self.out.push('\\');
                    self.out.push(c);
                    self.pos += 1;
                }
                Some('-') if self.peek(1) == Some('-') => {
                    self.out.push_str(r"-\-");
                    self.pos += 2;
                }
                Some(c) => {
                    self.out.push(c);
                    self.pos += 1;
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn search(p: &str, t: &str) -> bool {
        PyRegex::new(p)
            .unwrap_or_else(|e| panic!("{e}"))
            .search(t)
            .unwrap_or(false)
    }

    #[test]
    fn shipped_dialect_gaps_are_bridged() {
        // Literal brace (R0008-like) and trailing look-ahead (R0016-like).
        let log4j = r"\$\{(?:jndi|\${[^}]*}):(?:ldap|ldaps|rmi|dns|http)s?://";
        assert!(search(log4j, "${jndi:ldap://x}"));
        assert!(search(log4j, "${${::-j}:ldap://x"));
        assert!(!search(log4j, "${${lower:j}ndi}:ldap://x"));
        assert!(!search(log4j, "jndi ldap"));
        let find = r"\bfind\s+/(?:home|etc|var|opt|root|tmp|usr)?(?=\s|/|$)";
        assert!(search(find, "find / -name x"));
        assert!(search(find, "find /etc"));
        assert!(!search(find, "find /etcetera"));
    }

    #[test]
    fn dollar_matches_before_one_trailing_newline() {
        assert!(search(r"abc$", "abc\n"));
        assert!(!search(r"abc$", "abc\n\n"));
        assert!(search(r"(?:-confg|\.cfg)$", "router.cfg\n"));
        assert!(search(r"a$\s", "a\n"));
        assert!(search(r"(?m)^b$", "a\nb\nc"));
        assert!(search(r"^(?:whoami|id)(?:\s|$)", "id"));
    }

    #[test]
    fn python_escapes_and_quantifiers() {
        assert!(search(r"DELETE\s+/\_all", "DELETE /_all"));
        assert!(search(r"a{,2}b", "aab"));
        assert!(search(r"x{}", "x{}"));
        assert!(search(r"\x41\101\0", "AA\0"));
        assert!(search(r"(a)\1", "aa"));
        assert!(search(r"(?P<q>['])x(?P=q)", "'x'"));
        assert!(search(r"\s", "\u{1c}"));
        assert!(search(r"[[]", "["));
        assert!(search(r"a\Z", "a"));
        assert!(!search(r"a\Z", "a\n"));
        assert!(search(r"(?#note)ab", "ab"));
        assert!(PyRegex::new(r"\q").is_err());
        assert!(PyRegex::new(r"(unclosed").is_err());
    }

    /// Every string of up to `len` tokens, concatenated.
    pub(crate) fn token_strings(tokens: &[&str], len: usize) -> Vec<String> {
        let mut all = vec![String::new()];
        let mut frontier = vec![String::new()];
        for _ in 0..len {
            frontier = frontier
                .iter()
                .flat_map(|s| tokens.iter().map(move |t| format!("{s}{t}")))
                .collect();
            all.extend(frontier.iter().cloned());
        }
        all
    }

    /// The faithful translation (look-aheads kept, Python `$`) on the backtracking engine.
    pub(crate) fn reference(pattern: &str) -> fancy_regex::Regex {
        let kept = translate_with(pattern, Dollar::Python, false).unwrap_or_else(|e| panic!("{e}"));
        let source = if kept.fancy {
            kept.source
        } else {
            // Force the backtracker anyway, with an always-true look-ahead.
            format!("(?=)(?:{})", kept.source)
        };
        fancy_regex::Regex::new(&source).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Patterns with look-aheads and `$` in the places the shipped rules put them (R0016,
    /// R0018, R0019, R0040), and the tokens their results hinge on.
    pub(crate) const DIALECT_CASES: [(&str, &[&str]); 7] = [
        (
            r"\bfind\s+/(?:home|etc|var|opt|root|tmp|usr)?(?=\s|/|$)",
            &["find", " ", "/", "etc", "\n", "x", "\u{1c}", "é"],
        ),
        (
            r"\b(?:uname\s+-\w+|lsb_release(?:\s|$)|hostnamectl(?:\s|$))\b|cat\s+/etc/(?:issue)\b",
            &[
                "lsb_release",
                "uname",
                " -a",
                " ",
                "\n",
                "x",
                "cat /etc/issue",
            ],
        ),
        (
            r"^(?:\s*sudo\s+)?(?:whoami|id|w)(?:\s|$)",
            &["sudo", "id", "w", " ", "\n", "x"],
        ),
        (r"(?:-confg|\.cfg)$", &["-confg", ".cfg", "\n", "x"]),
        (r"a(?=b|$)", &["a", "b", "\n", "c"]),
        (r"(?:a(?=b)|c)", &["a", "b", "c", "\n"]),
        (r"(?i)x(?=Y$)|z$\b", &["x", "y", "Y", "z", "\n"]),
    ];

    /// The trailing look-ahead rewrite (R0016) and the end-of-text `$` (R0018) never change
    /// whether a pattern matches: checked against the faithful translation on the backtracking
    /// engine, over every short string built from the tokens the patterns care about.
    #[test]
    fn dialect_shortcuts_never_change_a_result() {
        for (pattern, tokens) in DIALECT_CASES {
            let ours = PyRegex::new(pattern).unwrap_or_else(|e| panic!("{e}"));
            // Texts without a final newline (nearly all) never reach the backtracker.
            let usual = ours.0.unterminated.as_ref().unwrap_or(&ours.0.general);
            assert!(!usual.is_fancy(), "{pattern}");
            let reference = reference(pattern);
            for text in token_strings(tokens, 5) {
                assert_eq!(
                    ours.search(&text).unwrap_or(false),
                    reference.is_match(&text).unwrap_or(false),
                    "{pattern} on {text:?}"
                );
            }
        }
        // Not at the end of its branch, or quantified: kept as a look-ahead.
        for pattern in [
            r"a(?=b)c",
            r"(?:a(?=b))*",
            r"(a(?=b))c",
            r"(?:a(?=b)|c)d",
            r"a(?=b)?",
            r"a(?=b)\b",
        ] {
            assert!(translate(pattern).is_ok_and(|t| t.fancy), "{pattern}");
        }
    }

    /// A checked pattern holds no compiled engine until a search needs one, and then only the
    /// one that search needs.
    #[test]
    fn engines_are_compiled_on_first_search_only() {
        let re = PyRegex::new(r"(?i)wget\s+\S+$").unwrap_or_else(|e| panic!("{e}"));
        let compiled =
            |engine: Option<&LazyEngine>| engine.is_some_and(|e| e.compiled.get().is_some());
        assert!(re.0.unterminated.is_some());
        assert!(!compiled(Some(&re.0.general)) && !compiled(re.0.unterminated.as_ref()));
        assert_eq!(re.search("WGET http://x"), Ok(true));
        assert!(!compiled(Some(&re.0.general)) && compiled(re.0.unterminated.as_ref()));
        assert_eq!(re.search("wget x\n"), Ok(true));
        assert!(compiled(Some(&re.0.general)));
        // A clone shares what its original compiled.
        assert!(compiled(Some(&re.clone().0.general)));
        assert!(PyRegex::new(r"a{2,1}").is_err());
    }

    #[test]
    fn only_lookaround_goes_to_the_backtracker() {
        assert!(
            !translate(r"(?i)\bnmap\b|\s$")
                .map(|t| t.fancy)
                .unwrap_or(true)
        );
        assert!(translate(r"a(?=b)c").map(|t| t.fancy).unwrap_or(false));
        assert!(translate(r"(?<=a)b").map(|t| t.fancy).unwrap_or(false));
    }
}
