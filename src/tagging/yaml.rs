//! YAML text → JSON values, resolved the way the rule files are meant to be read.
//!
//! DECNET reads rules with PyYAML (YAML 1.1); the only maintained pure-Rust YAML stacks speak
//! YAML 1.2. The two agree on everything the rule packs use, but differ on a few plain-scalar
//! spellings (`yes`/`no`/`on`/`off`, leading-zero octals, `1:20` sexagesimals, `1_000`,
//! exponent-only floats). We resolve with the YAML 1.2 core schema and *reject* those spellings
//! when unquoted, so a file can never mean one thing to DECNET and another to us.

use std::borrow::Cow;
use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Tag};
use serde_json::{Map, Number, Value};

/// Why a YAML text could not be turned into a single JSON value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum YamlError {
    #[error("invalid YAML: {0}")]
    Syntax(String),
    #[error("the file holds {0} YAML documents, one is expected")]
    DocumentCount(usize),
    #[error("line {line}: {problem}")]
    Scalar { line: usize, problem: String },
    #[error("aliases expand to more than {ALIAS_NODE_LIMIT} nodes")]
    AliasBomb,
    #[error("alias to an unknown anchor")]
    UnknownAnchor,
}

/// Bounds alias expansion ("billion laughs"); no honest rule file comes near it.
const ALIAS_NODE_LIMIT: usize = 10_000;

/// Parses one YAML document. An empty stream (or a document holding nothing) is `Value::Null`.
pub fn parse_document(text: &str) -> Result<Value, YamlError> {
    let mut builder = Builder::default();
    for item in Parser::new_from_str(text) {
        let (event, span) = item.map_err(|e| YamlError::Syntax(e.to_string()))?;
        builder.on_event(event, span.start.line())?;
    }
    match builder.docs.len() {
        0 => Ok(Value::Null),
        1 => Ok(builder.docs.pop().unwrap_or(Value::Null)),
        n => Err(YamlError::DocumentCount(n)),
    }
}

enum Frame {
    Seq(Vec<Value>, usize),
    Map(Map<String, Value>, Option<String>, usize),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    docs: Vec<Value>,
    anchors: HashMap<usize, Value>,
    alias_nodes: usize,
    doc_has_root: bool,
}

impl Builder {
    fn on_event(&mut self, event: Event<'_>, line: usize) -> Result<(), YamlError> {
        match event {
            Event::DocumentStart(_) => self.doc_has_root = false,
            Event::DocumentEnd => {
                if !self.doc_has_root {
                    self.docs.push(Value::Null);
                }
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Frame::Seq(Vec::new(), anchor)),
            Event::MappingStart(anchor, _) => {
                self.stack.push(Frame::Map(Map::new(), None, anchor));
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (value, anchor) = match self.stack.pop() {
                    Some(Frame::Seq(items, a)) => (Value::Array(items), a),
                    Some(Frame::Map(map, _, a)) => (Value::Object(map), a),
                    None => return Err(YamlError::Syntax("unbalanced collection end".into())),
                };
                self.insert(value, anchor, line)?;
            }
            Event::Scalar(text, style, anchor, tag) => {
                let value = resolve_scalar(&text, style, tag.as_deref()).map_err(|problem| {
                    YamlError::Scalar {
                        line: line + 1,
                        problem,
                    }
                })?;
                self.insert(value, anchor, line)?;
            }
            Event::Alias(id) => {
                let value = self
                    .anchors
                    .get(&id)
                    .cloned()
                    .ok_or(YamlError::UnknownAnchor)?;
                self.alias_nodes += count_nodes(&value);
                if self.alias_nodes > ALIAS_NODE_LIMIT {
                    return Err(YamlError::AliasBomb);
                }
                self.insert(value, 0, line)?;
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd => {}
        }
        Ok(())
    }

    fn insert(&mut self, value: Value, anchor: usize, line: usize) -> Result<(), YamlError> {
        if anchor > 0 {
            self.anchors.insert(anchor, value.clone());
        }
        match self.stack.last_mut() {
            None => {
                self.doc_has_root = true;
                self.docs.push(value);
            }
            Some(Frame::Seq(items, _)) => items.push(value),
            Some(Frame::Map(map, pending, _)) => match pending.take() {
                None => *pending = Some(key_string(&value, line)?),
                // PyYAML keeps the last value of a duplicated key (at the first key's place).
                Some(key) => {
                    map.insert(key, value);
                }
            },
        }
        Ok(())
    }
}

fn count_nodes(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(count_nodes).sum::<usize>(),
        Value::Object(o) => 1 + o.values().map(count_nodes).sum::<usize>(),
        _ => 1,
    }
}

/// JSON keys are strings; a scalar key is written the way Python would print it.
fn key_string(key: &Value, line: usize) -> Result<String, YamlError> {
    match key {
        Value::String(s) => Ok(s.clone()),
        Value::Array(_) | Value::Object(_) => Err(YamlError::Scalar {
            line: line + 1,
            problem: "collections cannot be mapping keys here".into(),
        }),
        other => Ok(super::py::py_str(other)),
    }
}

fn resolve_scalar(text: &str, style: ScalarStyle, tag: Option<&Tag>) -> Result<Value, String> {
    if let Some(tag) = tag {
        return resolve_tagged(text, tag);
    }
    if style != ScalarStyle::Plain {
        return Ok(Value::String(text.to_owned()));
    }
    if let Some(v) = core_schema(text)? {
        return Ok(v);
    }
    if let Some(reading) = yaml11_reading(text) {
        return Err(format!(
            "plain scalar {text:?} reads as {reading} in YAML 1.1 (DECNET) but as a string in \
             YAML 1.2; quote it"
        ));
    }
    Ok(Value::String(text.to_owned()))
}

fn resolve_tagged(text: &str, tag: &Tag) -> Result<Value, String> {
    let core = tag.handle == "tag:yaml.org,2002:" || tag.handle == "!!";
    match (core, tag.suffix.as_str()) {
        (true, "str") => Ok(Value::String(text.to_owned())),
        (true, "null" | "bool" | "int" | "float") => match core_schema(text)? {
            Some(v) => Ok(v),
            None => Err(format!("{text:?} is not a valid !!{}", tag.suffix)),
        },
        _ => Err(format!("unsupported tag {}{}", tag.handle, tag.suffix)),
    }
}

/// The YAML 1.2 core schema, with the spellings whose YAML 1.1 meaning differs refused.
fn core_schema(t: &str) -> Result<Option<Value>, String> {
    match t {
        "" | "~" | "null" | "Null" | "NULL" => return Ok(Some(Value::Null)),
        "true" | "True" | "TRUE" => return Ok(Some(Value::Bool(true))),
        "false" | "False" | "FALSE" => return Ok(Some(Value::Bool(false))),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "-.inf" | ".nan" | ".NaN" | ".NAN" => {
            return Err(format!("non-finite number {t:?} is not supported"));
        }
        _ => {}
    }
    let unsigned = t.strip_prefix(['-', '+']).unwrap_or(t);
    if !unsigned.is_empty() && unsigned.bytes().all(|b| b.is_ascii_digit()) {
        if unsigned.len() > 1 && unsigned.starts_with('0') {
            return Err(format!(
                "{t:?} is octal in YAML 1.1 (DECNET) but decimal in YAML 1.2; quote it or drop \
                 the leading zero"
            ));
        }
        return Ok(Some(match t.parse::<i64>() {
            Ok(i) => Value::Number(i.into()),
            Err(_) => float_value(t)?,
        }));
    }
    if let Some(hex) = t.strip_prefix("0x")
        && !hex.is_empty()
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
    {
        let i = i64::from_str_radix(hex, 16).map_err(|e| e.to_string())?;
        return Ok(Some(Value::Number(i.into())));
    }
    if t.starts_with("0o") && t.len() > 2 && t[2..].bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(format!(
            "{t:?} is a string in YAML 1.1 (DECNET) but an integer in YAML 1.2"
        ));
    }
    if is_core_float(unsigned) {
        if !unsigned.contains('.') {
            return Err(format!(
                "{t:?} is a string in YAML 1.1 (DECNET) but a number in YAML 1.2; write it with a \
                 decimal point or quote it"
            ));
        }
        return Ok(Some(float_value(t)?));
    }
    Ok(None)
}

fn float_value(t: &str) -> Result<Value, String> {
    let f: f64 = t.parse().map_err(|_| format!("{t:?} is not a number"))?;
    Number::from_f64(f)
        .map(Value::Number)
        .ok_or_else(|| format!("{t:?} is not a finite number"))
}

/// `(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?` without the sign.
fn is_core_float(s: &str) -> bool {
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some((int, frac)) => {
            int.bytes().all(|b| b.is_ascii_digit())
                && frac.bytes().all(|b| b.is_ascii_digit())
                && !(int.is_empty() && frac.is_empty())
        }
        None => !mantissa.is_empty() && mantissa.bytes().all(|b| b.is_ascii_digit()),
    };
    let exponent_ok = exponent.is_none_or(|e| {
        let digits = e.strip_prefix(['-', '+']).unwrap_or(e);
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
    });
    mantissa_ok && exponent_ok
}

/// What PyYAML would make of a plain scalar that YAML 1.2 reads as a string, if different.
fn yaml11_reading(t: &str) -> Option<&'static str> {
    if matches!(
        t,
        "yes" | "Yes" | "YES" | "no" | "No" | "NO" | "on" | "On" | "ON" | "off" | "Off" | "OFF"
    ) {
        return Some("a boolean");
    }
    let unsigned = t.strip_prefix(['-', '+']).unwrap_or(t);
    let starts_digit = unsigned.bytes().next().is_some_and(|b| b.is_ascii_digit());
    if starts_digit && unsigned.contains('_') {
        let cleaned: Cow<str> = Cow::Owned(unsigned.replace('_', ""));
        if cleaned.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return Some("a number");
        }
    }
    if starts_digit && unsigned.contains(':') {
        let mut parts = unsigned.split(':');
        let head_ok = parts
            .next()
            .is_some_and(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_digit() || b == b'_'));
        let rest_ok = parts.all(|p| {
            let digits = p.split('.').next().unwrap_or("");
            (1..=2).contains(&digits.len()) && p.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        });
        if head_ok && rest_ok {
            return Some("a sexagesimal number");
        }
    }
    if t == "<<" || t == "=" {
        return Some("a merge/value key");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_rule_shaped_documents() {
        let v = parse_document(
            "rule_id: R1\nrule_version: 2\nconfidence: 0.9\nlist: [a, 'b', \"c\"]\nnone: ~\nq: 'it''s'\n",
        );
        assert_eq!(
            v,
            Ok(
                json!({"rule_id": "R1", "rule_version": 2, "confidence": 0.9,
                      "list": ["a", "b", "c"], "none": null, "q": "it's"})
            )
        );
    }

    #[test]
    fn empty_text_is_null_and_two_documents_are_refused() {
        assert_eq!(parse_document(""), Ok(Value::Null));
        assert_eq!(parse_document("  \n"), Ok(Value::Null));
        assert_eq!(
            parse_document("a: 1\n---\nb: 2\n"),
            Err(YamlError::DocumentCount(2))
        );
    }

    #[test]
    fn yaml11_ambiguities_are_refused_unless_quoted() {
        for bad in [
            "x: yes", "x: off", "x: 010", "x: 1:20", "x: 1_000", "x: 1e3",
        ] {
            assert!(parse_document(bad).is_err(), "{bad}");
        }
        for good in ["x: 'yes'", "x: \"010\"", "x: 10", "x: 1.5e3", "x: '1:20'"] {
            assert!(parse_document(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn duplicate_keys_keep_the_last_value() {
        assert_eq!(parse_document("a: 1\na: 2\n"), Ok(json!({"a": 2})));
    }

    #[test]
    fn aliases_expand_and_are_bounded() {
        assert_eq!(
            parse_document("a: &x [1]\nb: *x\n"),
            Ok(json!({"a": [1], "b": [1]}))
        );
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 0..6 {
            let prev = if i == 0 {
                "a".to_owned()
            } else {
                format!("l{}", i - 1)
            };
            bomb.push_str(&format!(
                "l{i}: &l{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
        }
        assert_eq!(parse_document(&bomb), Err(YamlError::AliasBomb));
    }
}
