//! A message crossing the bridge, and what each side accepts as one.

use std::borrow::Cow;

use super::frame::{self, Frame};
use crate::topics::{FROM_DECNET, matches};

/// A message crossing the bridge: its subject and its envelope, byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relayed {
    pub subject: String,
    pub body: Vec<u8>,
    /// The envelope's `id`, JetStream's de-duplication key in durable mode.
    pub id: Option<String>,
}

impl Relayed {
    /// A NATS message for DECNET's bus, when DECNET's broker would take it: a JSON object
    /// within the frame limits, on an ASCII subject.
    pub fn from_nats(subject: String, body: Vec<u8>) -> Result<Relayed, String> {
        if body.len() > frame::MAX_BODY {
            return Err(format!(
                "{subject}: {} bytes, over DECNET's 1 MiB",
                body.len()
            ));
        }
        if !subject.is_ascii() || subject.len() + 5 > frame::MAX_HEADER {
            return Err(format!("{subject:?}: not a subject DECNET's bus takes"));
        }
        let id = envelope_id(&body).map_err(|why| format!("{subject}: {why}"))?;
        Ok(Relayed { subject, body, id })
    }

    /// An EVT frame's topic and envelope, unchanged, once the topic is known to be one the
    /// bridge subscribed to and the envelope a JSON object (what the worker expects); the
    /// refusal's kind otherwise.
    pub fn from_decnet(frame: Frame) -> Result<Relayed, (&'static str, String)> {
        if !from_decnet(&frame.args) || frame.args.contains(['*', '>']) {
            return Err((
                "bad_header",
                format!("topic {:?} is not one the bridge subscribed to", frame.args),
            ));
        }
        let id = envelope_id(&frame.body).map_err(|why| ("not_json", why))?;
        Ok(Relayed {
            subject: frame.args,
            body: frame.body,
            id,
        })
    }
}

/// The `id` of an envelope, once the bytes are known to be one JSON object.
fn envelope_id(body: &[u8]) -> Result<Option<String>, String> {
    #[derive(serde::Deserialize)]
    struct Head<'a> {
        #[serde(borrow, default)]
        id: Option<Cow<'a, str>>,
    }
    // Without this, serde would also take a JSON array as the struct's fields.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err("not a JSON object".into());
    }
    let head: Head = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    Ok(head.id.map(Cow::into_owned))
}

/// Whether `subject` is one the bridge carries from DECNET to NATS.
fn from_decnet(subject: &str) -> bool {
    FROM_DECNET.iter().any(|pattern| matches(pattern, subject))
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_id_is_read_and_anything_but_an_object_is_refused() {
        assert_eq!(
            envelope_id(br#" {"v":1,"id":"abc","payload":{"x":[1]}}"#).unwrap(),
            Some("abc".to_owned())
        );
        assert_eq!(envelope_id(br#"{"payload":{}}"#).unwrap(), None);
        for bad in [&b"[1,2]"[..], b"\"text\"", b"{\"id\":", b"not json", b""] {
            assert!(
                envelope_id(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn what_decnet_would_refuse_is_not_relayed_to_it() {
        assert!(Relayed::from_nats("ttp.tagged".into(), br#"{"id":"1"}"#.to_vec()).is_ok());
        assert!(Relayed::from_nats("ttp.tagged".into(), b"[]".to_vec()).is_err());
        assert!(Relayed::from_nats("ttp.caf\u{e9}".into(), b"{}".to_vec()).is_err());
        let big = format!("{{\"x\":\"{}\"}}", "a".repeat(frame::MAX_BODY));
        assert!(Relayed::from_nats("ttp.tagged".into(), big.into_bytes()).is_err());
    }
}
