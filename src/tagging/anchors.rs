//! `attacker_ip → attacker_uuid` resolution (tagging.md §3.2).
//!
//! DECNET asks its database; a bus-only worker learns the mapping from the bus itself (every
//! payload that carries both an `attacker_uuid` and an `attacker_ip` teaches it), optionally
//! seeded from a JSON file of the attackers known when it starts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::py::non_empty_str;

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
    by_ip: HashMap<String, String>,
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
        let mut by_ip = HashMap::with_capacity(map.len());
        for (ip, uuid) in map {
            match uuid {
                Value::String(u) if !u.is_empty() => {
                    by_ip.insert(ip, u);
                }
                other => return Err(format(format!("value for {ip} is {other}"))),
            }
        }
        Ok(AnchorResolver { by_ip })
    }

    pub fn insert(&mut self, ip: impl Into<String>, attacker_uuid: impl Into<String>) {
        self.by_ip.insert(ip.into(), attacker_uuid.into());
    }

    pub fn resolve(&self, ip: &str) -> Option<&str> {
        self.by_ip.get(ip).map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.by_ip.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_ip.is_empty()
    }

    /// Remembers the pairing a payload shows, so that later IP-only events of the same
    /// attacker are anchored on its UUID.
    pub fn learn(&mut self, payload: &Map<String, Value>) {
        if let (Some(uuid), Some(ip)) = (
            non_empty_str(payload.get("attacker_uuid")),
            non_empty_str(payload.get("attacker_ip")),
        ) && ip != "Unknown"
            && self.by_ip.get(ip).is_none_or(|u| u != uuid)
        {
            self.by_ip.insert(ip.to_owned(), uuid.to_owned());
        }
    }
}

impl AnchorResolver {
    /// Overlays `other`'s pairings onto this resolver (a reloaded seed file wins).
    pub fn merge_from(&mut self, other: &AnchorResolver) {
        for (ip, uuid) in &other.by_ip {
            self.by_ip.insert(ip.clone(), uuid.clone());
        }
    }
}
