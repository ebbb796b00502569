//! One bus message → the tagger events DECNET would build from it (docs/tagging.md §3).

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::anchors::AnchorResolver;
use super::py::{Fields as _, first_truthy, opt_py_cow, py_cow, truthy};

/// What the taggers see (docs/tagging.md §2). The strings borrow from the message where they can:
/// a session's command events share their anchors with it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaggerEvent<'a> {
    pub source_kind: Cow<'a, str>,
    pub source_id: Cow<'a, str>,
    pub attacker_uuid: Option<Cow<'a, str>>,
    pub identity_uuid: Option<Cow<'a, str>>,
    /// The attacker's IP: the anchor itself when no UUID could be resolved.
    pub attacker_ip: Option<Cow<'a, str>>,
    pub session_id: Option<Cow<'a, str>>,
    pub decky_id: Option<Cow<'a, str>>,
    /// Borrowed from the message unless anchor resolution or command fan-out had to edit it.
    pub payload: Cow<'a, Map<String, Value>>,
}

impl TaggerEvent<'_> {
    /// Whether every string the event puts into its tags' rows is at most `max_chars`
    /// characters long (the bytes are checked first: most ids are short ASCII).
    pub fn ids_fit(&self, max_chars: usize) -> bool {
        let fits = |text: &str| text.len() <= max_chars || text.chars().count() <= max_chars;
        let optional = [
            &self.attacker_uuid,
            &self.identity_uuid,
            &self.attacker_ip,
            &self.session_id,
            &self.decky_id,
        ];
        fits(&self.source_kind)
            && fits(&self.source_id)
            && optional.into_iter().flatten().all(|id| fits(id))
    }
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

pub fn source_kind(subject: &str, envelope_type: &str) -> Option<Cow<'static, str>> {
    KIND_BY_FRAGMENT
        .iter()
        .find(|(fragment, _)| subject.contains(fragment))
        .map(|(_, kind)| Cow::Borrowed(*kind))
        .or_else(|| (!envelope_type.is_empty()).then(|| Cow::Owned(envelope_type.to_owned())))
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
    pub source_kind: Cow<'static, str>,
    /// The attacker's IP, as tags carry it (`attacker_ip`; canary triggers: `src_ip`).
    pub ip: Option<&'p str>,
    /// The member the IP was read from.
    pub ip_member: Option<&'static str>,
    /// The attacker UUID the resolver found for an IP-only payload: DECNET continues with a
    /// copy of the payload whose `attacker_uuid` is set to it.
    pub resolved: Option<String>,
    /// The event is anchored in a way DECNET would not anchor it, so its source ids carry the
    /// IP: the payload had no UUID anchor, and the IP did not resolve, resolved only through an
    /// anchor learned from the bus, or is a canary trigger's `src_ip` (DECNET reads only
    /// `attacker_ip`).
    pub ip_anchored: bool,
}

/// Decides the source kind and the anchor of one message, without building anything.
///
/// Anchors (§3.2, with our divergence): a payload without a truthy `attacker_uuid` or
/// `identity_uuid` is anchored through `resolver` on `attacker_ip` (canary triggers:
/// `src_ip`); when that fails the event is still tagged, anchored on the IP itself. An
/// anchor learned from the bus fills `attacker_uuid` but the IP keeps its place in the
/// source id, so tags do not depend on arrival order (see `anchors.rs`). Only an anchor
/// DECNET would make itself (a UUID in the payload, or a seeded `attacker_ip`) leaves the
/// source id as DECNET's.
pub fn anchor<'p>(
    subject: &str,
    envelope_type: &str,
    payload: &'p Map<String, Value>,
    resolver: &AnchorResolver,
) -> Result<Anchoring<'p>, Unbuildable> {
    let source_kind = source_kind(subject, envelope_type).ok_or(Unbuildable::NoSourceKind)?;
    let anchored_by_uuid = payload.field("attacker_uuid").is_some_and(truthy)
        || payload.field("identity_uuid").is_some_and(truthy);
    let mut ip_member = Some("attacker_ip");
    let mut ip = usable_ip(payload.field("attacker_ip"));
    if ip.is_none() && source_kind == "canary_fingerprint" && !anchored_by_uuid {
        ip_member = Some("src_ip");
        ip = usable_ip(payload.field("src_ip")).filter(|s| *s != "0.0.0.0");
    }
    let ip_member = ip.and(ip_member);
    let mut resolved = None;
    let mut ip_anchored = false;
    if !anchored_by_uuid {
        let ip = ip.ok_or(Unbuildable::NoAnchor)?;
        let decnet_reads_it = ip_member == Some("attacker_ip");
        match resolver.resolve_with_origin(ip) {
            Some(found) => {
                resolved = Some(found.attacker_uuid.to_owned());
                // A learned anchor names the attacker but leaves the tag identity alone.
                ip_anchored = !(found.seeded && decnet_reads_it);
            }
            None => ip_anchored = true,
        }
    }
    Ok(Anchoring {
        source_kind,
        ip,
        ip_member,
        resolved,
        ip_anchored,
    })
}

/// The address a message's attacker must be looked up by, if it needs one (§3.2): none when
/// its payload names an attacker or identity, or when it has no usable address.
pub fn lookup_address<'p>(
    subject: &str,
    envelope_type: &str,
    payload: &'p Map<String, Value>,
) -> Option<&'p str> {
    let source_kind = source_kind(subject, envelope_type)?;
    let anchored_by_uuid = payload.field("attacker_uuid").is_some_and(truthy)
        || payload.field("identity_uuid").is_some_and(truthy);
    if anchored_by_uuid {
        return None;
    }
    usable_ip(payload.field("attacker_ip")).or_else(|| {
        (source_kind == "canary_fingerprint")
            .then(|| usable_ip(payload.field("src_ip")).filter(|s| *s != "0.0.0.0"))
            .flatten()
    })
}

/// The attacker of a `session.ended` message's base event, whose intel row DECNET's catch-up
/// reads (docs/decnet-db.md §5); `None` for other subjects and for sessions without one.
pub fn catchup_attacker(
    subject: &str,
    envelope_type: &str,
    payload: &Map<String, Value>,
    resolver: &AnchorResolver,
) -> Option<String> {
    if !subject.contains("session.ended") {
        return None;
    }
    let anchoring = anchor(subject, envelope_type, payload, resolver).ok()?;
    anchoring
        .resolved
        .or_else(|| opt_py_cow(payload.field("attacker_uuid")).map(Cow::into_owned))
}

/// DECNET's intel catch-up event for a `session.ended` message (docs/decnet-db.md §5): the
/// attacker's intel row as an `intel` event with the base event's anchors.
pub fn catchup_event<'a>(
    base: &TaggerEvent<'a>,
    intel_row: &'a Map<String, Value>,
) -> Option<TaggerEvent<'a>> {
    let attacker = base.attacker_uuid.as_deref()?;
    let key = base
        .session_id
        .as_deref()
        .filter(|s| !s.is_empty())
        .unwrap_or(attacker);
    Some(TaggerEvent {
        source_kind: Cow::Borrowed("intel"),
        source_id: Cow::Owned(format!("intel-catchup:{key}")),
        attacker_uuid: base.attacker_uuid.clone(),
        identity_uuid: base.identity_uuid.clone(),
        attacker_ip: base.attacker_ip.clone(),
        session_id: base.session_id.clone(),
        decky_id: base.decky_id.clone(),
        payload: Cow::Borrowed(intel_row),
    })
}

/// Builds the tagger events of one message: base event first, then its commands (docs/tagging.md §3.4, §3.5),
/// at most `max_commands` of them.
/// The payload is copied only when anchor resolution has to set its `attacker_uuid`.
pub fn build_events<'a>(
    subject: &str,
    envelope_type: &str,
    payload: &'a Map<String, Value>,
    resolver: &AnchorResolver,
    max_commands: usize,
) -> Result<Vec<TaggerEvent<'a>>, Unbuildable> {
    let anchoring = anchor(subject, envelope_type, payload, resolver)?;
    let mut resolved_payload: Cow<'a, Map<String, Value>> = Cow::Borrowed(payload);
    if let Some(uuid) = &anchoring.resolved {
        resolved_payload
            .to_mut()
            .insert("attacker_uuid".into(), Value::String(uuid.clone()));
    }
    Ok(build_anchored(
        subject,
        Anchored {
            source_kind: anchoring.source_kind,
            ip: anchoring.ip.map(Cow::Borrowed),
            ip_anchored: anchoring.ip_anchored,
            resolved: anchoring.resolved.map(Cow::Owned),
        },
        resolved_payload,
        payload,
        max_commands,
    ))
}

/// [`build_events`] on a payload the caller owns: the resolved `attacker_uuid` is written into
/// it (as DECNET does on its copy), so that nothing is copied.
pub fn build_events_in_place<'a>(
    subject: &str,
    envelope_type: &str,
    payload: &'a mut Map<String, Value>,
    resolver: &AnchorResolver,
    max_commands: usize,
) -> Result<Vec<TaggerEvent<'a>>, Unbuildable> {
    let Anchoring {
        source_kind,
        ip_member,
        resolved,
        ip_anchored,
        ..
    } = anchor(subject, envelope_type, payload, resolver)?;
    if let Some(uuid) = resolved {
        payload.insert("attacker_uuid".into(), Value::String(uuid));
    }
    let payload: &'a Map<String, Value> = payload;
    // The IP is read again from the member it came from: the payload was edited meanwhile.
    let ip = ip_member
        .and_then(|member| payload.field(member))
        .and_then(Value::as_str)
        .map(Cow::Borrowed);
    Ok(build_anchored(
        subject,
        Anchored {
            source_kind,
            ip,
            ip_anchored,
            resolved: None,
        },
        Cow::Borrowed(payload),
        payload,
        max_commands,
    ))
}

/// A message's anchoring, ready for building its events.
struct Anchored<'a> {
    source_kind: Cow<'static, str>,
    ip: Option<Cow<'a, str>>,
    ip_anchored: bool,
    /// A resolved attacker UUID the `fields` map does not hold (the payload was copied).
    resolved: Option<Cow<'a, str>>,
}

/// The events of an anchored message. `payload` is the (possibly resolved) payload the base
/// event carries; `fields` the message as received (or resolved in place), which the event's
/// members and the commands are read from: it differs from `payload` at most by the resolved
/// `attacker_uuid`, which `anchored` then carries. Only the first `max_commands` commands of a
/// session become events (the work budget, `budget.rs`).
fn build_anchored<'a>(
    subject: &str,
    anchored: Anchored<'a>,
    payload: Cow<'a, Map<String, Value>>,
    fields: &'a Map<String, Value>,
    max_commands: usize,
) -> Vec<TaggerEvent<'a>> {
    let Anchored {
        source_kind,
        ip,
        ip_anchored,
        resolved,
    } = anchored;
    let ip_anchor = if ip_anchored { ip.clone() } else { None };
    let source_id = base_source_id(fields, ip_anchor.as_ref(), resolved.as_ref())
        .unwrap_or_else(|| Cow::Owned(subject.to_owned()));
    let attacker_uuid = resolved.or_else(|| opt_py_cow(fields.field("attacker_uuid")));
    let base = TaggerEvent {
        source_kind,
        source_id,
        attacker_uuid,
        identity_uuid: opt_py_cow(fields.field("identity_uuid")),
        attacker_ip: ip,
        session_id: opt_py_cow(fields.field("session_id")),
        decky_id: opt_py_cow(fields.field("decky_id")),
        payload,
    };
    let mut events = Vec::with_capacity(1);
    if base.source_kind == "session"
        && let Some(Value::Array(commands)) = fields.field("commands")
    {
        events.reserve(commands.len().min(max_commands) + 1);
        events.push(base);
        for (idx, element) in commands.iter().enumerate().take(max_commands) {
            if let Some(ev) = command_event(&events[0], ip_anchor.as_ref(), idx, element) {
                events.push(ev);
            }
        }
    } else {
        events.push(base);
    }
    events
}

/// The first truthy id-ish payload member (docs/tagging.md §3.4). For an event DECNET would not anchor this
/// way the IP is part of it: after an id that outranks the anchor (`token_id@ip`), or alone
/// where the attacker UUID would be. So a tag only this worker gives never takes the UUID of
/// a tag DECNET gives another event, and two unresolved attackers never share a source id.
/// `resolved` is an attacker UUID resolved for a payload that `fields` does not show it in
/// (never empty).
fn base_source_id<'a>(
    fields: &'a Map<String, Value>,
    ip_anchor: Option<&Cow<'a, str>>,
    resolved: Option<&Cow<'a, str>>,
) -> Option<Cow<'a, str>> {
    const BEFORE: [&str; 5] = [
        "source_id",
        "session_id",
        "token_id",
        "identity_uuid",
        "credential_id",
    ];
    let outranking = BEFORE
        .iter()
        .find_map(|key| fields.field(key).filter(|v| truthy(v)))
        .map(py_cow);
    match (outranking, ip_anchor) {
        (Some(id), Some(ip)) => return Some(with_ip(&id, ip)),
        (Some(id), None) => return Some(id),
        (None, Some(ip)) => return Some(ip.clone()),
        (None, None) => {}
    }
    if let Some(uuid) = resolved {
        return Some(uuid.clone());
    }
    ["attacker_uuid", "uuid"]
        .iter()
        .filter_map(|k| fields.field(k))
        .find(|v| truthy(v))
        .map(py_cow)
}

/// An id DECNET would use, made this worker's own by the anchoring IP (docs/tagging.md §3.4).
fn with_ip<'a>(id: &str, ip: &str) -> Cow<'a, str> {
    Cow::Owned(format!("{id}@{ip}"))
}

/// One command of a session (§3.5). A command's own id is DECNET's id for it: it carries the IP
/// when the session is anchored on it, as the session's source id does.
fn command_event<'a>(
    base: &TaggerEvent<'a>,
    ip_anchor: Option<&Cow<'a, str>>,
    idx: usize,
    element: &'a Value,
) -> Option<TaggerEvent<'a>> {
    let fallback_id = || Cow::Owned(format!("{}#cmd{idx}", base.source_id));
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
                .map_or_else(fallback_id, |id| match ip_anchor {
                    Some(ip) => with_ip(&py_cow(id), ip),
                    None => py_cow(id),
                });
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
        source_kind: Cow::Borrowed("command"),
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

    /// docs/tagging.md §14.1 fan-out.
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
            usize::MAX,
        )
        .unwrap_or_default();
        let ids: Vec<&str> = events.iter().map(|e| e.source_id.as_ref()).collect();
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

    /// The work budget: only the first commands become events, however many the session has.
    #[test]
    fn a_session_fans_out_at_most_max_commands() {
        let commands: Vec<Value> = (0..50).map(|i| json!(format!("cmd {i}"))).collect();
        let payload = obj(json!({"session_id": "s", "attacker_uuid": "A", "commands": commands}));
        let events = build_events(
            "attacker.session.ended",
            "",
            &payload,
            &AnchorResolver::default(),
            7,
        )
        .unwrap_or_default();
        assert_eq!(events.len(), 8);
        assert_eq!(events[7].payload.get("command_text"), Some(&json!("cmd 6")));
    }

    fn observed<'a>(
        payload: &'a Map<String, Value>,
        resolver: &AnchorResolver,
    ) -> Result<Vec<TaggerEvent<'a>>, Unbuildable> {
        build_events(
            "attacker.observed",
            "observed",
            payload,
            resolver,
            usize::MAX,
        )
    }

    #[test]
    fn a_learned_anchor_names_the_attacker_but_keeps_the_ip_source_id() {
        let mut resolver = AnchorResolver::default();
        resolver.insert_learned("1.2.3.4", "U1");
        let payload = obj(json!({"attacker_ip": "1.2.3.4"}));
        let ev = &observed(&payload, &resolver).unwrap_or_default()[0];
        assert_eq!(
            (ev.source_id.as_ref(), ev.attacker_uuid.as_deref()),
            ("1.2.3.4", Some("U1"))
        );
        // The seed (DECNET's view) wins and anchors as DECNET would.
        resolver.insert("1.2.3.4", "U0");
        let ev = &observed(&payload, &resolver).unwrap_or_default()[0];
        assert_eq!(
            (ev.source_id.as_ref(), ev.attacker_uuid.as_deref()),
            ("U0", Some("U0"))
        );
    }

    /// Odd attacker UUIDs (numbers, falsy values) give the same source ids and anchors on the
    /// copying and the in-place path.
    #[test]
    fn odd_attacker_uuids_on_both_paths() {
        let mut resolver = AnchorResolver::default();
        resolver.insert("1.2.3.4", "U");
        let cases = [
            (json!({"attacker_uuid": 5}), "5", Some("5")),
            (
                json!({"attacker_uuid": 0, "attacker_ip": "1.2.3.4"}),
                "U",
                Some("U"),
            ),
            (
                json!({"attacker_uuid": "", "uuid": 0, "attacker_ip": "9.9.9.9"}),
                "9.9.9.9",
                Some(""),
            ),
            (
                json!({"attacker_uuid": false, "uuid": 7, "identity_uuid": "I"}),
                "I",
                Some("False"),
            ),
            (json!({"identity_uuid": "I", "uuid": "x"}), "I", None),
        ];
        for (payload, source_id, attacker_uuid) in cases {
            let payload = obj(payload);
            let copied = build_events("attacker.observed", "", &payload, &resolver, usize::MAX);
            let mut owned = payload.clone();
            let in_place =
                build_events_in_place("attacker.observed", "", &mut owned, &resolver, usize::MAX);
            for events in [copied, in_place] {
                let ev = &events.unwrap_or_default()[0];
                assert_eq!(
                    (ev.source_id.as_ref(), ev.attacker_uuid.as_deref()),
                    (source_id, attacker_uuid),
                    "{payload:?}"
                );
            }
        }
    }

    #[test]
    fn ip_only_payloads_resolve_or_anchor_on_the_ip() {
        let mut resolver = AnchorResolver::default();
        resolver.insert("1.2.3.4", "U1");
        let payload = obj(json!({"attacker_ip": "1.2.3.4", "decky": "x"}));
        let ev = &observed(&payload, &resolver).unwrap_or_default()[0];
        assert_eq!(
            (ev.source_id.as_ref(), ev.attacker_uuid.as_deref()),
            ("U1", Some("U1"))
        );
        let payload = obj(json!({"attacker_ip": "5.6.7.8", "uuid": "zzz"}));
        let ev = &observed(&payload, &resolver).unwrap_or_default()[0];
        assert_eq!(
            (ev.source_id.as_ref(), ev.attacker_uuid.as_deref()),
            ("5.6.7.8", None)
        );
        assert_eq!(ev.attacker_ip.as_deref(), Some("5.6.7.8"));
        let canary = obj(json!({"token_id": "T", "src_ip": "9.9.9.9"}));
        let ev = &build_events("canary.T.triggered", "", &canary, &resolver, usize::MAX)
            .unwrap_or_default()[0];
        assert_eq!(
            (ev.source_id.as_ref(), ev.attacker_ip.as_deref()),
            ("T@9.9.9.9", Some("9.9.9.9"))
        );
        for unanchored in [
            json!({"winner_uuid": "w"}),
            json!({"attacker_ip": "Unknown"}),
            json!({"attacker_ip": ""}),
        ] {
            assert_eq!(
                build_events(
                    "identity.merged",
                    "merged",
                    &obj(unanchored),
                    &resolver,
                    usize::MAX
                ),
                Err(Unbuildable::NoAnchor)
            );
        }
    }

    /// Which anchorings keep DECNET's source id and which make it ours (issue: a tag only we
    /// give must never take the UUID DECNET gives another tag).
    #[test]
    fn only_decnet_anchoring_keeps_an_outranking_id_alone() {
        let mut resolver = AnchorResolver::default();
        resolver.insert("203.0.113.9", "B");
        resolver.insert_learned("192.0.2.7", "L");
        let source = |payload: Value| {
            let payload = obj(payload);
            let ev = &build_events(
                "canary.tok-1.triggered",
                "",
                &payload,
                &resolver,
                usize::MAX,
            )
            .unwrap_or_default()[0];
            (
                ev.source_id.to_string(),
                ev.attacker_uuid.as_deref().map(str::to_owned),
            )
        };
        let owned = |id: &str, uuid: Option<&str>| (id.to_owned(), uuid.map(str::to_owned));
        // DECNET's: a seeded attacker_ip, or a UUID in the payload.
        assert_eq!(
            source(json!({"token_id": "tok-1", "attacker_ip": "203.0.113.9"})),
            owned("tok-1", Some("B"))
        );
        assert_eq!(
            source(json!({"token_id": "tok-1", "attacker_uuid": "A", "src_ip": "198.51.100.1"})),
            owned("tok-1", Some("A"))
        );
        // Ours: unresolved, learned, or read from src_ip (even when the seed knows it).
        assert_eq!(
            source(json!({"token_id": "tok-1", "attacker_ip": "198.51.100.1"})),
            owned("tok-1@198.51.100.1", None)
        );
        assert_eq!(
            source(json!({"token_id": "tok-1", "attacker_ip": "192.0.2.7"})),
            owned("tok-1@192.0.2.7", Some("L"))
        );
        assert_eq!(
            source(json!({"token_id": "tok-1", "src_ip": "203.0.113.9"})),
            owned("tok-1@203.0.113.9", Some("B"))
        );
    }

    /// A session anchored on its IP: the IP follows the session id, and commands' own ids.
    #[test]
    fn an_ip_anchored_session_carries_the_ip_into_its_commands() {
        let payload = obj(json!({"session_id": "s1", "attacker_ip": "198.51.100.1",
            "commands": [{"id": "c7", "command_text": "id"}, "whoami"]}));
        let ids = |resolver: &AnchorResolver| -> Vec<String> {
            build_events("attacker.session.ended", "", &payload, resolver, usize::MAX)
                .unwrap_or_default()
                .iter()
                .map(|e| e.source_id.to_string())
                .collect()
        };
        assert_eq!(
            ids(&AnchorResolver::default()),
            ["s1@198.51.100.1", "c7@198.51.100.1", "s1@198.51.100.1#cmd1"]
        );
        let mut seeded = AnchorResolver::default();
        seeded.insert("198.51.100.1", "U");
        assert_eq!(ids(&seeded), ["s1", "c7", "s1#cmd1"]);
    }
}
