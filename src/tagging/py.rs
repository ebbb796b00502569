//! Python value semantics on JSON data (docs/tagging.md §1).
//!
//! DECNET's tagger is Python: whether a rule fires, and which string lands in a tag UUID key,
//! depends on Python's truthiness, `or` chains, `int`/`float` coercions and `str()`. Every
//! helper here reproduces one of those on `serde_json::Value`, so the rest of the engine can be
//! written as if it were reading the reference code.

use serde_json::{Map, Value};

/// Member lookup on payload objects: the same answer as `Map::get` (keys are unique), found
/// by scanning the keys of small objects, which is several times cheaper than hashing the key
/// (serde_json's maps use SipHash) on the dozen-member payloads the bus carries.
pub trait Fields {
    fn field(&self, key: &str) -> Option<&Value>;
}

impl Fields for Map<String, Value> {
    #[inline]
    fn field(&self, key: &str) -> Option<&Value> {
        if self.len() <= 24 {
            self.iter().find(|(k, _)| k.as_str() == key).map(|(_, v)| v)
        } else {
            self.get(key)
        }
    }
}

/// Python truthiness of a JSON-decoded value.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// Python `payload.get(key) is True`: only the JSON `true` itself, not a truthy value.
pub fn is_true(payload: &Map<String, Value>, key: &str) -> bool {
    payload.field(key) == Some(&Value::Bool(true))
}

/// Python `payload.get(a) or payload.get(b) or ...`: the first truthy value, else the last
/// operand as it is (absent counts as `null`).
pub fn first_truthy<'a>(payload: &'a Map<String, Value>, keys: &[&str]) -> Option<&'a Value> {
    let mut last = None;
    for k in keys {
        last = payload.field(k);
        if last.is_some_and(truthy) {
            return last;
        }
    }
    last
}

/// Python `isinstance(v, int)` on JSON data: integral numbers written without a fraction, and
/// booleans (a subclass of `int` in Python).
pub fn as_int(v: &Value) -> Option<i64> {
    match v {
        Value::Bool(b) => Some(i64::from(*b)),
        Value::Number(n) => n.as_i64().or_else(|| n.as_u64().map(|u| u as i64)),
        _ => None,
    }
}

/// Python `isinstance(v, (int, float))` as a double (booleans included).
pub fn as_number(v: &Value) -> Option<f64> {
    match v {
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

/// A non-empty JSON string.
pub fn non_empty_str(v: Option<&Value>) -> Option<&str> {
    match v {
        Some(Value::String(s)) if !s.is_empty() => Some(s),
        _ => None,
    }
}

/// Python `float(x)` as rule parameters are converted: numbers, booleans and numeric strings.
pub fn py_float(v: &Value) -> Option<f64> {
    match v {
        Value::String(s) => parse_py_float(s),
        other => as_number(other),
    }
}

/// Python `int(x)` on a rule parameter: ints, booleans, floats (truncated) and integer strings.
pub fn py_int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) if n.is_f64() => n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64),
        Value::String(s) => s.trim().replace('_', "").parse().ok(),
        other => as_int(other),
    }
}

fn parse_py_float(s: &str) -> Option<f64> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let unsigned = lower.trim_start_matches(['+', '-']);
    if matches!(unsigned, "inf" | "infinity" | "nan") {
        return lower.parse().ok();
    }
    if t.is_empty()
        || !t
            .chars()
            .all(|c| c.is_ascii_digit() || "+-.eE_".contains(c))
    {
        return None;
    }
    t.replace('_', "").parse().ok()
}

/// Python `str(v)` for JSON-decoded values (docs/tagging.md §1, `py_str`).
pub fn py_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => py_repr(other),
    }
}

/// Python `repr(v)`, which is also what `str()` gives for everything but strings.
fn py_repr(v: &Value) -> String {
    match v {
        Value::Null => "None".to_owned(),
        Value::Bool(true) => "True".to_owned(),
        Value::Bool(false) => "False".to_owned(),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i.to_string(),
            (_, Some(u)) => u.to_string(),
            _ => py_float_repr(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => py_str_repr(s),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(py_repr).collect();
            format!("[{}]", parts.join(", "))
        }
        Value::Object(map) => {
            let parts: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}: {}", py_str_repr(k), py_repr(v)))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
    }
}

/// Python's shortest round-trip float repr (`1.0`, `1e+16`, `1.5e-05`).
pub fn py_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".to_owned();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    // `{:e}` gives the shortest round-trip digits; Python switches to exponent form when the
    // decimal exponent is < -4 or >= 16.
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..16).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exp.abs());
    }
    let plain = format!("{f}");
    if plain.contains('.') {
        plain
    } else {
        format!("{plain}.0")
    }
}

fn py_str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// `None` for JSON `null`/absent, else `py_str` (docs/tagging.md §3.4 anchor/session/decky rule).
/// [`py_str`], borrowing a string value instead of copying it.
pub fn py_cow(v: &Value) -> std::borrow::Cow<'_, str> {
    match v {
        Value::String(s) => std::borrow::Cow::Borrowed(s),
        other => std::borrow::Cow::Owned(py_str(other)),
    }
}

/// [`opt_py_str`], borrowing a string value instead of copying it.
pub fn opt_py_cow(v: Option<&Value>) -> Option<std::borrow::Cow<'_, str>> {
    match v {
        None | Some(Value::Null) => None,
        Some(other) => Some(py_cow(other)),
    }
}

pub fn opt_py_str(v: Option<&Value>) -> Option<String> {
    match v {
        None | Some(Value::Null) => None,
        Some(other) => Some(py_str(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn truthiness_follows_python() {
        for falsy in [
            json!(null),
            json!(false),
            json!(0),
            json!(0.0),
            json!(""),
            json!([]),
            json!({}),
        ] {
            assert!(!truthy(&falsy), "{falsy}");
        }
        for t in [
            json!(true),
            json!(1),
            json!(-0.5),
            json!("0"),
            json!([0]),
            json!({"a": null}),
        ] {
            assert!(truthy(&t), "{t}");
        }
    }

    #[test]
    fn first_truthy_returns_last_operand_when_none_is_truthy() {
        let m = json!({"a": 0, "b": ""})
            .as_object()
            .cloned()
            .unwrap_or_default();
        assert_eq!(first_truthy(&m, &["a", "b"]), Some(&json!("")));
        assert_eq!(first_truthy(&m, &["b", "c"]), None);
        assert_eq!(first_truthy(&m, &["c", "a"]), Some(&json!(0)));
    }

    #[test]
    fn py_str_matches_python() {
        assert_eq!(py_str(&json!(17)), "17");
        assert_eq!(py_str(&json!(true)), "True");
        assert_eq!(py_str(&json!(1.0)), "1.0");
        assert_eq!(py_str(&json!(1e16)), "1e+16");
        assert_eq!(py_str(&json!(1.5e-5)), "1.5e-05");
        assert_eq!(py_str(&json!(0.0001)), "0.0001");
        assert_eq!(
            py_str(&json!(["a", 1, null, false])),
            "['a', 1, None, False]"
        );
        assert_eq!(py_str(&json!({"k": "it's"})), "{'k': \"it's\"}");
    }

    #[test]
    fn ints_include_booleans_but_not_floats() {
        assert_eq!(as_int(&json!(true)), Some(1));
        assert_eq!(as_int(&json!(5)), Some(5));
        assert_eq!(as_int(&json!(5.0)), None);
        assert_eq!(py_float(&json!("0.9")), Some(0.9));
        assert_eq!(py_float(&json!("x")), None);
        assert_eq!(py_int(&json!(" 3 ")), Some(3));
    }
}

#[cfg(test)]
mod field_tests {
    use super::*;

    #[test]
    fn field_is_get() {
        for size in [0usize, 1, 5, 24, 25, 60] {
            let map: Map<String, Value> = (0..size)
                .map(|i| (format!("k{i}"), Value::from(i)))
                .collect();
            for i in 0..size + 3 {
                let key = format!("k{i}");
                assert_eq!(map.field(&key), map.get(&key), "{size} {key}");
            }
            assert_eq!(map.field(""), None);
        }
    }
}
