//! One bus message → the tagger events DECNET would build from it (tagging.md §3).

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::anchors::AnchorResolver;
use super::py::{Fields as _, first_truthy, opt_py_str, py_str, truthy};

/// What the taggers see (tagging.md §2).
#[derive(Debug, Clone, PartialEq)]
pub struct TaggerEvent<'a> {
    pub source_kind: String,
    pub source_id: String,
    pub attacker_uuid: Option<String>,
    pub identity_uuid: Option<String>,
    /// The attacker's IP: the anchor itself when no UUID could be resolved.
    pub attacker_ip: Option<String>,
    pub session_id: Option<String>,
    pub decky_id: Option<String>,
    /// Borrowed from the message unless anchor resolution or command fan-out had to edit it.
    pub payload: Cow<'a, Map<String, Value>>,
}

/// Why a message produced no tagger events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unbuildable {
    /// Neither UUID anchor nor usable IP (e.g. `identity.merged`, plural reuse payloads).
    NoAnchor,
    /// The subject maps to no kind and the envelope type is empty.
    NoSourceKind,
}

/// Subject fragments tested in order, anywhere in the subject (§3.3).
const KIND_BY_FRAGMENT: [(&str, &str); 8] = [
    ("session.ended", "session"),
    ("observed", "session"),
    ("intel.enriched", "intel"),
    ("identity.formed", "identity"),
    ("identity.merged", "identity"),
    ("reuse.detected", "credential"),
    ("email.received", "email"),
    ("canary.", "canary_fingerprint"),
];

pub fn source_kind(subject: &str, envelope_type: &str) -> Option<String> {
    KIND_BY_FRAGMENT
        .iter()
        .find(|(fragment, _)| subject.contains(fragment))
        .map(|(_, kind)| (*kind).to_owned())
        .or_else(|| (!envelope_type.is_empty()).then(|| envelope_type.to_owned()))
}

/// A usable IP anchor: a non-empty string other than DECNET's `"Unknown"` placeholder.
fn usable_ip(v: Option<&Value>) -> Option<&str> {
    match v {
        Some(Value::String(s)) if !s.is_empty() && s != "Unknown" => Some(s),
        _ => None,
    }
}

/// How a message is anchored (§3.2, with our divergence), decided on its payload as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchoring<'p> {
    pub source_kind: String,
    /// The attacker's IP, as tags carry it (`attacker_ip`; canary triggers: `src_ip`).
    pub ip: Option<&'p str>,
    /// The attacker UUID the resolver found for an IP-only payload: DECNET continues with a
    /// copy of the payload whose `attacker_uuid` is set to it.
    pub resolved: Option<String>,
    /// The IP stands where the attacker UUID would in the source id: the payload had no UUID
    /// anchor and the IP did not resolve, or resolved only through an anchor learned from the
    /// bus.
    pub ip_anchored: bool,
}

/// Decides the source kind and the anchor of one message, without building anything.
///
/// Anchors (§3.2, with our divergence): a payload without a truthy `attacker_uuid` or
/// `identity_uuid` is anchored through `resolver` on `attacker_ip` (canary triggers:
/// `src_ip`); when that fails the event is still tagged, anchored on the IP itself. An
/// anchor learned from the bus fills `attacker_uuid` but the IP keeps its place in the
/// source id, so tags do not depend on arrival order (see `anchors.rs`).
pub fn anchor<'p>(
    subject: &str,
    envelope_type: &str,
    payload: &'p Map<String, Value>,
    resolver: &AnchorResolver,
) -> Result<Anchoring<'p>, Unbuildable> {
    let source_kind = source_kind(subject, envelope_type).ok_or(Unbuildable::NoSourceKind)?;
    let anchored_by_uuid = payload.field("attacker_uuid").is_some_and(truthy)
        || payload.field("identity_uuid").is_some_and(truthy);
    let mut ip = usable_ip(payload.field("attacker_ip"));
    if ip.is_none() && source_kind == "canary_fingerprint" && !anchored_by_uuid {
        ip = usable_ip(payload.field("src_ip")).filter(|s| *s != "0.0.0.0");
    }
    let mut resolved = None;
    let mut ip_anchored = false;
    if !anchored_by_uuid {
        let ip = ip.ok_or(Unbuildable::NoAnchor)?;
        match resolver.resolve_with_origin(ip) {
            Some(found) => {
                resolved = Some(found.attacker_uuid.to_owned());
                // A learned anchor names the attacker but leaves the tag identity alone.
                ip_anchored = !found.seeded;
            }
            None => ip_anchored = true,
        }
    }
    Ok(Anchoring {
        source_kind,
        ip,
        resolved,
        ip_anchored,
    })
}

/// Builds the tagger events of one message: base event first, then its commands (§3.4, §3.5).
/// The payload is copied only when anchor resolution has to set its `attacker_uuid`.
pub fn build_events<'a>(
    subject: &str,
    envelope_type: &str,
    payload: &'a Map<String, Value>,
    resolver: &AnchorResolver,
) -> Result<Vec<TaggerEvent<'a>>, Unbuildable> {
    let anchoring = anchor(subject, envelope_type, payload, resolver)?;
    let ip = anchoring.ip.map(str::to_owned);
    let mut resolved: Cow<'a, Map<String, Value>> = Cow::Borrowed(payload);
    if let Some(uuid) = &anchoring.resolved {
        resolved
            .to_mut()
            .insert("attacker_uuid".into(), Value::String(uuid.clone()));
    }
    Ok(build_anchored(
        subject,
        anchoring.source_kind,
        ip,
        anchoring.ip_anchored,
        resolved,
        payload,
    ))
}

/// [`build_events`] on a payload the caller owns: the resolved `attacker_uuid` is written into
/// it (as DECNET does on its copy), so that nothing is copied.
pub fn build_events_in_place<'a>(
    subject: &str,
    envelope_type: &str,
    payload: &'a mut Map<String, Value>,
    resolver: &AnchorResolver,
) -> Result<Vec<TaggerEvent<'a>>, Unbuildable> {
    let anchoring = anchor(subject, envelope_type, payload, resolver)?;
    let (source_kind, ip, ip_anchored) = (
        anchoring.source_kind,
        anchoring.ip.map(str::to_owned),
        anchoring.ip_anchored,
    );
    if let Some(uuid) = anchoring.resolved {
        payload.insert("attacker_uuid".into(), Value::String(uuid));
    }
    let payload: &'a Map<String, Value> = payload;
    Ok(build_anchored(
        subject,
        source_kind,
        ip,
        ip_anchored,
        Cow::Borrowed(payload),
        payload,
    ))
}

/// The events of an anchored message. `payload` is the (possibly resolved) payload the base
/// event carries; `original` the message's own, which the commands are read from (resolution
/// never edits them).
fn build_anchored<'a>(
    subject: &str,
    source_kind: String,
    ip: Option<String>,
    ip_anchored: bool,
    payload: Cow<'a, Map<String, Value>>,
    original: &'a Map<String, Value>,
) -> Vec<TaggerEvent<'a>> {
    let ip_anchor = if ip_anchored { ip.as_deref() } else { None };
    let source_id = base_source_id(&payload, ip_anchor).unwrap_or_else(|| subject.to_owned());
    let base = TaggerEvent {
        source_kind,
        source_id,
        attacker_uuid: opt_py_str(payload.field("attacker_uuid")),
        identity_uuid: opt_py_str(payload.field("identity_uuid")),
        attacker_ip: ip,
        session_id: opt_py_str(payload.field("session_id")),
        decky_id: opt_py_str(payload.field("decky_id")),
        payload,
    };
    let mut events = Vec::with_capacity(1);
    if base.source_kind == "session"
        && let Some(Value::Array(commands)) = original.field("commands")
    {
        events.reserve(commands.len() + 1);
        events.push(base);
        for (idx, element) in commands.iter().enumerate() {
            if let Some(ev) = command_event(&events[0], idx, element) {
                events.push(ev);
            }
        }
    } else {
        events.push(base);
    }
    events
}

/// The first truthy id-ish payload member (§3.4); an IP anchor stands where the attacker UUID
/// would, so that two unresolved attackers never share a source id.
fn base_source_id(payload: &Map<String, Value>, ip_anchor: Option<&str>) -> Option<String> {
    const BEFORE: [&str; 5] = [
        "source_id",
        "session_id",
        "token_id",
        "identity_uuid",
        "credential_id",
    ];
    for key in BEFORE {
        if let Some(v) = payload.field(key).filter(|v| truthy(v)) {
            return Some(py_str(v));
        }
    }
    if let Some(ip) = ip_anchor {
        return Some(ip.to_owned());
    }
    ["attacker_uuid", "uuid"]
        .iter()
        .filter_map(|k| payload.field(k))
        .find(|v| truthy(v))
        .map(py_str)
}

fn command_event<'a>(
    base: &TaggerEvent<'_>,
    idx: usize,
    element: &'a Value,
) -> Option<TaggerEvent<'a>> {
    let fallback_id = || format!("{}#cmd{idx}", base.source_id);
    let (source_id, payload) = match element {
        Value::String(s) => {
            let mut p = Map::new();
            p.insert("command_text".into(), Value::String(s.clone()));
            (fallback_id(), Cow::Owned(p))
        }
        Value::Object(obj) => {
            let text = first_truthy(obj, &["command_text", "text"])?;
            let Value::String(text) = text else {
                return None;
            };
            let id = ["id", "uuid", "command_id"]
                .iter()
                .filter_map(|k| obj.field(k))
                .find(|v| truthy(v))
                .map_or_else(fallback_id, py_str);
            // The payload is the object with `command_text` set to the chosen text; when it
            // already holds that text the object is used as it is.
            let payload =
                if obj.field("command_text").and_then(Value::as_str) == Some(text.as_str()) {
                    Cow::Borrowed(obj)
                } else {
                    let mut p = obj.clone();
                    p.insert("command_text".into(), Value::String(text.clone()));
                    Cow::Owned(p)
                };
            (id, payload)
        }
        _ => return None,
    };
    Some(TaggerEvent {
        source_kind: "command".into(),
        source_id,
        attacker_uuid: base.attacker_uuid.clone(),
        identity_uuid: base.identity_uuid.clone(),
        attacker_ip: base.attacker_ip.clone(),
        session_id: base.session_id.clone(),
        decky_id: base.decky_id.clone(),
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn kinds_follow_fragment_order() {
        assert_eq!(
            source_kind("attacker.session.ended", "x").as_deref(),
            Some("session")
        );
        assert_eq!(
            source_kind("canary.abc.placed", "").as_deref(),
            Some("canary_fingerprint")
        );
        assert_eq!(
            source_kind("canary.observed.triggered", "").as_deref(),
            Some("session")
        );
        assert_eq!(
            source_kind("attacker.fingerprinted", "ipv6_leak").as_deref(),
            Some("ipv6_leak")
        );
        assert_eq!(source_kind("attacker.fingerprinted", ""), None);
    }

    /// tagging.md §14.1 fan-out.
    #[test]
    fn session_fans_out_commands() {
        let payload = obj(
            json!({"session_id": "sess-9f2c", "attacker_uuid": "A", "decky_id": "d",
            "commands": [
                {"id": "sess-9f2c#4", "command_text": "cat /etc/passwd", "uid": "0"},
                "bash -i",
                {"command_text": "find /"},
                42,
                {"text": "uname -a", "uuid": 17},
                {"command_text": "", "text": 5},
                {"command_text": "", "text": ""}
            ]}),
        );
        let events = build_events(
            "attacker.session.ended",
            "session.ended",
            &payload,
            &AnchorResolver::default(),
        )
        .unwrap_or_default();
        let ids: Vec<&str> = events.iter().map(|e| e.source_id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "sess-9f2c",
                "sess-9f2c#4",
                "sess-9f2c#cmd1",
                "sess-9f2c#cmd2",
                "17",
                "sess-9f2c#cmd6"
            ]
        );
        assert_eq!(events[1].payload.get("uid"), Some(&json!("0")));
        assert_eq!(
            events[4].payload.get("command_text"),
            Some(&json!("uname -a"))
        );
        assert!(events[1..].iter().all(|e| e.source_kind == "command" && e.session_id.as_deref() == Some("sess-9f2c")));
    }

    #[test]
    fn a_learned_anchor_names_the_attacker_but_keeps_the_ip_source_id() {
        let mut resolver = AnchorResolver::default();
        resolver.insert_learned("1.2.3.4", "U1");
        let payload = obj(json!({"attacker_ip": "1.2.3.4"}));
        let ev = &build_events("attacker.observed", "observed", &payload, &resolver)
            .unwrap_or_default()[0];
        assert_eq!(
            (ev.source_id.as_str(), ev.attacker_uuid.as_deref()),
            ("1.2.3.4", Some("U1"))
        );
        // The seed (DECNET's view) wins and anchors as DECNET would.
        resolver.insert("1.2.3.4", "U0");
        let ev = &build_events("attacker.observed", "observed", &payload, &resolver)
            .unwrap_or_default()[0];
        assert_eq!(
            (ev.source_id.as_str(), ev.attacker_uuid.as_deref()),
            ("U0", Some("U0"))
        );
    }

    #[test]
    fn ip_only_payloads_resolve_or_anchor_on_the_ip() {
        let mut resolver = AnchorResolver::default();
        resolver.insert("1.2.3.4", "U1");
        let payload = obj(json!({"attacker_ip": "1.2.3.4", "decky": "x"}));
        let ev = &build_events("attacker.observed", "observed", &payload, &resolver)
            .unwrap_or_default()[0];
        assert_eq!(
            (ev.source_id.as_str(), ev.attacker_uuid.as_deref()),
            ("U1", Some("U1"))
        );
        let payload = obj(json!({"attacker_ip": "5.6.7.8", "uuid": "zzz"}));
        let ev = &build_events("attacker.observed", "observed", &payload, &resolver)
            .unwrap_or_default()[0];
        assert_eq!(
            (ev.source_id.as_str(), ev.attacker_uuid.as_deref()),
            ("5.6.7.8", None)
        );
        assert_eq!(ev.attacker_ip.as_deref(), Some("5.6.7.8"));
        let canary = obj(json!({"token_id": "T", "src_ip": "9.9.9.9"}));
        let ev = &build_events("canary.T.triggered", "", &canary, &resolver).unwrap_or_default()[0];
        assert_eq!(
            (ev.source_id.as_str(), ev.attacker_ip.as_deref()),
            ("T", Some("9.9.9.9"))
        );
        for unanchored in [
            json!({"winner_uuid": "w"}),
            json!({"attacker_ip": "Unknown"}),
            json!({"attacker_ip": ""}),
        ] {
            assert_eq!(
                build_events("identity.merged", "merged", &obj(unanchored), &resolver),
                Err(Unbuildable::NoAnchor)
            );
        }
    }
}
