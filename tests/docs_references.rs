//! Every document the code cites can be followed from a clone of this repository.
//!
//! Comments cite the documents in `docs/` by section, as in `docs/bus.md §5.8`,
//! `docs/tagging.md §8.0 step 4`, `docs/bus.md §5.3–5.4` or `docs/tagging.md §5.1, §13.4`,
//! and by pitfall, as in `docs/nats.md pitfall 7` or `docs/nats.md pitfalls 2 and 3`. A
//! citation may run on over the next comment line. A section number with no document before
//! it means the document the same file cited last; inside `docs/` it means the document itself,
//! and a document named without a folder means its sibling there. A section exists when its
//! document has a heading that begins with the section sign and that number, a pitfall when a
//! heading begins with the word `Pitfall` and that number.
//!
//! The test reads every file git tracks (or would track: new files count), or, outside a git
//! checkout, `src/`, `tests/`, `benches/`, `packaging/`, `docs/`, `Makefile` and `README.md`.
//! It fails, naming file and line, when a citation names a document, section or pitfall that
//! does not exist; when a bare section number comes before any document is named in its file;
//! and when one of the contracts the project was started from is named without `docs/` in
//! front, which points at a file a clone does not have.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The section sign, spelled so that this file's own code never looks like a citation.
const SECTION: char = '\u{a7}';

/// The documents the project was started from; `docs/` holds this project's version of each.
/// A mention of one of them without `docs/` in front is a reference a clone cannot follow.
const CONTRACTS: [&str; 4] = ["bus", "nats", "tagging", "architecture"];

/// One document in `docs/`: the section numbers and pitfall numbers its headings start with.
#[derive(Debug, Default)]
struct Doc {
    sections: BTreeSet<String>,
    pitfalls: BTreeSet<u32>,
}

/// The documents of `docs/`, by file name without `.md`.
type Docs = BTreeMap<String, Doc>;

/// What a citation points at inside its document.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Section(String),
    Pitfall(u32),
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Reads the headings of every `docs/*.md`.
fn read_docs(dir: &Path) -> Docs {
    let mut docs = Docs::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return docs;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".md"))
        else {
            continue;
        };
        let text = fs::read_to_string(&path).unwrap_or_default();
        docs.insert(name.to_owned(), parse_headings(&text));
    }
    docs
}

/// The sections and pitfalls the headings of one document start with (code blocks skipped).
fn parse_headings(text: &str) -> Doc {
    let mut doc = Doc::default();
    let mut in_code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code || !line.starts_with('#') {
            continue;
        }
        let title = line.trim_start_matches('#').trim_start();
        if let Some(rest) = title.strip_prefix(SECTION) {
            let number = take_number(rest);
            if !number.is_empty() {
                doc.sections.insert(number.to_owned());
            }
        } else if let Some(rest) = title.strip_prefix("Pitfall ")
            && let Ok(n) = take_digits(rest).parse()
        {
            doc.pitfalls.insert(n);
        }
    }
    doc
}

/// A leading section number: digits, then any number of `.digits`.
fn take_number(s: &str) -> &str {
    let mut end = take_digits(s).len();
    if end == 0 {
        return "";
    }
    while s[end..].starts_with('.') && !take_digits(&s[end + 1..]).is_empty() {
        end += 1 + take_digits(&s[end + 1..]).len();
    }
    &s[..end]
}

fn take_digits(s: &str) -> &str {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    &s[..end]
}

/// The files to scan, relative to the repository: what git tracks or would track, else the
/// folders and files the project is made of.
fn files_to_scan(root: &Path) -> Vec<PathBuf> {
    let listed = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(root)
        .output();
    if let Ok(out) = listed
        && out.status.success()
    {
        let mut files: Vec<PathBuf> = out
            .stdout
            .split(|b| *b == 0)
            .filter(|p| !p.is_empty())
            .filter_map(|p| std::str::from_utf8(p).ok())
            .map(PathBuf::from)
            .collect();
        files.sort();
        files.dedup();
        return files;
    }
    let mut files = vec![PathBuf::from("Makefile"), PathBuf::from("README.md")];
    for dir in ["src", "tests", "benches", "packaging", "docs"] {
        walk(root, Path::new(dir), &mut files);
    }
    files.sort();
    files
}

fn walk(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(root.join(rel)) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let rel = rel.join(&name);
        match entry.file_type() {
            Ok(t) if t.is_dir() => walk(root, &rel, out),
            Ok(t) if t.is_file() => out.push(rel),
            _ => {}
        }
    }
}

/// A file's text with each line's indentation and comment leader (`//!`, `///`, `#`, `*`, …)
/// taken off, lines joined by `\n`, so that a citation continued on the next comment line
/// reads as one. Returns the text and the offset each line starts at.
fn logical_text(text: &str) -> (String, Vec<usize>) {
    let mut joined = String::with_capacity(text.len());
    let mut starts = Vec::new();
    for line in text.lines() {
        starts.push(joined.len());
        let stripped = line
            .trim_start()
            .trim_start_matches(['/', '!', '#', '*', '>', ';'])
            .trim_start();
        joined.push_str(stripped);
        joined.push('\n');
    }
    (joined, starts)
}

fn line_of(starts: &[usize], offset: usize) -> usize {
    starts.partition_point(|&s| s <= offset)
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// Parses a list of section numbers at `s`, which starts with the section sign: one number,
/// several joined by commas, `and` or `or`, a range written with a dash, each perhaps followed
/// by `step 4` or `steps 1–3`. Returns the numbers (both ends of a range) and the length read.
fn parse_section_list(s: &str) -> (Vec<String>, usize) {
    let mut numbers = Vec::new();
    let mut pos = 0;
    while let Some(rest) = s[pos..].strip_prefix(SECTION) {
        let number = take_number(rest);
        if number.is_empty() {
            break;
        }
        numbers.push(number.to_owned());
        pos += SECTION.len_utf8() + number.len();
        // A range: a dash and a second number, perhaps with its own section sign.
        for dash in ["–", "-"] {
            if let Some(after) = s[pos..].strip_prefix(dash) {
                let (skip, after) = match after.strip_prefix(SECTION) {
                    Some(a) => (SECTION.len_utf8(), a),
                    None => (0, after),
                };
                let end = take_number(after);
                if !end.is_empty() {
                    numbers.push(end.to_owned());
                    pos += dash.len() + skip + end.len();
                }
                break;
            }
        }
        pos += skip_steps(&s[pos..]);
        match skip_separator(&s[pos..]) {
            Some(n) if s[pos + n..].starts_with(SECTION) => pos += n,
            _ => break,
        }
    }
    (numbers, pos)
}

/// ` step 3`, ` steps 1–3` after a section number: part of the citation, not checked.
fn skip_steps(s: &str) -> usize {
    let trimmed = s.trim_start();
    let lead = s.len() - trimmed.len();
    for word in ["steps ", "step "] {
        if let Some(rest) = trimmed.strip_prefix(word) {
            let digits = take_digits(rest).len();
            if digits == 0 {
                return 0;
            }
            let mut len = lead + word.len() + digits;
            for dash in ["–", "-"] {
                if let Some(after) = s[len..].strip_prefix(dash) {
                    let more = take_digits(after).len();
                    if more > 0 {
                        len += dash.len() + more;
                    }
                    break;
                }
            }
            return len;
        }
    }
    0
}

/// A comma, `and`, `or` or `, and` between two items of a list: its length with the spaces
/// around it.
fn skip_separator(s: &str) -> Option<usize> {
    let comma = s.starts_with(',');
    let trimmed = s[usize::from(comma)..].trim_start();
    for word in ["and ", "or "] {
        if let Some(rest) = trimmed.strip_prefix(word) {
            return Some(s.len() - rest.trim_start().len());
        }
    }
    comma.then(|| s.len() - trimmed.len())
}

/// Parses `pitfall 7`, `pitfalls 2 and 3`, `pitfalls 1, 2 and 5`, `pitfalls 2–4` at `s`.
fn parse_pitfall_list(s: &str) -> Option<(Vec<u32>, usize)> {
    let word = ["pitfalls ", "pitfall ", "Pitfalls ", "Pitfall "]
        .into_iter()
        .find(|w| s.starts_with(w))?;
    let mut pos = word.len();
    let mut numbers = Vec::new();
    loop {
        let rest = s[pos..].trim_start();
        let digits = take_digits(rest);
        let Ok(n) = digits.parse() else { break };
        numbers.push(n);
        pos = s.len() - rest.len() + digits.len();
        let after = &s[pos..];
        if let Some(range) = ["–", "-"].into_iter().find(|d| after.starts_with(d))
            && !take_digits(&after[range.len()..]).is_empty()
        {
            pos += range.len();
            continue;
        }
        match skip_separator(after) {
            Some(n) if !take_digits(&after[n..]).is_empty() => pos += n,
            _ => break,
        }
    }
    (!numbers.is_empty()).then_some((numbers, pos))
}

/// Checks one file's text; `path` is relative to the repository and decides how document names
/// resolve (inside `docs/`, a bare name is a sibling and a bare section the file itself).
fn check_file(path: &str, text: &str, docs: &Docs) -> Vec<String> {
    let in_docs = path.starts_with("docs/") && path.ends_with(".md");
    let this_doc = in_docs.then(|| path["docs/".len()..path.len() - ".md".len()].to_owned());
    let (text, starts) = logical_text(text);
    let mut errors = Vec::new();
    let mut fail = |offset: usize, message: String| {
        errors.push(format!("{path}:{}: {message}", line_of(&starts, offset)));
    };
    // Offsets of section signs already read as part of a document's citation.
    let mut consumed = BTreeSet::new();
    // Where each document reference ends, and which document it names, in text order.
    let mut named: Vec<(usize, String)> = Vec::new();

    let check_target =
        |offset: usize, doc: &str, target: &Target, fail: &mut dyn FnMut(usize, String)| {
            let Some(found) = docs.get(doc) else {
                return;
            };
            let exists = match target {
                Target::Section(n) => found.sections.contains(n),
                Target::Pitfall(n) => found.pitfalls.contains(n),
            };
            if !exists {
                let what = match target {
                    Target::Section(n) => format!("section {SECTION}{n}"),
                    Target::Pitfall(n) => format!("pitfall {n}"),
                };
                fail(offset, format!("docs/{doc}.md has no {what}"));
            }
        };

    for (dot, _) in text.match_indices(".md") {
        let after_md = dot + ".md".len();
        if text[after_md..].starts_with(is_name_char) {
            continue; // `.mdx`, `.md5`, …
        }
        let name_start = text[..dot]
            .rfind(|c: char| !is_name_char(c))
            .map_or(0, |i| {
                i + text[i..].chars().next().map_or(1, char::len_utf8)
            });
        let name = &text[name_start..dot];
        if name.is_empty() {
            continue;
        }
        let before = &text[..name_start];
        let prefixed = before
            .strip_suffix("docs/")
            .is_some_and(|b| !b.ends_with(|c: char| is_name_char(c) || c == '.' || c == '/'));
        let in_a_path = before.ends_with('/') && !prefixed;
        let part_of_word = before.ends_with(|c: char| is_name_char(c) || c == '.');
        if part_of_word {
            continue;
        }
        let doc = if prefixed || (in_docs && !in_a_path && docs.contains_key(name)) {
            name.to_owned()
        } else if CONTRACTS.contains(&name) {
            let shown = &text[before
                .rfind(|c: char| c.is_whitespace() || "`('\"[".contains(c))
                .map_or(0, |i| i + 1)..after_md];
            fail(
                name_start,
                format!(
                    "{shown} is not in this repository: cite docs/{name}.md (a clone has no other copy)"
                ),
            );
            name.to_owned()
        } else {
            continue;
        };
        if !docs.contains_key(&doc) {
            fail(name_start, format!("docs/{doc}.md does not exist"));
        }
        named.push((after_md, doc.clone()));

        // What follows: optional closing quotes or brackets, then sections or pitfalls.
        let mut pos = after_md;
        while let Some(c) = text[pos..]
            .chars()
            .next()
            .filter(|c| "`)]*'\"".contains(*c))
        {
            pos += c.len_utf8();
        }
        let rest = text[pos..].trim_start();
        let pos = text.len() - rest.len();
        if rest.starts_with(SECTION) {
            let (numbers, len) = parse_section_list(rest);
            for (i, _) in rest[..len].match_indices(SECTION) {
                consumed.insert(pos + i);
            }
            for n in numbers {
                check_target(pos, &doc, &Target::Section(n), &mut fail);
            }
        } else if let Some((numbers, _)) = parse_pitfall_list(rest) {
            for n in numbers {
                check_target(pos, &doc, &Target::Pitfall(n), &mut fail);
            }
        }
    }

    // Section numbers that follow no document name.
    let mut skip_until = 0;
    for (offset, _) in text.match_indices(SECTION) {
        if offset < skip_until || consumed.contains(&offset) {
            continue;
        }
        let (numbers, len) = parse_section_list(&text[offset..]);
        if numbers.is_empty() {
            continue; // a section sign with no number after it
        }
        skip_until = offset + len;
        let lead = text[..offset].trim_end();
        let standard = lead.rsplit(char::is_whitespace).nth(1).is_some_and(|word| {
            let word = word.trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
            word == "RFC" || word == "ISO"
        });
        if standard && lead.ends_with(|c: char| c.is_ascii_digit()) {
            continue; // another document's section, e.g. RFC 9562's
        }
        let doc = match &this_doc {
            Some(own) => own.clone(),
            None => match named.iter().rev().find(|(end, _)| *end <= offset) {
                Some((_, doc)) => doc.clone(),
                None => {
                    fail(
                        offset,
                        format!(
                            "{SECTION}{} names no document: name its document (docs/<name>.md) earlier in this file",
                            numbers[0]
                        ),
                    );
                    continue;
                }
            },
        };
        for n in numbers {
            check_target(offset, &doc, &Target::Section(n), &mut fail);
        }
    }
    errors
}

#[test]
fn every_cited_document_section_and_pitfall_exists() {
    let root = root();
    let docs = read_docs(&root.join("docs"));
    assert!(
        !docs.is_empty(),
        "no documents in {}",
        root.join("docs").display()
    );
    let mut errors = Vec::new();
    let mut scanned = 0;
    for rel in files_to_scan(&root) {
        // Binary files and files listed but deleted in the working tree are not text to check.
        let Ok(text) = fs::read_to_string(root.join(&rel)) else {
            continue;
        };
        scanned += 1;
        let path = rel.to_string_lossy().replace('\\', "/");
        errors.extend(check_file(&path, &text, &docs));
    }
    assert!(scanned > 0, "found no files to scan");
    assert!(
        errors.is_empty(),
        "{} reference(s) a reader of this repository cannot follow:\n{}",
        errors.len(),
        errors.join("\n")
    );
}

/// The headings of a small made-up set of documents.
fn sample_docs() -> Docs {
    let s = SECTION;
    let mut docs = Docs::new();
    docs.insert(
        "bus".into(),
        parse_headings(&format!(
            "# Bus\n## {s}5 Out\n### {s}5.3 Tagged\n### {s}5.4 Fired\n### {s}5.8 Failures\n\
             ```\n## {s}9 in a code block\n```\n"
        )),
    );
    docs.insert(
        "nats".into(),
        parse_headings("# Client\n### Pitfall 2: a\n### Pitfall 3: b\n### Pitfall 7: c\n"),
    );
    docs
}

#[test]
fn headings_give_sections_and_pitfalls() {
    let docs = sample_docs();
    let sections: Vec<&str> = docs["bus"].sections.iter().map(String::as_str).collect();
    assert_eq!(sections, ["5", "5.3", "5.4", "5.8"]);
    assert_eq!(
        docs["nats"].pitfalls.iter().copied().collect::<Vec<_>>(),
        [2, 3, 7]
    );
}

#[test]
fn good_citations_pass() {
    let docs = sample_docs();
    let s = SECTION;
    let (bus, nats) = ("bus", "nats");
    let text = format!(
        "//! Announcements (docs/{bus}.md {s}5.3–5.4), failures (docs/{bus}.md {s}5.8).\n\
         /// Lists: docs/{bus}.md {s}5.3, {s}5.4 and {s}5.8; a step: docs/{bus}.md {s}5 step 2.\n\
         /// Later, bare: ({s}5.8, {s}5) and a standard's section: RFC 9562 {s}5.5.\n\
         // The client blocks (docs/{nats}.md\n\
         // pitfall 7); it retries (docs/{nats}.md pitfalls 2 and 3).\n\
         let sign = '{s}'; // a section sign alone is no citation\n"
    );
    assert_eq!(check_file("src/x.rs", &text, &docs), Vec::<String>::new());
    let inside = format!("# Doc\nSee {nats}.md pitfall 3 and [{bus}.md]({bus}.md) {s}5.4.\n");
    assert_eq!(
        check_file(&format!("docs/{}.md", "other"), &inside, &docs),
        Vec::<String>::new()
    );
}

#[test]
fn bad_citations_are_named_with_file_and_line() {
    let docs = sample_docs();
    let s = SECTION;
    let (bus, nats, tagging) = ("bus", "nats", "tagging");
    let text = format!(
        "//! Fine: docs/{bus}.md {s}5.8.\n\
         //! Missing section: docs/{bus}.md {s}5.9, and in a list docs/{bus}.md {s}5.3, {s}6.1.\n\
         //! Missing pitfall: docs/{nats}.md pitfalls 2 and 4.\n\
         //! Missing document: docs/{tagging}.md {s}4.2.\n\
         //! Not followable: {bus}.md {s}5.8 and ../shared/spec/{nats}.md.\n\
         //! Bare and missing: {s}9.\n"
    );
    let errors = check_file("src/x.rs", &text, &docs);
    assert_eq!(
        errors,
        [
            format!("src/x.rs:2: docs/{bus}.md has no section {s}5.9"),
            format!("src/x.rs:2: docs/{bus}.md has no section {s}6.1"),
            format!("src/x.rs:3: docs/{nats}.md has no pitfall 4"),
            format!("src/x.rs:4: docs/{tagging}.md does not exist"),
            format!(
                "src/x.rs:5: {bus}.md is not in this repository: cite docs/{bus}.md (a clone has no other copy)"
            ),
            format!(
                "src/x.rs:5: ../shared/spec/{nats}.md is not in this repository: cite docs/{nats}.md (a clone has no other copy)"
            ),
            format!("src/x.rs:6: docs/{nats}.md has no section {s}9"),
        ]
    );
    let orphan = format!("/// The gate ({s}6.2).\n");
    assert_eq!(
        check_file("src/state.rs", &orphan, &docs),
        [format!(
            "src/state.rs:1: {s}6.2 names no document: name its document (docs/<name>.md) earlier in this file"
        )]
    );
}
