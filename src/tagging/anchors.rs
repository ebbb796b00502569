//! `attacker_ip → attacker_uuid` resolution (docs/tagging.md §3.2).
//!
//! DECNET asks its database; a bus-only worker learns the mapping from the bus itself (every
//! payload that carries both an `attacker_uuid` and an `attacker_ip` teaches it), optionally
//! seeded from a JSON file of the attackers known when it starts.
//!
//! The two sources are kept apart on purpose. A *seeded* anchor stands for what DECNET's
//! database knows, so it anchors an event exactly as DECNET would, source id included. A
//! *learned* anchor only fills in `attacker_uuid`: it never changes which tags an event gets,
//! so the tag set depends on the events alone and not on the order they arrived in, and
//! replaying a stream after its IPs became known inserts nothing new.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::py::{Fields as _, non_empty_str};

#[derive(Debug, thiserror::Error)]
pub enum AnchorsError {
    #[error("{path}: cannot read anchors file: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path}: anchors file must be a JSON object of \"ip\": \"attacker_uuid\" strings: {reason}"
    )]
    Format { path: PathBuf, reason: String },
}

#[derive(Debug, Clone, Default)]
pub struct AnchorResolver {
    seeded: HashMap<String, String>,
    learned: HashMap<String, String>,
    /// Set once the learned map was full and forgot one (said once).
    overflowed: bool,
}

/// The most anchors learned from the bus kept in memory: about 30 MiB of pairings. The seed
/// (an export of DECNET's attackers table, the operator's file) is not bounded.
pub const MAX_LEARNED: usize = 200_000;

/// An IP's attacker, and whether it came from the seed (DECNET's view) or the bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved<'a> {
    pub attacker_uuid: &'a str,
    pub seeded: bool,
}

impl AnchorResolver {
    pub fn from_file(path: &Path) -> Result<AnchorResolver, AnchorsError> {
        let text = std::fs::read_to_string(path).map_err(|source| AnchorsError::Io {
            path: path.to_owned(),
            source,
        })?;
        let format = |reason: String| AnchorsError::Format {
            path: path.to_owned(),
            reason,
        };
        let value: Value = serde_json::from_str(&text).map_err(|e| format(e.to_string()))?;
        let Value::Object(map) = value else {
            return Err(format("top level is not an object".into()));
        };
        let mut seeded = HashMap::with_capacity(map.len());
        for (ip, uuid) in map {
            match uuid {
                Value::String(u) if !u.is_empty() => {
                    seeded.insert(ip, u);
                }
                other => return Err(format(format!("value for {ip} is {other}"))),
            }
        }
        Ok(AnchorResolver {
            seeded,
            learned: HashMap::new(),
            overflowed: false,
        })
    }

    /// Adds a seed anchor: one DECNET's database would know.
    pub fn insert(&mut self, ip: impl Into<String>, attacker_uuid: impl Into<String>) {
        self.seeded.insert(ip.into(), attacker_uuid.into());
    }

    /// Adds an anchor learned from the bus (now or in an earlier run), within
    /// [`MAX_LEARNED`].
    pub fn insert_learned(&mut self, ip: impl Into<String>, attacker_uuid: impl Into<String>) {
        let ip = ip.into();
        if self.learned.len() >= MAX_LEARNED && !self.learned.contains_key(&ip) {
            self.evict_one();
        }
        self.learned.insert(ip, attacker_uuid.into());
    }

    /// Makes room for one more learned anchor. Which one goes is the map's order, in effect
    /// arbitrary: an attacker who fills the map with fresh pairings cannot choose whose
    /// pairing is forgotten. A forgotten pairing is still in the store; only later events
    /// of that IP stay IP-anchored until it is seen again.
    fn evict_one(&mut self) {
        if let Some(ip) = self.learned.keys().next().cloned() {
            self.learned.remove(&ip);
        }
        if !self.overflowed {
            self.overflowed = true;
            log::warn!(
                "more than {MAX_LEARNED} attacker anchors learned; older ones are forgotten to make room (they stay in the store)"
            );
        }
    }

    /// The attacker UUID of an IP; the seed wins over what the bus taught.
    pub fn resolve(&self, ip: &str) -> Option<&str> {
        self.resolve_with_origin(ip).map(|r| r.attacker_uuid)
    }

    pub fn resolve_with_origin(&self, ip: &str) -> Option<Resolved<'_>> {
        if let Some(uuid) = self.seeded.get(ip) {
            return Some(Resolved {
                attacker_uuid: uuid,
                seeded: true,
            });
        }
        self.learned.get(ip).map(|uuid| Resolved {
            attacker_uuid: uuid,
            seeded: false,
        })
    }

    /// Distinct IPs known from either source.
    pub fn len(&self) -> usize {
        self.seeded.len()
            + self
                .learned
                .keys()
                .filter(|ip| !self.seeded.contains_key(*ip))
                .count()
    }

    pub fn is_empty(&self) -> bool {
        self.seeded.is_empty() && self.learned.is_empty()
    }

    /// Remembers the pairing a payload shows, so that later IP-only events of the same
    /// attacker are anchored on its UUID. Only a real IP address and a real UUID are kept: the
    /// payload is the attacker's to shape, and any other string (40 kB "addresses") would only
    /// grow the map, since no event's address could ever look it up.
    pub fn learn(&mut self, payload: &Map<String, Value>) {
        if let (Some(uuid), Some(ip)) = (
            non_empty_str(payload.field("attacker_uuid")),
            non_empty_str(payload.field("attacker_ip")),
        ) && ip.parse::<std::net::IpAddr>().is_ok()
            && uuid::Uuid::try_parse(uuid).is_ok()
            && self.learned.get(ip).is_none_or(|u| u != uuid)
        {
            self.insert_learned(ip, uuid);
        }
    }
}

impl AnchorResolver {
    /// Takes `other`'s seed (a reloaded anchors file replaces the old one) and adds its
    /// learned pairings to ours.
    pub fn merge_from(&mut self, other: &AnchorResolver) {
        self.seeded = other.seeded.clone();
        for (ip, uuid) in &other.learned {
            self.insert_learned(ip.clone(), uuid.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn payload(ip: &str, uuid: &str) -> Map<String, Value> {
        json!({"attacker_ip": ip, "attacker_uuid": uuid})
            .as_object()
            .cloned()
            .unwrap()
    }

    #[test]
    fn learned_anchors_stay_within_their_bound() {
        let mut resolver = AnchorResolver::default();
        let uuid = "6f1c2a9e-0000-4000-8000-0000000000aa";
        for i in 0..(MAX_LEARNED + 500) as u32 {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string();
            resolver.learn(
                json!({"attacker_ip": ip, "attacker_uuid": uuid})
                    .as_object()
                    .unwrap(),
            );
        }
        assert_eq!(resolver.len(), MAX_LEARNED);
        // The newest is always kept.
        let last = std::net::Ipv4Addr::from(0x0a00_0000 + (MAX_LEARNED + 499) as u32).to_string();
        assert_eq!(resolver.resolve(&last), Some(uuid));
    }

    #[test]
    fn only_a_real_address_and_uuid_are_learned() {
        let uuid = "9d3b8f7e-2a41-4c55-9e0b-6f1d2c3a4b5c";
        let mut anchors = AnchorResolver::default();
        for (ip, id) in [
            ("Unknown", uuid),
            ("", uuid),
            (&"1".repeat(40_000)[..], uuid),
            ("203.0.113.9", "not-a-uuid"),
            ("203.0.113.9 ", uuid),
        ] {
            anchors.learn(&payload(ip, id));
        }
        assert!(anchors.is_empty());
        anchors.learn(&payload("203.0.113.9", uuid));
        anchors.learn(&payload("2001:db8::7", uuid));
        assert_eq!(anchors.len(), 2);
    }
}
