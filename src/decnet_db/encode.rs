//! Values as DECNET's object mapper writes them (docs/decnet-db.md §3), so that DECNET reads
//! our rows back exactly as it reads its own.

use std::fmt::Write;

use serde_json::{Map, Value};

use crate::tagging::py::py_float_repr;

/// `value` as Python's `json.dumps` writes it with its defaults: `", "` and `": "`, ASCII only,
/// floats in Python's repr.
pub fn python_json(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

/// [`python_json`] of an object held as a map, without building a [`Value`] around it (a tag's
/// evidence, once per row written).
pub fn python_json_object(members: &Map<String, Value>) -> String {
    let mut out = String::with_capacity(256);
    write_object(&mut out, members);
    out
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => {
                let _ = write!(out, "{i}");
            }
            (None, Some(u), _) => {
                let _ = write!(out, "{u}");
            }
            (None, None, Some(f)) => out.push_str(&json_float(f)),
            _ => out.push_str(&n.to_string()),
        },
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(members) => write_object(out, members),
    }
}

fn write_object(out: &mut String, members: &Map<String, Value>) {
    out.push('{');
    for (i, (key, item)) in members.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_string(out, key);
        out.push_str(": ");
        write_value(out, item);
    }
    out.push('}');
}

/// `json.dumps` spells the non-finite floats as JavaScript does (JSON cannot hold them, but
/// Python writes them anyway); finite ones are `repr`.
fn json_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".to_owned()
    } else if f.is_infinite() {
        if f > 0.0 { "Infinity" } else { "-Infinity" }.to_owned()
    } else {
        py_float_repr(f)
    }
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    // Printable ASCII other than the two escaped characters goes through as it is, in runs.
    let mut rest = s;
    while let Some(at) = rest
        .bytes()
        .position(|b| !(b' '..=b'~').contains(&b) || b == b'"' || b == b'\\')
    {
        out.push_str(&rest[..at]);
        let c = rest[at..].chars().next().expect("a character starts here");
        rest = &rest[at + c.len_utf8()..];
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push_str(rest);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Each expected text is what CPython 3.11's `json.dumps` prints for the same value.
    #[test]
    fn writes_what_python_json_dumps_writes() {
        let cases = [
            (
                json!({"a": 1, "b": [1.0, 0.5, 1e-7, 1e16]}),
                r#"{"a": 1, "b": [1.0, 0.5, 1e-07, 1e+16]}"#,
            ),
            (
                json!({"é": "naïve \u{1F600}"}),
                r#"{"\u00e9": "na\u00efve \ud83d\ude00"}"#,
            ),
            (
                json!(["tab\t", "q\"", "back\\", "\u{7f}", "\u{1}"]),
                r#"["tab\t", "q\"", "back\\", "\u007f", "\u0001"]"#,
            ),
            (
                json!({"n": null, "t": true, "f": false, "big": 18446744073709551615u64}),
                r#"{"n": null, "t": true, "f": false, "big": 18446744073709551615}"#,
            ),
            (json!({}), "{}"),
            (json!({"k": []}), r#"{"k": []}"#),
        ];
        for (value, python) in cases {
            assert_eq!(python_json(&value), python, "{value}");
        }
    }
}
