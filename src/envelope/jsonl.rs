//! Envelopes one per line, as the `tag` command reads them and DECNET's dev corpus stores them:
//! each line is an envelope whose `topic` member stands in for the subject it would have
//! arrived on.
//!
//! Two decoders, because they serve two readers: [`parse_line`] goes through
//! [`Envelope::decode`] and so gives exactly what the daemon would have received (tests and
//! benchmarks that replay the corpus through the main loop); [`decode_line`] reads only what
//! tagging needs, in one pass, because decoding is most of the `tag` command's reading thread.
//! Both agree on which lines are malformed and why.

use serde::de::{
    Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde_json::{Map, Value};

use super::{DecodeError, Envelope, Inbound, is_python_falsy, json_type_name};

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
    let raw: RawLine = serde_json::from_str(text).map_err(|e| json_problem(&e))?;
    let subject = raw
        .topic
        .filter(|t| !t.is_empty())
        .ok_or("no string `topic` member")?;
    let payload = match raw.payload {
        None => Map::new(),
        Some(Value::Object(map)) => map,
        // DECNET writes `payload or {}`: every falsy payload is an empty one.
        Some(other) if is_python_falsy(&other) => Map::new(),
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

/// What is wrong with a line that is not a JSON object, in plain words. The report names the
/// line; serde's own message would name line 1 of the one-line text (or line 2 for a line cut
/// short) and speak its grammar ("expected ident", "sequence").
fn json_problem(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let column = e.column();
    let message = e.to_string();
    let what = message
        .rsplit_once(" at line ")
        .map_or(message.as_str(), |(what, _)| what);
    match e.classify() {
        Category::Eof => "the line ends before its JSON object does".to_owned(),
        Category::Syntax if what == "trailing characters" => {
            format!("text after the JSON object (column {column})")
        }
        Category::Syntax => format!("not valid JSON (column {column})"),
        Category::Data => match what.strip_prefix("invalid type: ") {
            Some(found) => {
                let found = found
                    .split_once(", expected")
                    .map_or(found, |(found, _)| found);
                format!("a JSON object was expected, not {}", plain_json_kind(found))
            }
            None => format!("not an envelope: {what}"),
        },
        Category::Io => format!("cannot read the line: {what}"),
    }
}

/// serde's name for a kind of JSON value, as a user would say it.
fn plain_json_kind(serde_name: &str) -> String {
    match serde_name {
        "sequence" => "an array".to_owned(),
        "map" => "an object".to_owned(),
        "unit" | "null" => "null".to_owned(),
        other => match other.split_once(' ') {
            Some(("integer" | "floating", _)) => "a number".to_owned(),
            Some(("string", _)) => "a string".to_owned(),
            Some(("boolean", _)) => "true or false".to_owned(),
            _ => other.to_owned(),
        },
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
        .map_err(|e| json_problem(&e))?
        .topic
        .filter(|t| !t.is_empty())
        .ok_or("no string `topic` member")?
        .into_owned();
    let envelope = Envelope::decode(line.as_bytes()).map_err(|e| e.to_string())?;
    Ok(Inbound {
        subject: topic,
        envelope,
        bytes: line.len(),
    })
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

    #[test]
    fn bad_lines_say_why() {
        let err = |line: &[u8]| decode_line(line).err().unwrap_or_default();
        assert_eq!(err(b"not json"), "not valid JSON (column 2)");
        assert_eq!(err(b"[1]"), "a JSON object was expected, not an array");
        assert_eq!(err(b"\"x\""), "a JSON object was expected, not a string");
        assert_eq!(err(b"5"), "a JSON object was expected, not a number");
        assert_eq!(
            err(b"{\"topic\":\"t\""),
            "the line ends before its JSON object does"
        );
        assert_eq!(
            err(b"{\"topic\":\"t\"} x"),
            "text after the JSON object (column 15)"
        );
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
